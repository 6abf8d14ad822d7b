//! `rbuild cp` and `rbuild export`: a container's files, running or not.
//!
//! A running container is read and written through `/proc/PID/root` (its own mount
//! namespace: volumes, binds and tmpfs mounts included); a stopped one's snapshot is mounted
//! for the duration (under `mnt-v1/`) and the container's lock (so it cannot start meanwhile), and its bind
//! mounts and volumes are reached through their host directories (tmpfs mounts are gone
//! with the container). `export` writes the container's root filesystem only (as docker's),
//! as one sorted tar by the exporter's tar writer. Paths are resolved inside the root
//! filesystem like a chroot, so a symlink cannot lead out of it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rbuild_executor::MountSpec;
use rbuild_executor::fileop::{self, CopySpec, Source, SourceKind};
use rbuild_executor::snapshot::{self, Mounts};
use rbuild_exporter::lock::FileLock;

use super::state::{Containers, Status};

#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// Archive mode: keep the files' uid/gid (default: root, as the caller)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Follow a symlink given as SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output (there is none)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// `CONTAINER:SRC_PATH`, a host path, or `-` (a tar stream on stdin)
    pub src: String,
    /// `CONTAINER:DEST_PATH`, a host path, or `-` (a tar stream on stdout)
    pub dest: String,
}

/// A container's files opened for `cp`/`export`.
struct Access {
    /// Where `/` of the container is.
    root: PathBuf,
    /// Bind mounts and volumes to follow by hand (stopped containers): (target, source).
    mounts: Vec<(String, PathBuf)>,
    mount_point: Option<PathBuf>,
    _lock: Option<FileLock>,
}

