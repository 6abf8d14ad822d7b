//! Writing docker-archives, OCI layouts and OCI archives.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::compose::to_json;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Image, Layer};
use crate::media;
use crate::reference::Reference;
use crate::store::Store;

/// One image to export, under zero or more names.
#[derive(Debug, Clone)]
pub struct ExportImage {
    /// Manifest digest (single-platform).
    pub manifest: Digest,
    pub names: Vec<Reference>,
}

/// Where exported files go: a tar stream or a directory.
trait Sink {
    fn dir(&mut self, path: &str) -> Result<()>;
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut h, path, io::empty())
            .map_err(|e| Error::io(path, e))
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = header(tar::EntryType::Regular, 0o644, size);
        self.builder
            .append_data(&mut h, path, data)
            .map_err(|e| Error::io(path, e))
    }
}

struct DirSink {
    root: PathBuf,
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        let p = self.root.join(path);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))
    }

    fn file(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> Result<()> {
        let p = self.root.join(path);
        if p.exists() && path.starts_with("blobs/") {
            // Content-addressed: an existing blob is the same blob.
            return Ok(());
        }
        let mut f = fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
        io::copy(data, &mut f).map_err(|e| Error::io(&p, e))?;
        Ok(())
    }
}

struct Plan {
    images: Vec<(Image, Vec<Reference>)>,
    blobs: BTreeSet<Digest>,
}

fn plan(store: &Store, exports: &[ExportImage]) -> Result<Plan> {
    let mut images = Vec::new();
    let mut blobs = BTreeSet::new();
    for e in exports {
        let img = Image::load(store, &e.manifest)?;
        blobs.extend(img.blobs());
        images.push((img, e.names.clone()));
    }
    Ok(Plan { images, blobs })
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// The OCI `index.json`: one descriptor per (image, name).
fn oci_index(plan: &Plan) -> Result<Vec<u8>> {
    let mut manifests = Vec::new();
    for (img, names) in &plan.images {
        let platform = img.platform();
        let mut desc = json!({
            "mediaType": img.manifest_media_type,
            "digest": img.manifest_digest.to_string(),
            "size": img.manifest_bytes.len(),
            "platform": {
                "architecture": platform.architecture,
                "os": platform.os,
            },
        });
        if let (Some(v), Some(p)) = (&platform.variant, desc["platform"].as_object_mut()) {
            p.insert("variant".into(), Value::String(v.clone()));
        }
        if names.is_empty() {
            manifests.push(desc);
            continue;
        }
        for name in names {
            let mut d = desc.clone();
            let mut ann = serde_json::Map::new();
            ann.insert(
                ANNOTATION_IMAGE_NAME.into(),
                Value::String(name.to_string()),
            );
            // Docker writes the tag alone; plain OCI tools (skopeo, umoci) read it as the tag.
            let ref_name = name.tag().map_or_else(|| name.to_string(), str::to_string);
            ann.insert(ANNOTATION_REF_NAME.into(), Value::String(ref_name));
            if let Some(obj) = d.as_object_mut() {
                obj.insert("annotations".into(), Value::Object(ann));
            }
            manifests.push(d);
        }
    }
    to_json(
        &json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }),
        "index.json",
    )
}

/// A blob of the archive that the store does not hold as such: a layer's
/// uncompressed tar (at its diff_id), made from the stored compressed blob.
struct PlainLayer {
    /// The stored (zstd) blob.
    source: Digest,
    /// Length of the uncompressed tar.
    size: u64,
}

/// Writes the OCI layout's blobs (the plan's, plus `plain` layers under
/// their diff_ids, all in digest order) and `index.json`.
fn write_layout(
    store: &Store,
    plan: &Plan,
    plain: &BTreeMap<Digest, PlainLayer>,
    sink: &mut dyn Sink,
) -> Result<()> {
    write_blobs(store, plan, plain, sink)?;
    let index = oci_index(plan)?;
    sink.file("index.json", index.len() as u64, &mut &index[..])?;
    Ok(())
}

