//! The sandbox init: the hidden entry point of the re-executed binary.
//!
//! Process tree of one run:
//! - the caller (multi-threaded, tokio) spawns `<exe> __rbuild-sandbox-init` — the
//!   *monitor* — which reads the spec from fd 3, unshares mount/UTS/IPC/PID (and network)
//!   namespaces and forks (it is single-threaded, so `fork` is sound there);
//! - the child is PID 1 of the new PID namespace: it joins the run's cgroup, builds the
//!   root filesystem (`sandbox_rootfs`), drops privileges and `execve`s the command, so the
//!   command itself is PID 1 and everything it leaves behind dies with it;
//! - the monitor forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT, reaps the child and writes a JSON
//!   [`Report`] on fd 4: exit code (128+N for signal N), or why the command could not start
//!   (126/127 with Docker's message), or a setup failure.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};

use crate::error::{Error, Result};
use crate::sandbox::{
    DEFAULT_PATH, INIT_MARKER, InitSpec, NetworkMode, REPORT_FD, Report, SPEC_FD,
};
use crate::sandbox_rootfs;
use crate::sys;
use crate::user;

/// Call this first thing in `main()`: when the binary was re-executed as the sandbox init
/// (`argv[1]` is the hidden marker) it runs the init and returns its exit code, which `main`
/// must return at once; otherwise it returns `None` and the normal program goes on.
pub fn sandbox_init_entry() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    args.next();
    match args.next() {
        Some(a) if a == OsStr::new(INIT_MARKER) => Some(monitor_main()),
        Some(a) if a == OsStr::new(crate::sandbox_exec::EXEC_MARKER) => {
            Some(crate::sandbox_exec::exec_main())
        }
        _ => None,
    }
}

/// How the container process failed before or at `execve`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChildFailure {
    pub(crate) stage: String,
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl ChildFailure {
    pub(crate) fn setup(e: impl std::fmt::Display) -> Self {
        ChildFailure {
            stage: "setup".into(),
            code: 125,
            message: e.to_string(),
        }
    }
}

fn monitor_main() -> ExitCode {
    let Ok(report_fd) = sys::take_inherited_fd(REPORT_FD) else {
        eprintln!("rbuild sandbox init: no report descriptor (internal entry point)");
        return ExitCode::from(125);
    };
    let report = monitor().unwrap_or_else(|e| Report {
        code: 125,
        signal: None,
        stage: Some("setup".into()),
        message: Some(e.to_string()),
    });
    let mut f = File::from(report_fd);
    let _ = serde_json::to_writer(&mut f, &report);
    let _ = f.flush();
    ExitCode::from(u8::try_from(report.code.clamp(0, 255)).unwrap_or(255))
}

fn read_spec() -> Result<InitSpec> {
    let fd = sys::take_inherited_fd(SPEC_FD)?;
    let mut buf = Vec::new();
    File::from(fd)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Sandbox(format!("read spec: {e}")))?;
    serde_json::from_slice(&buf).map_err(|e| Error::Sandbox(format!("parse spec: {e}")))
}

pub(crate) fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

fn monitor() -> Result<Report> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| Error::sys("pdeathsig", e))?;
    let spec = read_spec()?;
    let set = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("sigprocmask", e))?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    match &spec.process.network {
        NetworkMode::Host => {}
        NetworkMode::None => flags |= CloneFlags::CLONE_NEWNET,
        NetworkMode::Join(path) => {
            let f = File::open(path).map_err(|e| Error::io("open netns", path, e))?;
            nix::sched::setns(f, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys(format!("setns {}", path.display()), e))?;
        }
    }
    sys::unshare(flags)?;
    let console = match spec.tty {
        Some(_) => Some(sys::take_inherited_fd(crate::tty::CONSOLE_FD)?),
        None => None,
    };
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    match sys::fork()? {
        sys::Fork::Child => {
            drop(err_r);
            child_main(&spec, err_w, console)
        }
        sys::Fork::Parent(pid) => {
            drop(err_w);
            drop(console);
            child_report(pid, &set, err_r)
        }
    }
}

/// Inside the container's root, before dropping privileges: the USER resolved from its
/// `/etc/passwd` and `/etc/group`, the environment with `HOME` defaulted to the user's, and
/// the working directory (`/` when empty), created for the user if missing.
pub(crate) fn process_identity<'a>(
    user_spec: &str,
    env: &[String],
    cwd: &'a str,
) -> std::result::Result<(user::Identity, Vec<String>, &'a str), ChildFailure> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    let group = std::fs::read_to_string("/etc/group").ok();
    let id = user::resolve(user_spec, passwd.as_deref(), group.as_deref()).map_err(|e| {
        ChildFailure {
            stage: "user".into(),
            code: 125,
            message: match e {
                Error::User { reason, .. } => reason,
                other => other.to_string(),
            },
        }
    })?;
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let cwd = if cwd.is_empty() { "/" } else { cwd };
    make_cwd(Path::new(cwd), id.uid, id.gid).map_err(ChildFailure::setup)?;
    Ok((id, env, cwd))
}

