//! Runs one process in a rootfs: the caller's side (`run`) and the spec it hands to the
//! sandbox init (`sandbox_init`), a re-execution of the current binary.
//!
//! Flow: `run` creates the run's cgroup, writes the generated `/etc` files into a private
//! temp dir, creates missing mount targets in the rootfs as empty stubs (recorded and removed
//! afterwards, like BuildKit's `MountStubsCleaner`, so they never reach the layer), then
//! spawns `/proc/self/exe __rbuild-sandbox-init` with the JSON spec on fd 3 and a report
//! pipe on fd 4. It streams stdout/stderr (line callback + last lines kept for error
//! messages), reads the init's report, kills whatever is left in the cgroup and cleans up.

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio as StdStdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::cgroup::{Cgroup, Limits};
use crate::error::{Error, IoContext, Result};
use crate::security::{Seccomp, Security};

/// The hidden first argument that turns the binary into the sandbox init.
pub const INIT_MARKER: &str = "__rbuild-sandbox-init";
/// Descriptor numbers of the init's spec and report pipes.
pub(crate) const SPEC_FD: i32 = 3;
pub(crate) const REPORT_FD: i32 = 4;
/// Docker's default PATH, used when the spec's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Network of the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NetworkMode {
    /// Share the host's network namespace (BuildKit's default for `RUN`).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
    /// Join an existing network namespace (e.g. `/run/netns/<name>` set up with a bridge and
    /// a veth pair by the caller): the hook for bridge networking.
    Join(PathBuf),
}

/// An extra mount of the process (`RUN --mount`, `rbuild run -v`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MountSpec {
    /// Bind a host file or directory at `target` (an absolute path inside the rootfs).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A fresh tmpfs at `target`, optionally size-limited.
    Tmpfs {
        target: String,
        size_bytes: Option<u64>,
        /// Permission bits of the tmpfs root (0755 when unset).
        #[serde(default)]
        mode: Option<u32>,
    },
}

impl MountSpec {
    fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// Contents of the generated files bind-mounted (read-only) over `/etc` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcFiles {
    pub resolv_conf: Option<String>,
    pub hosts: Option<String>,
    pub hostname: Option<String>,
}

/// What to run, where and as whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessSpec {
    /// The root filesystem, already mounted (a snapshot's merged view); absolute.
    pub rootfs: PathBuf,
    /// Command and arguments; `argv[0]` without `/` is looked up in the env's `PATH`.
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the rootfs, created (owned by the user) when missing, as
    /// BuildKit does.
    pub cwd: String,
    /// `USER`: `""` (root), `name`, `uid`, `name:group`, `uid:gid`.
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    pub mounts: Vec<MountSpec>,
    pub etc: EtcFiles,
    pub limits: Limits,
    /// Set `no_new_privs` (setuid binaries like `su` stop working when set).
    pub no_new_privs: bool,
    /// Keep every capability instead of Docker's default set (`RUN --security=insecure`).
    #[serde(default)]
    pub privileged: bool,
    /// Capabilities, seccomp, ulimits, `/dev/shm` size, cgroup namespace (Docker's
    /// defaults when left alone). With `privileged`: every capability, no seccomp filter,
    /// no masked or read-only paths, the host's devices and a writable `/sys`.
    #[serde(default)]
    pub security: Security,
    /// `--init`: PID 1 is rbuild's minimal init, which runs the command as its child,
    /// forwards signals to it and reaps orphaned zombies (Docker's tini).
    #[serde(default)]
    pub init: bool,
}

impl ProcessSpec {
    /// A spec with Docker's defaults: root, cwd `/`, host network, no limits.
    pub fn new(rootfs: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        ProcessSpec {
            rootfs: rootfs.into(),
            argv,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: "/".to_string(),
            user: String::new(),
            hostname: "rbuild".to_string(),
            network: NetworkMode::Host,
            mounts: Vec::new(),
            etc: EtcFiles::default(),
            limits: Limits::default(),
            no_new_privs: true,
            privileged: false,
            security: Security::default(),
            init: false,
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A per-line output callback.
pub type LineCallback<'a> = &'a mut dyn FnMut(Stream, &str);

/// How the process's standard streams are connected.
#[derive(Default)]
pub enum Stdio<'a> {
    /// stdin `/dev/null`; stdout and stderr captured line by line (the last `tail` lines are
    /// kept in the result) and passed to `on_line` when given.
    Capture {
        tail: usize,
        on_line: Option<LineCallback<'a>>,
    },
    /// stdin, stdout and stderr are the caller's (a terminal for `rbuild run`).
    Inherit,
    /// Everything to `/dev/null`.
    #[default]
    Null,
    /// A pseudo-terminal opened inside the container as its stdin/stdout/stderr and
    /// controlling terminal (`rbuild run -t`).
    Pty(crate::tty::PtyIo<'a>),
}

impl std::fmt::Debug for Stdio<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stdio::Capture { tail, on_line } => f
                .debug_struct("Capture")
                .field("tail", tail)
                .field("on_line", &on_line.is_some())
                .finish(),
            Stdio::Inherit => f.write_str("Inherit"),
            Stdio::Null => f.write_str("Null"),
            Stdio::Pty(io) => io.fmt(f),
        }
    }
}