/// Writes the OCI layout's blobs: the plan's, plus `plain` layers under their diff_ids,
/// all in digest order.
fn write_blobs(
    store: &Store,
    plan: &Plan,
    plain: &BTreeMap<Digest, PlainLayer>,
    sink: &mut dyn Sink,
) -> Result<()> {
    sink.dir("blobs/")?;
    let all: BTreeSet<&Digest> = plan.blobs.iter().chain(plain.keys()).collect();
    let algs: BTreeSet<&str> = all.iter().map(|d| d.algorithm().as_str()).collect();
    for alg in algs {
        sink.dir(&format!("blobs/{alg}/"))?;
    }
    for d in all {
        if plan.blobs.contains(d) {
            let size = store.blob_size(d)?;
            let mut f = store.open_blob(d)?;
            sink.file(&blob_path(d), size, &mut f)?;
        } else if let Some(p) = plain.get(d) {
            let f = store.open_blob(&p.source)?;
            let tar = media::decompress(f, Some(media::Compression::Zstd))
                .map_err(|e| Error::io(blob_path(&p.source), e))?;
            // Exactly the length the header was written with.
            sink.file(&blob_path(d), p.size, &mut tar.take(p.size))?;
        }
    }
    Ok(())
}

/// Whether `docker load` before Docker 25 can read a layer blob as stored:
/// it decompresses gzip only (a zstd layer fails with "invalid tar header").
fn docker_loadable(store: &Store, layer: &Layer) -> Result<bool> {
    match layer.compression() {
        Some(media::Compression::None | media::Compression::Gzip) => Ok(true),
        Some(media::Compression::Zstd) => Ok(false),
        None => {
            // Unknown media type: the magic bytes decide.
            let mut head = Vec::with_capacity(4);
            store
                .open_blob(&layer.digest)?
                .take(4)
                .read_to_end(&mut head)
                .map_err(|e| Error::io(blob_path(&layer.digest), e))?;
            Ok(media::Compression::from_magic(&head) != media::Compression::Zstd)
        }
    }
}

