//! COPY and ADD onto directories, with Docker/BuildKit semantics.
//!
//! [`copy`] runs one COPY/ADD instruction: its sources (already variable-expanded) are read
//! from `src_root` (the build context directory, or another stage's/image's root filesystem)
//! and written below `dest_root` (the destination root filesystem, e.g. an active snapshot's
//! merged directory). It mirrors BuildKit's file op (`solver/llbsolver/file/backend.go`
//! `docopy`) over fsutil's `copy.Copy`, as the Dockerfile frontend sets it up for COPY/ADD
//! (`FollowSymlinks`, `CopyDirContentsOnly`, `CreateDestPath`, `AllowWildcard`):
//!
//! - **Wildcards** (`*`, `?`, `[...]`, Go's `filepath.Match` per path component) expand to the
//!   matching entries in lexical order; no match is an error ("no source files were
//!   specified", the classic builder's message: BuildKit fails the same build while computing
//!   the cache key).
//! - A source path is resolved **following symlinks**, the last component included (fsutil's
//!   `rootPath(.., followLinks=true)`): `COPY link /x` copies what `link` points to. Inside a
//!   copied directory, symlinks are copied as symlinks.
//! - **Directory contents**: a directory source copies its contents, not itself, into the
//!   destination (created if needed). With `--parents` the source path below its pivot
//!   (`a/./b/c` pivots at `a`) is kept under the destination, parents taking the source
//!   directories' metadata (fsutil's `createParentDirs`).
//! - **Destination**: a trailing `/` makes it a directory (created, 0755). A file source goes
//!   to `dest/<name>` when `dest` is (or is made) a directory, else it becomes the file `dest`.
//!   Missing parents are created 0755, owned by the `--chown` owner (fsutil's `MkdirAll` with
//!   the chowner; only created directories are touched). An existing top-level destination
//!   directory keeps its metadata; existing directories below it take the source's.
//! - **Several sources** (after expansion, heredocs and downloads included) into a `dest`
//!   without a trailing `/` that is not an existing directory, when any of them is not a
//!   directory, is the classic builder's error "When using COPY with more than one source
//!   file, the destination must be a directory and end with a /". BuildKit would instead
//!   overwrite the file `dest` with each source in turn; directories alone merge fine in both.
//! - **Ownership**: `--chown` (see [`owner`]) for everything copied; otherwise 0:0 for the
//!   build context (BuildKit's client resets uid/gid when it sends the context,
//!   `resetUIDAndGID`) and the source's owner for other stages and images.
//! - **Mode** kept (setuid/setgid/sticky too); `--chmod` replaces the 0777 bits of every copied
//!   file and directory and keeps the special bits (fsutil's `copyFileInfo`). Times (atime and
//!   mtime) kept. Hard links between copied files are kept within one source. Xattrs are
//!   copied; failures to set them are counted, not fatal (BuildKit only logs them).
//! - **ADD** extracts a local tar archive (plain, gzip, bzip2, xz, zstd; detected by content)
//!   into the destination directory instead of copying it, unless `--unpack=false`
//!   ([`archive`]). Downloaded sources ([`Source::Download`]) are never extracted.
//! - **Heredocs** ([`Source::Inline`]) are files of their name, mode 0644 (or `--chmod`).
//! - `--exclude` patterns (`.dockerignore` syntax) match paths below each copied source, and a
//!   wildcard match's own path.
//! - `--link` does not change the result tree, so it is not an input here.
//!
//! **Confinement**: the destination is resolved with [`resolve_in_root`], so a symlink in the
//! destination rootfs (say `/app -> /etc`) is followed inside `dest_root`, never out of it.
//! Build-context sources refuse `..` above the context and symlinks leaving it
//! ([`Error::PathEscape`], [`Error::SymlinkEscape`]); stage/image sources are resolved like the
//! destination, as a chroot (absolute symlinks are normal in a root filesystem).

pub mod archive;
pub mod owner;
pub mod resolve;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rbuild_parser::dockerignore::PatternMatcher;

use crate::error::{Error, IoContext, Result};
pub use archive::{is_archive, verify_checksum};
pub use owner::{Chmod, Owner, parse_chmod, resolve_chown};
pub use resolve::{Confine, resolve_in_root};
use resolve::{clean_rel, is_missing};
use tree::{Copier, OwnerRule, lchown, shown};

/// Where the sources come from; decides ownership and confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// The build context: owners become 0:0, escapes are errors.
    #[default]
    Context,
    /// Another stage's or an image's root filesystem: owners kept, chroot resolution.
    Rootfs,
}

