//! The container's root filesystem, built by the sandbox init inside its new mount
//! namespace (after runc's `rootfs_linux.go`, written anew):
//!
//! 1. every mount private; the rootfs bound onto itself (pivot_root needs a mount point);
//! 2. fresh `/proc`, a tmpfs `/dev` with `null zero full random urandom tty`, `/dev/pts`
//!    (newinstance) + `/dev/ptmx`, `/dev/shm`, `/dev/mqueue`, the `fd`/`stdin`/... links,
//!    read-only `/sys`;
//! 3. tmpfs and bind mounts (generated `/etc` files, `--mount` binds) on targets resolved
//!    inside the rootfs ([`secure_join`]), so a symlinked target cannot point at the host;
//! 4. `pivot_root` onto the rootfs and lazy unmount of the old root;
//! 5. Docker's masked paths (`/dev/null` over files, empty read-only tmpfs over dirs) and
//!    read-only `/proc` entries.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sandbox::{InitSpec, MountSpec};
use crate::sys::{self, MountFlags as M};

/// Docker's masked paths.
const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only `/proc` entries.
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn real_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let p = root.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(Error::Sandbox(format!(
            "/{name} in the rootfs is not a directory"
        ))),
        Err(e) => Err(Error::io("stat", p, e)),
    }
}

/// Resolves `path` inside `root` the way the container will see it: symlinks are followed
/// relative to `root` (absolute ones restart at `root`) and `..` never climbs above it, so a
/// mount target cannot point at the host (after `filepath-securejoin`).
pub(crate) fn secure_join(root: &Path, path: &str) -> Result<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(String::from)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let candidate = root.join(cur.join("/")).join(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(Error::Sandbox(format!(
                        "too many symlinks resolving {path}"
                    )));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| Error::io("readlink", &candidate, e))?;
                let t = target.to_string_lossy();
                if t.starts_with('/') {
                    cur.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty() && *p != ".").rev() {
                    pending.push(part.to_string());
                }
            }
            _ => cur.push(c),
        }
    }
    Ok(root.join(cur.join("/")))
}

/// Builds the root filesystem and pivots into it.
pub(crate) fn setup(spec: &InitSpec) -> Result<()> {
    let rootfs = spec.process.rootfs.as_path();
    sys::make_mounts_private()?;
    sys::bind_mount(rootfs, rootfs, true, false)?;

    let proc_dir = real_dir(rootfs, "proc")?;
    sys::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
        None,
    )?;
    let privileged = spec.process.privileged;
    let shm = spec
        .process
        .security
        .shm_size
        .unwrap_or(crate::security::DEFAULT_SHM_SIZE);
    let dev_dir = real_dir(rootfs, "dev")?;
    setup_dev(&dev_dir, shm)?;
    if privileged {
        host_devices(Path::new("/dev"), &dev_dir)?;
    }
    let sys_dir = real_dir(rootfs, "sys")?;
    let mut sys_flags = M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC;
    if !privileged {
        sys_flags |= M::MS_RDONLY;
    }
    if sys::mount(Some("sysfs"), &sys_dir, Some("sysfs"), sys_flags, None).is_err() {
        // Not permitted for the host network namespace on some kernels: a recursive bind
        // of the host's /sys instead (read-only unless privileged).
        sys::bind_mount(Path::new("/sys"), &sys_dir, true, !privileged)?;
    }
    mount_cgroups(&sys_dir.join("fs/cgroup"), &spec.cgroup_mounts, privileged)?;

    let mut binds: Vec<(&Path, &str, bool)> = spec
        .etc_sources
        .iter()
        .map(|(s, t)| (s.as_path(), t.as_str(), true))
        .collect();
    for m in &spec.process.mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => binds.push((source.as_path(), target.as_str(), *readonly)),
            MountSpec::Tmpfs {
                target,
                size_bytes,
                mode,
            } => {
                let mode = mode.unwrap_or(0o755);
                let data = match size_bytes {
                    Some(s) => format!("mode={mode:o},size={s}"),
                    None => format!("mode={mode:o}"),
                };
                sys::mount(
                    Some("tmpfs"),
                    &dev_target(rootfs, target, true)?,
                    Some("tmpfs"),
                    M::MS_NOSUID | M::MS_NODEV,
                    Some(&data),
                )?;
            }
        }
    }
    for (source, target, readonly) in binds {
        let target = dev_target(rootfs, target, source.is_dir())?;
        sys::bind_mount(source, &target, true, false)?;
        if readonly {
            sys::remount_readonly(&target, M::empty())?;
        }
    }

    sys::pivot_root(rootfs)?;
    if privileged {
        return Ok(());
    }
    mask_paths()
}