/// The uncompressed tar of a zstd `layer`: its length, checked against the
/// layer's diff_id (one decompression pass; the write is a second one).
fn plain_layer(store: &Store, layer: &Layer) -> Result<PlainLayer> {
    let f = store.open_blob(&layer.digest)?;
    let mut tar = media::decompress(f, Some(media::Compression::Zstd))
        .map_err(|e| Error::io(blob_path(&layer.digest), e))?;
    let mut hasher = layer.diff_id.hasher();
    let size =
        io::copy(&mut tar, &mut hasher).map_err(|e| Error::io(blob_path(&layer.digest), e))?;
    let actual = hasher.finish();
    if actual != layer.diff_id {
        return Err(Error::DigestMismatch {
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok(PlainLayer {
        source: layer.digest.clone(),
        size,
    })
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// `docker save`: a docker-archive of `images` to `out`.
///
/// `manifest.json` names the layer blobs the OCI manifests name, except
/// zstd layers, which Docker before 25 cannot load: for those the archive
/// also holds the uncompressed tar (at its diff_id) and `manifest.json`
/// names that. The OCI view (`index.json`) keeps the stored blobs, so
/// digests survive a round trip through rbuild or another OCI reader.
pub fn save_docker_archive(store: &Store, images: &[ExportImage], out: impl Write) -> Result<()> {
    let plan = plan(store, images)?;
    // Layers (by stored digest) that manifest.json names by diff_id instead.
    let mut unloadable = BTreeSet::new();
    let mut plain: BTreeMap<Digest, PlainLayer> = BTreeMap::new();
    for (img, _) in &plan.images {
        for l in &img.layers {
            if unloadable.contains(&l.digest) || docker_loadable(store, l)? {
                continue;
            }
            unloadable.insert(l.digest.clone());
            // An uncompressed tar the plan already holds is written once.
            if !plan.blobs.contains(&l.diff_id) && !plain.contains_key(&l.diff_id) {
                plain.insert(l.diff_id.clone(), plain_layer(store, l)?);
            }
        }
    }
    let mut sink = TarSink {
        builder: tar::Builder::new(out),
    };
    write_layout(store, &plan, &plain, &mut sink)?;
    // manifest.json: one entry per image, its tags as docker prints them.
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (img, names) in &plan.images {
        let tags: Vec<String> = names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(Reference::familiar_string)
            .collect();
        manifest.push(json!({
            "Config": blob_path(&img.config_digest),
            "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
            "Layers": img
                .layers
                .iter()
                .map(|l| {
                    blob_path(if unloadable.contains(&l.digest) {
                        &l.diff_id
                    } else {
                        &l.digest
                    })
                })
                .collect::<Vec<_>>(),
        }));
        if let Some(top) = img.chain_ids().last() {
            for n in names {
                if let Some(tag) = n.tag() {
                    repositories
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
        }
    }
    let manifest = to_json(&manifest, "manifest.json")?;
    sink.file("manifest.json", manifest.len() as u64, &mut &manifest[..])?;
    sink.file("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
    if !repositories.is_empty() {
        let repos = to_json(&repositories, "repositories")?;
        sink.file("repositories", repos.len() as u64, &mut &repos[..])?;
    }
    sink.builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("docker-archive", e))
}

/// An OCI archive (tar of an OCI image layout) of `images` to `out`.
pub fn save_oci_archive(store: &Store, images: &[ExportImage], out: impl Write) -> Result<()> {
    let plan = plan(store, images)?;
    let mut sink = TarSink {
        builder: tar::Builder::new(out),
    };
    write_layout(store, &plan, &BTreeMap::new(), &mut sink)?;
    sink.file("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
    sink.builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("oci-archive", e))
}

/// An OCI archive of a multi-platform image: `index` (an image index in the store, listing
/// `manifests`) is the one descriptor of `index.json`, once per name in `names` (as buildx's
/// `--output type=oci` of a multi-platform build); every manifest's blobs are included.
pub fn save_oci_index_archive(
    store: &Store,
    index: &Digest,
    manifests: &[Digest],
    names: &[Reference],
    out: impl Write,
) -> Result<()> {
    let exports: Vec<ExportImage> = manifests
        .iter()
        .map(|m| ExportImage {
            manifest: m.clone(),
            names: Vec::new(),
        })
        .collect();
    let mut plan = plan(store, &exports)?;
    plan.blobs.insert(index.clone());
    let desc = json!({
        "mediaType": media::OCI_INDEX,
        "digest": index.to_string(),
        "size": store.blob_size(index)?,
    });
    let mut descriptors = Vec::new();
    for name in names {
        let mut d = desc.clone();
        let ref_name = name.tag().map_or_else(|| name.to_string(), str::to_string);
        d["annotations"] = json!({
            ANNOTATION_IMAGE_NAME: name.to_string(),
            ANNOTATION_REF_NAME: ref_name,
        });
        descriptors.push(d);
    }
    if descriptors.is_empty() {
        descriptors.push(desc);
    }
    let top = to_json(
        &json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": descriptors,
        }),
        "index.json",
    )?;
    let mut sink = TarSink {
        builder: tar::Builder::new(out),
    };
    write_blobs(store, &plan, &BTreeMap::new(), &mut sink)?;
    sink.file("index.json", top.len() as u64, &mut &top[..])?;
    sink.file("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
    sink.builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("oci-archive", e))
}

/// An OCI image layout directory of `images` at `dir` (created if needed;
/// an existing layout's `index.json` is replaced).
pub fn save_oci_dir(store: &Store, images: &[ExportImage], dir: &Path) -> Result<()> {
    let plan = plan(store, images)?;
    let mut sink = DirSink {
        root: dir.to_path_buf(),
    };
    sink.dir("")?;
    write_layout(store, &plan, &BTreeMap::new(), &mut sink)?;
    let layout = dir.join("oci-layout");
    fs::write(&layout, OCI_LAYOUT).map_err(|e| Error::io(&layout, e))
}

/// Writes a file through `f` atomically: a temp file beside `path`, renamed
/// over it once complete, so a failed save leaves no partial archive.
pub fn write_to_path(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rbuild-save-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        f(&mut w)?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
