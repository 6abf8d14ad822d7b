#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::{Command, Stdio};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn set_mtime(p: &Path, t: i64) {
    let ft = filetime::FileTime::from_unix_time(t, 0);
    filetime::set_symlink_file_times(p, ft, ft).unwrap();
}

/// Every path under `root`, deepest first, so directory mtimes stick.
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn touch_all(root: &Path, t: i64) {
    for p in all_paths(root) {
        set_mtime(&p, t);
    }
}

/// A tree with every kind a plain rootfs has.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"box\n").unwrap();
    fs::write(root.join("usr/bin/tool"), vec![7u8; 3 * 1024 * 1024 + 5]).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-link")).unwrap();
    symlink("tool", root.join("usr/bin/t")).unwrap();
    // Names that sort differently per-directory vs. as whole paths.
    fs::write(root.join("usr-x"), b"dash").unwrap();
    fs::write(root.join("a.b"), b"dot").unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join("f".repeat(90)), b"long").unwrap();
    symlink("x/".repeat(70), root.join("longlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    crate::xattrs::set(&root.join("etc/hostname"), b"user.rbuild.test", b"v\x00bin").unwrap();
    if is_root() {
        std::os::unix::fs::lchown(root.join("etc/hostname"), Some(1234), Some(5678)).unwrap();
        crate::xattrs::set(&root.join("etc"), b"trusted.overlay.origin", b"x").unwrap();
    }
    let _ = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    (d, s)
}

fn tar_of(dir: &Path, opts: &LayerOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let (diff, n) = write_tar(dir, opts, &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(diff, Digest::sha256(&out));
    out
}

struct Entry {
    path: String,
    kind: tar::EntryType,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    data: Vec<u8>,
}

fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(n) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((n.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header();
        assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
        assert!(h.groupname_bytes().is_none_or(|u| u.is_empty()));
        let mut data = Vec::new();
        let (path, kind, link) = (
            String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            h.entry_type(),
            e.link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
        );
        let (mode, uid, gid, mtime) = (
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
        );
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path,
            kind,
            link,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
            data,
        });
    }
    out
}

fn find<'a>(es: &'a [Entry], path: &str) -> &'a Entry {
    es.iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not in the layer"))
}

#[test]
fn sorted_depth_first_with_kinds_links_and_xattrs() {
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    let es = entries(&tar_of(d.path(), &LayerOptions::default()));
    let long = "d".repeat(120);
    let paths: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
    let want = vec![
        "a.b".to_string(),
        format!("{long}/"),
        format!("{long}/{}", "f".repeat(90)),
        "etc/".into(),
        "etc/hostname".into(),
        "fifo".into(),
        "longlink".into(),
        "usr/".into(),
        "usr/bin/".into(),
        "usr/bin/t".into(),
        "usr/bin/tool".into(),
        "usr/bin/tool-link".into(),
        "usr-x".into(),
    ];
    assert_eq!(paths, want, "no socket, no root entry, depth-first sorted");

    let tool = find(&es, "usr/bin/tool");
    assert_eq!(tool.mode, 0o4755);
    assert_eq!(tool.data.len(), 3 * 1024 * 1024 + 5);
    let link = find(&es, "usr/bin/tool-link");
    assert_eq!(link.kind, tar::EntryType::Link);
    assert_eq!(link.link.as_deref(), Some("usr/bin/tool"));
    assert!(link.data.is_empty());
    assert_eq!(find(&es, "usr/bin/t").link.as_deref(), Some("tool"));
    assert_eq!(
        find(&es, "longlink").link.as_deref(),
        Some("x/".repeat(70).as_str())
    );
    assert_eq!(find(&es, "fifo").kind, tar::EntryType::Fifo);
    assert_eq!(find(&es, "fifo").mode, 0o600);
    let host = find(&es, "etc/hostname");
    assert_eq!(host.data, b"box\n");
    assert_eq!(
        host.xattrs,
        vec![("user.rbuild.test".to_string(), b"v\x00bin".to_vec())]
    );
    let etc = find(&es, "etc/");
    assert!(etc.xattrs.is_empty(), "overlay xattrs are dropped");
    if is_root() {
        assert_eq!((host.uid, host.gid), (1234, 5678));
    }
}

