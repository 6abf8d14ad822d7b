//! Helpers shared by the executor's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Once;

/// True when running as root; otherwise prints `skipped: <what> needs root` and returns false.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: {what} needs root");
        false
    }
}

/// Points the sandbox at the crate's init binary (the test harness owns this binary's main).
pub fn use_test_init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rbuild_executor::sandbox::set_init_program(env!("CARGO_BIN_EXE_rbuild-sandbox-init"));
    });
}

/// The applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "ls", "sleep", "hostname", "ip", "dd", "head", "tail", "wc", "true",
    "false", "mkdir", "touch", "rm", "ps", "env", "pwd", "grep", "seq", "test", "kill", "chmod",
    "printf", "sed",
];

/// Makes a busybox rootfs at `root` (Debian's busybox-static), or returns false with a
/// `skipped:` message when busybox is missing.
pub fn busybox_rootfs(root: &Path) -> bool {
    let bb = Path::new("/bin/busybox");
    if !bb.exists() {
        eprintln!("skipped: /bin/busybox (busybox-static) is not installed");
        return false;
    }
    for d in [
        "bin", "etc", "tmp", "proc", "dev", "sys", "root", "home/app",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(bb, root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    true
}

/// Mount points under `prefix` listed in /proc/self/mountinfo.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// Unmounts (lazily) everything under a directory on drop, deepest first.
pub struct UnmountGuard(pub PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        let mut m = mounts_under(&self.0);
        m.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in m {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
