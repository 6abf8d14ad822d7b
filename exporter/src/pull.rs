//! `pull`: fetch an image from a registry into the local store.
//!
//! The manifest (or index, then the manifest chosen for the platform) is kept
//! byte for byte; config and layers stream into the store's verifying writer,
//! a few at a time; the name is recorded in the image index last, under the
//! same lease, so GC never sees half a pull.

use futures_util::stream::{self, TryStreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{self, Parsed, Platform};
use crate::images::{ImageRecord, Images};
use crate::reference::Reference;
use crate::registry::ops::RawManifest;
use crate::registry::progress::{Progress, ProgressEvent};
use crate::registry::{Registry, RegistryOptions, Repository, sources};
use crate::store::Store;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The name the image was recorded under.
    pub reference: Reference,
    /// Digest of what the reference resolved to on the registry (index or manifest).
    pub digest: Digest,
    /// The single-platform manifest that was chosen.
    pub manifest: Digest,
    /// Blobs (config, layers) that were downloaded, as opposed to already present.
    pub downloaded: usize,
    /// Whether the name already pointed at this image before the pull.
    pub up_to_date: bool,
    pub record: ImageRecord,
}

/// The tag or digest to ask the registry for.
pub fn remote_reference(r: &Reference) -> String {
    match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    }
}

/// Pulls `reference` into `store` and names it in the image index. From an
/// index, the manifest for `platform` (default: this machine's) is chosen; a
/// single-platform image must match `platform` when one is given.
pub async fn pull(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<PullReport> {
    let host = Platform::host();
    let wanted = platform.unwrap_or(&host);
    let op = format!("pull {reference}");
    let lease = store.lease()?;
    let registry = Registry::new(reference.domain(), opts.clone())?;
    let repo = registry.repository(reference.path(), false, op.clone());
    let ctx = |e: Error| e.in_operation(&op);

    let top = repo.get_manifest(&remote_reference(reference)).await?;
    put_manifest(store, &top).map_err(ctx)?;
    let manifest = resolve_platform(store, &repo, &top, wanted, reference)
        .await
        .map_err(ctx)?;
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|source| {
            ctx(Error::Json {
                what: format!("manifest {}", manifest.digest),
                source,
            })
        })?;

    // The config first: it says the platform, which must match an explicit
    // request even when the registry served a single manifest.
    let mut blobs: Vec<(Digest, u64, bool)> = Vec::new();
    let config = image::digest_of(parsed.config().digest()).map_err(ctx)?;
    let config_size = parsed.config().size();
    let config_was_present = store.has_blob(&config);
    if !config_was_present {
        repo.fetch_blob(store, &config, config_size, progress)
            .await?;
    }
    if let (Some(p), Some(actual)) = (platform, config_platform(store, &config)) {
        if !p.matches(&actual) {
            return Err(ctx(Error::NoMatchingPlatform {
                reference: reference.to_string(),
                wanted: p.to_string(),
                available: actual.to_string(),
            }));
        }
    }
    for l in parsed.layers() {
        blobs.push((image::digest_of(l.digest()).map_err(ctx)?, l.size(), true));
    }
    let mut missing = Vec::new();
    for (d, size, is_layer) in &blobs {
        if store.has_blob(d) {
            if *is_layer {
                progress.event(ProgressEvent::Done {
                    digest: d.clone(),
                    status: "Already exists".into(),
                });
            }
        } else {
            if *is_layer {
                progress.event(ProgressEvent::Start {
                    digest: d.clone(),
                    size: *size,
                    status: "Pulling fs layer".into(),
                });
            }
            missing.push((d.clone(), *size, *is_layer));
        }
    }
    let downloaded = missing.len() + usize::from(!config_was_present);
    let concurrency = opts.concurrency.max(1);
    stream::iter(missing.into_iter().map(Ok::<_, Error>))
        .try_for_each_concurrent(concurrency, |(d, size, is_layer)| {
            let repo = &repo;
            async move {
                repo.fetch_blob(store, &d, size, progress).await?;
                if is_layer {
                    progress.event(ProgressEvent::Done {
                        digest: d.clone(),
                        status: "Pull complete".into(),
                    });
                }
                Ok(())
            }
        })
        .await?;

    for d in blobs.iter().map(|b| &b.0).chain([&config]) {
        sources::record(store, d, reference.domain(), reference.path());
    }
    let images = Images::open(store);
    let before = images
        .lookup(&reference.to_string())
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|r| r.target);
    let record = images
        .record(Some(reference), &manifest.digest, Some(top.digest.clone()))
        .map_err(ctx)?;
    drop(lease);
    Ok(PullReport {
        reference: reference.clone(),
        digest: top.digest,
        up_to_date: downloaded == 0 && before.as_ref() == Some(&manifest.digest),
        manifest: manifest.digest,
        downloaded,
        record,
    })
}

/// The platform an image config declares (`None` if unreadable).
fn config_platform(store: &Store, config: &Digest) -> Option<Platform> {
    #[derive(serde::Deserialize)]
    struct C {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let c: C = serde_json::from_slice(&store.read_blob(config).ok()?).ok()?;
    (!c.os.is_empty() && !c.architecture.is_empty())
        .then(|| Platform::new(&c.os, &c.architecture, c.variant.as_deref()))
}

fn put_manifest(store: &Store, m: &RawManifest) -> Result<()> {
    store.put_bytes(&m.bytes, Some(&m.digest))?;
    Ok(())
}

/// Follows indexes (a few levels at most) to the manifest for `platform`,
/// fetching and storing each level.
async fn resolve_platform(
    store: &Store,
    repo: &Repository,
    top: &RawManifest,
    platform: &Platform,
    reference: &Reference,
) -> Result<RawManifest> {
    let mut current = top.clone();
    for _ in 0..4 {
        let what = format!("{reference} ({})", current.digest);
        let (_, parsed) = image::parse(&current.bytes, Some(&current.media_type), &what)?;
        match parsed {
            Parsed::Manifest(_) => return Ok(current),
            Parsed::Index(idx) => {
                let d = image::choose_from_index(&idx, platform, &reference.to_string())?;
                let next = repo.get_manifest(&d.to_string()).await?;
                put_manifest(store, &next)?;
                current = next;
            }
        }
    }
    Err(Error::InvalidImage {
        what: reference.to_string(),
        reason: "indexes nested too deep".into(),
    })
}
