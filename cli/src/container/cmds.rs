//! `ps`, `logs`, `stop`, `kill`, `rm`, `wait`, `exec`, `top` and the container JSON of
//! `inspect`.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use rbuild_executor::process::{alive, descendants, parse_signal, send_signal};
use serde_json::{Value, json};

use super::state::{Containers, State, Status};
use super::{ContainerCommand, code, fail};
use crate::images::format::{table, time_ago};

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Keep stdin open (stdin is always passed through)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY (not supported yet: the terminal is passed through)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Detached: run in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(root: &Path, cmd: ContainerCommand) -> ExitCode {
    let containers = match Containers::open(root) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result = match cmd {
        ContainerCommand::Ps {
            all,
            quiet,
            no_trunc,
        } => ps(&containers, all, quiet, no_trunc),
        ContainerCommand::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => logs(&containers, &container, follow, &tail, timestamps),
        ContainerCommand::Stop {
            time,
            containers: names,
        } => each(&containers, &names, |id| stop(&containers, id, time)),
        ContainerCommand::Kill {
            signal,
            containers: names,
        } => {
            let sig = match parse_signal(&signal) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            each(&containers, &names, |id| kill(&containers, id, sig))
        }
        ContainerCommand::Rm {
            force,
            containers: names,
        } => each(&containers, &names, |id| rm(root, &containers, id, force)),
        ContainerCommand::Wait { containers: names } => each(&containers, &names, |id| {
            let c = wait(&containers, id)?;
            println!("{c}");
            Ok(())
        }),
        ContainerCommand::Exec(args) => return exec(&containers, &args),
        ContainerCommand::Top { container } => top(&containers, &container),
        _ => Err("not a container command".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Applies `f` to every named container, printing each name on success (as docker does).
fn each(
    containers: &Containers,
    names: &[String],
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for name in names {
        match containers.find(name).and_then(|id| f(&id)) {
            Ok(()) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn status_text(st: &State) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .map(|t| time_ago(Some(t)).replace(" ago", ""))
            .unwrap_or_default()
    };
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&st.started_at)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code.unwrap_or(0),
            since(&st.finished_at)
        ),
    }
}

fn ps(containers: &Containers, all: bool, quiet: bool, no_trunc: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut list = Vec::new();
    for id in containers.ids() {
        let Ok(cfg) = containers.config(&id) else {
            continue;
        };
        let st = containers.state(&id);
        if !all && st.status != Status::Running {
            continue;
        }
        list.push((cfg, st));
    }
    list.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    for (cfg, st) in list {
        let short = if no_trunc {
            cfg.id.clone()
        } else {
            cfg.id[..12].to_string()
        };
        if quiet {
            println!("{short}");
            continue;
        }
        let mut command = cfg.argv.join(" ");
        if !no_trunc && command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        rows.push(vec![
            short,
            cfg.image.clone(),
            format!("\"{command}\""),
            time_ago(Some(&cfg.created)),
            status_text(&st),
            st.ports.join(", "),
            cfg.name.clone(),
        ]);
    }
    if !quiet {
        print!(
            "{}",
            table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES"
                ],
                &rows
            )
        );
    }
    Ok(())
}

/// Prints log entries of `text` (json-file lines); returns how many bytes were complete.
fn print_entries(text: &str, timestamps: bool) -> usize {
    let mut used = 0;
    let mut out = std::io::stdout().lock();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        used += line.len();
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let log = v["log"].as_str().unwrap_or("");
        let ts = if timestamps {
            format!("{} ", v["time"].as_str().unwrap_or(""))
        } else {
            String::new()
        };
        if v["stream"] == "stderr" {
            let _ = out.flush();
            eprint!("{ts}{log}");
        } else {
            let _ = write!(out, "{ts}{log}");
        }
    }
    let _ = out.flush();
    used
}

