//! containerd's snapshotter verbs over overlayfs, with a naive copying fallback.
//!
//! Layout under the root directory:
//! - `snapshots/<id>/meta.json` — key, kind, parent id; replaced atomically (temp file,
//!   fsync, rename), so a snapshot exists exactly when its `meta.json` does;
//! - `snapshots/<id>/fs` — a committed snapshot's single layer (overlay mode) or full tree
//!   (naive mode); an active snapshot's upper dir (or full copy, naive);
//! - `snapshots/<id>/work` — overlayfs workdir of an active snapshot;
//! - `snapshots/<id>/layer`, `diff` — naive mode's import input and computed diff;
//! - `removing/` — snapshots renamed away before deletion; `lock` — an `flock` serialising
//!   changes between processes;
//! - `keys/<sha256 of key>` — the id holding that key, so a lookup reads two small files
//!   whatever the store's size (a scan of every `meta.json` cost a build step tens of
//!   milliseconds in a store of a few hundred snapshots). An entry is written before the
//!   `meta.json` it points to and always checked against it, so a stale entry is no
//!   snapshot. Entries are not fsynced: `open` rewrites any that are missing once per boot
//!   (`keys/.complete` holds the boot id and time of the last full pass), which also
//!   indexes a store made before the index existed;
//! - `active/<pid>-<n>` — one per open store, removed when it is dropped: one left by a dead
//!   process tells the next `open` to look for what that process may have left.
//!
//! Ids are small integers allocated by `mkdir` (atomic), so paths stay short.
//!
//! Crash consistency: `open` removes leftovers in `removing/` and, after a process that had
//! the store open died (or in a new boot, or hourly), snapshot dirs without `meta.json` (a
//! killed `prepare`), imports whose process is gone and `work` dirs of committed snapshots.
//!
//! **Mount-data limit.** overlayfs options must fit in one page (4096 bytes). Absolute
//! lowerdir paths are used when they fit; otherwise each lowerdir is spelled through a
//! descriptor of the `snapshots/` directory (`/proc/self/fd/N/<id>/fs`, about 20 bytes per
//! layer, so about 180 layers — Docker caps images at 127). We chose this over `chdir` + short
//! relative paths because the caller is multi-threaded and the working directory is
//! process-wide. Longer chains fail with a clear error.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, IoContext, Result};
use crate::snapshot_fs;
pub use crate::snapshot_fs::Usage;
use crate::sys;

/// A snapshot's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable (`prepare`).
    Active,
    /// Read-only (`view`).
    View,
    /// Immutable, may be a parent (`commit`, `import_layer_dir`).
    Committed,
    /// Being filled by an import (`begin_import`); not usable yet.
    Importing,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
            Kind::Importing => "importing",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    key: String,
    kind: Kind,
    parent: Option<String>,
    /// The process filling an import (cleanup of imports whose process died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
}

/// What a caller sees of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub key: String,
    pub kind: Kind,
    /// The parent's key.
    pub parent: Option<String>,
    /// Internal id (directory name).
    pub id: String,
}

/// How to mount a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mounts {
    /// A bind mount of one directory.
    Bind { source: PathBuf, readonly: bool },
    /// overlayfs; `lowerdirs` top first. No upper: read-only (then at least two lowers).
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: Option<PathBuf>,
        workdir: Option<PathBuf>,
    },
}

/// Which implementation the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Overlay,
    Naive,
}

/// The snapshot store.
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    snapshots: PathBuf,
    backend: Backend,
    /// `active/<pid>-<n>`: this open store's marker, removed on drop (see `cleanup`).
    marker: Option<PathBuf>,
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        if let Some(m) = &self.marker {
            let _ = fs::remove_file(m);
        }
    }
}

/// How long a store goes without a full pass over its snapshots (see `cleanup`).
const FULL_PASS_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Writes `data` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ctx("create temp file", dir)?;
    tmp.write_all(data).ctx("write", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| Error::io("rename", path, e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync", dir)
}

/// Tries an overlay mount in a temp dir under `root`.
fn overlay_works(root: &Path) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    let Ok(tmp) = tempfile::Builder::new()
        .prefix("ovl-check-")
        .tempdir_in(root)
    else {
        return false;
    };
    let t = tmp.path();
    let dirs = ["l1", "l2", "u", "w", "m"].map(|d| t.join(d));
    if dirs.iter().any(|d| fs::create_dir(d).is_err()) {
        return false;
    }
    let data = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display(),
        dirs[3].display()
    );
    let ok = sys::mount(
        Some("overlay"),
        &dirs[4],
        Some("overlay"),
        sys::MountFlags::empty(),
        Some(&data),
    )
    .is_ok();
    if ok {
        let _ = sys::unmount(&dirs[4], true);
    }
    ok
}

