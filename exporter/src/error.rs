//! The one error type of the image side. Every variant carries its context
//! (path, digest, reference, registry) so the message stands on its own.

use std::path::PathBuf;

use crate::digest::{Digest, DigestParseError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestParseError),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    // Add variants below as modules need them (one line per idea, with context fields).
    // -- local image side: store, index, references, unpack, formats --
    #[error("blob {digest} not found in the content store")]
    BlobNotFound { digest: Digest },
    #[error("content {digest} has size {actual}, expected {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid reference format {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("no such image: {reference}")]
    ImageNotFound { reference: String },
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {reason}")]
    InvalidImage { what: String, reason: String },
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("no image for platform {wanted} in {reference}; available: {available}")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// An I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
