//! Base images: resolving a reference to a manifest and config (the local image index
//! first, pulling when absent or with `--pull`), and `Op::Image`: one committed snapshot
//! per layer, keyed by chain ID and unpacked once in overlay-lower format.

use std::io::BufReader;

use rbuild_exporter::Digest;
use rbuild_exporter::image::{Image as StoredImage, Platform as ExPlatform};
use rbuild_exporter::images::Images;
use rbuild_exporter::lock::FileLock;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::unpack::{UnpackMode, unpack_layer_with};
use rbuild_solver::{Image, Platform, ResolvedImage, ResultRef, WorkerError};

use super::state::{BlobRef, SnapshotMeta};
use super::{Inner, blocking, werr};

fn ex_platform(p: &Platform) -> ExPlatform {
    ExPlatform::new(&p.os, &p.architecture, p.variant.as_deref()).normalized()
}

/// The manifest digest of `reference` for `platform` in the local index, if there.
fn local_manifest(inner: &Inner, reference: &str, platform: &Platform) -> Option<Digest> {
    let wanted = ex_platform(platform);
    let records = Images::open(&inner.store).lookup(reference).ok()?;
    records.into_iter().find_map(|r| {
        let p: ExPlatform = r.platform.parse().ok()?;
        (wanted.matches(&p) && inner.store.has_blob(&r.target)).then_some(r.target)
    })
}

/// The platforms of the local images named `reference`.
fn local_platforms(inner: &Inner, reference: &str) -> Vec<String> {
    let records = Images::open(&inner.store)
        .lookup(reference)
        .unwrap_or_default();
    let mut platforms: Vec<String> = records.into_iter().map(|r| r.platform).collect();
    platforms.sort();
    platforms.dedup();
    platforms
}

async fn pull(inner: &Inner, reference: &str, platform: &Platform) -> Result<Digest, WorkerError> {
    let r = Reference::parse_normalized(reference).map_err(werr)?;
    inner.notice(&format!("pulling {r}"));
    let report = rbuild_exporter::pull::pull(
        &inner.store,
        &r,
        Some(&ex_platform(platform)),
        &inner.cfg.registry,
        &rbuild_exporter::registry::NoProgress,
    )
    .await
    .map_err(werr)?;
    inner.notice(&format!("pulled {r}: {}", report.manifest));
    Ok(report.manifest)
}

/// `--build-context NAME=oci-layout://PATH[:TAG|@DIGEST]`: an OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayoutRef {
    pub dir: std::path::PathBuf,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl OciLayoutRef {
    /// Parses what follows `oci-layout://` (buildx's syntax); the path is made absolute.
    pub fn parse(value: &str) -> Result<OciLayoutRef, String> {
        let (path, tag, digest) = match value.rsplit_once('@') {
            Some((p, d)) if d.contains(':') => (p, None, Some(d.to_string())),
            _ => match value.rsplit_once(':') {
                Some((p, t)) if !t.is_empty() && !t.contains('/') => (p, Some(t.to_string()), None),
                _ => (value, None, None),
            },
        };
        let dir = std::path::Path::new(path)
            .canonicalize()
            .map_err(|e| format!("oci-layout://{value}: the OCI layout directory {path:?}: {e}"))?;
        if !dir.join("index.json").is_file() {
            return Err(format!(
                "oci-layout://{value}: {} is not an OCI layout (no index.json)",
                dir.display()
            ));
        }
        Ok(OciLayoutRef { dir, tag, digest })
    }

    /// The reference lowering passes to the resolver for it.
    pub fn reference(&self) -> String {
        let mut r = format!("oci-layout://{}", self.dir.display());
        if let Some(d) = &self.digest {
            r.push_str(&format!("@{d}"));
        } else if let Some(t) = &self.tag {
            r.push_str(&format!(":{t}"));
        }
        r
    }
}

