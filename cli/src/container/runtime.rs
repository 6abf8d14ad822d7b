//! Creating a container (image → layer snapshots → the container's own active snapshot) and
//! running it: the work of the container monitor, done by the detached monitor process
//! (`rbuild __container-monitor ID`, like podman's conmon) or by a foreground `rbuild run`
//! itself. The monitor mounts the rootfs, sets up the network (bridge endpoint, port
//! proxies), runs the sandbox, writes the json-file log, records PIDs and the exit code,
//! and cleans up (network, mount, and with `--rm` the snapshot and the container).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rbuild_executor::net::{self, Bridge, Endpoint, PortProxy};
use rbuild_executor::sandbox::{EtcFiles, Stream};
use rbuild_executor::snapshot::{self, Mounts};
use rbuild_executor::{NetworkMode, ProcessSpec, RunOptions, Snapshotter, Stdio};
use rbuild_exporter::image::Platform as ExPlatform;
use rbuild_exporter::images::Images;
use rbuild_exporter::registry::RegistryOptions;
use rbuild_solver::{ImageResolver as _, Op, Worker as _};

use super::args::{CreateArgs, PullPolicy, make_config, new_id};
use super::state::{Config, Containers, Status, now};
use crate::build::worker::{RealWorker, WorkerConfig};

pub fn snapshotter(root: &Path) -> Result<Snapshotter, String> {
    Snapshotter::open(root.join("snapshotter-v1"))
        .map_err(|e| format!("opening the snapshotter: {e}"))
}

/// `rbuild create`: resolves (pulls) the image, makes its layers snapshots through the build
/// worker, prepares the container's snapshot and records the container. Returns its ID.
pub fn create(root: &Path, args: &CreateArgs, registry: RegistryOptions) -> Result<String, String> {
    // Bad security flags (a capability name, a seccomp profile file) fail before any pull.
    let mut limits = rbuild_executor::cgroup::Limits {
        memory_bytes: args
            .memory
            .as_deref()
            .and_then(|m| super::args::parse_bytes(m).ok()),
        ..Default::default()
    };
    super::security::security_config(&args.security, &mut limits)?;
    let worker = RealWorker::open(
        WorkerConfig {
            root: root.to_path_buf(),
            context_dir: None,
            ignore: Vec::new(),
            pull: args.pull == PullPolicy::Always,
            registry,
            limits: Default::default(),
            security: Default::default(),
        },
        Some(Arc::new(|line: &str| eprintln!("{line}"))),
    )?;
    let host = ExPlatform::host();
    let requested = match &args.platform {
        Some(p) => Some(p.parse::<ExPlatform>().map_err(|e| {
            format!("--platform {p}: {e} (e.g. linux/amd64, linux/arm64, linux/arm/v7)")
        })?),
        None => None,
    };
    let local: Vec<ExPlatform> = Images::open(worker.store())
        .lookup(&args.image)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.platform.parse().ok())
        .collect();
    let choice = super::platform::choose(requested.as_ref(), &host, &local);
    crate::build::emulation::check(
        &host,
        &choice.platform,
        Path::new(crate::build::emulation::BINFMT_DIR),
    )
    .map_err(|e| format!("running {} for {e}", args.image))?;
    if args.pull == PullPolicy::Never {
        if local.is_empty() {
            return Err(format!("No such image: {}", args.image));
        }
        if let Some(actual) = &choice.local_mismatch {
            return Err(super::platform::mismatch_error(
                &args.image,
                &choice.platform,
                actual,
            ));
        }
    }
    if let Some(w) = &choice.warning {
        eprintln!("{w}");
    }
    let platform = rbuild_solver::Platform::parse(&choice.platform.to_string())
        .map_err(|e| format!("platform {}: {e}", choice.platform))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (resolved, top) = rt.block_on(async {
        let resolved =
            worker
                .resolve_image(&args.image, &platform)
                .await
                .map_err(|e| match &choice.local_mismatch {
                    Some(actual) => format!(
                        "{}; pulling it for {} failed: {}",
                        super::platform::mismatch_error(&args.image, &choice.platform, actual),
                        choice.platform,
                        e.message
                    ),
                    None => format!("Unable to find image '{}': {}", args.image, e.message),
                })?;
        // A registry may serve a single-platform image of another platform than asked.
        let got = ExPlatform::new(
            &resolved.config.os,
            &resolved.config.architecture,
            resolved.config.variant.as_deref(),
        );
        if choice.explicit && !got.architecture.is_empty() && !choice.platform.matches(&got) {
            return Err(super::platform::mismatch_error(
                &args.image,
                &choice.platform,
                &got.normalized(),
            ));
        }
        let op = Op::Image {
            reference: args.image.clone(),
            digest: resolved.manifest_digest.clone(),
            platform: platform.clone(),
        };
        let key = rbuild_solver::cache::CacheKey(resolved.manifest_digest.clone());
        let progress = rbuild_solver::VertexProgress::new(
            0,
            "container image",
            Arc::new(rbuild_solver::NoProgress),
        );
        let top = worker
            .execute(&op, &[], &key, &progress)
            .await
            .map_err(|e| e.message)?;
        Ok::<_, String>((resolved, top))
    })?;
    let id = new_id();
    let mut cfg = make_config(args, &id, &resolved.config, &resolved.manifest_digest)?;
    let containers = Containers::open(root)?;
    worker
        .snapshotter()
        .prepare(&cfg.snapshot, Some(&top.0))
        .map_err(|e| format!("prepare the container's filesystem: {e}"))?;
    // Volumes are made and the container recorded under the volumes' lock, so `volume rm`
    // sees the container as a user as soon as the volume exists.
    let vols = super::volumes::Volumes::open(root)?;
    let _vlock = vols.lock()?;
    let made = super::volumes::make_for(&vols, &mut cfg);
    if let Err(e) = made.and_then(|()| containers.create(&cfg)) {
        let _ = worker.snapshotter().remove(&cfg.snapshot);
        for v in cfg
            .volumes
            .iter()
            .filter(|v| v.anonymous && !v.name.is_empty())
        {
            let _ = vols.remove_locked(&v.name);
        }
        return Err(e);
    }
    Ok(id)
}

