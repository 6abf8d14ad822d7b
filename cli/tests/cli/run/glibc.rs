//! A glibc userland (Debian 12 from debootstrap, `scripts/debian-image`): what the busybox
//! tests cannot show — NSS lookups, `useradd`, dpkg, coreutils — under the default seccomp
//! profile and capabilities, in a build and in containers.

use super::{Env, code, stdout};

/// Imports `debian:bookworm` into the test's root; false (printing why) when debootstrap or
/// the Debian mirror is not available.
fn debian(env: &Env) -> bool {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian");
    let out = std::process::Command::new(crate::workspace().join("scripts/debian-image"))
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg(&cache)
        .env("RBUILD_ROOT", env.path())
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "skipped: no Debian base image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return false;
    }
    true
}

#[test]
fn a_glibc_image_builds_and_runs_with_its_users_and_packages() {
    let Some(env) = Env::new() else { return };
    if !debian(&env) {
        return;
    }
    let ctx = crate::build::dockerfile_dir(
        "FROM debian:bookworm\n\
         RUN useradd -m -u 1234 -s /bin/bash app \\\n\
          && dpkg-query -W -f '${Package} ${Status}\\n' coreutils > /pkgs\n\
         USER app\n\
         WORKDIR /home/app\n\
         RUN id -un > whoami && getent passwd app | cut -d: -f6 > home && sort --version | head -1 > sort.txt\n",
    );
    env.root
        .build_ok(&["-t", "glibc:1", ctx.path().to_str().unwrap()]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "glibc:1",
        "bash",
        "-c",
        "cat /pkgs whoami home; id -u; pwd; head -c 9 sort.txt; echo",
    ]);
    assert_eq!(
        out,
        "coreutils install ok installed\napp\n/home/app\n1234\n/home/app\nsort (GNU\n"
    );
    // The image's CMD (bash) with -it is covered by the busybox tty tests; here exec into a
    // running glibc container, as another user and as root.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "deb",
        "--network",
        "none",
        "glibc:1",
        "sleep",
        "300",
    ]);
    let out = env.run(&[
        "exec",
        "deb",
        "bash",
        "-c",
        "ls -ld /home/app | cut -d' ' -f3",
    ]);
    assert_eq!((code(&out), stdout(&out).trim()), (0, "app"));
    let out = env.run(&["exec", "-u", "0", "deb", "apt-get", "--version"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).starts_with("apt "), "{}", stdout(&out));
    env.ok(&["rm", "-f", "deb"]);
}
