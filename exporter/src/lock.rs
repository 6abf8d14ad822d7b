//! Advisory file locks (`flock(2)`) shared between rbuild processes that use
//! the same root. A lock is released when its guard is dropped (or when the
//! process dies: the kernel drops flocks with the last open file description).
//!
//! Locks are per open file description, so one process can hold several shared
//! locks on the same file; it must not ask for an exclusive lock on a file it
//! already holds a shared lock on (that would wait forever).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// A held lock on a lock file; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Waits for an exclusive lock on `path` (created if missing).
    pub fn exclusive(path: impl AsRef<Path>) -> Result<FileLock> {
        Self::take(path.as_ref(), FlockOperation::LockExclusive)
    }

    /// Waits for a shared lock on `path` (created if missing).
    pub fn shared(path: impl AsRef<Path>) -> Result<FileLock> {
        Self::take(path.as_ref(), FlockOperation::LockShared)
    }

    /// Takes an exclusive lock if it is free now; `None` when someone holds it.
    pub fn try_exclusive(path: impl AsRef<Path>) -> Result<Option<FileLock>> {
        let path = path.as_ref();
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_path_buf(),
            })),
            Err(e) if e == Errno::WOULDBLOCK => Ok(None),
            Err(e) => Err(Error::io(path, e.into())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(path: &Path, op: FlockOperation) -> Result<FileLock> {
        let file = open(path)?;
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                Err(e) if e == Errno::INTR => continue,
                Err(e) => return Err(Error::io(path, e.into())),
            }
        }
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.lock");
        let a = FileLock::shared(&p).unwrap();
        let b = FileLock::shared(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(a);
        drop(b);
        let x = FileLock::try_exclusive(&p).unwrap();
        assert!(x.is_some());
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
    }
}
