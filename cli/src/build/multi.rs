//! `--platform A,B,...`: one image per platform, pushed under each `--tag` as an image index
//! listing them (as `docker buildx build --platform ... --push`), or written as an OCI
//! archive whose `index.json` names that index (`--output type=oci`); `--output type=local`
//! gets one directory per platform (`DEST/linux_arm64/`, as buildx). The local image store
//! holds one platform per name, so it gets nothing: outputs it would need are refused before
//! anything runs (buildx's docker exporter refuses them too). Owns the index; the
//! per-platform images are exported by [`super::export`], pushed by the exporter's `push`
//! and archived by its `save_oci_index_archive`.

use rbuild_exporter::Digest;
use rbuild_exporter::image::Image as StoredImage;
use rbuild_exporter::images::ImageRecord;
use rbuild_exporter::registry::{RawManifest, Registry};
use rbuild_exporter::{archive, media, push};
use rbuild_solver::{Platform, SolveResult};
use serde_json::json;

use super::args::Output;
use super::cache_io::CacheTo;
use super::export;
use super::output::{Ctx, Summary, parse_tags};

/// Refuses, before building, what a multi-platform build cannot do.
pub fn check_outputs(
    push: bool,
    tags: &[String],
    outputs: &[Output],
    cache_to: &[CacheTo],
) -> Result<(), String> {
    let hint = "multi-platform builds push (--push, or --output type=registry, with --tag NAME) or write an OCI archive (--output type=oci,dest=FILE); or build one --platform at a time";
    let pushes = push
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Image { push: true, .. }));
    let archives = outputs
        .iter()
        .any(|o| matches!(o, Output::Oci { .. } | Output::Local { .. }));
    let to_store = outputs
        .iter()
        .any(|o| matches!(o, Output::Image { push: false, .. }));
    if (!pushes && !archives) || (to_store && !push) {
        return Err(format!(
            "a multi-platform image cannot be stored in the local image store (it holds one platform per name): {hint}"
        ));
    }
    let named = !tags.is_empty()
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Image { names, .. } if !names.is_empty()));
    if pushes && !named {
        return Err(format!("--push needs a name: {hint}"));
    }
    if let Some(o) = outputs.iter().find(|o| {
        !matches!(
            o,
            Output::Image { .. } | Output::Oci { .. } | Output::Local { .. }
        )
    }) {
        let kind = match o {
            Output::Local { .. } => "local",
            Output::Tar { .. } => "tar",
            Output::Oci { .. } => "oci",
            Output::Docker { .. } => "docker",
            Output::Image { .. } => "image",
        };
        return Err(format!(
            "--output type={kind} is not supported for multi-platform builds yet: {hint}"
        ));
    }
    if !cache_to.is_empty() {
        return Err(format!(
            "--cache-to is not supported for multi-platform builds yet: {hint}"
        ));
    }
    Ok(())
}

/// One platform's manifest, as the index lists it.
pub struct Entry<'a> {
    pub platform: &'a Platform,
    pub media_type: &'a str,
    pub digest: &'a Digest,
    pub size: usize,
}

impl<'a> Entry<'a> {
    fn of(platform: &'a Platform, image: &'a StoredImage) -> Entry<'a> {
        Entry {
            platform,
            media_type: &image.manifest_media_type,
            digest: &image.manifest_digest,
            size: image.manifest_bytes.len(),
        }
    }
}

