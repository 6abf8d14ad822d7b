//! Safe extraction of a layer tar onto a directory that already holds the
//! layers below it (a naive snapshot; overlayfs comes with the build engine).
//!
//! - OCI/AUFS whiteouts: `.wh.NAME` deletes NAME from lower layers,
//!   `.wh..wh..opq` empties its directory of lower-layer content.
//! - Regular files, directories, symlinks, hard links, fifos and device nodes
//!   (device nodes need root; without it they are skipped and counted), long
//!   names (PAX/GNU, via the `tar` crate), GNU sparse files, xattrs (as root).
//! - Nothing is written outside the destination: entries with `..` or an
//!   absolute path, writes through a symlink that resolves outside, and hard
//!   links to outside are refused with an error naming the entry. Symlinks
//!   met while resolving a path are followed *inside* the root (an absolute
//!   target means root-relative), as a container would see them.
//!
//! Two modes ([`UnpackMode`]):
//! - `Merge` (the default, [`unpack_layer`]): apply the layer onto a
//!   directory holding the layers below it; whiteouts delete.
//! - `OverlayLower`: unpack ONE layer into an empty directory that becomes an
//!   overlayfs lowerdir; whiteouts become overlayfs ones: `.wh.NAME` a
//!   character device 0:0 named NAME, `.wh..wh..opq` the xattr
//!   `trusted.overlay.opaque=y` on its directory. Needs root (mknod, the
//!   `trusted.` namespace).
//!
//! In both modes xattrs are applied as root (files, directories, links,
//! devices) except overlayfs' own (`trusted.overlay.*`, `user.overlay.*`),
//! which a layer must never be able to plant on a snapshot.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::media::{Compression, decompress};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const MAX_SYMLINK_HOPS: u32 = 40;

/// Where a layer goes; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnpackMode {
    /// Onto the merged tree of the layers below: whiteouts delete.
    #[default]
    Merge,
    /// Into an empty directory used as an overlayfs lowerdir: whiteouts
    /// become overlayfs whiteouts (char device 0:0, opaque xattr). Root only.
    OverlayLower,
}

/// The xattr overlayfs reads to see a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub whiteouts: u64,
    /// Device nodes not created because we are not root.
    pub skipped_devices: u64,
}

/// Unpacks a (possibly compressed) layer onto `dest`. `compression` is a
/// hint (from the media type); the magic bytes decide.
pub fn unpack_layer(
    reader: impl Read,
    compression: Option<Compression>,
    dest: &Path,
) -> Result<UnpackStats> {
    unpack_layer_with(reader, compression, dest, UnpackMode::Merge)
}

