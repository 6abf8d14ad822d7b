//! The recursive copier (fsutil's `copy.copier`): `cp -a` of one source entry onto a target
//! path, with ownership, `--chmod`, times, xattrs, hard links and `--exclude`.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_parser::dockerignore::PatternMatcher;
use rustix::fs::{AtFlags, CWD, FileType as RxFileType, Mode, Timespec, Timestamps};

use super::CopyStats;
use super::owner::Owner;
use super::resolve::is_missing;
use crate::error::{Error, IoContext, Result};

/// Who owns the copied entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerRule {
    /// Everything is owned by this owner (`--chown`, or 0:0 for the build context).
    Fixed(Owner),
    /// Keep the source's uid/gid (COPY --from a stage or image without `--chown`).
    Keep,
}

/// One copy operation's state (one per source, as fsutil makes one copier per `Copy`).
pub(crate) struct Copier<'a> {
    pub owner: OwnerRule,
    /// `--chmod`: replaces the permission bits (0777), keeps setuid/setgid/sticky.
    pub chmod: Option<super::Chmod>,
    pub exclude: Option<&'a PatternMatcher>,
    /// `.dockerignore`: matched against paths relative to `src_root`.
    pub ignore: Option<&'a PatternMatcher>,
    /// Source (dev, inode) of multiply linked files → where its first copy went.
    pub inodes: HashMap<(u64, u64), PathBuf>,
    pub stats: &'a mut CopyStats,
    /// Shown in errors instead of the absolute source path's root.
    pub src_root: &'a Path,
    pub dest_root: &'a Path,
}

