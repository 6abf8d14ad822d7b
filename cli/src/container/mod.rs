//! Containers: `rbuild run`, `create`, `start`, `ps`, `logs`, `stop`, `kill`, `rm`, `wait`,
//! `exec` — docker's spelling and exit codes (the container's code; 125 when rbuild itself
//! fails; 126/127 when the command cannot be run; 137 when killed or OOM).
//!
//! Daemonless like podman: a foreground `rbuild run` runs the container itself; a detached
//! one (`-d`, `start`) re-executes the binary as the hidden `__container-monitor ID`, which
//! owns the container's output (json-file log), its port proxies and its cleanup. State is
//! in [`state`]; the running itself in [`runtime`]; the other commands in [`cmds`].

pub mod args;
mod attach;
mod cmds;
mod commit;
mod copy;
pub mod health;
pub mod mounts;
mod platform;
pub mod runtime;
pub mod security;
pub mod state;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Subcommand};
use rbuild_exporter::registry::RegistryOptions;

use args::CreateArgs;
use runtime::Output;
use state::{Containers, Status};

#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a container from an image (as `docker run`)
    Run(Box<RunArgs>),
    /// Create a container without starting it
    Create(Box<CreateArgs>),
    /// Start stopped containers
    Start {
        /// Attach to the output and return the exit code
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach the container's stdin (implies `-a`)
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers
    Ps {
        /// Show all containers (default: running only)
        #[arg(short = 'a', long)]
        all: bool,
        /// Only IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Do not truncate IDs and commands
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// `table`, `table TEMPLATE`, `json` or a Go template (`{{.ID}}\t{{.Names}}`)
        #[arg(long)]
        format: Option<String>,
        /// Filter: `name=`, `id=`, `status=`, `label=KEY[=VALUE]`
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Show the N last created containers (all states)
        #[arg(short = 'n', long = "last")]
        last: Option<usize>,
        /// Show the latest created container (all states)
        #[arg(short = 'l', long)]
        latest: bool,
    },
    /// Print a container's logs
    Logs {
        /// Follow the output
        #[arg(short = 'f', long)]
        follow: bool,
        /// Number of lines from the end (`all` by default)
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show timestamps
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Only logs since a time (RFC 3339, Unix seconds) or for a duration (`10m`, `1h30m`)
        #[arg(long)]
        since: Option<String>,
        /// Only logs before a time (RFC 3339, Unix seconds) or a duration ago (`10m`)
        #[arg(long)]
        until: Option<String>,
        container: String,
    },
    /// Stop running containers (stop signal, then SIGKILL after a grace period)
    Stop {
        /// Seconds to wait before killing
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Pause all processes within containers (the cgroup freezer)
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers (stop, then start detached)
    Restart {
        /// Seconds to wait before killing
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers (SIGKILL by default)
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers
    Rm {
        /// Kill and remove a running container
        #[arg(short = 'f', long)]
        force: bool,
        /// Also remove the container's anonymous volumes
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to stop and print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container
    Exec(cmds::ExecArgs),
    /// Processes of a running container
    Top { container: String },
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Copy files between a container and the host (`-` is a tar stream)
    Cp(copy::CpArgs),
    /// Write a container's filesystem as a tar archive
    Export {
        /// Write to a file instead of stdout
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Attach to a running `-t` container's terminal (Ctrl-P Ctrl-Q detaches)
    Attach {
        /// Do not attach stdin
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        container: String,
    },
    /// Internal: the monitor of a detached container
    #[command(name = "__container-monitor", hide = true)]
    Monitor { id: String },
}

fn root_of(global: &crate::GlobalOpts) -> Result<PathBuf, String> {
    rbuild_exporter::root::resolve_root(global.root.as_deref()).map_err(|e| e.to_string())
}

fn registry_of(global: &crate::GlobalOpts) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: global.insecure_registries.clone(),
        ..Default::default()
    }
}

/// Docker's style for errors of rbuild itself: `Error: ...` and 125.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(125)
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c.clamp(0, 255)).unwrap_or(255))
}

