//! `rbuild exec`: a process started inside a running container's namespaces.
//!
//! The caller (multi-threaded) spawns `<exe> __rbuild-exec-init` with the JSON [`ExecSpec`]
//! on fd 3 and a report pipe on fd 4, its own stdio inherited. The exec init
//! (single-threaded) joins the container's IPC, UTS, network, PID and cgroup namespaces,
//! forks — so the child is inside the PID namespace — and the child joins the container's
//! cgroup and its mount namespace (`setns` into it also moves the root to the container's),
//! resolves the user from
//! the container's `/etc/passwd`, drops privileges like the sandbox init and `execve`s. The
//! exec init forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT and reports the exit code.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigmaskHow, Signal, sigprocmask};

use crate::error::{Error, Result};
use crate::sandbox::{ExitStatus, REPORT_FD, Report, SPEC_FD, init_program};
use crate::sandbox_init::{
    ChildFailure, Never, apply_security, child_report, exec, forwarded_signals, process_identity,
};
use crate::sys;
use crate::tty::{CONSOLE_FD, PtyIo, TtySpec};

/// The hidden first argument that turns the binary into the exec init.
pub const EXEC_MARKER: &str = "__rbuild-exec-init";

/// A process to start in a running container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    /// Host PID of the container's PID 1 (whose namespaces and cgroup are joined).
    pub pid: i32,
    pub argv: Vec<String>,
    /// `KEY=value` entries (the container's env plus `-e`).
    pub env: Vec<String>,
    /// Working directory inside the container (`""` = `/`).
    pub cwd: String,
    /// `USER` as in the image config (`""` = root).
    pub user: String,
    pub no_new_privs: bool,
    /// `exec --privileged`, or a privileged container: every capability, no seccomp.
    #[serde(default)]
    pub privileged: bool,
    /// The container's capabilities and seccomp profile, which `exec` applies too.
    #[serde(default)]
    pub security: crate::security::Security,
}

/// What the exec init receives: the spec and whether to open a terminal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ExecInit {
    #[serde(flatten)]
    spec: ExecSpec,
    #[serde(default)]
    tty: Option<TtySpec>,
}

/// Runs `spec` in the container with the caller's stdio; blocks until it ends. `Err` means
/// the exec could not be set up (container gone, unknown user); 126/127 are `Ok`.
pub fn exec_in(spec: &ExecSpec) -> Result<ExitStatus> {
    exec_in_with(spec, None)
}

/// [`exec_in`], on a pseudo-terminal opened inside the container when `pty` is given
/// (`exec -t`).
pub fn exec_in_with(spec: &ExecSpec, pty: Option<PtyIo<'_>>) -> Result<ExitStatus> {
    exec_inner(spec, pty, None)
}

/// What [`exec_capture`] saw.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `None` when the process outlived the timeout (it was then terminated).
    pub status: Option<ExitStatus>,
    /// The first bytes of stdout and stderr, interleaved as written.
    pub output: Vec<u8>,
}

/// Runs `spec` in the container with stdin from `/dev/null` and stdout and stderr captured
/// together (the first `limit` bytes kept; the rest is read and dropped so the process never
/// blocks), as a health check runs. After `timeout` the process gets SIGTERM (the exec
/// init forwards it) and, a second later, its exec init SIGKILL.
pub fn exec_capture(spec: &ExecSpec, timeout: Duration, limit: usize) -> Result<Captured> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = File::from(read);
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send(kept);
    });
    let status = exec_inner(spec, None, Some((write, timeout)));
    // A background process the command left may hold the pipe open: its output is not
    // waited for (the reader thread ends with it).
    let output = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    match status {
        Ok(st) => Ok(Captured {
            status: Some(st),
            output,
        }),
        Err(Error::TimedOut) => Ok(Captured {
            status: None,
            output,
        }),
        Err(e) => Err(e),
    }
}