/// This boot's id (empty when the kernel does not say): what per-boot records are keyed by.
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_string())
        .unwrap_or_default()
}

/// [`overlay_works`], remembered in `root/overlay-probe` for this boot and this filesystem
/// (`<boot id> <device> yes|no`): the test mount and its unmount cost tens of milliseconds,
/// a large part of a short `rbuild run`.
fn overlay_probed(root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let boot = boot_id();
    let dev = fs::metadata(root).map(|m| m.dev()).unwrap_or(0);
    let key = format!("{boot} {dev}");
    let file = root.join("overlay-probe");
    if !boot.is_empty()
        && let Ok(text) = fs::read_to_string(&file)
        && let Some((k, verdict)) = text.trim().rsplit_once(' ')
        && k == key
    {
        return verdict == "yes";
    }
    let ok = overlay_works(root);
    // Only a cache: a failed write means probing again next time.
    let _ = write_atomic(
        &file,
        format!("{key} {}\n", if ok { "yes" } else { "no" }).as_bytes(),
    );
    ok
}

/// Escapes the characters overlayfs splits options on.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Largest overlay option string (one page, with the terminating NUL).
const MAX_MOUNT_DATA: usize = 4095;

impl Snapshotter {
    /// Opens (creating) the store at `root`, choosing overlayfs when a test mount works and
    /// the naive copier otherwise; cleans up what a killed process left.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, None)
    }

    /// Like [`Snapshotter::open`], forcing `backend` when given.
    pub fn open_with(root: impl Into<PathBuf>, backend: Option<Backend>) -> Result<Self> {
        let root = root.into();
        let snapshots = root.join("snapshots");
        for d in [&root, &snapshots, &root.join("removing")] {
            fs::create_dir_all(d).ctx("create dir", d)?;
        }
        let backend = backend.unwrap_or_else(|| {
            if overlay_probed(&root) {
                Backend::Overlay
            } else {
                Backend::Naive
            }
        });
        let mut s = Snapshotter {
            root,
            snapshots,
            backend,
            marker: None,
        };
        let _lock = s.lock()?;
        s.cleanup()?;
        s.marker = Some(s.mark_open()?);
        Ok(s)
    }

    /// The index entry of `key`.
    fn key_path(&self, key: &str) -> PathBuf {
        use sha2::{Digest as _, Sha256};
        self.root
            .join("keys")
            .join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Points `key`'s index entry at `id` (replaced by rename; not fsynced, see the module
    /// docs).
    fn index_key(&self, key: &str, id: &str) -> Result<()> {
        let p = self.key_path(key);
        let dir = self.root.join("keys");
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).ctx("create temp file", &dir)?;
        tmp.write_all(id.as_bytes()).ctx("write", tmp.path())?;
        tmp.persist(&p)
            .map_err(|e| Error::io("rename", &p, e.error))?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Flock<fs::File>> {
        let p = self.root.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .ctx("open", &p)?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::sys("flock", e))
    }

    /// Records that this process has the store open: `active/<pid>-<n>`, removed on drop.
    fn mark_open(&self) -> Result<PathBuf> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = self.root.join("active").join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&p, b"").ctx("create", &p)?;
        Ok(p)
    }

    /// What a killed process may have left. Always: `removing/`. The full pass over every
    /// snapshot (dirs without `meta.json`, imports of dead processes, `work` dirs of
    /// committed snapshots; the key index rebuilt after a reboot) costs a read per snapshot,
    /// tens of milliseconds in a large store, so it runs only when needed: in a new boot,
    /// when a process that had the store open died without closing it (its `active/`
    /// marker is left), and at least hourly. An import of a dead process that blocks its
    /// key is also removed when the key is wanted again (`check_new_key`).
    fn cleanup(&self) -> Result<()> {
        let keys = self.root.join("keys");
        let active = self.root.join("active");
        for d in [&keys, &active] {
            fs::create_dir_all(d).ctx("create dir", d)?;
        }
        let boot = boot_id();
        let boot = boot.as_str();
        let complete = keys.join(".complete");
        let last = fs::read_to_string(&complete).unwrap_or_default();
        let mut last = last.split_whitespace();
        let reindex = boot.is_empty() || last.next() != Some(boot);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stale = last
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .is_none_or(|t| now.saturating_sub(t) >= FULL_PASS_EVERY.as_secs());
        let mut crashed = false;
        for e in fs::read_dir(&active).ctx("read dir", &active)? {
            let p = e.ctx("read dir", &active)?.path();
            let pid = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('-').next())
                .and_then(|n| n.parse::<u32>().ok());
            if !pid.is_some_and(process_alive) {
                crashed = true;
                let _ = fs::remove_file(&p);
            }
        }
        let removing = self.root.join("removing");
        for e in fs::read_dir(&removing).ctx("read dir", &removing)? {
            let p = e.ctx("read dir", &removing)?.path();
            fs::remove_dir_all(&p).ctx("remove", &p)?;
        }
        if !(reindex || stale || crashed) {
            return Ok(());
        }
        for e in fs::read_dir(&self.snapshots).ctx("read dir", &self.snapshots)? {
            let dir = e.ctx("read dir", &self.snapshots)?.path();
            let meta = match self.read_meta_at(&dir) {
                Ok(m) => m,
                Err(_) => {
                    self.discard(&dir)?;
                    continue;
                }
            };
            if reindex && let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                self.index_key(&meta.key, id)?;
            }
            match meta.kind {
                Kind::Importing if !meta.pid.is_some_and(process_alive) => {
                    self.discard(&dir)?;
                }
                Kind::Committed => {
                    let work = dir.join("work");
                    if work.exists() {
                        fs::remove_dir_all(&work).ctx("remove", &work)?;
                    }
                }
                _ => {}
            }
        }
        if !boot.is_empty() {
            write_atomic(&complete, format!("{boot} {now}").as_bytes())?;
        }
        Ok(())
    }

    /// Renames a snapshot dir into `removing/` (atomic) and deletes it.
    fn discard(&self, dir: &Path) -> Result<()> {
        let name = dir.file_name().unwrap_or_default();
        let target = self.root.join("removing").join(name);
        fs::rename(dir, &target).ctx("rename", dir)?;
        fs::remove_dir_all(&target).ctx("remove", &target)
    }

    fn read_meta_at(&self, dir: &Path) -> Result<Meta> {
        let p = dir.join("meta.json");
        let data = fs::read(&p).ctx("read", &p)?;
        serde_json::from_slice(&data).map_err(|source| Error::Metadata { path: p, source })
    }

    /// Writes `id`'s `meta.json`, its key's index entry first.
    fn write_meta(&self, id: &str, meta: &Meta) -> Result<()> {
        self.index_key(&meta.key, id)?;
        let p = self.snapshots.join(id).join("meta.json");
        let data = serde_json::to_vec_pretty(meta).map_err(|source| Error::Metadata {
            path: p.clone(),
            source,
        })?;
        write_atomic(&p, &data)
    }

    /// Every snapshot: (id, meta).
    fn all(&self) -> Result<Vec<(String, Meta)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.snapshots).ctx("read dir", &self.snapshots)? {
            let e = e.ctx("read dir", &self.snapshots)?;
            if let Ok(m) = self.read_meta_at(&e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), m));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The snapshot holding `key`, through the key index (see the module docs).
    fn find(&self, key: &str) -> Result<(String, Meta)> {
        let not_found = || Error::SnapshotNotFound(key.to_string());
        let p = self.key_path(key);
        let id = match fs::read_to_string(&p) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(Error::io("read", &p, e)),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_found());
        }
        match self.read_meta_at(&self.snapshots.join(&id)) {
            Ok(m) if m.key == key => Ok((id, m)),
            _ => Err(not_found()),
        }
    }

    fn check_new_key(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.len() > 1024 {
            return Err(Error::InvalidKey(key.to_string()));
        }
        match self.find(key) {
            // An import its process never finished: not a snapshot to keep.
            Ok((id, m)) if m.kind == Kind::Importing && !m.pid.is_some_and(process_alive) => {
                self.discard(&self.snapshots.join(&id))
            }
            Ok(_) => Err(Error::SnapshotExists(key.to_string())),
            Err(Error::SnapshotNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Allocates a new id by `mkdir`.
    fn alloc(&self) -> Result<String> {
        let mut n = fs::read_dir(&self.snapshots)
            .ctx("read dir", &self.snapshots)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        loop {
            let dir = self.snapshots.join(n.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(n.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(Error::io("mkdir", dir, e)),
            }
        }
    }

    fn committed_parent(&self, parent: Option<&str>) -> Result<Option<String>> {
        let Some(pk) = parent else {
            return Ok(None);
        };
        let (pid, pm) = self.find(pk)?;
        if pm.kind != Kind::Committed {
            return Err(Error::SnapshotKind {
                key: pk.to_string(),
                actual: pm.kind.name(),
                expected: "committed",
            });
        }
        Ok(Some(pid))
    }

    fn fs_dir(&self, id: &str) -> PathBuf {
        self.snapshots.join(id).join("fs")
    }

    /// The `fs` dirs of `id`'s committed ancestors, nearest first.
    fn chain(&self, mut parent: Option<String>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(id) = parent {
            let m = self.read_meta_at(&self.snapshots.join(&id))?;
            out.push(id);
            parent = m.parent;
        }
        Ok(out)
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Mounts> {
        let _lock = self.lock()?;
        self.check_new_key(key)?;
        let parent_id = self.committed_parent(parent)?;
        let id = self.alloc()?;
        let made = (|| {
            let fs_dir = self.fs_dir(&id);
            fs::create_dir(&fs_dir).ctx("mkdir", &fs_dir)?;
            if kind == Kind::Active
                && let Some(pid) = &parent_id
            {
                match self.backend {
                    Backend::Overlay => {
                        let w = self.snapshots.join(&id).join("work");
                        fs::create_dir(&w).ctx("mkdir", &w)?;
                    }
                    Backend::Naive => snapshot_fs::copy_tree_into(&self.fs_dir(pid), &fs_dir)?,
                }
            }
            self.write_meta(
                &id,
                &Meta {
                    key: key.to_string(),
                    kind,
                    parent: parent_id.clone(),
                    pid: None,
                },
            )
        })();
        if let Err(e) = made {
            let _ = self.discard(&self.snapshots.join(&id));
            return Err(e);
        }
        self.mounts_of(&id, kind, parent_id)
    }

    /// A writable snapshot `key` on top of committed `parent`.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mounts> {
        self.create(key, parent, Kind::Active)
    }

    /// A read-only snapshot `key` of committed `parent`.
    pub fn view(&self, key: &str, parent: Option<&str>) -> Result<Mounts> {
        self.create(key, parent, Kind::View)
    }

    /// Turns active snapshot `key` into committed snapshot `name` (unmount it first).
    pub fn commit(&self, name: &str, key: &str) -> Result<()> {
        let _lock = self.lock()?;
        let (id, meta) = self.find(key)?;
        if meta.kind != Kind::Active {
            return Err(Error::SnapshotKind {
                key: key.to_string(),
                actual: meta.kind.name(),
                expected: "active",
            });
        }
        self.check_new_key(name)?;
        self.write_meta(
            &id,
            &Meta {
                key: name.to_string(),
                kind: Kind::Committed,
                parent: meta.parent,
                pid: None,
            },
        )?;
        // The active key's entry now points at a snapshot named otherwise: drop it.
        let _ = fs::remove_file(self.key_path(key));
        for d in ["work", "diff"] {
            let p = self.snapshots.join(&id).join(d);
            if p.exists() {
                fs::remove_dir_all(&p).ctx("remove", &p)?;
            }
        }
        Ok(())
    }

    /// Removes snapshot `key` (refused while other snapshots build on it).
    pub fn remove(&self, key: &str) -> Result<()> {
        let _lock = self.lock()?;
        let (id, meta) = self.find(key)?;
        // Only committed snapshots can be parents: the others need no scan for children.
        if meta.kind == Kind::Committed
            && self
                .all()?
                .iter()
                .any(|(_, m)| m.parent.as_deref() == Some(id.as_str()))
        {
            return Err(Error::SnapshotInUse(key.to_string()));
        }
        self.discard(&self.snapshots.join(&id))?;
        // A stale entry would only be ignored; removing it keeps `keys/` small.
        let _ = fs::remove_file(self.key_path(key));
        Ok(())
    }

    /// Information about snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        let (id, m) = self.find(key)?;
        self.info(id, m)
    }

    fn info(&self, id: String, m: Meta) -> Result<Info> {
        let parent = match &m.parent {
            Some(p) => Some(self.read_meta_at(&self.snapshots.join(p))?.key),
            None => None,
        };
        Ok(Info {
            key: m.key,
            kind: m.kind,
            parent,
            id,
        })
    }

    /// Every snapshot.
    pub fn list(&self) -> Result<Vec<Info>> {
        self.all()?
            .into_iter()
            .map(|(id, m)| self.info(id, m))
            .collect()
    }

    /// How to mount snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Mounts> {
        let (id, m) = self.find(key)?;
        self.mounts_of(&id, m.kind, m.parent)
    }

    fn mounts_of(&self, id: &str, kind: Kind, parent: Option<String>) -> Result<Mounts> {
        let chain = self.chain(parent)?;
        let own = self.fs_dir(id);
        Ok(match (kind, self.backend) {
            (Kind::Active | Kind::Importing, Backend::Naive) | (Kind::Importing, _) => {
                Mounts::Bind {
                    source: own,
                    readonly: false,
                }
            }
            (Kind::Active, Backend::Overlay) => {
                if chain.is_empty() {
                    Mounts::Bind {
                        source: own,
                        readonly: false,
                    }
                } else {
                    Mounts::Overlay {
                        lowerdirs: chain.iter().map(|c| self.fs_dir(c)).collect(),
                        upperdir: Some(own),
                        workdir: Some(self.snapshots.join(id).join("work")),
                    }
                }
            }
            (Kind::View, Backend::Naive) => Mounts::Bind {
                source: chain.first().map_or(own, |c| self.fs_dir(c)),
                readonly: true,
            },
            (Kind::View, Backend::Overlay) | (Kind::Committed, _) => {
                let mut lowers: Vec<PathBuf> = Vec::new();
                if kind == Kind::Committed {
                    lowers.push(own.clone());
                }
                if kind == Kind::Committed && self.backend == Backend::Naive {
                    return Ok(Mounts::Bind {
                        source: own,
                        readonly: true,
                    });
                }
                lowers.extend(chain.iter().map(|c| self.fs_dir(c)));
                match lowers.len() {
                    0 => Mounts::Bind {
                        source: own,
                        readonly: true,
                    },
                    1 => Mounts::Bind {
                        source: lowers.remove(0),
                        readonly: true,
                    },
                    _ => Mounts::Overlay {
                        lowerdirs: lowers,
                        upperdir: None,
                        workdir: None,
                    },
                }
            }
        })
    }

    /// The directory holding what active snapshot `key` changed, in overlayfs format
    /// (char 0:0 whiteouts, `trusted.overlay.opaque` dirs): the upper dir with overlayfs;
    /// with the naive backend a diff computed by comparison with the parent into
    /// `snapshots/<id>/diff` (recomputed on each call). Unmount the snapshot first.
    pub fn diff_dir(&self, key: &str) -> Result<PathBuf> {
        let (id, m) = self.find(key)?;
        let own = self.fs_dir(&id);
        let Some(parent) = m.parent else {
            return Ok(own);
        };
        if self.backend == Backend::Overlay {
            return Ok(own);
        }
        let out = self.snapshots.join(&id).join("diff");
        if out.exists() {
            fs::remove_dir_all(&out).ctx("remove", &out)?;
        }
        fs::create_dir(&out).ctx("mkdir", &out)?;
        snapshot_fs::naive_diff(&own, &self.fs_dir(&parent), &out)?;
        Ok(out)
    }

    /// Disk usage of snapshot `key`'s own directory (its layer or upper).
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (id, _) = self.find(key)?;
        snapshot_fs::usage(&self.fs_dir(&id))
    }

    /// Starts importing a layer as committed snapshot `key` on `parent`: returns the empty
    /// directory to unpack the layer into, in overlay-lower format (whiteouts as char 0:0,
    /// opaque dirs by xattr). Finish with [`Snapshotter::commit_import`]; if the process dies
    /// first, the next `open` removes the half import.
    pub fn begin_import(&self, key: &str, parent: Option<&str>) -> Result<PathBuf> {
        let _lock = self.lock()?;
        self.check_new_key(key)?;
        let parent_id = self.committed_parent(parent)?;
        let id = self.alloc()?;
        let dir = match self.backend {
            Backend::Overlay => self.fs_dir(&id),
            Backend::Naive => self.snapshots.join(&id).join("layer"),
        };
        let made = fs::create_dir(&dir).ctx("mkdir", &dir).and_then(|()| {
            self.write_meta(
                &id,
                &Meta {
                    key: key.to_string(),
                    kind: Kind::Importing,
                    parent: parent_id,
                    pid: Some(std::process::id()),
                },
            )
        });
        if let Err(e) = made {
            let _ = self.discard(&self.snapshots.join(&id));
            return Err(e);
        }
        Ok(dir)
    }

    /// Commits an import begun with [`Snapshotter::begin_import`].
    pub fn commit_import(&self, key: &str) -> Result<()> {
        let (id, meta) = self.find(key)?;
        if meta.kind != Kind::Importing {
            return Err(Error::SnapshotKind {
                key: key.to_string(),
                actual: meta.kind.name(),
                expected: "importing",
            });
        }
        if self.backend == Backend::Naive {
            let own = self.fs_dir(&id);
            fs::create_dir(&own).ctx("mkdir", &own)?;
            if let Some(p) = &meta.parent {
                snapshot_fs::copy_tree_into(&self.fs_dir(p), &own)?;
            }
            let layer = self.snapshots.join(&id).join("layer");
            snapshot_fs::apply_layer(&layer, &own)?;
            fs::remove_dir_all(&layer).ctx("remove", &layer)?;
        }
        let _lock = self.lock()?;
        self.write_meta(
            &id,
            &Meta {
                key: key.to_string(),
                kind: Kind::Committed,
                parent: meta.parent,
                pid: None,
            },
        )
    }

    /// Imports a layer in one call: `fill` unpacks into the directory it is given.
    pub fn import_layer_dir<F>(&self, key: &str, parent: Option<&str>, fill: F) -> Result<()>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let dir = self.begin_import(key, parent)?;
        if let Err(e) = fill(&dir) {
            let _ = self.remove(key);
            return Err(e);
        }
        self.commit_import(key)
    }

    /// Mounts `mounts` on `target` (an existing directory).
    pub fn mount(&self, mounts: &Mounts, target: &Path) -> Result<()> {
        mount(mounts, target, Some(&self.snapshots))
    }
}

