//! `--platform` for another architecture: RUN steps execute the platform's binaries through
//! the kernel's binfmt_misc handlers that qemu-user-static registers (`qemu-<arch>`). Only
//! handlers with the `F` (fix binary) flag work: the kernel opens the interpreter when the
//! handler is registered, so it need not exist inside the build's root filesystem. Without
//! one, the build fails up front naming the handler and the Debian packages.

use std::path::Path;

use rbuild_exporter::image::Platform;

/// Where the kernel lists binfmt_misc handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The binfmt_misc handler qemu-user-static registers for a (normalised) architecture.
fn handler_name(p: &Platform) -> Option<&'static str> {
    Some(match (p.architecture.as_str(), p.variant.as_deref()) {
        ("amd64", _) => "qemu-x86_64",
        ("386", _) => "qemu-i386",
        ("arm64", _) => "qemu-aarch64",
        ("arm", _) => "qemu-arm",
        ("ppc64le", _) => "qemu-ppc64le",
        ("ppc64", _) => "qemu-ppc64",
        ("s390x", _) => "qemu-s390x",
        ("riscv64", _) => "qemu-riscv64",
        ("mips64le", _) => "qemu-mips64el",
        ("mips64", _) => "qemu-mips64",
        ("loong64", _) => "qemu-loongarch64",
        _ => return None,
    })
}

/// Whether the host runs `wanted`'s binaries without emulation.
fn native(host: &Platform, wanted: &Platform) -> bool {
    let (h, w) = (host.normalized(), wanted.normalized());
    w.matches(&h) || h.matches(&w) || (h.architecture == "amd64" && w.architecture == "386")
}

/// Checks that binaries of `wanted` can execute on `host` (natively or through an enabled
/// qemu handler with the F flag under `binfmt_dir`). The error reads after "building for"
/// or "running" (`linux/arm64 on this linux/amd64 machine needs ...`) and says how to fix it.
pub fn check(host: &Platform, wanted: &Platform, binfmt_dir: &Path) -> Result<(), String> {
    if wanted.normalized().os != host.normalized().os {
        return Err(format!(
            "{wanted} on this {host} machine is not supported (only {} images)",
            host.normalized().os
        ));
    }
    if native(host, wanted) {
        return Ok(());
    }
    let wanted = wanted.normalized();
    let Some(name) = handler_name(&wanted) else {
        return Err(format!(
            "{wanted} needs emulation, and rbuild knows no qemu handler for {}",
            wanted.architecture
        ));
    };
    let dir = binfmt_dir.display();
    let install = "install the Debian packages qemu-user-static and binfmt-support (or run `docker run --privileged --rm tonistiigi/binfmt --install all`)";
    // Without systemd (containers, minimal VMs) installing registers nothing.
    let register = format!(
        "when qemu-user-static is installed but nothing registered its handlers (no systemd), register it as root: `cat /usr/lib/binfmt.d/{name}.conf > {dir}/register`"
    );
    let path = binfmt_dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if !binfmt_dir.join("status").exists() => {
            return Err(format!(
                "{wanted} on this {host} machine needs the binfmt_misc handler {name}, and binfmt_misc is not mounted at {dir}: mount it as root (`mount -t binfmt_misc binfmt_misc {dir}`), then {install}; {register}"
            ));
        }
        Err(_) => {
            return Err(format!(
                "{wanted} on this {host} machine needs the binfmt_misc handler {name} ({} is missing): {install}; {register}",
                path.display()
            ));
        }
    };
    if text.lines().next().map(str::trim) != Some("enabled") {
        return Err(format!(
            "{wanted} on this {host} machine needs the binfmt_misc handler {name} ({}), which is disabled: enable it as root (`echo 1 > {0}`)",
            path.display()
        ));
    }
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or("")
        .trim();
    if !flags.contains('F') {
        return Err(format!(
            "{wanted} on this {host} machine needs the binfmt_misc handler {name} with the F (fix binary) flag, or its interpreter is not found inside the container's root filesystem: re-register it as root (`echo -1 > {}`, then `cat /usr/lib/binfmt.d/{name}.conf > {dir}/register`, whose flags include F)",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn handlers_decide() {
        let d = tempfile::tempdir().unwrap();
        let host = p("linux/amd64");
        assert!(check(&host, &p("linux/amd64"), d.path()).is_ok());
        assert!(check(&host, &p("linux/386"), d.path()).is_ok());
        let e = check(&host, &p("linux/arm64"), d.path()).unwrap_err();
        assert!(
            e.contains("qemu-aarch64") && e.contains("qemu-user-static"),
            "{e}"
        );
        assert!(e.contains("not mounted"), "{e}");
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        let e = check(&host, &p("linux/arm64"), d.path()).unwrap_err();
        assert!(e.contains("is missing"), "{e}");
        assert!(
            e.contains("cat /usr/lib/binfmt.d/qemu-aarch64.conf > "),
            "how to register without systemd: {e}"
        );
        let h = d.path().join("qemu-aarch64");
        std::fs::write(
            &h,
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\n",
        )
        .unwrap();
        let e = check(&host, &p("linux/arm64"), d.path()).unwrap_err();
        assert!(e.contains("F (fix binary)"), "{e}");
        std::fs::write(
            &h,
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POCF\n",
        )
        .unwrap();
        assert!(check(&host, &p("linux/arm64"), d.path()).is_ok());
        std::fs::write(&h, "disabled\nflags: F\n").unwrap();
        assert!(check(&host, &p("linux/arm64"), d.path()).is_err());
        assert!(check(&host, &p("windows/amd64"), d.path()).is_err());
        let e = check(&host, &p("linux/arm/v7"), d.path()).unwrap_err();
        assert!(e.contains("qemu-arm"), "{e}");
    }
}
