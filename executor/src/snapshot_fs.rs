//! Tree operations of the snapshotter: faithful copies (owners, modes, times, xattrs, device
//! nodes, hard links), the naive snapshotter's comparison diff written in overlayfs format
//! (changed entries + char 0:0 whiteouts), applying such a layer onto a full tree, and disk
//! usage.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{SFlag, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use crate::error::{Error, IoContext, Result};

/// The overlayfs xattr marking an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Hard links seen during one copy: (dev, ino) → first destination.
pub(crate) type LinkMap = HashMap<(u64, u64), std::path::PathBuf>;

/// Names and values of `path`'s extended attributes (not following symlinks).
pub(crate) fn xattrs(path: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    let io = |e: rustix::io::Errno| Error::io("list xattrs", path, e.into());
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..]).map_err(io)?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let len = match rustix::fs::lgetxattr_query(path, name) {
            Ok(len) => len,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(io(e)),
        };
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..]).map_err(io)?;
        value.truncate(got);
        out.push((name.to_os_string(), value));
    }
    out.sort();
    Ok(out)
}

/// Sets an extended attribute (not following symlinks).
pub(crate) fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .map_err(|e| Error::io("set xattr", path, e.into()))
}

/// Owner, mode, xattrs and times of `src` onto `dst` (in that order: chown clears setuid).
fn copy_metadata(src: &Path, dst: &Path, m: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).ctx("chown", dst)?;
    if !m.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx("chmod", dst)?;
    }
    for (name, value) in xattrs(src)? {
        set_xattr(dst, &name, &value)?;
    }
    let at = TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::sys(format!("utimensat {}", dst.display()), e))
}

/// Copies one entry (recursively for directories), preserving everything a layer records.
pub(crate) fn copy_entry(src: &Path, dst: &Path, links: &mut LinkMap) -> Result<()> {
    let m = fs::symlink_metadata(src).ctx("stat", src)?;
    let ft = m.file_type();
    if ft.is_dir() {
        fs::create_dir(dst).ctx("mkdir", dst)?;
        for e in fs::read_dir(src).ctx("read dir", src)? {
            let e = e.ctx("read dir", src)?;
            copy_entry(&e.path(), &dst.join(e.file_name()), links)?;
        }
    } else {
        if m.nlink() > 1
            && let Some(first) = links.get(&(m.dev(), m.ino()))
        {
            return fs::hard_link(first, dst).ctx("hard link", dst);
        }
        if ft.is_file() {
            fs::copy(src, dst).ctx("copy", dst)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(src).ctx("readlink", src)?;
            std::os::unix::fs::symlink(&target, dst).ctx("symlink", dst)?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            crate::sys::mknod_raw(dst, kind, m.mode() & 0o7777, m.rdev())?;
        }
        if m.nlink() > 1 {
            links.insert((m.dev(), m.ino()), dst.to_path_buf());
        }
    }
    copy_metadata(src, dst, &m)
}

/// Copies the contents of directory `src` into the existing directory `dst`, and `src`'s
/// own metadata onto `dst`.
pub(crate) fn copy_tree_into(src: &Path, dst: &Path) -> Result<()> {
    let mut links = LinkMap::new();
    for e in fs::read_dir(src).ctx("read dir", src)? {
        let e = e.ctx("read dir", src)?;
        copy_entry(&e.path(), &dst.join(e.file_name()), &mut links)?;
    }
    let m = fs::symlink_metadata(src).ctx("stat", src)?;
    copy_metadata(src, dst, &m)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = fs::File::open(a).ctx("open", a)?;
    let mut fb = fs::File::open(b).ctx("open", b)?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).ctx("read", a)?;
        let nb = read_full(&mut fb, &mut bb).ctx("read", b)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// True when the two non-directory entries differ the way containerd's double walk sees it:
/// type, mode, owner, size, mtime, rdev, link target, xattrs; content when the mtime has no
/// sub-second part (a copy with coarse timestamps may hide an edit).
fn entry_changed(cur: &Path, cm: &fs::Metadata, base: &Path, bm: &fs::Metadata) -> Result<bool> {
    if cm.mode() != bm.mode()
        || cm.uid() != bm.uid()
        || cm.gid() != bm.gid()
        || cm.mtime() != bm.mtime()
        || cm.mtime_nsec() != bm.mtime_nsec()
    {
        return Ok(true);
    }
    let ft = cm.file_type();
    if ft.is_dir() {
        return Ok(xattrs(cur)? != xattrs(base)?);
    }
    if cm.len() != bm.len() || cm.rdev() != bm.rdev() {
        return Ok(true);
    }
    if ft.is_symlink() && fs::read_link(cur).ok() != fs::read_link(base).ok() {
        return Ok(true);
    }
    if xattrs(cur)? != xattrs(base)? {
        return Ok(true);
    }
    if ft.is_file() && cm.mtime_nsec() == 0 {
        return Ok(!same_content(cur, base)?);
    }
    Ok(false)
}

