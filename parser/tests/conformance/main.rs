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

/// Compares `actual` with the expected file at `path`, or rewrites it when `RBUILD_BLESS`
/// is set (after a deliberate change; review the diff).
pub fn compare_or_bless(path: &std::path::Path, actual: &str, failures: &mut Vec<String>) {
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

/// The real-world Dockerfiles of the corpus, sorted (at least 261 of them).
pub fn realworld_files() -> Vec<PathBuf> {
    let dir = corpora().join("realworld");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "MANIFEST.tsv"))
        .collect();
    files.sort();
    assert!(files.len() >= 261, "corpus missing: {} files", files.len());
    files
}
