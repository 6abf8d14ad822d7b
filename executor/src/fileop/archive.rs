//! ADD's local archive extraction and `--checksum` verification.
//!
//! Detection is by content, as BuildKit's `isArchivePath` (solver/llbsolver/file/unpack.go):
//! a regular file whose (gzip, bzip2, xz, zstd or no) compression is recognised by its magic
//! bytes and whose first tar header reads. The name does not matter. Extraction follows
//! BuildKit's `applyRootArchive` (unpack_root.go): entry names are cleaned and may not climb
//! out (`archive path "../x" is outside extraction root`), symlinks met on the way are
//! resolved inside the extraction directory (absolute targets relative to it, relative ones
//! climbing out refused), missing parents are made 0755, an existing entry is replaced (a
//! directory only by a non-directory), owners come from the headers unless `--chown`, modes
//! and mtimes from the headers, directory times are set last. Devices, fifos and other
//! entry types are refused like BuildKit ("unsupported tar entry").

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use sha2::Digest as _;

use super::CopyStats;
use super::owner::Owner;
use super::resolve::{Confine, is_missing, resolve};
use super::tree::lchown;
use crate::error::{Error, IoContext, Result};

/// The compressions ADD recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// From the first bytes of a stream (moby's `archive.DetectCompression`).
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Opens `path` decompressed.
fn open_decompressed(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 8];
    let n = read_up_to(&mut file, &mut head)?;
    let file = BufReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(file));
    Ok(match Compression::detect(&head[..n]) {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// BuildKit's `isArchivePath`: a regular file (not followed) whose first tar header reads.
pub fn is_archive(path: &Path) -> bool {
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return false;
    }
    let Ok(reader) = open_decompressed(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    let first = archive.entries().ok().and_then(|mut e| e.next());
    matches!(first, Some(Ok(_)))
}

/// Extracts a build context sent as a (possibly compressed) tar (`rbuild build - < ctx.tar`)
/// into the existing directory `dest`, with ADD's rules: no entry escapes `dest`, devices
/// and fifos are refused, owners and modes come from the headers.
pub fn extract_context(archive_path: &Path, dest: &Path) -> Result<CopyStats> {
    let mut stats = CopyStats::default();
    extract(archive_path, "the context on stdin", dest, None, &mut stats)?;
    Ok(stats)
}

/// Extracts the archive at `archive_path` into the directory `dest` (which exists).
/// `owner`: `--chown` (None keeps the headers' uid/gid).
pub(crate) fn extract(
    archive_path: &Path,
    shown_archive: &str,
    dest: &Path,
    owner: Option<Owner>,
    stats: &mut CopyStats,
) -> Result<()> {
    let reader = open_decompressed(archive_path).ctx("open", shown_archive)?;
    let mut archive = tar::Archive::new(reader);
    let fail = |entry: &str, reason: String| Error::Archive {
        archive: shown_archive.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let mut dirs: Vec<(PathBuf, Timestamps)> = Vec::new();
    let entries = archive.entries().map_err(|e| fail("", e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail("", e.to_string()))?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let name = clean_entry_name(&raw_name).map_err(|reason| fail(&raw_name, reason))?;
        if name.is_empty() {
            continue;
        }
        let err = |e: Error| fail(&raw_name, e.to_string());
        let io_err = |e: std::io::Error| fail(&raw_name, e.to_string());
        let target = resolve(dest, &name, kind.is_dir(), Confine::AbsoluteInRoot).map_err(err)?;
        let mode = header.mode().map_err(io_err)? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(io_err)?).unwrap_or(0);
        let gid = u32::try_from(header.gid().map_err(io_err)?).unwrap_or(0);
        let entry_owner = owner.unwrap_or(Owner { uid, gid });
        let mtime = i64::try_from(header.mtime().map_err(io_err)?).unwrap_or(0);
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        make_parents(dest, &target, owner.unwrap_or(Owner::ROOT)).map_err(err)?;
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && kind.is_dir() => {}
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target).map_err(io_err)?,
            Ok(_) => std::fs::remove_file(&target).map_err(io_err)?,
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(io_err(e)),
        }
        if kind.is_dir() {
            if let Err(e) = std::fs::create_dir(&target) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(io_err(e));
                }
            }
            lchown(&target, entry_owner).map_err(io_err)?;
            set_mode(&target, mode).map_err(io_err)?;
            dirs.push((target, times));
            stats.dirs += 1;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut out = File::create(&target).map_err(io_err)?;
            stats.bytes += std::io::copy(&mut entry, &mut out).map_err(io_err)?;
            drop(out);
            lchown(&target, entry_owner).map_err(io_err)?;
            set_mode(&target, mode).map_err(io_err)?;
            set_times(&target, &times).map_err(io_err)?;
            stats.files += 1;
        } else if kind.is_symlink() {
            let link = entry.link_name_bytes().unwrap_or_default();
            let link = std::ffi::OsStr::new(std::str::from_utf8(&link).unwrap_or_default());
            std::os::unix::fs::symlink(link, &target).map_err(io_err)?;
            lchown(&target, entry_owner).map_err(io_err)?;
            set_times(&target, &times).map_err(io_err)?;
            stats.symlinks += 1;
        } else if kind.is_hard_link() {
            let link = entry.link_name_bytes().unwrap_or_default();
            let link = clean_entry_name(&String::from_utf8_lossy(&link))
                .map_err(|r| fail(&raw_name, r))?;
            if link.is_empty() {
                return Err(fail(
                    &raw_name,
                    "hardlink targets the extraction root".into(),
                ));
            }
            let source = resolve(dest, &link, false, Confine::AbsoluteInRoot).map_err(err)?;
            std::fs::hard_link(&source, &target).map_err(io_err)?;
            stats.hardlinks += 1;
        } else {
            return Err(fail(
                &raw_name,
                format!("unsupported tar entry type {:?}", kind),
            ));
        }
    }
    for (dir, times) in dirs.iter().rev() {
        set_times(dir, times).ctx("utimes", dir)?;
    }
    Ok(())
}

