//! The on-disk record of file content hashes: path → (dev, inode, size, mtime, ctime, mode)
//! → sha256, one file per context directory, so unchanged files are not read again.
//!
//! Format (little endian): the magic `RBCTX\x01\0\0`, a u64 count, then per entry a u32 path
//! length, the path bytes (relative to the context, `/`-separated), dev u64, inode u64,
//! size u64, mtime_ns i64, ctime_ns i64, mode u32 and the 32-byte sha256. It is written
//! atomically (temporary file, fsync, rename, fsync of the directory). A file that does not
//! parse is treated as empty: the cache can only make hashing faster, never change a result.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

const MAGIC: &[u8; 8] = b"RBCTX\x01\0\0";

/// What a file looked like when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub stamp: Stamp,
    pub sha256: [u8; 32],
}

/// The loaded record of one context directory.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub entries: HashMap<Box<[u8]>, Entry>,
}

impl Cache {
    /// Loads `path`; a missing or unreadable file is an empty cache.
    pub fn load(path: &Path) -> Self {
        let Ok(bytes) = std::fs::read(path) else {
            return Cache::default();
        };
        parse(&bytes).unwrap_or_default()
    }

    /// Writes the cache to `path` atomically.
    pub fn store(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut buf = Vec::with_capacity(16 + self.entries.len() * 96);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        let mut keys: Vec<&Box<[u8]>> = self.entries.keys().collect();
        keys.sort();
        for key in keys {
            let Some(e) = self.entries.get(key) else {
                continue;
            };
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            let s = &e.stamp;
            for v in [s.dev, s.ino, s.size] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            for v in [s.mtime_ns, s.ctime_ns] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            buf.extend_from_slice(&s.mode.to_le_bytes());
            buf.extend_from_slice(&e.sha256);
        }
        let tmp: PathBuf = {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".tmp{}", std::process::id()));
            name.into()
        };
        let mut file = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        file.write_all(&buf).ctx("write", &tmp)?;
        file.sync_all().ctx("fsync", &tmp)?;
        drop(file);
        std::fs::rename(&tmp, path).ctx("rename", path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: the rename is durable once the directory is synced.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Option<Cache> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let count = r.u64()?;
    let mut entries = HashMap::with_capacity(usize::try_from(count).ok()?.min(1 << 24));
    for _ in 0..count {
        let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        let key: Box<[u8]> = r.take(len)?.into();
        let stamp = Stamp {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            mode: u32::from_le_bytes(r.take(4)?.try_into().ok()?),
        };
        let sha256: [u8; 32] = r.take(32)?.try_into().ok()?;
        entries.insert(key, Entry { stamp, sha256 });
    }
    (r.pos == bytes.len()).then_some(Cache { entries })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() -> Result<()> {
        let dir = tempfile::tempdir().ctx("tempdir", "/tmp")?;
        let path = dir.path().join("c.bin");
        let mut cache = Cache::default();
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: -4,
            ctime_ns: 5,
            mode: 0o100644,
        };
        let key: Box<[u8]> = b"a/b".as_slice().into();
        cache.entries.insert(
            key.clone(),
            Entry {
                stamp,
                sha256: [7; 32],
            },
        );
        cache.store(&path)?;
        let loaded = Cache::load(&path);
        let entry = loaded.entries.get(&key).map(|e| (e.stamp, e.sha256));
        assert_eq!(entry, Some((stamp, [7; 32])));
        std::fs::write(&path, b"RBCTX\x01\0\0garbage").ctx("write", &path)?;
        assert!(Cache::load(&path).entries.is_empty());
        Ok(())
    }
}