/// Copies an OCI layout's blobs into the store (verified) and picks its manifest for
/// `platform`: the descriptor of `@DIGEST`, or the one annotated with the tag (`latest`
/// by default; a layout holding one image needs no tag).
fn resolve_layout(
    inner: &Inner,
    layout: &OciLayoutRef,
    platform: &Platform,
) -> Result<Digest, WorkerError> {
    let shown = |p: &std::path::Path, e: &dyn std::fmt::Display| {
        werr(format!("OCI layout {}: {e}", p.display()))
    };
    let index_path = layout.dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|e| shown(&index_path, &e))?;
    let index: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| shown(&index_path, &e))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let digest_of = |d: &serde_json::Value| d["digest"].as_str().map(str::to_string);
    let chosen = if let Some(want) = &layout.digest {
        Some(want.clone())
    } else {
        let tag = layout.tag.as_deref().unwrap_or("latest");
        let named = manifests.iter().find(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n == tag || n.ends_with(&format!(":{tag}")))
        });
        match (named, layout.tag.is_none() && manifests.len() == 1) {
            (Some(d), _) => digest_of(d),
            (None, true) => digest_of(&manifests[0]),
            (None, false) => None,
        }
    };
    let chosen = chosen.ok_or_else(|| {
        shown(
            &index_path,
            &format!(
                "no image tagged {:?} in the layout",
                layout.tag.as_deref().unwrap_or("latest")
            ),
        )
    })?;
    let chosen: Digest = chosen.parse().map_err(werr)?;
    let _lease = inner.store.lease().map_err(werr)?;
    let blobs = layout.dir.join("blobs");
    for alg in std::fs::read_dir(&blobs).map_err(|e| shown(&blobs, &e))? {
        let alg = alg.map_err(|e| shown(&blobs, &e))?;
        let Ok(files) = std::fs::read_dir(alg.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            let Ok(d) = name.parse::<Digest>() else {
                continue;
            };
            if inner.store.has_blob(&d) {
                continue;
            }
            let path = f.path();
            let mut file = std::fs::File::open(&path).map_err(|e| shown(&path, &e))?;
            inner
                .store
                .put_reader(&mut file, Some(&d), None)
                .map_err(|e| shown(&path, &e))?;
        }
    }
    if !inner.store.has_blob(&chosen) {
        return Err(shown(&layout.dir, &format!("blob {chosen} is missing")));
    }
    let (manifest, _) = rbuild_exporter::image::select_manifest(
        &inner.store,
        &chosen,
        &ex_platform(platform),
        &layout.reference(),
    )
    .map_err(werr)?;
    Ok(manifest)
}

/// `ImageResolver::resolve_image`: memoised per build.
pub(super) async fn resolve(
    inner: &Inner,
    reference: &str,
    platform: &Platform,
) -> Result<ResolvedImage, WorkerError> {
    let mut memo = inner.resolved.lock().await;
    let memo_key = (reference.to_string(), platform.clone());
    if let Some(r) = memo.get(&memo_key) {
        return Ok(r.clone());
    }
    let layout = inner.layouts.get().and_then(|m| m.get(reference));
    let local = if let Some(l) = layout {
        Some(resolve_layout(inner, l, platform)?)
    } else if inner.cfg.pull {
        None
    } else {
        local_manifest(inner, reference, platform)
    };
    let manifest = match local {
        Some(d) => d,
        None => pull(inner, reference, platform).await.map_err(|e| {
            let mut e = e;
            if local_manifest(inner, reference, platform).is_none() && !inner.cfg.pull {
                let others = local_platforms(inner, reference);
                e.message = if others.is_empty() {
                    format!(
                        "{} (not in the local image store either: `rbuild images` lists it, `rbuild load` or `rbuild import` adds one)",
                        e.message
                    )
                } else {
                    format!(
                        "{} (the local image store has it for {} only, not for {}: pass that as `--platform` or `FROM --platform=`)",
                        e.message,
                        others.join(", "),
                        ex_platform(platform)
                    )
                };
            }
            e
        })?,
    };
    let stored = StoredImage::load(&inner.store, &manifest).map_err(werr)?;
    let config: Image = serde_json::from_slice(&stored.config_bytes)
        .map_err(|e| werr(format!("image config {}: {e}", stored.config_digest)))?;
    let resolved = ResolvedImage {
        reference: reference.to_string(),
        manifest_digest: manifest.to_string(),
        config,
    };
    memo.insert(memo_key, resolved.clone());
    Ok(resolved)
}