/// The rootfs mount of a running container; unmounted on drop.
struct RootfsMount {
    path: std::path::PathBuf,
    mounted: bool,
}

impl RootfsMount {
    fn mount(sn: &Snapshotter, cfg: &Config, path: &Path) -> Result<RootfsMount, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        if snapshot::unmount(path).is_ok() {
            // A dead monitor's mount.
        }
        let mounts = sn
            .mounts(&cfg.snapshot)
            .map_err(|e| format!("container filesystem: {e}"))?;
        let mut m = RootfsMount {
            path: path.to_path_buf(),
            mounted: false,
        };
        sn.mount(&mounts, path)
            .map_err(|e| format!("mount {}: {e}", path.display()))?;
        m.mounted = true;
        if cfg.read_only {
            // The mount points the sandbox needs are made in the writable layer first (as
            // Docker's init layer), then the same layers are mounted without an upper dir.
            for d in ["proc", "dev", "sys", "etc", "tmp"] {
                let _ = std::fs::create_dir_all(path.join(d));
            }
            for f in ["etc/resolv.conf", "etc/hosts", "etc/hostname"] {
                let p = path.join(f);
                if std::fs::symlink_metadata(&p).is_err() {
                    let _ = std::fs::File::create(&p);
                }
            }
            for mnt in &cfg.mounts {
                let (target, dir) = match mnt {
                    rbuild_executor::MountSpec::Bind { source, target, .. } => {
                        (target, source.is_dir())
                    }
                    rbuild_executor::MountSpec::Tmpfs { target, .. } => (target, true),
                };
                let p = path.join(target.trim_start_matches('/'));
                if dir {
                    let _ = std::fs::create_dir_all(&p);
                } else if let Some(parent) = p.parent() {
                    let _ = std::fs::create_dir_all(parent);
                    let _ = std::fs::File::create(&p);
                }
            }
            m.unmount()?;
            let ro = match mounts {
                Mounts::Overlay {
                    mut lowerdirs,
                    upperdir: Some(upper),
                    ..
                } => {
                    lowerdirs.insert(0, upper);
                    Mounts::Overlay {
                        lowerdirs,
                        upperdir: None,
                        workdir: None,
                    }
                }
                Mounts::Bind { source, .. } => Mounts::Bind {
                    source,
                    readonly: true,
                },
                other => other,
            };
            sn.mount(&ro, path)
                .map_err(|e| format!("mount {} read-only: {e}", path.display()))?;
            m.mounted = true;
        }
        Ok(m)
    }

    fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            snapshot::unmount(&self.path)
                .map_err(|e| format!("unmount {}: {e}", self.path.display()))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for RootfsMount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