#[test]
fn deterministic_and_clamped() {
    let (_sd, s) = store();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    sample_tree(a.path());
    sample_tree(b.path());
    touch_all(a.path(), 1_700_000_000);
    touch_all(b.path(), 1_800_000_000);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let l1 = write_layer(&s, a.path(), &opts).unwrap();
        let l2 = write_layer(&s, a.path(), &opts).unwrap();
        assert_eq!(l1, l2, "{compression:?}: same tree, same layer");
        let l3 = write_layer(&s, b.path(), &opts).unwrap();
        assert_ne!(l1.diff_id, l3.diff_id, "mtimes count without an epoch");

        let epoch = LayerOptions {
            source_date_epoch: Some(1_600_000_000),
            ..opts.clone()
        };
        let c1 = write_layer(&s, a.path(), &epoch).unwrap();
        let c2 = write_layer(&s, b.path(), &epoch).unwrap();
        assert_eq!(c1, c2, "{compression:?}: clamped mtimes");
        // Thread counts never change the bytes.
        for threads in [1, 3] {
            let t = LayerOptions {
                threads: Some(threads),
                ..epoch.clone()
            };
            assert_eq!(write_layer(&s, b.path(), &t).unwrap(), c1, "{threads}");
        }
        assert_eq!(c1.media_type, compression.oci_layer_media_type());
        assert_eq!(s.blob_size(&c1.digest).unwrap(), c1.size);
    }
    let epoch = LayerOptions {
        source_date_epoch: Some(1_600_000_000),
        ..LayerOptions::default()
    };
    let es = entries(&tar_of(a.path(), &epoch));
    assert!(es.iter().all(|e| e.mtime == 1_600_000_000));
    // An epoch later than the files keeps their mtimes.
    let late = LayerOptions {
        source_date_epoch: Some(1_750_000_000),
        ..LayerOptions::default()
    };
    let es = entries(&tar_of(a.path(), &late));
    assert!(es.iter().all(|e| e.mtime == 1_700_000_000));
}

/// Decompresses a stored blob.
fn blob_tar(s: &Store, l: &LayerBlob) -> Vec<u8> {
    let mut out = Vec::new();
    crate::media::decompress(s.open_blob(&l.digest).unwrap(), None)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn blob_decompresses_to_the_diff_id_tar() {
    let (_sd, s) = store();
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    // Incompressible data across several gzip chunks.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..5 * pgzip::CHUNK + 333)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(d.path().join("noise"), &noise).unwrap();
    let tar = tar_of(d.path(), &LayerOptions::default());
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let l = write_layer(
            &s,
            d.path(),
            &LayerOptions {
                compression,
                ..LayerOptions::default()
            },
        )
        .unwrap();
        assert_eq!(l.diff_id, Digest::sha256(&tar));
        assert_eq!(l.tar_size, tar.len() as u64);
        let back = blob_tar(&s, &l);
        assert!(back == tar, "{compression:?} round trip");
        assert_eq!(l.digest, Digest::sha256(&s.read_blob(&l.digest).unwrap()));
    }
}

