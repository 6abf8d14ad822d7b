//! Security settings of the sandbox (root only): capabilities, seccomp, privileged mode,
//! masked paths, ulimits, `/dev/shm` and the cgroup namespace.

use rbuild_executor::seccomp::Profile;
use rbuild_executor::security::{Seccomp, Security, Ulimit};
use rbuild_executor::{ExitStatus, NetworkMode, ProcessSpec, RunOptions, Stdio};

use crate::common::{UnmountGuard, busybox_rootfs, require_root, use_test_init};

/// Docker's default capability set as a `CapEff` mask.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

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
        for a in [
            "chown",
            "unshare",
            "mount",
            "df",
            "umount",
            "pivot_root",
            "linux32",
            "top",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        let guard = UnmountGuard(dir.path().to_path_buf());
        Some(Fixture { dir, _guard: guard })
    }

    fn spec(&self, script: &str) -> ProcessSpec {
        let mut s = ProcessSpec::new(
            self.dir.path().join("rootfs"),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        s.no_new_privs = false;
        s
    }

    fn run(&self, spec: &ProcessSpec) -> ExitStatus {
        rbuild_executor::run(
            spec,
            Stdio::Capture {
                tail: 200,
                on_line: None,
            },
            &RunOptions::default(),
        )
        .unwrap()
    }
}

fn out(st: &ExitStatus) -> String {
    st.tail.join("\n")
}

