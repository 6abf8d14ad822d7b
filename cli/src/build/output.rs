//! After the solve: the image in the store (named with every `--tag`), pushes, archives,
//! local directories and tarballs, `--iidfile` and `--metadata-file`, each reported as an
//! exporting step.

use std::io::Write as _;
use std::path::Path;

use rbuild_exporter::archive::{self, ExportImage};
use rbuild_exporter::images::Images;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::registry::RegistryOptions;
use rbuild_exporter::{media, push};
use rbuild_solver::SolveResult;

use super::args::{BuildArgs, Compression, Output};
use super::cache_io;
use super::export::{self, ExportOptions};
use super::progress::Renderer;
use super::worker::RealWorker;

pub struct Ctx<'a> {
    pub args: &'a BuildArgs,
    pub worker: &'a RealWorker,
    pub renderer: &'a Renderer,
    pub rt: &'a tokio::runtime::Runtime,
    pub registry: &'a RegistryOptions,
    pub compression: Compression,
    pub epoch: Option<u64>,
    /// `--cache-to type=inline`: the cache goes into the image config.
    pub inline_cache: bool,
}

impl Ctx<'_> {
    pub(super) fn export_options(&self) -> ExportOptions {
        ExportOptions {
            compression: match self.compression {
                Compression::Gzip => media::Compression::Gzip,
                Compression::Zstd => media::Compression::Zstd,
                Compression::Uncompressed => media::Compression::None,
            },
            epoch: self.epoch,
        }
    }
}

/// `--cache-to type=local|registry`: the cache of this build, exported after the image.
/// A failure fails the build unless the target says `ignore-error=true` (then a warning).
pub fn export_cache(
    ctx: &Ctx<'_>,
    solved: &SolveResult,
    targets: &[cache_io::CacheTo],
) -> Result<(), String> {
    for t in targets {
        let ignore = match t {
            cache_io::CacheTo::Inline => continue,
            cache_io::CacheTo::Local { ignore_error, .. }
            | cache_io::CacheTo::Registry { ignore_error, .. } => *ignore_error,
        };
        match export_cache_to(ctx, solved, t) {
            Err(e) if ignore => ctx
                .renderer
                .println(&format!("warning: {e} (ignored: ignore-error=true)")),
            other => other?,
        }
    }
    Ok(())
}

fn export_cache_to(
    ctx: &Ctx<'_>,
    solved: &SolveResult,
    t: &cache_io::CacheTo,
) -> Result<(), String> {
    let r = ctx.renderer;
    let (mode, what) = match t {
        cache_io::CacheTo::Inline => return Ok(()),
        cache_io::CacheTo::Local { dest, mode, .. } => (*mode, dest.display().to_string()),
        cache_io::CacheTo::Registry {
            reference, mode, ..
        } => (*mode, reference.clone()),
    };
    let n = r.begin("exporting cache");
    let cfg = cache_io::collect(
        ctx.worker,
        &solved.records,
        solved.result.as_ref(),
        mode,
        &ctx.export_options(),
    )?;
    ctx.rt
        .block_on(cache_io::fetch_missing(ctx.worker, &cfg))
        .map_err(|e| format!("exporting cache to {what}: {e}"))?;
    r.status(
        n,
        &format!(
            "preparing build cache for export ({} records, {} layers) done",
            cfg.records.len(),
            cfg.layers.len()
        ),
    );
    match t {
        cache_io::CacheTo::Local { dest, tag, .. } => {
            cache_io::write_local(ctx.worker.store(), &cfg, dest, tag)
                .map_err(|e| format!("exporting cache to {what}: {e}"))?;
        }
        cache_io::CacheTo::Registry { reference, .. } => {
            let d = ctx
                .rt
                .block_on(cache_io::write_registry(
                    ctx.worker.store(),
                    &cfg,
                    reference,
                    ctx.registry,
                ))
                .map_err(|e| format!("exporting cache to {what}: {e}"))?;
            r.status(n, &format!("writing cache manifest {d} done"));
        }
        cache_io::CacheTo::Inline => {}
    }
    r.status(n, &format!("exporting cache to {what} done"));
    r.done(n);
    Ok(())
}

/// What the command reports at the end.
#[derive(Debug, Default)]
pub struct Summary {
    /// The image ID, when an image was made.
    pub image_id: Option<String>,
    pub size: u64,
}

/// Parses `--tag` values (before building, so a typo fails fast).
pub fn parse_tags(tags: &[String]) -> Result<Vec<Reference>, String> {
    tags.iter()
        .map(|t| Reference::parse_docker(t).map_err(|e| format!("invalid tag {t:?}: {e}")))
        .collect()
}

pub(super) fn write_file_or_stdout(
    dest: &str,
    f: impl FnOnce(&mut dyn std::io::Write) -> Result<(), String>,
) -> Result<(), String> {
    if dest == "-" {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        f(&mut lock)?;
        lock.flush().map_err(|e| e.to_string())
    } else {
        let mut inner_err = None;
        archive::write_to_path(Path::new(dest), |w| {
            f(w).map_err(|e| {
                inner_err = Some(e.clone());
                rbuild_exporter::Error::io(dest, std::io::Error::other(e))
            })
        })
        .map_err(|e| inner_err.unwrap_or_else(|| e.to_string()))
    }
}

