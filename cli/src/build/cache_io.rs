//! `--cache-to` / `--cache-from`: the build cache moved between machines.
//!
//! A cache export is an OCI image manifest whose config blob is a
//! [`CacheConfig`] (`application/vnd.rbuild.cache.config.v1+json`: cache key → result
//! snapshot chains, see `rbuild_solver::cache_export`) and whose layers are the step
//! layers, so any OCI registry or OCI layout holds it:
//! - `type=local,dest=DIR[,tag=T]`: an OCI layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/`); the index entry named `T` (default `latest`) is replaced, other
//!   entries and blobs stay;
//! - `type=registry,ref=REF`: pushed as `REF`;
//! - `type=inline`: the config embedded in the image's own config under
//!   [`INLINE_CACHE_FIELD`] (its layers are the image's), read back by
//!   `--cache-from IMAGE`.
//!
//! `mode=min` (default) exports the records whose result is in the final image's chain,
//! `mode=max` every step of every stage the build used.
//!
//! Imports are lazy: the configs are read before the solve; a blob is fetched only when
//! the solver looks a key up that a source has ([`import`]), verified by digest (the
//! store's ingest) and by diff_id while it is unpacked. A record that cannot be made
//! (missing or corrupt blob) is skipped with a warning: the step just runs.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_exporter::images::Images;
use rbuild_exporter::lock::FileLock;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::registry::{RawManifest, Registry, RegistryOptions, Repository, sources};
use rbuild_exporter::unpack::{UnpackMode, unpack_layer_with};
use rbuild_exporter::{Digest, Store, media};
use rbuild_solver::cache::{CacheKey, KeyRecord};
use rbuild_solver::cache_export::{
    CACHE_CONFIG_MEDIA_TYPE, CacheBuilder, CacheConfig, CacheLayer, CacheMode, ChainEntry,
    INLINE_CACHE_FIELD,
};
use rbuild_solver::{ResultRef, WorkerError};

use super::export::{self, ExportOptions};
use super::worker::state::{BlobRef, SnapshotMeta, write_atomic};
use super::worker::{Inner, RealWorker, blocking, werr};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A `--cache-to` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    Local {
        dest: PathBuf,
        tag: String,
        mode: CacheMode,
        /// `ignore-error=true`: a failed export is a warning.
        ignore_error: bool,
    },
    Registry {
        reference: String,
        mode: CacheMode,
        ignore_error: bool,
    },
    Inline,
}

/// A `--cache-from` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    Local {
        src: PathBuf,
        tag: String,
    },
    /// A registry cache manifest or an image with an inline cache (`--cache-from IMAGE`).
    Registry {
        reference: String,
    },
}

/// `key=value,...` fields of a spec.
fn fields(spec: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',')
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("invalid field {f:?} in {spec:?}: expected key=value"))
        })
        .collect()
}

fn parse_mode(v: &str) -> Result<CacheMode, String> {
    match v {
        "min" => Ok(CacheMode::Min),
        "max" => Ok(CacheMode::Max),
        other => Err(format!("invalid cache mode {other:?} (min or max)")),
    }
}

/// Options BuildKit takes that change nothing here.
const IGNORED: &[&str] = &[
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
    "image-manifest",
];

/// Parses `--cache-to`.
pub fn parse_cache_to(spec: &str) -> Result<CacheTo, String> {
    let fields = fields(spec)?;
    let mut kind = None;
    let (mut dest, mut reference, mut tag, mut mode) = (None, None, None, CacheMode::Min);
    let mut ignore_error = false;
    for (k, v) in fields {
        match k.as_str() {
            "type" => kind = Some(v),
            "ignore-error" => ignore_error = v == "true",
            "dest" => dest = Some(v),
            "ref" => reference = Some(v),
            "tag" => tag = Some(v),
            "mode" => mode = parse_mode(&v)?,
            k if IGNORED.contains(&k) => {}
            other => {
                return Err(format!(
                    "unsupported --cache-to option {other:?} in {spec:?}"
                ));
            }
        }
    }
    match kind.as_deref() {
        Some("local") => Ok(CacheTo::Local {
            dest: PathBuf::from(dest.ok_or("--cache-to type=local needs dest=DIR")?),
            tag: valid_tag(tag)?,
            mode,
            ignore_error,
        }),
        Some("registry") => Ok(CacheTo::Registry {
            reference: reference.ok_or("--cache-to type=registry needs ref=REF")?,
            mode,
            ignore_error,
        }),
        Some("inline") => Ok(CacheTo::Inline),
        Some(other) => Err(format!(
            "unsupported --cache-to type {other:?} (local, registry, inline)"
        )),
        None => Err(format!("--cache-to {spec:?} has no type=")),
    }
}