/// Mounts `mounts` on `target`. `snapshots_dir`, when given, is the directory lowerdirs live
/// in, used to shorten the option string past the page-size limit.
pub fn mount(mounts: &Mounts, target: &Path, snapshots_dir: Option<&Path>) -> Result<()> {
    match mounts {
        Mounts::Bind { source, readonly } => sys::bind_mount(source, target, false, *readonly),
        Mounts::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => {
            let build = |lower: &dyn Fn(&Path) -> String| {
                let mut data = String::from("index=off,lowerdir=");
                let lowers: Vec<String> = lowerdirs.iter().map(|l| lower(l)).collect();
                data.push_str(&lowers.join(":"));
                if let (Some(u), Some(w)) = (upperdir, workdir) {
                    data.push_str(&format!(",upperdir={},workdir={}", lower(u), lower(w)));
                }
                data
            };
            let data = build(&|p: &Path| escape(p));
            if data.len() <= MAX_MOUNT_DATA {
                return sys::mount(
                    Some("overlay"),
                    target,
                    Some("overlay"),
                    sys::MountFlags::empty(),
                    Some(&data),
                );
            }
            let Some(dir) = snapshots_dir else {
                return Err(Error::InvalidSpec(format!(
                    "overlay options too long ({} bytes) for {} layers",
                    data.len(),
                    lowerdirs.len()
                )));
            };
            let fd: OwnedFd = nix::fcntl::open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::sys(format!("open {}", dir.display()), e))?;
            let base = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let short = build(&|p: &Path| match p.strip_prefix(dir) {
                Ok(rel) => escape(&Path::new(&base).join(rel)),
                Err(_) => escape(p),
            });
            if short.len() > MAX_MOUNT_DATA {
                return Err(Error::InvalidSpec(format!(
                    "snapshot chain of {} layers is too long for one overlay mount",
                    lowerdirs.len()
                )));
            }
            sys::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                sys::MountFlags::empty(),
                Some(&short),
            )
        }
    }
}

/// Disk usage of any directory tree (hard links counted once), e.g. a volume's data.
pub fn tree_usage(path: &Path) -> Result<Usage> {
    snapshot_fs::usage(path)
}

/// Unmounts `target` (lazily when busy).
pub fn unmount(target: &Path) -> Result<()> {
    match sys::unmount(target, false) {
        Err(Error::Sys {
            source: nix::errno::Errno::EBUSY,
            ..
        }) => sys::unmount(target, true),
        other => other,
    }
}
