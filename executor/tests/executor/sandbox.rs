//! Sandbox tests on a busybox rootfs (root only).

use std::path::Path;

use rbuild_executor::cgroup::Limits;
use rbuild_executor::sandbox::{EtcFiles, Stream};
use rbuild_executor::{ExitStatus, MountSpec, NetworkMode, ProcessSpec, RunOptions, Stdio};

use crate::common::{UnmountGuard, busybox_rootfs, mounts_under, require_root, use_test_init};

/// A temp dir with a busybox rootfs in `rootfs/`, unmounted and removed on drop.
struct Fixture {
    dir: tempfile::TempDir,
    _guard: UnmountGuard,
}

impl Fixture {
    fn new(what: &str) -> Option<Self> {
        if !require_root(what) {
            return None;
        }
        use_test_init();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        if !busybox_rootfs(&rootfs) {
            return None;
        }
        let guard = UnmountGuard(dir.path().to_path_buf());
        Some(Fixture { dir, _guard: guard })
    }

    fn rootfs(&self) -> std::path::PathBuf {
        self.dir.path().join("rootfs")
    }

    fn spec(&self, script: &str) -> ProcessSpec {
        ProcessSpec::new(
            self.rootfs(),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        )
    }

    fn run(&self, spec: &ProcessSpec) -> ExitStatus {
        let st = rbuild_executor::run(
            spec,
            Stdio::Capture {
                tail: 200,
                on_line: None,
            },
            &RunOptions::default(),
        )
        .unwrap();
        assert!(
            mounts_under(self.dir.path()).is_empty(),
            "mounts left: {:?}",
            mounts_under(self.dir.path())
        );
        st
    }

    fn sh(&self, script: &str) -> ExitStatus {
        self.run(&self.spec(script))
    }
}

fn out(st: &ExitStatus) -> String {
    st.tail.join("\n")
}

#[test]
fn exit_codes() {
    let Some(f) = Fixture::new("sandbox exit codes") else {
        return;
    };
    assert_eq!(f.sh("exit 0").code, 0);
    assert_eq!(f.sh("exit 3").code, 3);
    std::fs::write(f.rootfs().join("notexec"), "#!/bin/sh\necho hi\n").unwrap();
    let st = f.run(&ProcessSpec::new(f.rootfs(), vec!["/notexec".into()]));
    assert_eq!(st.code, 126, "{st:?}");
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("permission denied"),
        "{st:?}"
    );
    let st = f.run(&ProcessSpec::new(f.rootfs(), vec!["nosuchcmd".into()]));
    assert_eq!(st.code, 127, "{st:?}");
    assert!(
        st.message.as_deref().unwrap_or("").contains("nosuchcmd"),
        "{st:?}"
    );
    let st = f.run(&ProcessSpec::new(f.rootfs(), vec!["/bin/nope".into()]));
    assert_eq!(st.code, 127, "{st:?}");
    // A child killed by a signal: the shell reports 128+N (PID 1 itself ignores signals it
    // has no handler for, as in Docker).
    let st = f.sh("sh -c 'kill -TERM $$'; exit $?");
    assert_eq!(st.code, 143, "{st:?}");
}

#[test]
fn env_cwd_and_output_lines() {
    let Some(f) = Fixture::new("sandbox env") else {
        return;
    };
    let mut spec = f.spec("echo \"$FOO\"; pwd; echo err >&2; echo $HOME");
    spec.env.push("FOO=bar baz".into());
    spec.cwd = "/work/dir".into();
    spec.user = "app".into();
    let mut lines = Vec::new();
    let mut cb = |s: Stream, l: &str| lines.push((s, l.to_string()));
    let st = rbuild_executor::run(
        &spec,
        Stdio::Capture {
            tail: 2,
            on_line: Some(&mut cb),
        },
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(st.code, 0, "{st:?}");
    assert!(
        lines.contains(&(Stream::Stdout, "bar baz".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stdout, "/work/dir".into())),
        "{lines:?}"
    );
    assert!(lines.contains(&(Stream::Stderr, "err".into())), "{lines:?}");
    assert!(
        lines.contains(&(Stream::Stdout, "/home/app".into())),
        "{lines:?}"
    );
    assert_eq!(st.tail.len(), 2);
    // The missing working directory was created, owned by the user.
    let m = std::fs::metadata(f.rootfs().join("work/dir")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), 1000);
}

#[test]
fn users() {
    let Some(f) = Fixture::new("sandbox users") else {
        return;
    };
    let mut spec = f.spec("id -u; id -g; id -G");
    spec.user = "1000".into();
    let st = f.run(&spec);
    assert_eq!(st.tail, vec!["1000", "1000", "1000 50"], "{st:?}");
    spec.user = "app:staff".into();
    assert_eq!(f.run(&spec).tail[..2], ["1000", "50"]);
    spec.user = "4321:77".into();
    assert_eq!(f.run(&spec).tail[..2], ["4321", "77"]);
    spec.user = "nobody".into();
    let e = rbuild_executor::run(&spec, Stdio::Null, &RunOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("no matching entries in passwd file"),
        "{e}"
    );
    // root keeps Docker's default capabilities; others have none.
    spec.user = String::new();
    spec.argv[2] = "grep -E '^Cap(Eff|Bnd)' /proc/self/status".into();
    assert_eq!(
        f.run(&spec).tail,
        vec!["CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb"]
    );
    spec.user = "app".into();
    assert_eq!(f.run(&spec).tail[0], "CapEff:\t0000000000000000");
}

