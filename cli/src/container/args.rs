//! `rbuild run`/`create` flags, spelled and meant as `docker run`'s, and how they combine with
//! the image config into a container [`Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use rbuild_executor::cgroup::Limits;
use rbuild_solver::Image;

use super::state::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

/// `rbuild create` (and the part of `rbuild run` shared with it).
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Remove the container (and its filesystem) when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (`K=V`, or `K` to pass the caller's value)
    #[arg(short = 'e', long = "env", value_name = "K[=V]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (`K=V` lines, `#` comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the image's ENTRYPOINT (`""` clears it)
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Bind mount a host path or mount a volume: `HOST:CTR[:ro]`, `NAME:CTR[:ro,nocopy]`,
    /// `CTR` (a new anonymous volume)
    #[arg(short = 'v', long = "volume", value_name = "SRC:CTR[:OPTS]")]
    pub volumes: Vec<String>,
    /// Attach a mount: `type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]`
    #[arg(long = "mount", value_name = "FIELDS")]
    pub mounts: Vec<String>,
    /// Mount a tmpfs: `PATH[:size=BYTES]`
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit (`512m`, `1g`, bytes)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Process limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Number of CPUs (CFS quota)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Network: `bridge` (default), `none` or `host`
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// Publish a container port: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every exposed port on a random host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add a line to /etc/hosts: `HOST:IP` (`host-gateway` = the bridge gateway)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// DNS servers for /etc/resolv.conf
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set a label `K=V`
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Pull the image: `missing` (default), `always`, `never`
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// Platform of the image (another architecture runs through qemu-user-static)
    /// [default: this machine's, or a local image's own with a warning]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait before killing the container on stop
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
    #[command(flatten)]
    pub health: super::health::HealthArgs,
    /// The image
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub command: Vec<String>,
}

/// Parses Docker's byte sizes: `512`, `64k`, `512m`, `1g` (binary units), `100b`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size: {s:?}"))?;
    if n < 0.0 {
        return Err(format!("invalid size: {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

/// `-e`/`--env-file` entries as `K=V` (a bare `K` takes the caller's value, or is dropped).
fn env_entries(args: &CreateArgs) -> Result<Vec<String>, String> {
    let mut raw = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("open {}: {e}", f.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            raw.push(line.to_string());
        }
    }
    raw.extend(args.env.iter().cloned());
    if let Some(e) = raw.iter().find(|e| e.starts_with('=')) {
        return Err(format!("invalid environment variable: {e}"));
    }
    Ok(with_caller_values(&raw))
}

/// `-e` entries as `K=V`: a bare `K` takes the caller's value, or is dropped when unset.
pub fn with_caller_values(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// `base` with `overrides` applied by key.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

/// Docker's random names: `adjective_surname`.
fn random_name(id: &str) -> String {
    const A: [&str; 16] = [
        "admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const B: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "jepsen", "knuth",
        "lovelace", "meitner", "noether", "pascal", "ritchie", "turing", "wozniak",
    ];
    let b = id.as_bytes();
    let x = usize::from(b.first().copied().unwrap_or(0)) % 16;
    let y = usize::from(b.get(1).copied().unwrap_or(0)) % 16;
    format!("{}_{}_{}", A[x], B[y], &id[..id.len().min(4)])
}

/// A new 64-hex container ID.
pub fn new_id() -> String {
    use sha2::Digest as _;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = sha2::Sha256::new();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(t.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    if let Ok(b) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(b);
    }
    hex::encode(h.finalize())
}

/// The container's config from the flags and the image's config.
pub fn make_config(
    args: &CreateArgs,
    id: &str,
    image: &Image,
    image_digest: &str,
) -> Result<Config, String> {
    let ic = &image.config;
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        Vec::new()
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err("No command specified".to_string());
    }
    let mut env = ic.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            format!("PATH={}", rbuild_executor::sandbox::DEFAULT_PATH),
        );
    }
    let env = merge_env(&env, &env_entries(args)?);
    let mut limits = Limits::default();
    if let Some(m) = &args.memory {
        let bytes = parse_bytes(m)?;
        if bytes < 6 * 1024 * 1024 {
            return Err("Minimum memory limit allowed is 6MB".to_string());
        }
        limits.memory_bytes = Some(bytes);
    }
    if let Some(p) = args.pids_limit
        && p > 0
    {
        limits.pids_max = Some(p as u64);
    }
    if let Some(c) = args.cpus {
        if c <= 0.0 {
            return Err(format!("invalid --cpus {c}: must be positive"));
        }
        limits.cpu_period_us = Some(100_000);
        limits.cpu_quota_us = Some((c * 100_000.0) as u64);
    }
    if !matches!(
        args.network.as_str(),
        "bridge" | "none" | "host" | "default"
    ) {
        return Err(format!(
            "network {} not found (bridge, none and host are supported)",
            args.network
        ));
    }
    let network = if args.network == "default" {
        "bridge".to_string()
    } else {
        args.network.clone()
    };
    if network != "bridge" && (!args.publish.is_empty() || args.publish_all) {
        // Docker ignores publishing with host networking and refuses it with none.
        if network == "none" {
            return Err(
                "conflicting options: port publishing and the container type network mode".into(),
            );
        }
    }
    for p in &args.publish {
        rbuild_executor::net::parse_publish(p).map_err(|e| e.to_string())?;
    }
    let requested =
        super::mounts::requested(&args.volumes, &args.mounts, &args.tmpfs, ic.volumes.keys())?;
    let mounts = requested.mounts;
    let volumes = requested.volumes;
    let security = super::security::security_config(&args.security, &mut limits)?;
    let mut labels: BTreeMap<String, String> = ic.labels.clone().into_iter().collect();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let stop_signal = args
        .stop_signal
        .clone()
        .or_else(|| (!ic.stop_signal.is_empty()).then(|| ic.stop_signal.clone()))
        .unwrap_or_else(|| "SIGTERM".to_string());
    rbuild_executor::process::parse_signal(&stop_signal).map_err(|e| e.to_string())?;
    let name = match &args.name {
        Some(n) => {
            let ok = !n.is_empty()
                && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                ));
            }
            n.clone()
        }
        None => random_name(id),
    };
    let hostname = match (&args.hostname, network.as_str()) {
        (Some(h), _) => h.clone(),
        (None, "host") => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| id[..12].to_string()),
        (None, _) => id[..12].to_string(),
    };
    Ok(Config {
        id: id.to_string(),
        name,
        image: args.image.clone(),
        image_digest: image_digest.to_string(),
        created: super::state::now(),
        argv,
        env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| ic.working_dir.clone()),
        user: args.user.clone().unwrap_or_else(|| ic.user.clone()),
        hostname,
        stop_signal,
        stop_timeout: args.stop_timeout,
        network,
        publish: args.publish.clone(),
        publish_all: args.publish_all,
        exposed_ports: ic.exposed_ports.keys().cloned().collect(),
        add_hosts: args.add_hosts.clone(),
        dns: args.dns.clone(),
        mounts,
        read_only: args.read_only,
        limits,
        labels,
        auto_remove: args.rm,
        tty: args.tty,
        interactive: args.interactive,
        security,
        init: args.init,
        volumes,
        volume_labels: requested.labels,
        snapshot: format!("ctr-{id}"),
        healthcheck: super::health::resolve(ic.healthcheck.as_ref(), &args.health)?,
    })
}