/// The container's network while it runs; torn down on drop.
struct Network {
    bridge: Option<(Bridge, Endpoint)>,
    proxies: Vec<PortProxy>,
}

impl Drop for Network {
    fn drop(&mut self) {
        for p in self.proxies.drain(..) {
            p.stop();
        }
        if let Some((bridge, ep)) = self.bridge.take() {
            let _ = bridge.release(ep);
        }
    }
}

fn dns_resolv(dns: &[String]) -> Option<String> {
    if dns.is_empty() {
        return None;
    }
    Some(dns.iter().map(|d| format!("nameserver {d}\n")).collect())
}

/// The network mode, the `/etc` files, the guard, the published ports and the IP.
type NetSetup = (NetworkMode, EtcFiles, Network, Vec<String>, Option<String>);

/// Sets up the network of `cfg`; returns the mode, the `/etc` files, and what to tear down.
fn setup_network(root: &Path, cfg: &Config) -> Result<NetSetup, String> {
    let mut net_guard = Network {
        bridge: None,
        proxies: Vec::new(),
    };
    let gateway = std::net::Ipv4Addr::new(172, 17, 0, 1);
    match cfg.network.as_str() {
        "bridge" => {
            let bridge = Bridge::open(root).map_err(|e| format!("bridge network: {e}"))?;
            let gw = bridge.gateway();
            let extra = parse_hosts(&cfg.add_hosts, gw)?;
            let ep = bridge
                .connect(&cfg.id, &cfg.hostname)
                .map_err(|e| format!("bridge network: {e}"))?;
            let mut etc = ep.etc_files(&extra);
            if let Some(r) = dns_resolv(&cfg.dns) {
                etc.resolv_conf = Some(r);
            }
            etc.hostname = Some(format!("{}\n", cfg.hostname));
            let mode = NetworkMode::Join(ep.netns.path().to_path_buf());
            let ip = ep.ip.to_string();
            let mut mappings = Vec::new();
            for p in &cfg.publish {
                mappings.extend(net::parse_publish(p).map_err(|e| e.to_string())?);
            }
            if cfg.publish_all {
                mappings.extend(net::publish_all(&cfg.exposed_ports).map_err(|e| e.to_string())?);
            }
            net_guard.bridge = Some((bridge, ep));
            let mut ports = Vec::new();
            if !mappings.is_empty()
                && let Some((bridge, ep)) = &net_guard.bridge
            {
                let proxies = bridge
                    .publish(ep, &mappings)
                    .map_err(|e| format!("publish ports: {e}"))?;
                for p in &proxies {
                    let proto = format!("{:?}", p.proto()).to_lowercase();
                    ports.push(format!(
                        "{}->{}/{proto}",
                        p.local_addr(),
                        p.backend_addr().port()
                    ));
                }
                net_guard.proxies = proxies;
            }
            Ok((mode, etc, net_guard, ports, Some(ip)))
        }
        "none" => {
            let extra = parse_hosts(&cfg.add_hosts, gateway)?;
            let etc = EtcFiles {
                resolv_conf: Some(dns_resolv(&cfg.dns).unwrap_or_default()),
                hosts: Some(net::dns::hosts_file(&cfg.hostname, None, &extra)),
                hostname: Some(format!("{}\n", cfg.hostname)),
            };
            Ok((NetworkMode::None, etc, net_guard, Vec::new(), None))
        }
        _ => {
            let extra = parse_hosts(&cfg.add_hosts, gateway)?;
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (name, ip) in &extra {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
            let etc = EtcFiles {
                resolv_conf: Some(dns_resolv(&cfg.dns).unwrap_or_else(net::dns::host_resolv_conf)),
                hosts: Some(hosts),
                hostname: Some(format!("{}\n", cfg.hostname)),
            };
            Ok((NetworkMode::Host, etc, net_guard, Vec::new(), None))
        }
    }
}

fn parse_hosts(specs: &[String], gw: std::net::Ipv4Addr) -> Result<Vec<(String, IpAddr)>, String> {
    specs
        .iter()
        .map(|s| net::dns::parse_add_host(s, gw).map_err(|e| e.to_string()))
        .collect()
}

/// How the monitor connects the container's output.
pub enum Output {
    /// Detached: into the json-file log only.
    Log,
    /// Foreground without `-i`/`-t`: the log, and our stdout/stderr.
    LogAndPrint,
    /// Foreground with `-i` without `-t`: the caller's stdio itself (no log).
    Inherit,
    /// Foreground with `-t`: the container's pty copied to our stdout (and the log), and
    /// our stdin to it when `input` (`-i`).
    Terminal { input: bool },
}

/// A json-file log writer (Docker's `{"log":"...\n","stream":"stdout","time":"..."}`).
pub struct LogWriter {
    file: std::fs::File,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        Ok(LogWriter { file })
    }

    pub fn line(&mut self, stream: Stream, text: &str) {
        let entry = serde_json::json!({
            "log": format!("{text}\n"),
            "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
            "time": now(),
        });
        let _ = writeln!(self.file, "{entry}");
    }
}

