//! One cgroup per sandboxed run, on cgroup v2 (unified) or v1 (per-controller hierarchies).
//!
//! Direct cgroupfs files rather than the `cgroups-rs` crate: a run needs about six files
//! (limits, `cgroup.procs`, `cgroup.kill`, OOM events), the v1/v2 differences fit in a few
//! `match`es, and placing the group explicitly (nested under our own v1 group so the
//! caller's limits still apply; under `<root>/rbuild` on v2, where a populated group cannot
//! delegate controllers) is clearer written out than configured through a large API.
//!
//! On v2 the controllers a limit needs are enabled in the parents' `cgroup.subtree_control`
//! (as runc and podman do), never in a non-root group that holds processes (that cannot
//! delegate); a limit whose controller is missing fails with the reason.
//!
//! Dropping a [`Cgroup`] kills whatever is left in it and removes its directories, with any
//! groups made below them (a privileged container may). Groups whose creator was killed
//! before its cleanup (their names carry its pid) are removed by the next create.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The cgroup root of v2, and of the v1 hierarchies.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Directory (under the cgroup root on v2, under our own group on v1) holding run groups.
const PARENT: &str = "rbuild";
/// v1 controllers a run joins (`freezer` for `pause`).
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "freezer"];

/// Resource limits of one run (`None`: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Hard memory limit in bytes (swap is not allowed on top where it can be limited).
    pub memory_bytes: Option<u64>,
    /// CFS quota: `quota_us` of CPU time per `period_us` (default period 100 ms).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// Relative CPU weight in Docker's `--cpu-shares` units (1024 = default).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
    /// Memory plus swap in bytes (Docker's `--memory-swap`; `-1`: unlimited swap). `None`
    /// with a memory limit: no swap on top of it where swap can be limited.
    #[serde(default)]
    pub memory_swap_bytes: Option<i64>,
    /// CPUs the run may use (`--cpuset-cpus`, e.g. `0-1,3`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
}

/// Which cgroup version the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Detects the host's cgroup version (v2 when `/sys/fs/cgroup` is a cgroup2 mount).
pub fn version() -> Version {
    if crate::sys::is_cgroup2(Path::new(CGROUP_ROOT)) {
        Version::V2
    } else {
        Version::V1
    }
}

/// A created cgroup; killed and removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// Created directories (one on v2, one per controller on v1); the first is the one whose
    /// `cgroup.procs` lists the run's processes.
    dirs: Vec<PathBuf>,
    removed: bool,
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| Error::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| Error::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

/// Docker's conversion of `--cpu-shares` (2..262144) to a v2 `cpu.weight` (1..10000).
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The v2 `memory.swap.max` for a memory limit and Docker's memory+swap total, as runc
/// converts it: `-1` is `max`, otherwise the swap part (total minus memory).
fn v2_swap_max(memory: Option<u64>, memory_swap: Option<i64>) -> Result<Option<String>> {
    let bad = |why: &str| Error::InvalidSpec(why.to_string());
    match (memory, memory_swap) {
        (Some(_), None) => Ok(Some("0".into())),
        (None, None) => Ok(None),
        (_, Some(-1)) => Ok(Some("max".into())),
        (None, Some(_)) => Err(bad("unable to set swap limit without memory limit")),
        (Some(m), Some(sw)) => {
            let sw = u64::try_from(sw).map_err(|_| bad("invalid memory+swap limit"))?;
            if sw < m {
                return Err(bad("memory+swap limit should be >= memory limit"));
            }
            Ok(Some((sw - m).to_string()))
        }
    }
}

/// The v1 `memory.memsw.limit_in_bytes` (memory + swap): the total, `-1` unlimited, or
/// the memory limit itself (no swap) when only memory is limited.
fn v1_memsw(memory: Option<u64>, memory_swap: Option<i64>) -> Option<String> {
    match (memory, memory_swap) {
        (_, Some(sw)) => Some(sw.to_string()),
        (Some(m), None) => Some(m.to_string()),
        (None, None) => None,
    }
}