pub fn write(ctx: &Ctx<'_>, solved: &SolveResult, outputs: &[Output]) -> Result<Summary, String> {
    let r = ctx.renderer;
    let store = ctx.worker.store();
    let mut names = parse_tags(&ctx.args.tags)?;
    let mut push = ctx.args.push;
    for o in outputs {
        if let Output::Image {
            names: more,
            push: p,
        } = o
        {
            names.extend(parse_tags(more)?);
            push |= *p;
        }
    }
    let to_store = outputs.is_empty() || outputs.iter().any(|o| matches!(o, Output::Image { .. }));
    let needs_image = to_store
        || push
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Oci { .. } | Output::Docker { .. }));
    let mut summary = Summary::default();
    if needs_image {
        let n = r.begin("exporting to image");
        let opts = ctx.export_options();
        let inline = if ctx.inline_cache {
            let cfg = cache_io::collect(
                ctx.worker,
                &solved.records,
                solved.result.as_ref(),
                rbuild_solver::cache_export::CacheMode::Min,
                &opts,
            )?;
            r.status(
                n,
                &format!(
                    "preparing inline cache ({} records) done",
                    cfg.records.len()
                ),
            );
            Some(cache_io::inline_value(&cfg)?)
        } else {
            None
        };
        let exported = export::export_image(
            ctx.worker,
            solved.result.as_ref(),
            &solved.image,
            &opts,
            inline,
        )?;
        let image = &exported.image;
        r.status(
            n,
            &format!(
                "exporting layers ({} layers, {} written) done",
                image.layers.len(),
                exported.written
            ),
        );
        r.status(
            n,
            &format!("exporting manifest {} done", image.manifest_digest),
        );
        r.status(n, &format!("exporting config {} done", image.config_digest));
        let index = Images::open(store);
        if to_store || push {
            r.status(n, &format!("writing image {} done", image.config_digest));
            if names.is_empty() {
                index
                    .record(None, &image.manifest_digest, None)
                    .map_err(|e| e.to_string())?;
            }
            for name in &names {
                index
                    .record(Some(name), &image.manifest_digest, None)
                    .map_err(|e| e.to_string())?;
                r.status(n, &format!("naming to {name} done"));
            }
        }
        for o in outputs {
            let (dest, docker) = match o {
                Output::Oci { dest } => (dest, false),
                Output::Docker { dest } => (dest, true),
                _ => continue,
            };
            let export = [ExportImage {
                manifest: image.manifest_digest.clone(),
                names: names.clone(),
            }];
            write_file_or_stdout(dest, |w| {
                if docker {
                    archive::save_docker_archive(store, &export, w)
                } else {
                    archive::save_oci_archive(store, &export, w)
                }
                .map_err(|e| e.to_string())
            })?;
            let kind = if docker { "docker" } else { "oci" };
            r.status(n, &format!("sending {kind} tarball to {dest} done"));
        }
        if push {
            if names.is_empty() {
                return Err("--push needs a name: use --tag".into());
            }
            for name in &names {
                let record = index
                    .resolve(&name.to_string())
                    .map_err(|e| e.to_string())?;
                r.status(n, &format!("pushing {name}"));
                let rep = ctx
                    .rt
                    .block_on(push::push(
                        store,
                        &record,
                        name,
                        ctx.registry,
                        &rbuild_exporter::registry::NoProgress,
                    ))
                    .map_err(|e| e.to_string())?;
                r.status(n, &format!("pushing {name} {} done", rep.digest));
            }
        }
        r.done(n);
        summary.size = image.content_size();
        summary.image_id = Some(image.config_digest.to_string());
        if let Some(path) = &ctx.args.iidfile {
            std::fs::write(path, image.config_digest.to_string())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        if let Some(path) = &ctx.args.metadata_file {
            let mut meta = serde_json::json!({
                "containerimage.digest": image.manifest_digest.to_string(),
                "containerimage.config.digest": image.config_digest.to_string(),
            });
            if !names.is_empty()
                && let Some(obj) = meta.as_object_mut()
            {
                let joined: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                obj.insert("image.name".into(), joined.join(",").into());
            }
            let text = serde_json::to_string_pretty(&meta).map_err(|e| e.to_string())?;
            std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        drop(exported);
    }
    for o in outputs {
        match o {
            Output::Local { dest } => {
                let n = r.begin("exporting to client directory");
                export::with_rootfs(ctx.worker, solved.result.as_ref(), |root| {
                    export::to_local(root, dest)
                })?;
                r.status(n, &format!("copying files to {} done", dest.display()));
                r.done(n);
            }
            Output::Tar { dest } => {
                let n = r.begin("exporting to client tarball");
                export::with_rootfs(ctx.worker, solved.result.as_ref(), |root| {
                    write_file_or_stdout(dest, |w| export::to_tar(root, w, ctx.epoch))
                })?;
                r.status(n, &format!("sending tarball to {dest} done"));
                r.done(n);
            }
            _ => {}
        }
    }
    Ok(summary)
}