fn exec_inner(
    spec: &ExecSpec,
    mut pty: Option<PtyIo<'_>>,
    capture: Option<(OwnedFd, Duration)>,
) -> Result<ExitStatus> {
    let (spec_r, spec_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let mut cmd = Command::new(init_program());
    cmd.arg(EXEC_MARKER);
    let mut fds = vec![(spec_r, SPEC_FD), (report_w, REPORT_FD)];
    let mut console = None;
    if pty.is_some() {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let (ours, theirs) = sys::fd_socketpair()?;
        fds.push((theirs, CONSOLE_FD));
        console = Some(ours);
    }
    let mut timeout = None;
    if let Some((out, limit)) = capture {
        let err = out.try_clone().map_err(|e| Error::io("dup", "pipe", e))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(out))
            .stderr(std::process::Stdio::from(err));
        timeout = Some(limit);
    }
    let mut child = sys::spawn_with_fds(&mut cmd, fds)
        .map_err(|e| Error::Sandbox(format!("spawn {}: {e}", init_program().display())))?;
    // The pipe's write ends now live only in the child.
    drop(cmd);
    let (done, watchdog) = match timeout {
        Some(limit) => {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let pid = child.id() as i32;
            // The child is reaped only after `done` is sent, so its PID stays its own.
            let h = std::thread::spawn(move || {
                use std::sync::mpsc::RecvTimeoutError::Timeout;
                if rx.recv_timeout(limit) != Err(Timeout) {
                    return false;
                }
                let _ = crate::process::send_signal(pid, 15);
                if rx.recv_timeout(Duration::from_secs(1)) == Err(Timeout) {
                    let _ = crate::process::send_signal(pid, 9);
                }
                true
            });
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let init = ExecInit {
        spec: spec.clone(),
        tty: pty.as_ref().map(|p| p.tty),
    };
    let json = serde_json::to_vec(&init).map_err(|e| Error::Sandbox(e.to_string()))?;
    let mut f = File::from(spec_w);
    let written = f.write_all(&json);
    drop(f);
    let mut report = File::from(report_r);
    let buf = match (pty.as_mut(), console) {
        (Some(io), Some(sock)) => crate::tty::pump(sock, &mut report, io, || {})?,
        _ => {
            let mut buf = Vec::new();
            let _ = report.read_to_end(&mut buf);
            buf
        }
    };
    if let Some(tx) = done {
        let _ = tx.send(());
    }
    let timed_out = watchdog.is_some_and(|h| h.join().unwrap_or(false));
    let exit = child
        .wait()
        .map_err(|e| Error::Sandbox(format!("wait for exec init: {e}")))?;
    if timed_out {
        return Err(Error::TimedOut);
    }
    written.map_err(|e| Error::Sandbox(format!("send spec to exec init: {e}")))?;
    let report: Report = serde_json::from_slice(&buf)
        .map_err(|_| Error::Sandbox(format!("exec init exited ({exit}) without a report")))?;
    match report.stage.as_deref() {
        Some("user") => Err(Error::User {
            spec: spec.user.clone(),
            reason: report.message.unwrap_or_default(),
        }),
        Some("setup") => Err(Error::Sandbox(report.message.unwrap_or_default())),
        _ => Ok(ExitStatus {
            code: report.code,
            signal: report.signal,
            oom_killed: false,
            message: report.message,
            tail: Vec::new(),
        }),
    }
}

pub(crate) fn exec_main() -> ExitCode {
    let Ok(report_fd) = sys::take_inherited_fd(REPORT_FD) else {
        eprintln!("rbuild exec init: no report descriptor (internal entry point)");
        return ExitCode::from(125);
    };
    let report = exec_monitor().unwrap_or_else(|e| Report {
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

/// The `cgroup.procs` files of `pid`'s cgroups (v2 unified and v1 hierarchies).
fn cgroup_procs_of(pid: i32) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let base = if ctrl.is_empty() {
            PathBuf::from("/sys/fs/cgroup")
        } else if let Some(name) = ctrl.strip_prefix("name=") {
            Path::new("/sys/fs/cgroup").join(name)
        } else {
            Path::new("/sys/fs/cgroup").join(ctrl)
        };
        let procs = base.join(rel).join("cgroup.procs");
        if procs.exists() {
            out.push(procs);
        }
    }
    out
}

fn exec_monitor() -> Result<Report> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| Error::sys("pdeathsig", e))?;
    let fd = sys::take_inherited_fd(SPEC_FD)?;
    let mut buf = Vec::new();
    File::from(fd)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Sandbox(format!("read exec spec: {e}")))?;
    let ExecInit { spec, tty } =
        serde_json::from_slice(&buf).map_err(|e| Error::Sandbox(format!("parse spec: {e}")))?;
    let console = match tty {
        Some(_) => Some(sys::take_inherited_fd(CONSOLE_FD)?),
        None => None,
    };
    let set = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("sigprocmask", e))?;
    // Joined by the child alone: this process stays outside the container's cgroup (not
    // charged to its limits, not listed in its `cgroup.procs` as a pid it cannot see).
    let cgroup_procs = cgroup_procs_of(spec.pid);
    let mut namespaces = Vec::new();
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", spec.pid));
        let f = File::open(&path)
            .map_err(|e| Error::Sandbox(format!("container process {} is gone: {e}", spec.pid)))?;
        namespaces.push((f, flag, path));
    }
    // The cgroup and mount namespaces in the child, in that order, after it joined the
    // cgroup: the kernel refuses a move between groups outside the mover's cgroup namespace
    // (and a private one then shows the group as `/`); after the mount namespace this
    // process's /proc is the container's, where the fork check cannot see it.
    let mut late = Vec::new();
    for (f, flag, path) in namespaces {
        if flag == CloneFlags::CLONE_NEWNS || flag == CloneFlags::CLONE_NEWCGROUP {
            late.push((f, flag, path));
        } else {
            sys::setns(&f, flag, &path)?;
        }
    }
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    match sys::fork()? {
        sys::Fork::Child => {
            drop(err_r);
            for procs in &cgroup_procs {
                // v1 hierarchies the container shares with the host may refuse; the
                // unified one (or the limited controllers) is what matters.
                let _ = std::fs::write(procs, "0");
            }
            for (f, flag, path) in &late {
                if let Err(e) = sys::setns(f, *flag, path) {
                    let failure = ChildFailure::setup(e);
                    let mut w = File::from(err_w);
                    let _ = serde_json::to_writer(&mut w, &failure);
                    std::process::exit(125);
                }
            }
            exec_child(&spec, err_w, tty.zip(console))
        }
        sys::Fork::Parent(pid) => {
            drop(err_w);
            drop(console);
            child_report(pid, &set, err_r)
        }
    }
}