/// The v2 controllers `limits` need.
fn needed_v2(limits: &Limits) -> Vec<&'static str> {
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() || limits.memory_swap_bytes.is_some() {
        out.push("memory");
    }
    if limits.pids_max.is_some() {
        out.push("pids");
    }
    if limits.cpu_quota_us.is_some()
        || limits.cpu_period_us.is_some()
        || limits.cpu_shares.is_some()
    {
        out.push("cpu");
    }
    if limits.cpuset_cpus.is_some() {
        out.push("cpuset");
    }
    out
}

/// Writes `+controller` into `dir`'s `cgroup.subtree_control` for each controller not
/// enabled there yet; returns the ones the kernel refused, with the file and the error.
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Vec<(String, PathBuf, std::io::Error)> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    // A group other than the real root (which has no `cgroup.type`) that holds processes
    // refuses domain controllers (EBUSY) but takes threaded ones (cpu, pids), which would
    // make it a thread root whose domain children refuse processes (EOPNOTSUPP): even runs
    // without limits would then fail. Leave such a group alone.
    if !missing.is_empty() && dir.join("cgroup.type").exists() && has_processes(dir) {
        return missing
            .iter()
            .map(|c| {
                let busy = std::io::Error::from_raw_os_error(nix::libc::EBUSY);
                ((*c).to_string(), file.clone(), busy)
            })
            .collect();
    }
    let mut refused = Vec::new();
    for c in missing {
        if let Err(e) = fs::write(&file, format!("+{c}")) {
            refused.push((c.to_string(), file.clone(), e));
        }
    }
    refused
}

/// Whether group `dir` itself (not the groups below it) holds a process.
fn has_processes(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
}

/// The error for a limit whose v2 controller the run's group does not have, saying why.
fn missing_controller(
    controller: &str,
    available: &str,
    refused: &[(String, PathBuf, std::io::Error)],
    parent: &Path,
) -> Error {
    let why = if !available.split_whitespace().any(|a| a == controller) {
        format!(
            "it is not available at {CGROUP_ROOT} (cgroup.controllers: {:?})",
            available.trim()
        )
    } else if let Some((_, file, e)) = refused.iter().find(|(c, _, _)| c == controller) {
        let hint = if e.raw_os_error() == Some(nix::libc::EBUSY) {
            " (a cgroup v2 group that holds processes cannot delegate controllers to its \
             children: run rbuild where the cgroup root is the real root, or move the \
             processes of that group into a child group first, as Docker-in-Docker does)"
        } else {
            ""
        };
        format!("enabling it in {} failed: {e}{hint}", file.display())
    } else {
        "it is not enabled in the parent's cgroup.subtree_control".to_string()
    };
    Error::Cgroup {
        path: parent.to_path_buf(),
        source: std::io::Error::other(format!(
            "the {controller} controller is needed for the limits but {why}"
        )),
    }
}

/// Docker's error for `--cpuset-cpus` naming CPUs the parent group does not have (the
/// kernel's EINVAL; ERANGE past the last CPU of the machine), with the ones it has from `available` (the parent's effective CPUs).
fn cpus_unavailable(err: Error, requested: &str, available: &Path) -> Error {
    match &err {
        Error::Cgroup { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(nix::libc::EINVAL | nix::libc::ERANGE)
            ) =>
        {
            let have = fs::read_to_string(available).unwrap_or_default();
            Error::InvalidSpec(format!(
                "Requested CPUs are not available - requested {requested}, available: {}",
                have.trim()
            ))
        }
        _ => err,
    }
}