/// Runs container `id` to its end (the monitor's work). Returns the exit code.
/// `ready` is called once the container started (or failed to).
pub fn run_container(
    root: &Path,
    id: &str,
    output: Output,
    cancel: Arc<AtomicBool>,
) -> Result<i32, String> {
    let containers = Containers::open(root)?;
    let cfg = containers.config(id)?;
    let sn = snapshotter(root)?;
    {
        let _lock = containers.lock(id)?;
        let st = containers.state(id);
        if st.status == Status::Running {
            return Err(format!("container {id} is already running"));
        }
        containers.update_locked(id, |st| {
            st.status = Status::Running;
            st.monitor_pid = Some(std::process::id() as i32);
            st.init_pid = None;
            st.pid = None;
            st.exit_code = None;
            st.oom_killed = false;
            st.error = None;
            st.stopping = false;
            st.started_at = Some(now());
            st.finished_at = None;
            st.health = cfg
                .healthcheck
                .as_ref()
                .map(|_| super::health::Health::starting());
        })?;
    }
    let result = run_inner(root, &containers, &sn, &cfg, output, cancel);
    let (code, oom, error) = match &result {
        Ok((code, oom)) => (*code, *oom, None),
        Err(e) => (125, false, Some(e.clone())),
    };
    containers.update(id, |st| {
        st.status = Status::Exited;
        st.exit_code = Some(code);
        st.oom_killed = oom;
        st.error = error;
        st.pid = None;
        st.init_pid = None;
        st.ports.clear();
        st.finished_at = Some(now());
    })?;
    if cfg.auto_remove {
        remove_container(root, id)?;
        super::volumes::remove_anonymous(root, &cfg.volumes)?;
    }
    result.map(|(code, _)| code)
}

