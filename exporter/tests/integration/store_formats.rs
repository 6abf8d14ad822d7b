//! The local image side end to end: images built offline into the store
//! (from Debian's static busybox), snapshots, GC, and the formats checked
//! against peer tools (umoci, skopeo) where they are installed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use rbuild_exporter::archive::{self, ExportImage};
use rbuild_exporter::compose::{self, ImageConfigInput, ManifestFormat};
use rbuild_exporter::gc;
use rbuild_exporter::image::{Image, Platform};
use rbuild_exporter::images::Images;
use rbuild_exporter::media::Compression;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::snapshots::Snapshots;
use rbuild_exporter::{Digest, Store};
use serde_json::json;

use crate::fixtures;

const APPLETS: &[&str] = &["sh", "ls", "cat", "echo", "true", "mkdir"];

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        println!("skipped: {tool} not installed");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (path, file data, symlink target); neither data nor target: a directory.
type TarEntry<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, link) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match (data, link) {
            (_, Some(target)) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            (Some(d), None) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if path.starts_with("bin/") {
                    0o755
                } else {
                    0o644
                });
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, *d).unwrap();
            }
            (None, None) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Builds `busybox` into the store: layer 1 is /bin/busybox with
/// `--install`-style applet symlinks, layer 2 adds a file and whites out
/// `bin/ls`. Returns None (test skipped) without busybox-static.
fn build_busybox(
    store: &Store,
    compressions: [Compression; 2],
    format: ManifestFormat,
) -> Option<Image> {
    let Ok(busybox) = std::fs::read("/bin/busybox") else {
        println!("skipped: busybox-static not installed");
        return None;
    };
    let mut l1: Vec<TarEntry<'_>> = vec![
        ("bin/", None, None),
        ("bin/busybox", Some(&busybox), None),
        ("tmp/", None, None),
    ];
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        l1.push((l, None, Some("busybox")));
    }
    let l2 = tar_of(&[
        ("etc/", None, None),
        ("etc/hello", Some(b"hello from layer 2\n"), None),
        ("bin/.wh.ls", Some(b""), None),
    ]);
    let layers = vec![
        compose::add_layer(store, &mut &tar_of(&l1)[..], compressions[0], format).unwrap(),
        compose::add_layer(store, &mut &l2[..], compressions[1], format).unwrap(),
    ];
    let input = ImageConfigInput {
        platform: Platform::host(),
        created: "2023-11-14T22:13:20Z".into(),
        config: json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
        history: vec![
            "COPY busybox /bin/ # buildkit".into(),
            "RUN rm /bin/ls".into(),
        ],
    };
    Some(compose::write_image(store, &layers, &input, format).unwrap())
}

fn tag(store: &Store, name: &str, img: &Image) -> Reference {
    let r = Reference::parse_docker(name).unwrap();
    Images::open(store)
        .record(Some(&r), &img.manifest_digest, None)
        .unwrap();
    r
}

fn export(img: &Image, name: &Reference) -> Vec<ExportImage> {
    vec![ExportImage {
        manifest: img.manifest_digest.clone(),
        names: vec![name.clone()],
    }]
}

#[test]
fn snapshot_of_built_image_runs_busybox() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Gzip, Compression::Zstd],
        ManifestFormat::Oci,
    ) else {
        return;
    };
    let snaps = Snapshots::open(&store).unwrap();
    let fs = snaps.prepare(&img.layers).unwrap();
    assert_eq!(fs, snaps.fs_path(img.chain_ids().last().unwrap()));
    assert_eq!(
        std::fs::read_link(fs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(!fs.join("bin/ls").exists(), "whiteout applied");
    assert!(!fs.join("bin/.wh.ls").exists());
    let out =
        run(Command::new(fs.join("bin/busybox"))
            .args(["cat", fs.join("etc/hello").to_str().unwrap()]));
    assert_eq!(out, "hello from layer 2\n");
    // Prepared once: a second call is a lookup.
    assert_eq!(snaps.prepare(&img.layers).unwrap(), fs);
}

#[test]
fn docker_archive_round_trip_keeps_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Gzip, Compression::Gzip],
        ManifestFormat::Docker,
    ) else {
        return;
    };
    let name = tag(&store, "localhost:5000/rbuild/busybox:1", &img);
    let mut tar = Vec::new();
    archive::save_docker_archive(&store, &export(&img, &name), &mut tar).unwrap();
    // Deterministic.
    let mut again = Vec::new();
    archive::save_docker_archive(&store, &export(&img, &name), &mut again).unwrap();
    assert_eq!(tar, again);
    // What docker load reads.
    let mut names = Vec::new();
    let mut manifest_json = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "manifest.json" {
            e.read_to_end(&mut manifest_json).unwrap();
        }
        assert_eq!(e.header().mtime().unwrap(), 0);
        names.push(p);
    }
    assert!(names.contains(&"repositories".to_string()));
    assert!(names.contains(&"index.json".to_string()));
    let m: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    assert_eq!(m[0]["RepoTags"][0], "localhost:5000/rbuild/busybox:1");
    assert_eq!(m[0]["Layers"].as_array().unwrap().len(), 2);

    let store2 = Store::open(dir.path().join("b")).unwrap();
    let loaded = archive::load_archive(&store2, &tar[..], &Platform::host()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].manifest, img.manifest_digest);
    assert_eq!(loaded[0].id, img.config_digest);
    assert_eq!(loaded[0].names, vec![name.clone()]);
    let rec = Images::open(&store2)
        .resolve("localhost:5000/rbuild/busybox:1")
        .unwrap();
    assert_eq!(rec.target, img.manifest_digest);
    assert_eq!(rec.config, img.config_digest);
    // A gzip-compressed archive loads too (docker load accepts those).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let store3 = Store::open(dir.path().join("c")).unwrap();
    archive::load_archive(&store3, &gz.finish().unwrap()[..], &Platform::host()).unwrap();
    assert!(store3.has_blob(&img.config_digest));
}

