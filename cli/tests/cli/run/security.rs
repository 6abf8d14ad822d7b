//! `rbuild run` security and resource flags as `docker run`'s: `--cap-add/--cap-drop`,
//! `--security-opt no-new-privileges|seccomp=...`, `--privileged`, masked paths, `--ulimit`,
//! `--shm-size`, `--memory-swap`, `--cpu-shares`, `--cpuset-cpus`, `--cgroupns`; and the
//! default seccomp filter of a build's `RUN` steps.

use std::path::Path;

use super::{Env, code, stdout};

/// Docker's default capability set as a `CapEff` mask.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

const STATUS: &str = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status";

/// The value of `key:` in `text` (a `/proc/self/status` excerpt).
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cap_add_and_cap_drop_change_the_capability_sets() {
    let Some(env) = Env::new() else { return };
    let o = env.ok(&["run", "--rm", "busybox", "sh", "-c", STATUS]);
    assert_eq!(field(&o, "CapEff"), DOCKER_DEFAULT_CAPS, "{o}");
    assert_eq!(field(&o, "CapBnd"), DOCKER_DEFAULT_CAPS, "{o}");

    let script = format!("touch /tmp/x; chown 1 /tmp/x; echo rc=$?; {STATUS}");
    let out = env.run(&[
        "run",
        "--rm",
        "--cap-drop",
        "chown",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let o = stdout(&out);
    assert!(o.contains("rc=1"), "{o}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(field(&o, "CapEff"), "00000000a80425fa", "{o}");
    assert_eq!(field(&o, "CapBnd"), "00000000a80425fa", "{o}");

    let mtu = "ip link set lo mtu 1000 && ip link show lo";
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        mtu,
    ]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "sh",
        "-c",
        mtu,
    ]);
    assert!(o.contains("mtu 1000"), "{o}");

    let o = env.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "cap_kill",
        "busybox",
        "sh",
        "-c",
        STATUS,
    ]);
    assert_eq!(field(&o, "CapEff"), "0000000000000020", "{o}");

    let out = env.run(&["run", "--rm", "--cap-add", "FLY", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("unknown capability"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn default_seccomp_no_new_privileges_and_unconfined() {
    let Some(env) = Env::new() else { return };
    let o = env.ok(&["run", "--rm", "busybox", "sh", "-c", STATUS]);
    assert_eq!(field(&o, "Seccomp"), "2", "{o}");
    assert_eq!(field(&o, "NoNewPrivs"), "0", "docker run's default: {o}");

    let out = env.run(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    let o = env.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sh",
        "-c",
        &format!("unshare -U true && echo unshare-ok; {STATUS}"),
    ]);
    assert!(o.contains("unshare-ok"), "{o}");
    assert_eq!(field(&o, "Seccomp"), "0", "{o}");
    assert_eq!(field(&o, "NoNewPrivs"), "1", "{o}");

    let out = env.run(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=maybe",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
}

#[test]
fn seccomp_profile_file_denies_mkdir_and_bad_json_names_the_file() {
    let Some(env) = Env::new() else { return };
    let profile = env.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["mkdir", "mkdirat", "not_a_syscall"], "action": "SCMP_ACT_ERRNO", "args": []}
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = env.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "mkdir /x; echo rc=$?; touch /y && echo touch-ok",
    ]);
    let o = stdout(&out);
    assert!(o.contains("rc=1") && o.contains("touch-ok"), "{o}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    let bad = env.path().join("broken.json");
    std::fs::write(&bad, "{\"defaultAction\": ").unwrap();
    let opt = format!("seccomp={}", bad.display());
    let out = env.run(&["run", "--rm", "--security-opt", &opt, "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));
    // Checked before the image is looked up (no pull of a missing image).
    let out = env.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--security-opt",
        &opt,
        "no-such-image",
    ]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));
}

