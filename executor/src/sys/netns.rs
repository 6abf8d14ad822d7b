//! Network-namespace system calls for `net::netns`: unsharing and entering a network
//! namespace on the *calling thread only*.
//!
//! `unshare(CLONE_NEWNET)` and `setns(fd, CLONE_NEWNET)` change the namespace of the calling
//! thread, not of the process, so they are sound in the multi-threaded rbuild process as long
//! as the thread that calls them is a dedicated one that exits afterwards (no other code ever
//! runs on it in the wrong namespace). `net::netns` guarantees that: every caller is a
//! scoped `std::thread` spawned for the purpose.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// Moves the calling thread into a new, empty network namespace.
pub fn unshare_net_this_thread() -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("unshare(CLONE_NEWNET)", e))
}

/// Moves the calling thread into the network namespace `ns` (an open `/proc/*/ns/net` file
/// or a bind mount of one); `what` names it in errors.
pub fn setns_net_this_thread(ns: impl AsFd, what: &Path) -> Result<()> {
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys(format!("setns {}", what.display()), e))
}

/// The calling thread's own network namespace file (`/proc/thread-self/ns/net`).
pub fn thread_netns_path() -> &'static Path {
    Path::new("/proc/thread-self/ns/net")
}

/// True when `path` is a network-namespace file (a live bind mount of one): its filesystem
/// is nsfs.
pub fn is_netns_file(path: &Path) -> bool {
    const NSFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x6e73_6673);
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == NSFS_MAGIC)
        .unwrap_or(false)
}