pub fn run(cmd: ContainerCommand, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let root = match root_of(global) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    Ok(match cmd {
        ContainerCommand::Run(args) => run_cmd(&root, &args, registry_of(global)),
        ContainerCommand::Create(args) => {
            match runtime::create(&root, &args, registry_of(global)) {
                Ok(id) => {
                    println!("{id}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        ContainerCommand::Start {
            attach,
            interactive,
            containers,
        } => start_cmd(&root, attach || interactive, interactive, &containers),
        ContainerCommand::Monitor { id } => monitor_cmd(&root, &id),
        ContainerCommand::Attach {
            no_stdin,
            container,
        } => attach::attach_cmd(&root, &container, no_stdin),
        ContainerCommand::Volume(cmd) => volumes::run(&root, cmd),
        ContainerCommand::Cp(args) => copy::cp(&root, &args),
        ContainerCommand::Export { output, container } => {
            copy::export(&root, output.as_deref(), &container)
        }
        ContainerCommand::Commit(args) => commit::commit(&root, &args),
        other => cmds::run(&root, other),
    })
}

/// A command-line error: `run`, `create`, `start` and `exec` exit 125 as docker's do;
/// everything else the way clap does (2, or 0 for help).
pub fn usage_error(args: &[std::ffi::OsString], e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let container_cmd = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| matches!(a.as_ref(), "run" | "create" | "start" | "exec"));
    if !container_cmd || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit()
    }
    let _ = e.print();
    std::process::exit(125)
}

/// Docker's refusal of `-it` when stdin is not a terminal (exit 1).
pub(crate) fn check_input_tty(interactive: bool, tty: bool) -> Result<(), ExitCode> {
    use std::os::fd::AsFd as _;
    if interactive && tty && !rbuild_executor::tty::is_terminal(std::io::stdin().as_fd()) {
        eprintln!("the input device is not a TTY");
        return Err(ExitCode::from(1));
    }
    Ok(())
}

/// Our terminal in raw mode while a `-it` container runs (restored on drop).
pub(crate) fn raw_terminal(
    interactive: bool,
    tty: bool,
) -> Result<Option<rbuild_executor::tty::RawTerminal>, String> {
    use std::os::fd::AsFd as _;
    if !(interactive && tty) {
        return Ok(None);
    }
    rbuild_executor::tty::RawTerminal::enable(std::io::stdin().as_fd())
        .map(Some)
        .map_err(|e| format!("set the terminal to raw mode: {e}"))
}

/// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT received by this process to the container's
/// sandbox init (which passes them to the command), from a thread of its own.
fn forward_signals(root: &Path, id: &str, cancel: Arc<AtomicBool>) {
    let containers = match Containers::open(root) {
        Ok(c) => c,
        Err(_) => return,
    };
    let id = id.to_string();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let kinds = [
                (SignalKind::interrupt(), 2),
                (SignalKind::terminate(), 15),
                (SignalKind::hangup(), 1),
                (SignalKind::quit(), 3),
            ];
            let mut streams = Vec::new();
            for (k, n) in kinds {
                if let Ok(s) = signal(k) {
                    streams.push((s, n));
                }
            }
            loop {
                let futs = streams
                    .iter_mut()
                    .map(|(s, n)| {
                        let n = *n;
                        Box::pin(async move {
                            s.recv().await;
                            n
                        })
                    })
                    .collect::<Vec<_>>();
                if futs.is_empty() {
                    return;
                }
                let (sig, _, _) = futures_util::future::select_all(futs).await;
                let st = containers.state(&id);
                match st.init_pid {
                    Some(init) => {
                        let _ = rbuild_executor::process::send_signal(init, sig);
                    }
                    None => cancel.store(true, Ordering::Relaxed),
                }
            }
        });
    });
}

fn run_cmd(root: &Path, args: &RunArgs, registry: RegistryOptions) -> ExitCode {
    if !args.detach
        && let Err(c) = check_input_tty(args.create.interactive, args.create.tty)
    {
        return c;
    }
    let id = match runtime::create(root, &args.create, registry) {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    if args.detach {
        return match start_detached(root, &id) {
            Ok(()) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    foreground(root, &id, args.create.interactive, args.create.tty)
}

fn foreground(root: &Path, id: &str, interactive: bool, tty: bool) -> ExitCode {
    if let Err(c) = check_input_tty(interactive, tty) {
        return c;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    forward_signals(root, id, cancel.clone());
    let output = if tty {
        Output::Terminal { input: interactive }
    } else if interactive {
        Output::Inherit
    } else {
        Output::LogAndPrint
    };
    let raw = match raw_terminal(interactive, tty) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let result = runtime::run_container(root, id, output, cancel);
    drop(raw);
    match result {
        Ok(c) => code(c),
        Err(e) => fail(e),
    }
}

/// Starts the detached monitor of `id` and waits until the container runs (or failed).
fn start_detached(root: &Path, id: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    let containers = Containers::open(root)?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let errlog = std::fs::File::create(containers.path(id).join("monitor.log"))
        .map_err(|e| format!("monitor log: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .arg("--root")
        .arg(root)
        .arg("__container-monitor")
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(errlog)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the container monitor: {e}"))?;
    let monitor = child.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if !containers.path(id).exists() {
            break; // exited already and removed (--rm)
        }
        // The state of this start, not the one an earlier run left (`Exited`): the monitor
        // records its own PID first.
        let ours = |st: &state::State| st.monitor_pid == Some(monitor);
        let st = containers.state(id);
        if ours(&st) && (st.pid.is_some() || st.status == Status::Exited) {
            if let Some(e) = st.error {
                return Err(e);
            }
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let st = containers.state(id);
            if ours(&st) && (st.status == Status::Exited || st.pid.is_some()) {
                if let Some(e) = st.error {
                    return Err(e);
                }
                break;
            }
            let log = std::fs::read_to_string(containers.path(id).join("monitor.log"))
                .unwrap_or_default();
            return Err(format!(
                "container monitor exited ({status}): {}",
                log.trim()
            ));
        }
        if std::time::Instant::now() > deadline {
            return Err("timed out waiting for the container to start".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The monitor outlives us; it is not our child to reap.
    drop(child);
    Ok(())
}

fn monitor_cmd(root: &Path, id: &str) -> ExitCode {
    let cancel = Arc::new(AtomicBool::new(false));
    forward_signals(root, id, cancel.clone());
    match runtime::run_container(root, id, Output::Log, cancel) {
        Ok(c) => code(c),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(125)
        }
    }
}

fn start_cmd(root: &Path, attach: bool, stdin: bool, names: &[String]) -> ExitCode {
    let containers = match Containers::open(root) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut failed = false;
    for name in names {
        let id = match containers.find(name) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
                continue;
            }
        };
        if containers.state(&id).status == Status::Running {
            if !attach {
                println!("{name}");
            }
            continue;
        }
        if attach {
            let (interactive, tty) = containers
                .config(&id)
                .map(|c| (c.interactive && stdin, c.tty))
                .unwrap_or((false, false));
            return foreground(root, &id, interactive, tty);
        }
        match start_detached(root, &id) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `rbuild inspect` of a container (the image inspect falls back to it).
pub fn inspect_json(root: &Path, what: &str) -> Option<serde_json::Value> {
    let containers = Containers::open(root).ok()?;
    let id = containers.find(what).ok()?;
    cmds::inspect_value(&containers, &id).ok()
}