/// Parses `--cache-from`: `type=local,src=DIR`, `type=registry,ref=REF`, or a bare image
/// reference.
pub fn parse_cache_from(spec: &str) -> Result<CacheFrom, String> {
    if !spec.contains('=') {
        return Ok(CacheFrom::Registry {
            reference: spec.to_string(),
        });
    }
    let mut kind = None;
    let (mut src, mut reference, mut tag) = (None, None, None);
    for (k, v) in fields(spec)? {
        match k.as_str() {
            "type" => kind = Some(v),
            "src" => src = Some(v),
            "ref" => reference = Some(v),
            "tag" => tag = Some(v),
            "digest" | "mode" => {}
            other => {
                return Err(format!(
                    "unsupported --cache-from option {other:?} in {spec:?}"
                ));
            }
        }
    }
    match kind.as_deref() {
        Some("local") => Ok(CacheFrom::Local {
            src: PathBuf::from(src.ok_or("--cache-from type=local needs src=DIR")?),
            tag: valid_tag(tag)?,
        }),
        Some("registry") => Ok(CacheFrom::Registry {
            reference: reference.ok_or("--cache-from type=registry needs ref=REF")?,
        }),
        Some(other) => Err(format!(
            "unsupported --cache-from type {other:?} (local, registry)"
        )),
        None => Err(format!("--cache-from {spec:?} has no type=")),
    }
}

fn valid_tag(tag: Option<String>) -> Result<String, String> {
    let tag = tag.unwrap_or_else(|| "latest".to_string());
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(tag)
    } else {
        Err(format!("invalid cache tag {tag:?}"))
    }
}

// ---------------------------------------------------------------------------------------
// Export

/// The cache config of a build: the records `mode` selects, with their chains' layers
/// (written now when an export had not written them yet).
pub fn collect(
    worker: &RealWorker,
    records: &[KeyRecord],
    result: Option<&ResultRef>,
    mode: CacheMode,
    opts: &ExportOptions,
) -> Result<CacheConfig, String> {
    let final_chain: BTreeSet<String> = match result {
        Some(r) => export::chain(worker, r)?.into_iter().collect(),
        None => BTreeSet::new(),
    };
    let mut entries: HashMap<String, ChainEntry> = HashMap::new();
    let mut builder = CacheBuilder::new();
    for rec in records {
        if rec.kind == "context" {
            continue;
        }
        let Some(snapshot) = worker
            .state()
            .get(&rec.key.0)
            .or_else(|| imported_locally(worker, &rec.key))
        else {
            if mode == CacheMode::Max
                && let Some(chain) = imported_chain(worker, &rec.key)
            {
                builder.add(&rec.key, &rec.step, &chain);
            }
            continue;
        };
        if snapshot.starts_with("context:") {
            continue;
        }
        if mode == CacheMode::Min && !final_chain.contains(&snapshot) {
            continue;
        }
        let Ok(chain) = export::chain(worker, &ResultRef(snapshot.clone())) else {
            continue;
        };
        let mut out = Vec::with_capacity(chain.len());
        for s in &chain {
            if let Some(e) = entries.get(s) {
                out.push(e.clone());
                continue;
            }
            let (layer, _, created) = export::layer_of(worker, s, opts)?;
            let e = ChainEntry {
                layer: layer.map(|l| CacheLayer {
                    digest: l.digest.to_string(),
                    media_type: l.media_type,
                    size: l.size,
                    diff_id: l.diff_id.to_string(),
                }),
                created,
                image_layer: s.starts_with("layer-"),
            };
            entries.insert(s.clone(), e.clone());
            out.push(e);
        }
        builder.add(&rec.key, &rec.step, &out);
    }
    Ok(builder.build())
}