/// Waits for the forked child `pid` and builds the report: the failure it wrote on the
/// `err_r` pipe before it could exec (a stage and a message), else its exit status.
pub(crate) fn child_report(pid: Pid, set: &SigSet, err_r: std::os::fd::OwnedFd) -> Result<Report> {
    let (code, signal) = wait_child(pid, set)?;
    let mut buf = Vec::new();
    let _ = File::from(err_r).read_to_end(&mut buf);
    if let Ok(f) = serde_json::from_slice::<ChildFailure>(&buf) {
        return Ok(Report {
            code: f.code,
            signal: None,
            stage: Some(f.stage),
            message: Some(f.message),
        });
    }
    Ok(Report {
        code,
        signal,
        stage: None,
        message: None,
    })
}

/// Waits for `pid`, forwarding signals; returns (Docker exit code, killing signal).
pub(crate) fn wait_child(pid: Pid, set: &SigSet) -> Result<(i32, Option<i32>)> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((code, None)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((128 + sig as i32, Some(sig as i32))),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waitpid", e)),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(pid, sig);
            }
        }
    }
}

/// The container process: never returns.
fn child_main(spec: &InitSpec, err_w: OwnedFd, console: Option<OwnedFd>) -> ! {
    let failure = match setup_and_exec(spec, console) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let mut f = File::from(err_w);
    let _ = serde_json::to_writer(&mut f, &failure);
    drop(f);
    std::process::exit(failure.code)
}

pub(crate) enum Never {}

fn setup_and_exec(
    spec: &InitSpec,
    console: Option<OwnedFd>,
) -> std::result::Result<Never, ChildFailure> {
    let p = &spec.process;
    // The forwarded signals stay blocked (inherited from the sandbox init) until the
    // command runs: one sent as soon as the container has a PID (`rbuild stop` right after
    // `run -d`) waits for `--init` to forward it instead of being dropped, as a PID
    // namespace's init drops a signal it has no handler for.
    sys::reset_signal_handlers();
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(ChildFailure::setup)?;
    for procs in &spec.cgroup_procs {
        std::fs::write(procs, "0")
            .map_err(|e| ChildFailure::setup(format!("join cgroup {}: {e}", procs.display())))?;
    }
    if p.security.cgroupns_private {
        // After joining: the run's cgroup becomes the namespace's root.
        sys::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(ChildFailure::setup)?;
    }
    if spec.new_session {
        let _ = nix::unistd::setsid();
    }
    sandbox_rootfs::setup(spec).map_err(ChildFailure::setup)?;
    if !p.hostname.is_empty() {
        nix::unistd::sethostname(&p.hostname).map_err(ChildFailure::setup)?;
    }
    if p.network == NetworkMode::None {
        sys::loopback_up().map_err(ChildFailure::setup)?;
    }
    let (id, env, cwd) = process_identity(&p.user, &p.env, &p.cwd)?;
    if let (Some(tty), Some(sock)) = (&spec.tty, console) {
        crate::tty::setup_console(&sock, tty, id.uid, true).map_err(ChildFailure::setup)?;
    }
    for u in &p.security.ulimits {
        sys::set_rlimit(&u.name, u.soft, u.hard).map_err(ChildFailure::setup)?;
    }
    apply_security(&id, p.no_new_privs, &spec.caps, &spec.seccomp)?;
    nix::unistd::chdir(cwd).map_err(|e| ChildFailure {
        stage: "exec".into(),
        code: 126,
        message: format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"),
    })?;
    if p.init {
        return run_init(&p.argv, &env);
    }
    sys::unblock_signals().map_err(ChildFailure::setup)?;
    exec(&p.argv, &env)
}

/// Signals the `--init` process passes to the command (tini's set).
fn init_signals() -> SigSet {
    let mut set = forwarded_signals();
    for s in [
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        set.add(s);
    }
    set
}