/// The index of `entries` (one per platform): a Docker manifest list when every manifest
/// is Docker's, else an OCI index. Returns (bytes, media type).
pub fn index_bytes(entries: &[Entry<'_>]) -> Result<(Vec<u8>, String), String> {
    let docker = entries
        .iter()
        .all(|e| e.media_type == media::DOCKER_MANIFEST);
    let media_type = if docker {
        media::DOCKER_MANIFEST_LIST
    } else {
        media::OCI_INDEX
    };
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let p = e.platform;
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if let Some(v) = &p.variant {
                platform["variant"] = json!(v);
            }
            json!({
                "mediaType": e.media_type,
                "digest": e.digest.to_string(),
                "size": e.size,
                "platform": platform,
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| format!("image index: {e}"))?;
    Ok((bytes, media_type.to_string()))
}

/// buildx's directory name for a platform's files: `linux_arm64`, `linux_arm_v7`.
fn platform_dir(p: &Platform) -> String {
    p.to_string().replace('/', "_")
}

/// Exports every platform's image, writes the index and pushes both under every name.
pub fn write(
    ctx: &Ctx<'_>,
    solved: &[(Platform, SolveResult)],
    outputs: &[Output],
) -> Result<Summary, String> {
    let r = ctx.renderer;
    let store = ctx.worker.store();
    let mut names = parse_tags(&ctx.args.tags)?;
    for o in outputs {
        if let Output::Image { names: more, .. } = o {
            names.extend(parse_tags(more)?);
        }
    }
    for o in outputs {
        let Output::Local { dest } = o else { continue };
        let n = r.begin("exporting to client directory");
        for (platform, s) in solved {
            let dir = dest.join(platform_dir(platform));
            export::with_rootfs(ctx.worker, s.result.as_ref(), |root| {
                export::to_local(root, &dir)
            })?;
            r.status(n, &format!("copying files to {} done", dir.display()));
        }
        r.done(n);
    }
    let images_wanted = outputs.is_empty()
        || ctx.args.push
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Image { .. } | Output::Oci { .. }));
    if !images_wanted {
        return Ok(Summary::default());
    }
    let n = r.begin("exporting to image");
    let opts = ctx.export_options();
    let mut exported = Vec::new();
    for (platform, s) in solved {
        let e = export::export_image(ctx.worker, s.result.as_ref(), &s.image, &opts, None)?;
        r.status(
            n,
            &format!(
                "exporting manifest {} for {platform} done",
                e.image.manifest_digest
            ),
        );
        exported.push((platform, e));
    }
    let entries: Vec<Entry<'_>> = exported
        .iter()
        .map(|(p, e)| Entry::of(p, &e.image))
        .collect();
    let (bytes, media_type) = index_bytes(&entries)?;
    let digest: Digest = store
        .put_bytes(&bytes, None)
        .map_err(|e| format!("writing the image index: {e}"))?;
    r.status(n, &format!("exporting manifest list {digest} done"));
    for o in outputs {
        let Output::Oci { dest } = o else { continue };
        let manifests: Vec<Digest> = exported
            .iter()
            .map(|(_, e)| e.image.manifest_digest.clone())
            .collect();
        super::output::write_file_or_stdout(dest, |w| {
            archive::save_oci_index_archive(store, &digest, &manifests, &names, w)
                .map_err(|e| e.to_string())
        })?;
        r.status(n, &format!("sending oci tarball to {dest} done"));
    }
    let pushes = ctx.args.push
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Image { push: true, .. }));
    let index = RawManifest {
        bytes,
        media_type,
        digest: digest.clone(),
    };
    for name in names.iter().filter(|_| pushes) {
        for (platform, e) in &exported {
            let record = ImageRecord::from_store(store, &e.image.manifest_digest, None)
                .map_err(|e| e.to_string())?;
            let dest = name
                .repository()
                .with_digest(e.image.manifest_digest.clone());
            r.status(n, &format!("pushing {name} ({platform})"));
            ctx.rt
                .block_on(push::push(
                    store,
                    &record,
                    &dest,
                    ctx.registry,
                    &rbuild_exporter::registry::NoProgress,
                ))
                .map_err(|e| e.to_string())?;
        }
        let tag = name
            .tag()
            .unwrap_or(rbuild_exporter::reference::DEFAULT_TAG);
        let op = format!("push {name}");
        let registry =
            Registry::new(name.domain(), ctx.registry.clone()).map_err(|e| e.to_string())?;
        let pushed = ctx
            .rt
            .block_on(
                registry
                    .repository(name.path(), true, op.clone())
                    .put_manifest(tag, &index),
            )
            .map_err(|e| format!("{op}: {e}"))?;
        r.status(n, &format!("pushing {name} {pushed} done"));
    }
    r.done(n);
    if let Some(path) = &ctx.args.iidfile {
        std::fs::write(path, digest.to_string())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &ctx.args.metadata_file {
        let joined: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let meta = json!({
            "containerimage.digest": digest.to_string(),
            "image.name": joined.join(","),
        });
        let text = serde_json::to_string_pretty(&meta).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(Summary {
        image_id: Some(digest.to_string()),
        size: exported.iter().map(|(_, e)| e.image.content_size()).sum(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_each_platform_and_follows_the_manifests_media_type() {
        let (amd, arm) = (
            Platform::parse("linux/amd64").unwrap(),
            Platform::parse("linux/arm/v7").unwrap(),
        );
        let d1: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let d2: Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        let entries = |mt: &'static str| {
            vec![
                Entry {
                    platform: &amd,
                    media_type: mt,
                    digest: &d1,
                    size: 10,
                },
                Entry {
                    platform: &arm,
                    media_type: mt,
                    digest: &d2,
                    size: 20,
                },
            ]
        };
        let (bytes, mt) = index_bytes(&entries(media::OCI_MANIFEST)).unwrap();
        assert_eq!(mt, media::OCI_INDEX);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["mediaType"], media::OCI_INDEX);
        assert_eq!(
            v["manifests"][0]["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(
            v["manifests"][1]["platform"],
            json!({"architecture": "arm", "os": "linux", "variant": "v7"})
        );
        assert_eq!(v["manifests"][1]["digest"], d2.to_string());
        assert_eq!(v["manifests"][1]["size"], 20);
        let (_, mt) = index_bytes(&entries(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(mt, media::DOCKER_MANIFEST_LIST);
    }

    #[test]
    fn only_a_named_push_is_accepted() {
        let image = |push| Output::Image {
            names: vec![],
            push,
        };
        assert!(check_outputs(true, &["r/x:1".into()], &[], &[]).is_ok());
        assert!(
            check_outputs(
                false,
                &[],
                &[Output::Image {
                    names: vec!["r/x:1".into()],
                    push: true
                }],
                &[]
            )
            .is_ok()
        );
        let e = check_outputs(false, &["r/x:1".into()], &[image(false)], &[]).unwrap_err();
        assert!(e.contains("local image store"), "{e}");
        let e = check_outputs(true, &[], &[], &[]).unwrap_err();
        assert!(e.contains("needs a name"), "{e}");
        let tar = Output::Tar { dest: "-".into() };
        let e = check_outputs(true, &["r/x:1".into()], &[tar], &[]).unwrap_err();
        assert!(e.contains("type=tar"), "{e}");
        assert_eq!(
            platform_dir(&Platform::parse("linux/arm/v7").unwrap()),
            "linux_arm_v7"
        );
        let local = Output::Local { dest: "out".into() };
        assert!(check_outputs(false, &[], &[local], &[]).is_ok());
        // An OCI archive needs no push, nor a name.
        let oci = || Output::Oci {
            dest: "x.tar".into(),
        };
        assert!(check_outputs(false, &[], &[oci()], &[]).is_ok());
        assert!(check_outputs(true, &["r/x:1".into()], &[oci()], &[]).is_ok());
    }
}
