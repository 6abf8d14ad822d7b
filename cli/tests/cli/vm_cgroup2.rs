//! rbuild's cgroup v2 support on a real cgroup-v2 kernel: `scripts/vm-cgroup2` boots Debian's
//! kernel in qemu on the unified hierarchy alone and runs `scripts/vm-cgroup2-checks` in it
//! with this build's `rbuild` (limits, OOM, cgroup namespace, exec, build, cleanup). The
//! host itself may run cgroup v1, where those paths cannot be exercised.

use std::process::Command;

use crate::workspace;

#[test]
fn cgroup_v2_limits_oom_namespace_exec_and_cleanup_on_a_v2_kernel() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("skipped: no /dev/kvm (scripts/vm-cgroup2 runs the checks in a VM)");
        return;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: qemu-system-x86_64 missing (apt-get install qemu-system-x86)");
        return;
    }
    let out = Command::new(workspace().join("scripts/vm-cgroup2"))
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .output()
        .expect("scripts/vm-cgroup2 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/vm-cgroup2 failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Each check printed `ok`, none `FAIL`, and there were checks at all.
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("ok   1 - "), "{stdout}");
    assert!(stdout.contains("checks, all passed"), "{stdout}");
}