/// One source of a COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path in `src_root` as written (relative to it even when absolute; may hold wildcards;
    /// with `--parents`, may hold a `/./` pivot).
    Path(String),
    /// A heredoc: a file named `name` with this content, mode 0644.
    Inline { name: String, content: Vec<u8> },
    /// A file downloaded by the caller (ADD <url>): copied as `name`, mode 0600, never
    /// extracted. Its mtime is kept (set it from `Last-Modified`).
    Download { path: PathBuf, name: String },
}

/// One COPY or ADD instruction, ready to run.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    /// ADD rather than COPY (archive extraction; the instruction name in errors).
    pub is_add: bool,
    pub sources: Vec<Source>,
    /// Absolute path in `dest_root` (WORKDIR already applied); a trailing `/` matters.
    pub dest: String,
    /// `--chown` as written (`user[:group]`), resolved against `dest_root`.
    pub chown: Option<String>,
    /// `--chmod`, parsed ([`parse_chmod`]).
    pub chmod: Option<Chmod>,
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD `--unpack`: None extracts local archives (Docker's default), Some forces.
    pub unpack: Option<bool>,
    pub source_kind: SourceKind,
    /// `.dockerignore` patterns, relative to `src_root` (build-context sources): ignored
    /// paths are invisible to the copy — skipped by wildcards and inside directories, "not
    /// found" when named — as when BuildKit's client sends a filtered context.
    pub ignore: Vec<String>,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Devices and fifos.
    pub specials: u64,
    pub bytes: u64,
    pub excluded: u64,
    pub archives_extracted: u64,
    pub xattr_errors: u64,
}

/// A source after wildcard expansion.
#[derive(Debug)]
enum Resolved {
    /// Root-relative path as matched, and where it leads after following symlinks.
    Path {
        rel: String,
        abs: PathBuf,
        is_dir: bool,
    },
    /// `--parents`: the pivot directory and the path below it.
    Parents {
        pivot: PathBuf,
        rel: String,
    },
    Inline {
        name: String,
        content: Vec<u8>,
    },
    Download {
        path: PathBuf,
        name: String,
    },
}

/// Runs a COPY/ADD: see the module documentation.
pub fn copy(spec: &CopySpec, src_root: &Path, dest_root: &Path) -> Result<CopyStats> {
    let instruction = if spec.is_add { "ADD" } else { "COPY" };
    let confine = match spec.source_kind {
        SourceKind::Context => Confine::Refuse,
        SourceKind::Rootfs => Confine::Clamp,
    };
    let chown = match &spec.chown {
        Some(chown) => Some(resolve_chown(chown, dest_root)?),
        None => None,
    };
    let owner = match (chown, spec.source_kind) {
        (Some(owner), _) => OwnerRule::Fixed(owner),
        (None, SourceKind::Context) => OwnerRule::Fixed(Owner::ROOT),
        (None, SourceKind::Rootfs) => OwnerRule::Keep,
    };
    let exclude = match spec.exclude.is_empty() {
        true => None,
        false => Some(
            PatternMatcher::new(&spec.exclude).map_err(|e| Error::InvalidArgument {
                what: "--exclude",
                value: spec.exclude.join(" "),
                reason: e.to_string(),
            })?,
        ),
    };
    let ignore = match spec.ignore.is_empty() {
        true => None,
        false => Some(
            PatternMatcher::new(&spec.ignore).map_err(|e| Error::InvalidArgument {
                what: ".dockerignore",
                value: spec.ignore.join(" "),
                reason: e.to_string(),
            })?,
        ),
    };
    let filters = Filters {
        exclude: exclude.as_ref(),
        ignore: ignore.as_ref(),
    };
    let resolved = resolve_sources(spec, src_root, confine, filters)?;

    let dest_is_dir_syntax = spec.dest.ends_with('/') || spec.parents;
    let dest_abs = resolve_in_root(dest_root, &spec.dest, true)?;
    let dest_exists_dir = std::fs::metadata(&dest_abs).is_ok_and(|m| m.is_dir());
    let any_file = resolved
        .iter()
        .any(|r| !matches!(r, Resolved::Path { is_dir: true, .. }));
    if resolved.len() > 1 && !dest_is_dir_syntax && !dest_exists_dir && any_file {
        return Err(Error::DestNotDirectory { instruction });
    }

    let mut stats = CopyStats::default();
    let mkdir_owner = chown.unwrap_or(Owner::ROOT);
    // fsutil's ensureDstPath: the destination itself when it ends in `/`, else its parent.
    let ensure = if dest_is_dir_syntax {
        dest_abs.clone()
    } else {
        let parent = Path::new(&spec.dest).parent().map(Path::to_path_buf);
        let parent = parent.unwrap_or_else(|| PathBuf::from("/"));
        resolve_in_root(dest_root, &parent.to_string_lossy(), true)?
    };
    mkdir_all(dest_root, &ensure, mkdir_owner, &mut stats)?;

    for source in resolved {
        let mut copier = Copier {
            owner,
            chmod: spec.chmod.clone(),
            exclude: exclude.as_ref(),
            ignore: ignore.as_ref(),
            inodes: HashMap::new(),
            stats: &mut stats,
            src_root,
            dest_root,
        };
        match source {
            Resolved::Path { rel, abs, is_dir } => {
                let unpack = spec.is_add && spec.unpack != Some(false);
                if unpack && !is_dir && is_archive(&abs) {
                    mkdir_all(dest_root, &dest_abs, mkdir_owner, copier.stats)?;
                    let shown_src = format!("/{rel}");
                    archive::extract(&abs, &shown_src, &dest_abs, chown, copier.stats)?;
                    copier.stats.archives_extracted += 1;
                    continue;
                }
                let base = rel.rsplit('/').next().unwrap_or(&rel).to_owned();
                let target = target_for(&dest_abs, &base, is_dir);
                if is_dir {
                    mkdir_all(dest_root, &target, mkdir_owner, copier.stats)?;
                }
                copier.copy(&abs, "", &target, false)?;
            }
            Resolved::Parents { pivot, rel } => {
                copy_with_parents(&mut copier, &pivot, &rel, &dest_abs)?;
            }
            Resolved::Inline { name, content } => {
                let target = target_for(&dest_abs, &name, false);
                write_new_file(&mut copier, &target, &content, 0o644, mkdir_owner)?;
            }
            Resolved::Download { path, name } => {
                let content = std::fs::read(&path).ctx("read", &path)?;
                let target = target_for(&dest_abs, &name, false);
                write_new_file(&mut copier, &target, &content, 0o600, mkdir_owner)?;
                let meta = std::fs::metadata(&path).ctx("stat", &path)?;
                let mtime = meta.modified().ctx("stat", &path)?;
                let file = std::fs::File::options().write(true).open(&target);
                file.and_then(|f| f.set_modified(mtime))
                    .ctx("utimes", &target)?;
            }
        }
    }
    Ok(stats)
}