/// The run's own cgroups at `/sys/fs/cgroup` (read-only unless privileged), as Docker
/// shows them: the v2 group as the root; on v1 a tmpfs with each hierarchy's group under
/// the hierarchy's name. Missing `/sys/fs/cgroup` (no cgroup support): nothing.
fn mount_cgroups(target: &Path, groups: &[(String, PathBuf)], privileged: bool) -> Result<()> {
    if groups.is_empty() || !target.is_dir() {
        return Ok(());
    }
    let ro = !privileged;
    if let [(name, dir)] = groups
        && name.is_empty()
    {
        return sys::bind_mount(dir, target, false, ro);
    }
    sys::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
        Some("mode=755"),
    )?;
    for (name, dir) in groups {
        let t = target.join(name);
        std::fs::create_dir_all(&t).map_err(|e| Error::io("mkdir", &t, e))?;
        sys::bind_mount(dir, &t, false, ro)?;
    }
    if ro {
        sys::remount_readonly(target, M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC).or_else(|_| {
            sys::mount(
                None,
                target,
                None,
                M::MS_REMOUNT | M::MS_RDONLY | M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
                None,
            )
        })?;
    }
    Ok(())
}

/// `--privileged`: the host's device nodes (char and block, in `/dev` and its
/// subdirectories other than `pts`, `shm` and `mqueue`) recreated in the container's
/// `/dev`, as runc does for a privileged container.
fn host_devices(host: &Path, dev: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rd = std::fs::read_dir(host).map_err(|e| Error::io("read", host, e))?;
    for e in rd.flatten() {
        let name = e.file_name();
        let src = e.path();
        let dst = dev.join(&name);
        let Ok(m) = std::fs::symlink_metadata(&src) else {
            continue;
        };
        let ft = m.file_type();
        if ft.is_dir() {
            if matches!(name.to_str(), Some("pts" | "shm" | "mqueue")) {
                continue;
            }
            if std::fs::symlink_metadata(&dst).is_err() {
                std::fs::create_dir(&dst).map_err(|e| Error::io("mkdir", &dst, e))?;
            }
            host_devices(&src, &dst)?;
        } else if (ft.is_char_device() || ft.is_block_device())
            && std::fs::symlink_metadata(&dst).is_err()
        {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            sys::mknod_raw(&dst, kind, m.mode() & 0o7777, m.rdev())?;
            std::fs::set_permissions(
                &dst,
                std::os::unix::fs::PermissionsExt::from_mode(m.mode() & 0o7777),
            )
            .map_err(|e| Error::io("chmod", &dst, e))?;
            let _ = std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()));
        }
    }
    Ok(())
}

/// A mount target resolved in the rootfs. Targets below `/dev` live on the fresh `/dev`
/// tmpfs, which hides the stubs the caller made: create them there (BuildKit's RUN heredoc
/// scripts are bind-mounted at `/dev/pipes/`).
fn dev_target(rootfs: &Path, target: &str, dir: bool) -> Result<PathBuf> {
    let path = secure_join(rootfs, target)?;
    let under_dev = path.starts_with(rootfs.join("dev"));
    if under_dev && std::fs::symlink_metadata(&path).is_err() {
        let made = if dir {
            std::fs::create_dir_all(&path)
        } else {
            path.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(&path).map(drop))
        };
        made.map_err(|e| Error::io("create mount target", &path, e))?;
    }
    Ok(path)
}

fn setup_dev(dev: &Path, shm_size: u64) -> Result<()> {
    sys::mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        M::MS_NOSUID | M::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        sys::mknod_char(&p, major, minor, 0o666)?;
        // mknod honours the umask; make the mode exact.
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .map_err(|e| Error::io("chmod", &p, e))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        let p = dev.join(d);
        std::fs::create_dir(&p).map_err(|e| Error::io("mkdir", &p, e))?;
    }
    sys::mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        M::MS_NOSUID | M::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    sys::mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
        Some(&format!("mode=1777,size={shm_size}")),
    )?;
    // Needs the new IPC namespace; not essential.
    let _ = sys::mount(
        Some("mqueue"),
        &dev.join("mqueue"),
        Some("mqueue"),
        M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
        None,
    );
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        let p = dev.join(name);
        std::os::unix::fs::symlink(target, &p).map_err(|e| Error::io("symlink", &p, e))?;
    }
    Ok(())
}

fn mask_paths() -> Result<()> {
    for path in MASKED {
        let p = Path::new(path);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => sys::mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                M::MS_RDONLY | M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC,
                Some("size=0"),
            )?,
            Ok(_) => sys::bind_mount(Path::new("/dev/null"), p, false, false)?,
            Err(_) => {}
        }
    }
    for path in READONLY {
        let p = Path::new(path);
        if std::fs::symlink_metadata(p).is_ok() {
            sys::bind_mount(p, p, true, false)?;
            sys::remount_readonly(p, M::MS_NOSUID | M::MS_NODEV | M::MS_NOEXEC)?;
        }
    }
    Ok(())
}