/// Unpacks a (possibly compressed) layer into `dest` in the given mode.
/// `OverlayLower` wants `dest` empty (it is created if missing) and root.
pub fn unpack_layer_with(
    reader: impl Read,
    compression: Option<Compression>,
    dest: &Path,
    mode: UnpackMode,
) -> Result<UnpackStats> {
    let is_root = rustix::process::geteuid().is_root();
    if mode == UnpackMode::OverlayLower {
        if !is_root {
            return Err(Error::NeedsRoot {
                what: format!(
                    "unpacking a layer as an overlayfs lowerdir into {}",
                    dest.display()
                ),
                reason: "whiteouts are character devices 0:0 (mknod) and opaque \
                         directories carry a trusted.overlay.* xattr"
                    .into(),
            });
        }
        fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        let mut children = fs::read_dir(dest).map_err(|e| Error::io(dest, e))?;
        if children.next().is_some() {
            return Err(Error::InvalidImage {
                what: dest.display().to_string(),
                reason: "an overlayfs lowerdir unpack needs an empty directory".into(),
            });
        }
    }
    let stream = decompress(reader, compression).map_err(|e| Error::io(dest, e))?;
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(is_root);
    // Applied by us, filtered (see `apply_xattrs`).
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut u = Unpacker {
        root: dest.to_path_buf(),
        is_root,
        mode,
        created: HashSet::new(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
    };
    let entries = archive.entries().map_err(|e| Error::io(dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io(dest, e))?;
        u.entry(&mut entry)?;
    }
    u.finish()?;
    Ok(u.stats)
}

struct Unpacker {
    root: PathBuf,
    is_root: bool,
    mode: UnpackMode,
    /// Paths (relative) this layer created: whiteouts never delete those.
    created: HashSet<PathBuf>,
    /// Directories whose mode and mtime are applied at the end, deepest first.
    dirs: Vec<(PathBuf, u32, Option<u64>)>,
    stats: UnpackStats,
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// The entry's path as plain components; `..` and absolute paths are refused.
fn clean_components(raw: &[u8], shown: &str) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => return Err(unsafe_entry(shown, "path contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(shown, "absolute path"));
            }
        }
    }
    Ok(out)
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            return Ok(());
        }
        let mut comps = clean_components(&raw, &shown)?;
        let Some(name) = comps.pop() else {
            // The root itself ("./"): nothing to create.
            return Ok(());
        };
        self.stats.entries += 1;
        let parent = self.resolve_dir(&comps, &shown, true)?;
        let rel_parent: PathBuf = comps.iter().collect();
        let name_str = name.to_string_lossy();

        if name_str == OPAQUE_WHITEOUT {
            self.stats.whiteouts += 1;
            if self.mode == UnpackMode::OverlayLower {
                let dir_abs = self.root.join(&parent);
                return crate::xattrs::set(&dir_abs, OVERLAY_OPAQUE_XATTR.as_bytes(), b"y");
            }
            let dir_abs = self.root.join(&parent);
            let children = fs::read_dir(&dir_abs).map_err(|e| Error::io(&dir_abs, e))?;
            for child in children {
                let child = child.map_err(|e| Error::io(&dir_abs, e))?;
                let rel = rel_parent.join(child.file_name());
                if !self.created.contains(&rel) {
                    remove_any(&child.path())?;
                }
            }
            return Ok(());
        }
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            self.stats.whiteouts += 1;
            if target.is_empty() || target == "." || target == ".." {
                return Err(unsafe_entry(&shown, "malformed whiteout"));
            }
            let rel = rel_parent.join(target);
            if self.mode == UnpackMode::OverlayLower {
                // Same-layer content wins over a whiteout of the same name.
                if !self.created.contains(&rel) {
                    self.overlay_whiteout(&self.root.join(&parent).join(target))?;
                }
                return Ok(());
            }
            if !self.created.contains(&rel) {
                remove_any(&self.root.join(&parent).join(target))?;
            }
            return Ok(());
        }

        let dst = self.root.join(&parent).join(&name);
        let rel = rel_parent.join(&name);
        let existing = fs::symlink_metadata(&dst).ok();
        if kind.is_dir() {
            match &existing {
                Some(m) if m.is_dir() => {}
                Some(_) => remove_any(&dst)?,
                None => {}
            }
            if !dst.is_dir() {
                fs::create_dir(&dst).map_err(|e| Error::io(&dst, e))?;
            }
            let mode = entry.header().mode().unwrap_or(0o755);
            let mtime = entry.header().mtime().ok();
            // Keep it writable for the rest of the unpack; the mode is applied last.
            set_mode(&dst, 0o700 | (mode & 0o7777))?;
            if self.is_root {
                chown(entry.header(), &dst)?;
                apply_xattrs(entry, &dst)?;
            }
            self.dirs.push((dst, mode, mtime));
            self.created.insert(rel);
            return Ok(());
        }
        if let Some(m) = &existing {
            if m.is_dir() {
                remove_any(&dst)?;
            } else {
                fs::remove_file(&dst).map_err(|e| Error::io(&dst, e))?;
            }
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| unsafe_entry(&shown, "hard link without a target"))?
                .into_owned();
            let link_shown = String::from_utf8_lossy(&link).into_owned();
            let mut lcomps = clean_components(&link, &shown).map_err(|_| {
                unsafe_entry(
                    &shown,
                    format!("hard link to {link_shown:?} leaves the root"),
                )
            })?;
            let lname = lcomps
                .pop()
                .ok_or_else(|| unsafe_entry(&shown, "hard link to the root"))?;
            let lparent = self.resolve_dir(&lcomps, &shown, false)?;
            let src = self.root.join(lparent).join(lname);
            let meta = fs::symlink_metadata(&src).map_err(|_| {
                unsafe_entry(
                    &shown,
                    format!("hard link target {link_shown:?} does not exist"),
                )
            })?;
            if meta.is_dir() {
                return Err(unsafe_entry(&shown, "hard link to a directory"));
            }
            fs::hard_link(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            if self.mknod(entry, &dst, &shown)? && self.is_root {
                apply_xattrs(entry, &dst)?;
            }
        } else {
            // Regular files (and unknown types, as POSIX says), symlinks.
            entry
                .unpack(&dst)
                .map_err(|e| Error::io(&dst, io::Error::other(format!("{shown}: {e}"))))?;
            if self.is_root {
                apply_xattrs(entry, &dst)?;
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    /// An overlayfs whiteout: a character device 0:0, mode 0, owned by root.
    fn overlay_whiteout(&self, path: &Path) -> Result<()> {
        use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
        if let Ok(m) = fs::symlink_metadata(path) {
            // Only an earlier whiteout of the same name can be there.
            if !m.is_dir() {
                fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| {
            Error::io(
                path,
                io::Error::other(format!("mknod overlayfs whiteout: {e}")),
            )
        })
    }

    /// Creates a fifo or device node; `false` when skipped (devices, not root).
    fn mknod<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dst: &Path,
        shown: &str,
    ) -> Result<bool> {
        use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (ft, dev) = if kind.is_fifo() {
            (FileType::Fifo, 0)
        } else {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let ft = if kind.is_character_special() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            (ft, makedev(major, minor))
        };
        match mknodat(CWD, dst, ft, Mode::from_raw_mode(mode), dev) {
            Ok(()) => {}
            Err(e)
                if !self.is_root
                    && ft != FileType::Fifo
                    && (e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS) =>
            {
                self.stats.skipped_devices += 1;
                return Ok(false);
            }
            Err(e) => {
                return Err(Error::io(
                    dst,
                    io::Error::other(format!("{shown}: mknod: {e}")),
                ));
            }
        }
        if self.is_root {
            chown(h, dst)?;
        }
        set_mode(dst, mode)?;
        Ok(true)
    }

    /// Resolves directory components under the root, following symlinks
    /// inside it; creates missing directories when `create`. Returns the
    /// resolved path relative to the root.
    fn resolve_dir(&self, comps: &[OsString], shown: &str, create: bool) -> Result<PathBuf> {
        let mut todo: Vec<OsString> = comps.iter().rev().cloned().collect();
        let mut cur: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                if cur.pop().is_none() {
                    return Err(unsafe_entry(
                        shown,
                        "path resolves outside the root through a symlink",
                    ));
                }
                continue;
            }
            let abs = cur
                .iter()
                .fold(self.root.clone(), |p, c| p.join(c))
                .join(&c);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(unsafe_entry(shown, "too many levels of symlinks"));
                    }
                    let target = fs::read_link(&abs).map_err(|e| Error::io(&abs, e))?;
                    if target.is_absolute() {
                        cur.clear();
                    }
                    for part in target.components().rev() {
                        match part {
                            Component::Normal(n) => todo.push(n.to_os_string()),
                            Component::ParentDir => todo.push("..".into()),
                            _ => {}
                        }
                    }
                }
                Ok(m) if m.is_dir() => cur.push(c),
                Ok(_) => {
                    return Err(unsafe_entry(
                        shown,
                        format!(
                            "parent {} is not a directory",
                            abs.strip_prefix(&self.root).unwrap_or(&abs).display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&abs).map_err(|e| Error::io(&abs, e))?;
                    cur.push(c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(unsafe_entry(
                        shown,
                        format!("{} does not exist", abs.display()),
                    ));
                }
                Err(e) => return Err(Error::io(&abs, e)),
            }
        }
        Ok(cur.iter().collect())
    }

    fn finish(&mut self) -> Result<()> {
        // Deepest first, so setting a parent's mtime comes after its children changed.
        self.dirs
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, mtime) in &self.dirs {
            let mode = if self.is_root {
                mode & 0o7777
            } else {
                (mode & 0o7777) | 0o700
            };
            set_mode(path, mode)?;
            if let Some(t) = mtime {
                let t = filetime::FileTime::from_unix_time(*t as i64, 0);
                filetime::set_file_times(path, t, t).map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(())
    }
}

