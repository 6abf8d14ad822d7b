//! Named and anonymous volumes: `<root>/volumes-v1/<name>/_data` (what the container sees)
//! and `<root>/volumes-v1/<name>/meta.json` (driver `local`, labels, creation time; written
//! atomically). Changes are serialised by `volumes-v1/lock`, which container creation holds
//! while it makes its volumes and records the container (whose config lists the volumes it
//! uses), so `volume rm` never removes a volume a container is being given.
//!
//! Also the `rbuild volume create|ls|inspect|rm|prune` commands and the first-use copy-up of
//! the image's content into a new empty volume (docker's `nocopy` disables it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use rbuild_exporter::lock::FileLock;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::Containers;
use crate::build::worker::state::write_atomic;
use crate::images::format::table;

pub const VOLUMES_DIR: &str = "volumes-v1";
/// The label docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    /// Made for one container (`-v /path`, the image's VOLUME); `prune` removes these.
    pub anonymous: bool,
    /// The image's content was copied in (or the first container used it): no copy-up again.
    #[serde(default)]
    pub populated: bool,
}

/// A volume a container uses (recorded in its config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUse {
    pub name: String,
    pub target: String,
    pub readonly: bool,
    pub anonymous: bool,
    /// Copy the image's content at `target` into the volume when it is new and empty.
    pub copy_up: bool,
}

/// The volumes of one root.
#[derive(Debug, Clone)]
pub struct Volumes {
    pub dir: PathBuf,
}

/// Docker's rule for volume names.
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Volumes {
    pub fn open(root: &Path) -> Result<Volumes, String> {
        let dir = root.join(VOLUMES_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Volumes { dir })
    }

    /// The lock serialising volume changes (and container creation with volumes).
    pub fn lock(&self) -> Result<FileLock, String> {
        FileLock::exclusive(self.dir.join("lock")).map_err(|e| e.to_string())
    }

    pub fn data(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("meta.json")
    }

    pub fn get(&self, name: &str) -> Result<VolumeMeta, String> {
        if !valid_name(name) {
            return Err(format!("get {name}: no such volume"));
        }
        let p = self.meta_path(name);
        let data = std::fs::read(&p).map_err(|_| format!("get {name}: no such volume"))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn put(&self, meta: &VolumeMeta) -> Result<(), String> {
        let data = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
        write_atomic(&self.meta_path(&meta.name), &data)
    }

    /// Creates volume `name` (a new anonymous one when `None`); an existing named volume is
    /// returned as it is (docker's `volume create` of an existing name). Caller holds the lock.
    pub fn create_locked(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeMeta, String> {
        let (name, anonymous) = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(format!(
                        "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    ));
                }
                (n.to_string(), false)
            }
            None => (super::args::new_id(), true),
        };
        if let Ok(existing) = self.get(&name) {
            return Ok(existing);
        }
        let mut labels = labels;
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let data = self.data(&name);
        std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
        let meta = VolumeMeta {
            name,
            driver: "local".to_string(),
            labels,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            anonymous,
            populated: false,
        };
        self.put(&meta)?;
        Ok(meta)
    }

    pub fn list(&self) -> Vec<VolumeMeta> {
        let mut out: Vec<VolumeMeta> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The containers using each volume.
    pub fn users(&self, containers: &Containers) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in containers.ids() {
            if let Ok(cfg) = containers.config(&id) {
                for v in &cfg.volumes {
                    out.entry(v.name.clone()).or_default().push(id.clone());
                }
            }
        }
        out
    }

    /// Bytes a volume's data takes on disk (0 when it cannot be read).
    pub fn size(&self, name: &str) -> u64 {
        rbuild_executor::snapshot::tree_usage(&self.data(name)).map_or(0, |u| u.size_bytes)
    }

    /// Removes the volumes no container uses: anonymous ones, or all with `all`, that pass
    /// every `label=K[=V]` filter. Returns each removed volume's name and size.
    pub fn prune(
        &self,
        containers: &Containers,
        all: bool,
        filters: &[String],
    ) -> Result<Vec<(String, u64)>, String> {
        let _lock = self.lock()?;
        let users = self.users(containers);
        let mut removed = Vec::new();
        for m in self.list() {
            if users.contains_key(&m.name) || (!all && !m.anonymous) {
                continue;
            }
            let label_ok = filters.iter().all(|f| match f.strip_prefix("label=") {
                Some(l) => label_matches(&m, l),
                None => true,
            });
            if !label_ok {
                continue;
            }
            let size = self.size(&m.name);
            self.remove_locked(&m.name)?;
            removed.push((m.name, size));
        }
        Ok(removed)
    }

    /// Removes a volume's directory (the caller checked it is unused and holds the lock).
    pub fn remove_locked(&self, name: &str) -> Result<(), String> {
        let dir = self.dir.join(name);
        // The metadata goes first: a half-removed volume is no volume.
        let _ = std::fs::remove_file(self.meta_path(name));
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))
    }

    /// Copies what the image holds at `target` (in the mounted `rootfs`) into a volume that
    /// was never populated and is empty (docker's copy-up), then marks it populated.
    pub fn populate(&self, rootfs: &Path, v: &VolumeUse) -> Result<(), String> {
        let _lock = self.lock()?;
        let mut meta = self.get(&v.name)?;
        if meta.populated {
            return Ok(());
        }
        let data = self.data(&v.name);
        let empty = std::fs::read_dir(&data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if v.copy_up && empty {
            copy_up(rootfs, &v.target, &data)?;
        }
        meta.populated = true;
        self.put(&meta)
    }
}

