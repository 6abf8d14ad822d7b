//! Export: a build result (a snapshot chain) and its config as an image in the store, and
//! the other outputs (`--output type=local|tar|oci|docker`).
//!
//! Layers come bottom-up from the snapshot chain: a snapshot unpacked from a registry blob
//! reuses that blob; others are written from their diff dir with the exporter's layer
//! writer (overlay whiteouts become OCI ones) once per compression and
//! `SOURCE_DATE_EPOCH`, and remembered, so a rebuild that hits the cache does not re-tar
//! and gets the same image ID. Snapshots that changed nothing make no layer: their
//! history entry becomes `empty_layer`, as BuildKit's exporter does.

use std::path::Path;

use rbuild_executor::fileop::{self, CopySpec, Source, SourceKind};
use rbuild_exporter::compose::{self, ManifestFormat};
use rbuild_exporter::image::{Image as StoredImage, Layer};
use rbuild_exporter::layer::{self, LayerOptions, WhiteoutSource};
use rbuild_exporter::media::Compression;
use rbuild_exporter::{Digest, Lease};
use rbuild_solver::{Image, ResultRef};

use super::worker::RealWorker;
use super::worker::mounts::View;
use super::worker::state::{BlobRef, ProducedBlob};

/// How layers are written.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: clamp file times in new layers.
    pub epoch: Option<u64>,
}

/// An exported image and what it took.
#[derive(Debug)]
pub struct Exported {
    pub image: StoredImage,
    /// Layers written now (not reused).
    pub written: usize,
    /// Keeps GC away until the image is named.
    pub _lease: Lease,
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "none",
    }
}

/// The snapshot keys of `result`'s chain, bottom first.
pub(crate) fn chain(worker: &RealWorker, result: &ResultRef) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = Some(result.0.clone());
    while let Some(key) = cur {
        let info = worker
            .snapshotter()
            .stat(&key)
            .map_err(|e| format!("snapshot {key}: {e}"))?;
        out.push(key);
        cur = info.parent;
    }
    out.reverse();
    Ok(out)
}

/// The layer of one snapshot (`None`: it changed nothing), written if needed; whether it
/// was written now; the snapshot's creation time.
pub(crate) fn layer_of(
    worker: &RealWorker,
    key: &str,
    opts: &ExportOptions,
) -> Result<(Option<Layer>, bool, String), String> {
    let store = worker.store();
    let mut meta = worker.state().meta(key).unwrap_or_default();
    let to_layer = |b: &BlobRef, oci_type: bool| -> Result<Layer, String> {
        let digest: Digest = b.digest.parse().map_err(|e| format!("{e}"))?;
        let media_type = match (oci_type, Compression::from_media_type(&b.media_type)) {
            (true, Some(c)) => c.oci_layer_media_type().to_string(),
            _ => b.media_type.clone(),
        };
        Ok(Layer {
            digest,
            size: b.size,
            media_type,
            diff_id: b.diff_id.parse().map_err(|e| format!("{e}"))?,
        })
    };
    if let Some(origin) = &meta.origin {
        if store.has_blob(&origin.digest.parse().map_err(|e| format!("{e}"))?) {
            return Ok((Some(to_layer(origin, true)?), false, meta.created.clone()));
        }
    }
    if meta.empty && meta.origin.is_none() {
        return Ok((None, false, meta.created.clone()));
    }
    let variant = match opts.epoch {
        Some(e) => format!("{}@{e}", compression_name(opts.compression)),
        None => compression_name(opts.compression).to_string(),
    };
    if let Some(p) = meta.produced.iter().find(|p| p.variant == variant) {
        let d: Digest = p.blob.digest.parse().map_err(|e| format!("{e}"))?;
        if store.has_blob(&d) {
            return Ok((Some(to_layer(&p.blob, false)?), false, meta.created.clone()));
        }
    }
    let dir = worker
        .snapshotter()
        .diff_dir(key)
        .map_err(|e| format!("snapshot {key}: {e}"))?;
    let lo = LayerOptions {
        compression: opts.compression,
        whiteouts: WhiteoutSource::Overlay,
        source_date_epoch: opts.epoch,
        format: ManifestFormat::Oci,
        ..LayerOptions::default()
    };
    let blob = layer::write_layer(store, &dir, &lo)
        .map_err(|e| format!("writing the layer of {key}: {e}"))?;
    let b = BlobRef {
        digest: blob.digest.to_string(),
        media_type: blob.media_type.clone(),
        diff_id: blob.diff_id.to_string(),
        size: blob.size,
    };
    meta.produced.retain(|p| p.variant != variant);
    meta.produced.push(ProducedBlob {
        variant,
        blob: b.clone(),
    });
    worker.state().put_meta(key, &meta)?;
    Ok((Some(to_layer(&b, false)?), true, meta.created))
}

