//! The exporter's one integration-test binary: real registries, real peers
//! (skopeo, umoci, podman/docker where installed), offline-made fixture images.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;
mod peers;
mod registry;
mod registry_harness;
mod store_formats;