#[test]
fn oci_archive_round_trip_all_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Zstd, Compression::None],
        ManifestFormat::Oci,
    ) else {
        return;
    };
    let name = tag(&store, "rbuild-test/busybox:zstd", &img);
    let mut tar = Vec::new();
    archive::save_oci_archive(&store, &export(&img, &name), &mut tar).unwrap();
    let store2 = Store::open(dir.path().join("b")).unwrap();
    let loaded = archive::load_archive(&store2, &tar[..], &Platform::host()).unwrap();
    assert_eq!(loaded[0].manifest, img.manifest_digest);
    assert_eq!(
        loaded[0].names[0].familiar_string(),
        "rbuild-test/busybox:zstd"
    );
    let img2 = Image::load(&store2, &loaded[0].manifest).unwrap();
    assert_eq!(img2.manifest_bytes, img.manifest_bytes);
    let fs = Snapshots::open(&store2)
        .unwrap()
        .prepare(&img2.layers)
        .unwrap();
    assert!(fs.join("bin/busybox").is_file());
    assert!(!fs.join("bin/ls").exists());
    // Not an archive at all.
    let err = archive::load_archive(&store2, &b"not a tar"[..], &Platform::host()).unwrap_err();
    assert!(err.to_string().contains("archive"), "{err}");
}

#[test]
fn oci_layout_checked_by_umoci() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Gzip, Compression::Gzip],
        ManifestFormat::Oci,
    ) else {
        return;
    };
    let name = tag(&store, "rbuild-test/busybox:v1", &img);
    let layout = dir.path().join("layout");
    archive::save_oci_dir(&store, &export(&img, &name), &layout).unwrap();
    assert!(layout.join("oci-layout").is_file());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    // Our own reader takes it back.
    let store2 = Store::open(dir.path().join("root2")).unwrap();
    let loaded = archive::load_oci_dir(&store2, &layout, &Platform::host()).unwrap();
    assert_eq!(loaded[0].manifest, img.manifest_digest);

    if !have("umoci") {
        return;
    }
    let image_arg = format!("{}:v1", layout.display());
    let stat = run(Command::new("umoci").args(["stat", "--image", &image_arg]));
    assert!(stat.contains("COPY busybox"), "{stat}");
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image_arg])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        !rootfs.join("bin/ls").exists(),
        "umoci applied our whiteout"
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/hello")).unwrap(),
        b"hello from layer 2\n"
    );
}

