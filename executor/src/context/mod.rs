//! Content hashing of build-context selections, incremental.
//!
//! [`ContextHasher::hash_selection`] computes the digest a COPY/ADD from the local context
//! counts by (the solver's `Op::Context` key): the entries the instruction's sources select,
//! after `.dockerignore` and `--exclude`, each as its path, type, permission bits (with
//! setuid/setgid/sticky), symlink target or content sha256. Never an mtime, never the absolute
//! context path, so a fresh clone elsewhere hits the same key. Owners are left out: BuildKit's
//! client resets every context file to 0:0 when it sends the context (`resetUIDAndGID`), so
//! BuildKit's `contenthash` tar headers always carry 0:0 for them, and COPY writes 0:0 (or the
//! `--chown` owner) whatever they were. Xattrs are left out too (they cost a syscall per file
//! on every warm run).
//!
//! Selection semantics are those of [`crate::fileop::copy`] on the same sources: wildcards per
//! path component, a named symlink followed when `follow_symlinks` (COPY does), directories
//! walked without following symlinks, escapes out of the context refused. Entries are named
//! by their path as the instruction names them (`COPY link/ x` lists `link/file`, read from
//! the link's target), `/`-separated, relative to the context; non-UTF-8 names are shown
//! lossily.
//!
//! The walk is pruned by the ignore matcher (an ignored directory is skipped unless a `!`
//! pattern could re-include something below it) and runs on rayon, one task per directory.
//! Regular files are looked up in a per-context on-disk record ([`cache`]) of
//! (dev, inode, size, mtime, ctime, mode) → sha256; only new or changed files are read, in
//! parallel. Files changed in the two seconds before the walk started are hashed but not
//! recorded ("racily clean", as git does), so a same-tick rewrite is never missed.

mod cache;

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rbuild_parser::dockerignore::{MatchInfo, PatternMatcher};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fileop::resolve::{self, Confine};
use cache::{Cache, Entry, Stamp};

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What a COPY/ADD selects from the context.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The sources as written, relative to the context root (a leading `/` is the root);
    /// wildcards allowed; `.` for everything.
    pub includes: Vec<String>,
    /// `.dockerignore` patterns, relative to the context root.
    pub ignore: Vec<String>,
    /// `--exclude` patterns, relative to each selected source.
    pub exclude: Vec<String>,
    /// Follow a symlink named by an include (COPY/ADD do).
    pub follow_symlinks: bool,
}

/// The result of hashing a selection.
#[derive(Debug, Clone)]
pub struct ContextDigest {
    /// Over every entry's path and digest, in path order.
    pub digest: Digest,
    /// Each selected path with the digest of its type, mode and content/target, sorted by
    /// path: diff two of these ([`changed_paths`]) to say which file changed.
    pub files: Vec<(String, Digest)>,
    pub stats: HashStats,
}

/// Work counters of one [`ContextHasher::hash_selection`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    pub entries: u64,
    /// Regular files whose content was read.
    pub files_read: u64,
    pub bytes_read: u64,
    /// Regular files whose hash came from the on-disk record.
    pub cache_hits: u64,
}

/// Hashes context selections, with one on-disk record per context directory in `cache_dir`.
#[derive(Debug)]
pub struct ContextHasher {
    cache_dir: PathBuf,
    reads: AtomicU64,
    racy_window: std::time::Duration,
}

/// Paths present in only one of two file lists or with different digests, sorted.
pub fn changed_paths(old: &[(String, Digest)], new: &[(String, Digest)]) -> Vec<String> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    out.push(a.0.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                out.push(a.0.clone());
                i += 1;
            }
            (_, Some(b)) => {
                out.push(b.0.clone());
                j += 1;
            }
            (Some(a), None) => {
                out.push(a.0.clone());
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Device,
}

/// One selected entry.
#[derive(Debug)]
struct Node {
    /// The path as the instruction names it.
    name: String,
    /// The real path relative to the context (the cache key).
    real: Vec<u8>,
    kind: Kind,
    stamp: Stamp,
    /// Symlink target, or device number.
    extra: Vec<u8>,
}

struct Walk<'a> {
    root: &'a Path,
    ignore: Option<&'a PatternMatcher>,
    exclude: Option<&'a PatternMatcher>,
}

impl ContextHasher {
    /// Uses (and creates) `cache_dir` for the records.
    pub fn open(cache_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(cache_dir).ctx("mkdir", cache_dir)?;
        Ok(ContextHasher {
            cache_dir: cache_dir.to_path_buf(),
            reads: AtomicU64::new(0),
            racy_window: std::time::Duration::from_secs(2),
        })
    }

    /// Files whose mtime or ctime is this close to the start of a walk (or later) are hashed
    /// but not recorded (default 2 s, enough for coarse filesystem timestamps).
    pub fn set_racy_window(&mut self, window: std::time::Duration) {
        self.racy_window = window;
    }

