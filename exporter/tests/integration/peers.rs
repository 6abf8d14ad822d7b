//! Our archives read by the real Docker daemon (`docker load`), and Docker's
//! (`docker save`) read by us. Runs only when `/usr/bin/docker info`
//! answers (a daemon is up); prints "skipped: …" otherwise. `podman load`
//! is tried the same way when podman is installed.

use std::path::Path;
use std::process::{Command, Output};

use rbuild_exporter::archive::{self, ExportImage};
use rbuild_exporter::compose::{self, ImageConfigInput, ManifestFormat};
use rbuild_exporter::image::{Image, Platform};
use rbuild_exporter::images::Images;
use rbuild_exporter::media::Compression;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::{Digest, Store};

use crate::fixtures;

/// Debian's docker.io client (matches its 20.10 daemon); not a newer
/// client that may sit earlier on PATH.
const DOCKER: &str = "/usr/bin/docker";

fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER).args(args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_daemon() -> bool {
    let up = Path::new(DOCKER).is_file()
        && Command::new(DOCKER)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !up {
        println!("skipped: no docker daemon");
    }
    up
}

/// Removes the images it names from the daemon, even when the test fails.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rmi", "--force", name]);
        }
    }
}

/// Loads the fixture layout at `layout` into `store` under `name`.
fn load_fixture(store: &Store, layout: &Path, name: &str) -> (Image, Reference) {
    let loaded = archive::load_oci_dir(store, layout, &Platform::host()).unwrap();
    let img = Image::load(store, &loaded[0].manifest).unwrap();
    let r = Reference::parse_docker(name).unwrap();
    Images::open(store)
        .record(Some(&r), &img.manifest_digest, None)
        .unwrap();
    (img, r)
}