fn exec_child(spec: &ExecSpec, err_w: OwnedFd, tty: Option<(TtySpec, OwnedFd)>) -> ! {
    let failure = match exec_setup(spec, tty) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let mut f = File::from(err_w);
    let _ = serde_json::to_writer(&mut f, &failure);
    drop(f);
    std::process::exit(failure.code)
}

fn exec_setup(
    spec: &ExecSpec,
    tty: Option<(TtySpec, OwnedFd)>,
) -> std::result::Result<Never, ChildFailure> {
    sys::reset_signals().map_err(ChildFailure::setup)?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(ChildFailure::setup)?;
    let (id, env, cwd) = process_identity(&spec.user, &spec.env, &spec.cwd)?;
    if let Some((tty, sock)) = tty {
        crate::tty::setup_console(&sock, &tty, id.uid, false).map_err(ChildFailure::setup)?;
    }
    let (caps, seccomp) = crate::sandbox::security_parts(&spec.security, spec.privileged)
        .map_err(ChildFailure::setup)?;
    apply_security(&id, spec.no_new_privs, &caps, &seccomp)?;
    nix::unistd::chdir(cwd).map_err(|e| ChildFailure {
        stage: "exec".into(),
        code: 126,
        message: format!("chdir to cwd ({cwd:?}) failed: {e}"),
    })?;
    exec(&spec.argv, &env)
}
