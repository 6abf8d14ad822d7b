//! The solver's one integration-test binary: lowering (golden files under
//! `testdata/solver/<case>/`, `RBUILD_BLESS=1` rewrites them), cache keys and their
//! explanations, and the scheduler, all against a fake worker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_keys;
mod fake;
mod golden;
mod lowering;
mod scheduling;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_solver::{BuildGraph, BuildOptions, Error};

pub use fake::{Call, FakeWorker, Recorder};

/// The workspace's `testdata/` directory.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Compares `actual` with the file at `path`, or rewrites it when `RBUILD_BLESS` is set.
pub fn compare_or_bless(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("RBUILD_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{}:\n--- expected\n{expected}\n--- got\n{actual}",
            path.display()
        ));
    }
}

pub fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parses and lowers `text` with `opts` against `worker`.
pub async fn lower_with(
    text: &str,
    opts: &BuildOptions,
    worker: &FakeWorker,
) -> Result<BuildGraph, Error> {
    let df = rbuild_parser::parse("Dockerfile", text).unwrap();
    rbuild_solver::lower(&df, opts, worker).await
}

/// [`lower_with`] with default options; panics on errors.
pub async fn lower(text: &str, worker: &FakeWorker) -> BuildGraph {
    lower_with(text, &BuildOptions::default(), worker)
        .await
        .unwrap_or_else(|e| panic!("{}", e.render()))
}
