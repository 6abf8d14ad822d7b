//! A deterministic tar of a directory tree: depth-first, each directory's
//! entries sorted by the bytes of their names in the archive (so parents come
//! before children), ustar headers with PAX records only where ustar cannot
//! hold a value, no user/group names, no atime/ctime, mtimes (optionally)
//! clamped. Hard links by (dev, inode) point at the first path written.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::xattrs;

use super::WhiteoutSource;

const BLOCK: usize = 512;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];
/// Overlayfs features whose upper dirs cannot be expressed as an OCI layer.
const UNEXPORTABLE_XATTRS: [(&[u8], &str); 4] = [
    (
        b"trusted.overlay.redirect",
        "a renamed directory (overlayfs redirect_dir)",
    ),
    (
        b"user.overlay.redirect",
        "a renamed directory (overlayfs redirect_dir)",
    ),
    (
        b"trusted.overlay.metacopy",
        "a metadata-only copy-up (overlayfs metacopy)",
    ),
    (
        b"user.overlay.metacopy",
        "a metadata-only copy-up (overlayfs metacopy)",
    ),
];
/// Read buffer for file contents.
const READ_BUF: usize = 1 << 20;

/// What goes into the tar, and how.
#[derive(Debug, Clone, Copy)]
pub(super) struct TarOptions {
    pub whiteouts: WhiteoutSource,
    pub source_date_epoch: Option<u64>,
}

#[derive(Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    /// An overlayfs whiteout, written as an empty `.wh.NAME` file.
    Whiteout,
    /// The `.wh..wh..opq` marker of an opaque directory.
    Opaque,
}

#[derive(Debug)]
struct Child {
    /// The name in the archive (`.wh.`-prefixed for whiteouts).
    name: Vec<u8>,
    kind: Kind,
    /// Source path and metadata; `None` for the opaque marker.
    src: Option<(PathBuf, Metadata)>,
}

/// One directory being walked: its archive path and its children, reversed
/// (next one last).
struct Frame {
    rel: Vec<u8>,
    todo: Vec<Child>,
}

