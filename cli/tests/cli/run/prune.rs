//! Pruning beside containers, as Docker: the image a container uses (running or stopped) and
//! the layers its snapshot builds on stay; `system prune` removes stopped containers first.

use super::Env;

#[test]
fn prune_keeps_what_containers_use() {
    let Some(env) = Env::new() else { return };
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "keep",
            "busybox",
            "sh",
            "-c",
            "echo hi > /state; sleep 60",
        ])
        .trim()
        .to_string();
    env.ok(&["builder", "prune", "-a", "-f"]);
    env.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["exec", "keep", "cat", "/state"]).trim(), "hi");
    assert!(
        env.ok(&["images"]).contains("busybox"),
        "image in use was pruned"
    );
    let out = env.run(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is using its referenced image"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["stop", "-t", "1", "keep"]);
    env.ok(&["builder", "prune", "-a", "-f"]);
    // Stopped, it starts again on the same snapshot: its layers and its own changes are there.
    env.ok(&["start", "keep"]);
    assert_eq!(env.ok(&["exec", "keep", "cat", "/state"]).trim(), "hi");
    env.ok(&["stop", "-t", "1", "keep"]);
    let out = env.ok(&["system", "prune", "-a", "-f"]);
    assert!(
        out.contains("Deleted Containers:") && out.contains(&id),
        "{out}"
    );
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
    assert!(
        env.ok(&["images", "-q"]).trim().is_empty(),
        "unused image kept"
    );
}
