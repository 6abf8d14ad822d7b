#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::os::unix::fs::MetadataExt;

/// A tar built entry by entry with raw names (no validation, so hostile
/// names like `../x` can be written).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&str>,
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname = [0; 100];
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, 0o644, data, None)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, 0o755, b"", None)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Symlink, 0o777, b"", Some(target))
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, 0o644, b"", Some(target))
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn unpack(tar: &[u8], dest: &Path) -> Result<UnpackStats> {
    unpack_layer(tar, None, dest)
}

#[test]
fn files_dirs_symlinks_hardlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layer = Tar::new()
        .dir("./bin/")
        .file("./bin/busybox", b"#!binary")
        .symlink("./bin/sh", "busybox")
        .hardlink("./bin/ls", "./bin/busybox")
        .file("etc/deep/er/file", b"parents made on the fly")
        .raw("ro/", tar::EntryType::Directory, 0o555, b"", None)
        .file("ro/inside", b"written before the dir turns read-only")
        .bytes();
    let stats = unpack(&layer, root).unwrap();
    assert_eq!(stats.entries, 7);
    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"#!binary");
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let a = fs::metadata(root.join("bin/busybox")).unwrap();
    let b = fs::metadata(root.join("bin/ls")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link shares the inode");
    assert!(root.join("etc/deep/er/file").is_file());
    assert_eq!(fs::read(root.join("ro/inside")).unwrap().len(), 38);
    let mtime = fs::metadata(root.join("bin")).unwrap().mtime();
    assert_eq!(mtime, 1_700_000_000);
    // The whole tree can be removed again even with read-only dirs.
    remove_any(root).unwrap();
    assert!(!root.exists());
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lower = Tar::new()
        .file("a/keep", b"1")
        .file("a/gone", b"2")
        .file("a/sub/x", b"3")
        .file("o/old1", b"4")
        .file("o/old2", b"5")
        .file("top", b"6")
        .bytes();
    unpack(&lower, root).unwrap();
    let upper = Tar::new()
        .file("a/.wh.gone", b"")
        .file("a/.wh.sub", b"")
        .file(".wh.top", b"")
        .dir("o/")
        .file("o/new", b"7")
        .file("o/.wh..wh..opq", b"")
        .file("o/newer", b"8")
        .file("a/.wh.never-existed", b"")
        .bytes();
    let stats = unpack(&upper, root).unwrap();
    assert_eq!(stats.whiteouts, 5);
    assert!(root.join("a/keep").exists());
    assert!(!root.join("a/gone").exists());
    assert!(!root.join("a/sub").exists());
    assert!(!root.join("top").exists());
    assert!(
        !root.join("a/.wh.gone").exists(),
        "whiteout files are not created"
    );
    let mut o: Vec<_> = fs::read_dir(root.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    o.sort();
    assert_eq!(
        o,
        ["new", "newer"],
        "opaque dir keeps only this layer's content"
    );
}

#[test]
fn replaces_across_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    unpack(
        &Tar::new()
            .file("x/f", b"1")
            .file("y", b"2")
            .symlink("z", "y")
            .bytes(),
        root,
    )
    .unwrap();
    // dir -> file, file -> dir, symlink -> file (must not write through the symlink)
    unpack(
        &Tar::new()
            .file("x", b"now a file")
            .dir("y/")
            .file("z", b"own")
            .bytes(),
        root,
    )
    .unwrap();
    assert_eq!(fs::read(root.join("x")).unwrap(), b"now a file");
    assert!(root.join("y").is_dir());
    assert!(
        !fs::symlink_metadata(root.join("z"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(root.join("z")).unwrap(), b"own");
}

#[test]
fn symlinks_inside_are_followed_in_scope() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let layer = Tar::new()
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .symlink("abs", "/usr")
        .file("lib/libc.so", b"c")
        .file("abs/share/doc", b"d")
        .bytes();
    unpack(&layer, &root).unwrap();
    assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"c");
    // An absolute symlink target is root-relative, not the host's /usr.
    assert_eq!(fs::read(root.join("usr/share/doc")).unwrap(), b"d");
}

#[test]
fn escapes_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", Tar::new().file("../evil", b"x").bytes()),
        (
            "nested dotdot",
            Tar::new().file("a/../../evil", b"x").bytes(),
        ),
        ("absolute", Tar::new().file("/evil", b"x").bytes()),
        (
            "symlink then write through",
            Tar::new()
                .symlink("esc", "../outside")
                .file("esc/evil", b"x")
                .bytes(),
        ),
        (
            "deep symlink then write through",
            Tar::new()
                .dir("a/")
                .symlink("a/esc", "../../outside")
                .file("a/esc/evil", b"x")
                .bytes(),
        ),
        (
            "hard link to outside",
            Tar::new().hardlink("h", "../outside/secret").bytes(),
        ),
        (
            "hard link through symlink",
            Tar::new()
                .symlink("esc", "../outside")
                .hardlink("h", "esc/secret")
                .bytes(),
        ),
    ];
    for (what, layer) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        let err = unpack(&layer, &root).expect_err(what);
        let msg = err.to_string();
        assert!(matches!(err, Error::UnsafeEntry { .. }), "{what}: {msg}");
        assert!(msg.contains("refused"), "{what}: {msg}");
        assert!(!dir.path().join("evil").exists(), "{what}");
        assert!(!outside.join("evil").exists(), "{what}");
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{what}: outside untouched");
    }
}

#[test]
fn error_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let err = unpack(
        &Tar::new()
            .file("ok", b"")
            .file("../../etc/passwd", b"x")
            .bytes(),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");
}

