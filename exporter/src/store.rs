//! The content-addressed blob store under the rbuild root.
//!
//! Layout (versioned so a later format can live beside this one):
//!
//! ```text
//! <root>/content-v1/blobs/sha256/<hex>   committed blobs, read-only
//! <root>/content-v1/blobs/sha512/<hex>
//! <root>/content-v1/ingest/              temp files of writes in progress
//! <root>/locks/gc.lock                   shared: writers (leases); exclusive: GC
//! ```
//!
//! Every write goes to a temp file in `ingest/` (same filesystem), is fsynced
//! and verified against the expected digest and size, and only then renamed
//! into `blobs/`, after which the directory is fsynced. A process killed at
//! any point leaves at worst a temp file in `ingest/`, which GC removes; a blob
//! path either does not exist or holds complete, verified content.
//!
//! Concurrency: writers hold a shared *lease* (flock on `locks/gc.lock`) for
//! as long as content they wrote is not yet reachable from the image index;
//! GC holds the exclusive lock, so it never deletes blobs of a pull, load or
//! build in progress, nor their temp files.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::lock::FileLock;

/// Name of the versioned content directory under the root.
pub const CONTENT_DIR: &str = "content-v1";

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// A handle on the blob store of one rbuild root. Cheap to clone; every
/// method goes to the filesystem, so handles in several processes agree.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    content: PathBuf,
}

/// A shared lease: while held, GC does not run, so blobs written under it
/// survive until the caller has made them reachable (e.g. tagged them).
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

impl Store {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        let content = root.join(CONTENT_DIR);
        for alg in ALGORITHMS {
            let d = content.join("blobs").join(alg.as_str());
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        for d in [content.join("ingest"), root.join("locks")] {
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(Store { root, content })
    }

    /// The rbuild root this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a lock file under `<root>/locks/`.
    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(name)
    }

    /// Takes a shared lease that keeps GC away (see the module docs).
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease {
            _lock: FileLock::shared(self.lock_path("gc.lock"))?,
        })
    }

    /// The exclusive GC lock: no lease and no blob write is in progress while held.
    pub(crate) fn gc_lock(&self) -> Result<FileLock> {
        FileLock::exclusive(self.lock_path("gc.lock"))
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.content.join("ingest")
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.content
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size in bytes of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) => Err(self.not_found_or(digest, &p, e)),
        }
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| self.not_found_or(digest, &p, e))
    }

    /// Reads a whole blob (for manifests and configs; stream layers with `open_blob`).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(|e| self.not_found_or(digest, &p, e))
    }

    /// Stores `data`, verifying it against `expected` when given; returns its digest.
    pub fn put_bytes(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let mut w = self.ingest(expected, Some(data.len() as u64))?;
        w.write_all(data)
            .map_err(|e| Error::io(w.temp_path().to_path_buf(), e))?;
        Ok(w.commit()?.0)
    }

    /// Streams `reader` into the store (see [`Store::ingest`]).
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.ingest(expected, expected_size)?;
        io::copy(reader, &mut w).map_err(|e| Error::io(w.temp_path().to_path_buf(), e))?;
        w.commit()
    }

    /// Starts a streaming write. The content is hashed with `expected`'s
    /// algorithm (sha256 when `None`). Nothing becomes visible until
    /// [`BlobWriter::commit`] has verified digest and size; dropping the
    /// writer uncommitted removes its temp file.
    pub fn ingest(
        &self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let lease = self.lease()?;
        let dir = self.ingest_dir();
        let tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        Ok(BlobWriter {
            out: Some(BufWriter::with_capacity(256 * 1024, tmp)),
            hasher: Hasher::new(algorithm),
            written: 0,
            expected: expected.cloned(),
            expected_size,
            store: self.clone(),
            _lease: lease,
        })
    }

    /// Deletes a blob; `Ok(false)` if it was not there. Callers other than GC
    /// should make sure nothing references it.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Every stored blob with its size, sorted by digest.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for alg in ALGORITHMS {
            let dir = self.content.join("blobs").join(alg.as_str());
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                // Anything that is not a well-formed digest is not ours: skip it.
                let Ok(d) = format!("{}:{name}", alg.as_str()).parse::<Digest>() else {
                    continue;
                };
                let len = entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path(), e))?
                    .len();
                out.push((d, len));
            }
        }
        out.sort();
        Ok(out)
    }

    fn not_found_or(&self, digest: &Digest, path: &Path, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::BlobNotFound {
                digest: digest.clone(),
            }
        } else {
            Error::io(path, e)
        }
    }
}