/// The name of a new run's group: `run-<our pid>-<counter>-<nanoseconds>`, unique among
/// concurrent runs; the pid tells [`remove_stale`] whether its creator is still alive.
pub fn run_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "run-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The pid of the process that made run group `name` (see [`run_name`]).
fn creator_of(name: &str) -> Option<i32> {
    name.strip_prefix("run-")?.split('-').next()?.parse().ok()
}

/// Removes the run groups under `parent` that rbuild processes killed before their cleanup
/// (a SIGKILLed monitor or build) left behind: the creator is gone and nothing runs in
/// them (their processes die with the creator: parent-death signal). A live creator's group
/// is never touched, even when still empty (between `mkdir` and its child joining).
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(creator_of) else {
            continue;
        };
        if i64::from(pid) == i64::from(std::process::id()) || crate::process::alive(pid) {
            continue;
        }
        let _ = remove_tree(&e.path());
    }
}

/// Adds the pids in group `dir` and the groups below it to `out` (once each).
fn tree_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        for p in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                tree_pids(&e.path(), out);
            }
        }
    }
}

/// Removes the group `dir` and the groups below it, deepest first (a privileged container
/// may have made some). Fails while any of them holds a process.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent into a new v1 cpuset group (they
/// start empty, and a group without them cannot take tasks).
fn v1_cpuset_inherit(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = fs::read_to_string(dir.join(f)).unwrap_or_default();
        if mine.trim().is_empty() {
            let from = parent.join(f);
            let v = fs::read_to_string(&from).map_err(|source| Error::Cgroup {
                path: from.clone(),
                source,
            })?;
            write(&dir.join(f), v.trim())?;
        }
    }
    Ok(())
}

/// The v1 hierarchies' mount points, by controller, from `/proc/self/mountinfo`.
fn v1_mounts() -> Result<Vec<(PathBuf, Vec<String>)>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let opts: Vec<String> = r
            .nth(1)
            .unwrap_or("")
            .split(',')
            .map(String::from)
            .collect();
        if let Some(mp) = left.split(' ').nth(4) {
            out.push((PathBuf::from(mp), opts));
        }
    }
    Ok(out)
}

/// Our own group in the v1 hierarchy holding `controller` (from `/proc/self/cgroup`).
fn v1_own_path(controller: &str) -> Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("read", "/proc/self/cgroup", e))?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        if ctrls.split(',').any(|c| c == controller) {
            return Ok(path.to_string());
        }
    }
    Ok("/".to_string())
}

impl Cgroup {
    /// Creates the group `name` (unique per run) with `limits`.
    pub fn create(name: &str, limits: &Limits) -> Result<Self> {
        match version() {
            Version::V2 => Self::create_v2(name, limits),
            Version::V1 => Self::create_v1(name, limits),
        }
    }