#[test]
fn namespaces_pid_hostname_proc() {
    let Some(f) = Fixture::new("sandbox namespaces") else {
        return;
    };
    let mut spec = f.spec("echo $$; hostname; ls /proc | grep -E '^[0-9]+$' | wc -l; ls /dev");
    spec.hostname = "buildhost".into();
    let st = f.run(&spec);
    assert_eq!(st.tail[0], "1");
    assert_eq!(st.tail[1], "buildhost");
    // sh, ls, grep and wc: only the sandbox's processes.
    let n: u32 = st.tail[2].trim().parse().unwrap();
    assert!(n <= 4, "{st:?}");
    for d in ["null", "zero", "urandom", "tty", "pts", "shm", "ptmx"] {
        assert!(st.tail.iter().any(|l| l == d), "/dev/{d} missing: {st:?}");
    }
}

#[test]
fn network_none_has_only_lo() {
    let Some(f) = Fixture::new("sandbox network") else {
        return;
    };
    let mut spec = f.spec("tail -n +3 /proc/net/dev | sed 's/:.*//'");
    spec.network = NetworkMode::None;
    let st = f.run(&spec);
    let names: Vec<&str> = st.tail.iter().map(|l| l.trim()).collect();
    assert_eq!(names, vec!["lo"], "{st:?}");
    spec.argv[2] = "ip link".into();
    let st = f.run(&spec);
    assert!(
        st.tail[0].contains("lo:") && st.tail[0].contains("UP"),
        "{st:?}"
    );
    assert_eq!(st.tail.len(), 2, "{st:?}");
}

#[test]
fn mounts_and_etc_files() {
    let Some(f) = Fixture::new("sandbox mounts") else {
        return;
    };
    let host = f.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    let mut spec = f.spec(
        "cat /etc/resolv.conf /etc/hosts /mnt/ro/in.txt; echo; \
         touch /mnt/ro/x 2>/dev/null && echo ro-writable; \
         echo w > /mnt/rw/out.txt; df /scratch >/dev/null && echo tmpfs-ok",
    );
    spec.etc = EtcFiles {
        resolv_conf: Some("nameserver 192.0.2.53\n".into()),
        hosts: Some("127.0.0.1 localhost\n".into()),
        hostname: None,
    };
    spec.mounts = vec![
        MountSpec::Bind {
            source: host.clone(),
            target: "/mnt/ro".into(),
            readonly: true,
        },
        MountSpec::Bind {
            source: host.clone(),
            target: "/mnt/rw".into(),
            readonly: false,
        },
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            size_bytes: Some(1 << 20),
            mode: None,
        },
    ];
    let st = f.run(&spec);
    let o = out(&st);
    assert!(o.contains("nameserver 192.0.2.53"), "{o}");
    assert!(o.contains("127.0.0.1 localhost"), "{o}");
    assert!(o.contains("from host"), "{o}");
    assert!(!o.contains("ro-writable"), "{o}");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "w\n"
    );
    // Stubs created for the mounts are gone again.
    for p in ["etc/resolv.conf", "etc/hosts", "mnt", "scratch"] {
        assert!(!f.rootfs().join(p).exists(), "{p} left in the rootfs");
    }
}