/// Copies the directory at `target` inside `rootfs` (if any) into `data`, owners, modes and
/// times kept; `data` takes the directory's own owner and mode (as docker's copy-up does).
fn copy_up(rootfs: &Path, target: &str, data: &Path) -> Result<(), String> {
    use rbuild_executor::fileop::{self, CopySpec, Source, SourceKind};
    use std::os::unix::fs::MetadataExt as _;
    let src = rbuild_executor::fileop::resolve_in_root(rootfs, target, true)
        .map_err(|e| format!("volume copy-up of {target}: {e}"))?;
    let Ok(meta) = std::fs::metadata(&src) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let spec = CopySpec {
        sources: vec![Source::Path(target.to_string())],
        dest: "/".into(),
        source_kind: SourceKind::Rootfs,
        ..CopySpec::default()
    };
    fileop::copy(&spec, rootfs, data).map_err(|e| format!("volume copy-up of {target}: {e}"))?;
    let _ = std::os::unix::fs::chown(data, Some(meta.uid()), Some(meta.gid()));
    let _ = std::fs::set_permissions(
        data,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create {
        /// Driver (only `local`)
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// Set a label `K=V`
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Volume name (random when missing)
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only names
        #[arg(short = 'q', long)]
        quiet: bool,
        /// `dangling=true|false`, `name=SUBSTRING`, `label=K[=V]`, `driver=local`
        #[arg(short = 'f', long = "filter")]
        filters: Vec<String>,
    },
    /// Display detailed information on volumes
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes
    #[command(alias = "remove")]
    Rm {
        /// Also a volume that does not exist (no error)
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (`-a`: all unused volumes)
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short = 'a', long)]
        all: bool,
        /// `label=K[=V]`
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
}

fn parse_labels(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn inspect_json(vols: &Volumes, m: &VolumeMeta) -> serde_json::Value {
    json!({
        "CreatedAt": m.created_at,
        "Driver": m.driver,
        "Labels": m.labels,
        "Mountpoint": vols.data(&m.name),
        "Name": m.name,
        "Options": {},
        "Scope": "local",
    })
}

/// Whether `m` passes a `label=K[=V]` filter.
fn label_matches(m: &VolumeMeta, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => m.labels.get(k).is_some_and(|x| x == v),
        None => m.labels.contains_key(f),
    }
}

