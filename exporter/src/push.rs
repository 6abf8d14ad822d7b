//! `push`: send an image of the local store to a registry.
//!
//! Config and layers go first (a few at a time): each is skipped when the
//! registry has it (HEAD), mounted when another repository of the same
//! registry is known to hold it, else uploaded. The manifest goes last, with
//! the exact bytes the store holds, so its digest is unchanged.

use futures_util::stream::{self, TryStreamExt as _};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::images::ImageRecord;
use crate::reference::Reference;
use crate::registry::ops::{RawManifest, UploadOutcome};
use crate::registry::progress::{Progress, ProgressEvent};
use crate::registry::{Registry, RegistryOptions, media, sources};
use crate::store::Store;

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// Where it went.
    pub reference: Reference,
    /// The manifest's digest (same as in the local store).
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: usize,
    /// Blobs uploaded, mounted and already present.
    pub pushed: usize,
    pub mounted: usize,
    pub existed: usize,
}

/// Pushes the image of `record` (from the local store) to `dest`: under its
/// tag, or by digest when `dest` has a digest (which must be the manifest's).
pub async fn push(
    store: &Store,
    record: &ImageRecord,
    dest: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let op = format!("push {dest}");
    let ctx = |e: Error| e.in_operation(&op);
    let _lease = store.lease().map_err(ctx)?;
    let image = Image::load(store, &record.target).map_err(ctx)?;
    let registry = Registry::new(dest.domain(), opts.clone())?;
    let repo = registry.repository(dest.path(), true, op.clone());

    let mut blobs: Vec<(Digest, u64, bool)> = Vec::new();
    for l in &image.layers {
        if media::is_non_distributable(&l.media_type) {
            continue;
        }
        blobs.push((l.digest.clone(), l.size, true));
    }
    blobs.push((
        image.config_digest.clone(),
        image.config_bytes.len() as u64,
        false,
    ));
    for (d, size, is_layer) in &blobs {
        if *is_layer {
            progress.event(ProgressEvent::Start {
                digest: d.clone(),
                size: *size,
                status: "Preparing".into(),
            });
        }
    }
    let outcomes: Vec<UploadOutcome> = stream::iter(blobs.iter().cloned().map(Ok::<_, Error>))
        .map_ok(|(d, size, is_layer)| {
            let repo = &repo;
            async move {
                let from = sources::mount_source(store, &d, dest.domain(), dest.path());
                let outcome = repo
                    .upload_blob(store, &d, size, from.as_deref(), progress)
                    .await?;
                if is_layer {
                    let status = match &outcome {
                        UploadOutcome::Exists => "Layer already exists".to_string(),
                        UploadOutcome::Mounted { from } => format!("Mounted from {from}"),
                        UploadOutcome::Pushed => "Pushed".to_string(),
                    };
                    progress.event(ProgressEvent::Done { digest: d, status });
                }
                Ok::<_, Error>(outcome)
            }
        })
        .try_buffered(opts.concurrency.max(1))
        .try_collect()
        .await?;

    let manifest = RawManifest {
        bytes: image.manifest_bytes.clone(),
        media_type: image.manifest_media_type.clone(),
        digest: image.manifest_digest.clone(),
    };
    let target = match (dest.digest(), dest.tag()) {
        (Some(d), _) if *d != manifest.digest => {
            return Err(ctx(Error::InvalidImage {
                what: dest.to_string(),
                reason: format!("the local image's manifest is {}", manifest.digest),
            }));
        }
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    let digest = repo.put_manifest(&target, &manifest).await?;
    for (d, _, _) in &blobs {
        sources::record(store, d, dest.domain(), dest.path());
    }
    let count = |f: fn(&UploadOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    Ok(PushReport {
        reference: dest.clone(),
        digest,
        size: manifest.bytes.len(),
        pushed: count(|o| matches!(o, UploadOutcome::Pushed)),
        mounted: count(|o| matches!(o, UploadOutcome::Mounted { .. })),
        existed: count(|o| matches!(o, UploadOutcome::Exists)),
    })
}
