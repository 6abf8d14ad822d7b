//! Extended attributes through rustix (no `unsafe`): list, read and write
//! without following symlinks, with the path in every error.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Overlayfs keeps its own metadata in these namespaces; it never belongs in
/// a layer and a layer must never set it on a lowerdir.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn errno(path: &Path, what: &str, e: Errno) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::Error::from_raw_os_error(e.raw_os_error()).kind(),
            format!("{what}: {e}"),
        ),
    )
}

/// Is this errno "the filesystem has no xattrs (of this namespace)"?
fn unsupported(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// All xattr names and values of `path` (not following a symlink), sorted
/// by name. A filesystem without xattr support gives an empty list.
pub fn list(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names: Vec<u8> = Vec::new();
    loop {
        let want = match rustix::fs::llistxattr_query(path) {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(errno(path, "llistxattr", e)),
        };
        names.clear();
        names.reserve(want);
        match rustix::fs::llistxattr(path, rustix::buffer::spare_capacity(&mut names)) {
            Ok(_) => break,
            // Grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(errno(path, "llistxattr", e)),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = get(path, name)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr's value; `None` when it is not set (or xattrs are unsupported).
pub fn get(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    let name_os = OsStr::from_bytes(name);
    let mut value: Vec<u8> = Vec::new();
    loop {
        let want = match rustix::fs::lgetxattr_query(path, name_os) {
            Ok(n) => n,
            Err(e) if e == Errno::NODATA || unsupported(e) => return Ok(None),
            Err(e) => return Err(errno(path, "lgetxattr", e)),
        };
        value.clear();
        value.reserve(want);
        match rustix::fs::lgetxattr(path, name_os, rustix::buffer::spare_capacity(&mut value)) {
            Ok(_) => return Ok(Some(value)),
            Err(Errno::RANGE) => continue,
            Err(e) if e == Errno::NODATA => return Ok(None),
            Err(e) => return Err(errno(path, "lgetxattr", e)),
        }
    }
}

/// Sets an xattr on `path` itself (not a symlink's target).
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> Result<()> {
    set_raw(path, name, value).map_err(|e| errno_error(path, "lsetxattr", name, e))
}

/// [`set`] with the bare errno, for callers that tolerate some.
pub fn set_raw(path: &Path, name: &[u8], value: &[u8]) -> rustix::io::Result<()> {
    rustix::fs::lsetxattr(path, OsStr::from_bytes(name), value, XattrFlags::empty())
}

/// An xattr syscall's errno as the crate's error, naming path and attribute.
pub fn errno_error(path: &Path, what: &str, name: &[u8], e: Errno) -> Error {
    errno(
        path,
        &format!("{what} {}", String::from_utf8_lossy(name)),
        e,
    )
}
