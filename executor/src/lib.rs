//! rbuild's executor: overlayfs snapshots (prepare/view/commit/remove), the
//! namespaced, cgroup-limited sandbox that runs `RUN` steps and `rbuild run`
//! containers, and the diff of a step's upper directory. All `unsafe` code and
//! raw syscalls of the project live in this crate's `sys` module.

pub mod error;

pub use error::{Error, Result};