#[test]
fn skopeo_reads_ours_and_we_read_skopeos() {
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Gzip, Compression::Gzip],
        ManifestFormat::Oci,
    ) else {
        return;
    };
    let name = tag(&store, "rbuild-test/busybox:v1", &img);
    let layout = dir.path().join("layout");
    archive::save_oci_dir(&store, &export(&img, &name), &layout).unwrap();
    let oci_ref = format!("oci:{}:v1", layout.display());
    let out = run(Command::new("skopeo").args(["inspect", &oci_ref]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], img.manifest_digest.to_string());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);

    // skopeo's docker-archive (classic layout: <hex>.tar layers) into our store.
    let skopeo_tar = dir.path().join("skopeo.tar");
    let dst = format!(
        "docker-archive:{}:skopeo/busybox:copied",
        skopeo_tar.display()
    );
    run(Command::new("skopeo").args(["copy", "-q", &oci_ref, &dst]));
    let store2 = Store::open(dir.path().join("root2")).unwrap();
    let f = std::fs::File::open(&skopeo_tar).unwrap();
    let loaded = archive::load_archive(&store2, f, &Platform::host()).unwrap();
    assert_eq!(
        loaded[0].id, img.config_digest,
        "config survives byte for byte"
    );
    assert_eq!(
        loaded[0].names[0].to_string(),
        "docker.io/skopeo/busybox:copied"
    );
    let img2 = Image::load(&store2, &loaded[0].manifest).unwrap();
    let fs = Snapshots::open(&store2)
        .unwrap()
        .prepare(&img2.layers)
        .unwrap();
    assert!(fs.join("bin/busybox").is_file());
    assert!(!fs.join("bin/ls").exists());

    // Our docker-archive read by skopeo's docker-archive reader.
    let ours = dir.path().join("ours.tar");
    archive::write_to_path(&ours, |w| {
        archive::save_docker_archive(&store, &export(&img, &name), w)
    })
    .unwrap();
    let out = run(
        Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", ours.display())])
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("docker-archive:{}", ours.display()),
        &format!("oci:{}:back", dir.path().join("back").display()),
    ]));
}

#[test]
fn platform_selection_and_whiteouts_from_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    // Multi-layer fixture: whiteouts and an opaque directory, Docker media types.
    let ml = fixtures::multilayer(&dir.path().join("ml"));
    let loaded = archive::load_oci_dir(&store, &dir.path().join("ml"), &Platform::host()).unwrap();
    assert_eq!(loaded[0].manifest, ml.manifest_digest);
    let img = Image::load(&store, &ml.manifest_digest).unwrap();
    Snapshots::open(&store)
        .unwrap()
        .prepare(&img.layers)
        .unwrap();

    let Some((index_digest, _, images)) = fixtures::two_platform(&dir.path().join("tp")) else {
        println!("skipped: busybox-static not installed");
        return;
    };
    let arm: Platform = "linux/arm64".parse().unwrap();
    let loaded = archive::load_oci_dir(&store, &dir.path().join("tp"), &arm).unwrap();
    let want = images
        .iter()
        .find(|i| i.platform.starts_with("linux/arm64"))
        .unwrap();
    assert_eq!(loaded[0].manifest, want.manifest_digest);
    let err = archive::load_oci_dir(
        &store,
        &dir.path().join("tp"),
        &"linux/s390x".parse().unwrap(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
    let _: &Digest = &index_digest;
}

#[test]
fn rmi_and_gc_free_content_but_keep_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let Some(img) = build_busybox(
        &store,
        [Compression::Gzip, Compression::Gzip],
        ManifestFormat::Oci,
    ) else {
        return;
    };
    let images = Images::open(&store);
    tag(&store, "a:1", &img);
    tag(&store, "b:1", &img);
    Snapshots::open(&store)
        .unwrap()
        .prepare(&img.layers)
        .unwrap();
    // A stray blob and an orphan temp file go at the next collection.
    let stray = store.put_bytes(b"stray", None).unwrap();
    std::fs::write(dir.path().join("content-v1/ingest/ingest-orphan"), b"half").unwrap();
    let du = gc::disk_usage(&store).unwrap();
    assert_eq!(du.images, 1);
    assert_eq!(du.blobs_reclaimable, 5);
    let report = gc::collect(&store).unwrap();
    assert_eq!(report.blobs_removed, vec![stray]);
    assert_eq!(report.temps_removed, 1);
    assert!(store.has_blob(&img.config_digest));

    // By ID with two names: refused without force.
    let id = img.config_digest.to_string();
    assert!(images.remove(&id, false).is_err());
    images.remove("a:1", false).unwrap();
    assert!(store.has_blob(&img.manifest_digest));
    // A root file pins the manifest across the last rmi.
    std::fs::create_dir_all(dir.path().join("roots")).unwrap();
    std::fs::write(
        dir.path().join("roots/test.json"),
        serde_json::to_vec(&json!({"digests": [img.manifest_digest.to_string()]})).unwrap(),
    )
    .unwrap();
    let events = images.remove("b:1", false).unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    gc::collect(&store).unwrap();
    assert!(store.has_blob(&img.layers[0].digest));
    std::fs::remove_file(dir.path().join("roots/test.json")).unwrap();
    let report = gc::prune(&store, true, &Default::default()).unwrap();
    assert!(report.bytes_freed > 0);
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(Snapshots::open(&store).unwrap().list().unwrap().is_empty());
}
