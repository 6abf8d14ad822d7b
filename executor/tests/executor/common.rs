//! Helpers shared by the executor's integration tests.

#![allow(dead_code)]

/// True when running as root; otherwise prints `skipped: <what> needs root` and returns false.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: {what} needs root");
        false
    }
}
