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
use crate::images::format::{ListFormat, render_list, table, time_ago};

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Keep stdin open (stdin is always passed through)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
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
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
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
            format,
            filter,
            last,
            latest,
        } => ps(
            &containers,
            PsOptions {
                all,
                quiet,
                no_trunc,
                format,
                filter,
                last: if latest { Some(1) } else { last },
            },
        ),
        ContainerCommand::Logs {
            follow,
            tail,
            timestamps,
            since,
            until,
            container,
        } => (|| {
            let window = LogWindow {
                since: since.as_deref().map(parse_time_bound).transpose()?,
                until: until.as_deref().map(parse_time_bound).transpose()?,
            };
            logs(&containers, &container, follow, &tail, timestamps, window)
        })(),
        ContainerCommand::Restart {
            time,
            containers: names,
        } => {
            let mut errors = Vec::new();
            for name in &names {
                let restarted = containers.find(name).and_then(|id| {
                    stop(&containers, &id, time)?;
                    super::start_detached(root, &id)
                });
                match restarted {
                    Ok(()) => println!("{name}"),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("\n"))
            }
        }
        ContainerCommand::Stop {
            time,
            containers: names,
        } => each_named(&containers, &names, |id| stop(&containers, id, time)),
        ContainerCommand::Pause { containers: names } => {
            each_named(&containers, &names, |id| pause(&containers, id))
        }
        ContainerCommand::Unpause { containers: names } => {
            each_named(&containers, &names, |id| unpause(&containers, id))
        }
        ContainerCommand::Kill {
            signal,
            containers: names,
        } => {
            let sig = match parse_signal(&signal) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            each_named(&containers, &names, |id| kill(&containers, id, sig))
        }
        ContainerCommand::Rm {
            force,
            volumes,
            containers: names,
        } => each_named(&containers, &names, |id| {
            rm(root, &containers, id, force, volumes)
        }),
        ContainerCommand::Wait { containers: names } => each(&containers, &names, |id| {
            let c = wait(&containers, id)?;
            println!("{c}");
            Ok(false)
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

/// Applies `f` to every named container, printing each name on success as docker does for
/// `stop`, `kill`, `rm`, `pause` and `unpause`.
fn each_named(
    containers: &Containers,
    names: &[String],
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    each(containers, names, |id| {
        f(id)?;
        Ok(true)
    })
}

/// Applies `f` to every named container; a name is printed when `f` returns true.
fn each(
    containers: &Containers,
    names: &[String],
    mut f: impl FnMut(&str) -> Result<bool, String>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for name in names {
        match containers.find(name).and_then(|id| f(&id)) {
            Ok(true) => println!("{name}"),
            Ok(false) => {}
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
        Status::Running if is_paused(st) => format!("Up {} (Paused)", since(&st.started_at)),
        Status::Running => format!(
            "Up {}{}",
            since(&st.started_at),
            super::health::ps_suffix(st.health.as_ref())
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code.unwrap_or(0),
            since(&st.finished_at)
        ),
    }
}

/// `ps` flags.
struct PsOptions {
    all: bool,
    quiet: bool,
    no_trunc: bool,
    format: Option<String>,
    filter: Vec<String>,
    /// `-n N` / `-l`: only the N last created, whatever their state.
    last: Option<usize>,
}

/// Whether a container passes every `--filter` (`name=` substring, `id=` prefix, `status=`,
/// `label=KEY` or `label=KEY=VALUE`); filters of one key are alternatives, as in Docker.
fn ps_matches(
    filters: &[(String, String)],
    cfg: &super::state::Config,
    st: &State,
) -> Result<bool, String> {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    for key in keys {
        let mut any = false;
        for (_, v) in filters.iter().filter(|(k, _)| k == key) {
            any |= match key {
                "name" => cfg.name.contains(v.trim_start_matches('/')),
                "id" => cfg.id.starts_with(v.as_str()),
                "status" if v == "paused" => is_paused(st),
                "status" if v == "running" => st.status == Status::Running && !is_paused(st),
                "status" => st.status.as_str() == v,
                "label" => match v.split_once('=') {
                    Some((k, val)) => cfg.labels.get(k).is_some_and(|x| x == val),
                    None => cfg.labels.contains_key(v.as_str()),
                },
                other => return Err(format!("invalid filter '{other}'")),
            };
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Docker's `CreatedAt` spelling: `2024-01-02 15:04:05 +0000 UTC`.
fn created_at(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                .to_string()
        })
        .unwrap_or_default()
}

fn ps(containers: &Containers, o: PsOptions) -> Result<(), String> {
    let filters = o
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // A status filter lists stopped containers too, as `docker ps -f status=exited` does.
    let all = o.all || o.last.is_some() || filters.iter().any(|(k, _)| k == "status");
    let mut list = Vec::new();
    for id in containers.ids() {
        let Ok(cfg) = containers.config(&id) else {
            continue;
        };
        let st = containers.state(&id);
        if !all && st.status != Status::Running {
            continue;
        }
        if !ps_matches(&filters, &cfg, &st)? {
            continue;
        }
        list.push((cfg, st));
    }
    list.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    if let Some(n) = o.last {
        list.truncate(n);
    }
    let mut rows = Vec::new();
    for (cfg, st) in list {
        let short = if o.no_trunc {
            cfg.id.clone()
        } else {
            cfg.id[..12].to_string()
        };
        if o.quiet {
            println!("{short}");
            continue;
        }
        let mut command = cfg.argv.join(" ");
        if !o.no_trunc && command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        let labels = cfg
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(json!({
            "Command": format!("\"{command}\""),
            "CreatedAt": created_at(&cfg.created),
            "ID": short,
            "Image": cfg.image,
            "Labels": labels,
            "LocalVolumes": "0",
            "Mounts": "",
            "Names": cfg.name,
            "Networks": cfg.network,
            "Ports": st.ports.join(", "),
            "RunningFor": time_ago(Some(&cfg.created)),
            "Size": "0B",
            "State": st.status.as_str(),
            "Status": status_text(&st),
        }));
    }
    if o.quiet {
        return Ok(());
    }
    let columns = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("RunningFor", "CREATED"),
        ("Status", "STATUS"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
    ];
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("RunningFor", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Status", "STATUS"),
        ("State", "STATE"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
        ("LocalVolumes", "LOCAL VOLUMES"),
        ("Networks", "NETWORKS"),
    ];
    let format = ListFormat::parse(o.format.as_deref().unwrap_or("table"));
    print!("{}", render_list(&format, &columns, &headers, &rows)?);
    Ok(())
}

/// `logs --since/--until` bounds.
#[derive(Debug, Clone, Copy, Default)]
struct LogWindow {
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
}

impl LogWindow {
    fn contains(&self, time: Option<&str>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
            return false;
        };
        let t = t.with_timezone(&chrono::Utc);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// Go's `time.ParseDuration` (`1h30m`, `10m`, `1.5s`, `300ms`).
pub(crate) fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    chrono::Duration::try_milliseconds((total * 1000.0) as i64)
}

/// A `--since`/`--until` value as Docker reads it: RFC 3339 (or without a zone: UTC), Unix
/// seconds (`1700000000.5`), or a Go duration before now (`10m`, `1h30m`).
fn parse_time_bound(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, f)
            && let Some(t) = d.and_hms_opt(0, 0, 0)
        {
            return Ok(t.and_utc());
        }
    }
    // Unix seconds, the fraction read as digits (an f64 would lose the nanoseconds).
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && let Ok(secs) = whole.parse::<i64>()
    {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        let nanos = digits.parse::<u32>().unwrap_or(0);
        if let Some(t) = chrono::DateTime::from_timestamp(secs, nanos) {
            return Ok(t);
        }
    }
    if let Some(d) = parse_go_duration(s) {
        return Ok(chrono::Utc::now() - d);
    }
    Err(format!(
        "invalid value for \"since\"/\"until\": {s:?} (a timestamp like 2024-01-02T15:04:05Z, Unix seconds, or a duration like 10m)"
    ))
}

/// Prints log entries of `text` (json-file lines) inside `window`; returns how many bytes
/// were complete.
fn print_entries(text: &str, timestamps: bool, window: LogWindow) -> usize {
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
        if !window.contains(v["time"].as_str()) {
            continue;
        }
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
    window: LogWindow,
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
    print_entries(&lines[start..].concat(), timestamps, window);
    if !follow {
        return Ok(());
    }
    follow_from(containers, &id, complete as u64, timestamps, window);
    Ok(())
}

/// Prints container `id`'s log entries from byte `offset` on as they are written, until it
/// stops running (or `window.until` passes).
fn follow_from(
    containers: &Containers,
    id: &str,
    mut offset: u64,
    timestamps: bool,
    window: LogWindow,
) {
    let path = containers.log_path(id);
    loop {
        let running =
            containers.path(id).exists() && containers.state(id).status == Status::Running;
        if let Ok(f) = std::fs::File::open(&path) {
            use std::io::{Read as _, Seek as _};
            let mut f = std::io::BufReader::new(f);
            if f.seek(std::io::SeekFrom::Start(offset)).is_ok() {
                let mut buf = String::new();
                let _ = f.read_to_string(&mut buf);
                offset += print_entries(&buf, timestamps, window) as u64;
            }
        }
        if !running || window.until.is_some_and(|u| chrono::Utc::now() > u) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where container `id`'s log ends now (after its last complete entry): what `attach`
/// follows from, taken before it sends any input.
pub(crate) fn log_end(containers: &Containers, id: &str) -> u64 {
    let data = std::fs::read(containers.log_path(id)).unwrap_or_default();
    data.iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i as u64 + 1)
}

/// Prints what container `id` logs from byte `offset` ([`log_end`]) on, until it stops.
pub(crate) fn follow_log(containers: &Containers, id: &str, offset: u64) {
    follow_from(containers, id, offset, false, LogWindow::default());
}

/// The exit code of a container that stopped, once its monitor recorded it (bounded wait;
/// `None` when it was removed or nothing was recorded).
pub(crate) fn exit_code_when_recorded(containers: &Containers, id: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !containers.path(id).exists() {
            return None;
        }
        let st = containers.state(id);
        if st.status == Status::Exited {
            return Some(st.exit_code.unwrap_or(0));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
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

/// The freezer of a running container's group (`pause`/`unpause`).
fn freezer(st: &State) -> Option<rbuild_executor::cgroup::Freezer> {
    if st.status != Status::Running {
        return None;
    }
    rbuild_executor::cgroup::Freezer::of_pid(st.pid.or(st.init_pid)?).ok()
}

/// Whether a running container is paused.
pub(crate) fn is_paused(st: &State) -> bool {
    freezer(st).is_some_and(|f| f.is_frozen())
}

/// `pause`: freezes every process of the container (the cgroup freezer, as Docker).
pub(crate) fn pause(containers: &Containers, id: &str) -> Result<(), String> {
    let st = running_state(containers, id)?;
    let f = freezer(&st).ok_or_else(|| {
        format!("container {id} has no freezer cgroup (created by an older rbuild?)")
    })?;
    if f.is_frozen() {
        return Err(format!("Container {id} is already paused"));
    }
    f.freeze()
        .map_err(|e| format!("pausing container {id}: {e}"))
}

/// `unpause`: thaws a paused container.
pub(crate) fn unpause(containers: &Containers, id: &str) -> Result<(), String> {
    let st = running_state(containers, id)?;
    match freezer(&st) {
        Some(f) if f.is_frozen() => f
            .thaw()
            .map_err(|e| format!("unpausing container {id}: {e}")),
        _ => Err(format!("Container {id} is not paused")),
    }
}

/// Signals a container's command. A paused container takes only SIGKILL (and is thawed so
/// it dies), as Docker.
fn signal_container(st: &State, sig: i32) -> Result<(), String> {
    let frozen = freezer(st).filter(|f| f.is_frozen());
    if let Some(f) = frozen {
        if sig != 9 {
            return Err(
                "the container is paused: unpause the container before stopping or killing"
                    .to_string(),
            );
        }
        signal_process(st, sig)?;
        return f.thaw().map_err(|e| e.to_string());
    }
    signal_process(st, sig)
}

fn signal_process(st: &State, sig: i32) -> Result<(), String> {
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
    // A paused container cannot take its stop signal: it is killed (Docker's fallback).
    let sig = if is_paused(&st) {
        9
    } else {
        parse_signal(&cfg.stop_signal).unwrap_or(15)
    };
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

fn rm(
    root: &Path,
    containers: &Containers,
    id: &str,
    force: bool,
    volumes: bool,
) -> Result<(), String> {
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
    let used = containers.config(id).map(|c| c.volumes).unwrap_or_default();
    super::runtime::remove_container(root, id)?;
    drop(lock);
    if volumes {
        super::volumes::remove_anonymous(root, &used)?;
    }
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
    if !args.detach
        && let Err(c) = super::check_input_tty(args.interactive, args.tty)
    {
        return c;
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
    if is_paused(&st) {
        return fail(format!(
            "Container {id} is paused, unpause the container before exec"
        ));
    }
    if args.detach {
        return match exec_detached(containers, &id, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let Some(pid) = st.pid else {
        return fail(format!("container {id} has no process yet"));
    };
    let env_over = super::args::with_caller_values(&args.env);
    let spec = rbuild_executor::ExecSpec {
        pid,
        argv: args.command.clone(),
        env: super::args::merge_env(&cfg.env, &env_over),
        cwd: args.workdir.clone().unwrap_or_else(|| cfg.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| cfg.user.clone()),
        no_new_privs: cfg.security.no_new_privs,
        privileged: args.privileged || cfg.security.privileged,
        security: cfg.security.security.clone(),
    };
    let result = if args.tty {
        let raw = match super::raw_terminal(args.interactive, true) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let mut on_output = |bytes: &[u8]| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        };
        let input = args.interactive;
        let io = rbuild_executor::tty::PtyIo {
            tty: super::runtime::terminal_spec(true),
            on_master: Some(Box::new(move |m| {
                super::runtime::attach_terminal(m, true, input)
            })),
            on_output: &mut on_output,
        };
        let r = rbuild_executor::exec_in_with(&spec, Some(io));
        drop(raw);
        r
    } else {
        rbuild_executor::exec_in(&spec)
    };
    match result {
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

/// `exec -d`: the same exec, run by a background `rbuild exec` of its own (stdio on
/// `/dev/null`, its own process group) that we do not wait for, as Docker returns at once.
fn exec_detached(containers: &Containers, id: &str, args: &ExecArgs) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    let root = containers
        .dir
        .parent()
        .ok_or_else(|| "the containers directory has no root".to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(root).arg("exec");
    // A bare `-e K` takes our value now: the background process may not have it.
    for e in super::args::with_caller_values(&args.env) {
        cmd.arg("-e").arg(e);
    }
    if let Some(w) = &args.workdir {
        cmd.arg("-w").arg(w);
    }
    if let Some(u) = &args.user {
        cmd.arg("-u").arg(u);
    }
    if args.privileged {
        cmd.arg("--privileged");
    }
    cmd.arg(id).arg("--").args(&args.command);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("start the detached exec: {e}"))
}

fn top(containers: &Containers, name: &str) -> Result<(), String> {
    let id = containers.find(name)?;
    let st = running_state(containers, &id)?;
    let pid = st
        .pid
        .ok_or_else(|| format!("container {id} has no process yet"))?;
    // The container's cgroup, as Docker's `top` (exec'd processes included); the process
    // tree of its first process where the group cannot be read.
    let mut pids =
        rbuild_executor::cgroup::run_group_pids(pid).unwrap_or_else(|_| descendants(pid));
    pids.sort_unstable();
    let mut rows = Vec::new();
    for p in pids {
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
    let paused = is_paused(&st);
    let mut v = json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": cfg.argv.first().cloned().unwrap_or_default(),
        "Args": cfg.argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if paused { "paused" } else { st.status.as_str() },
            "Running": running,
            "Paused": paused,
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
            "MemorySwap": cfg.limits.memory_swap_bytes.unwrap_or(0),
            "CpuShares": cfg.limits.cpu_shares.unwrap_or(0),
            "CpusetCpus": cfg.limits.cpuset_cpus.clone().unwrap_or_default(),
            "Privileged": cfg.security.privileged,
            "CapAdd": cfg.security.security.cap_add,
            "CapDrop": cfg.security.security.cap_drop,
            "SecurityOpt": cfg.security.security_opt,
            "ShmSize": cfg.security.security.shm_size.unwrap_or(rbuild_executor::security::DEFAULT_SHM_SIZE),
            "CgroupnsMode": if cfg.security.security.cgroupns_private { "private" } else { "host" },
            "Ulimits": cfg.security.security.ulimits.iter().map(|u| serde_json::json!({
                "Name": u.name,
                "Soft": if u.soft == u64::MAX { -1 } else { u.soft as i64 },
                "Hard": if u.hard == u64::MAX { -1 } else { u.hard as i64 },
            })).collect::<Vec<_>>(),
            "ExtraHosts": cfg.add_hosts,
            "Dns": cfg.dns,
            "PortBindings": cfg.publish,
            "PublishAllPorts": cfg.publish_all,
        },
        "Mounts": super::volumes::inspect_mounts(containers, &cfg),
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
    });
    if let Some(h) = &st.health {
        v["State"]["Health"] = json!(h);
    }
    if let Some(hc) = &cfg.healthcheck {
        // Docker's form: the test as written, durations in nanoseconds.
        v["Config"]["Healthcheck"] = json!({
            "Test": std::iter::once("CMD").chain(hc.argv.iter().map(String::as_str)).collect::<Vec<_>>(),
            "Interval": hc.interval_ms * 1_000_000,
            "Timeout": hc.timeout_ms * 1_000_000,
            "StartPeriod": hc.start_period_ms * 1_000_000,
            "StartInterval": hc.start_interval_ms * 1_000_000,
            "Retries": hc.retries,
        });
    }
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_as_docker_reads_them() {
        let t = parse_time_bound("1700000000.123456789").unwrap();
        assert_eq!(
            (t.timestamp(), t.timestamp_subsec_nanos()),
            (1_700_000_000, 123_456_789)
        );
        assert_eq!(
            parse_time_bound("1700000000").unwrap().timestamp(),
            1_700_000_000
        );
        let t = parse_time_bound("2024-01-02T03:04:05.5+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-02T02:04:05.500+00:00");
        assert_eq!(
            parse_time_bound("2024-01-02").unwrap().to_rfc3339(),
            "2024-01-02T00:00:00+00:00"
        );
        assert_eq!(
            parse_go_duration("1h30m"),
            chrono::Duration::try_minutes(90)
        );
        assert_eq!(
            parse_go_duration("1.5s"),
            chrono::Duration::try_milliseconds(1500)
        );
        assert!(parse_go_duration("10x").is_none());
        assert!(parse_time_bound("yesterday").is_err());
        assert!(parse_time_bound("").is_err());
    }
}