    fn create_v2(name: &str, limits: &Limits) -> Result<Self> {
        let root = Path::new(CGROUP_ROOT);
        let parent = root.join(PARENT);
        mkdir(&parent)?;
        remove_stale(&parent);
        let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let mut controllers = vec!["memory", "pids", "cpu"];
        if limits.cpuset_cpus.is_some() {
            controllers.push("cpuset");
        }
        controllers.retain(|c| available.split_whitespace().any(|a| a == *c));
        // A fresh cgroup2 mount (or someone else) may have left them off: enable them as
        // runc and podman do. Failures are reported below, only for a controller a limit
        // needs (the memory controller without a limit only serves OOM detection).
        let mut refused = enable_controllers(root, &controllers);
        refused.extend(enable_controllers(&parent, &controllers));
        let dir = parent.join(name);
        mkdir(&dir)?;
        let cg = Cgroup {
            version: Version::V2,
            dirs: vec![dir.clone()],
            removed: false,
        };
        let usable = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        for c in needed_v2(limits) {
            if !usable.split_whitespace().any(|u| u == c) {
                return Err(missing_controller(c, &available, &refused, &parent));
            }
        }
        if let Some(m) = limits.memory_bytes {
            write(&dir.join("memory.max"), &m.to_string())?;
        }
        if let Some(v) = v2_swap_max(limits.memory_bytes, limits.memory_swap_bytes)? {
            let swap = dir.join("memory.swap.max");
            // Without swap accounting there is no file, and no swap to limit.
            if swap.exists() {
                write(&swap, &v)?;
            }
        }
        if let Some(c) = &limits.cpuset_cpus {
            write(&dir.join("cpuset.cpus"), c)
                .map_err(|e| cpus_unavailable(e, c, &parent.join("cpuset.cpus.effective")))?;
        }
        if limits.cpu_quota_us.is_some() || limits.cpu_period_us.is_some() {
            let period = limits.cpu_period_us.unwrap_or(100_000);
            let quota = limits
                .cpu_quota_us
                .map_or_else(|| "max".to_string(), |q| q.to_string());
            write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(s) = limits.cpu_shares {
            write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
        }
        if let Some(p) = limits.pids_max {
            write(&dir.join("pids.max"), &p.to_string())?;
        }
        Ok(cg)
    }

    fn create_v1(name: &str, limits: &Limits) -> Result<Self> {
        let mounts = v1_mounts()?;
        let mut cg = Cgroup {
            version: Version::V1,
            dirs: Vec::new(),
            removed: false,
        };
        let mut controllers = V1_CONTROLLERS.to_vec();
        if limits.cpuset_cpus.is_some() {
            controllers.push("cpuset");
        }
        for controller in controllers {
            let Some((mp, _)) = mounts
                .iter()
                .find(|(_, opts)| opts.iter().any(|o| o == controller))
            else {
                continue;
            };
            let own = v1_own_path(controller)?;
            let dir = mp.join(own.trim_start_matches('/')).join(PARENT).join(name);
            if cg.dirs.contains(&dir) {
                continue;
            }
            if let Some(parent) = dir.parent() {
                remove_stale(parent);
            }
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            if controller == "cpuset" {
                if let Some(p) = dir.parent() {
                    v1_cpuset_inherit(p)?;
                }
                v1_cpuset_inherit(&dir)?;
            }
            match controller {
                "memory" => {
                    if let Some(m) = limits.memory_bytes {
                        write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                    }
                    if let Some(v) = v1_memsw(limits.memory_bytes, limits.memory_swap_bytes) {
                        // Only with swap accounting (`swapaccount=1`).
                        let memsw = dir.join("memory.memsw.limit_in_bytes");
                        if memsw.exists() {
                            write(&memsw, &v)?;
                        }
                    }
                }
                "pids" => {
                    if let Some(p) = limits.pids_max {
                        write(&dir.join("pids.max"), &p.to_string())?;
                    }
                }
                "cpu" => {
                    if let Some(p) = limits.cpu_period_us {
                        write(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
                    }
                    if let Some(q) = limits.cpu_quota_us {
                        write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                    }
                    if let Some(s) = limits.cpu_shares {
                        write(&dir.join("cpu.shares"), &s.to_string())?;
                    }
                }
                "cpuset" => {
                    if let (Some(c), Some(parent)) = (&limits.cpuset_cpus, dir.parent()) {
                        write(&dir.join("cpuset.cpus"), c).map_err(|e| {
                            cpus_unavailable(e, c, &parent.join("cpuset.effective_cpus"))
                        })?;
                    }
                }
                _ => {}
            }
        }
        if cg.dirs.is_empty() {
            return Err(Error::Cgroup {
                path: PathBuf::from(CGROUP_ROOT),
                source: std::io::Error::other("no usable cgroup v1 controller"),
            });
        }
        Ok(cg)
    }

    /// The host's cgroup version this group lives on.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The group's directories (one on v2, one per controller on v1).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files a process writes `0` into to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Pids currently in the group and the groups below it.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            tree_pids(d, &mut out);
        }
        out
    }