/// Writes the tar of `root` to `out`; `sink` names `out` in errors.
pub(super) fn write_tree<W: Write>(
    root: &Path,
    opts: TarOptions,
    out: &mut W,
    sink: &Path,
) -> Result<()> {
    let meta = fs::symlink_metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::LayerSource {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let mut w = TarWriter {
        out,
        sink,
        opts,
        buf: vec![0; READ_BUF],
        links: HashMap::new(),
    };
    let mut stack = vec![Frame {
        rel: Vec::new(),
        todo: children(root, &opts)?,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(child) = frame.todo.pop() else {
            stack.pop();
            continue;
        };
        let mut path = frame.rel.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&child.name);
        w.entry(&path, &child)?;
        if let (Kind::Dir, Some((src, _))) = (&child.kind, &child.src) {
            let todo = children(src, &opts)?;
            stack.push(Frame { rel: path, todo });
        }
    }
    // End of archive: two zero blocks.
    w.write(&[0u8; 2 * BLOCK])?;
    Ok(())
}

/// The entries of directory `dir`, sorted by archive name, reversed.
fn children(dir: &Path, opts: &TarOptions) -> Result<Vec<Child>> {
    let mut out = Vec::new();
    let overlay = opts.whiteouts == WhiteoutSource::Overlay;
    if overlay && is_opaque(dir)? {
        out.push(Child {
            name: OPAQUE_WHITEOUT.to_vec(),
            kind: Kind::Opaque,
            src: None,
        });
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        let ft = meta.file_type();
        let name = entry.file_name().as_bytes().to_vec();
        let kind = if ft.is_char_device() && meta.rdev() == 0 && overlay {
            Kind::Whiteout
        } else if name.starts_with(WHITEOUT_PREFIX) {
            return Err(Error::LayerSource {
                path,
                reason: "the name starts with \".wh.\", which a layer reserves for whiteouts"
                    .into(),
            });
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else {
            // Sockets (and anything unknown) have no place in a layer.
            continue;
        };
        let name = match kind {
            Kind::Whiteout => [WHITEOUT_PREFIX, &name].concat(),
            _ => name,
        };
        out.push(Child {
            name,
            kind,
            src: Some((path, meta)),
        });
    }
    out.sort_unstable_by(|a, b| b.name.cmp(&a.name));
    Ok(out)
}

fn is_opaque(dir: &Path) -> Result<bool> {
    for name in OPAQUE_XATTRS {
        if xattrs::get(dir, name)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fields of one ustar header (plus what needs PAX).
#[derive(Debug, Default)]
struct Header<'a> {
    path: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &'a [u8],
    dev: Option<(u32, u32)>,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

struct TarWriter<'a, W> {
    out: &'a mut W,
    sink: &'a Path,
    opts: TarOptions,
    buf: Vec<u8>,
    /// (dev, inode) of files with several links → their first archive path.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> TarWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .map_err(|e| Error::io(self.sink, e))
    }

    fn mtime(&self, meta: &Metadata) -> u64 {
        let t = u64::try_from(meta.mtime()).unwrap_or(0);
        match self.opts.source_date_epoch {
            Some(epoch) => t.min(epoch),
            None => t,
        }
    }

    fn entry(&mut self, path: &[u8], child: &Child) -> Result<()> {
        let Some((src, meta)) = &child.src else {
            // The opaque marker: an empty file owned by root, mode 0, mtime 0.
            return self.header(&Header {
                path,
                kind: b'0',
                ..Header::default()
            });
        };
        if let Kind::Whiteout = child.kind {
            return self.header(&Header {
                path,
                kind: b'0',
                ..Header::default()
            });
        }
        let xattrs = self.xattrs(src)?;
        let mut h = Header {
            path,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: self.mtime(meta),
            xattrs: &xattrs,
            ..Header::default()
        };
        if !matches!(child.kind, Kind::Dir) && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                h.kind = b'1';
                h.link = &first;
                return self.header(&h);
            }
            self.links.insert(key, path.to_vec());
        }
        match child.kind {
            Kind::Dir => {
                let mut p = path.to_vec();
                p.push(b'/');
                h.path = &p;
                h.kind = b'5';
                self.header(&h)
            }
            Kind::Symlink => {
                let target = fs::read_link(src).map_err(|e| Error::io(src, e))?;
                h.kind = b'2';
                h.link = target.as_os_str().as_bytes();
                self.header(&h)
            }
            Kind::Fifo => {
                h.kind = b'6';
                self.header(&h)
            }
            Kind::Char | Kind::Block => {
                let rdev = meta.rdev();
                h.kind = if let Kind::Char = child.kind {
                    b'3'
                } else {
                    b'4'
                };
                h.dev = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
                self.header(&h)
            }
            Kind::File => {
                h.kind = b'0';
                h.size = meta.len();
                self.header(&h)?;
                self.contents(src, meta.len())
            }
            Kind::Whiteout | Kind::Opaque => Ok(()),
        }
    }

    /// The xattrs that go into the layer; refuses overlayfs states a layer
    /// cannot express.
    fn xattrs(&self, src: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut all = xattrs::list(src)?;
        if self.opts.whiteouts == WhiteoutSource::Overlay {
            for (name, what) in UNEXPORTABLE_XATTRS {
                if all.iter().any(|(n, _)| n == name) {
                    return Err(Error::LayerSource {
                        path: src.to_path_buf(),
                        reason: format!(
                            "{what} cannot be exported as a layer; mount the overlay with \
                             redirect_dir=off,metacopy=off"
                        ),
                    });
                }
            }
        }
        // Overlayfs' own bookkeeping, and SELinux labels (the host's policy,
        // not the image's: docker and BuildKit never export them either).
        all.retain(|(n, _)| !xattrs::is_overlay_xattr(n) && n != b"security.selinux");
        Ok(all)
    }

    /// Streams `len` bytes of a regular file, then the padding.
    fn contents(&mut self, src: &Path, len: u64) -> Result<()> {
        let mut f = File::open(src).map_err(|e| Error::io(src, e))?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(Error::LayerSource {
                        path: src.to_path_buf(),
                        reason: format!(
                            "file shrank while being read ({left} of {len} bytes missing)"
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(src, e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|e| Error::io(self.sink, e))?;
            left -= n as u64;
        }
        self.pad(len)
    }

    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes a PAX extended header if needed, then the ustar header.
    fn header(&mut self, h: &Header<'_>) -> Result<()> {
        let mut pax = Vec::new();
        if h.path.len() > 100 {
            pax_record(&mut pax, b"path", h.path);
        }
        if h.link.len() > 100 {
            pax_record(&mut pax, b"linkpath", h.link);
        }
        for (key, v, width) in [
            (&b"size"[..], h.size, 12),
            (b"uid", h.uid, 8),
            (b"gid", h.gid, 8),
            (b"mtime", h.mtime, 12),
        ] {
            if !fits_octal(v, width) {
                pax_record(&mut pax, key, v.to_string().as_bytes());
            }
        }
        for (name, value) in h.xattrs {
            pax_record(&mut pax, &[&b"SCHILY.xattr."[..], name].concat(), value);
        }
        if !pax.is_empty() {
            let name = pax_name(h.path);
            let block = ustar_block(&Header {
                path: &name,
                mode: 0o644,
                size: pax.len() as u64,
                kind: b'x',
                ..Header::default()
            });
            self.write(&block)?;
            self.write(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let block = ustar_block(h);
        self.write(&block)
    }
}

fn fits_octal(v: u64, width: usize) -> bool {
    // width - 1 octal digits, then NUL.
    v < 1u64 << (3 * (width - 1))
}

/// Go's naming of PAX headers (`dir/PaxHeaders.0/base`), cut to 100 bytes.
fn pax_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut name = [dir, b"PaxHeaders.0/", base].concat();
    name.truncate(100);
    name
}

/// Appends one PAX record: `LEN key=value\n`, LEN counting itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    loop {
        let total = base + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes `v` as zero-padded octal into `field` (last byte NUL); values that
/// do not fit (carried by PAX instead) are written as 0.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let v = if fits_octal(v, field.len()) { v } else { 0 };
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// One 512-byte ustar header block (names longer than 100 bytes are cut:
/// the PAX record before it carries them in full).
fn ustar_block(h: &Header<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = h.path.len().min(100);
    b[..n].copy_from_slice(&h.path[..n]);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.kind;
    let n = h.link.len().min(100);
    b[157..157 + n].copy_from_slice(&h.link[..n]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname, gname: empty.
    if let Some((major, minor)) = h.dev {
        octal(&mut b[329..337], u64::from(major));
        octal(&mut b[337..345], u64::from(minor));
    }
    // Checksum: the sum of all bytes with the checksum field as spaces.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}
