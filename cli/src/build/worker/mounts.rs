//! Guards for what a step sets up on the host: mount points (unmounted and removed on
//! drop), active snapshots (removed on drop unless committed), throwaway writable
//! overlays, and the read-only views of inputs.

use std::path::{Path, PathBuf};

use rbuild_executor::snapshot::{self, Mounts, Snapshotter};
use rbuild_solver::{ResultRef, WorkerError};

use super::state::SnapshotMeta;
use super::{Inner, werr};

/// A directory under `mnt-v1/` that something may be mounted on; on drop, unmounted (when
/// mounted) and removed. Never removed recursively: a failed unmount leaves it in place.
#[derive(Debug)]
pub struct MountGuard {
    path: PathBuf,
    mounted: bool,
}

impl MountGuard {
    pub fn create(path: &Path) -> Result<MountGuard, WorkerError> {
        std::fs::create_dir(path).map_err(|e| werr(format!("mkdir {}: {e}", path.display())))?;
        Ok(MountGuard {
            path: path.to_path_buf(),
            mounted: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mounts `mounts` here (the snapshotter shortens long lowerdir lists).
    pub fn mount(&mut self, sn: &Snapshotter, mounts: &Mounts) -> Result<(), WorkerError> {
        sn.mount(mounts, &self.path)
            .map_err(|e| werr(format!("mount {}: {e}", self.path.display())))?;
        self.mounted = true;
        Ok(())
    }

    /// Mounts an overlay without the snapshotter (throwaway writable layers).
    pub fn mount_raw(&mut self, mounts: &Mounts) -> Result<(), WorkerError> {
        snapshot::mount(mounts, &self.path, None)
            .map_err(|e| werr(format!("mount {}: {e}", self.path.display())))?;
        self.mounted = true;
        Ok(())
    }

    /// Mounts a small private tmpfs here (mode 0700): a step's secret files and ssh agent
    /// sockets, never on disk.
    pub fn mount_tmpfs(&mut self) -> Result<(), WorkerError> {
        use rustix::mount::MountFlags as F;
        rustix::mount::mount(
            "tmpfs",
            &self.path,
            "tmpfs",
            F::NOSUID | F::NODEV | F::NOEXEC,
            c"mode=0700,size=16m",
        )
        .map_err(|e| werr(format!("mount tmpfs on {}: {e}", self.path.display())))?;
        self.mounted = true;
        Ok(())
    }

    /// Unmounts now (reporting errors); the directory is removed on drop.
    pub fn unmount(&mut self) -> Result<(), WorkerError> {
        if self.mounted {
            snapshot::unmount(&self.path)
                .map_err(|e| werr(format!("unmount {}: {e}", self.path.display())))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted && snapshot::unmount(&self.path).is_err() {
            return;
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Unmounts and removes mount points of processes that are gone (a killed build).
pub fn clean_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let pid = name.split('-').next().unwrap_or("");
        if pid.is_empty() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let path = entry.path();
        // Overlay upper/work dirs of throwaway layers live in `<name>-rw`; mount points
        // are plain directories: unmount (may fail: not mounted), then remove if empty.
        let _ = snapshot::unmount(&path);
        if name.ends_with("-rw") {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// An active snapshot; removed on drop unless committed.
#[derive(Debug)]
pub struct Active<'a> {
    pub sn: &'a Snapshotter,
    pub key: String,
    committed: bool,
}

impl<'a> Active<'a> {
    pub fn prepare(
        sn: &'a Snapshotter,
        key: String,
        parent: Option<&str>,
    ) -> Result<(Active<'a>, Mounts), WorkerError> {
        let mounts = sn
            .prepare(&key, parent)
            .map_err(|e| werr(format!("prepare snapshot: {e}")))?;
        Ok((
            Active {
                sn,
                key,
                committed: false,
            },
            mounts,
        ))
    }

    /// Whether the snapshot changed nothing (call after unmounting).
    pub fn is_empty(&self) -> Result<bool, WorkerError> {
        let dir = self
            .sn
            .diff_dir(&self.key)
            .map_err(|e| werr(format!("snapshot diff: {e}")))?;
        let mut entries =
            std::fs::read_dir(&dir).map_err(|e| werr(format!("{}: {e}", dir.display())))?;
        Ok(entries.next().is_none())
    }

    /// Removes directories overlayfs copied up without changing them (a mount stub made
    /// and removed in `/etc`, a file created and deleted): empty, not opaque, and with the
    /// mode, owner and mtime of the same directory in `lower` (the parent's view), so the
    /// layer holds only real changes, as BuildKit's overlay differ does. Unmount first.
    pub fn prune_unchanged_dirs(&self, lower: &Path) -> Result<(), WorkerError> {
        if self.sn.backend() != rbuild_executor::snapshot::Backend::Overlay {
            return Ok(());
        }
        let upper = self
            .sn
            .diff_dir(&self.key)
            .map_err(|e| werr(format!("snapshot diff: {e}")))?;
        prune_dir(&upper, lower, Path::new(""));
        Ok(())
    }

    /// Commits as `name` (unmount first).
    pub fn commit(mut self, name: &str) -> Result<(), WorkerError> {
        self.sn
            .commit(name, &self.key)
            .map_err(|e| werr(format!("commit snapshot: {e}")))?;
        self.committed = true;
        Ok(())
    }
}

/// Prunes `upper/rel` bottom-up; returns whether it was removed.
fn prune_dir(upper: &Path, lower: &Path, rel: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let dir = upper.join(rel);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    let mut left = 0usize;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !(is_dir && prune_dir(upper, lower, &rel.join(entry.file_name()))) {
            left += 1;
        }
    }
    if left > 0 || rel.as_os_str().is_empty() {
        return false;
    }
    let mut buf = [0u8; 8];
    if rustix::fs::lgetxattr(&dir, "trusted.overlay.opaque", &mut buf).is_ok() {
        return false;
    }
    let (Ok(u), Ok(l)) = (
        std::fs::symlink_metadata(&dir),
        std::fs::symlink_metadata(lower.join(rel)),
    ) else {
        return false;
    };
    let same = l.is_dir()
        && u.mode() == l.mode()
        && u.uid() == l.uid()
        && u.gid() == l.gid()
        && u.mtime() == l.mtime()
        && u.mtime_nsec() == l.mtime_nsec();
    same && std::fs::remove_dir(&dir).is_ok()
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.sn.remove(&self.key);
        }
    }
}

/// A read-only view of an input: a directory to read from, mounted when needed.
#[derive(Debug)]
pub struct View {
    dir: PathBuf,
    _mount: Option<MountGuard>,
}

impl View {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A plain directory (the context, or a single-layer snapshot's own dir).
    pub fn plain(dir: PathBuf) -> View {
        View { dir, _mount: None }
    }

    /// The root filesystem of committed snapshot `key`.
    pub fn snapshot(
        sn: &Snapshotter,
        key: &str,
        mount_point: impl FnOnce() -> Result<MountGuard, WorkerError>,
    ) -> Result<View, WorkerError> {
        let mounts = sn
            .mounts(key)
            .map_err(|e| werr(format!("snapshot {key}: {e}")))?;
        match mounts {
            Mounts::Bind { source, .. } => Ok(View::plain(source)),
            overlay => {
                let mut guard = mount_point()?;
                guard.mount(sn, &overlay)?;
                Ok(View {
                    dir: guard.path().to_path_buf(),
                    _mount: Some(guard),
                })
            }
        }
    }
}

/// A writable overlay over `lower` whose changes are thrown away (`RUN --mount=type=bind,rw`).
#[derive(Debug)]
pub struct Throwaway {
    // Field order matters: unmount before the upper dir is deleted.
    mount: MountGuard,
    scratch: PathBuf,
}

impl Throwaway {
    pub fn new(lower: &Path, mount: MountGuard) -> Result<Throwaway, WorkerError> {
        let scratch = PathBuf::from(format!("{}-rw", mount.path().display()));
        let (upper, work) = (scratch.join("upper"), scratch.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).map_err(|e| werr(format!("{}: {e}", d.display())))?;
        }
        let mut t = Throwaway { mount, scratch };
        t.mount.mount_raw(&Mounts::Overlay {
            lowerdirs: vec![lower.to_path_buf()],
            upperdir: Some(upper),
            workdir: Some(work),
        })?;
        Ok(t)
    }

    pub fn dir(&self) -> &Path {
        self.mount.path()
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if self.mount.unmount().is_ok() {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

/// Ends a RUN or file step: drops directories overlayfs copied up unchanged (against the
/// parent's view), commits the active snapshot as `name` and records its metadata.
pub fn finish_step(
    inner: &Inner,
    active: Active<'_>,
    parent: Option<&str>,
    name: &str,
) -> Result<ResultRef, WorkerError> {
    if let Some(parent) = parent {
        let lower = View::snapshot(&inner.snapshotter, parent, || inner.mount_point())?;
        active.prune_unchanged_dirs(lower.dir())?;
    }
    let empty = active.is_empty()?;
    active.commit(name)?;
    let meta = SnapshotMeta {
        created: rbuild_exporter::images::now_rfc3339(),
        empty,
        ..SnapshotMeta::default()
    };
    inner
        .state
        .put_meta(name, &meta)
        .map_err(WorkerError::new)?;
    Ok(ResultRef(name.to_string()))
}
