//! `rbuild build -`: stdin is either the build context as a tar (plain, gzip, bzip2, xz or
//! zstd; the Dockerfile inside it, `-f` naming it relative to the archive's root) or a
//! Dockerfile alone (no context). Detected as the docker CLI does (`IsArchive` on the first
//! 512 bytes: a known compression magic, or a tar header that reads).

use std::io::{Read, Write as _};
use std::path::Path;

use rbuild_executor::fileop::archive::{Compression, extract_context};

/// What stdin held.
pub enum StdinInput {
    /// The context, unpacked into a temporary directory (removed on drop).
    Context(tempfile::TempDir),
    /// A Dockerfile's bytes.
    Dockerfile(Vec<u8>),
}

const HEADER: usize = 512;

/// Docker's `IsArchive`: compressed, or a valid first tar header.
pub fn is_archive(head: &[u8]) -> bool {
    if Compression::detect(head) != Compression::None {
        return true;
    }
    if head.len() < HEADER {
        return false;
    }
    // A header reads when its checksum (the sum of its bytes, the checksum field counted
    // as spaces; unsigned or signed, as Go's archive/tar accepts) matches.
    let h = &head[..HEADER];
    let field = String::from_utf8_lossy(&h[148..156]);
    let Ok(stored) = i64::from_str_radix(field.trim_matches(|c: char| c == ' ' || c == '\0'), 8)
    else {
        return false;
    };
    let spaces = 8 * i64::from(b' ');
    let outside = |i: &usize| !(148..156).contains(i);
    let unsigned: i64 = h
        .iter()
        .enumerate()
        .filter(|(i, _)| outside(i))
        .map(|(_, b)| i64::from(*b))
        .sum::<i64>()
        + spaces;
    let signed: i64 = h
        .iter()
        .enumerate()
        .filter(|(i, _)| outside(i))
        .map(|(_, b)| i64::from(*b as i8))
        .sum::<i64>()
        + spaces;
    stored == unsigned || stored == signed
}

/// Reads stdin; a tar is spooled to a temporary file under `tmp_parent` and unpacked next
/// to it.
pub fn read(mut input: impl Read, tmp_parent: &Path) -> Result<StdinInput, String> {
    let mut head = Vec::with_capacity(HEADER);
    (&mut input)
        .take(HEADER as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("reading stdin: {e}"))?;
    if !is_archive(&head) {
        let mut rest = head;
        input
            .read_to_end(&mut rest)
            .map_err(|e| format!("reading the Dockerfile from stdin: {e}"))?;
        return Ok(StdinInput::Dockerfile(rest));
    }
    std::fs::create_dir_all(tmp_parent).map_err(|e| format!("{}: {e}", tmp_parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("stdin-context-")
        .tempdir_in(tmp_parent)
        .map_err(|e| format!("a directory for the context on stdin: {e}"))?;
    let tar_path = dir.path().join("context.tar");
    let ctx = dir.path().join("context");
    let mut spool = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tar_path)?;
        f.write_all(&head)?;
        std::io::copy(&mut input, &mut f)?;
        std::fs::create_dir(&ctx)
    };
    spool().map_err(|e| format!("reading the context from stdin: {e}"))?;
    extract_context(&tar_path, &ctx)
        .map_err(|e| format!("unpacking the context from stdin: {e}"))?;
    std::fs::remove_file(&tar_path).map_err(|e| format!("{}: {e}", tar_path.display()))?;
    Ok(StdinInput::Context(dir))
}

/// The context directory inside what [`read`] made.
pub fn context_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("context")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn detects_tars_and_dockerfiles() {
        assert!(!is_archive(b"FROM busybox\nRUN true\n"));
        assert!(is_archive(&tar_of(&[("Dockerfile", b"FROM busybox\n")])));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x").unwrap();
        assert!(is_archive(&gz.finish().unwrap()));
        // 512 bytes of text are not a tar header.
        assert!(!is_archive(&[b'#'; 600]));
    }

    #[test]
    fn unpacks_a_tar_and_passes_a_dockerfile_through() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tar_of(&[("Dockerfile", b"FROM busybox\n"), ("src/a.txt", b"a")]);
        let StdinInput::Context(dir) = read(&t[..], tmp.path()).unwrap() else {
            panic!("not a context")
        };
        let ctx = context_dir(&dir);
        assert_eq!(std::fs::read(ctx.join("src/a.txt")).unwrap(), b"a");
        assert!(!dir.path().join("context.tar").exists());
        drop(dir);
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "cleaned up"
        );

        let StdinInput::Dockerfile(d) = read(&b"FROM busybox\n"[..], tmp.path()).unwrap() else {
            panic!("not a Dockerfile")
        };
        assert_eq!(d, b"FROM busybox\n");
    }

    #[test]
    fn refuses_entries_that_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // `append_data` refuses `..`; write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(read(&t[..], tmp.path()).is_err());
        assert!(!tmp.path().join("escape").exists());
    }
}