#[test]
fn privileged_lifts_seccomp_masks_and_gets_host_devices() {
    let Some(env) = Env::new() else { return };
    // A masked file the host's kernel has and shows (masked inside: empty).
    let masked = ["/proc/timer_list", "/proc/sched_debug", "/proc/keys"]
        .into_iter()
        .find(|f| std::fs::read(f).is_ok_and(|b| !b.is_empty()));
    let script = &format!(
        "echo masked=$(head -c 1 {} | wc -c); \
                  echo x > /proc/sys/kernel/hostname; echo procsys=$?; \
                  echo devs=$(ls /dev | wc -l); \
                  mkdir -p /mnt && mount -t tmpfs none /mnt && echo mount-ok; ",
        masked.unwrap_or("/proc/timer_list")
    );
    let value = |o: &str, k: &str| -> usize {
        o.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{k} missing: {o}"))
    };
    let out = env.run(&["run", "--rm", "busybox", "sh", "-c", script]);
    let o = stdout(&out);
    assert_eq!(value(&o, "masked"), 0, "{o}");
    assert_eq!(value(&o, "procsys"), 1, "{o}");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!o.contains("mount-ok"), "{o}");

    let o = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("{script}{STATUS}"),
    ]);
    if masked.is_some() {
        assert_eq!(value(&o, "masked"), 1, "{o}");
    }
    assert!(o.contains("mount-ok"), "{o}");
    assert_eq!(field(&o, "Seccomp"), "0", "{o}");
    assert!(value(&o, "devs") > 20, "host devices: {o}");
    env.ok(&["create", "--privileged", "--name", "priv", "busybox"]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "priv"])).unwrap();
    assert_eq!(inspect[0]["HostConfig"]["Privileged"], true, "{inspect}");
    env.ok(&["rm", "priv"]);
}

#[test]
fn ulimit_shm_size_and_cgroupns() {
    let Some(env) = Env::new() else { return };
    let o = env.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1234:2345",
        "--shm-size",
        "16m",
        "--cgroupns",
        "private",
        "busybox",
        "sh",
        "-c",
        "echo n=$(ulimit -n) h=$(ulimit -Hn); grep ' /dev/shm ' /proc/mounts; cat /proc/self/cgroup",
    ]);
    assert!(o.contains("n=1234 h=2345"), "{o}");
    assert!(o.contains("size=16384k"), "{o}");
    let cg: Vec<&str> = o.lines().filter(|l| l.contains(":/")).collect();
    assert!(
        !cg.is_empty() && cg.iter().all(|l| l.ends_with(":/")),
        "{o}"
    );

    let o = env.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep ' /dev/shm ' /proc/mounts; cat /proc/self/cgroup",
    ]);
    assert!(o.contains("size=65536k"), "docker's 64m default: {o}");
    if rbuild_executor::cgroup::version() == rbuild_executor::cgroup::Version::V1 {
        assert!(
            o.lines()
                .any(|l| l.contains(":memory:/") && !l.ends_with(":/")),
            "host cgroup namespace by default on v1: {o}"
        );
    }

    for bad in [
        &["--ulimit", "nofile=10:5"][..],
        &["--ulimit", "bogus=1"],
        &["--cgroupns", "sideways"],
        &["--shm-size", "0"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(bad);
        args.extend_from_slice(&["busybox", "true"]);
        assert_eq!(code(&env.run(&args)), 125, "{bad:?}");
    }
}

/// The v1 directory (or v2 unified group) of `controller` of a running process.
fn cgroup_dir(pid: i64, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
        if ctrls.split(',').any(|c| c == controller) {
            let mount = Path::new("/sys/fs/cgroup").join(ctrls);
            let mount = if mount.exists() {
                mount
            } else {
                Path::new("/sys/fs/cgroup").join(controller)
            };
            return mount.join(path.trim_start_matches('/'));
        }
        if ctrls.is_empty()
            && rbuild_executor::cgroup::version() == rbuild_executor::cgroup::Version::V2
        {
            return Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller} cgroup in {text}");
}