/// A key of this build that no step looked up (a stage under a cached one) but an import
/// has: its chain as the import describes it, so `mode=max` re-exports it ([`fetch_missing`]
/// brings its blobs over).
fn imported_chain(worker: &RealWorker, key: &CacheKey) -> Option<Vec<ChainEntry>> {
    let imports = worker.inner.imports.get()?;
    imports.sources.iter().find_map(|src| {
        let cfg = &src.config;
        let snapshot = cfg.lookup(key)?;
        Some(
            cfg.chain(snapshot)
                .into_iter()
                .map(|i| ChainEntry {
                    layer: cfg.layer(i).cloned(),
                    created: cfg.snapshots[i].created.clone(),
                    image_layer: cfg.snapshots[i].image_layer,
                })
                .collect(),
        )
    })
}

/// Fetches the layers of `cfg` that are not in the store from the imports that have
/// them (re-exported imported records).
pub async fn fetch_missing(worker: &RealWorker, cfg: &CacheConfig) -> Result<(), String> {
    let inner = &worker.inner;
    for l in &cfg.layers {
        if inner.store.has_blob(&parse_digest(&l.digest)?) {
            continue;
        }
        let src = inner.imports.get().and_then(|i| {
            i.sources
                .iter()
                .find(|s| s.config.layers.iter().any(|x| x.digest == l.digest))
        });
        match src {
            Some(src) => fetch(inner, src, l)
                .await
                .map_err(|e| format!("layer {} from {}: {e}", l.digest, src.name))?,
            None => return Err(format!("layer {} is in no store or cache source", l.digest)),
        }
    }
    Ok(())
}

/// A key no step of this build looked up, whose result an import has and which is
/// already local (a prefix of a chain the build imported): its snapshot. So a build that
/// hit an imported cache re-exports the records under it.
fn imported_locally(worker: &RealWorker, key: &CacheKey) -> Option<String> {
    let imports = worker.inner.imports.get()?;
    imports.sources.iter().find_map(|src| {
        let snapshot = src.config.lookup(key)?;
        let names = snapshot_names(&src.config, &src.config.chain(snapshot)).ok()?;
        let top = names.last()?;
        committed(&worker.inner, top).then(|| top.clone())
    })
}

/// The manifest of a cache export: (manifest bytes, config bytes).
fn manifest_of(cfg: &CacheConfig) -> Result<(Vec<u8>, Vec<u8>), String> {
    let config = cfg.to_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": Digest::sha256(&config).to_string(),
            "size": config.len(),
        },
        "layers": cfg.layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    Ok((bytes, config))
}

fn parse_digest(d: &str) -> Result<Digest, String> {
    d.parse().map_err(|e| format!("{d}: {e}"))
}

/// Copies a store blob into an OCI layout's `blobs/` (kept when already there).
fn put_layout_blob(dir: &Path, store: &Store, digest: &Digest) -> Result<(), String> {
    let path = dir.join("blobs").join("sha256").join(digest.hex());
    let size = store.blob_size(digest).map_err(|e| e.to_string())?;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let blobs = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(blobs)
        .map_err(|e| format!("{}: {e}", blobs.display()))?;
    let mut src = store.open_blob(digest).map_err(|e| e.to_string())?;
    std::io::copy(&mut src, tmp.as_file_mut())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    tmp.persist(&path)
        .map_err(|e| format!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// `--cache-to type=local`: the blobs, then the manifest, then `index.json` (the entry
/// named `tag` replaced), each written atomically.
pub fn write_local(store: &Store, cfg: &CacheConfig, dir: &Path, tag: &str) -> Result<(), String> {
    let (manifest, config) = manifest_of(cfg)?;
    let _lease = store.lease().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Two builds exporting into one directory take turns on its index.
    let _lock = FileLock::exclusive(dir.join(".rbuild-cache.lock"))
        .map_err(|e| format!("locking {}: {e}", dir.display()))?;
    for l in &cfg.layers {
        put_layout_blob(dir, store, &parse_digest(&l.digest)?)?;
    }
    let blobs = dir.join("blobs").join("sha256");
    for bytes in [&config, &manifest] {
        let d = Digest::sha256(bytes);
        write_atomic(&blobs.join(d.hex()), bytes)?;
    }
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(&index_path) {
        Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
            .map_err(|e| format!("{}: {e}", index_path.display()))?
            .get("manifests")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", index_path.display())),
    };
    manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
    manifests.push(serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": Digest::sha256(&manifest).to_string(),
        "size": manifest.len(),
        "annotations": {REF_NAME: tag},
    }));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    write_atomic(&index_path, &bytes)?;
    remove_unreferenced(dir, &manifests);
    Ok(())
}