/// How the process ended, with Docker's exit codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The process's exit code; 126 cannot execute, 127 not found, 128+N killed by signal N.
    pub code: i32,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
    /// The kernel OOM-killed a process of the run (memory limit reached).
    pub oom_killed: bool,
    /// Why the command could not start (126/127), e.g. `exec: "foo": executable file not
    /// found in $PATH`.
    pub message: Option<String>,
    /// The last captured output lines (with [`Stdio::Capture`]).
    pub tail: Vec<String>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Extra knobs of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to true (from any thread) to kill the run.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Receives the host PID of the sandbox init (the process that forwards SIGINT, SIGTERM,
    /// SIGHUP and SIGQUIT to the command) as soon as it is spawned; the command itself is
    /// its only child ([`crate::process::container_pid`]).
    pub started: Option<std::sync::mpsc::Sender<u32>>,
    /// With [`Stdio::Capture`]: the command's stdin instead of `/dev/null` (the read end of
    /// a pipe a detached `-i` container's monitor keeps for `attach`).
    pub stdin: Option<Arc<std::os::fd::OwnedFd>>,
}

/// What the init reports on its report pipe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub code: i32,
    pub signal: Option<i32>,
    /// Set when something failed: `stage` is `exec` (code 126/127), `user` or `setup`.
    pub stage: Option<String>,
    pub message: Option<String>,
}

/// The spec as the init receives it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct InitSpec {
    pub process: ProcessSpec,
    /// `cgroup.procs` files the container process joins first.
    pub cgroup_procs: Vec<PathBuf>,
    /// Generated files: (host source, absolute target inside the rootfs).
    pub etc_sources: Vec<(PathBuf, String)>,
    /// Start a new session (not when the caller's terminal is inherited).
    pub new_session: bool,
    /// The process's capability set (`CAP_*` names).
    #[serde(default)]
    pub caps: Vec<String>,
    /// Seccomp BPF programs (code, jt, jf, k) installed in order before `execve`.
    #[serde(default)]
    pub seccomp: Vec<Vec<(u16, u8, u8, u32)>>,
    /// The run's cgroup directories shown at `/sys/fs/cgroup` inside, as Docker does:
    /// (name under `/sys/fs/cgroup`, `""` for the v2 unified group itself; host directory).
    #[serde(default)]
    pub cgroup_mounts: Vec<(String, PathBuf)>,
    /// Open a pseudo-terminal inside and send its master on fd 5.
    #[serde(default)]
    pub tty: Option<crate::tty::TtySpec>,
}

