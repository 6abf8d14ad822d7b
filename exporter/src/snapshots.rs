//! Unpacked layer stacks: one directory per chain ID,
//! `<root>/snapshots-v1/<chainid-hex>/fs`, holding the whole filesystem of
//! the layers up to that one (a naive snapshotter: every snapshot is a full
//! tree; the build engine can add overlayfs later). A snapshot is unpacked
//! into a temp directory beside it and renamed into place, so it either
//! exists complete or not at all.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Layer, chain_ids};
use crate::store::Store;
use crate::unpack::{remove_any, unpack_layer};

/// Directory of the snapshots under the root.
pub const SNAPSHOTS_DIR: &str = "snapshots-v1";
/// Prefix of snapshot temp directories (removed by GC).
pub const TEMP_PREFIX: &str = ".tmp-";

/// Written beside `fs/` in each snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub chain_id: Digest,
    pub diff_ids: Vec<Digest>,
    pub created: String,
}

/// The snapshots of one root.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: Store,
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(store: &Store) -> Result<Snapshots> {
        let dir = store.root().join(SNAPSHOTS_DIR);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Snapshots {
            store: store.clone(),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root filesystem directory of the snapshot for `chain_id`.
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// Makes sure the snapshot of the whole `layers` stack exists (unpacking
    /// the layer blobs from the store) and returns its `fs` directory.
    pub fn prepare(&self, layers: &[Layer]) -> Result<PathBuf> {
        let ids = chain_ids(layers.iter().map(|l| &l.diff_id));
        let Some(top) = ids.last() else {
            return Err(Error::InvalidImage {
                what: "snapshot".into(),
                reason: "an image without layers has no snapshot".into(),
            });
        };
        if self.exists(top) {
            return Ok(self.fs_path(top));
        }
        let _lease = self.store.lease()?;
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let fs_dir = tmp.path().join("fs");
        fs::create_dir(&fs_dir).map_err(|e| Error::io(&fs_dir, e))?;
        for layer in layers {
            let blob = self.store.open_blob(&layer.digest)?;
            unpack_layer(io::BufReader::new(blob), layer.compression(), &fs_dir).map_err(|e| {
                Error::InvalidImage {
                    what: format!("layer {}", layer.digest),
                    reason: e.to_string(),
                }
            })?;
        }
        let meta = SnapshotMeta {
            chain_id: top.clone(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            created: crate::images::now_rfc3339(),
        };
        let meta_bytes = crate::compose::to_json(&meta, "snapshot meta")?;
        let meta_path = tmp.path().join("meta.json");
        fs::write(&meta_path, meta_bytes).map_err(|e| Error::io(&meta_path, e))?;
        let target = self.dir.join(top.hex());
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &target) {
            Ok(()) => crate::store::sync_dir(&self.dir)?,
            Err(_) if self.exists(top) => {
                // Someone else made it meanwhile; theirs is as good as ours.
                remove_any(&tmp_path)?;
            }
            Err(e) => {
                let _ = remove_any(&tmp_path);
                return Err(Error::io(&target, e));
            }
        }
        Ok(self.fs_path(top))
    }

    /// Chain IDs of all complete snapshots.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a snapshot: renamed away first (atomic), then deleted.
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let path = self.dir.join(chain_id.hex());
        let doomed = self.dir.join(format!("{TEMP_PREFIX}rm-{}", chain_id.hex()));
        match fs::rename(&path, &doomed) {
            Ok(()) => remove_any(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Removes leftover temp directories of interrupted unpacks. Only safe
    /// under the GC lock.
    pub(crate) fn remove_temps(&self) -> Result<u64> {
        let mut n = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                remove_any(&entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Disk usage of one snapshot (hard links counted once).
    pub fn size(&self, chain_id: &Digest) -> Result<u64> {
        let mut seen = HashSet::new();
        tree_size(&self.dir.join(chain_id.hex()), &mut seen)
    }
}

fn tree_size(path: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(0);
    }
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            total += tree_size(&entry.path(), seen)?;
        }
    }
    Ok(total)
}
