//! `Op::File`: COPY/ADD, WORKDIR (mkdir) and inline files onto an active snapshot of the
//! base (or an empty one), committed as the step's result.

use std::collections::HashMap;
use std::fs::FileTimes;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rbuild_executor::fileop::{self, CopySpec, Owner, Source, SourceKind};
use rbuild_solver::cache::CacheKey;
use rbuild_solver::op::{CopyAction, CopySource, FileAction, FileSpec};
use rbuild_solver::{ResultRef, VertexProgress, WorkerError};

use super::mounts::{Active, View, finish_step};
use super::{Inner, Input, blocking, input_of, result_name, werr};

mod download;

/// A downloaded `ADD <url>` source.
struct Downloaded {
    path: PathBuf,
    name: String,
}

pub(super) async fn execute(
    inner: &Arc<Inner>,
    spec: &FileSpec,
    inputs: &[ResultRef],
    key: &CacheKey,
    progress: &VertexProgress,
) -> Result<ResultRef, WorkerError> {
    // Downloads first (async), into a temp dir that lives until the copy is done.
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-add-")
        .tempdir_in(&inner.cfg.root)
        .map_err(|e| werr(format!("temp dir: {e}")))?;
    let mut downloads: HashMap<usize, Downloaded> = HashMap::new();
    for (i, action) in spec.actions.iter().enumerate() {
        let FileAction::Copy(copy) = action else {
            continue;
        };
        match &copy.source {
            CopySource::Url {
                url,
                filename,
                checksum,
            } => {
                let path = tmp.path().join(format!("{i}"));
                download::fetch(url, &path, checksum.as_deref(), progress).await?;
                downloads.insert(
                    i,
                    Downloaded {
                        path,
                        name: filename.clone(),
                    },
                );
            }
            CopySource::Git { remote, .. } => {
                return Err(WorkerError::new(format!(
                    "ADD of git repositories ({remote}) is not supported yet"
                )));
            }
            CopySource::Input { .. } => {}
        }
    }
    let inner = inner.clone();
    let spec = spec.clone();
    let inputs = inputs.to_vec();
    let name = result_name(&inner, key);
    blocking(move || {
        let r = run(&inner, &spec, &inputs, &downloads, &name);
        drop(tmp);
        r
    })
    .await
}

fn run(
    inner: &Inner,
    spec: &FileSpec,
    inputs: &[ResultRef],
    downloads: &HashMap<usize, Downloaded>,
    name: &str,
) -> Result<ResultRef, WorkerError> {
    let sn = &inner.snapshotter;
    let parent = match spec.base {
        None => None,
        Some(i) => match inputs.get(i).map(input_of) {
            Some(Input::Snapshot(s)) => Some(s.to_string()),
            Some(Input::Context(_)) => {
                return Err(WorkerError::new("a file op cannot be based on a context"));
            }
            None => return Err(WorkerError::new(format!("file op input {i} missing"))),
        },
    };
    let (active, mounts) =
        Active::prepare(sn, format!("active-{}", inner.unique()), parent.as_deref())?;
    let mut target = inner.mount_point()?;
    target.mount(sn, &mounts)?;
    let dest = target.path().to_path_buf();
    let mut views: HashMap<usize, View> = HashMap::new();
    for (i, action) in spec.actions.iter().enumerate() {
        match action {
            FileAction::Mkdir {
                path,
                mode,
                make_parents,
                owner,
                created,
            } => mkdir(
                &dest,
                path,
                *mode,
                *make_parents,
                owner.as_deref(),
                *created,
            )?,
            FileAction::Mkfile {
                path,
                mode,
                data,
                owner,
                created,
            } => mkfile(
                &dest,
                path,
                *mode,
                data.as_bytes(),
                owner.as_deref(),
                *created,
            )?,
            FileAction::Copy(copy) => {
                let (src_root, kind, source, ignore) = match &copy.source {
                    CopySource::Input { input, path } => {
                        let r = inputs
                            .get(*input)
                            .ok_or_else(|| werr(format!("copy input {input} missing")))?;
                        let (kind, ignore) = match input_of(r) {
                            Input::Context(name) => {
                                (SourceKind::Context, inner.context_ignore(name))
                            }
                            Input::Snapshot(_) => (SourceKind::Rootfs, Vec::new()),
                        };
                        if !views.contains_key(input) {
                            views.insert(*input, view_of(inner, r)?);
                        }
                        let root = views
                            .get(input)
                            .map(|v| v.dir().to_path_buf())
                            .ok_or_else(|| werr("view missing"))?;
                        (root, kind, source_path(copy, path), ignore)
                    }
                    CopySource::Url { .. } => {
                        let d = downloads.get(&i).ok_or_else(|| werr("download missing"))?;
                        let src = Source::Download {
                            path: d.path.clone(),
                            name: d.name.clone(),
                        };
                        (dest.clone(), SourceKind::Rootfs, src, Vec::new())
                    }
                    CopySource::Git { .. } => {
                        return Err(WorkerError::new(
                            "ADD of git repositories is not supported yet",
                        ));
                    }
                };
                let chmod = match &copy.chmod {
                    Some(m) => Some(fileop::parse_chmod(m).map_err(werr)?),
                    None => None,
                };
                let is_url = matches!(copy.source, CopySource::Url { .. });
                let cs = CopySpec {
                    is_add: copy.attempt_unpack && !is_url,
                    sources: vec![source],
                    dest: copy.dest.clone(),
                    chown: copy.chown.clone(),
                    chmod,
                    parents: !copy.include_patterns.is_empty(),
                    exclude: copy.exclude.clone(),
                    unpack: None,
                    source_kind: kind,
                    ignore,
                };
                fileop::copy(&cs, &src_root, &dest).map_err(werr)?;
            }
        }
    }
    drop(views);
    target.unmount()?;
    drop(target);
    finish_step(inner, active, parent.as_deref(), name)
}