#[test]
fn nothing_outlives_the_step() {
    let Some(f) = Fixture::new("sandbox reaping") else {
        return;
    };
    let marker = "rbuild-test-sleeper-4242";
    let st = f.sh(&format!(
        "(exec -a {marker} sleep 1000) & (setsid sleep 999 &) ; echo started"
    ));
    assert_eq!(st.code, 0);
    // No process of the step is left on the host.
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) || cmd.starts_with("sleep 999") {
                left.push(cmd);
            }
        }
    }
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn memory_limit_oom_is_137() {
    let Some(f) = Fixture::new("sandbox OOM") else {
        return;
    };
    let mut spec = f.spec("dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived");
    spec.limits = Limits {
        memory_bytes: Some(32 << 20),
        ..Limits::default()
    };
    let st = f.run(&spec);
    // dd is OOM-killed; the shell then reports it with 137 unless it was killed itself.
    assert!(st.oom_killed, "{st:?}");
    let mut spec = f.spec("dd if=/dev/zero of=/dev/null bs=256M count=1");
    spec.argv = vec![
        "/bin/dd".into(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=256M".into(),
        "count=1".into(),
    ];
    spec.limits.memory_bytes = Some(32 << 20);
    let st = f.run(&spec);
    assert_eq!(st.code, 137, "{st:?}");
    assert!(st.oom_killed);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(f) = Fixture::new("sandbox pids limit") else {
        return;
    };
    // Bounded: at most 200 attempts, each child sleeps 2 s.
    let mut spec = f.spec(
        "n=0; i=0; while [ $i -lt 200 ]; do sleep 2 2>/dev/null & i=$((i+1)); done; \
         ls /proc | grep -cE '^[0-9]+$'",
    );
    spec.limits = Limits {
        pids_max: Some(20),
        ..Limits::default()
    };
    let st = f.run(&spec);
    let o = out(&st);
    assert!(
        o.contains("can't fork") || o.contains("Resource temporarily unavailable"),
        "{o}"
    );
}

#[test]
fn no_leftover_cgroups() {
    let Some(f) = Fixture::new("sandbox cgroups") else {
        return;
    };
    let st = f.sh("cat /proc/self/cgroup");
    let o = out(&st);
    assert!(o.contains("rbuild/run-"), "{o}");
    // The run's cgroup directories are gone.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let _ = own;
    let name = o
        .lines()
        .find_map(|l| l.split("rbuild/").nth(1))
        .unwrap()
        .to_string();
    let mut found = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        if d.components().count() > 12 {
            continue;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if e.file_name().to_string_lossy() == name {
                        found.push(e.path());
                    }
                    stack.push(e.path());
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn missing_rootfs_is_an_error() {
    if !require_root("sandbox spec validation") {
        return;
    }
    let spec = ProcessSpec::new(Path::new("/nonexistent-rootfs"), vec!["true".into()]);
    assert!(rbuild_executor::run(&spec, Stdio::Null, &RunOptions::default()).is_err());
}

#[test]
fn generated_etc_files_stay_out_of_the_upper_dir() {
    use rbuild_executor::snapshot::{self, Backend, Snapshotter};
    let Some(f) = Fixture::new("sandbox on an overlay snapshot") else {
        return;
    };
    let s = Snapshotter::open(f.dir.path().join("store")).unwrap();
    if s.backend() != Backend::Overlay {
        eprintln!("skipped: overlayfs is not available here");
        return;
    }
    let base = f.rootfs();
    s.import_layer_dir("base", None, |d| {
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.display()))
            .arg(d)
            .status()
            .unwrap();
        assert!(st.success());
        Ok(())
    })
    .unwrap();
    let m = s.prepare("step", Some("base")).unwrap();
    let merged = f.dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    s.mount(&m, &merged).unwrap();
    let mut spec = ProcessSpec::new(
        &merged,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "cat /etc/resolv.conf; echo data > /out.txt".into(),
        ],
    );
    spec.etc.resolv_conf = Some("nameserver 192.0.2.1\n".into());
    spec.etc.hosts = Some("127.0.0.1 localhost\n".into());
    spec.etc.hostname = Some("step\n".into());
    let st = rbuild_executor::run(
        &spec,
        Stdio::Capture {
            tail: 10,
            on_line: None,
        },
        &RunOptions::default(),
    );
    snapshot::unmount(&merged).unwrap();
    let st = st.unwrap();
    assert_eq!(st.tail, vec!["nameserver 192.0.2.1"], "{st:?}");
    let upper = s.diff_dir("step").unwrap();
    assert!(upper.join("out.txt").exists());
    for p in ["etc/resolv.conf", "etc/hosts", "etc/hostname"] {
        assert!(
            std::fs::symlink_metadata(upper.join(p)).is_err(),
            "{p} in the upper dir"
        );
    }
}

#[test]
fn inherit_stdio_and_cancel() {
    let Some(f) = Fixture::new("sandbox stdio") else {
        return;
    };
    let st =
        rbuild_executor::run(&f.spec("exit 5"), Stdio::Inherit, &RunOptions::default()).unwrap();
    assert_eq!(st.code, 5);
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let start = std::time::Instant::now();
    let st = rbuild_executor::run(
        &f.spec("sleep 100"),
        Stdio::Null,
        &RunOptions {
            cancel: Some(cancel),
            ..Default::default()
        },
    )
    .unwrap();
    t.join().unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(st.code, 137, "{st:?}");
}

#[test]
fn dangling_resolv_conf_symlink_gets_a_temporary_stub() {
    let Some(f) = Fixture::new("sandbox resolv.conf symlink") else {
        return;
    };
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        f.rootfs().join("etc/resolv.conf"),
    )
    .unwrap();
    let mut spec = f.spec("cat /etc/resolv.conf");
    spec.etc.resolv_conf = Some("nameserver 192.0.2.7\n".into());
    let st = f.run(&spec);
    assert_eq!(st.tail, vec!["nameserver 192.0.2.7"], "{st:?}");
    assert!(!f.rootfs().join("run").exists(), "stub left behind");
    assert!(
        std::fs::symlink_metadata(f.rootfs().join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