impl std::fmt::Debug for Copier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Copier<'_> {
    /// Copies `src` onto `target`. `rel` is the path below the copied source root ("" for the
    /// root itself), which `--exclude` patterns match. `overwrite_meta`: whether an existing
    /// directory at `target` takes the source's metadata (true below the top level).
    pub fn copy(
        &mut self,
        src: &Path,
        rel: &str,
        target: &Path,
        overwrite_meta: bool,
    ) -> Result<()> {
        let meta = std::fs::symlink_metadata(src).ctx("lstat", self.shown_src(src))?;
        if !rel.is_empty()
            && (self.excluded(rel, meta.is_dir()) || self.ignored(src, meta.is_dir()))
        {
            self.stats.excluded += 1;
            return Ok(());
        }
        let ft = meta.file_type();
        let mut apply_meta = true;
        if ft.is_dir() {
            let created = self.copy_dir(src, rel, target, &meta, overwrite_meta)?;
            apply_meta = created || overwrite_meta;
        } else {
            self.ensure_empty_file_target(target)?;
            if ft.is_file() {
                self.copy_file(src, target, &meta)?;
            } else if ft.is_symlink() {
                let link = std::fs::read_link(src).ctx("readlink", self.shown_src(src))?;
                std::os::unix::fs::symlink(&link, target)
                    .ctx("symlink", self.shown_dest(target))?;
                self.stats.symlinks += 1;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = RxFileType::from_raw_mode(meta.mode());
                let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
                let dev = meta.rdev();
                rustix::fs::mknodat(CWD, target, kind, mode, dev)
                    .map_err(|e| Error::io("mknod", self.shown_dest(target), e.into()))?;
                self.stats.specials += 1;
            } else {
                let path = self.shown_src(src).display().to_string();
                return Err(Error::UnsupportedFile { path });
            }
        }
        if apply_meta {
            self.apply_meta(src, target, &meta)?;
        }
        Ok(())
    }

    /// `.dockerignore`, as for `--exclude`, on the path below the source root.
    fn ignored(&self, src: &Path, is_dir: bool) -> bool {
        let Some(matcher) = self.ignore else {
            return false;
        };
        let Ok(rel) = src.strip_prefix(self.src_root) else {
            return false;
        };
        let rel = rel.to_string_lossy();
        !rel.is_empty() && matcher.matches(&rel) && !(is_dir && matcher.could_reinclude_below(&rel))
    }

    fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        let Some(matcher) = self.exclude else {
            return false;
        };
        // fsutil: an excluded directory is still entered when a `!` pattern lies below it.
        matcher.matches(rel) && !(is_dir && matcher.could_reinclude_below(rel))
    }

    /// Returns whether the directory was created.
    fn copy_dir(
        &mut self,
        src: &Path,
        rel: &str,
        target: &Path,
        meta: &Metadata,
        overwrite: bool,
    ) -> Result<bool> {
        let created = match std::fs::symlink_metadata(target) {
            Ok(existing) if existing.is_dir() => {
                if overwrite {
                    let mode = self.mode_for(meta);
                    std::fs::set_permissions(target, PermissionsExt::from_mode(mode))
                        .ctx("chmod", self.shown_dest(target))?;
                }
                false
            }
            Ok(_) => {
                let path = self.shown_dest(target).display().to_string();
                return Err(Error::NotADirectory { path });
            }
            Err(e) if is_missing(&e) => {
                std::fs::create_dir(target).ctx("mkdir", self.shown_dest(target))?;
                self.stats.dirs += 1;
                true
            }
            Err(e) => return Err(Error::io("lstat", self.shown_dest(target), e)),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(src).ctx("read directory", self.shown_src(src))? {
            names.push(
                entry
                    .ctx("read directory", self.shown_src(src))?
                    .file_name(),
            );
        }
        names.sort();
        for name in names {
            let text = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                text.into_owned()
            } else {
                format!("{rel}/{text}")
            };
            self.copy(&src.join(&name), &child_rel, &target.join(&name), true)?;
        }
        Ok(created)
    }

    fn copy_file(&mut self, src: &Path, target: &Path, meta: &Metadata) -> Result<()> {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = self.inodes.get(&key) {
                std::fs::hard_link(first, target).ctx("link", self.shown_dest(target))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.inodes.insert(key, target.to_path_buf());
        }
        // std::fs::copy uses copy_file_range (reflinks where the filesystem can).
        let bytes = std::fs::copy(src, target).ctx("copy", self.shown_src(src))?;
        self.stats.files += 1;
        self.stats.bytes += bytes;
        Ok(())
    }

    /// fsutil's `ensureEmptyFileTarget`: nothing, or a non-directory that is removed.
    fn ensure_empty_file_target(&self, target: &Path) -> Result<()> {
        match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {
                let path = self.shown_dest(target).display().to_string();
                Err(Error::ReplaceDirectory { path })
            }
            Ok(_) => std::fs::remove_file(target).ctx("remove", self.shown_dest(target)),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::io("lstat", self.shown_dest(target), e)),
        }
    }

    fn mode_for(&self, meta: &Metadata) -> u32 {
        let mode = meta.mode() & 0o7777;
        match &self.chmod {
            Some(chmod) => chmod.apply(mode, meta.is_dir()),
            None => mode,
        }
    }

    /// fsutil's `copyFileInfo` + `copyXAttrs`: owner, then mode (chown clears setuid), times,
    /// then xattrs (errors ignored, as BuildKit's handler only logs them).
    pub fn apply_meta(&mut self, src: &Path, target: &Path, meta: &Metadata) -> Result<()> {
        let owner = match self.owner {
            OwnerRule::Fixed(owner) => owner,
            OwnerRule::Keep => Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
        };
        lchown(target, owner).ctx("chown", self.shown_dest(target))?;
        if !meta.file_type().is_symlink() {
            let mode = self.mode_for(meta);
            std::fs::set_permissions(target, PermissionsExt::from_mode(mode))
                .ctx("chmod", self.shown_dest(target))?;
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: meta.atime(),
                tv_nsec: meta.atime_nsec(),
            },
            last_modification: Timespec {
                tv_sec: meta.mtime(),
                tv_nsec: meta.mtime_nsec(),
            },
        };
        rustix::fs::utimensat(CWD, target, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("utimes", self.shown_dest(target), e.into()))?;
        self.stats.xattr_errors += copy_xattrs(src, target);
        Ok(())
    }

    fn shown_src(&self, path: &Path) -> PathBuf {
        shown(self.src_root, path)
    }

    fn shown_dest(&self, path: &Path) -> PathBuf {
        shown(self.dest_root, path)
    }
}

/// `path` relative to `root`, as `/x/y` (BuildKit strips the mount root from errors).
pub(crate) fn shown(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => path.to_path_buf(),
    }
}

/// `lchown`, skipped when the owner is already right (so unprivileged runs work when nothing
/// changes).
pub(crate) fn lchown(path: &Path, owner: Owner) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == owner.uid && meta.gid() == owner.gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
}

/// Copies extended attributes; returns how many could not be copied.
fn copy_xattrs(src: &Path, target: &Path) -> u64 {
    let mut names = vec![0u8; 4096];
    let len = match rustix::fs::llistxattr(src, &mut names) {
        Ok(len) => len,
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            match rustix::fs::llistxattr(src, &mut names) {
                Ok(len) => len,
                Err(_) => return 1,
            }
        }
        Err(_) => return 0,
    };
    let mut failed = 0;
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        let ok = rustix::fs::lgetxattr(src, name, &mut value).and_then(|n| {
            rustix::fs::lsetxattr(target, name, &value[..n], rustix::fs::XattrFlags::empty())
        });
        failed += u64::from(ok.is_err());
    }
    failed
}
