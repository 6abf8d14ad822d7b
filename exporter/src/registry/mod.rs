//! A client for the Docker Registry HTTP API v2 / OCI distribution spec.
//!
//! Written on `reqwest` + tokio rather than on the `oci-client` crate: rbuild
//! needs byte-exact manifests, blobs streamed into the store's verifying
//! [`BlobWriter`](crate::BlobWriter), HEAD/mount/chunked uploads, retries with
//! backoff, Docker credential helpers, per-scope token caching, per-layer
//! progress and the registry's error codes in messages, and it already has a
//! reference grammar (`crate::reference`); `oci-client` brings its own
//! reference type and covers only part of the rest.
//!
//! Pieces:
//! - [`auth`]: `WWW-Authenticate` challenges, Basic and Bearer token flows.
//! - [`credentials`]: `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers`).
//! - [`client`]: the HTTP side: endpoints, plain-HTTP policy, retries, errors.
//! - [`ops`]: manifest and blob operations on one repository.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod ops;
pub mod progress;
pub mod sources;

pub use client::{Registry, RegistryOptions, Repository, is_insecure, parse_error_body};
pub use credentials::{Credentials, DockerConfig};
pub use ops::RawManifest;
pub use progress::{NoProgress, Progress, ProgressEvent};

/// Media types of manifests and indexes this client accepts and pushes
/// (the constants are the crate's, in [`crate::media`]).
pub mod media {
    pub use crate::media::{
        DOCKER_MANIFEST, DOCKER_MANIFEST_LIST as DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, is_index,
        is_manifest,
    };

    /// The `Accept` header of a manifest GET: every type we can handle.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Layers that registries must not receive (Windows foreign layers).
    pub fn is_non_distributable(media_type: &str) -> bool {
        media_type.contains("foreign") || media_type.contains("nondistributable")
    }
}

/// The host that serves the registry API for a reference domain
/// (`docker.io` is served by `registry-1.docker.io`).
pub fn api_host(domain: &str) -> &str {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// The key Docker stores credentials for a reference domain under.
pub fn credential_key(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}