#[test]
fn pgzip_is_one_valid_member_independent_of_splits_and_threads() {
    let pool = |n| {
        Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap(),
        ))
    };
    for len in [
        0,
        1,
        100,
        pgzip::CHUNK - 1,
        pgzip::CHUNK,
        pgzip::CHUNK + 1,
        3 * pgzip::CHUNK + 17,
    ] {
        let data: Vec<u8> = (0..len).map(|i| ((i * 7 + i / 1000) % 251) as u8).collect();
        let mut outs = Vec::new();
        for (threads, split) in [(1, 1 << 20), (2, 511), (4, 65_536)] {
            let mut w = pgzip::ParGzWriter::new(Vec::new(), 6, pool(threads)).unwrap();
            for part in data.chunks(split) {
                w.write_all(part).unwrap();
            }
            outs.push(w.finish().unwrap());
        }
        assert!(outs.iter().all(|o| *o == outs[0]), "len {len}");
        // One member: the single-member decoder reads all of it.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&outs[0][..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "len {len}");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&outs[0][..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "len {len}");
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn system_gzip_and_tar_accept_the_blob() {
    if !have("gzip") || !have("tar") {
        eprintln!("skipped: gzip or tar not installed");
        return;
    }
    let (_sd, s) = store();
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    fs::write(d.path().join("big"), vec![b'z'; 2 * pgzip::CHUNK + 9]).unwrap();
    let l = write_layer(&s, d.path(), &LayerOptions::default()).unwrap();
    let blob = s.blob_path(&l.digest);
    let st = Command::new("gzip").arg("-t").arg(&blob).status().unwrap();
    assert!(st.success(), "gzip -t");
    let out = Command::new("tar").arg("-tzf").arg(&blob).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.lines().any(|l| l == "usr/bin/tool-link"));
    assert!(listed.lines().any(|l| l == format!("{}/", "d".repeat(120))));
    let x = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success(), "tar -xzf");
    assert_eq!(
        fs::read(x.path().join("big")).unwrap().len(),
        2 * pgzip::CHUNK + 9
    );
    let a = fs::metadata(x.path().join("usr/bin/tool")).unwrap();
    let b = fs::metadata(x.path().join("usr/bin/tool-link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link extracted as one");
}

#[test]
fn refuses_names_that_read_as_whiteouts() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join(".wh.oops"), b"").unwrap();
    let err = write_tar(d.path(), &LayerOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::LayerSource { .. }), "{err}");
    assert!(err.to_string().contains(".wh.oops"), "{err}");
}

