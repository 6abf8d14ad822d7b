//! Fixture images made offline, deterministically, as OCI layout directories:
//! - [`busybox`]: one layer with the static `/bin/busybox` of Debian's
//!   `busybox-static` and a few applet symlinks (OCI media types);
//! - [`multilayer`]: three layers with whiteouts and an opaque directory
//!   (Docker schema2 media types);
//! - [`two_platform`]: an OCI index of linux/amd64 and linux/arm64/v8 (the
//!   arm64 image reuses the same busybox bytes: it is only data).

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rbuild_exporter::Digest;
use serde_json::json;

pub const BUSYBOX: &str = "/bin/busybox";
const MTIME: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One image of a fixture, with everything a test may compare against.
#[derive(Debug, Clone)]
pub struct FixtureImage {
    pub manifest_digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub media_type: String,
    pub config_digest: Digest,
    /// (digest, size) of each compressed layer.
    pub layers: Vec<(Digest, u64)>,
    pub platform: String,
}

/// An OCI layout directory being written.
#[derive(Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

/// A tar entry of a fixture layer.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn put(&self, bytes: &[u8]) -> (Digest, u64) {
        let d = Digest::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// Writes `index.json` naming `manifests` (descriptor JSON values).
    pub fn finish(&self, manifests: Vec<serde_json::Value>) {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }

    /// Writes an image (gzipped layers of `layers`, a config, a manifest of
    /// `manifest_type`) into the blobs; returns it.
    pub fn image(
        &self,
        layers: &[Vec<Entry<'_>>],
        arch: &str,
        variant: Option<&str>,
        docker_types: bool,
    ) -> FixtureImage {
        let (mt, config_mt, layer_mt) = if docker_types {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
        };
        let mut diff_ids = Vec::new();
        let mut layer_descs = Vec::new();
        let mut layer_info = Vec::new();
        for entries in layers {
            let tar = make_tar(entries);
            diff_ids.push(Digest::sha256(&tar).to_string());
            let gz = gzip(&tar);
            let (d, size) = self.put(&gz);
            layer_descs.push(json!({"mediaType": layer_mt, "digest": d.to_string(), "size": size}));
            layer_info.push((d, size));
        }
        let mut config = json!({
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"]
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created": CREATED, "created_by": "rbuild fixture"})).collect::<Vec<_>>()
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let (config_digest, config_size) = self.put(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": config_mt, "digest": config_digest.to_string(), "size": config_size},
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let (manifest_digest, _) = self.put(&manifest_bytes);
        let platform = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        FixtureImage {
            manifest_digest,
            manifest_bytes,
            media_type: mt.to_string(),
            config_digest,
            layers: layer_info,
            platform,
        }
    }
}

impl FixtureImage {
    /// Its descriptor in an index, with the platform when `with_platform`.
    pub fn descriptor(&self, with_platform: bool) -> serde_json::Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.manifest_digest.to_string(),
            "size": self.manifest_bytes.len(),
        });
        if with_platform {
            let parts: Vec<&str> = self.platform.split('/').collect();
            let mut p = json!({"os": parts[0], "architecture": parts[1]});
            if let Some(v) = parts.get(2) {
                p["variant"] = json!(v);
            }
            d["platform"] = p;
        }
        d
    }
}

pub fn make_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The bytes of the host's static busybox (Debian's `busybox-static`).
pub fn busybox_bytes() -> Option<Vec<u8>> {
    std::fs::read(BUSYBOX).ok()
}

fn busybox_entries(bb: &[u8]) -> Vec<Entry<'_>> {
    vec![
        Entry::Dir("bin/"),
        Entry::File("bin/busybox", bb, 0o755),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::Symlink("bin/ls", "busybox"),
        Entry::Symlink("bin/echo", "busybox"),
        Entry::Symlink("bin/cat", "busybox"),
        Entry::Dir("tmp/"),
    ]
}

/// The busybox image (linux/amd64, OCI types) as an OCI layout in `dir`.
/// `None` when `/bin/busybox` is not installed.
pub fn busybox(dir: &Path) -> Option<FixtureImage> {
    let bb = busybox_bytes()?;
    let l = Layout::new(dir);
    let img = l.image(&[busybox_entries(&bb)], "amd64", None, false);
    l.finish(vec![img.descriptor(false)]);
    Some(img)
}

/// A three-layer image with whiteouts (Docker schema2 types).
pub fn multilayer(dir: &Path) -> FixtureImage {
    let l = Layout::new(dir);
    let base = vec![
        Entry::Dir("etc/"),
        Entry::File("etc/a", b"a\n", 0o644),
        Entry::File("etc/b", b"b\n", 0o644),
        Entry::Dir("d/"),
        Entry::File("d/x", b"x\n", 0o644),
        Entry::File("d/keep", b"k\n", 0o600),
    ];
    let second = vec![
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.a", b"", 0o644),
        Entry::Dir("d/"),
        Entry::File("d/.wh..wh..opq", b"", 0o644),
        Entry::File("d/y", b"y\n", 0o644),
    ];
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let third = vec![
        Entry::Dir("data/"),
        Entry::File("data/noise.bin", &big, 0o644),
        Entry::Symlink("data/link", "noise.bin"),
    ];
    let img = l.image(&[base, second, third], "amd64", None, true);
    l.finish(vec![img.descriptor(false)]);
    img
}

/// An OCI index of linux/amd64 and linux/arm64/v8 busybox images; returns
/// (index digest, index bytes, [amd64, arm64]).
pub fn two_platform(dir: &Path) -> Option<(Digest, Vec<u8>, Vec<FixtureImage>)> {
    let bb = busybox_bytes()?;
    let l = Layout::new(dir);
    let amd = l.image(&[busybox_entries(&bb)], "amd64", None, false);
    let arm = l.image(&[busybox_entries(&bb)], "arm64", Some("v8"), false);
    let idx = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd.descriptor(true), arm.descriptor(true)],
    });
    let idx_bytes = serde_json::to_vec_pretty(&idx).unwrap();
    let (idx_digest, idx_size) = l.put(&idx_bytes);
    l.finish(vec![json!({
        "mediaType": OCI_INDEX,
        "digest": idx_digest.to_string(),
        "size": idx_size,
    })]);
    Some((idx_digest, idx_bytes, vec![amd, arm]))
}

#[test]
fn fixtures_are_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let x = multilayer(a.path());
    let y = multilayer(b.path());
    assert_eq!(x.manifest_digest, y.manifest_digest);
    assert_eq!(x.layers.len(), 3);
    if let (Some(p), Some(q)) = (two_platform(a.path()), two_platform(b.path())) {
        assert_eq!(p.0, q.0);
        assert_ne!(p.2[0].manifest_digest, p.2[1].manifest_digest);
        // Same layer bytes on both platforms.
        assert_eq!(p.2[0].layers, p.2[1].layers);
    }
}
