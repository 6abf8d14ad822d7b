//! rbuild's executor: overlayfs snapshots (prepare/view/commit/remove), the
//! namespaced, cgroup-limited sandbox that runs `RUN` steps and `rbuild run`
//! containers, and the diff of a step's upper directory. All `unsafe` code and
//! raw syscalls of the project live in this crate's `sys` module.
//!
//! Empty for now: it lands with the build engine and `rbuild run` issues.