fn status_field(st: &ExitStatus, key: &str) -> String {
    st.tail
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

const STATUS: &str = "grep -E '^(Cap(Eff|Bnd|Prm)|Seccomp|NoNewPrivs):' /proc/self/status";

#[test]
fn defaults_are_dockers_caps_and_seccomp() {
    let Some(f) = Fixture::new("sandbox default security") else {
        return;
    };
    let st = f.run(&f.spec(STATUS));
    assert_eq!(st.code, 0, "{}", out(&st));
    assert_eq!(
        status_field(&st, "CapEff"),
        DOCKER_DEFAULT_CAPS,
        "{}",
        out(&st)
    );
    assert_eq!(status_field(&st, "CapBnd"), DOCKER_DEFAULT_CAPS);
    assert_eq!(status_field(&st, "Seccomp"), "2");
    assert_eq!(status_field(&st, "NoNewPrivs"), "0");
    let mut spec = f.spec(STATUS);
    spec.no_new_privs = true;
    let st = f.run(&spec);
    assert_eq!(status_field(&st, "NoNewPrivs"), "1", "{}", out(&st));
    assert_eq!(status_field(&st, "Seccomp"), "2");
}

#[test]
fn cap_drop_and_cap_add_change_what_root_may_do() {
    let Some(f) = Fixture::new("sandbox cap-add/cap-drop") else {
        return;
    };
    let mut spec = f.spec(&format!(
        "touch /tmp/x && chown 1 /tmp/x; echo rc=$?; {STATUS}"
    ));
    spec.security.cap_drop = vec!["chown".into()];
    let st = f.run(&spec);
    let o = out(&st);
    assert!(o.contains("rc=1"), "{o}");
    assert!(o.contains("Operation not permitted"), "{o}");
    assert_eq!(status_field(&st, "CapEff"), "00000000a80425fa", "{o}");

    let mut spec = f.spec("ip link set lo mtu 1000 && echo mtu-ok");
    spec.network = NetworkMode::None;
    let st = f.run(&spec);
    assert_ne!(st.code, 0, "{}", out(&st));
    spec.security.cap_add = vec!["NET_ADMIN".into()];
    let st = f.run(&spec);
    assert!(out(&st).contains("mtu-ok"), "{}", out(&st));

    let mut spec = f.spec(STATUS);
    spec.security.cap_drop = vec!["ALL".into()];
    spec.security.cap_add = vec!["CAP_KILL".into()];
    let st = f.run(&spec);
    assert_eq!(
        status_field(&st, "CapEff"),
        "0000000000000020",
        "{}",
        out(&st)
    );
    assert_eq!(status_field(&st, "CapBnd"), "0000000000000020");

    let mut spec = f.spec("true");
    spec.security.cap_add = vec!["FLY".into()];
    let e = rbuild_executor::run(&spec, Stdio::Null, &RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unknown capability"), "{e}");
}

#[test]
fn default_seccomp_blocks_namespaces_and_unconfined_or_privileged_lift_it() {
    let Some(f) = Fixture::new("sandbox seccomp") else {
        return;
    };
    let script = "unshare -U true && echo unshare-ok";
    let st = f.run(&f.spec(script));
    assert_ne!(st.code, 0);
    assert!(out(&st).contains("Operation not permitted"), "{}", out(&st));

    let mut spec = f.spec(&format!("{script}; {STATUS}"));
    spec.security.seccomp = Seccomp::Unconfined;
    let st = f.run(&spec);
    assert!(out(&st).contains("unshare-ok"), "{}", out(&st));
    assert_eq!(status_field(&st, "Seccomp"), "0");

    let mount = "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mount-ok";
    let st = f.run(&f.spec(mount));
    assert!(!out(&st).contains("mount-ok"), "{}", out(&st));
    let mut spec = f.spec(&format!("{mount}; {STATUS}"));
    spec.privileged = true;
    let st = f.run(&spec);
    assert!(out(&st).contains("mount-ok"), "{}", out(&st));
    assert_eq!(status_field(&st, "Seccomp"), "0");
    assert_ne!(status_field(&st, "CapEff"), DOCKER_DEFAULT_CAPS);
}

/// The default profile is an allow list: `pivot_root` is in none of its entries, so even
/// with CAP_SYS_ADMIN (which lets mount and unshare through) it fails with the filter's
/// EPERM, where the kernel alone would say ENOENT for missing directories.
#[test]
fn default_seccomp_is_an_allow_list_even_with_cap_sys_admin() {
    let Some(f) = Fixture::new("sandbox default seccomp allow list") else {
        return;
    };
    let script = "pivot_root /no-such-dir /no-such-dir/old; mkdir -p /mnt && mount -t tmpfs none /mnt && \
                  echo mount-ok; unshare -U true && echo unshare-ok; linux32 true && echo linux32-ok; \
                  ps >/dev/null && top -bn1 >/dev/null && echo ps-top-ok";
    let mut spec = f.spec(script);
    spec.security.cap_add = vec!["SYS_ADMIN".into()];
    let st = f.run(&spec);
    let o = out(&st);
    let pivot_root_error = |o: &str, why: &str| {
        o.lines()
            .any(|l| l.starts_with("pivot_root:") && l.ends_with(why))
    };
    assert!(pivot_root_error(&o, "Operation not permitted"), "{o}");
    for ok in ["mount-ok", "unshare-ok", "linux32-ok", "ps-top-ok"] {
        assert!(o.contains(ok), "{ok}: {o}");
    }
    spec.security.seccomp = Seccomp::Unconfined;
    let st = f.run(&spec);
    let o = out(&st);
    assert!(pivot_root_error(&o, "No such file or directory"), "{o}");
    assert!(!o.contains("Operation not permitted"), "{o}");
}

#[test]
fn custom_profile_denies_mkdir_with_eperm() {
    let Some(f) = Fixture::new("sandbox custom seccomp profile") else {
        return;
    };
    let profile: Profile = serde_json::from_str(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat","no_such_syscall"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let mut spec = f.spec("mkdir /x; echo rc=$?; touch /y && echo touch-ok");
    spec.security.seccomp = Seccomp::Profile(profile);
    let st = f.run(&spec);
    let o = out(&st);
    assert!(o.contains("Operation not permitted"), "{o}");
    assert!(o.contains("rc=1"), "{o}");
    assert!(o.contains("touch-ok"), "{o}");
}

#[test]
fn masked_and_read_only_paths_unless_privileged() {
    let Some(f) = Fixture::new("sandbox masked paths") else {
        return;
    };
    // A masked file the host's kernel has and shows (masked inside: empty).
    let masked = ["/proc/timer_list", "/proc/sched_debug", "/proc/keys"]
        .into_iter()
        .find(|f| std::fs::read(f).is_ok_and(|b| !b.is_empty()));
    let script = &format!(
        "echo masked=$(head -c 1 {} | wc -c); \
                  echo x > /proc/sys/kernel/hostname; echo sys=$?; \
                  echo procsys=$(grep -c ' /proc/sys ' /proc/mounts); \
                  echo devs=$(ls /dev | wc -l); grep ' /sys ' /proc/mounts",
        masked.unwrap_or("/proc/timer_list")
    );
    let value = |st: &ExitStatus, k: &str| -> usize {
        st.tail
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{k} missing: {}", out(st)))
    };
    let st = f.run(&f.spec(script));
    let o = out(&st);
    assert_eq!(value(&st, "masked"), 0, "{o}");
    assert!(o.contains("Read-only file system"), "{o}");
    assert_eq!(value(&st, "sys"), 1, "{o}");
    assert_eq!(value(&st, "procsys"), 1, "{o}");
    assert!(o.contains(" ro,"), "/sys read-only: {o}");

    let mut spec = f.spec(script);
    spec.privileged = true;
    let plain_devs = value(&st, "devs");
    let st = f.run(&spec);
    let o = out(&st);
    if masked.is_some() {
        assert_eq!(value(&st, "masked"), 1, "{o}");
    }
    assert_eq!(value(&st, "procsys"), 0, "{o}");
    assert!(o.contains(" rw,"), "/sys read-write when privileged: {o}");
    assert!(value(&st, "devs") > plain_devs, "host devices: {o}");
}

#[test]
fn ulimits_shm_size_and_cgroupns() {
    let Some(f) = Fixture::new("sandbox ulimits") else {
        return;
    };
    let mut spec = f.spec(
        "echo n=$(ulimit -n) h=$(ulimit -Hn); grep ' /dev/shm ' /proc/mounts; cat /proc/self/cgroup",
    );
    spec.security = Security {
        ulimits: vec![Ulimit {
            name: "nofile".into(),
            soft: 1234,
            hard: 2345,
        }],
        shm_size: Some(8 << 20),
        cgroupns_private: true,
        ..Security::default()
    };
    let st = f.run(&spec);
    let o = out(&st);
    assert!(o.contains("n=1234 h=2345"), "{o}");
    assert!(o.contains("size=8192k"), "{o}");
    let cg: Vec<&String> = st.tail.iter().filter(|l| l.contains(":/")).collect();
    assert!(!cg.is_empty(), "{o}");
    assert!(cg.iter().all(|l| l.ends_with(":/")), "{o}");

    let st = f.run(&f.spec("grep ' /dev/shm ' /proc/mounts; cat /proc/self/cgroup"));
    let o = out(&st);
    assert!(o.contains("size=65536k"), "{o}");
    assert!(
        st.tail
            .iter()
            .any(|l| l.contains("memory:/") && !l.ends_with(":/")),
        "host cgroup namespace by default on v1: {o}"
    );
}

#[test]
fn own_cgroup_is_visible_read_only_at_sys_fs_cgroup() {
    let Some(f) = Fixture::new("sandbox /sys/fs/cgroup") else {
        return;
    };
    let v1 = rbuild_executor::cgroup::version() == rbuild_executor::cgroup::Version::V1;
    let file = if v1 {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    } else {
        "/sys/fs/cgroup/memory.max"
    };
    let mut spec = f.spec(&format!(
        "echo limit=$(cat {file}); echo 1 > {file}; echo rc=$?; ls /sys/fs/cgroup"
    ));
    spec.limits.memory_bytes = Some(64 << 20);
    let st = f.run(&spec);
    let o = out(&st);
    assert!(o.contains(&format!("limit={}", 64u64 << 20)), "{o}");
    assert!(
        o.contains("rc=1") && o.contains("Read-only file system"),
        "{o}"
    );
    if v1 {
        assert!(st.tail.iter().any(|l| l == "pids"), "{o}");
    }
}
