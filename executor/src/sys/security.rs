//! Seccomp filter installation and resource limits for the sandbox init.

use nix::errno::Errno;

use crate::error::{Error, Result};

/// Installs one seccomp BPF program on the calling thread (inherited across `fork` and
/// `execve`). The caller holds `CAP_SYS_ADMIN` or has set `no_new_privs`.
pub fn seccomp_install(prog: &[seccompiler::sock_filter]) -> Result<()> {
    let mut filters: Vec<libc::sock_filter> = prog
        .iter()
        .map(|f| libc::sock_filter {
            code: f.code,
            jt: f.jt,
            jf: f.jf,
            k: f.k,
        })
        .collect();
    let len = u16::try_from(filters.len())
        .map_err(|_| Error::Seccomp(format!("filter too long ({} instructions)", prog.len())))?;
    let fprog = libc::sock_fprog {
        len,
        filter: filters.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `filters`, a live buffer of `len` initialised instructions;
    // the kernel copies the program during the call and keeps no pointer to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// `setrlimit(2)` for a Docker ulimit name (`nofile`, `nproc`, ...); `u64::MAX` is unlimited.
pub fn set_rlimit(name: &str, soft: u64, hard: u64) -> Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    let res = match name {
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "rttime" => Resource::RLIMIT_RTTIME,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        other => return Err(Error::InvalidSpec(format!("invalid ulimit type: {other}"))),
    };
    setrlimit(res, soft, hard).map_err(|e| Error::sys(format!("setrlimit {name}={soft}:{hard}"), e))
}