fn whiteout(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

/// Recursively describes a tree: path → kind and content/target.
fn describe(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = all_paths(root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else {
                format!(
                    "file {:o} {}",
                    m.mode() & 0o7777,
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            (rel, what)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn overlay_upper_dir_round_trips_through_merge_unpack() {
    if !is_root() {
        eprintln!("skipped: overlay whiteouts (char devices 0:0) need root");
        return;
    }
    // lower: the layers below. upper: what a RUN changed (as overlayfs
    // leaves it). expected: the merged result.
    let lower = tempfile::tempdir().unwrap();
    let l = lower.path();
    fs::create_dir_all(l.join("app/cache")).unwrap();
    fs::write(l.join("app/cache/old"), b"old").unwrap();
    fs::write(l.join("app/keep"), b"keep").unwrap();
    fs::write(l.join("gone"), b"x").unwrap();
    fs::create_dir_all(l.join("olddir/sub")).unwrap();
    fs::write(l.join("olddir/sub/f"), b"f").unwrap();

    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    fs::create_dir_all(u.join("app/cache")).unwrap();
    crate::xattrs::set(&u.join("app/cache"), b"trusted.overlay.opaque", b"y").unwrap();
    fs::write(u.join("app/cache/new"), b"new").unwrap();
    whiteout(&u.join("gone"));
    whiteout(&u.join("olddir"));
    fs::write(u.join("added"), b"added").unwrap();
    // Overlayfs shares one whiteout inode between whiteouts (hard links).
    fs::create_dir_all(u.join("w")).unwrap();
    whiteout(&u.join("w/a"));
    fs::hard_link(u.join("w/a"), u.join("w/b")).unwrap();

    let opts = LayerOptions {
        whiteouts: WhiteoutSource::Overlay,
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    };
    let es = entries(&tar_of(u, &opts));
    let paths: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".wh.gone",
            ".wh.olddir",
            "added",
            "app/",
            "app/cache/",
            "app/cache/.wh..wh..opq",
            "app/cache/new",
            "w/",
            "w/.wh.a",
            "w/.wh.b",
        ]
    );
    for wh in [".wh.gone", "w/.wh.b", "app/cache/.wh..wh..opq"] {
        let e = find(&es, wh);
        assert_eq!(e.kind, tar::EntryType::Regular, "{wh}");
        assert!(e.data.is_empty() && e.xattrs.is_empty(), "{wh}");
    }
    assert!(
        find(&es, "app/cache/").xattrs.is_empty(),
        "no overlay xattrs"
    );

    let (_sd, s) = store();
    let layer = write_layer(&s, u, &opts).unwrap();
    crate::unpack::unpack_layer(s.open_blob(&layer.digest).unwrap(), None, l).unwrap();
    let got = describe(l);
    let names: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "added",
            "app",
            "app/cache",
            "app/cache/new",
            "app/keep",
            "w"
        ]
    );

    // Overlay states a layer cannot express are refused, naming the path.
    crate::xattrs::set(&u.join("app"), b"trusted.overlay.redirect", b"/x").unwrap();
    let err = write_tar(u, &opts, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("redirect_dir"), "{err}");
}

#[test]
fn plain_tree_round_trip() {
    let (_sd, s) = store();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    fs::remove_file(src.path().join("sock")).unwrap();
    fs::remove_file(src.path().join("fifo")).unwrap();
    // Symlink mtimes do not survive an unpack: compare with clamped times.
    let opts = LayerOptions {
        source_date_epoch: Some(1),
        ..LayerOptions::default()
    };
    let l = write_layer(&s, src.path(), &opts).unwrap();
    let dst = tempfile::tempdir().unwrap();
    crate::unpack::unpack_layer(s.open_blob(&l.digest).unwrap(), None, dst.path()).unwrap();
    assert_eq!(describe(src.path()), describe(dst.path()));
    let a = fs::metadata(dst.path().join("usr/bin/tool")).unwrap();
    let b = fs::metadata(dst.path().join("usr/bin/tool-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    // And again from the unpacked copy: the same layer.
    let again = write_layer(&s, dst.path(), &opts).unwrap();
    assert_eq!(again, l);
}

/// An overlayfs mount through mount(8), unmounted on drop.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lowers: &[&Path], upper: Option<(&Path, &Path)>, at: &Path) -> Option<Overlay> {
        fs::create_dir_all(at).unwrap();
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let mut o = format!("lowerdir={}", lower.join(":"));
        if let Some((u, w)) = upper {
            o += &format!(",upperdir={},workdir={}", u.display(), w.display());
        }
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &o])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        st.success().then(|| Overlay(at.to_path_buf()))
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The whole build-engine path on a real overlayfs: base layer unpacked as a
/// lowerdir, a "RUN" changing files through the mount, the upper dir
/// exported, and the new layer seen the same way through a merge unpack and
/// through overlayfs with both layers as lowerdirs.
#[test]
fn real_overlayfs_export_and_lower_unpack() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = |s: &str| t.path().join(s);
    let (_sd, s) = store();
    let base = p("base");
    fs::create_dir_all(base.join("a/cache")).unwrap();
    fs::write(base.join("a/keep"), b"keep").unwrap();
    fs::write(base.join("a/cache/old"), b"old").unwrap();
    fs::write(base.join("gone"), b"gone").unwrap();
    fs::create_dir_all(base.join("olddir/sub")).unwrap();
    fs::write(base.join("olddir/sub/f"), b"f").unwrap();
    let opts = LayerOptions {
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    };
    let l1 = write_layer(&s, &base, &opts).unwrap();
    let lower1 = p("snap1");
    crate::unpack::unpack_layer_with(
        s.open_blob(&l1.digest).unwrap(),
        None,
        &lower1,
        crate::unpack::UnpackMode::OverlayLower,
    )
    .unwrap();
    for d in ["up", "work"] {
        fs::create_dir(p(d)).unwrap();
    }
    let Some(mnt) = Overlay::mount(&[&lower1], Some((&p("up"), &p("work"))), &p("mnt")) else {
        eprintln!("skipped: overlayfs cannot be mounted here");
        return;
    };
    let m = &mnt.0;
    fs::remove_file(m.join("gone")).unwrap();
    fs::remove_dir_all(m.join("olddir")).unwrap();
    fs::remove_dir_all(m.join("a/cache")).unwrap();
    fs::create_dir(m.join("a/cache")).unwrap();
    fs::write(m.join("a/cache/new"), b"new").unwrap();
    fs::write(m.join("added"), b"added").unwrap();
    fs::set_permissions(m.join("a/keep"), fs::Permissions::from_mode(0o600)).unwrap();
    let expected = describe(m);
    drop(mnt);

    let l2 = write_layer(
        &s,
        &p("up"),
        &LayerOptions {
            whiteouts: WhiteoutSource::Overlay,
            ..opts.clone()
        },
    )
    .unwrap();
    let names: Vec<String> = entries(&blob_tar(&s, &l2))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(names.contains(&".wh.gone".to_string()), "{names:?}");
    assert!(
        names.contains(&"a/cache/.wh..wh..opq".to_string()),
        "{names:?}"
    );

    // Merge unpack of both layers gives what the RUN saw.
    let merged = p("merged");
    fs::create_dir(&merged).unwrap();
    for l in [&l1, &l2] {
        crate::unpack::unpack_layer(s.open_blob(&l.digest).unwrap(), None, &merged).unwrap();
    }
    assert_eq!(describe(&merged), expected);

    // Both layers as overlayfs lowerdirs give it too.
    let lower2 = p("snap2");
    crate::unpack::unpack_layer_with(
        s.open_blob(&l2.digest).unwrap(),
        None,
        &lower2,
        crate::unpack::UnpackMode::OverlayLower,
    )
    .unwrap();
    let view = Overlay::mount(&[&lower2, &lower1], None, &p("view")).unwrap();
    assert_eq!(describe(&view.0), expected);
}

