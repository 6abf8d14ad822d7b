//! rbuild's executor: overlayfs snapshots (prepare/view/commit/remove), the
//! namespaced, cgroup-limited sandbox that runs `RUN` steps and `rbuild run`
//! containers, and the diff of a step's upper directory. All `unsafe` code and
//! raw syscalls of the project live in this crate's `sys` module.

pub mod cgroup;
pub mod context;
pub mod error;
pub mod fileop;
pub mod net;
pub mod process;
pub mod sandbox;
mod sandbox_exec;
mod sandbox_init;
mod sandbox_rootfs;
pub mod seccomp;
pub mod security;
pub mod snapshot;
mod snapshot_fs;
mod sys;
pub mod tty;
pub mod user;

pub use error::{Error, Result};
pub use sandbox::{ExitStatus, MountSpec, NetworkMode, ProcessSpec, RunOptions, Stdio, run};
pub use sandbox_exec::{Captured, ExecSpec, exec_capture, exec_in, exec_in_with};
pub use sandbox_init::sandbox_init_entry;
pub use snapshot::{Mounts, Snapshotter};