    /// Regular files read (content hashed) by this hasher so far.
    pub fn files_read(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The record file of a context directory: keyed by its canonical path.
    pub fn cache_file(&self, context_dir: &Path) -> Result<PathBuf> {
        let canonical = context_dir
            .canonicalize()
            .ctx("canonicalize", context_dir)?;
        let key = Sha256::digest(canonical.as_os_str().as_bytes());
        Ok(self
            .cache_dir
            .join(format!("{}.ctx", &hex::encode(key)[..32])))
    }

    /// Hashes what `selection` selects in `context_dir` (see the module documentation).
    pub fn hash_selection(
        &self,
        context_dir: &Path,
        selection: &Selection,
    ) -> Result<ContextDigest> {
        let started = std::time::SystemTime::now();
        let root = context_dir
            .canonicalize()
            .ctx("canonicalize", context_dir)?;
        let matcher = |what: &'static str, patterns: &[String]| -> Result<Option<PatternMatcher>> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let m = PatternMatcher::new(patterns).map_err(|e| Error::InvalidArgument {
                what,
                value: patterns.join(" "),
                reason: e.to_string(),
            })?;
            Ok(Some(m))
        };
        let ignore = matcher(".dockerignore", &selection.ignore)?;
        let exclude = matcher("--exclude", &selection.exclude)?;
        let walk = Walk {
            root: &root,
            ignore: ignore.as_ref(),
            exclude: exclude.as_ref(),
        };
        let mut nodes = Vec::new();
        let mut whole = false;
        for include in &selection.includes {
            whole |= resolve::clean_rel(include).is_empty();
            walk.include(include, selection.follow_symlinks, &mut nodes)?;
        }
        nodes.par_sort_unstable_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);

        let cache_path = self.cache_file(&root)?;
        let mut cache = Cache::load(&cache_path);
        let hits = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let racy_after = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(i64::MAX, |d| {
                (d.as_nanos() as i64).saturating_sub(self.racy_window.as_nanos() as i64)
            });
        // Content hashes: from the record when the stamp matches, else read (in parallel).
        let hashed: Vec<Option<([u8; 32], bool)>> = nodes
            .par_iter()
            .map(|node| {
                if node.kind != Kind::File {
                    return Ok(None);
                }
                if let Some(e) = cache.entries.get(node.real.as_slice()) {
                    if e.stamp == node.stamp {
                        hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(Some((e.sha256, false)));
                    }
                }
                let path = root.join(std::ffi::OsStr::from_bytes(&node.real));
                let (sha, n) = hash_file(&path).ctx("read", format!("/{}", node.name))?;
                self.reads.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(n, Ordering::Relaxed);
                let racy = node.stamp.mtime_ns >= racy_after || node.stamp.ctime_ns >= racy_after;
                Ok(Some((sha, !racy)))
            })
            .collect::<Result<_>>()?;

        let mut dirty = false;
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::with_capacity(nodes.len());
        let mut total = Sha256::new();
        for (node, content) in nodes.iter().zip(&hashed) {
            let mut h = Sha256::new();
            let kind = match node.kind {
                Kind::Dir => b'd',
                Kind::File => b'f',
                Kind::Symlink => b'l',
                Kind::Device => b'c',
            };
            h.update([kind]);
            h.update((node.stamp.mode & 0o7777).to_le_bytes());
            h.update(&node.extra);
            if let Some((sha, record)) = content {
                h.update(sha);
                if whole {
                    seen.insert(node.real.as_slice());
                }
                if *record {
                    let entry = Entry {
                        stamp: node.stamp,
                        sha256: *sha,
                    };
                    cache
                        .entries
                        .insert(node.real.clone().into_boxed_slice(), entry);
                    dirty = true;
                }
            }
            let digest = Digest(h.finalize().into());
            total.update(node.name.as_bytes());
            total.update([0]);
            total.update(digest.0);
            files.push((node.name.clone(), digest));
        }
        if whole {
            let before = cache.entries.len();
            cache.entries.retain(|k, _| seen.contains(&**k));
            dirty |= cache.entries.len() != before;
        }
        if dirty {
            cache.store(&cache_path)?;
        }
        let stats = HashStats {
            entries: nodes.len() as u64,
            files_read: hashed.iter().flatten().count() as u64 - hits.load(Ordering::Relaxed),
            bytes_read: bytes.load(Ordering::Relaxed),
            cache_hits: hits.load(Ordering::Relaxed),
        };
        Ok(ContextDigest {
            digest: Digest(total.finalize().into()),
            files,
            stats,
        })
    }
}