/// Removes the layout's blobs no index entry needs any more (a cache directory reused
/// run after run does not grow without end). Called under the layout's lock; best effort.
fn remove_unreferenced(dir: &Path, manifests: &[serde_json::Value]) {
    let blobs = dir.join("blobs").join("sha256");
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for m in manifests {
        let Some(d) = m["digest"].as_str().and_then(|d| d.strip_prefix("sha256:")) else {
            return;
        };
        keep.insert(d.to_string());
        let Ok(bytes) = std::fs::read(blobs.join(d)) else {
            return;
        };
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        for desc in std::iter::once(&manifest["config"]).chain(layers.iter()) {
            match desc["digest"]
                .as_str()
                .and_then(|d| d.strip_prefix("sha256:"))
            {
                Some(d) => keep.insert(d.to_string()),
                // Something this code did not write: leave everything alone.
                None => return,
            };
        }
    }
    let Ok(entries) = std::fs::read_dir(&blobs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !keep.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn repository(
    reference: &Reference,
    opts: &RegistryOptions,
    push: bool,
    op: &str,
) -> Result<Repository, String> {
    let registry = Registry::new(reference.domain(), opts.clone()).map_err(|e| e.to_string())?;
    Ok(registry.repository(reference.path(), push, op.to_string()))
}

/// `--cache-to type=registry`: the layers and config, then the manifest under the tag.
pub async fn write_registry(
    store: &Store,
    cfg: &CacheConfig,
    reference: &str,
    opts: &RegistryOptions,
) -> Result<String, String> {
    let r = Reference::parse_docker(reference).map_err(|e| format!("{reference}: {e}"))?;
    let (manifest, config) = manifest_of(cfg)?;
    let _lease = store.lease().map_err(|e| e.to_string())?;
    let config_digest = store.put_bytes(&config, None).map_err(|e| e.to_string())?;
    let repo = repository(&r, opts, true, &format!("export cache to {r}"))?;
    let progress = rbuild_exporter::registry::NoProgress;
    for l in &cfg.layers {
        let d = parse_digest(&l.digest)?;
        // A layer the image push sent to another repository of the registry is mounted.
        let from = sources::mount_source(store, &d, r.domain(), r.path());
        repo.upload_blob(store, &d, l.size, from.as_deref(), &progress)
            .await
            .map_err(|e| e.to_string())?;
        sources::record(store, &d, r.domain(), r.path());
    }
    repo.upload_blob(store, &config_digest, config.len() as u64, None, &progress)
        .await
        .map_err(|e| e.to_string())?;
    let raw = RawManifest {
        digest: Digest::sha256(&manifest),
        bytes: manifest,
        media_type: OCI_MANIFEST.to_string(),
    };
    let target = match (r.tag(), r.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".to_string(),
    };
    let d = repo
        .put_manifest(&target, &raw)
        .await
        .map_err(|e| e.to_string())?;
    Ok(d.to_string())
}

/// The inline cache as an image config field value.
pub fn inline_value(cfg: &CacheConfig) -> Result<(String, serde_json::Value), String> {
    let v = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    Ok((INLINE_CACHE_FIELD.to_string(), v))
}

// ---------------------------------------------------------------------------------------
// Import

/// Where a source's blobs come from.
enum Blobs {
    /// An OCI layout's `blobs/`.
    Local(PathBuf),
    Registry(Box<Repository>),
    /// The local content store (an image with an inline cache that is stored here).
    Store,
}

/// One `--cache-from` source, its config read.
pub struct Source {
    /// How messages name it (`registry localhost:5000/app:cache`).
    pub name: String,
    config: CacheConfig,
    blobs: Blobs,
}

/// Every source of a build, in `--cache-from` order.
#[derive(Default)]
pub struct Imports {
    pub sources: Vec<Source>,
}

fn read_verified(path: &Path, digest: &Digest) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = digest.hasher();
    h.update(&bytes);
    let actual = h.finish();
    if &actual != digest {
        return Err(format!(
            "{}: content is {actual}, expected {digest}",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The config of a cache manifest, or the inline cache of an image config.
fn config_from(
    manifest: &[u8],
    fetch_config: impl FnOnce(&Digest) -> Result<Vec<u8>, String>,
) -> Result<CacheConfig, String> {
    let m: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest: {e}"))?;
    let config = &m["config"];
    let digest = parse_digest(
        config["digest"]
            .as_str()
            .ok_or("the manifest has no config")?,
    )?;
    let bytes = fetch_config(&digest)?;
    if config["mediaType"].as_str() == Some(CACHE_CONFIG_MEDIA_TYPE) {
        return CacheConfig::parse(&bytes).map_err(|e| e.to_string());
    }
    let image: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("image config: {e}"))?;
    match image.get(INLINE_CACHE_FIELD) {
        Some(v) => CacheConfig::from_value(v.clone()).map_err(|e| e.to_string()),
        None => Err(format!(
            "neither a cache export nor an image with an inline cache (config {})",
            config["mediaType"].as_str().unwrap_or("?")
        )),
    }
}

fn load_local(src: &Path, tag: &str) -> Result<CacheConfig, String> {
    let index_path = src.join("index.json");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&index_path).map_err(|e| format!("{}: {e}", index_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", index_path.display()))?;
    let entry = index["manifests"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
        })
        .ok_or_else(|| format!("{} has no cache tagged {tag:?}", src.display()))?;
    let digest = parse_digest(entry["digest"].as_str().unwrap_or(""))?;
    let blob = |d: &Digest| src.join("blobs").join(d.algorithm().as_str()).join(d.hex());
    let manifest = read_verified(&blob(&digest), &digest)?;
    config_from(&manifest, |d| read_verified(&blob(d), d))
}

async fn load_registry(
    store: &Store,
    reference: &str,
    opts: &RegistryOptions,
) -> Result<(CacheConfig, Blobs), String> {
    let r = Reference::parse_docker(reference).map_err(|e| format!("{reference}: {e}"))?;
    // An image in the local store (a bare `--cache-from IMAGE` of a local build).
    if let Ok(rec) = Images::open(store).resolve(reference)
        && let Ok(manifest) = store.read_blob(&rec.target)
    {
        let cfg = config_from(&manifest, |d| store.read_blob(d).map_err(|e| e.to_string()))?;
        return Ok((cfg, Blobs::Store));
    }
    let repo = repository(&r, opts, false, &format!("import cache from {r}"))?;
    let target = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let mut raw = repo
        .get_manifest(&target)
        .await
        .map_err(|e| e.to_string())?;
    if media::is_index(&raw.media_type) {
        let index: serde_json::Value =
            serde_json::from_slice(&raw.bytes).map_err(|e| format!("index: {e}"))?;
        // An image with an inline cache pushed as an index: this machine's manifest.
        let host = rbuild_exporter::image::Platform::host();
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let wanted = entries
            .iter()
            .find(|m| {
                let p = &m["platform"];
                let text = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or(""),
                    p["architecture"].as_str().unwrap_or("")
                );
                text.parse::<rbuild_exporter::image::Platform>()
                    .is_ok_and(|p| host.matches(&p))
            })
            .or(entries.first())
            .and_then(|m| m["digest"].as_str())
            .ok_or("an empty image index")?
            .to_string();
        raw = repo
            .get_manifest(&wanted)
            .await
            .map_err(|e| e.to_string())?;
    }
    let m: serde_json::Value =
        serde_json::from_slice(&raw.bytes).map_err(|e| format!("manifest: {e}"))?;
    let config_digest = parse_digest(m["config"]["digest"].as_str().unwrap_or(""))?;
    let config_size = m["config"]["size"].as_u64().unwrap_or(0);
    let _lease = store.lease().map_err(|e| e.to_string())?;
    if !store.has_blob(&config_digest) {
        repo.fetch_blob(
            store,
            &config_digest,
            config_size,
            &rbuild_exporter::registry::NoProgress,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    let cfg = config_from(&raw.bytes, |d| {
        store.read_blob(d).map_err(|e| e.to_string())
    })?;
    Ok((cfg, Blobs::Registry(Box::new(repo))))
}

/// Reads every source's config; a source that cannot be read is skipped with a warning
/// (through `warn`), as BuildKit does.
pub async fn load(
    store: &Store,
    specs: &[CacheFrom],
    opts: &RegistryOptions,
    warn: &dyn Fn(&str),
) -> Imports {
    let mut sources = Vec::new();
    for spec in specs {
        let (name, loaded) = match spec {
            CacheFrom::Local { src, tag } => (
                format!("local {}", src.display()),
                load_local(src, tag).map(|c| (c, Blobs::Local(src.clone()))),
            ),
            CacheFrom::Registry { reference } => (
                format!("registry {reference}"),
                load_registry(store, reference, opts).await,
            ),
        };
        match loaded {
            Ok((config, blobs)) => sources.push(Source {
                name,
                config,
                blobs,
            }),
            Err(e) => warn(&format!("warning: cache import from {name} skipped: {e}")),
        }
    }
    Imports { sources }
}

/// The snapshot name an imported chain entry gets: image layers keep the image import's
/// `layer-<chain id>`, steps `c-<hash of parent, layer, time>`, so importing twice
/// makes nothing twice.
fn snapshot_names(cfg: &CacheConfig, chain: &[usize]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(chain.len());
    let mut image_chain: Option<Digest> = None;
    let mut all_image = true;
    for &i in chain {
        let s = &cfg.snapshots[i];
        let layer = cfg.layer(i);
        all_image &= s.image_layer && layer.is_some();
        let name = match layer {
            Some(l) if all_image => {
                let diff: Digest = parse_digest(&l.diff_id)?;
                let id = match &image_chain {
                    None => diff,
                    Some(prev) => Digest::sha256(format!("{prev} {diff}").as_bytes()),
                };
                image_chain = Some(id.clone());
                super::worker::image_layer_key(&id)
            }
            _ => {
                let what = format!(
                    "{}\n{}\n{}",
                    names.last().map_or("", String::as_str),
                    layer.map_or("empty", |l| l.digest.as_str()),
                    s.created
                );
                let d = Digest::sha256(what.as_bytes());
                format!("c-{}", &d.hex()[..32])
            }
        };
        names.push(name);
    }
    Ok(names)
}

fn committed(inner: &Inner, name: &str) -> bool {
    matches!(inner.snapshotter.stat(name),
        Ok(info) if info.kind == rbuild_executor::snapshot::Kind::Committed)
}

/// Fetches a layer blob of `src` into the store (verified against its digest).
async fn fetch(inner: &Inner, src: &Source, layer: &CacheLayer) -> Result<(), String> {
    let digest = parse_digest(&layer.digest)?;
    if inner.store.has_blob(&digest) {
        return Ok(());
    }
    if !matches!(src.blobs, Blobs::Store) {
        inner.notice(&format!(
            "importing cache layer {digest} ({} bytes) from {}",
            layer.size, src.name
        ));
    }
    match &src.blobs {
        Blobs::Store => Err(format!("blob {digest} is not in the local store")),
        Blobs::Registry(repo) => repo
            .fetch_blob(
                &inner.store,
                &digest,
                layer.size,
                &rbuild_exporter::registry::NoProgress,
            )
            .await
            .map_err(|e| e.to_string()),
        Blobs::Local(dir) => {
            let path = dir.join("blobs").join("sha256").join(digest.hex());
            let store = inner.store.clone();
            let size = layer.size;
            tokio::task::spawn_blocking(move || {
                let mut f =
                    std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                store
                    .put_reader(&mut f, Some(&digest), Some(size))
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: rbuild_exporter::digest::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks `layer` into a new committed snapshot `name` on `parent`, checking its
/// diff_id; nothing is left behind on failure.
fn import_snapshot(
    inner: &Inner,
    name: &str,
    parent: Option<&str>,
    layer: Option<&CacheLayer>,
    created: &str,
) -> Result<(), String> {
    let sn = &inner.snapshotter;
    if sn.stat(name).is_ok() {
        // A half import of a dead process.
        let _ = sn.remove(name);
    }
    let dir = sn
        .begin_import(name, parent)
        .map_err(|e| format!("import {name}: {e}"))?;
    let unpacked = match layer {
        None => Ok(()),
        Some(l) => unpack_checked(&inner.store, l, &dir),
    }
    .and_then(|()| {
        sn.commit_import(name)
            .map_err(|e| format!("import {name}: {e}"))
    });
    if let Err(e) = unpacked {
        let _ = sn.remove(name);
        return Err(e);
    }
    let meta = SnapshotMeta {
        created: created.to_string(),
        empty: layer.is_none(),
        origin: layer.map(|l| BlobRef {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
        }),
        produced: Vec::new(),
    };
    inner.state.put_meta(name, &meta)
}

fn unpack_checked(store: &Store, l: &CacheLayer, dir: &Path) -> Result<(), String> {
    let digest = parse_digest(&l.digest)?;
    let diff_id = parse_digest(&l.diff_id)?;
    let f = store.open_blob(&digest).map_err(|e| e.to_string())?;
    let plain = media::decompress(
        BufReader::new(f),
        media::Compression::from_media_type(&l.media_type),
    )
    .map_err(|e| format!("layer {digest}: {e}"))?;
    let mut reader = Hashing {
        inner: plain,
        hasher: diff_id.hasher(),
    };
    unpack_layer_with(&mut reader, None, dir, UnpackMode::OverlayLower)
        .map_err(|e| format!("unpack layer {digest}: {e}"))?;
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| format!("layer {digest}: {e}"))?;
    let actual = reader.hasher.finish();
    if actual != diff_id {
        return Err(format!(
            "layer {digest} unpacks to {actual}, not its diff_id {diff_id}"
        ));
    }
    Ok(())
}

/// Makes `snapshot` of `src` (and its chain) local; returns its snapshot name.
async fn materialize(inner: &Arc<Inner>, src: &Source, snapshot: usize) -> Result<String, String> {
    let cfg = &src.config;
    let chain = cfg.chain(snapshot);
    let names = snapshot_names(cfg, &chain)?;
    let top = names.last().cloned().ok_or("an empty chain")?;
    if committed(inner, &top) {
        return Ok(top);
    }
    let _lease = inner.store.lease().map_err(|e| e.to_string())?;
    let missing: Vec<usize> = (0..chain.len())
        .filter(|&i| !committed(inner, &names[i]))
        .collect();
    for &i in &missing {
        if let Some(l) = cfg.layer(chain[i]) {
            fetch(inner, src, l).await?;
        }
    }
    let work: Vec<(String, Option<String>, Option<CacheLayer>, String)> = missing
        .iter()
        .map(|&i| {
            (
                names[i].clone(),
                i.checked_sub(1).map(|p| names[p].clone()),
                cfg.layer(chain[i]).cloned(),
                cfg.snapshots[chain[i]].created.clone(),
            )
        })
        .collect();
    let inner2 = inner.clone();
    blocking(move || {
        let _lock =
            FileLock::exclusive(inner2.store.lock_path("build-unpack.lock")).map_err(werr)?;
        for (name, parent, layer, created) in &work {
            if committed(&inner2, name) {
                continue;
            }
            import_snapshot(&inner2, name, parent.as_deref(), layer.as_ref(), created)
                .map_err(WorkerError::new)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.message)?;
    Ok(top)
}

/// Looks `key` up in the imported sources, making the first one that has it local.
/// Returns the snapshot and the source's name; failures are warnings.
pub(crate) async fn import(
    inner: &Arc<Inner>,
    imports: &Imports,
    key: &CacheKey,
) -> Option<(String, String)> {
    for src in &imports.sources {
        let Some(snapshot) = src.config.lookup(key) else {
            continue;
        };
        match materialize(inner, src, snapshot).await {
            Ok(name) => return Some((name, src.name.clone())),
            Err(e) => {
                let step = src
                    .config
                    .records
                    .iter()
                    .find(|r| &r.key == key)
                    .map_or("", |r| r.step.as_str());
                inner.notice(&format!(
                    "warning: cache record for {step} from {} skipped: {e}",
                    src.name
                ));
            }
        }
    }
    None
}

/// `--explain` lines for the steps an import satisfied:
/// `#7 [2/3] RUN make — CACHED (imported from registry localhost:5000/app:cache)`.
/// `offset` is the progress number before the solver's first step.
pub fn explain_imported(
    records: &[KeyRecord],
    imported: &std::collections::BTreeMap<String, String>,
    offset: usize,
) -> Vec<String> {
    records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let src = imported.get(&r.key.0)?;
            Some(format!(
                "#{} {} — CACHED (imported from {src})",
                i + 1 + offset,
                r.step
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_the_source_of_imported_hits() {
        let rec = |key: &str, step: &str| KeyRecord {
            key: CacheKey(key.into()),
            id: step.into(),
            step: step.into(),
            stage: None,
            kind: "exec".into(),
            summary: String::new(),
            op: serde_json::Value::Null,
            platform: "linux/amd64".into(),
            inputs: Vec::new(),
            context_digest: None,
            base: None,
            build_args: Default::default(),
        };
        let records = [
            rec("sha256:a", "[1/2] FROM busybox"),
            rec("sha256:b", "[2/2] RUN make"),
        ];
        let imported = [("sha256:b".to_string(), "local /c".to_string())].into();
        assert_eq!(
            explain_imported(&records, &imported, 3),
            ["#5 [2/2] RUN make — CACHED (imported from local /c)"]
        );
    }

    #[test]
    fn cache_to_specs() {
        assert_eq!(
            parse_cache_to("type=local,dest=/c,mode=max").unwrap(),
            CacheTo::Local {
                dest: "/c".into(),
                tag: "latest".into(),
                mode: CacheMode::Max,
                ignore_error: false,
            }
        );
        assert_eq!(
            parse_cache_to("type=registry,ref=localhost:5000/app:cache,ignore-error=true").unwrap(),
            CacheTo::Registry {
                reference: "localhost:5000/app:cache".into(),
                mode: CacheMode::Min,
                ignore_error: true,
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheTo::Inline);
        assert!(parse_cache_to("type=local").is_err());
        assert!(parse_cache_to("type=local,dest=x,mode=all").is_err());
        assert!(parse_cache_to("type=gha").is_err());
        assert!(parse_cache_to("type=local,dest=x,tag=../x").is_err());
    }

    #[test]
    fn cache_from_specs() {
        assert_eq!(
            parse_cache_from("localhost:5000/app:1").unwrap(),
            CacheFrom::Registry {
                reference: "localhost:5000/app:1".into()
            }
        );
        assert_eq!(
            parse_cache_from("type=local,src=/c,tag=v1").unwrap(),
            CacheFrom::Local {
                src: "/c".into(),
                tag: "v1".into()
            }
        );
        assert!(parse_cache_from("type=registry").is_err());
        assert!(parse_cache_from("type=local,src=/c,bogus=1").is_err());
    }

    #[test]
    fn imported_snapshot_names_are_stable_and_image_layers_keep_chain_ids() {
        let layer = |n: u8| CacheLayer {
            digest: format!("sha256:{}", hex::encode([n; 32])),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 1,
            diff_id: format!("sha256:{}", hex::encode([n + 1; 32])),
        };
        let mut b = CacheBuilder::new();
        b.add(
            &CacheKey("sha256:aa".into()),
            "",
            &[
                ChainEntry {
                    layer: Some(layer(1)),
                    created: "t".into(),
                    image_layer: true,
                },
                ChainEntry {
                    layer: None,
                    created: "t2".into(),
                    image_layer: false,
                },
            ],
        );
        let cfg = b.build();
        let chain = cfg.chain(cfg.lookup(&CacheKey("sha256:aa".into())).unwrap());
        let names = snapshot_names(&cfg, &chain).unwrap();
        assert_eq!(names[0], format!("layer-{}", hex::encode([2u8; 32])));
        assert!(names[1].starts_with("c-") && names[1].len() == 34);
        assert_eq!(snapshot_names(&cfg, &chain).unwrap(), names);
    }
}