/// Go's compress/gzip and archive/tar (what docker, containerd and skopeo
/// read layers with) accept the blob as ONE gzip member and see our entries.
#[test]
fn go_reads_the_layer() {
    if !have("go") {
        eprintln!("skipped: go not installed");
        return;
    }
    const PROG: &str = r#"package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	br := bufio.NewReader(f)
	zr, err := gzip.NewReader(br)
	if err != nil {
		panic(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s %c %d %s %v\n", h.Name, h.Typeflag, n, h.Linkname, h.PAXRecords)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		panic(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		panic("data after the first gzip member")
	}
}
"#;
    let (_sd, s) = store();
    let d = tempfile::tempdir().unwrap();
    sample_tree(d.path());
    fs::write(d.path().join("big"), vec![b'q'; 2 * pgzip::CHUNK + 1]).unwrap();
    let l = write_layer(&s, d.path(), &LayerOptions::default()).unwrap();
    let progdir = tempfile::tempdir().unwrap();
    let prog = progdir.path().join("gzcheck.go");
    fs::write(&prog, PROG).unwrap();
    let out = Command::new("go")
        .arg("run")
        .arg(&prog)
        .arg(s.blob_path(&l.digest))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("big 0 2097153"), "{listing}");
    assert!(
        listing.contains("usr/bin/tool-link 1 0 usr/bin/tool"),
        "{listing}"
    );
    assert!(
        listing.contains("etc/hostname 0 4  map[SCHILY.xattr.user.rbuild.test:v\x00bin]"),
        "{listing}"
    );
}