/// fsutil's `prepareTargetDir`: a file goes below an existing directory, else to `dest`.
fn target_for(dest_abs: &Path, base: &str, src_is_dir: bool) -> PathBuf {
    let dest_is_dir = std::fs::metadata(dest_abs).is_ok_and(|m| m.is_dir());
    if !src_is_dir && dest_is_dir {
        dest_abs.join(base)
    } else {
        dest_abs.to_path_buf()
    }
}

/// `--exclude` (relative to each source) and `.dockerignore` (relative to the source root).
#[derive(Clone, Copy)]
struct Filters<'a> {
    exclude: Option<&'a PatternMatcher>,
    ignore: Option<&'a PatternMatcher>,
}

fn resolve_sources(
    spec: &CopySpec,
    src_root: &Path,
    confine: Confine,
    filters: Filters<'_>,
) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for source in &spec.sources {
        match source {
            Source::Inline { name, content } => out.push(Resolved::Inline {
                name: name.clone(),
                content: content.clone(),
            }),
            Source::Download { path, name } => out.push(Resolved::Download {
                path: path.clone(),
                name: name.clone(),
            }),
            Source::Path(path) if spec.parents => {
                let (pivot, pattern) = match path.split_once("/./") {
                    Some((pivot, pattern)) => (pivot, pattern),
                    None => ("", path.as_str()),
                };
                check_escape(pivot, confine)?;
                check_escape(pattern, confine)?;
                let pivot_abs = resolve::resolve(src_root, pivot, true, confine)?;
                let prefix = resolve::clean_rel(pivot);
                let matches = expand(&pivot_abs, &prefix, pattern, confine, filters)?;
                for rel in matches {
                    out.push(Resolved::Parents {
                        pivot: pivot_abs.clone(),
                        rel,
                    });
                }
            }
            Source::Path(path) => {
                check_escape(path, confine)?;
                for rel in expand(src_root, "", path, confine, filters)? {
                    let abs = resolve::resolve(src_root, &rel, true, confine)?;
                    let meta = match std::fs::metadata(&abs) {
                        Ok(meta) => meta,
                        Err(e) if is_missing(&e) => {
                            return Err(Error::NotFound {
                                path: format!("/{rel}"),
                            });
                        }
                        Err(e) => return Err(Error::io("stat", shown(src_root, &abs), e)),
                    };
                    out.push(Resolved::Path {
                        rel,
                        abs,
                        is_dir: meta.is_dir(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn check_escape(path: &str, confine: Confine) -> Result<()> {
    if confine == Confine::Refuse && resolve::climbs_out(path.trim_start_matches('/')) {
        return Err(Error::PathEscape {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Wildcard expansion of one source; a wildcard matching nothing is an error. Matches
/// excluded by `--exclude` or ignored are dropped; a named ignored path is not found.
/// `prefix` is `root`'s path below the source root (for `.dockerignore`).
fn expand(
    root: &Path,
    prefix: &str,
    path: &str,
    confine: Confine,
    filters: Filters<'_>,
) -> Result<Vec<String>> {
    let in_root = |rel: &str| {
        if prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{prefix}/{rel}")
        }
    };
    let ignored = |rel: &str| {
        let rel = in_root(rel);
        !rel.is_empty() && filters.ignore.is_some_and(|m| m.matches(&rel))
    };
    let wild = path.split('/').any(resolve::has_wildcards);
    let skip =
        |rel: &str| ignored(rel) || (wild && filters.exclude.is_some_and(|m| m.matches(rel)));
    let matches = resolve::expand_wildcards(root, path, confine, &skip)?;
    if wild && matches.is_empty() {
        return Err(Error::NoSourceFiles {
            pattern: path.to_owned(),
        });
    }
    if let Some(rel) = matches.iter().find(|rel| ignored(rel)) {
        return Err(Error::NotFound {
            path: format!("/{}", in_root(rel)),
        });
    }
    Ok(matches)
}

/// `--parents`: copies `pivot/rel` to `dest/rel`, making `dest/<parents of rel>` with the
/// source directories' metadata when they are missing.
fn copy_with_parents(copier: &mut Copier<'_>, pivot: &Path, rel: &str, dest: &Path) -> Result<()> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut src = pivot.to_path_buf();
    let mut target = dest.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        src.push(part);
        target.push(part);
        if i + 1 == parts.len() {
            break;
        }
        let meta = std::fs::symlink_metadata(&src).ctx("lstat", shown(copier.src_root, &src))?;
        if !meta.is_dir() {
            let path = shown(copier.src_root, &src).display().to_string();
            return Err(Error::NotADirectory { path });
        }
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let path = shown(copier.dest_root, &target).display().to_string();
                return Err(Error::NotADirectory { path });
            }
            Err(e) if is_missing(&e) => {
                std::fs::create_dir(&target).ctx("mkdir", shown(copier.dest_root, &target))?;
                copier.stats.dirs += 1;
                copier.apply_meta(&src, &target, &meta)?;
            }
            Err(e) => return Err(Error::io("lstat", shown(copier.dest_root, &target), e)),
        }
    }
    if std::fs::symlink_metadata(&src).is_err() {
        return Err(Error::NotFound {
            path: shown(copier.src_root, &src).display().to_string(),
        });
    }
    copier.copy(&src, "", &target, true)
}

/// Writes a new file (heredoc or download) at `target`, replacing a non-directory.
fn write_new_file(
    copier: &mut Copier<'_>,
    target: &Path,
    content: &[u8],
    mode: u32,
    owner: Owner,
) -> Result<()> {
    let shown_target = shown(copier.dest_root, target);
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let path = shown_target.display().to_string();
            return Err(Error::ReplaceDirectory { path });
        }
        Ok(_) => std::fs::remove_file(target).ctx("remove", &shown_target)?,
        Err(e) if is_missing(&e) => {}
        Err(e) => return Err(Error::io("lstat", shown_target, e)),
    }
    std::fs::write(target, content).ctx("write", &shown_target)?;
    let owner = match copier.owner {
        OwnerRule::Fixed(owner) => owner,
        OwnerRule::Keep => owner,
    };
    lchown(target, owner).ctx("chown", &shown_target)?;
    let mode = match &copier.chmod {
        Some(Chmod::Octal(m)) => m & 0o7777,
        Some(c) => c.apply(mode, false),
        None => mode,
    };
    let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
    std::fs::set_permissions(target, perms).ctx("chmod", &shown_target)?;
    copier.stats.files += 1;
    copier.stats.bytes += content.len() as u64;
    Ok(())
}

/// fsutil's `MkdirAll` inside `root`: missing directories of `path` are made 0755 and given
/// to `owner`; existing ones are left alone. Symlinks met on the way are resolved inside
/// `root` (the paths given are resolved already; this only guards against surprises).
fn mkdir_all(root: &Path, path: &Path, owner: Owner, stats: &mut CopyStats) -> Result<()> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut cur = root.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        let mut meta = std::fs::symlink_metadata(&cur);
        if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            cur = resolve_in_root(root, &clean_rel(&shown(root, &cur).to_string_lossy()), true)?;
            meta = std::fs::symlink_metadata(&cur);
        }
        match meta {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                let path = shown(root, &cur).display().to_string();
                return Err(Error::NotADirectory { path });
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(Error::io("lstat", shown(root, &cur), e)),
        }
        std::fs::create_dir(&cur).ctx("mkdir", shown(root, &cur))?;
        lchown(&cur, owner).ctx("chown", shown(root, &cur))?;
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&cur, perms).ctx("chmod", shown(root, &cur))?;
        stats.dirs += 1;
    }
    Ok(())
}