    /// True when the kernel OOM-killed a process of the group.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self.version {
            Version::V2 => ("memory.events", "oom_kill"),
            Version::V1 => ("memory.oom_control", "oom_kill"),
        };
        self.dirs.iter().any(|d| {
            fs::read_to_string(d.join(file)).is_ok_and(|t| {
                t.lines().any(|l| {
                    let mut f = l.split_whitespace();
                    f.next() == Some(key) && f.next().and_then(|n| n.parse::<u64>().ok()) > Some(0)
                })
            })
        })
    }

    /// SIGKILLs every process of the group until it is empty (bounded wait).
    pub fn kill_all(&self) -> Result<()> {
        if self.version == Version::V2 {
            let k = self.dirs[0].join("cgroup.kill");
            if k.exists() {
                let _ = fs::write(&k, "1");
            }
        }
        for _ in 0..500 {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(Error::Cgroup {
            path: self.dirs[0].clone(),
            source: std::io::Error::other("processes survive SIGKILL"),
        })
    }

    /// Kills what is left and removes the group's directories.
    pub fn destroy(mut self) -> Result<()> {
        self.destroy_inner()
    }

    fn destroy_inner(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        self.kill_all()?;
        let mut last = Ok(());
        for d in &self.dirs {
            let mut ok = false;
            for _ in 0..200 {
                match remove_tree(d) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        ok = true;
                        break;
                    }
                    // Exiting tasks leave the group asynchronously.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            if !ok {
                last = remove_tree(d).map_err(|source| Error::Cgroup {
                    path: d.clone(),
                    source,
                });
            }
        }
        self.removed = true;
        last
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.destroy_inner();
    }
}

/// The freezer of a run's group (`docker pause`): v2 `cgroup.freeze`, v1 the freezer
/// hierarchy's `freezer.state`. Found from a process of the run, and only when that
/// process is in one of rbuild's run groups: a group the caller shares is never frozen.
#[derive(Debug, Clone)]
pub struct Freezer {
    version: Version,
    dir: PathBuf,
}

/// The pids in the run group of process `pid` and the groups below it, as `runc ps` lists a
/// container's (`docker top`): exec'd processes too, which are not descendants of the
/// container's first process. Only for one of rbuild's run groups (see [`Freezer::of_pid`]).
pub fn run_group_pids(pid: i32) -> Result<Vec<i32>> {
    let group = Freezer::of_pid(pid)?;
    let mut out = Vec::new();
    tree_pids(&group.dir, &mut out);
    Ok(out)
}

