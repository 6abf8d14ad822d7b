//! The build cache as a user manages it: `rbuild builder prune`, `rbuild cache explain`,
//! the build-cache part of `rbuild system df -v`, and the automatic collection after a
//! build when the cache passes `RBUILD_CACHE_MAX`.
//!
//! A cache record is a key file under `buildcache-v1/keys/` naming a result: a committed
//! snapshot of the executor's snapshotter (`b-...` step results, `layer-...` image
//! layers) or a local context. Its last use is the key file's mtime (cache hits touch it).
//! Pruning removes the chosen records' snapshots (never one a kept snapshot builds on),
//! their records and GC roots, then collects the blobs nothing else references; images
//! are untouched (their layers are blobs of the content store, not snapshots).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic as _, miette};
use rbuild_executor::Snapshotter;
use rbuild_executor::snapshot::Kind;
use rbuild_exporter::Store;
use rbuild_exporter::lock::FileLock;

use crate::build::worker::State;
use crate::images::format::{human_duration, human_size, table};

/// The default cap of the automatic collection.
pub const DEFAULT_CACHE_MAX: u64 = 10_000_000_000;

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all build cache, not just dangling records
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (`until=DURATION`: records unused for longer, e.g. 24h)
    #[arg(long = "filter", value_name = "until=DURATION")]
    pub filters: Vec<String>,
    /// Amount of disk space to keep for cache (the most recently used records)
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print why the steps of a recorded build missed the cache (default: the last build)
    Explain {
        /// A build ID (see `rbuild cache ls`)
        #[arg(value_name = "BUILD-ID")]
        build: Option<String>,
    },
    /// List the recorded builds, newest first
    Ls,
}

fn open(global: &crate::GlobalOpts) -> miette::Result<Store> {
    crate::images::open_store(global)
}

pub fn run_builder(cmd: BuilderCommand, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let store = open(global)?;
    match cmd {
        BuilderCommand::Prune(args) => prune_cmd(&store, &args),
    }
}

