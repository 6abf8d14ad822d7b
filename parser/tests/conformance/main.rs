//! The parser's one integration-test binary: BuildKit's conformance corpora (read from
//! `../shared/corpora`, or `$RBUILD_CORPORA`), the real-world Dockerfiles, and the
//! golden files under `testdata/parser/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod buildkit;
mod golden;
mod lint;
mod properties;
mod realworld;
mod shell;

use std::path::PathBuf;

/// The shared conformance corpora directory.
pub fn corpora() -> PathBuf {
    match std::env::var_os("RBUILD_CORPORA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"),
    }
}

/// The workspace's `testdata/` directory.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Sorted subdirectories of `dir`.
pub fn case_dirs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