fn logs(
    containers: &Containers,
    name: &str,
    follow: bool,
    tail: &str,
    timestamps: bool,
) -> Result<(), String> {
    let id = containers.find(name)?;
    let path = containers.log_path(&id);
    let data = std::fs::read(&path).unwrap_or_default();
    let text = String::from_utf8_lossy(&data).into_owned();
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let lines: Vec<&str> = text[..complete].split_inclusive('\n').collect();
    let start = match tail {
        "all" | "" => 0,
        n => {
            let n: usize = n.parse().map_err(|_| format!("invalid --tail {n:?}"))?;
            lines.len().saturating_sub(n)
        }
    };
    print_entries(&lines[start..].concat(), timestamps);
    if !follow {
        return Ok(());
    }
    let mut offset = complete as u64;
    loop {
        let running =
            containers.path(&id).exists() && containers.state(&id).status == Status::Running;
        if let Ok(f) = std::fs::File::open(&path) {
            use std::io::{Read as _, Seek as _};
            let mut f = std::io::BufReader::new(f);
            if f.seek(std::io::SeekFrom::Start(offset)).is_ok() {
                let mut buf = String::new();
                let _ = f.read_to_string(&mut buf);
                offset += print_entries(&buf, timestamps) as u64;
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn running_state(containers: &Containers, id: &str) -> Result<State, String> {
    let st = containers.state(id);
    if st.status != Status::Running {
        return Err(format!("container {id} is not running"));
    }
    Ok(st)
}

/// Waits until the container is no longer running (or `limit` passes); true when stopped.
fn wait_stopped(containers: &Containers, id: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !containers.path(id).exists() || containers.state(id).status != Status::Running {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_container(st: &State, sig: i32) -> Result<(), String> {
    match (st.pid, st.init_pid) {
        (Some(pid), _) => send_signal(pid, sig).map_err(|e| e.to_string()),
        (None, Some(init)) => send_signal(init, sig).map_err(|e| e.to_string()),
        (None, None) => match st.monitor_pid {
            Some(m) if alive(m) => send_signal(m, 15).map_err(|e| e.to_string()),
            _ => Ok(()),
        },
    }
}

fn stop(containers: &Containers, id: &str, time: Option<u64>) -> Result<(), String> {
    let cfg = containers.config(id)?;
    if containers.state(id).status != Status::Running {
        return Ok(());
    }
    let st = containers.update(id, |st| st.stopping = true)?;
    let sig = parse_signal(&cfg.stop_signal).unwrap_or(15);
    signal_container(&st, sig)?;
    let grace = Duration::from_secs(time.or(cfg.stop_timeout).unwrap_or(10));
    if !wait_stopped(containers, id, grace) {
        signal_container(&containers.state(id), 9)?;
        if !wait_stopped(containers, id, Duration::from_secs(30)) {
            return Err(format!("container {id} did not stop"));
        }
    }
    Ok(())
}

fn kill(containers: &Containers, id: &str, sig: i32) -> Result<(), String> {
    let st = running_state(containers, id)?;
    signal_container(&st, sig)
}

fn rm(root: &Path, containers: &Containers, id: &str, force: bool) -> Result<(), String> {
    if containers.state(id).status == Status::Running {
        if !force {
            return Err(format!(
                "cannot remove container {id}: container is running: stop the container before removing or force remove"
            ));
        }
        signal_container(&containers.state(id), 9)?;
        if !wait_stopped(containers, id, Duration::from_secs(30)) {
            return Err(format!("container {id} did not stop"));
        }
    }
    if !containers.path(id).exists() {
        return Ok(());
    }
    let lock = containers.lock(id)?;
    super::runtime::remove_container(root, id)?;
    drop(lock);
    Ok(())
}

fn wait(containers: &Containers, id: &str) -> Result<i32, String> {
    loop {
        if !containers.path(id).exists() {
            return Err(format!("No such container: {id}"));
        }
        let st = containers.state(id);
        if st.status == Status::Exited {
            return Ok(st.exit_code.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exec(containers: &Containers, args: &ExecArgs) -> ExitCode {
    if args.tty {
        super::tty_notice();
    }
    let id = match containers.find(&args.container) {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let cfg = match containers.config(&id) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let st = match running_state(containers, &id) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Some(pid) = st.pid else {
        return fail(format!("container {id} has no process yet"));
    };
    let mut env_over = Vec::new();
    for e in &args.env {
        if e.contains('=') {
            env_over.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env_over.push(format!("{e}={v}"));
        }
    }
    let spec = rbuild_executor::ExecSpec {
        pid,
        argv: args.command.clone(),
        env: super::args::merge_env(&cfg.env, &env_over),
        cwd: args.workdir.clone().unwrap_or_else(|| cfg.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| cfg.user.clone()),
        no_new_privs: false,
    };
    match rbuild_executor::exec_in(&spec) {
        Ok(status) => {
            if let Some(m) = &status.message
                && (status.code == 126 || status.code == 127)
            {
                eprintln!("Error: OCI runtime exec failed: {m}");
            }
            code(status.code)
        }
        Err(e) => fail(e),
    }
}

fn top(containers: &Containers, name: &str) -> Result<(), String> {
    let id = containers.find(name)?;
    let st = running_state(containers, &id)?;
    let pid = st
        .pid
        .ok_or_else(|| format!("container {id} has no process yet"))?;
    let mut rows = Vec::new();
    for p in descendants(pid) {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = cmdline
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let uid = std::fs::File::open(format!("/proc/{p}/status"))
            .ok()
            .and_then(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .find_map(|l| {
                        l.strip_prefix("Uid:")
                            .and_then(|r| r.split_whitespace().next().map(str::to_string))
                    })
            })
            .unwrap_or_default();
        rows.push(vec![uid, p.to_string(), cmd]);
    }
    print!("{}", table(&["UID", "PID", "CMD"], &rows));
    Ok(())
}

/// Docker's container inspect JSON (the commonly read fields).
pub fn inspect_value(containers: &Containers, id: &str) -> Result<Value, String> {
    let cfg = containers.config(id)?;
    let st = containers.state(id);
    let running = st.status == Status::Running;
    Ok(json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": cfg.argv.first().cloned().unwrap_or_default(),
        "Args": cfg.argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": if running { st.pid.unwrap_or(0) } else { 0 },
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": cfg.image_digest,
        "LogPath": containers.log_path(id),
        "Name": format!("/{}", cfg.name),
        "HostConfig": {
            "AutoRemove": cfg.auto_remove,
            "NetworkMode": cfg.network,
            "ReadonlyRootfs": cfg.read_only,
            "Memory": cfg.limits.memory_bytes.unwrap_or(0),
            "PidsLimit": cfg.limits.pids_max,
            "NanoCpus": cfg.limits.cpu_quota_us.map(|q| q * 10_000).unwrap_or(0),
            "ExtraHosts": cfg.add_hosts,
            "Dns": cfg.dns,
            "PortBindings": cfg.publish,
            "PublishAllPorts": cfg.publish_all,
        },
        "Mounts": cfg.mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.interactive,
            "Env": cfg.env,
            "Cmd": cfg.argv,
            "Image": cfg.image,
            "WorkingDir": cfg.cwd,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
        },
        "NetworkSettings": {
            "IPAddress": st.ip.clone().unwrap_or_default(),
            "Ports": st.ports,
        },
    }))
}