pub fn run_cache(cmd: CacheCommand, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let store = open(global)?;
    let root = store.root();
    match cmd {
        CacheCommand::Explain { build } => {
            let rec =
                crate::build::explain::load(root, build.as_deref()).map_err(|e| miette!("{e}"))?;
            println!(
                "build {} ({}) of {} ({}{})",
                rec.id,
                rec.created,
                rec.identity.context,
                rec.identity.dockerfile,
                if rec.identity.target.is_empty() {
                    String::new()
                } else {
                    format!(", target {}", rec.identity.target)
                }
            );
            for l in &rec.lines {
                println!("{l}");
            }
        }
        CacheCommand::Ls => {
            let dir = crate::build::explain::history_dir(root).join("builds");
            let mut ids: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| {
                            e.file_name()
                                .to_string_lossy()
                                .strip_suffix(".json")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            ids.sort();
            let rows: Vec<Vec<String>> = ids
                .iter()
                .rev()
                .filter_map(|id| crate::build::explain::load(root, Some(id)).ok())
                .map(|r| {
                    vec![
                        r.id,
                        r.identity.context,
                        r.identity.dockerfile,
                        r.executed.len().to_string(),
                        r.records.len().to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["BUILD ID", "CONTEXT", "DOCKERFILE", "RAN", "STEPS"],
                    &rows
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `10GB`, `512MiB`, `1.5g`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 10GB, 512MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (B, kB, MB, GB, TB, KiB...)"
            ));
        }
    };
    Ok((n * mult) as u64)
}

/// `24h`, `1h30m`, `90s`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 24h, 30m, 1h30m, 7d)");
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(bad()),
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// One snapshot of the build cache with the records naming it.
#[derive(Debug, Clone)]
struct Entry {
    snapshot: String,
    keys: Vec<String>,
    parent: Option<String>,
    last_used: SystemTime,
    size: u64,
    /// A snapshot no record names yet that may belong to a running build (made in the
    /// last [`ORPHAN_GRACE`]): only `--all` removes it.
    young: bool,
}

/// How long a snapshot without a record is left alone (a running build commits a step's
/// snapshot before it writes the step's record).
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// The build cache of a root.
struct Cache {
    state: State,
    snapshotter: Snapshotter,
    entries: Vec<Entry>,
    /// Records whose result is a context or a missing snapshot (no disk of their own).
    light: Vec<(String, String, SystemTime)>,
}

impl Cache {
    fn open(root: &Path) -> Result<Cache, String> {
        let state = State::open(root)?;
        let snapshotter = Snapshotter::open(root.join("snapshotter-v1"))
            .map_err(|e| format!("opening the snapshotter: {e}"))?;
        let infos = snapshotter.list().map_err(|e| e.to_string())?;
        let committed: HashMap<&str, Option<&String>> = infos
            .iter()
            .filter(|i| i.kind == Kind::Committed)
            .map(|i| (i.key.as_str(), i.parent.as_ref()))
            .collect();
        let sizes = Sizes::load(root);
        let mut by_snap: BTreeMap<String, Entry> = BTreeMap::new();
        let mut light = Vec::new();
        for (key, result, used) in state.entries() {
            if !committed.contains_key(result.as_str()) {
                light.push((key, result, used));
                continue;
            }
            let e = by_snap.entry(result.clone()).or_insert_with(|| Entry {
                snapshot: result.clone(),
                keys: Vec::new(),
                parent: None,
                last_used: SystemTime::UNIX_EPOCH,
                size: 0,
                young: false,
            });
            e.keys.push(key);
            e.last_used = e.last_used.max(used);
        }
        // Snapshots no record names (a killed build's, or records removed by hand).
        let grace = chrono::Utc::now() - chrono::Duration::seconds(ORPHAN_GRACE.as_secs() as i64);
        for snap in committed.keys() {
            // `c-`: snapshots an imported cache (`--cache-from`) made.
            if (snap.starts_with("b-") || snap.starts_with("c-") || snap.starts_with("layer-"))
                && !by_snap.contains_key(*snap)
            {
                let young = state.meta(snap).is_none_or(|m| {
                    chrono::DateTime::parse_from_rfc3339(&m.created).map_or(true, |t| t > grace)
                });
                by_snap.insert(
                    snap.to_string(),
                    Entry {
                        snapshot: snap.to_string(),
                        keys: Vec::new(),
                        parent: None,
                        last_used: SystemTime::UNIX_EPOCH,
                        size: 0,
                        young,
                    },
                );
            }
        }
        let mut sizes = sizes;
        for e in by_snap.values_mut() {
            e.parent = committed
                .get(e.snapshot.as_str())
                .copied()
                .flatten()
                .cloned();
            e.size = sizes.get(&snapshotter, &e.snapshot);
        }
        sizes.store(root);
        Ok(Cache {
            state,
            snapshotter,
            entries: by_snap.into_values().collect(),
            light,
        })
    }

    fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Committed snapshots never change: their sizes are remembered in
/// `buildcache-v1/sizes.json` so the automatic collection doesn't walk them every build.
struct Sizes {
    map: BTreeMap<String, u64>,
    seen: BTreeSet<String>,
    dirty: bool,
}

impl Sizes {
    fn path(root: &Path) -> std::path::PathBuf {
        root.join(crate::build::worker::state::CACHE_DIR)
            .join("sizes.json")
    }

    fn load(root: &Path) -> Sizes {
        let map = std::fs::read(Self::path(root))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Sizes {
            map,
            seen: BTreeSet::new(),
            dirty: false,
        }
    }

    fn get(&mut self, sn: &Snapshotter, snap: &str) -> u64 {
        self.seen.insert(snap.to_string());
        if let Some(s) = self.map.get(snap) {
            return *s;
        }
        let size = sn.usage(snap).map_or(0, |u| u.size_bytes);
        self.map.insert(snap.to_string(), size);
        self.dirty = true;
        size
    }

    fn store(&mut self, root: &Path) {
        let before = self.map.len();
        self.map.retain(|k, _| self.seen.contains(k));
        if (self.dirty || before != self.map.len())
            && let Ok(bytes) = serde_json::to_vec(&self.map)
        {
            let _ = crate::build::worker::state::write_atomic(&Self::path(root), &bytes);
        }
    }
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub all: bool,
    pub until: Option<Duration>,
    pub keep_storage: Option<u64>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub records: usize,
    pub bytes: u64,
}

/// Removes the build cache `policy` selects, then the blobs nothing references any more.
pub fn prune(root: &Path, policy: &Policy) -> Result<Pruned, String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let mut out = Pruned::default();
    {
        // No pull, load, export or layer import runs while this is held.
        let _gc = FileLock::exclusive(store.lock_path("gc.lock")).map_err(|e| e.to_string())?;
        let cache = Cache::open(root)?;
        let now = SystemTime::now();
        let cutoff = policy.until.and_then(|d| now.checked_sub(d));
        let mut doomed: BTreeSet<String> = BTreeSet::new();
        let mut by_recent: Vec<&Entry> = cache.entries.iter().collect();
        by_recent.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        let mut kept_size = 0u64;
        for e in &by_recent {
            let old = cutoff.is_some_and(|c| e.last_used < c);
            let over = policy.keep_storage.is_some_and(|k| kept_size + e.size > k);
            let filtered = policy.until.is_some() || policy.keep_storage.is_some();
            let orphan = e.keys.is_empty() && (!e.young || policy.all);
            if e.young && e.keys.is_empty() && !policy.all {
                kept_size += e.size;
            } else if orphan || (policy.all && !filtered) || old || over {
                doomed.insert(e.snapshot.clone());
            } else {
                kept_size += e.size;
            }
        }
        // Never a snapshot a kept one builds on.
        let parents: HashMap<&str, &str> = cache
            .entries
            .iter()
            .filter_map(|e| e.parent.as_deref().map(|p| (e.snapshot.as_str(), p)))
            .collect();
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        for e in &cache.entries {
            if doomed.contains(&e.snapshot) {
                continue;
            }
            let mut cur = parents.get(e.snapshot.as_str()).copied();
            while let Some(p) = cur {
                if !keep.insert(p) {
                    break;
                }
                cur = parents.get(p).copied();
            }
        }
        doomed.retain(|s| !keep.contains(s.as_str()));
        // Children first: retry what is still in use until nothing moves.
        let mut todo: Vec<&Entry> = cache
            .entries
            .iter()
            .filter(|e| doomed.contains(&e.snapshot))
            .collect();
        loop {
            let before = todo.len();
            let mut rest = Vec::new();
            for e in todo {
                for k in &e.keys {
                    cache.state.remove(k)?;
                }
                match cache.snapshotter.remove(&e.snapshot) {
                    Ok(()) => {
                        cache.state.remove_meta(&e.snapshot);
                        out.records += e.keys.len().max(1);
                        out.bytes += e.size;
                    }
                    Err(_) => rest.push(e),
                }
            }
            todo = rest;
            if todo.is_empty() || todo.len() == before {
                break;
            }
        }
        // Records without a snapshot: contexts (all or by age), dangling ones always.
        for (key, result, used) in &cache.light {
            let dangling = !result.starts_with("context:");
            let old = cutoff.is_some_and(|c| *used < c);
            if dangling || policy.all || old {
                cache.state.remove(key)?;
                out.records += 1;
            }
        }
    }
    let report = rbuild_exporter::gc::collect(&store).map_err(|e| e.to_string())?;
    out.bytes += report.bytes_freed;
    Ok(out)
}

fn prune_cmd(store: &Store, args: &PruneArgs) -> miette::Result<ExitCode> {
    let mut policy = Policy {
        all: args.all,
        ..Policy::default()
    };
    for f in &args.filters {
        match f.split_once('=') {
            Some(("until", v)) => {
                policy.until = Some(parse_duration(v).map_err(|e| miette!("{e}"))?)
            }
            _ => return Err(miette!("unsupported filter {f:?} (until=DURATION)")),
        }
    }
    if let Some(k) = &args.keep_storage {
        policy.keep_storage = Some(parse_size(k).map_err(|e| miette!("{e}"))?);
    }
    if !args.force {
        if args.all {
            print!(
                "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
            );
        } else {
            print!(
                "WARNING! This will remove the selected build cache. Are you sure you want to continue? [y/N] "
            );
        }
        io::stdout().flush().into_diagnostic()?;
        let mut answer = String::new();
        io::stdin()
            .lock()
            .read_line(&mut answer)
            .into_diagnostic()?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let pruned = prune(store.root(), &policy).map_err(|e| miette!("{e}"))?;
    if pruned.records > 0 {
        println!("Deleted build cache records: {}", pruned.records);
    }
    println!("Total reclaimed space: {}", human_size(pruned.bytes));
    Ok(ExitCode::SUCCESS)
}

/// The cap of the automatic collection: `RBUILD_CACHE_MAX` (`0` or `off` disables it).
fn cache_max() -> Result<Option<u64>, String> {
    match std::env::var("RBUILD_CACHE_MAX") {
        Ok(v) if v == "off" || v == "0" => Ok(None),
        Ok(v) if !v.trim().is_empty() => parse_size(&v)
            .map(Some)
            .map_err(|e| format!("RBUILD_CACHE_MAX: {e}")),
        _ => Ok(Some(DEFAULT_CACHE_MAX)),
    }
}

/// After a build: when the build cache is larger than its cap, keep the most recently used
/// records up to the cap.
pub fn auto_gc(root: &Path) -> Result<(), String> {
    let Some(max) = cache_max()? else {
        return Ok(());
    };
    let total = Cache::open(root)?.total();
    if total <= max {
        return Ok(());
    }
    let pruned = prune(
        root,
        &Policy {
            keep_storage: Some(max),
            ..Policy::default()
        },
    )?;
    eprintln!(
        "build cache over RBUILD_CACHE_MAX ({} > {}): removed {} records, reclaimed {}",
        human_size(total),
        human_size(max),
        pruned.records,
        human_size(pruned.bytes)
    );
    Ok(())
}

/// The build-cache table of `rbuild system df -v`.
pub fn df_verbose(store: &Store) -> miette::Result<()> {
    let cache = Cache::open(store.root()).map_err(|e| miette!("{e}"))?;
    let now = SystemTime::now();
    let mut entries = cache.entries.clone();
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let id = e.keys.first().map_or("<none>".to_string(), |k| {
                k.trim_start_matches("sha256:").chars().take(12).collect()
            });
            let kind = if e.snapshot.starts_with("layer-") {
                "image layer"
            } else {
                "regular"
            };
            let used = if e.keys.is_empty() {
                "never".to_string()
            } else {
                let secs = now
                    .duration_since(e.last_used)
                    .map_or(0, |d| d.as_secs() as i64);
                format!("{} ago", human_duration(secs))
            };
            vec![
                id,
                kind.to_string(),
                human_size(e.size),
                used,
                e.keys.len().to_string(),
            ]
        })
        .collect();
    println!("\nBuild cache usage: {}\n", human_size(cache.total()));
    print!(
        "{}",
        table(
            &["CACHE ID", "CACHE TYPE", "SIZE", "LAST USED", "RECORDS"],
            &rows
        )
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1.5g").unwrap(), 1_500_000_000);
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("3x").is_err());
    }
}