/// The snapshot key of the layer stack ending at `chain_id`.
pub(crate) fn layer_key(chain_id: &Digest) -> String {
    format!("layer-{}", chain_id.hex())
}

/// `Op::Image`: makes sure every layer is a committed snapshot; returns the top one.
pub(super) async fn execute(
    inner: &std::sync::Arc<Inner>,
    reference: &str,
    digest: &str,
    platform: &Platform,
) -> Result<ResultRef, WorkerError> {
    let manifest: Digest = digest.parse().map_err(werr)?;
    if !inner.store.has_blob(&manifest)
        && let Some(l) = inner.layouts.get().and_then(|m| m.get(reference))
    {
        resolve_layout(inner, l, platform)?;
    }
    if !inner.store.has_blob(&manifest) {
        // Resolved by an earlier build whose records the cache walk skipped; fetch it by
        // digest.
        let r = Reference::parse_normalized(reference).map_err(werr)?;
        let pinned = r.with_digest(manifest.clone()).to_string();
        pull(inner, &pinned, platform).await?;
    }
    let inner = inner.clone();
    let reference = reference.to_string();
    blocking(move || {
        let image = StoredImage::load(&inner.store, &manifest).map_err(werr)?;
        let missing: Vec<&Digest> = image
            .layers
            .iter()
            .map(|l| &l.digest)
            .filter(|d| !inner.store.has_blob(d))
            .collect();
        if let Some(d) = missing.first() {
            return Err(werr(format!(
                "layer {d} of {reference} is not in the store (pull the image again with --pull)"
            )));
        }
        let chain = image.chain_ids();
        let sn = &inner.snapshotter;
        let _lease = inner.store.lease().map_err(werr)?;
        let _lock =
            FileLock::exclusive(inner.store.lock_path("build-unpack.lock")).map_err(werr)?;
        let mut parent: Option<String> = None;
        for (layer, chain_id) in image.layers.iter().zip(&chain) {
            let key = layer_key(chain_id);
            match sn.stat(&key) {
                Ok(info) if info.kind == rbuild_executor::snapshot::Kind::Committed => {
                    parent = Some(key);
                    continue;
                }
                Ok(_) => {
                    // A half import of a dead process: start over.
                    let _ = sn.remove(&key);
                }
                Err(_) => {}
            }
            let dir = sn
                .begin_import(&key, parent.as_deref())
                .map_err(|e| werr(format!("import layer {}: {e}", layer.digest)))?;
            let unpacked = inner
                .store
                .open_blob(&layer.digest)
                .and_then(|f| {
                    unpack_layer_with(
                        BufReader::new(f),
                        layer.compression(),
                        &dir,
                        UnpackMode::OverlayLower,
                    )
                })
                .map_err(|e| werr(format!("unpack layer {}: {e}", layer.digest)))
                .and_then(|_| {
                    sn.commit_import(&key)
                        .map_err(|e| werr(format!("import layer {}: {e}", layer.digest)))
                });
            if let Err(e) = unpacked {
                let _ = sn.remove(&key);
                return Err(e);
            }
            let meta = SnapshotMeta {
                created: image.created().unwrap_or_default().to_string(),
                empty: false,
                origin: Some(BlobRef {
                    digest: layer.digest.to_string(),
                    media_type: layer.media_type.clone(),
                    diff_id: layer.diff_id.to_string(),
                    size: layer.size,
                }),
                produced: Vec::new(),
            };
            inner
                .state
                .put_meta(&key, &meta)
                .map_err(WorkerError::new)?;
            parent = Some(key);
        }
        parent
            .map(ResultRef)
            .ok_or_else(|| WorkerError::new(format!("{reference} has no layers")))
    })
    .await
}
