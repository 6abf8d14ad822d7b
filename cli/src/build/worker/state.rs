//! What the worker keeps between processes, under the rbuild root:
//!
//! - `buildcache-v1/keys/<key hex>.json`: cache key → result (a snapshot key), written
//!   atomically (temp file, fsync, rename, fsync dir), read by later builds;
//! - `buildcache-v1/snapshots/<snapshot key>.json`: per committed snapshot, when it was
//!   made, whether its layer is empty, the registry blob it was unpacked from (image
//!   layers) and the blobs exports wrote for it (per compression / `SOURCE_DATE_EPOCH`),
//!   so export reuses them instead of re-tarring;
//! - `roots/build-<snapshot key>.json`: GC roots (`{"digests": [...]}`) for those blobs, so
//!   `rbuild system prune` keeps what the cache reuses.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Directory of the build cache under the root.
pub const CACHE_DIR: &str = "buildcache-v1";

/// A layer blob in the content store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: String,
    pub media_type: String,
    pub diff_id: String,
    pub size: u64,
}

/// A blob an export wrote for a snapshot, with the options it was written with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBlob {
    /// `gzip`, `zstd` or `none`, then `@<epoch>` when timestamps were clamped.
    pub variant: String,
    pub blob: BlobRef,
}

/// What the worker knows of one committed snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// RFC 3339, when the step that made it finished.
    pub created: String,
    /// The snapshot changed nothing (an empty layer, left out of images).
    #[serde(default)]
    pub empty: bool,
    /// The registry blob an image layer was unpacked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<BlobRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub produced: Vec<ProducedBlob>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    result: String,
    created: String,
}

#[derive(Debug, Serialize)]
struct RootFile<'a> {
    digests: Vec<&'a str>,
}

/// The on-disk state of one root.
#[derive(Debug, Clone)]
pub struct State {
    root: PathBuf,
    dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Writes `data` to `path` atomically: a temp file beside it, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    rename_into_place(path, data, true)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

/// Replaces `path` atomically against a crash of this process (temp file + rename) but
/// without fsync: for volatile records whose reader survives losing the last updates or
/// finding the file empty after a power cut (a container's `state.json`: a container
/// recorded running whose monitor is gone reads as exited, a garbled one as created). The
/// directory must exist: a record of something removed is not brought back.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<(), String> {
    rename_into_place(path, data, false)
}

/// `data` into a temp file beside `path` (fsynced when `sync`), renamed onto `path`.
fn rename_into_place(path: &Path, data: &[u8], sync: bool) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_err("create a temp file in", dir, e))?;
    tmp.write_all(data)
        .and_then(|()| {
            if sync {
                tmp.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(|e| io_err("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io_err("rename onto", path, e.error))?;
    Ok(())
}

/// A name safe as a file name for a key like `sha256:abc`.
fn file_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl State {
    pub fn open(root: &Path) -> Result<State, String> {
        let dir = root.join(CACHE_DIR);
        for d in [dir.join("keys"), dir.join("snapshots"), root.join("roots")] {
            std::fs::create_dir_all(&d).map_err(|e| io_err("create", &d, e))?;
        }
        Ok(State {
            root: root.to_path_buf(),
            dir,
        })
    }

    fn key_path(&self, key: &str) -> PathBuf {
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        self.dir
            .join("keys")
            .join(format!("{}.json", file_name(hex)))
    }

    /// The result recorded for a cache key.
    pub fn get(&self, key: &str) -> Option<String> {
        let bytes = std::fs::read(self.key_path(key)).ok()?;
        let rec: KeyRecord = serde_json::from_slice(&bytes).ok()?;
        Some(rec.result)
    }

    pub fn put(&self, key: &str, result: &str) -> Result<(), String> {
        let rec = KeyRecord {
            result: result.to_string(),
            created: rbuild_exporter::images::now_rfc3339(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        write_atomic(&self.key_path(key), &bytes)
    }

    /// Marks a key as used now (its record file's mtime is its last use).
    pub fn touch(&self, key: &str) {
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(self.key_path(key))
        {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Every key record: (key, result, last use).
    pub fn entries(&self) -> Vec<(String, String, std::time::SystemTime)> {
        let dir = self.dir.join("keys");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".json")?.to_string();
                let bytes = std::fs::read(e.path()).ok()?;
                let rec: KeyRecord = serde_json::from_slice(&bytes).ok()?;
                let used = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((format!("sha256:{stem}"), rec.result, used))
            })
            .collect()
    }

    /// Forgets a key.
    pub fn remove(&self, key: &str) -> Result<(), String> {
        match std::fs::remove_file(self.key_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err("remove", &self.key_path(key), e))
            }
            _ => Ok(()),
        }
    }

    /// Forgets a snapshot's record and its GC root.
    pub fn remove_meta(&self, snapshot: &str) {
        let root = self
            .root
            .join(rbuild_exporter::gc::ROOTS_DIR)
            .join(format!("build-{}.json", file_name(snapshot)));
        let _ = std::fs::remove_file(root);
        let _ = std::fs::remove_file(self.meta_path(snapshot));
    }

    fn meta_path(&self, snapshot: &str) -> PathBuf {
        self.dir
            .join("snapshots")
            .join(format!("{}.json", file_name(snapshot)))
    }

    pub fn meta(&self, snapshot: &str) -> Option<SnapshotMeta> {
        let bytes = std::fs::read(self.meta_path(snapshot)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes a snapshot's record and its GC root.
    pub fn put_meta(&self, snapshot: &str, meta: &SnapshotMeta) -> Result<(), String> {
        let mut digests: Vec<&str> = meta
            .produced
            .iter()
            .map(|p| p.blob.digest.as_str())
            .collect();
        if let Some(o) = &meta.origin {
            digests.push(&o.digest);
        }
        if !digests.is_empty() {
            let root = serde_json::to_vec(&RootFile { digests }).map_err(|e| e.to_string())?;
            let path = self
                .root
                .join(rbuild_exporter::gc::ROOTS_DIR)
                .join(format!("build-{}.json", file_name(snapshot)));
            write_atomic(&path, &root)?;
        }
        let bytes = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
        write_atomic(&self.meta_path(snapshot), &bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_meta_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        assert_eq!(st.get("sha256:ab"), None);
        st.put("sha256:ab", "build-1").unwrap();
        assert_eq!(
            State::open(dir.path()).unwrap().get("sha256:ab").as_deref(),
            Some("build-1")
        );
        let meta = SnapshotMeta {
            created: "2024-01-01T00:00:00Z".into(),
            empty: false,
            origin: Some(BlobRef {
                digest: "sha256:cd".into(),
                media_type: "x".into(),
                diff_id: "sha256:ef".into(),
                size: 3,
            }),
            produced: Vec::new(),
        };
        st.put_meta("layer-1", &meta).unwrap();
        assert_eq!(st.meta("layer-1"), Some(meta));
        let root = std::fs::read_to_string(dir.path().join("roots/build-layer-1.json")).unwrap();
        assert_eq!(root, r#"{"digests":["sha256:cd"]}"#);
    }
}