fn run_inner(
    root: &Path,
    containers: &Containers,
    sn: &Snapshotter,
    cfg: &Config,
    output: Output,
    cancel: Arc<AtomicBool>,
) -> Result<(i32, bool), String> {
    let rootfs = containers.rootfs(&cfg.id);
    let with_volumes = super::volumes::with_volume_mounts(root, cfg)?;
    let mount = RootfsMount::mount(sn, &with_volumes, &rootfs)?;
    super::volumes::populate_all(root, cfg, &rootfs)?;
    let (network, etc, net_guard, ports, ip) = setup_network(root, cfg)?;
    containers.update(&cfg.id, |st| {
        st.ports = ports;
        st.ip = ip;
    })?;
    let mut spec = ProcessSpec::new(&rootfs, cfg.argv.clone());
    spec.env = cfg.env.clone();
    spec.cwd = if cfg.cwd.is_empty() {
        "/".to_string()
    } else {
        cfg.cwd.clone()
    };
    spec.user = cfg.user.clone();
    spec.hostname = cfg.hostname.clone();
    spec.network = network;
    spec.mounts = with_volumes.mounts.clone();
    spec.etc = etc;
    spec.limits = cfg.limits.clone();
    spec.no_new_privs = cfg.security.no_new_privs;
    spec.privileged = cfg.security.privileged;
    spec.security = cfg.security.security.clone();
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    // A detached `-i` container without a terminal reads a pipe whose write end `attach`
    // clients get from the monitor (as a `-t` one's terminal master); the monitor keeps it
    // open, so the container's stdin stays open as Docker's.
    let mut _stdin_server = None;
    let stdin = if matches!(output, Output::Log) && cfg.interactive && !cfg.tty {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("stdin pipe: {e}"))?;
        let server = super::attach::Server::new(&cfg.id);
        server.listen(w);
        _stdin_server = Some(server);
        Some(Arc::new(r))
    } else {
        None
    };
    let opts = RunOptions {
        cancel: Some(cancel),
        started: Some(tx),
        stdin,
    };
    // Record the PIDs as soon as the sandbox has them (a thread: `run` blocks); then the
    // health checks start.
    let checks_stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let containers = containers.clone();
        let id = cfg.id.clone();
        let cfg = cfg.clone();
        let checks_stop = checks_stop.clone();
        std::thread::spawn(move || {
            let Ok(init) = rx.recv() else { return };
            let init = init as i32;
            let _ = containers.update(&id, |st| st.init_pid = Some(init));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && rbuild_executor::process::alive(init) {
                if let Some(pid) = rbuild_executor::process::container_pid(init) {
                    let _ = containers.update(&id, |st| {
                        if st.status == Status::Running {
                            st.pid = Some(pid);
                        }
                    });
                    super::health::spawn_checker(containers, cfg, pid, checks_stop);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    spec.init = cfg.init;
    let foreground = !matches!(output, Output::Log);
    let status = match output {
        Output::Inherit => rbuild_executor::run(&spec, Stdio::Inherit, &opts),
        Output::Terminal { input } => {
            let log = LogWriter::open(&containers.log_path(&cfg.id))?;
            run_on_pty(&spec, &opts, log, true, input, None)
        }
        Output::Log | Output::LogAndPrint if cfg.tty => {
            let log = LogWriter::open(&containers.log_path(&cfg.id))?;
            let print = matches!(output, Output::LogAndPrint);
            let server = (!print).then(|| super::attach::Server::new(&cfg.id));
            run_on_pty(&spec, &opts, log, print, false, server)
        }
        Output::Log | Output::LogAndPrint => {
            let print = matches!(output, Output::LogAndPrint);
            let mut log = LogWriter::open(&containers.log_path(&cfg.id))?;
            let mut on_line = |stream: Stream, text: &str| {
                log.line(stream, text);
                if print {
                    match stream {
                        Stream::Stdout => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{text}");
                            let _ = out.flush();
                        }
                        Stream::Stderr => eprintln!("{text}"),
                    }
                }
            };
            rbuild_executor::run(
                &spec,
                Stdio::Capture {
                    tail: 0,
                    on_line: Some(&mut on_line),
                },
                &opts,
            )
        }
    };
    drop(opts);
    checks_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = recorder.join();
    drop(net_guard);
    drop(mount);
    let status = status.map_err(|e| e.to_string())?;
    if let Some(msg) = &status.message
        && (status.code == 126 || status.code == 127)
    {
        let text = format!("failed to create task for container: exec failed: {msg}");
        if let Ok(mut log) = LogWriter::open(&containers.log_path(&cfg.id)) {
            log.line(Stream::Stderr, &text);
        }
        if foreground && cfg.tty {
            // Our terminal may be in raw mode (`-it`): end the line with CRLF.
            eprint!("Error: {text}\r\n");
        } else if foreground {
            eprintln!("Error: {text}");
        }
    }
    // The container's own status, as Docker reports it: 137 when the OOM killer killed the
    // main process, whatever the main process returned when it killed one of its children
    // (`OOMKilled` says so either way).
    Ok((status.code, status.oom_killed))
}

/// Where the caller's window size is read: stdout when it is a terminal, else stdin.
fn size_source() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd as _;
    let out = std::io::stdout();
    if rbuild_executor::tty::is_terminal(out.as_fd()) {
        return out.as_fd().try_clone_to_owned().ok();
    }
    let inp = std::io::stdin();
    if rbuild_executor::tty::is_terminal(inp.as_fd()) {
        return inp.as_fd().try_clone_to_owned().ok();
    }
    None
}

/// Copies our terminal's window size to the container's pty master now and on every
/// SIGWINCH, from a thread of its own (for as long as this process lives).
pub(crate) fn forward_window_size(master: std::os::fd::OwnedFd) {
    use std::os::fd::AsFd as _;
    let Some(src) = size_source() else { return };
    let _ = rbuild_executor::tty::copy_window_size(src.as_fd(), master.as_fd());
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Registered before the container's output is read, so no change after it is lost.
    let Ok(mut winch) = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    }) else {
        return;
    };
    std::thread::spawn(move || {
        rt.block_on(async move {
            while winch.recv().await.is_some() {
                let _ = rbuild_executor::tty::copy_window_size(src.as_fd(), master.as_fd());
            }
        });
    });
}