impl Walk<'_> {
    fn ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.is_some_and(|m| m.matches(rel))
    }

    /// Adds the entries one include selects.
    fn include(&self, include: &str, follow: bool, out: &mut Vec<Node>) -> Result<()> {
        if resolve::climbs_out(include.trim_start_matches('/')) {
            return Err(Error::PathEscape {
                path: include.to_owned(),
            });
        }
        let wild = include.split('/').any(resolve::has_wildcards);
        let skip =
            |rel: &str| self.ignored(rel) || (wild && self.exclude.is_some_and(|m| m.matches(rel)));
        let matches = resolve::expand_wildcards(self.root, include, Confine::Refuse, &skip)?;
        if wild && matches.is_empty() {
            return Err(Error::NoSourceFiles {
                pattern: include.to_owned(),
            });
        }
        for name in matches {
            let real = resolve::resolve_rel(self.root, &name, follow, Confine::Refuse)?;
            let real = join_rel(&real);
            let not_found = || Error::NotFound {
                path: format!("/{name}"),
            };
            if self.ignored(&String::from_utf8_lossy(&real)) {
                return Err(not_found());
            }
            let abs = self.root.join(std::ffi::OsStr::from_bytes(&real));
            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                Err(e) if resolve::is_missing(&e) => return Err(not_found()),
                Err(e) => return Err(Error::io("lstat", format!("/{name}"), e)),
            };
            let shown = if name.is_empty() {
                ".".to_owned()
            } else {
                name.clone()
            };
            let mut node = self.node(shown, real.clone(), &abs, &meta)?;
            let is_dir = node.kind == Kind::Dir;
            if is_dir {
                // COPY copies a directory's contents: its own metadata never reaches the
                // result (and a clone's root directory mode follows the umask).
                node.stamp.mode &= !0o7777;
            }
            out.push(node);
            if is_dir {
                let info = self.parent_info(&String::from_utf8_lossy(&real));
                out.extend(self.walk_dir(&abs, &real, &name, "", info)?);
            }
        }
        Ok(())
    }

    /// The ignore matcher's record for `rel`'s children (walking from the top).
    fn parent_info(&self, rel: &str) -> MatchInfo {
        let (Some(m), false) = (self.ignore, rel.is_empty()) else {
            return MatchInfo::default();
        };
        let mut info = MatchInfo::default();
        let mut cur = String::new();
        for part in rel.split('/') {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            info = m.matches_using_parent(&cur, info).1;
        }
        info
    }

    /// Walks a directory: `real` is its context-relative path, `name` how the instruction
    /// names it, `excl` its path below the include (for `--exclude`).
    fn walk_dir(
        &self,
        abs: &Path,
        real: &[u8],
        name: &str,
        excl: &str,
        info: MatchInfo,
    ) -> Result<Vec<Node>> {
        let shown = || format!("/{name}");
        let mut out = Vec::new();
        let mut subdirs = Vec::new();
        for entry in std::fs::read_dir(abs).ctx("read directory", shown())? {
            let entry = entry.ctx("read directory", shown())?;
            let file_name = entry.file_name();
            let text = file_name.to_string_lossy();
            let child_real = join(real, file_name.as_bytes());
            let child_real_text = String::from_utf8_lossy(&child_real).into_owned();
            let (ignored, child_info) = match self.ignore {
                Some(m) => m.matches_using_parent(&child_real_text, info),
                None => (false, info),
            };
            let child_excl = if excl.is_empty() {
                text.to_string()
            } else {
                format!("{excl}/{text}")
            };
            let excluded = self.exclude.is_some_and(|m| m.matches(&child_excl));
            let child_name = if name.is_empty() {
                text.to_string()
            } else {
                format!("{name}/{text}")
            };
            let child_abs = entry.path();
            let meta = entry.metadata().ctx("lstat", format!("/{child_name}"))?;
            if meta.is_dir() {
                let reinclude = |m: Option<&PatternMatcher>, rel: &str| {
                    m.is_some_and(|m| m.could_reinclude_below(rel))
                };
                let enter = (!ignored || reinclude(self.ignore, &child_real_text))
                    && (!excluded || reinclude(self.exclude, &child_excl));
                if !ignored && !excluded {
                    out.push(self.node(
                        child_name.clone(),
                        child_real.clone(),
                        &child_abs,
                        &meta,
                    )?);
                }
                if enter {
                    subdirs.push((child_abs, child_real, child_name, child_excl, child_info));
                }
            } else if !ignored && !excluded && !meta.file_type().is_socket() {
                out.push(self.node(child_name, child_real, &child_abs, &meta)?);
            }
        }
        let nested: Vec<Vec<Node>> = subdirs
            .par_iter()
            .map(|(abs, real, name, excl, info)| self.walk_dir(abs, real, name, excl, *info))
            .collect::<Result<_>>()?;
        out.extend(nested.into_iter().flatten());
        Ok(out)
    }

    fn node(&self, name: String, real: Vec<u8>, abs: &Path, meta: &Metadata) -> Result<Node> {
        let ft = meta.file_type();
        let (kind, extra) = if ft.is_dir() {
            (Kind::Dir, Vec::new())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(abs).ctx("readlink", format!("/{name}"))?;
            (Kind::Symlink, target.into_os_string().into_vec())
        } else if ft.is_file() {
            (Kind::File, Vec::new())
        } else {
            (Kind::Device, meta.rdev().to_le_bytes().to_vec())
        };
        let stamp = Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            mode: meta.mode(),
        };
        Ok(Node {
            name,
            real,
            kind,
            stamp,
            extra,
        })
    }
}

trait IntoVec {
    fn into_vec(self) -> Vec<u8>;
}

impl IntoVec for OsString {
    fn into_vec(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

fn join_rel(parts: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out = join(&out, p.as_bytes());
    }
    out
}

fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + name.len() + 1);
    out.extend_from_slice(base);
    if !base.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// sha256 of a file's content and its length.
fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
}