#[test]
fn memory_swap_cpu_shares_and_cpuset_reach_the_cgroup() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "60",
    ]);
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "limited"])).unwrap();
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["MemorySwap"], 128 << 20, "{host}");
    assert_eq!(host["CpuShares"], 512, "{host}");
    let pid = inspect[0]["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{inspect}");
    let read = |ctrl: &str, file: &str| {
        let p = cgroup_dir(pid, ctrl).join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    if rbuild_executor::cgroup::version() == rbuild_executor::cgroup::Version::V1 {
        let memsw = cgroup_dir(pid, "memory").join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(
                read("memory", "memory.memsw.limit_in_bytes"),
                (128u64 << 20).to_string()
            );
        }
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    } else {
        assert_eq!(read("", "memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(read("", "cpu.weight"), "20");
        assert_eq!(read("", "cpuset.cpus"), "0");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(field(&status, "Cpus_allowed_list"), "0", "{status}");
    env.ok(&["rm", "-f", "limited"]);

    let out = env.run(&["run", "--rm", "--memory-swap", "128m", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("Memory limit"), "{}", stderr(&out));
    let out = env.run(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--memory-swap",
        "32m",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("memoryswap"), "{}", stderr(&out));
}

#[test]
fn build_run_steps_get_the_default_seccomp_filter() {
    let Some(env) = Env::new() else { return };
    let ctx = env.path().join("seccomp-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN grep -E '^(Seccomp|CapEff):' /proc/self/status\n",
    )
    .unwrap();
    let out = env.run(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "-t",
        "seccomp-test",
        ctx.to_str().unwrap(),
    ]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains("Seccomp:") && l.trim_end().ends_with('2')),
        "{all}"
    );
    assert!(all.contains(DOCKER_DEFAULT_CAPS), "{all}");

    // RUN --security=insecure: every capability and no filter, as BuildKit.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --security=insecure grep -E '^Seccomp:' /proc/self/status\n",
    )
    .unwrap();
    let out = env.run(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "--allow",
        "security.insecure",
        ctx.to_str().unwrap(),
    ]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains("Seccomp:") && l.trim_end().ends_with('0')),
        "{all}"
    );
}

#[test]
fn exec_gets_the_containers_capabilities_and_seccomp() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "sec",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "sleep",
        "60",
    ]);
    let o = env.ok(&["exec", "sec", "sh", "-c", STATUS]);
    assert_eq!(field(&o, "CapEff"), "00000000a80425fa", "{o}");
    assert_eq!(field(&o, "Seccomp"), "2", "{o}");
    let o = env.ok(&["exec", "--privileged", "sec", "sh", "-c", STATUS]);
    assert_eq!(field(&o, "Seccomp"), "0", "{o}");
    assert_ne!(field(&o, "CapEff"), "00000000a80425fa", "{o}");
    env.ok(&["rm", "-f", "sec"]);

    env.ok(&[
        "run",
        "-d",
        "--name",
        "cgns",
        "--cgroupns",
        "private",
        "busybox",
        "sleep",
        "60",
    ]);
    let o = env.ok(&["exec", "cgns", "cat", "/proc/self/cgroup"]);
    let cg: Vec<&str> = o.lines().filter(|l| l.contains(":/")).collect();
    assert!(
        !cg.is_empty() && cg.iter().all(|l| l.ends_with(":/")),
        "{o}"
    );
    env.ok(&["rm", "-f", "cgns"]);
}

#[test]
fn build_ulimit_and_shm_size_reach_run_steps() {
    let Some(env) = Env::new() else { return };
    let ctx = env.path().join("ulimit-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo n=$(ulimit -n) h=$(ulimit -Hn); grep ' /dev/shm ' /proc/mounts\n",
    )
    .unwrap();
    let out = env.run(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "--ulimit",
        "nofile=1500:3000",
        "--shm-size",
        "8m",
        ctx.to_str().unwrap(),
    ]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{all}");
    assert!(all.contains("n=1500 h=3000"), "{all}");
    assert!(all.contains("size=8192k"), "{all}");
    let out = env.run(&["build", "--ulimit", "nofile=9:1", ctx.to_str().unwrap()]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("ulimit"), "{}", stderr(&out));
}