/// Applies the entry's `SCHILY.xattr.*` PAX records to `path` (after chown,
/// which would clear `security.capability`), except overlayfs' own. An
/// xattr the filesystem does not support (ENOTSUP, or EPERM for `user.*` on
/// a symlink) is skipped rather than failing the whole unpack.
fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<()> {
    use rustix::io::Errno;
    const PREFIX: &[u8] = b"SCHILY.xattr.";
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Ok(());
    };
    let mut attrs = Vec::new();
    for ext in exts.flatten() {
        if let Some(name) = ext.key_bytes().strip_prefix(PREFIX) {
            if !name.is_empty() && !crate::xattrs::is_overlay_xattr(name) {
                attrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    for (name, value) in attrs {
        match crate::xattrs::set_raw(path, &name, &value) {
            Ok(()) => {}
            Err(Errno::NOTSUP) => {}
            Err(Errno::PERM) if name.starts_with(b"user.") => {}
            Err(e) => return Err(crate::xattrs::errno_error(path, "lsetxattr", &name, e)),
        }
    }
    Ok(())
}

fn chown(h: &tar::Header, path: &Path) -> Result<()> {
    let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
    let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok());
    std::os::unix::fs::lchown(path, uid, gid).map_err(|e| Error::io(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}

/// Removes a file, symlink or whole directory tree; missing is fine. Makes
/// directories writable first so read-only trees go too.
pub fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.is_dir() {
        make_tree_writable(path)?;
        fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
    } else {
        fs::remove_file(path).map_err(|e| Error::io(path, e))
    }
}

fn make_tree_writable(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Ok(());
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        set_mode(dir, meta.permissions().mode() | 0o700)?;
    }
    for child in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let child = child.map_err(|e| Error::io(dir, e))?;
        if child
            .file_type()
            .map_err(|e| Error::io(child.path(), e))?
            .is_dir()
        {
            make_tree_writable(&child.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