/// `--init`: stays PID 1 (with the command's credentials), forks and execs the command,
/// forwards signals to it, reaps every zombie and exits with the command's status (128+N
/// when killed by signal N). The command's exec failure (126/127) is passed on.
fn run_init(argv: &[String], env: &[String]) -> std::result::Result<Never, ChildFailure> {
    let set = init_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(ChildFailure::setup)?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ChildFailure::setup)?;
    let pid = match sys::fork().map_err(ChildFailure::setup)? {
        sys::Fork::Child => {
            drop(err_r);
            let failure = match sys::reset_signals()
                .map_err(ChildFailure::setup)
                .and_then(|()| exec(argv, env))
            {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let mut f = File::from(err_w);
            let _ = serde_json::to_writer(&mut f, &failure);
            drop(f);
            std::process::exit(failure.code)
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop(err_w);
    let code = loop {
        let mut status = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p == pid => status = Some(c),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => status = Some(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if let Some(c) = status {
            break c;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(pid, sig);
            }
        }
    };
    let mut buf = Vec::new();
    let _ = File::from(err_r).read_to_end(&mut buf);
    if let Ok(f) = serde_json::from_slice::<ChildFailure>(&buf) {
        return Err(f);
    }
    std::process::exit(code)
}

/// Creates the working directory when missing (BuildKit does for `RUN`), owned by the user.
pub(crate) fn make_cwd(cwd: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(cwd);
    while let Some(c) = cur {
        if std::fs::symlink_metadata(c).is_ok() {
            break;
        }
        missing.push(c.to_path_buf());
        cur = c.parent();
    }
    for dir in missing.iter().rev() {
        std::fs::create_dir(dir).map_err(|e| Error::io("create working directory", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", dir, e))?;
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
            .map_err(|e| Error::io("chown", dir, e))?;
    }
    Ok(())
}

fn caps_err(e: caps::errors::CapsError) -> Error {
    Error::Sandbox(format!("capabilities: {e}"))
}

/// Drops privileges to the capability set `caps` and installs the seccomp programs. As
/// runc: with no_new_privs the filter goes on last, after the capabilities are gone;
/// without it, installing needs CAP_SYS_ADMIN, so before dropping them.
pub(crate) fn apply_security(
    id: &user::Identity,
    no_new_privs: bool,
    caps: &[String],
    seccomp: &[Vec<(u16, u8, u8, u32)>],
) -> std::result::Result<(), ChildFailure> {
    if !no_new_privs {
        install_seccomp(seccomp)?;
    }
    let keep: caps::CapsHashSet = caps
        .iter()
        .filter_map(|c| c.parse::<Capability>().ok())
        .collect();
    drop_privileges_to(id, no_new_privs, &keep).map_err(ChildFailure::setup)?;
    if no_new_privs {
        install_seccomp(seccomp)?;
    }
    Ok(())
}

/// Installs the seccomp programs of the run, in order.
fn install_seccomp(programs: &[Vec<(u16, u8, u8, u32)>]) -> std::result::Result<(), ChildFailure> {
    for prog in programs {
        let bpf: Vec<seccompiler::sock_filter> = prog
            .iter()
            .map(|&(code, jt, jf, k)| seccompiler::sock_filter { code, jt, jf, k })
            .collect();
        sys::seccomp_install(&bpf).map_err(ChildFailure::setup)?;
    }
    Ok(())
}

/// Bounding set to `keep` (those of it this process holds; every one for
/// `--privileged`), then groups/gid/uid, then the process's sets (root keeps `keep`; any
/// other user ends with none), then `no_new_privs`.
fn drop_privileges_to(
    id: &user::Identity,
    no_new_privs: bool,
    keep: &caps::CapsHashSet,
) -> Result<()> {
    let held = caps::read(None, CapSet::Permitted).map_err(caps_err)?;
    let keep: caps::CapsHashSet = keep.intersection(&held).copied().collect();
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err)?;
    let groups: Vec<Gid> = id
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| Error::sys("setgroups", e))?;
    let gid = Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys("setresgid", e))?;
    let uid = Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys("setresuid", e))?;
    if id.uid == 0 {
        caps::set(None, CapSet::Effective, &keep).map_err(caps_err)?;
        caps::set(None, CapSet::Permitted, &keep).map_err(caps_err)?;
    } else {
        caps::clear(None, CapSet::Effective).map_err(caps_err)?;
        caps::clear(None, CapSet::Permitted).map_err(caps_err)?;
    }
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| Error::sys("no_new_privs", e))?;
    }
    Ok(())
}

fn cstring(s: &str) -> std::result::Result<CString, ChildFailure> {
    CString::new(s).map_err(|_| ChildFailure::setup(format!("NUL byte in {s:?}")))
}

/// Go's `exec.LookPath` as runc uses it: the first regular file with an execute bit.
fn look_path(name: &str, env: &[String]) -> Option<PathBuf> {
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&cand)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Some(cand);
        }
    }
    None
}

pub(crate) fn exec(argv: &[String], env: &[String]) -> std::result::Result<Never, ChildFailure> {
    let name = argv.first().map(String::as_str).unwrap_or("");
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        look_path(name, env).ok_or_else(|| ChildFailure {
            stage: "exec".into(),
            code: 127,
            message: format!("exec: {name:?}: executable file not found in $PATH"),
        })?
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ChildFailure::setup("NUL byte in path"))?;
    let c_argv = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let c_env = env
        .iter()
        .map(|a| cstring(a))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let errno = sys::execve(&c_path, &c_argv, &c_env);
    let shown = path.display();
    Err(match errno {
        Errno::ENOENT => ChildFailure {
            stage: "exec".into(),
            code: 127,
            message: format!("exec: {name:?}: stat {shown}: no such file or directory"),
        },
        Errno::EACCES | Errno::EPERM | Errno::EISDIR => ChildFailure {
            stage: "exec".into(),
            code: 126,
            message: format!("exec: {name:?}: {shown}: permission denied"),
        },
        Errno::ENOEXEC => ChildFailure {
            stage: "exec".into(),
            code: 126,
            message: format!("exec: {name:?}: {shown}: exec format error"),
        },
        e => ChildFailure {
            stage: "exec".into(),
            code: 126,
            message: format!("exec: {name:?}: {shown}: {}", e.desc()),
        },
    })
}
