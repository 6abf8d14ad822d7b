//! Volumes (`-v NAME:/path`, `-v /path`, the image's VOLUME, `rbuild volume ...`) and
//! `--mount type=bind|volume|tmpfs`, as root on the busybox image.

use super::{Env, code, stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn volume_names(env: &Env) -> Vec<String> {
    env.ok(&["volume", "ls", "-q"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// An image `seeded:1` whose `VOLUME /seed` holds `/seed/file` ("seeded").
fn seeded_image(env: &Env) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN mkdir /seed && echo seeded > /seed/file && chown 1:1 /seed\nVOLUME /seed\n",
    )
    .unwrap();
    env.root
        .build_ok(&["-t", "seeded:1", ctx.path().to_str().unwrap()]);
}

#[test]
fn named_volume_written_by_one_container_is_read_by_another() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo from-first > /data/f",
    ]);
    assert_eq!(volume_names(&env), ["shared"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "shared:/data:ro",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.trim(), "from-first");
    // read-only really is
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "shared:/data:ro",
        "busybox",
        "touch",
        "/data/g",
    ]);
    assert_ne!(code(&out), 0);
    // --rm keeps named volumes; inspect shows where the data lives
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "shared"])).unwrap();
    let mp = inspect[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(mp).join("f")).unwrap(),
        "from-first\n"
    );
    env.ok(&["volume", "rm", "shared"]);
    assert!(volume_names(&env).is_empty());
    let out = env.run(&["volume", "rm", "shared"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
    env.ok(&["volume", "rm", "-f", "shared"]);
}

#[test]
fn image_volume_content_is_copied_into_a_new_anonymous_volume() {
    let Some(env) = Env::new() else { return };
    seeded_image(&env);
    let out = env.ok(&[
        "run",
        "--name",
        "seeded",
        "--network",
        "none",
        "seeded:1",
        "sh",
        "-c",
        "cat /seed/file; stat -c %u /seed",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["seeded", "1"]);
    let vols = volume_names(&env);
    assert_eq!(vols.len(), 1, "{vols:?}");
    let anon = &vols[0];
    assert_eq!(anon.len(), 64);
    // in use by the (stopped) container: refused, as docker does
    let out = env.run(&["volume", "rm", anon]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    let dangling = env.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert!(dangling.trim().is_empty(), "{dangling}");
    // `rm -v` removes the anonymous volume
    env.ok(&["rm", "-v", "seeded"]);
    assert!(volume_names(&env).is_empty());
    // a new named volume is populated too, unless nocopy
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "named:/seed",
        "seeded:1",
        "cat",
        "/seed/file",
    ]);
    assert_eq!(out.trim(), "seeded");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "empty:/seed:nocopy",
        "seeded:1",
        "ls",
        "-A",
        "/seed",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "");
    // `--rm` removed the image's anonymous volumes of those runs; named ones stay
    assert_eq!(volume_names(&env), ["empty", "named"]);
}

