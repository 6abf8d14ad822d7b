//! Persistent named network namespaces, like `ip netns add`: a namespace kept alive by a bind
//! mount of its `ns/net` file onto `<dir>/<name>`, so it outlives the thread that made it and
//! the sandbox can join it by path ([`crate::NetworkMode::Join`]).
//!
//! How it is made: rbuild is multi-threaded (tokio), so neither `fork` nor an `unshare` of the
//! whole process is an option. `unshare(CLONE_NEWNET)` only moves the *calling thread*, so a
//! dedicated scoped `std::thread` unshares, bind-mounts its own `/proc/thread-self/ns/net`
//! onto the target file and exits; the mount keeps the namespace alive. Running code inside a
//! namespace ([`NetNs::run`]) works the same way: a fresh thread `setns`es into it, runs the
//! closure and exits, so no pooled thread is ever left in a foreign namespace. Sockets made
//! on that thread stay in the namespace wherever they are used afterwards.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::sys;

/// A named, persistent network namespace (a bind mount of an nsfs file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Creates the namespace `<dir>/<name>` (`dir` is created when missing). Fails when the
    /// file is already a live namespace.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidArgument {
                what: "netns name",
                value: name.to_string(),
                reason: "must be a plain file name".into(),
            });
        }
        fs::create_dir_all(dir).ctx("create", dir)?;
        let path = dir.join(name);
        if sys::is_netns_file(&path) {
            return Err(Error::network(
                format!("create netns {}", path.display()),
                "already exists",
            ));
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx("create", &path)?;
        let made = std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                sys::unshare_net_this_thread()?;
                sys::bind_mount(sys::thread_netns_path(), &path, false, false)
            })
            .join()
            .unwrap_or_else(|_| Err(Error::network("create netns", "thread panicked")))
        });
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(NetNs { path })
    }

    /// The namespace at `path` if it is a live one (e.g. to tear down after a restart).
    pub fn open(path: impl Into<PathBuf>) -> Option<NetNs> {
        let path = path.into();
        sys::is_netns_file(&path).then_some(NetNs { path })
    }

    /// The bind mount's path: what [`crate::NetworkMode::Join`] takes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a dedicated thread inside the namespace and returns its result. Sockets
    /// `f` creates belong to the namespace and may be returned and used from any thread.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send,
        T: Send,
    {
        let file = fs::File::open(&self.path).ctx("open", &self.path)?;
        std::thread::scope(|s| {
            s.spawn(move || {
                sys::setns_net_this_thread(&file, &self.path)?;
                drop(file);
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::network(
                    format!("run in netns {}", self.path.display()),
                    "thread panicked",
                ))
            })
        })
    }

    /// Unmounts and removes the namespace file. The namespace itself goes away once no
    /// process or open descriptor holds it (its veth peers are destroyed then).
    pub fn remove(self) -> Result<()> {
        remove_path(&self.path)
    }
}

/// Unmounts (when mounted) and unlinks a namespace file; a missing file is fine.
pub(crate) fn remove_path(path: &Path) -> Result<()> {
    // Stacked mounts (a namespace created twice over a crash) come off one at a time.
    for _ in 0..8 {
        if !sys::is_netns_file(path) {
            break;
        }
        sys::unmount(path, true)?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}
