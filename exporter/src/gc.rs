//! Disk usage (`system df`) and garbage collection (`system prune`).
//!
//! GC keeps everything reachable from
//! - the image index (each record's manifest, its registry digest if that
//!   blob is stored, and everything those reference), and
//! - `<root>/roots/*.json` files (`{"digests": [...], "snapshots": [...]}`)
//!   that later subsystems (build cache, containers) write to pin content,
//!
//! and deletes every other blob, every snapshot whose chain ID no kept image
//! or root uses, and leftover temp files. It runs under the exclusive GC lock,
//! so it waits for writers holding a lease (pulls, loads, builds) and they
//! wait for it.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::PathBuf;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Image, Parsed, digest_of};
use crate::images::{ImageRecord, Images};
use crate::lock::FileLock;
use crate::snapshots::Snapshots;
use crate::store::Store;

/// Directory of GC root files under the root.
pub const ROOTS_DIR: &str = "roots";

/// A GC root file: content to keep besides what images reach.
#[derive(Debug, Default, Deserialize)]
pub struct RootFile {
    #[serde(default)]
    pub digests: Vec<Digest>,
    #[serde(default)]
    pub snapshots: Vec<Digest>,
}

/// `system df` numbers.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: usize,
    /// Images with a name (the rest are dangling).
    pub images_named: usize,
    /// Bytes of all blobs in the store.
    pub blobs_size: u64,
    pub blobs: usize,
    /// Bytes of blobs no image or root reaches.
    pub blobs_reclaimable: u64,
    pub snapshots: usize,
    pub snapshots_size: u64,
    pub snapshots_reclaimable: u64,
    /// Bytes reclaimable by `prune -a` (blobs only reachable from images).
    pub images_size: u64,
}

/// What a collection removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub images_removed: Vec<ImageRecord>,
    pub blobs_removed: Vec<Digest>,
    pub snapshots_removed: Vec<Digest>,
    pub temps_removed: u64,
    pub bytes_freed: u64,
}

struct Reach {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
}

fn read_roots(store: &Store) -> Result<Vec<RootFile>> {
    let dir = store.root().join(ROOTS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let path: PathBuf = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let root: RootFile = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: path.display().to_string(),
                source,
            })?;
            out.push(root);
        }
    }
    Ok(out)
}

/// Marks `d` and everything it references (manifests, indexes).
fn mark(store: &Store, d: &Digest, reach: &mut Reach, depth: u32) -> Result<()> {
    if !reach.blobs.insert(d.clone()) || depth > 8 || !store.has_blob(d) {
        return Ok(());
    }
    // Only small blobs can be manifests; layers are not parsed.
    if store.blob_size(d)? > 4 * 1024 * 1024 {
        return Ok(());
    }
    let bytes = store.read_blob(d)?;
    let Ok((_, parsed)) = image::parse(&bytes, None, &d.to_string()) else {
        return Ok(());
    };
    match parsed {
        Parsed::Manifest(m) => {
            reach.blobs.insert(digest_of(m.config().digest())?);
            for l in m.layers() {
                reach.blobs.insert(digest_of(l.digest())?);
            }
            // The snapshots of this image's layer stack stay too.
            if let Ok(img) = Image::load(store, d) {
                reach.snapshots.extend(img.chain_ids());
            }
        }
        Parsed::Index(idx) => {
            for m in idx.manifests() {
                mark(store, &digest_of(m.digest())?, reach, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn reachable(store: &Store, records: &[ImageRecord], roots: &[RootFile]) -> Result<Reach> {
    let mut reach = Reach {
        blobs: HashSet::new(),
        snapshots: HashSet::new(),
    };
    for r in records {
        mark(store, &r.target, &mut reach, 0)?;
        if let Some(d) = &r.repo_digest {
            mark(store, d, &mut reach, 0)?;
        }
    }
    for root in roots {
        for d in &root.digests {
            mark(store, d, &mut reach, 0)?;
        }
        reach.snapshots.extend(root.snapshots.iter().cloned());
    }
    Ok(reach)
}

/// Numbers for `system df`.
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let images = Images::open(store).list()?;
    let snapshots = Snapshots::open(store)?;
    let roots = read_roots(store)?;
    let all = reachable(store, &images, &roots)?;
    let pinned = reachable(store, &[], &roots)?;
    let blobs = store.list_blobs()?;
    let mut du = DiskUsage {
        images: images
            .iter()
            .map(|r| &r.target)
            .collect::<BTreeSet<_>>()
            .len(),
        images_named: images
            .iter()
            .filter(|r| r.name.is_some())
            .map(|r| &r.target)
            .collect::<BTreeSet<_>>()
            .len(),
        blobs: blobs.len(),
        ..DiskUsage::default()
    };
    for (d, size) in &blobs {
        du.blobs_size += size;
        if !all.blobs.contains(d) {
            du.blobs_reclaimable += size;
        }
        if all.blobs.contains(d) && !pinned.blobs.contains(d) {
            du.images_size += size;
        }
    }
    for chain in snapshots.list()? {
        let size = snapshots.size(&chain)?;
        du.snapshots += 1;
        du.snapshots_size += size;
        if !all.snapshots.contains(&chain) {
            du.snapshots_reclaimable += size;
        }
    }
    Ok(du)
}

/// `system prune [-a]`: removes dangling images (all images with `all`) but those in
/// `in_use`, then collects. Waits for running writers.
pub fn prune(store: &Store, all: bool, in_use: &BTreeSet<Digest>) -> Result<PruneReport> {
    let lock = store.gc_lock()?;
    let removed = Images::open(store).prune(all, in_use)?;
    let mut report = collect_locked(store, &lock)?;
    report.images_removed = removed;
    Ok(report)
}

/// Collects unreachable content now if no writer holds a lease; `None`
/// when busy (used after `rmi`, which should not wait).
pub fn try_collect(store: &Store) -> Result<Option<PruneReport>> {
    match FileLock::try_exclusive(store.lock_path("gc.lock"))? {
        Some(lock) => collect_locked(store, &lock).map(Some),
        None => Ok(None),
    }
}

/// Collects unreachable content, waiting for writers to finish.
pub fn collect(store: &Store) -> Result<PruneReport> {
    let lock = store.gc_lock()?;
    collect_locked(store, &lock)
}

fn collect_locked(store: &Store, _lock: &FileLock) -> Result<PruneReport> {
    let images = Images::open(store).list()?;
    let roots = read_roots(store)?;
    let reach = reachable(store, &images, &roots)?;
    let mut report = PruneReport::default();
    for (d, size) in store.list_blobs()? {
        if !reach.blobs.contains(&d) && store.delete(&d)? {
            report.bytes_freed += size;
            report.blobs_removed.push(d);
        }
    }
    let snapshots = Snapshots::open(store)?;
    for chain in snapshots.list()? {
        if !reach.snapshots.contains(&chain) {
            report.bytes_freed += snapshots.size(&chain)?;
            snapshots.remove(&chain)?;
            report.snapshots_removed.push(chain);
        }
    }
    report.temps_removed += snapshots.remove_temps()?;
    // No writer holds a lease now, so every ingest temp file is an orphan.
    let ingest = store.ingest_dir();
    for entry in fs::read_dir(&ingest).map_err(|e| Error::io(&ingest, e))? {
        let entry = entry.map_err(|e| Error::io(&ingest, e))?;
        report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
        crate::unpack::remove_any(&entry.path())?;
        report.temps_removed += 1;
    }
    Ok(report)
}