/// A readable directory for an input: the context dir, or a snapshot's view.
pub(super) fn view_of(inner: &Inner, r: &ResultRef) -> Result<View, WorkerError> {
    match input_of(r) {
        Input::Context(name) => Ok(View::plain(inner.context_dir(name)?.to_path_buf())),
        Input::Snapshot(key) => View::snapshot(&inner.snapshotter, key, || inner.mount_point()),
    }
}

/// The fileop source for a copy action: `--parents` sources carry their `/./` pivot.
fn source_path(copy: &CopyAction, path: &str) -> Source {
    match copy.include_patterns.first() {
        Some(pattern) => {
            let parent = path.trim_end_matches('/');
            Source::Path(format!("{parent}/./{pattern}"))
        }
        None => Source::Path(path.to_string()),
    }
}

fn owner_of(dest: &Path, owner: Option<&str>) -> Result<Owner, WorkerError> {
    match owner {
        Some(o) if !o.is_empty() => fileop::resolve_chown(o, dest).map_err(werr),
        _ => Ok(Owner::ROOT),
    }
}

fn set_meta(path: &Path, mode: u32, owner: Owner, created: Option<i64>) -> Result<(), WorkerError> {
    let shown = |e: std::io::Error| werr(format!("{}: {e}", path.display()));
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)).map_err(shown)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(shown)?;
    if let Some(secs) = created {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        std::fs::File::open(path)
            .and_then(|f| f.set_times(FileTimes::new().set_modified(t).set_accessed(t)))
            .map_err(shown)?;
    }
    Ok(())
}

/// WORKDIR: creates `path` (and its parents) inside `dest`; existing directories are left
/// alone.
fn mkdir(
    dest: &Path,
    path: &str,
    mode: u32,
    make_parents: bool,
    owner: Option<&str>,
    created: Option<i64>,
) -> Result<(), WorkerError> {
    let owner = owner_of(dest, owner)?;
    let target = fileop::resolve_in_root(dest, path, true).map_err(werr)?;
    let rel = target.strip_prefix(dest).unwrap_or(&target).to_path_buf();
    let mut cur = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(werr(format!(
                    "mkdir {path}: {} is not a directory",
                    cur.display()
                )));
            }
            Err(_) => {
                if i + 1 < parts.len() && !make_parents {
                    return Err(werr(format!("mkdir {path}: parent directory missing")));
                }
                std::fs::create_dir(&cur).map_err(|e| werr(format!("mkdir {path}: {e}")))?;
                set_meta(&cur, mode, owner, created)?;
            }
        }
    }
    Ok(())
}

/// An inline file (heredoc source).
fn mkfile(
    dest: &Path,
    path: &str,
    mode: u32,
    data: &[u8],
    owner: Option<&str>,
    created: Option<i64>,
) -> Result<(), WorkerError> {
    let owner = owner_of(dest, owner)?;
    let target = fileop::resolve_in_root(dest, path, false).map_err(werr)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| werr(format!("mkfile {path}: {e}")))?;
    }
    std::fs::write(&target, data).map_err(|e| werr(format!("mkfile {path}: {e}")))?;
    set_meta(&target, mode, owner, created)
}