#[test]
fn volume_create_ls_filters_and_prune() {
    let Some(env) = Env::new() else { return };
    assert_eq!(
        env.ok(&["volume", "create", "--label", "team=a", "va"])
            .trim(),
        "va"
    );
    env.ok(&["volume", "create", "vb"]);
    let anon = env.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64);
    let out = env.ok(&["volume", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(out.trim(), "va");
    let out = env.ok(&["volume", "ls", "-q", "--filter", "name=v"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["va", "vb"]);
    let table = env.ok(&["volume", "ls"]);
    assert!(
        table.starts_with("DRIVER") && table.contains("local"),
        "{table}"
    );
    let out = env.run(&["volume", "create", "bad/name"]);
    assert_eq!(code(&out), 1);
    // an in-use volume survives prune -a
    env.ok(&[
        "create",
        "--name",
        "user",
        "--network",
        "none",
        "-v",
        "vb:/x",
        "busybox",
        "true",
    ]);
    // prune: only unused anonymous volumes
    let out = env.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(&anon), "{out}");
    assert_eq!(volume_names(&env), ["va", "vb"]);
    env.ok(&["volume", "prune", "-f", "-a"]);
    assert_eq!(volume_names(&env), ["vb"]);
    env.ok(&["rm", "user"]);
    env.ok(&["volume", "prune", "-af"]);
    assert!(volume_names(&env).is_empty());
}

#[test]
fn mount_flag_bind_volume_and_tmpfs() {
    let Some(env) = Env::new() else { return };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "host-file\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/h,readonly,bind-propagation=rprivate",
        host.path().display()
    );
    let out = env.run(&[
        "run", "--rm", "--network", "none", "--mount", &bind, "--mount",
        "type=volume,src=mvol,dst=/m,volume-label=k=v", "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770", "busybox", "sh", "-c",
        "cat /h/in; echo vol > /m/f; stat -c %a /t; grep ' /t ' /proc/mounts | grep -c size=1024k; touch /h/no || echo ro",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["host-file", "1770", "1", "ro"]
    );
    assert!(!host.path().join("no").exists());
    let out = env.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]);
    assert_eq!(out.trim(), "mvol");
    // cp into a stopped container's volume lands in the volume; inspect lists the mounts
    env.ok(&[
        "create",
        "--name",
        "holder",
        "--network",
        "none",
        "--mount",
        "src=mvol,dst=/m",
        "--mount",
        &bind,
        "busybox",
        "true",
    ]);
    env.ok(&[
        "cp",
        host.path().join("in").to_str().unwrap(),
        "holder:/m/copied",
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "holder"])).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "bind");
    assert_eq!(mounts[0]["RW"], false);
    assert_eq!(mounts[1]["Name"], "mvol");
    let data = mounts[1]["Source"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(data).join("copied")).unwrap(),
        "host-file\n"
    );
    env.ok(&["rm", "holder"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        "source=mvol,target=/again",
        "busybox",
        "cat",
        "/again/f",
    ]);
    assert_eq!(out.trim(), "vol");

    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/tmp,dst=/x,colour=red",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("unexpected key 'colour'"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/no/such/dir,dst=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("bind source path does not exist: /no/such/dir"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,volume-nocopy",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("volume-nocopy"), "{}", stderr(&out));
    env.ok(&["volume", "rm", "mvol"]);
}

#[test]
fn read_only_rootfs_with_a_volume_and_a_tmpfs() {
    let Some(env) = Env::new() else { return };
    let out = env.run(&[
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        "-v",
        "rov:/data/deep",
        "--tmpfs",
        "/scratch:size=1m,mode=700",
        "busybox",
        "sh",
        "-c",
        "echo ok > /data/deep/f && stat -c %a /scratch && (touch /x 2>/dev/null || echo ro-root)",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "700\nro-root\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "rov"])).unwrap();
    let mp = inspect[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(mp).join("f")).unwrap(),
        "ok\n"
    );
    env.ok(&["volume", "rm", "rov"]);
}

/// The `system df` row of `kind` as (TOTAL, ACTIVE).
fn df_row(env: &Env, kind: &str) -> (String, String) {
    let out = env.ok(&["system", "df"]);
    let line = out
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} row in:\n{out}"));
    let cols: Vec<&str> = line[kind.len()..].split_whitespace().collect();
    (cols[0].to_string(), cols[1].to_string())
}

#[test]
fn system_df_counts_volumes_and_containers_and_prune_volumes_takes_unused_anonymous_ones() {
    let Some(env) = Env::new() else { return };
    env.ok(&["volume", "create", "keep"]);
    // A stopped container holding an anonymous volume, then one whose volume is left over.
    env.ok(&[
        "create",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "/held",
        "busybox",
        "true",
    ]);
    env.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "gone",
        "-v",
        "/spare",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /spare/f",
    ]);
    env.ok(&["rm", "gone"]);
    assert_eq!(volume_names(&env).len(), 3, "{:?}", volume_names(&env));
    assert_eq!(df_row(&env, "Local Volumes"), ("3".into(), "1".into()));
    assert_eq!(df_row(&env, "Containers"), ("1".into(), "0".into()));
    let mounts = env.ok(&["inspect", "-f", "{{json .Mounts}}", "holder"]);
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    let held = mounts[0]["Name"].as_str().unwrap().to_string();
    assert!(volume_names(&env).contains(&held), "{mounts}");

    // Without --volumes nothing but the stopped container goes.
    let out = env.ok(&["system", "prune", "-f"]);
    assert!(!out.contains("Deleted Volumes"), "{out}");
    assert_eq!(df_row(&env, "Containers"), ("0".into(), "0".into()));
    assert_eq!(volume_names(&env).len(), 3);

    // The anonymous volumes go (the holder's too, now unused); the named one stays.
    let out = env.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert!(out.contains(&held), "{out}");
    assert_eq!(volume_names(&env), vec!["keep".to_string()]);
    assert_eq!(df_row(&env, "Local Volumes"), ("1".into(), "0".into()));
}
