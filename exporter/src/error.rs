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
    #[error("No such image: {reference}")]
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
    #[error("{what} needs root: {reason}")]
    NeedsRoot { what: String, reason: String },
    /// A file of a directory tree that cannot go into a layer as it is.
    #[error("{path}: cannot be put in a layer: {reason}")]
    LayerSource { path: PathBuf, reason: String },
    // -- registry side: client, auth, credentials, pull, push --
    /// A registry answered with an error status; `detail` is ": CODE: message" from its body (or empty).
    #[error("{op}: {status}{detail}")]
    Registry {
        op: String,
        status: String,
        code: Option<String>,
        detail: String,
    },
    /// The registry could not be reached or the transfer broke off.
    #[error("{op}: {reason}")]
    RegistryTransport { op: String, reason: String },
    /// The registry sent something that breaks the protocol (bad header, oversized manifest, …).
    #[error("{op}: {reason}")]
    RegistryProtocol { op: String, reason: String },
    /// Docker's credential configuration (config.json or a credential helper) failed.
    #[error("credentials for {server}: {reason}")]
    Credentials { server: String, reason: String },
    /// An error with the operation it happened in (e.g. `pull localhost:5000/app:1: blob sha256:…`).
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
}

impl Error {
    /// Names the operation (`pull localhost:5000/app:1`) the error happened in, unless
    /// it already does: registry errors name it themselves.
    pub fn in_operation(self, operation: &str) -> Error {
        match self {
            e @ (Error::Registry { .. }
            | Error::RegistryTransport { .. }
            | Error::RegistryProtocol { .. }
            | Error::Context { .. }) => e,
            other => Error::Context {
                context: operation.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// An I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
