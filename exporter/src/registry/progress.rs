//! Progress reporting of pulls and pushes, Docker style: one line (or bar)
//! per blob, identified by the first 12 hex digits of its digest.

use crate::digest::Digest;

/// What happened to one blob, or to the whole operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A blob transfer is about to start (`Pulling fs layer`, `Preparing`).
    Start {
        digest: Digest,
        size: u64,
        status: String,
    },
    /// Bytes moved so far for a blob (total, not increment).
    Bytes {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// A blob finished (`Pull complete`, `Already exists`, `Pushed`,
    /// `Layer already exists`, `Mounted from …`).
    Done { digest: Digest, status: String },
    /// A blob's transfer failed and is being retried.
    Retry {
        digest: Digest,
        attempt: u32,
        reason: String,
    },
    /// A line about the whole operation.
    Message(String),
}

/// A sink for progress events; must be cheap and never block for long.
pub trait Progress: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// Docker's short blob id: the first 12 hex digits.
pub fn short_id(digest: &Digest) -> &str {
    let hex = digest.hex();
    &hex[..hex.len().min(12)]
}
