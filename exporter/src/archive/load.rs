//! Reading docker-archives, OCI archives and OCI layout directories into
//! the store and the image index.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::ImageIndex;
use serde::Deserialize;
use serde_json::json;

use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::compose::to_json;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Platform, digest_of};
use crate::images::{ImageRecord, Images};
use crate::media::{self, Compression, decompress};
use crate::reference::Reference;
use crate::store::Store;

/// An image an import put into the index.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub manifest: Digest,
    pub id: Digest,
    /// Names it was recorded under (empty: loaded untagged).
    pub names: Vec<Reference>,
}

/// Small metadata files kept in memory while the tar streams by.
const META_MAX: u64 = 64 * 1024 * 1024;

/// A file of the archive: its blob in the store.
#[derive(Debug, Clone)]
struct Stored {
    digest: Digest,
    size: u64,
}

#[derive(Default)]
struct Collected {
    files: HashMap<String, Stored>,
    /// Symlinks (old docker save dedupes layers with them): path -> target path.
    links: HashMap<String, String>,
    meta: HashMap<String, Vec<u8>>,
}

impl Collected {
    fn get(&self, path: &str) -> Option<&Stored> {
        let mut p = normalize(path)?;
        for _ in 0..16 {
            if let Some(s) = self.files.get(&p) {
                return Some(s);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// `a/./b` → `a/b`; `None` for paths that climb out.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

fn is_meta(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    )
}

/// Imports a docker-archive or OCI archive (optionally gzip/zstd
/// compressed) from `input`. `platform` picks from multi-platform indexes.
pub fn load_archive(
    store: &Store,
    input: impl Read,
    platform: &Platform,
) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease()?;
    let stream = decompress(input, None).map_err(|e| Error::io("archive", e))?;
    let mut archive = tar::Archive::new(stream);
    let mut c = Collected::default();
    let not_tar = |e: io::Error| invalid("archive", &format!("not a readable tar archive: {e}"));
    let entries = archive.entries().map_err(not_tar)?;
    for entry in entries {
        let mut entry = entry.map_err(not_tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let parent = Path::new(&path).parent().unwrap_or(Path::new(""));
                if let Some(t) = normalize(&parent.join(target).to_string_lossy()) {
                    c.links.insert(path, t);
                }
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if is_meta(&path) {
            if size > META_MAX {
                return Err(invalid(&path, "too large"));
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&path, e))?;
            c.meta.insert(path, buf);
            continue;
        }
        // Files under blobs/<alg>/<hex> must match their name.
        let expected = path
            .strip_prefix("blobs/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
        let (digest, size) = store
            .put_reader(&mut entry, expected.as_ref(), Some(size))
            .map_err(|e| match e {
                Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                    invalid(&path, &e.to_string())
                }
                other => other,
            })?;
        c.files.insert(path, Stored { digest, size });
    }
    let images = Images::open(store);
    if c.meta.contains_key("index.json") && c.meta.contains_key("oci-layout") {
        load_oci_index(store, &images, &c.meta["index.json"], platform, "archive")
    } else if let Some(m) = c.meta.get("manifest.json") {
        load_docker_manifest(store, &images, m, &c)
    } else {
        Err(invalid(
            "archive",
            "neither a docker-archive (no manifest.json) nor an OCI archive (no index.json and oci-layout)",
        ))
    }
}

/// Imports an OCI image layout directory.
pub fn load_oci_dir(store: &Store, dir: &Path, platform: &Platform) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease()?;
    let index_path = dir.join("index.json");
    let index = fs::read(&index_path).map_err(|e| Error::io(&index_path, e))?;
    let blobs = dir.join("blobs");
    for alg_dir in fs::read_dir(&blobs).map_err(|e| Error::io(&blobs, e))? {
        let alg_dir = alg_dir.map_err(|e| Error::io(&blobs, e))?;
        let alg = alg_dir.file_name().to_string_lossy().into_owned();
        let Ok(files) = fs::read_dir(alg_dir.path()) else {
            continue;
        };
        for f in files {
            let f = f.map_err(|e| Error::io(alg_dir.path(), e))?;
            let name = f.file_name().to_string_lossy().into_owned();
            let Ok(d) = format!("{alg}:{name}").parse::<Digest>() else {
                continue;
            };
            if store.has_blob(&d) {
                continue;
            }
            let path: PathBuf = f.path();
            let mut file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            store.put_reader(&mut file, Some(&d), None)?;
        }
    }
    load_oci_index(
        store,
        &Images::open(store),
        &index,
        platform,
        &dir.display().to_string(),
    )
}

fn invalid(what: &str, reason: &str) -> Error {
    Error::InvalidImage {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// The name an index descriptor carries: the full-name annotation, else a
/// ref name that is itself a full reference. A bare tag names nothing.
fn descriptor_name(annotations: Option<&HashMap<String, String>>) -> Option<Reference> {
    let ann = annotations?;
    if let Some(n) = ann.get(ANNOTATION_IMAGE_NAME) {
        if let Ok(r) = Reference::parse_docker(n) {
            return Some(r);
        }
    }
    let rn = ann.get(ANNOTATION_REF_NAME)?;
    if rn.contains('/') || rn.contains(':') || rn.contains('@') {
        return Reference::parse_docker(rn).ok();
    }
    None
}

fn load_oci_index(
    store: &Store,
    images: &Images,
    index: &[u8],
    platform: &Platform,
    what: &str,
) -> Result<Vec<LoadedImage>> {
    let idx: ImageIndex = serde_json::from_slice(index).map_err(|source| Error::Json {
        what: format!("{what}: index.json"),
        source,
    })?;
    let mut loaded: Vec<LoadedImage> = Vec::new();
    for desc in idx.manifests() {
        let d = digest_of(desc.digest())?;
        let name = descriptor_name(desc.annotations().as_ref());
        let label = name
            .as_ref()
            .map_or_else(|| d.to_string(), Reference::familiar_string);
        let (manifest, _) = image::select_manifest(store, &d, platform, &label)?;
        let repo_digest = if manifest != d { Some(d.clone()) } else { None };
        let rec = ImageRecord::from_store(store, &manifest, repo_digest)?;
        images.put(name.as_ref(), rec.clone())?;
        match loaded.iter_mut().find(|l| l.manifest == manifest) {
            Some(l) => l.names.extend(name),
            None => loaded.push(LoadedImage {
                manifest,
                id: rec.config,
                names: name.into_iter().collect(),
            }),
        }
    }
    Ok(loaded)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_docker_manifest(
    store: &Store,
    images: &Images,
    manifest_json: &[u8],
    c: &Collected,
) -> Result<Vec<LoadedImage>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(manifest_json).map_err(|source| Error::Json {
            what: "manifest.json".into(),
            source,
        })?;
    let mut loaded = Vec::new();
    for e in entries {
        let config = c.get(&e.config).ok_or_else(|| {
            invalid(
                "manifest.json",
                &format!("config {} is not in the archive", e.config),
            )
        })?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let s = c.get(l).ok_or_else(|| {
                invalid("manifest.json", &format!("layer {l} is not in the archive"))
            })?;
            let mut head = [0u8; 8];
            let mut f = store.open_blob(&s.digest)?;
            let n = read_head(&mut f, &mut head).map_err(|e| Error::io(l, e))?;
            let compression = Compression::from_magic(&head[..n]);
            layers.push(json!({
                "mediaType": compression.docker_layer_media_type(),
                "digest": s.digest.to_string(),
                "size": s.size,
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {
                "mediaType": media::DOCKER_CONFIG,
                "digest": config.digest.to_string(),
                "size": config.size,
            },
            "layers": layers,
        });
        let bytes = to_json(&manifest, "manifest")?;
        let digest = store.put_bytes(&bytes, None)?;
        // Validates config/layer agreement (diff_ids count) before recording.
        let rec = ImageRecord::from_store(store, &digest, None)?;
        let mut names = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            names.push(Reference::parse_docker(&t)?);
        }
        if names.is_empty() {
            images.put(None, rec.clone())?;
        }
        for n in &names {
            images.put(Some(n), rec.clone())?;
        }
        loaded.push(LoadedImage {
            manifest: digest,
            id: rec.config,
            names,
        });
    }
    Ok(loaded)
}

fn read_head(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
