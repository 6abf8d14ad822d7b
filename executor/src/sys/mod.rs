//! The one home of `unsafe` code and raw system calls in rbuild. Everything above this
//! module calls these small wrappers, each of which states why its `unsafe` is sound.
//!
//! Most calls go through `nix`'s safe wrappers; `unsafe` is needed only for `fork` (sound
//! because we check the process is single-threaded first), for `pre_exec` (only
//! async-signal-safe `dup2` runs in the child), and for the `SIOCSIFFLAGS` ioctl that brings
//! the loopback interface up.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};

pub use nix::mount::MsFlags as MountFlags;

mod netns;
mod tty;
pub use netns::{is_netns_file, setns_net_this_thread, thread_netns_path, unshare_net_this_thread};
pub use tty::{
    RawTerminal, fd_socketpair, is_terminal, make_controlling_tty, open_pty, recv_fd, send_fd,
    set_window_size, window_size,
};

mod security;
pub use security::{seccomp_install, set_rlimit};

/// `mount(2)`.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
        Error::sys(
            format!(
                "mount {} on {} (type {}, options {:?})",
                source.unwrap_or("none"),
                target.display(),
                fstype.unwrap_or("none"),
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// A (recursive) bind mount, remounted read-only when asked.
pub fn bind_mount(source: &Path, target: &Path, recursive: bool, readonly: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(source), target, None::<&str>, flags, None::<&str>).map_err(|e| {
        Error::sys(
            format!("bind mount {} on {}", source.display(), target.display()),
            e,
        )
    })?;
    if readonly {
        remount_readonly(target, MsFlags::empty())?;
    }
    Ok(())
}

/// Remounts the bind mount at `target` read-only, keeping the given per-mount flags.
pub fn remount_readonly(target: &Path, keep: MsFlags) -> Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep;
    match nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
        Ok(()) => Ok(()),
        // Locked flags (nosuid/nodev/noexec inherited from the source) must be kept: retry
        // with the flags the mount has now.
        Err(Errno::EPERM) => {
            let st = nix::sys::statvfs::statvfs(target)
                .map_err(|e| Error::sys(format!("statvfs {}", target.display()), e))?;
            let mut extra = MsFlags::empty();
            let f = st.flags();
            use nix::sys::statvfs::FsFlags;
            for (have, want) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            ] {
                if f.contains(have) {
                    extra |= want;
                }
            }
            nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | extra,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("remount {} read-only", target.display()), e))
        }
        Err(e) => Err(Error::sys(
            format!("remount {} read-only", target.display()),
            e,
        )),
    }
}

/// `umount2(target, MNT_DETACH)` when `detach`, a plain unmount otherwise.
pub fn unmount(target: &Path, detach: bool) -> Result<()> {
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    nix::mount::umount2(target, flags)
        .map_err(|e| Error::sys(format!("unmount {}", target.display()), e))
}

/// Makes every mount of this (new) mount namespace private, so nothing propagates back.
pub fn make_mounts_private() -> Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make / private", e))
}

/// `unshare(2)`.
pub fn unshare(flags: nix::sched::CloneFlags) -> Result<()> {
    nix::sched::unshare(flags).map_err(|e| Error::sys(format!("unshare {flags:?}"), e))
}

/// `pivot_root` into `new_root` (a mount point) the way runc does: pivot onto `.` and lazily
/// unmount the old root that ends up stacked under it, so no directory for it is needed.
pub fn pivot_root(new_root: &Path) -> Result<()> {
    use nix::fcntl::{OFlag, open};
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old = open("/", flags, Mode::empty()).map_err(|e| Error::sys("open /", e))?;
    let new = open(new_root, flags, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", new_root.display()), e))?;
    nix::unistd::fchdir(&new).map_err(|e| Error::sys("fchdir new root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| Error::sys("pivot_root", e))?;
    nix::unistd::fchdir(&old).map_err(|e| Error::sys("fchdir old root", e))?;
    // The old root may be shared with the host; make sure the unmount cannot propagate.
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make old root slave", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| Error::sys("unmount old root", e))?;
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))
}

/// Creates a character device node (`/dev/null`, an overlay whiteout 0:0, ...).
pub fn mknod_char(path: &Path, major: u64, minor: u64, perm: u32) -> Result<()> {
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(perm), dev)
        .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))
}