/// Writes into `out` (an existing empty directory) the overlay-format diff turning `base`
/// into `cur`. Returns true when anything was written.
pub(crate) fn naive_diff(cur: &Path, base: &Path, out: &Path) -> Result<bool> {
    let mut links = LinkMap::new();
    diff_dir(cur, base, out, &mut links)
}

fn diff_dir(cur: &Path, base: &Path, out: &Path, links: &mut LinkMap) -> Result<bool> {
    let mut changed = false;
    let mut names: Vec<OsString> = Vec::new();
    for e in fs::read_dir(cur).ctx("read dir", cur)? {
        names.push(e.ctx("read dir", cur)?.file_name());
    }
    names.sort();
    for name in &names {
        let (c, b, o) = (cur.join(name), base.join(name), out.join(name));
        let cm = fs::symlink_metadata(&c).ctx("stat", &c)?;
        let bm = fs::symlink_metadata(&b).ok();
        match bm {
            Some(bm) if cm.is_dir() && bm.is_dir() => {
                let own = entry_changed(&c, &cm, &b, &bm)?;
                fs::create_dir(&o).ctx("mkdir", &o)?;
                let inner = diff_dir(&c, &b, &o, links)?;
                if inner || own {
                    copy_metadata(&c, &o, &cm)?;
                    changed = true;
                } else {
                    fs::remove_dir(&o).ctx("rmdir", &o)?;
                }
            }
            Some(bm) if cm.file_type() == bm.file_type() && !entry_changed(&c, &cm, &b, &bm)? => {}
            _ => {
                copy_entry(&c, &o, links)?;
                changed = true;
            }
        }
    }
    if let Ok(rd) = fs::read_dir(base) {
        for e in rd {
            let name = e.ctx("read dir", base)?.file_name();
            if !names.contains(&name) {
                crate::sys::mknod_char(&out.join(&name), 0, 0, 0)?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).ctx("remove", p),
        Ok(_) => fs::remove_file(p).ctx("remove", p),
        Err(_) => Ok(()),
    }
}

/// Applies an overlay-format layer (`layer`) onto the full tree `dst`: whiteouts delete,
/// opaque directories replace, everything else is copied over.
pub(crate) fn apply_layer(layer: &Path, dst: &Path) -> Result<()> {
    let mut links = LinkMap::new();
    apply_dir(layer, dst, &mut links)
}

fn apply_dir(layer: &Path, dst: &Path, links: &mut LinkMap) -> Result<()> {
    for e in fs::read_dir(layer).ctx("read dir", layer)? {
        let e = e.ctx("read dir", layer)?;
        let (l, d) = (e.path(), dst.join(e.file_name()));
        let lm = fs::symlink_metadata(&l).ctx("stat", &l)?;
        if is_whiteout(&lm) {
            remove_any(&d)?;
        } else if lm.is_dir() {
            let opaque =
                rustix::fs::lgetxattr(&l, OPAQUE_XATTR, &mut [0u8; 4][..]).is_ok_and(|n| n == 1);
            let existing_dir = fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir());
            if opaque || !existing_dir {
                remove_any(&d)?;
                fs::create_dir(&d).ctx("mkdir", &d)?;
            }
            apply_dir(&l, &d, links)?;
            copy_metadata(&l, &d, &lm)?;
            let _ = rustix::fs::lremovexattr(&d, OPAQUE_XATTR);
        } else {
            remove_any(&d)?;
            copy_entry(&l, &d, links)?;
        }
    }
    Ok(())
}

/// Disk usage of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes (hard links counted once).
    pub size_bytes: u64,
    /// Number of inodes.
    pub inodes: u64,
}

pub(crate) fn usage(path: &Path) -> Result<Usage> {
    let mut seen = std::collections::HashSet::new();
    let mut u = Usage::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).ctx("stat", &p)?;
        if seen.insert((m.dev(), m.ino())) {
            u.inodes += 1;
            u.size_bytes += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p).ctx("read dir", &p)? {
                stack.push(e.ctx("read dir", &p)?.path());
            }
        }
    }
    Ok(u)
}