/// `docker load` of our docker-archive, `docker image inspect`, then
/// `docker save` back into a fresh store of ours.
fn docker_round_trip(dir: &Path, store: &Store, img: &Image, name: &Reference) {
    let familiar = name.familiar_string();
    let _cleanup = DockerImages(vec![familiar.clone()]);
    let ours = dir.join("ours.tar");
    archive::write_to_path(&ours, |w| {
        archive::save_docker_archive(
            store,
            &[ExportImage {
                manifest: img.manifest_digest.clone(),
                names: vec![name.clone()],
            }],
            w,
        )
    })
    .unwrap();
    // Our own reader keeps the stored blobs (the OCI view) of it.
    let mine = Store::open(dir.join("mine")).unwrap();
    let f = std::fs::File::open(&ours).unwrap();
    let loaded = archive::load_archive(&mine, f, &Platform::host()).unwrap();
    assert_eq!(loaded[0].manifest, img.manifest_digest);

    let out = ok(
        &docker(&["load", "-i", ours.to_str().unwrap()]),
        "docker load",
    );
    assert!(out.contains(&format!("Loaded image: {familiar}")), "{out}");

    let out = ok(
        &docker(&["image", "inspect", &familiar]),
        "docker image inspect",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &v[0];
    assert_eq!(
        v["Id"],
        img.config_digest.to_string(),
        "ID is the config digest"
    );
    assert!(
        v["RepoTags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(familiar)),
        "{v}"
    );
    let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(v["Architecture"], img.platform().architecture);

    // And back: docker save (classic layout) into a fresh store of ours.
    let theirs = dir.join("theirs.tar");
    ok(
        &docker(&["save", "-o", theirs.to_str().unwrap(), &familiar]),
        "docker save",
    );
    let store2 = Store::open(dir.join("back")).unwrap();
    let f = std::fs::File::open(&theirs).unwrap();
    let loaded = archive::load_archive(&store2, f, &Platform::host()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.config_digest, "same config digest");
    assert_eq!(loaded[0].names, vec![name.clone()]);
    let back = Image::load(&store2, &loaded[0].manifest).unwrap();
    let back_ids: Vec<Digest> = back.layers.iter().map(|l| l.diff_id.clone()).collect();
    let want: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(back_ids, want);
    let rec = Images::open(&store2).resolve(&familiar).unwrap();
    assert_eq!(rec.config, img.config_digest);
}

/// An image built by us (OCI types) with a zstd layer (busybox) and an
/// uncompressed one, tagged `name`. Needs /bin/busybox.
fn build_zstd(store: &Store, name: &str) -> (Image, Reference) {
    let bb = fixtures::busybox_bytes().unwrap();
    let l1 = fixtures::make_tar(&[
        fixtures::Entry::Dir("bin/"),
        fixtures::Entry::File("bin/busybox", &bb, 0o755),
        fixtures::Entry::Symlink("bin/sh", "busybox"),
    ]);
    let l2 = fixtures::make_tar(&[
        fixtures::Entry::Dir("etc/"),
        fixtures::Entry::File("etc/hello", b"hi\n", 0o644),
    ]);
    let layers = vec![
        compose::add_layer(store, &mut &l1[..], Compression::Zstd, ManifestFormat::Oci).unwrap(),
        compose::add_layer(store, &mut &l2[..], Compression::None, ManifestFormat::Oci).unwrap(),
    ];
    let input = ImageConfigInput {
        platform: Platform::host(),
        created: "2023-11-14T22:13:20Z".into(),
        config: serde_json::json!({"Cmd": ["/bin/sh"]}),
        history: vec!["COPY busybox /bin/".into(), "COPY hello /etc/".into()],
    };
    let img = compose::write_image(store, &layers, &input, ManifestFormat::Oci).unwrap();
    let r = Reference::parse_docker(name).unwrap();
    Images::open(store)
        .record(Some(&r), &img.manifest_digest, None)
        .unwrap();
    (img, r)
}

/// Offline: Docker before 25 cannot load zstd layers, so `manifest.json`
/// names the uncompressed tar (at its diff_id) while `index.json` keeps the
/// stored zstd blob.
#[test]
fn docker_archive_names_plain_tars_for_zstd_layers() {
    if fixtures::busybox_bytes().is_none() {
        println!("skipped: busybox-static not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let (img, name) = build_zstd(&store, "rbuild-peers-test/zstd:offline");
    let mut tar = Vec::new();
    let export = [ExportImage {
        manifest: img.manifest_digest.clone(),
        names: vec![name],
    }];
    archive::save_docker_archive(&store, &export, &mut tar).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(p, data);
    }
    let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers: Vec<&str> = m[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want: Vec<String> = img
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", l.diff_id.hex()))
        .collect();
    assert_eq!(
        layers, want,
        "both layers by diff_id (one was stored plain)"
    );
    for (path, l) in layers.iter().zip(&img.layers) {
        assert_eq!(Digest::sha256(&files[*path]), l.diff_id);
    }
    // The zstd blob is still there for the OCI view, and deterministic.
    assert!(files.contains_key(&format!("blobs/sha256/{}", img.layers[0].digest.hex())));
    assert_ne!(img.layers[0].digest, img.layers[0].diff_id);
    let mut again = Vec::new();
    archive::save_docker_archive(&store, &export, &mut again).unwrap();
    assert_eq!(tar, again);
}

#[test]
fn docker_loads_our_archives_and_we_load_docker_saves() {
    if !docker_daemon() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let pid = std::process::id();

    // Three layers with whiteouts and an opaque directory, Docker media types.
    fixtures::multilayer(&dir.path().join("ml"));
    let (img, name) = load_fixture(
        &store,
        &dir.path().join("ml"),
        &format!("rbuild-peers-test/multilayer:{pid}"),
    );
    let sub = dir.path().join("ml-rt");
    std::fs::create_dir(&sub).unwrap();
    docker_round_trip(&sub, &store, &img, &name);

    // Busybox with OCI media types (Docker 20.10 gets a gzip OCI layer).
    if fixtures::busybox(&dir.path().join("bb")).is_none() {
        println!("skipped: busybox-static not installed");
        return;
    }
    let (img, name) = load_fixture(
        &store,
        &dir.path().join("bb"),
        &format!("127.0.0.1:5000/rbuild-peers-test/busybox:{pid}"),
    );
    let sub = dir.path().join("bb-rt");
    std::fs::create_dir(&sub).unwrap();
    docker_round_trip(&sub, &store, &img, &name);

    // Built by us: a zstd layer and an uncompressed one (OCI types).
    let (img, name) = build_zstd(&store, &format!("rbuild-peers-test/zstd:{pid}"));
    let sub = dir.path().join("zstd-rt");
    std::fs::create_dir(&sub).unwrap();
    docker_round_trip(&sub, &store, &img, &name);
}

#[test]
fn podman_loads_our_archives() {
    if Command::new("podman").arg("--version").output().is_err() {
        println!("skipped: podman not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    fixtures::multilayer(&dir.path().join("ml"));
    let name = format!(
        "localhost/rbuild-peers-test/multilayer:{}",
        std::process::id()
    );
    let (img, r) = load_fixture(&store, &dir.path().join("ml"), &name);
    let ours = dir.path().join("ours.tar");
    archive::write_to_path(&ours, |w| {
        archive::save_docker_archive(
            &store,
            &[ExportImage {
                manifest: img.manifest_digest.clone(),
                names: vec![r.clone()],
            }],
            w,
        )
    })
    .unwrap();
    let out = Command::new("podman")
        .args(["load", "-i", ours.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&out, "podman load");
    let out = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Id}}", &name])
        .output()
        .unwrap();
    let id = ok(&out, "podman image inspect");
    let _ = Command::new("podman")
        .args(["rmi", "--force", &name])
        .output();
    assert_eq!(id.trim(), img.config_digest.hex());
}
