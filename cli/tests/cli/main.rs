//! The `rbuild` binary's one integration-test binary: commands run as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod check;
mod explain;
mod images;
mod import;
mod run;
mod secrets;
mod vm_cgroup2;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `rbuild` with `args` and an isolated root.
pub fn rbuild(args: &[&str]) -> Output {
    let root = std::env::temp_dir().join(format!("rbuild-cli-test-{}", std::process::id()));
    rbuild_at(&root, args)
}

/// Runs `rbuild` with `args` and the store root `root`.
pub fn rbuild_at(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("RBUILD_ROOT", root)
        .output()
        .expect("rbuild runs")
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