/// A blob being written; see [`Store::ingest`].
#[derive(Debug)]
pub struct BlobWriter {
    out: Option<BufWriter<tempfile::NamedTempFile>>,
    hasher: Hasher,
    written: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    store: Store,
    _lease: Lease,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The temp file's path (for error messages).
    pub fn temp_path(&self) -> &Path {
        match &self.out {
            Some(out) => out.get_ref().path(),
            None => Path::new(""),
        }
    }

    /// Flushes, fsyncs and verifies the content, then makes it visible under
    /// its digest. Returns the digest and size. On any error nothing becomes
    /// visible and the temp file is removed.
    pub fn commit(mut self) -> Result<(Digest, u64)> {
        let out = self.out.take().ok_or_else(|| Error::InvalidImage {
            what: "blob writer".into(),
            reason: "already committed".into(),
        })?;
        let tmp_path = out.get_ref().path().to_path_buf();
        let tmp = out
            .into_inner()
            .map_err(|e| Error::io(&tmp_path, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&tmp_path, e))?;
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(Algorithm::Sha256));
        let actual = hasher.finish();
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(size) = self.expected_size {
            if size != self.written {
                return Err(Error::SizeMismatch {
                    digest: actual.to_string(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        let target = self.store.blob_path(&actual);
        if target.is_file() {
            // Already there (verified when it was written); the temp file goes.
            return Ok((actual, self.written));
        }
        let mut perms = tmp
            .as_file()
            .metadata()
            .map_err(|e| Error::io(&tmp_path, e))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(&tmp_path, perms).map_err(|e| Error::io(&tmp_path, e))?;
        tmp.persist(&target)
            .map_err(|e| Error::io(&target, e.error))?;
        if let Some(dir) = target.parent() {
            sync_dir(dir)?;
        }
        Ok((actual, self.written))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        if let Some(limit) = self.expected_size {
            if self.written + buf.len() as u64 > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "content is longer than its expected size {limit}{}",
                        self.expected
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        let n = out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// fsyncs a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes `data` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(data)
        .map_err(|e| Error::io(tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path().to_path_buf(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ingest_is_empty(s: &Store) -> bool {
        fs::read_dir(s.ingest_dir()).unwrap().next().is_none()
    }

    #[test]
    fn put_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_bytes(b"hello", None).unwrap();
        assert_eq!(d, Digest::sha256(b"hello"));
        assert!(s.has_blob(&d));
        assert_eq!(s.blob_size(&d).unwrap(), 5);
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        assert_eq!(s.list_blobs().unwrap(), vec![(d.clone(), 5)]);
        // Same content again is a no-op.
        assert_eq!(s.put_bytes(b"hello", Some(&d)).unwrap(), d);
        assert!(s.delete(&d).unwrap());
        assert!(!s.delete(&d).unwrap());
        assert!(matches!(s.read_blob(&d), Err(Error::BlobNotFound { .. })));
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut w = s.ingest(None, None).unwrap();
        w.write_all(&[7u8; 100_000]).unwrap();
        assert!(w.temp_path().exists());
        drop(w);
        assert!(s.list_blobs().unwrap().is_empty());
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn wrong_digest_or_size_rejected_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let wrong = Digest::sha256(b"other");
        let err = s.put_bytes(b"content", Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!s.has_blob(&wrong));
        assert!(!s.has_blob(&Digest::sha256(b"content")));

        let mut w = s.ingest(None, Some(3)).unwrap();
        assert!(w.write_all(b"four").is_err());
        drop(w);
        let mut w = s.ingest(None, Some(10)).unwrap();
        w.write_all(b"short").unwrap();
        assert!(matches!(w.commit(), Err(Error::SizeMismatch { .. })));
        assert!(s.list_blobs().unwrap().is_empty());
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn sha512_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"x");
        let d = h.finish();
        assert_eq!(s.put_bytes(b"x", Some(&d)).unwrap(), d);
        assert!(s.blob_path(&d).to_string_lossy().contains("sha512"));
        assert_eq!(s.read_blob(&d).unwrap(), b"x");
    }

    #[test]
    fn concurrent_writers_of_same_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let want = Digest::sha256(&data);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (s, data, want) = (&s, &data, &want);
                scope.spawn(move || {
                    let mut w = s.ingest(Some(want), Some(data.len() as u64)).unwrap();
                    for chunk in data.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    assert_eq!(w.commit().unwrap().0, *want);
                });
            }
        });
        assert_eq!(s.read_blob(&want).unwrap(), data);
        assert_eq!(s.list_blobs().unwrap().len(), 1);
        assert!(ingest_is_empty(&s));
    }
}
