//! The crate's one error type. Every variant carries what it was working on (a path, a
//! snapshot key, a user spec) so messages read without the call site.

use std::io;
use std::path::PathBuf;

/// Errors of the executor: snapshots, the sandbox, cgroups, user lookup and file ops.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on `path`.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A raw system call failed (mount, unshare, pivot_root, ...).
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// A process with a deadline ([`crate::exec_capture`]) outlived it and was terminated.
    #[error("the process exceeded its timeout and was terminated")]
    TimedOut,
    /// Snapshot `key` does not exist.
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// Snapshot `key` exists already.
    #[error("snapshot {0:?} already exists")]
    SnapshotExists(String),
    /// The snapshot is of the wrong kind for the operation (e.g. committing a committed one).
    #[error("snapshot {key:?} is {actual}, expected {expected}")]
    SnapshotKind {
        key: String,
        actual: &'static str,
        expected: &'static str,
    },
    /// The snapshot still has children and cannot be removed.
    #[error("snapshot {0:?} has dependent snapshots")]
    SnapshotInUse(String),
    /// A snapshot's metadata file cannot be read or written.
    #[error("snapshot metadata {}: {source}", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot key that cannot be used (empty, too long).
    #[error("invalid snapshot key {0:?}")]
    InvalidKey(String),
    /// `USER` names a user or group not present in the rootfs.
    #[error("user {spec:?}: {reason}")]
    User { spec: String, reason: String },
    /// The process spec is not runnable (empty argv, relative rootfs, bad mount).
    #[error("invalid process spec: {0}")]
    InvalidSpec(String),
    /// Creating, configuring or removing a cgroup failed.
    #[error("cgroup {}: {source}", path.display())]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A seccomp profile that cannot be read, checked or compiled.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// The sandbox init failed before the user's command started.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Container networking failed: netns, bridge, veth, address, route, firewall rule, IP
    /// allocation or port proxy (`op` says which, with the object it worked on).
    #[error("network: {op}: {reason}")]
    Network { op: String, reason: String },
    // ---- fileop (COPY/ADD) and context hashing ----
    /// A COPY/ADD source (or a context selection) does not exist. `path` is root-relative.
    #[error("{path:?}: not found")]
    NotFound { path: String },
    /// A wildcard source matched nothing (the classic builder's message).
    #[error("no source files were specified ({pattern:?} matched nothing)")]
    NoSourceFiles { pattern: String },
    /// Several sources into a destination that is not a directory.
    #[error(
        "When using {instruction} with more than one source file, the destination must be a directory and end with a /"
    )]
    DestNotDirectory { instruction: &'static str },
    /// A source path climbs out of its root with `..`.
    #[error("forbidden path outside the build context: {path}")]
    PathEscape { path: String },
    /// A symlink on a source path points outside the build context.
    #[error("symlink {path} points outside the build context (to {target})")]
    SymlinkEscape { path: String, target: String },
    /// Symlink resolution did not end (ELOOP).
    #[error("too many levels of symbolic links resolving {path}")]
    SymlinkLoop { path: String },
    /// A file would replace a directory at `path`.
    #[error("cannot replace to directory {path} with file")]
    ReplaceDirectory { path: String },
    /// A directory's contents would go below a non-directory.
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory { path: String },
    /// A source entry of a kind COPY cannot copy (a socket).
    #[error("unsupported file type of {path}")]
    UnsupportedFile { path: String },
    /// A `--chown`, `--chmod`, glob or ignore pattern that cannot be used.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// An archive ADD extracts cannot be (safely) extracted.
    #[error("archive {archive}: entry {entry:?}: {reason}")]
    Archive {
        archive: String,
        entry: String,
        reason: String,
    },
    /// `ADD --checksum` did not match.
    #[error("digest mismatch for {path}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Network`] for `op`.
    pub fn network(op: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Network {
            op: op.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Sys`] for syscall `op`.
    pub fn sys(op: impl Into<String>, source: nix::errno::Errno) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