/// The pty to open: our terminal's size when `sized`.
pub(crate) fn terminal_spec(sized: bool) -> rbuild_executor::tty::TtySpec {
    rbuild_executor::tty::TtySpec {
        size: if sized {
            size_source().and_then(|fd| {
                use std::os::fd::AsFd as _;
                rbuild_executor::tty::window_size(fd.as_fd())
            })
        } else {
            None
        },
    }
}

/// Connects our terminal to a container's pty `master`: window-size changes forwarded when
/// `resize`, our stdin copied to it (from a thread) when `input`.
pub(crate) fn attach_terminal(master: std::os::fd::OwnedFd, resize: bool, input: bool) {
    if resize && let Ok(copy) = master.try_clone() {
        forward_window_size(copy);
    }
    if input {
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut master = std::fs::File::from(master);
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if master.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Runs the container on a pseudo-terminal: its output (CRLF line ends, as Docker's) goes to
/// the json-file log as `stdout` and, when `print`, to our stdout as it comes; with `input`
/// our stdin is copied to it (raw bytes: Ctrl-C reaches the container as its terminal's
/// SIGINT) and window-size changes are forwarded.
fn run_on_pty(
    spec: &ProcessSpec,
    opts: &RunOptions,
    mut log: LogWriter,
    print: bool,
    input: bool,
    server: Option<super::attach::Server>,
) -> rbuild_executor::Result<rbuild_executor::ExitStatus> {
    let server = server.map(std::sync::Arc::new);
    let for_master = server.clone();
    let mut pending: Vec<u8> = Vec::new();
    let mut on_output = |bytes: &[u8]| {
        if let Some(s) = &server {
            s.broadcast(bytes);
        }
        if print {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
        pending.extend_from_slice(bytes);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            log.line(Stream::Stdout, &String::from_utf8_lossy(&line[..pos]));
        }
    };
    let io = rbuild_executor::tty::PtyIo {
        tty: terminal_spec(print),
        on_master: Some(Box::new(move |m: std::os::fd::OwnedFd| {
            if let (Some(s), Ok(copy)) = (&for_master, m.try_clone()) {
                s.listen(copy);
            }
            attach_terminal(m, print, input)
        })),
        on_output: &mut on_output,
    };
    let status = rbuild_executor::run(spec, Stdio::Pty(io), opts);
    if !pending.is_empty() {
        log.line(Stream::Stdout, &String::from_utf8_lossy(&pending));
    }
    status
}

/// Removes a stopped container: its mount point, snapshot and directory.
pub fn remove_container(root: &Path, id: &str) -> Result<(), String> {
    let containers = Containers::open(root)?;
    let cfg = containers.config(id)?;
    let sn = snapshotter(root)?;
    let rootfs = containers.rootfs(id);
    let _ = snapshot::unmount(&rootfs);
    if sn.stat(&cfg.snapshot).is_ok() {
        sn.remove(&cfg.snapshot)
            .map_err(|e| format!("remove the container's filesystem: {e}"))?;
    }
    containers.remove_dir(id)
}