impl Drop for Access {
    fn drop(&mut self) {
        if let Some(p) = self.mount_point.take() {
            if snapshot::unmount(&p).is_ok() {
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}

impl Access {
    /// Opens container `id`'s files; `rootfs_only`: its root filesystem without the
    /// namespace's mounts (for `export`).
    fn open(
        root: &Path,
        containers: &Containers,
        id: &str,
        rootfs_only: bool,
    ) -> Result<Access, String> {
        let cfg = containers.config(id)?;
        let st = containers.state(id);
        if st.status == Status::Running {
            if let Some(pid) = st.pid
                && !rootfs_only
            {
                return Ok(Access {
                    root: PathBuf::from(format!("/proc/{pid}/root")),
                    mounts: Vec::new(),
                    mount_point: None,
                    _lock: None,
                });
            }
            let rootfs = containers.rootfs(id);
            return Ok(Access {
                root: rootfs,
                mounts: Vec::new(),
                mount_point: None,
                _lock: None,
            });
        }
        let lock = containers.lock(id)?;
        let sn = super::runtime::snapshotter(root)?;
        let mounts = sn
            .mounts(&cfg.snapshot)
            .map_err(|e| format!("container filesystem: {e}"))?;
        let with_volumes = super::volumes::with_volume_mounts(root, &cfg)?;
        let binds = if rootfs_only {
            Vec::new()
        } else {
            with_volumes
                .mounts
                .iter()
                .filter_map(|m| match m {
                    MountSpec::Bind { source, target, .. } => {
                        Some((target.trim_matches('/').to_string(), source.clone()))
                    }
                    MountSpec::Tmpfs { .. } => None,
                })
                .collect()
        };
        let (dir, mount_point) = match mounts {
            Mounts::Bind { source, .. } => (source, None),
            overlay => {
                // Under the build worker's `mnt-v1/`, named `<pid>-...`: the next build or
                // run cleans it up if this process dies with it mounted.
                let p = root.join("mnt-v1").join(format!(
                    "{}-cp-{}",
                    std::process::id(),
                    &id[..12.min(id.len())]
                ));
                std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
                if let Err(e) = sn.mount(&overlay, &p) {
                    let _ = std::fs::remove_dir(&p);
                    return Err(format!("mount {}: {e}", p.display()));
                }
                (p.clone(), Some(p))
            }
        };
        Ok(Access {
            root: dir,
            mounts: binds,
            mount_point,
            _lock: Some(lock),
        })
    }

    /// `path` in the container as (root of the file system holding it, path below that
    /// root), symlinks resolved inside the container.
    fn locate(&self, path: &str) -> Result<(PathBuf, String), String> {
        let resolved = fileop::resolve_in_root(&self.root, path, false)
            .map_err(|e| format!("resolve {path}: {e}"))?;
        let rel = resolved
            .strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut best: Option<&(String, PathBuf)> = None;
        for m in &self.mounts {
            let under = m.0.is_empty() || rel == m.0 || rel.starts_with(&format!("{}/", m.0));
            if under && best.is_none_or(|b| b.0.len() < m.0.len()) {
                best = Some(m);
            }
        }
        let trailing = if path.ends_with("/.") {
            "/."
        } else if path.ends_with('/') {
            "/"
        } else {
            ""
        };
        Ok(match best {
            Some((target, source)) => {
                let rest = rel[target.len()..].trim_start_matches('/');
                (source.clone(), format!("/{rest}{trailing}"))
            }
            None => (self.root.clone(), format!("/{rel}{trailing}")),
        })
    }
}

/// `CONTAINER:PATH` (a host path has no colon before its first slash).
fn split_container(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn base_name(path: &str) -> String {
    let t = path.trim_end_matches("/.").trim_end_matches('/');
    t.rsplit('/').next().unwrap_or("").to_string()
}

/// Copies `src` (a path below `src_root`) to `dest` (below `dest_root`) by docker cp's
/// rules: a directory is copied as itself into an existing directory (its contents with a
/// trailing `/.`), or becomes `dest` when that does not exist; a file goes into an existing
/// directory or becomes `dest`.
fn copy_path(
    src_root: &Path,
    src: &str,
    dest_root: &Path,
    dest: &str,
    archive: bool,
    follow: bool,
) -> Result<(), String> {
    let src_abs = fileop::resolve_in_root(src_root, src, follow || src.ends_with("/."))
        .map_err(|e| format!("{src}: {e}"))?;
    let meta = std::fs::symlink_metadata(&src_abs)
        .map_err(|_| format!("Could not find the file {src}"))?;
    let dest_abs =
        fileop::resolve_in_root(dest_root, dest, true).map_err(|e| format!("{dest}: {e}"))?;
    let dest_meta = std::fs::metadata(&dest_abs).ok();
    if meta.file_type().is_symlink() {
        // Without -L the link itself is copied (as docker does).
        let link = std::fs::read_link(&src_abs).map_err(|e| format!("readlink {src}: {e}"))?;
        let path = match &dest_meta {
            Some(d) if d.is_dir() => dest_abs.join(base_name(src)),
            _ => dest_abs,
        };
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&path).map_err(|e| format!("replace {dest}: {e}"))?;
        }
        std::os::unix::fs::symlink(&link, &path)
            .map_err(|e| format!("copy {src} to {dest}: {e}"))?;
        return Ok(());
    }
    let target = if meta.is_dir() {
        match &dest_meta {
            Some(d) if !d.is_dir() => {
                return Err(format!("cannot copy a directory to a file: {dest}"));
            }
            Some(_) if !src.ends_with("/.") => {
                format!("{}/{}/", dest.trim_end_matches('/'), base_name(src))
            }
            _ => format!("{}/", dest.trim_end_matches('/')),
        }
    } else {
        if dest_meta.is_none() && dest.ends_with('/') {
            return Err(format!("destination directory {dest} must exist"));
        }
        dest.to_string()
    };
    if dest_meta.is_none() {
        let parent = dest_abs.parent().map(Path::to_path_buf).unwrap_or_default();
        if !parent.is_dir() {
            return Err(format!(
                "no such directory: {}",
                Path::new(dest).parent().unwrap_or(Path::new("/")).display()
            ));
        }
    }
    let spec = CopySpec {
        sources: vec![Source::Path(src.trim_end_matches("/.").to_string())],
        dest: target,
        source_kind: SourceKind::Rootfs,
        chown: (!archive).then(|| "0:0".to_string()),
        ..CopySpec::default()
    };
    fileop::copy(&spec, src_root, dest_root).map_err(|e| e.to_string())?;
    Ok(())
}

/// `src` (below `root`) as a tar stream named after its base name (its contents with `/.`).
fn tar_out(root: &Path, src: &str, follow: bool, out: impl std::io::Write) -> Result<(), String> {
    let abs = fileop::resolve_in_root(root, src, follow || src.ends_with("/."))
        .map_err(|e| format!("{src}: {e}"))?;
    let meta =
        std::fs::symlink_metadata(&abs).map_err(|_| format!("Could not find the file {src}"))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let name = base_name(src);
    let name = if name.is_empty() {
        ".".to_string()
    } else {
        name
    };
    let r = if meta.is_dir() {
        let prefix = if src.ends_with("/.") {
            "."
        } else {
            name.as_str()
        };
        b.append_dir_all(prefix, &abs)
    } else {
        b.append_path_with_name(&abs, &name)
    };
    r.and_then(|()| b.finish())
        .map_err(|e| format!("writing the tar stream: {e}"))
}

pub fn cp(root: &Path, args: &CpArgs) -> ExitCode {
    match cp_inner(root, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

fn cp_inner(root: &Path, args: &CpArgs) -> Result<(), String> {
    let containers = Containers::open(root)?;
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let host = |p: &str| -> String {
        if p.starts_with('/') {
            p.to_string()
        } else {
            let mut s = cwd.join(p).to_string_lossy().into_owned();
            if p.ends_with('/') && !s.ends_with('/') {
                s.push('/');
            }
            s
        }
    };
    match (split_container(&args.src), split_container(&args.dest)) {
        (Some(_), Some(_)) => Err("copying between containers is not supported".into()),
        (None, None) => Err("must specify at least one container source".into()),
        (Some((c, path)), None) => {
            let id = containers.find(c)?;
            let acc = Access::open(root, &containers, &id, false)?;
            let (fs_root, rel) = acc.locate(path)?;
            if args.dest == "-" {
                let stdout = std::io::stdout().lock();
                return tar_out(&fs_root, &rel, args.follow_link, stdout);
            }
            copy_path(
                &fs_root,
                &rel,
                Path::new("/"),
                &host(&args.dest),
                args.archive,
                args.follow_link,
            )
            .map_err(|e| format!("{e} (in container {c})"))
        }
        (None, Some((c, path))) => {
            let id = containers.find(c)?;
            let acc = Access::open(root, &containers, &id, false)?;
            let (fs_root, rel) = acc.locate(path)?;
            if args.src == "-" {
                let dir = fileop::resolve_in_root(&fs_root, &rel, true)
                    .map_err(|e| format!("{path}: {e}"))?;
                if !dir.is_dir() {
                    return Err(format!("destination \"{c}:{path}\" must be a directory"));
                }
                rbuild_exporter::unpack::unpack_layer(std::io::stdin().lock(), None, &dir)
                    .map_err(|e| format!("extracting the tar stream into {path}: {e}"))?;
                return Ok(());
            }
            copy_path(
                Path::new("/"),
                &host(&args.src),
                &fs_root,
                &rel,
                args.archive,
                args.follow_link,
            )
        }
    }
}

/// `rbuild export [-o FILE] CONTAINER`.
pub fn export(root: &Path, output: Option<&Path>, name: &str) -> ExitCode {
    match export_inner(root, output, name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

fn export_inner(root: &Path, output: Option<&Path>, name: &str) -> Result<(), String> {
    use rbuild_exporter::layer::{self, LayerOptions, WhiteoutSource};
    use rbuild_exporter::media::Compression;
    use std::io::IsTerminal as _;
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err("cowardly refusing to save to a terminal. Use the -o flag or redirect".into());
    }
    let containers = Containers::open(root)?;
    let id = containers.find(name)?;
    let acc = Access::open(root, &containers, &id, true)?;
    let lo = LayerOptions {
        compression: Compression::None,
        whiteouts: WhiteoutSource::None,
        ..LayerOptions::default()
    };
    match output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| format!("create a file in {}: {e}", dir.display()))?;
            {
                let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                layer::write_tar(&acc.root, &lo, &mut w).map_err(|e| e.to_string())?;
                w.flush()
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
            }
            tmp.as_file()
                .sync_all()
                .map_err(|e| format!("fsync {}: {e}", path.display()))?;
            tmp.persist(path)
                .map_err(|e| format!("write {}: {}", path.display(), e.error))?;
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            layer::write_tar(&acc.root, &lo, &mut w).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| format!("write to stdout: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_told_from_host_paths() {
        assert_eq!(
            split_container("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(split_container("/tmp/a:b"), None);
        assert_eq!(split_container("./a:b"), None);
        assert_eq!(split_container("file.txt"), None);
        assert_eq!(base_name("/a/b/."), "b");
        assert_eq!(base_name("/a/b/"), "b");
    }

    #[test]
    fn directory_rules_follow_docker() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("d/sub")).unwrap();
        std::fs::write(src.path().join("d/sub/f"), "x").unwrap();
        // dest exists: the directory goes into it
        copy_path(src.path(), "/d", dst.path(), "/", false, false).unwrap();
        assert!(dst.path().join("d/sub/f").is_file());
        // `/.`: the contents
        copy_path(src.path(), "/d/.", dst.path(), "/", false, false).unwrap();
        assert!(dst.path().join("sub/f").is_file());
        // missing dest: becomes the copy
        copy_path(src.path(), "/d", dst.path(), "/new", false, false).unwrap();
        assert!(dst.path().join("new/sub/f").is_file());
        // a file into a missing directory path is refused
        assert!(copy_path(src.path(), "/d/sub/f", dst.path(), "/nope/", false, false).is_err());
        assert!(copy_path(src.path(), "/missing", dst.path(), "/", false, false).is_err());
        // a symlink is copied as a link; -L copies what it points to
        std::os::unix::fs::symlink("/d/sub/f", src.path().join("link")).unwrap();
        copy_path(src.path(), "/link", dst.path(), "/", false, false).unwrap();
        let l = std::fs::read_link(dst.path().join("link")).unwrap();
        assert_eq!(l, Path::new("/d/sub/f"));
        copy_path(src.path(), "/link", dst.path(), "/followed", false, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("followed")).unwrap(),
            "x"
        );
    }
}