static INIT_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` instead of `/proc/self/exe` as the sandbox init (a binary whose `main` calls
/// [`crate::sandbox_init_entry`] first); for test harnesses that own their `main`.
pub fn set_init_program(path: impl Into<PathBuf>) {
    let _ = INIT_PROGRAM.set(path.into());
}

pub(crate) fn init_program() -> PathBuf {
    INIT_PROGRAM
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// Missing mount targets created in the rootfs for a run, removed afterwards.
#[derive(Debug, Default)]
struct Stubs {
    /// (first created path, parent dir, parent mtime before)
    created: Vec<(PathBuf, Option<(PathBuf, SystemTime)>)>,
}

impl Stubs {
    /// Creates `target` (a file, or a directory when `dir`) under `rootfs` if missing. The
    /// target is resolved inside the rootfs first (symlinks followed relative to it, as the
    /// init will), so a dangling `/etc/resolv.conf -> ../run/...` gets its stub at the end
    /// of the link.
    fn ensure(&mut self, rootfs: &Path, target: &str, dir: bool) -> Result<()> {
        let resolved = crate::sandbox_rootfs::secure_join(rootfs, target)?;
        let rel = resolved.strip_prefix(rootfs).unwrap_or(Path::new(""));
        let comps: Vec<Component<'_>> = rel
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let mut cur = rootfs.to_path_buf();
        for (i, c) in comps.iter().enumerate() {
            let parent = cur.clone();
            cur.push(c.as_os_str());
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => return Ok(()),
                Ok(m) if !last && !m.is_dir() => return Ok(()),
                Ok(_) => continue,
                Err(_) => {
                    let mtime = fs::metadata(&parent).and_then(|m| m.modified()).ok();
                    let full = rootfs.join(comps.iter().collect::<PathBuf>());
                    if dir {
                        fs::create_dir_all(&full).ctx("create mount stub", &full)?;
                    } else {
                        if let Some(p) = full.parent() {
                            fs::create_dir_all(p).ctx("create mount stub", p)?;
                        }
                        fs::File::create_new(&full).ctx("create mount stub", &full)?;
                    }
                    self.created.push((cur, mtime.map(|t| (parent, t))));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Removes the stubs that are still empty and restores their parents' mtimes.
    fn cleanup(&mut self) {
        for (path, parent) in self.created.drain(..).rev() {
            let removed = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => remove_empty_tree(&path),
                Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(&path).is_ok(),
                _ => false,
            };
            if let (true, Some((dir, mtime))) = (removed, parent) {
                let _ = fs::File::open(&dir).and_then(|f| f.set_modified(mtime));
            }
        }
    }
}

/// Removes a tree made only of directories and empty files; false if anything else is left.
fn remove_empty_tree(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ok = match e.file_type() {
            Ok(t) if t.is_dir() => remove_empty_tree(&p),
            Ok(t) if t.is_file() => {
                e.metadata().is_ok_and(|m| m.len() == 0) && fs::remove_file(&p).is_ok()
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    fs::remove_dir(dir).is_ok()
}

impl Drop for Stubs {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn validate(spec: &ProcessSpec) -> Result<()> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(Error::InvalidSpec("empty command".into()));
    }
    if !spec.rootfs.is_absolute() || !spec.rootfs.is_dir() {
        return Err(Error::InvalidSpec(format!(
            "rootfs {} is not an absolute directory",
            spec.rootfs.display()
        )));
    }
    for m in &spec.mounts {
        if !m.target().starts_with('/') {
            return Err(Error::InvalidSpec(format!(
                "mount target {:?} is not absolute",
                m.target()
            )));
        }
        if let MountSpec::Bind { source, .. } = m
            && !source.exists()
        {
            return Err(Error::InvalidSpec(format!(
                "bind source {} does not exist",
                source.display()
            )));
        }
    }
    Ok(())
}

/// Where the run's cgroup directories appear under `/sys/fs/cgroup` inside: the v2 group
/// at the root; each v1 group under its hierarchy's name (`memory`, `cpu,cpuacct`).
fn cgroup_mounts(cgroup: &Cgroup) -> Vec<(String, PathBuf)> {
    let root = Path::new("/sys/fs/cgroup");
    match cgroup.version() {
        crate::cgroup::Version::V2 => cgroup
            .dirs()
            .iter()
            .map(|d| (String::new(), d.clone()))
            .collect(),
        crate::cgroup::Version::V1 => cgroup
            .dirs()
            .iter()
            .filter_map(|d| {
                let name = d.strip_prefix(root).ok()?.components().next()?;
                Some((name.as_os_str().to_string_lossy().into_owned(), d.clone()))
            })
            .collect(),
    }
}

/// BPF programs as the init receives them.
pub(crate) type Programs = Vec<Vec<(u16, u8, u8, u32)>>;

/// The capability set and the compiled seccomp programs of `spec` (none when privileged or
/// unconfined).
pub(crate) fn security_of(spec: &ProcessSpec) -> Result<(Vec<String>, Programs)> {
    security_parts(&spec.security, spec.privileged)
}

/// [`security_of`] from the settings themselves (also for `exec`).
pub(crate) fn security_parts(
    security: &Security,
    privileged: bool,
) -> Result<(Vec<String>, Programs)> {
    let caps = crate::security::effective_caps(security, privileged)?;
    let profile = match (&security.seccomp, privileged) {
        (_, true) | (Seccomp::Unconfined, _) => None,
        (Seccomp::Default, _) => Some(crate::seccomp::default_profile()),
        (Seccomp::Profile(p), _) => Some(p.clone()),
    };
    let programs = match profile {
        Some(p) => crate::seccomp::compile(&p, &caps)?
            .into_iter()
            .map(|prog| prog.iter().map(|f| (f.code, f.jt, f.jf, f.k)).collect())
            .collect(),
        None => Vec::new(),
    };
    Ok((caps.into_iter().collect(), programs))
}

/// Runs `spec` to completion and returns how it ended. Errors are failures to set the
/// sandbox up (bad spec, unknown user, mount failure); a command that ran — or could not be
/// executed (126/127) — is an `Ok` status. Blocking: call it from `spawn_blocking`.
pub fn run(spec: &ProcessSpec, stdio: Stdio<'_>, opts: &RunOptions) -> Result<ExitStatus> {
    validate(spec)?;
    let cgroup = Cgroup::create(&crate::cgroup::run_name(), &spec.limits)?;
    let state = tempfile::Builder::new()
        .prefix("rbuild-run-")
        .tempdir()
        .ctx("create temp dir", std::env::temp_dir())?;
    let mut etc_sources = Vec::new();
    for (name, content) in [
        ("resolv.conf", &spec.etc.resolv_conf),
        ("hosts", &spec.etc.hosts),
        ("hostname", &spec.etc.hostname),
    ] {
        if let Some(content) = content {
            let p = state.path().join(name);
            fs::write(&p, content).ctx("write", &p)?;
            etc_sources.push((p, format!("/etc/{name}")));
        }
    }
    let mut stubs = Stubs::default();
    for d in ["/proc", "/dev", "/sys"] {
        stubs.ensure(&spec.rootfs, d, true)?;
    }
    for (_, target) in &etc_sources {
        stubs.ensure(&spec.rootfs, target, false)?;
    }
    for m in &spec.mounts {
        let dir = match m {
            MountSpec::Bind { source, .. } => source.is_dir(),
            MountSpec::Tmpfs { .. } => true,
        };
        stubs.ensure(&spec.rootfs, m.target(), dir)?;
    }
    let (caps, seccomp) = security_of(spec)?;
    let init = InitSpec {
        process: spec.clone(),
        cgroup_procs: cgroup.procs_files(),
        etc_sources,
        new_session: !matches!(stdio, Stdio::Inherit),
        caps,
        seccomp,
        cgroup_mounts: cgroup_mounts(&cgroup),
        tty: match &stdio {
            Stdio::Pty(io) => Some(io.tty),
            _ => None,
        },
    };
    let result = spawn_and_wait(&init, stdio, opts, &cgroup);
    let killed = cgroup.kill_all();
    let oom = cgroup.oom_killed();
    let destroyed = cgroup.destroy();
    stubs.cleanup();
    drop(state);
    let mut status = result?;
    killed?;
    destroyed?;
    status.oom_killed = oom;
    Ok(status)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))
}

fn spawn_and_wait(
    init: &InitSpec,
    stdio: Stdio<'_>,
    opts: &RunOptions,
    cgroup: &Cgroup,
) -> Result<ExitStatus> {
    let (spec_r, spec_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let mut cmd = Command::new(init_program());
    cmd.arg(INIT_MARKER);
    let mut pty = None;
    let (tail_max, mut on_line) = match stdio {
        Stdio::Capture { tail, on_line } => {
            let input = match &opts.stdin {
                Some(fd) => {
                    StdStdio::from(fd.try_clone().map_err(|e| Error::io("dup", "stdin", e))?)
                }
                None => StdStdio::null(),
            };
            cmd.stdin(input)
                .stdout(StdStdio::piped())
                .stderr(StdStdio::piped());
            (tail, on_line)
        }
        Stdio::Inherit => (0, None),
        Stdio::Null => {
            cmd.stdin(StdStdio::null())
                .stdout(StdStdio::null())
                .stderr(StdStdio::null());
            (0, None)
        }
        Stdio::Pty(io) => {
            cmd.stdin(StdStdio::null())
                .stdout(StdStdio::null())
                .stderr(StdStdio::null());
            pty = Some(io);
            (0, None)
        }
    };
    let mut fds = vec![(spec_r, SPEC_FD), (report_w, REPORT_FD)];
    let mut console = None;
    if pty.is_some() {
        let (ours, theirs) = crate::sys::fd_socketpair()?;
        fds.push((theirs, crate::tty::CONSOLE_FD));
        console = Some(ours);
    }
    let mut child = crate::sys::spawn_with_fds(&mut cmd, fds)
        .map_err(|e| Error::Sandbox(format!("spawn {}: {e}", init_program().display())))?;
    if let Some(tx) = &opts.started {
        let _ = tx.send(child.id());
    }
    let json = serde_json::to_vec(init).map_err(|e| Error::Sandbox(e.to_string()))?;
    // The init reads the whole spec before doing anything, so this cannot deadlock.
    let mut spec_file = fs::File::from(spec_w);
    let write_res = spec_file.write_all(&json);
    drop(spec_file);

    let mut streams: Vec<(Stream, fs::File, Vec<u8>)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        streams.push((
            Stream::Stdout,
            fs::File::from(OwnedFd::from(out)),
            Vec::new(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        streams.push((
            Stream::Stderr,
            fs::File::from(OwnedFd::from(err)),
            Vec::new(),
        ));
    }
    let mut report_file = fs::File::from(report_r);
    let mut report_buf = Vec::new();
    let mut report_open = true;
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut emit = |stream: Stream, line: &[u8], tail: &mut VecDeque<String>| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(cb) = on_line.as_mut() {
            cb(stream, text);
        }
        if tail_max > 0 {
            if tail.len() == tail_max {
                tail.pop_front();
            }
            tail.push_back(text.to_string());
        }
    };
    let mut drain_deadline: Option<Instant> = None;
    let mut cancelled_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    if let (Some(io), Some(sock)) = (pty.as_mut(), console) {
        report_buf = crate::tty::pump(sock, &mut report_file, io, || {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                let at = *cancelled_at.get_or_insert_with(Instant::now);
                let _ = cgroup.kill_all();
                if at.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                }
            }
        })?;
        report_open = false;
    }
    while report_open || !streams.is_empty() {
        if opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            // Kill the run's processes; the init then reports 137. Kill the init itself only
            // if it has not finished a few seconds later.
            let at = *cancelled_at.get_or_insert_with(Instant::now);
            let _ = cgroup.kill_all();
            if at.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
            }
        }
        if !report_open && drain_deadline.is_none() {
            // The init is done: every process of the run is gone with its pid namespace,
            // unless something escaped; give the pipes a moment, then kill the cgroup.
            drain_deadline = Some(Instant::now() + Duration::from_secs(2));
        }
        if drain_deadline.is_some_and(|d| Instant::now() > d) {
            let _ = cgroup.kill_all();
            break;
        }
        let mut fds: Vec<PollFd<'_>> = streams
            .iter()
            .map(|(_, f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if report_open {
            fds.push(PollFd::new(report_file.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if report_open && ready.last() == Some(&true) {
            match report_file.read(&mut buf) {
                Ok(0) | Err(_) => report_open = false,
                Ok(n) => report_buf.extend_from_slice(&buf[..n]),
            }
        }
        let mut closed = Vec::new();
        for (i, (stream, file, pending)) in streams.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) | Err(_) => {
                    if !pending.is_empty() {
                        emit(*stream, pending, &mut tail);
                        pending.clear();
                    }
                    closed.push(i);
                }
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        emit(*stream, &line, &mut tail);
                    }
                    if pending.len() > 64 * 1024 {
                        emit(*stream, pending, &mut tail);
                        pending.clear();
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
    }
    let waited = child.wait();
    write_res.map_err(|e| Error::Sandbox(format!("send spec to init: {e}")))?;
    let exit = waited.map_err(|e| Error::Sandbox(format!("wait for init: {e}")))?;
    if cancelled_at.is_some() && report_buf.is_empty() {
        return Ok(ExitStatus {
            code: 137,
            signal: Some(9),
            oom_killed: false,
            message: Some("cancelled".into()),
            tail: tail.into_iter().collect(),
        });
    }
    let report: Report = serde_json::from_slice(&report_buf).map_err(|_| {
        Error::Sandbox(format!(
            "init exited ({exit}) without a report: {}",
            tail.iter().cloned().collect::<Vec<_>>().join("\n")
        ))
    })?;
    match report.stage.as_deref() {
        Some("user") => Err(Error::User {
            spec: init.process.user.clone(),
            reason: report.message.unwrap_or_default(),
        }),
        Some("setup") => Err(Error::Sandbox(report.message.unwrap_or_default())),
        _ => Ok(ExitStatus {
            code: report.code,
            signal: report.signal,
            oom_killed: false,
            message: report.message,
            tail: tail.into_iter().collect(),
        }),
    }
}