#[test]
fn fifo_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut t = Tar::new();
    t.raw("fifo", tar::EntryType::Fifo, 0o600, b"", None);
    let mut h = tar::Header::new_gnu();
    h.set_path("null").unwrap();
    h.set_entry_type(tar::EntryType::Char);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o666);
    h.set_size(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    t.0.append(&h, &b""[..]).unwrap();
    let stats = unpack(&t.bytes(), root).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(root.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    if rustix::process::geteuid().is_root() {
        let m = fs::symlink_metadata(root.join("null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    } else {
        assert_eq!(stats.skipped_devices, 1);
    }
}

#[test]
fn long_names_and_compressions() {
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, &long, &b"long"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zs = zstd::encode_all(&tar[..], 1).unwrap();
    for blob in [tar.clone(), gz, zs] {
        let dir = tempfile::tempdir().unwrap();
        unpack(&blob, dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"long");
    }
}

fn overlay_unpack(tar: &[u8], dest: &Path) -> Result<UnpackStats> {
    unpack_layer_with(tar, None, dest, UnpackMode::OverlayLower)
}

/// Appends PAX xattr records for the next entry.
fn xattrs(t: &mut Tar, attrs: &[(&str, &[u8])]) {
    let recs: Vec<(String, &[u8])> = attrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
        .collect();
    t.0.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
        .unwrap();
}

#[test]
fn overlay_lower_mode_makes_overlayfs_whiteouts() {
    use std::os::unix::fs::FileTypeExt;
    if !rustix::process::geteuid().is_root() {
        let dir = tempfile::tempdir().unwrap();
        let err = overlay_unpack(&Tar::new().file("x", b"").bytes(), dir.path()).unwrap_err();
        assert!(matches!(err, Error::NeedsRoot { .. }), "{err}");
        eprintln!("skipped the rest: overlayfs whiteouts need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = &dir.path().join("lower");
    let mut t = Tar::new();
    t.file(".wh.gone", b"")
        .dir("cache/")
        .file("cache/.wh..wh..opq", b"")
        .file("cache/new", b"n")
        .file("same", b"content wins")
        .file(".wh.same", b"")
        .file("deep/er/.wh.x", b"");
    xattrs(
        &mut t,
        &[
            ("user.keep", b"1"),
            ("trusted.overlay.redirect", b"/etc"),
            ("trusted.overlay.opaque", b"y"),
        ],
    );
    t.dir("attrs/");
    xattrs(&mut t, &[("user.file", b"f\0v"), ("trusted.rbuild", b"t")]);
    t.file("attrs/file", b"x")
        .hardlink("attrs/link", "attrs/file")
        .symlink("attrs/sym", "file");
    let stats = overlay_unpack(&t.bytes(), root).unwrap();
    assert_eq!(stats.whiteouts, 4);

    for wh in ["gone", "deep/er/x"] {
        let m = fs::symlink_metadata(root.join(wh)).unwrap();
        assert!(m.file_type().is_char_device(), "{wh}");
        assert_eq!(m.rdev(), rustix::fs::makedev(0, 0), "{wh}");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0), "{wh}");
    }
    assert!(!root.join(".wh.gone").exists());
    assert!(!root.join("cache/.wh..wh..opq").exists());
    let get = |p: &str, n: &str| crate::xattrs::get(&root.join(p), n.as_bytes()).unwrap();
    assert_eq!(
        get("cache", "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(root.join("cache/new")).unwrap(), b"n");
    assert_eq!(fs::read(root.join("same")).unwrap(), b"content wins");
    // A layer cannot plant overlayfs' own xattrs; others are kept, on dirs too.
    assert_eq!(get("attrs", "user.keep").as_deref(), Some(&b"1"[..]));
    assert_eq!(get("attrs", "trusted.overlay.redirect"), None);
    assert_eq!(get("attrs", "trusted.overlay.opaque"), None);
    assert_eq!(
        get("attrs/file", "user.file").as_deref(),
        Some(&b"f\0v"[..])
    );
    let a = fs::metadata(root.join("attrs/file")).unwrap();
    assert_eq!(
        a.ino(),
        fs::metadata(root.join("attrs/link")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(root.join("attrs/sym")).unwrap(),
        Path::new("file")
    );

    // Only into an empty directory; escapes are refused as in merge mode.
    let err = overlay_unpack(&Tar::new().file("y", b"").bytes(), root).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let other = dir.path().join("other");
    let err = overlay_unpack(&Tar::new().file("../evil", b"").bytes(), &other).unwrap_err();
    assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
    let err = overlay_unpack(
        &Tar::new().file("../.wh.evil", b"").bytes(),
        &dir.path().join("o2"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn merge_mode_applies_xattrs_without_overlay_ones() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: xattrs are applied as root only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    xattrs(
        &mut t,
        &[("user.d", b"1"), ("trusted.overlay.opaque", b"y")],
    );
    t.dir("d/");
    xattrs(&mut t, &[("user.f", b"2")]);
    t.file("d/f", b"x");
    unpack(&t.bytes(), dir.path()).unwrap();
    let get = |p: &str, n: &str| crate::xattrs::get(&dir.path().join(p), n.as_bytes()).unwrap();
    assert_eq!(get("d", "user.d").as_deref(), Some(&b"1"[..]));
    assert_eq!(get("d", "trusted.overlay.opaque"), None);
    assert_eq!(get("d/f", "user.f").as_deref(), Some(&b"2"[..]));
}
