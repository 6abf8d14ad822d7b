//! `rbuild cp`, `rbuild export` and `rbuild commit`, as root on the busybox image.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::{Env, code, stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tar -tf FILE` (or stdin) as a list of names without `./` and trailing `/`.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != ".")
        .collect()
}

#[test]
fn cp_both_ways_on_running_and_stopped_containers() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run", "-d", "--name", "cpc", "--network", "none", "busybox", "sh", "-c",
        "mkdir -p /srv/dir/sub && echo inside > /srv/dir/sub/f && echo ready > /srv/ready && sleep 300",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while code(&env.run(&["exec", "cpc", "test", "-f", "/srv/ready"])) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "container never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    // host -> running container, file into an existing directory
    std::fs::write(h.join("up.txt"), "uploaded\n").unwrap();
    std::os::unix::fs::chown(h.join("up.txt"), Some(1234), Some(1234)).unwrap();
    env.ok(&["cp", h.join("up.txt").to_str().unwrap(), "cpc:/tmp"]);
    let out = env.ok(&["exec", "cpc", "stat", "-c", "%u %n", "/tmp/up.txt"]);
    assert_eq!(out.trim(), "0 /tmp/up.txt");
    // -a keeps the owner
    env.ok(&[
        "cp",
        "-a",
        h.join("up.txt").to_str().unwrap(),
        "cpc:/tmp/kept.txt",
    ]);
    let out = env.ok(&["exec", "cpc", "stat", "-c", "%u", "/tmp/kept.txt"]);
    assert_eq!(out.trim(), "1234");
    // running container -> host: a directory into an existing directory, and its contents
    env.ok(&["cp", "cpc:/srv/dir", h.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(h.join("dir/sub/f")).unwrap(),
        "inside\n"
    );
    env.ok(&["cp", "cpc:/srv/dir/.", h.join("flat").to_str().unwrap()]);
    assert!(h.join("flat/sub/f").is_file());
    // `-` out: a tar named after the base name
    let out = env.run(&["cp", "cpc:/srv/dir", "-"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = tar_names(&out.stdout);
    assert!(names.contains(&"dir/sub/f".to_string()), "{names:?}");
    // `-` in: a tar extracted into a directory
    let tar = Command::new("tar")
        .args(["-cf", "-", "-C", h.to_str().unwrap(), "up.txt", "dir"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut child = env
        .cmd(&["cp", "-", "cpc:/home"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.ok(&["exec", "cpc", "cat", "/home/up.txt", "/home/dir/sub/f"]);
    assert_eq!(out, "uploaded\ninside\n");
    // a missing source is an error naming it
    let out = env.run(&["cp", "cpc:/nope", h.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("/nope"), "{}", stderr(&out));
    // stopped: the snapshot is mounted for the copy (and unmounted: Env checks)
    env.ok(&["stop", "-t", "1", "cpc"]);
    env.ok(&[
        "cp",
        "cpc:/home/up.txt",
        h.join("back.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(h.join("back.txt")).unwrap(),
        "uploaded\n"
    );
    env.ok(&["cp", h.join("back.txt").to_str().unwrap(), "cpc:/back.txt"]);
    let out = env.run(&["cp", "cpc:/back.txt", "-"]);
    assert_eq!(tar_names(&out.stdout), ["back.txt"]);
    env.ok(&["rm", "cpc"]);
}

#[test]
fn export_holds_what_the_container_wrote_and_not_what_it_deleted() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "--name",
        "ex",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo written > /written.txt && rm /etc/group",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ex.tar");
    env.ok(&["export", "-o", file.to_str().unwrap(), "ex"]);
    let names = tar_names(&std::fs::read(&file).unwrap());
    assert!(names.contains(&"written.txt".to_string()), "{names:?}");
    assert!(names.contains(&"etc/passwd".to_string()), "{names:?}");
    assert!(names.contains(&"bin/busybox".to_string()), "{names:?}");
    assert!(!names.contains(&"etc/group".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains(".wh.")), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), sorted.len());
    // to stdout (a pipe here) the same bytes (read while it runs: megabytes)
    let out = env.cmd(&["export", "ex"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, std::fs::read(&file).unwrap());
    // never to a terminal
    let pty = nix::pty::openpty(None, None).unwrap();
    let out = env
        .cmd(&["export", "ex"])
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cowardly refusing"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "ex"]);
    // a running container: its mounted root filesystem, without its volumes
    env.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "none",
        "-v",
        "/vol",
        "busybox",
        "sh",
        "-c",
        "echo live > /live.txt && echo v > /vol/in-volume && sleep 300",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while code(&env.run(&["exec", "live", "test", "-f", "/vol/in-volume"])) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "container never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = env.cmd(&["export", "live"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = tar_names(&out.stdout);
    assert!(names.contains(&"live.txt".to_string()), "{names:?}");
    assert!(!names.contains(&"vol/in-volume".to_string()), "{names:?}");
    env.ok(&["rm", "-f", "-v", "live"]);
}

#[test]
fn commit_with_change_makes_an_image_that_runs() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "--name",
        "cm",
        "--network",
        "none",
        "-e",
        "GREETING=hi",
        "busybox",
        "sh",
        "-c",
        "echo hello-from-commit > /hello && rm /etc/group",
    ]);
    let id = env.ok(&[
        "commit",
        "-a",
        "Jane <jane@example.com>",
        "-m",
        "add hello",
        "-c",
        "CMD [\"cat\",\"/hello\"]",
        "-c",
        "LABEL stage=committed",
        "-c",
        "ENV EXTRA=1",
        "cm",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = env.ok(&["run", "--rm", "--network", "none", "committed:1"]);
    assert_eq!(out, "hello-from-commit\n");
    // the deletion is a whiteout in the new layer; the container's environment is kept
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "committed:1",
        "sh",
        "-c",
        "test -e /etc/group || echo gone; echo $GREETING $EXTRA",
    ]);
    assert_eq!(stdout(&out), "gone\nhi 1\n", "{}", stderr(&out));
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "committed:1"])).unwrap();
    let img = &inspect[0];
    assert_eq!(img["Author"], "Jane <jane@example.com>");
    assert_eq!(img["Config"]["Labels"]["stage"], "committed");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["cat", "/hello"]));
    let history = env.ok(&["history", "--no-trunc", "committed:1"]);
    assert!(history.contains("add hello"), "{history}");
    // a bad change is refused and names the instruction
    let out = env.run(&["commit", "-c", "RUN true", "cm"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("RUN"), "{}", stderr(&out));
    env.ok(&["rm", "cm"]);
    // a running container (not paused; `-p=false` accepted)
    env.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo live > /state && sleep 300",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while code(&env.run(&["exec", "busy", "test", "-f", "/state"])) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "container never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.ok(&["commit", "-p=false", "busy", "snap:live"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:live",
        "cat",
        "/state",
    ]);
    assert_eq!(out, "live\n");
    env.ok(&["rm", "-f", "busy"]);
}