/// Writes the image of `result` with `config` into the store (not named). `extra` is a
/// top-level config field added as is (the inline build cache).
pub fn export_image(
    worker: &RealWorker,
    result: Option<&ResultRef>,
    config: &Image,
    opts: &ExportOptions,
    extra: Option<(String, serde_json::Value)>,
) -> Result<Exported, String> {
    let store = worker.store();
    let lease = store.lease().map_err(|e| e.to_string())?;
    let keys = match result {
        Some(r) => chain(worker, r)?,
        None => Vec::new(),
    };
    let mut layers = Vec::new();
    let mut per_snapshot = Vec::new();
    let mut written = 0;
    for key in &keys {
        let (layer, new, created) = layer_of(worker, key, opts)?;
        written += usize::from(new);
        per_snapshot.push((layer.is_some(), created));
        layers.extend(layer);
    }
    let mut image = config.clone();
    // History: the entries with a layer match the snapshot chain one to one.
    let with_layer: Vec<usize> = image
        .history
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    if with_layer.len() == per_snapshot.len() {
        for (i, (has_layer, created)) in with_layer.iter().zip(&per_snapshot) {
            let h = &mut image.history[*i];
            if !has_layer {
                h.empty_layer = true;
            }
            if h.created.is_none() && !created.is_empty() {
                h.created = Some(created.clone());
            }
        }
    }
    // Config-only entries take the time of the step before them (then after them).
    let mut last: Option<String> = None;
    for h in &mut image.history {
        match &h.created {
            Some(c) => last = Some(c.clone()),
            None => h.created = last.clone(),
        }
    }
    let mut next: Option<String> = None;
    for h in image.history.iter_mut().rev() {
        match &h.created {
            Some(c) => next = Some(c.clone()),
            None => h.created = next.clone(),
        }
    }
    if image.created.is_none() {
        image.created = image
            .history
            .iter()
            .rev()
            .find_map(|h| h.created.clone())
            .or_else(|| Some(rbuild_exporter::images::now_rfc3339()));
    }
    image.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let bytes = match extra {
        None => serde_json::to_vec(&image).map_err(|e| e.to_string())?,
        Some((field, value)) => {
            let mut v = serde_json::to_value(&image).map_err(|e| e.to_string())?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert(field, value);
            }
            serde_json::to_vec(&v).map_err(|e| e.to_string())?
        }
    };
    let stored = compose::write_image_with_config(store, &layers, &bytes, ManifestFormat::Oci)
        .map_err(|e| e.to_string())?;
    Ok(Exported {
        image: stored,
        written,
        _lease: lease,
    })
}

/// Runs `f` on a read-only view of the result's root filesystem (an empty directory for an
/// empty result).
pub fn with_rootfs<T>(
    worker: &RealWorker,
    result: Option<&ResultRef>,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    match result {
        Some(r) => {
            let view = View::snapshot(worker.snapshotter(), &r.0, || worker.mount_point())
                .map_err(|e| e.message)?;
            f(view.dir())
        }
        None => {
            let empty = tempfile::tempdir().map_err(|e| e.to_string())?;
            f(empty.path())
        }
    }
}

/// `--output type=local,dest=DIR`: the final root filesystem copied into `dest`.
pub fn to_local(rootfs: &Path, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let spec = CopySpec {
        sources: vec![Source::Path("/".into())],
        dest: "/".into(),
        source_kind: SourceKind::Rootfs,
        ..CopySpec::default()
    };
    fileop::copy(&spec, rootfs, dest).map_err(|e| format!("copying to {}: {e}", dest.display()))?;
    Ok(())
}

/// `--output type=tar`: the final root filesystem as a tar.
pub fn to_tar(
    rootfs: &Path,
    out: &mut dyn std::io::Write,
    epoch: Option<u64>,
) -> Result<(), String> {
    let lo = LayerOptions {
        compression: Compression::None,
        whiteouts: WhiteoutSource::None,
        source_date_epoch: epoch,
        ..LayerOptions::default()
    };
    layer::write_tar(rootfs, &lo, out).map_err(|e| e.to_string())?;
    Ok(())
}