impl Freezer {
    /// The freezer of the group process `pid` is in.
    pub fn of_pid(pid: i32) -> Result<Freezer> {
        let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
        let version = version();
        let (dir, path) = match version {
            Version::V2 => {
                let path = text
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("/")
                    .to_string();
                (
                    Path::new(CGROUP_ROOT).join(path.trim_start_matches('/')),
                    path,
                )
            }
            Version::V1 => {
                let path = text
                    .lines()
                    .find_map(|l| {
                        let mut f = l.splitn(3, ':');
                        let (_, ctrls, path) = (f.next(), f.next()?, f.next()?);
                        ctrls.split(',').any(|c| c == "freezer").then_some(path)
                    })
                    .unwrap_or("/")
                    .to_string();
                let mounts = v1_mounts()?;
                let mp = mounts
                    .iter()
                    .find(|(_, opts)| opts.iter().any(|o| o == "freezer"))
                    .map(|(mp, _)| mp.clone())
                    .ok_or_else(|| Error::Cgroup {
                        path: PathBuf::from(CGROUP_ROOT),
                        source: std::io::Error::other("no cgroup v1 freezer hierarchy"),
                    })?;
                (mp.join(path.trim_start_matches('/')), path)
            }
        };
        let ours = Path::new(&path)
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|p| p == PARENT)
            && Path::new(&path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("run-"));
        if !ours {
            return Err(Error::Cgroup {
                path: dir,
                source: std::io::Error::other(
                    "the process is not in a freezer group of its own (a container created by an older rbuild?)",
                ),
            });
        }
        Ok(Freezer { version, dir })
    }

    fn control(&self) -> PathBuf {
        match self.version {
            Version::V2 => self.dir.join("cgroup.freeze"),
            Version::V1 => self.dir.join("freezer.state"),
        }
    }

    /// Whether the group is frozen (or freezing).
    pub fn is_frozen(&self) -> bool {
        let v = fs::read_to_string(self.control()).unwrap_or_default();
        match self.version {
            Version::V2 => v.trim() == "1",
            Version::V1 => matches!(v.trim(), "FROZEN" | "FREEZING"),
        }
    }

    /// Freezes every process of the group and waits until the kernel says it is frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set(true)
    }

    /// Thaws the group.
    pub fn thaw(&self) -> Result<()> {
        self.set(false)
    }

    fn set(&self, frozen: bool) -> Result<()> {
        let (value, done_file, done): (&str, PathBuf, &str) = match (self.version, frozen) {
            (Version::V2, true) => ("1", self.dir.join("cgroup.events"), "frozen 1"),
            (Version::V2, false) => ("0", self.dir.join("cgroup.events"), "frozen 0"),
            (Version::V1, true) => ("FROZEN", self.control(), "FROZEN"),
            (Version::V1, false) => ("THAWED", self.control(), "THAWED"),
        };
        // v1 can stay FREEZING while a task is busy in the kernel: write again until done.
        for _ in 0..500 {
            write(&self.control(), value)?;
            let now = fs::read_to_string(&done_file).unwrap_or_default();
            if now.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if frozen {
            let _ = self.thaw();
        }
        Err(Error::Cgroup {
            path: self.control(),
            source: std::io::Error::other(if frozen {
                "the group did not freeze"
            } else {
                "the group did not thaw"
            }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A pid that no process has (a child that ran and was reaped).
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        pid
    }

    #[test]
    fn run_names_carry_their_creator() {
        let name = run_name();
        assert_eq!(creator_of(&name), Some(std::process::id() as i32));
        assert_ne!(run_name(), name);
        assert_eq!(creator_of("rbuild"), None);
        assert_eq!(creator_of("run-x-1-2"), None);
    }

    #[test]
    fn stale_groups_of_dead_creators_are_removed_deepest_first() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("run-{}-0-1", dead_pid()));
        std::fs::create_dir_all(dead.join("made-inside/deeper")).unwrap();
        // A group that still holds something (a populated group cannot be removed either).
        let busy = parent.path().join(format!("run-{}-1-1", dead_pid()));
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("cgroup.procs"), "42\n").unwrap();
        let mine = parent.path().join(run_name());
        std::fs::create_dir(&mine).unwrap();
        let other = parent.path().join("not-a-run");
        std::fs::create_dir(&other).unwrap();
        remove_stale(parent.path());
        assert!(!dead.exists());
        assert!(busy.exists());
        assert!(mine.exists(), "a live creator's empty group is kept");
        assert!(other.exists());
    }

    #[test]
    fn limits_name_the_controllers_they_need() {
        assert!(needed_v2(&Limits::default()).is_empty());
        let all = Limits {
            memory_bytes: Some(1 << 20),
            cpu_shares: Some(512),
            pids_max: Some(10),
            cpuset_cpus: Some("0".into()),
            ..Limits::default()
        };
        assert_eq!(needed_v2(&all), ["memory", "pids", "cpu", "cpuset"]);
        let quota = Limits {
            cpu_quota_us: Some(50_000),
            ..Limits::default()
        };
        assert_eq!(needed_v2(&quota), ["cpu"]);
    }

    #[test]
    fn a_populated_non_root_group_gets_no_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("cgroup.subtree_control");
        std::fs::write(&control, "pids\n").unwrap();
        std::fs::write(dir.path().join("cgroup.type"), "domain\n").unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "1\n7\n").unwrap();
        let refused = enable_controllers(dir.path(), &["memory", "pids", "cpu"]);
        let names: Vec<&str> = refused.iter().map(|(c, _, _)| c.as_str()).collect();
        assert_eq!(names, ["memory", "cpu"], "pids is enabled already");
        assert_eq!(std::fs::read_to_string(&control).unwrap(), "pids\n");
        let err = missing_controller("memory", "cpu memory pids", &refused, dir.path());
        let text = err.to_string();
        assert!(text.contains("memory controller is needed"), "{text}");
        assert!(text.contains("cannot delegate controllers"), "{text}");
    }

    #[test]
    fn an_empty_group_gets_each_missing_controller_written() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("cgroup.subtree_control");
        std::fs::write(&control, "memory\n").unwrap();
        std::fs::write(dir.path().join("cgroup.type"), "domain\n").unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        assert!(enable_controllers(dir.path(), &["memory", "cpu"]).is_empty());
        // A regular file keeps the last write: memory was not written again.
        assert_eq!(std::fs::read_to_string(&control).unwrap(), "+cpu");
    }

    #[test]
    fn a_controller_the_kernel_lacks_is_named_with_what_there_is() {
        let err = missing_controller("cpuset", "cpu memory", &[], Path::new("/x/rbuild"));
        let text = err.to_string();
        assert!(text.contains("cpuset controller is needed"), "{text}");
        assert!(text.contains("not available"), "{text}");
        assert!(text.contains("cpu memory"), "{text}");
    }

    #[test]
    fn unavailable_cpus_get_dockers_error() {
        let dir = tempfile::tempdir().unwrap();
        let effective = dir.path().join("cpuset.cpus.effective");
        std::fs::write(&effective, "0-1\n").unwrap();
        let einval = Error::Cgroup {
            path: dir.path().join("run/cpuset.cpus"),
            source: std::io::Error::from_raw_os_error(nix::libc::EINVAL),
        };
        assert_eq!(
            cpus_unavailable(einval, "5", &effective).to_string(),
            "invalid process spec: Requested CPUs are not available - requested 5, available: 0-1"
        );
        let erange = Error::Cgroup {
            path: dir.path().join("run/cpuset.cpus"),
            source: std::io::Error::from_raw_os_error(nix::libc::ERANGE),
        };
        assert!(matches!(
            cpus_unavailable(erange, "64", &effective),
            Error::InvalidSpec(_)
        ));
        let eacces = Error::Cgroup {
            path: dir.path().join("run/cpuset.cpus"),
            source: std::io::Error::from_raw_os_error(nix::libc::EACCES),
        };
        assert!(matches!(
            cpus_unavailable(eacces, "5", &effective),
            Error::Cgroup { .. }
        ));
    }

    #[test]
    fn weight_conversion_matches_docker() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn swap_values_match_runc() {
        let m = 64 << 20;
        assert_eq!(
            v2_swap_max(Some(m), None).ok().flatten().as_deref(),
            Some("0")
        );
        assert_eq!(
            v2_swap_max(Some(m), Some(-1)).ok().flatten().as_deref(),
            Some("max")
        );
        assert_eq!(
            v2_swap_max(Some(m), Some(3 * m as i64)).ok().flatten(),
            Some((2 * m).to_string())
        );
        assert!(v2_swap_max(Some(m), Some(m as i64 - 1)).is_err());
        assert!(v2_swap_max(None, Some(m as i64)).is_err());
        assert_eq!(v2_swap_max(None, None).ok().flatten(), None);
        assert_eq!(v1_memsw(Some(m), None), Some(m.to_string()));
        assert_eq!(v1_memsw(Some(m), Some(-1)).as_deref(), Some("-1"));
        assert_eq!(v1_memsw(None, None), None);
    }
}