/// Creates any node of `kind` (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`, `S_IFSOCK`) with `rdev`.
pub fn mknod_raw(path: &Path, kind: SFlag, perm: u32, rdev: u64) -> Result<()> {
    nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(perm), rdev)
        .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))
}

/// True when the filesystem at `path` is cgroup v2.
pub fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Number of threads of the current process.
fn thread_count() -> Result<usize> {
    let entries = std::fs::read_dir("/proc/self/task")
        .map_err(|e| Error::io("read", "/proc/self/task", e))?;
    Ok(entries.count())
}

/// Result of [`fork`].
#[derive(Debug, Clone, Copy)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(nix::unistd::Pid),
    /// In the child.
    Child,
}

/// `fork(2)`, refused unless the process is single-threaded (the sandbox init is).
pub fn fork() -> Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(Error::Sandbox(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has exactly one thread (checked above, and nothing in the init
    // starts threads), so the child cannot inherit locks held by other threads; it may run
    // any code, as the parent could.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Fork::Parent(child)),
        Ok(nix::unistd::ForkResult::Child) => Ok(Fork::Child),
        Err(e) => Err(Error::sys("fork", e)),
    }
}

/// Spawns `cmd` with `fds` (each moved to its target descriptor number, e.g. 3 and 4) in the
/// child. The sources stay close-on-exec, so concurrent spawns in other threads never leak
/// them; `dup2` in the child clears the flag on the target only.
pub fn spawn_with_fds(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) -> io::Result<Child> {
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    // Move every source above the highest target first so a source equal to a later
    // target is never clobbered.
    let high = pairs.iter().map(|(_, t)| *t).max().unwrap_or(0) + 1;
    // SAFETY: the closure runs in the forked child before exec and calls only `fcntl` and
    // `dup2`, which are async-signal-safe; it allocates nothing (the vector was built before
    // the fork and is only read).
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = [0 as RawFd; 8];
            for (i, (src, _)) in pairs.iter().enumerate().take(8) {
                let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, high);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = fd;
            }
            for (i, (_, target)) in pairs.iter().enumerate().take(8) {
                if libc::dup2(moved[i], *target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(fds);
    child
}

/// Takes ownership of an inherited descriptor number (fd 3 and 4 of the sandbox init) and
/// marks it close-on-exec.
pub fn take_inherited_fd(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor flags; on a closed number it fails cleanly.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::sys(format!("inherited fd {fd}"), Errno::last()));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process by its
    // parent for exactly this purpose; nothing else in the process owns it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| Error::sys("set close-on-exec", e))?;
    Ok(owned)
}

/// Brings the loopback interface up in the current network namespace.
pub fn loopback_up() -> Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket", e))?;
    // SAFETY: `ifreq` is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the socket is open, `req` is a valid, initialised ifreq naming "lo", and
    // SIOCGIFFLAGS/SIOCSIFFLAGS read/write only `ifr_flags` inside it.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::sys("SIOCGIFFLAGS lo", Errno::last()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::sys("SIOCSIFFLAGS lo", Errno::last()));
        }
    }
    Ok(())
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(path, argv, env) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Resets every signal's disposition to the default (the Rust runtime ignores `SIGPIPE`,
/// and ignored dispositions survive `execve`) and unblocks all signals.
pub fn reset_signals() -> Result<()> {
    reset_signal_handlers();
    unblock_signals()
}

/// Every signal's disposition back to the default (the mask is kept).
pub fn reset_signal_handlers() {
    use nix::sys::signal::{SigHandler, Signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code, so no async-signal-safety
        // requirement applies; the process is single-threaded at this point.
        unsafe {
            let _ = nix::sys::signal::signal(sig, SigHandler::SigDfl);
        }
    }
}

/// An empty signal mask.
pub fn unblock_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::sys("sigprocmask", e))
}

/// `setns(2)` into the namespace `ns` (an open `/proc/<pid>/ns/*` file) of kind `flag`.
pub fn setns(ns: &std::fs::File, flag: nix::sched::CloneFlags, what: &Path) -> Result<()> {
    nix::sched::setns(ns, flag).map_err(|e| Error::sys(format!("setns {}", what.display()), e))
}

/// Sends signal number `sig` to `pid`.
pub fn send_signal(pid: i32, sig: i32) -> Result<()> {
    let signal = nix::sys::signal::Signal::try_from(sig).map_err(|e| Error::sys("signal", e))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| Error::sys(format!("kill {pid}"), e))
}