pub fn run(root: &Path, cmd: VolumeCommand) -> ExitCode {
    let result = (|| -> Result<(), String> {
        let vols = Volumes::open(root)?;
        let containers = Containers::open(root)?;
        match cmd {
            VolumeCommand::Create {
                driver,
                labels,
                name,
            } => {
                if driver != "local" {
                    return Err(format!(
                        "create {}: error looking up volume plugin {driver}: plugin \"{driver}\" not found",
                        name.unwrap_or_default()
                    ));
                }
                let _lock = vols.lock()?;
                let m = vols.create_locked(name.as_deref(), parse_labels(&labels))?;
                println!("{}", m.name);
            }
            VolumeCommand::Ls { quiet, filters } => {
                let users = vols.users(&containers);
                let mut rows = Vec::new();
                'vols: for m in vols.list() {
                    for f in &filters {
                        let (k, v) = f.split_once('=').ok_or_else(|| {
                            format!("bad format of filter (expected name=value): {f}")
                        })?;
                        let ok = match k {
                            "dangling" => {
                                let want = matches!(v, "true" | "1");
                                users.contains_key(&m.name) != want
                            }
                            "name" => m.name.contains(v),
                            "label" => label_matches(&m, v),
                            "driver" => m.driver == v,
                            _ => return Err(format!("invalid filter '{k}'")),
                        };
                        if !ok {
                            continue 'vols;
                        }
                    }
                    if quiet {
                        println!("{}", m.name);
                    } else {
                        rows.push(vec![m.driver.clone(), m.name.clone()]);
                    }
                }
                if !quiet {
                    print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
                }
            }
            VolumeCommand::Inspect { volumes } => {
                let mut out = Vec::new();
                let mut errors = Vec::new();
                for name in &volumes {
                    match vols.get(name) {
                        Ok(m) => out.push(inspect_json(&vols, &m)),
                        Err(e) => errors.push(e),
                    }
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
                );
                if !errors.is_empty() {
                    return Err(errors.join("\n"));
                }
            }
            VolumeCommand::Rm { force, volumes } => {
                let _lock = vols.lock()?;
                let users = vols.users(&containers);
                let mut errors = Vec::new();
                for name in &volumes {
                    if vols.get(name).is_err() {
                        if !force {
                            errors.push(format!("get {name}: no such volume"));
                        }
                        continue;
                    }
                    if let Some(ids) = users.get(name) {
                        errors.push(format!(
                            "remove {name}: volume is in use - [{}]",
                            ids.join(", ")
                        ));
                        continue;
                    }
                    match vols.remove_locked(name) {
                        Ok(()) => println!("{name}"),
                        Err(e) => errors.push(e),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors.join("\n"));
                }
            }
            VolumeCommand::Prune {
                force,
                all,
                filters,
            } => {
                if !force {
                    use std::io::IsTerminal as _;
                    let what = if all {
                        "all volumes not used by at least one container"
                    } else {
                        "all anonymous local volumes not used by at least one container"
                    };
                    eprint!(
                        "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
                    );
                    let mut answer = String::new();
                    if !std::io::stdin().is_terminal()
                        || std::io::stdin().read_line(&mut answer).is_err()
                        || !matches!(answer.trim(), "y" | "Y" | "yes")
                    {
                        eprintln!();
                        return Ok(());
                    }
                }
                let removed = vols.prune(&containers, all, &filters)?;
                print_pruned(&removed);
                println!(
                    "Total reclaimed space: {}",
                    crate::images::format::human_size(removed.iter().map(|(_, n)| n).sum())
                );
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints docker's `Deleted Volumes:` list (nothing when none was removed).
pub fn print_pruned(removed: &[(String, u64)]) {
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for (name, _) in removed {
            println!("{name}");
        }
        println!();
    }
}

/// Makes the volumes `cfg` asks for (named ones when missing, anonymous ones anew) and
/// names its anonymous volumes. The caller holds the lock.
pub fn make_for(vols: &Volumes, cfg: &mut super::state::Config) -> Result<(), String> {
    let labels = std::mem::take(&mut cfg.volume_labels);
    for (i, v) in cfg.volumes.iter_mut().enumerate() {
        let l = labels.get(i).cloned().unwrap_or_default();
        let name = (!v.anonymous).then_some(v.name.as_str());
        let m = vols.create_locked(name, l)?;
        v.name = m.name;
    }
    Ok(())
}

/// `cfg` with a bind mount of each of its volumes' data directories added to its mounts.
pub fn with_volume_mounts(
    root: &Path,
    cfg: &super::state::Config,
) -> Result<super::state::Config, String> {
    let mut out = cfg.clone();
    if cfg.volumes.is_empty() {
        return Ok(out);
    }
    let vols = Volumes::open(root)?;
    for v in &cfg.volumes {
        vols.get(&v.name)?;
        out.mounts.push(rbuild_executor::MountSpec::Bind {
            source: vols.data(&v.name),
            target: v.target.clone(),
            readonly: v.readonly,
        });
    }
    Ok(out)
}

/// The first-use copy-up of each of `cfg`'s volumes from the mounted `rootfs`.
pub fn populate_all(root: &Path, cfg: &super::state::Config, rootfs: &Path) -> Result<(), String> {
    if cfg.volumes.is_empty() {
        return Ok(());
    }
    let vols = Volumes::open(root)?;
    for v in &cfg.volumes {
        vols.populate(rootfs, v)?;
    }
    Ok(())
}

/// Docker's `Mounts` of a container's inspect: its bind mounts and volumes.
pub fn inspect_mounts(containers: &Containers, cfg: &super::state::Config) -> serde_json::Value {
    let root = containers.dir.parent().unwrap_or(Path::new("/"));
    let data_dir = root.join(VOLUMES_DIR);
    let mut out = Vec::new();
    for m in &cfg.mounts {
        if let rbuild_executor::MountSpec::Bind {
            source,
            target,
            readonly,
        } = m
        {
            out.push(json!({
                "Type": "bind", "Source": source, "Destination": target,
                "Mode": "", "RW": !readonly, "Propagation": "rprivate",
            }));
        }
    }
    for v in &cfg.volumes {
        out.push(json!({
            "Type": "volume", "Name": v.name,
            "Source": data_dir.join(&v.name).join("_data"), "Destination": v.target,
            "Driver": "local", "Mode": "z", "RW": !v.readonly, "Propagation": "",
        }));
    }
    serde_json::Value::Array(out)
}

/// Removes the anonymous volumes of a removed container (`rm -v`, `--rm`) that no other
/// container uses.
pub fn remove_anonymous(root: &Path, used: &[VolumeUse]) -> Result<(), String> {
    if !used.iter().any(|v| v.anonymous) {
        return Ok(());
    }
    let vols = Volumes::open(root)?;
    let containers = Containers::open(root)?;
    let _lock = vols.lock()?;
    let users = vols.users(&containers);
    for v in used.iter().filter(|v| v.anonymous) {
        if users.contains_key(&v.name) || vols.get(&v.name).is_err() {
            continue;
        }
        vols.remove_locked(&v.name)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        assert!(valid_name("data"));
        assert!(valid_name("my_vol-1.x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn create_is_idempotent_and_anonymous_are_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volumes::open(dir.path()).unwrap();
        let a = v.create_locked(Some("data"), BTreeMap::new()).unwrap();
        let b = v.create_locked(Some("data"), BTreeMap::new()).unwrap();
        assert_eq!(a.created_at, b.created_at);
        assert!(v.data("data").is_dir());
        let anon = v.create_locked(None, BTreeMap::new()).unwrap();
        assert!(anon.anonymous && anon.labels.contains_key(ANONYMOUS_LABEL));
        assert_eq!(v.list().len(), 2);
        v.remove_locked("data").unwrap();
        assert!(v.get("data").is_err());
    }
}