/// BuildKit's `cleanRootTarPath`: leading `/` dropped, cleaned; `..` climbing out refused;
/// "" for the root.
fn clean_entry_name(name: &str) -> std::result::Result<String, String> {
    let trimmed = name.trim_start_matches('/');
    if super::resolve::climbs_out(trimmed) {
        return Err(format!("archive path {name:?} is outside extraction root"));
    }
    Ok(super::resolve::clean_rel(trimmed))
}

/// Makes the missing parents of `target` (below `dest`) 0755, owned by `owner`.
fn make_parents(dest: &Path, target: &Path, owner: Owner) -> Result<()> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let Ok(rel) = parent.strip_prefix(dest) else {
        return Ok(());
    };
    let mut cur = dest.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                let e = std::io::Error::from(std::io::ErrorKind::NotADirectory);
                return Err(Error::io("mkdir", &cur, e));
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(Error::io("lstat", &cur, e)),
        }
        std::fs::create_dir(&cur).ctx("mkdir", &cur)?;
        lchown(&cur, owner).ctx("chown", &cur)?;
        set_mode(&cur, 0o755).ctx("chmod", &cur)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode))
}

fn set_times(path: &Path, times: &Timestamps) -> std::io::Result<()> {
    rustix::fs::utimensat(CWD, path, times, AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Verifies a file against `ADD --checksum` (`sha256:<hex>`, `sha384:`, `sha512:`).
pub fn verify_checksum(path: &Path, expected: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidArgument {
        what: "--checksum",
        value: expected.to_owned(),
        reason: reason.to_owned(),
    };
    let (algorithm, hex_digest) = expected
        .split_once(':')
        .ok_or_else(|| invalid("expected algorithm:hex"))?;
    let want_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(invalid("unsupported digest algorithm")),
    };
    let lower = hex_digest
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex_digest.len() != want_len || !lower {
        return Err(invalid("malformed digest"));
    }
    let mut file = File::open(path).ctx("open", path)?;
    let actual = match algorithm {
        "sha256" => hash_with(sha2::Sha256::new(), &mut file),
        "sha384" => hash_with(sha2::Sha384::new(), &mut file),
        _ => hash_with(sha2::Sha512::new(), &mut file),
    }
    .ctx("read", path)?;
    if actual != hex_digest {
        return Err(Error::ChecksumMismatch {
            path: path.display().to_string(),
            expected: expected.to_owned(),
            actual: format!("{algorithm}:{actual}"),
        });
    }
    Ok(())
}

fn hash_with<D: sha2::Digest + std::io::Write>(
    mut hasher: D,
    file: &mut File,
) -> std::io::Result<String> {
    std::io::copy(file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Compression::Gzip
        );
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"hello"), Compression::None);
    }

    #[test]
    fn entry_names() {
        assert_eq!(clean_entry_name("/a/./b/"), Ok("a/b".to_owned()));
        assert_eq!(clean_entry_name("./"), Ok(String::new()));
        assert!(clean_entry_name("../x").is_err());
        assert!(clean_entry_name("a/../../x").is_err());
    }

    #[test]
    fn checksums() -> Result<()> {
        let dir = tempfile::tempdir().ctx("tempdir", "/tmp")?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello").ctx("write", &file)?;
        let sha = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        verify_checksum(&file, sha)?;
        let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(matches!(
            verify_checksum(&file, wrong),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(verify_checksum(&file, "md5:abc").is_err());
        Ok(())
    }
}
