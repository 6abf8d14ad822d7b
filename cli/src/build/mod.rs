//! `rbuild build [OPTIONS] PATH|-` (and the bare `rbuild [OPTIONS] PATH`): parse the
//! Dockerfile, lower it, solve it with the real worker, export the image and the other
//! outputs, and print BuildKit-style progress and a summary on stderr.

pub mod args;
pub mod cache_io;
mod contexts;
pub(crate) mod emulation;
pub mod explain;
mod export;
mod multi;
mod output;
pub mod progress;
mod reproducible;
pub mod secrets;
mod ssh_keys;
mod stdin;
pub mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use miette::{IntoDiagnostic as _, miette};
use rbuild_exporter::image::Platform as ExPlatform;
use rbuild_exporter::registry::RegistryOptions;
use rbuild_parser::Source;
use rbuild_parser::dockerignore::load_for_build;
use rbuild_solver::op::Network;
use rbuild_solver::{BuildOptions, Platform, SolveOptions};

use args::{BuildArgs, NetworkArg, ProgressMode};
use progress::{Mode, Renderer};
use worker::{RealWorker, WorkerConfig};

/// Inserts `build` when the first argument that is not a global flag is neither a known
/// subcommand nor a help/version flag: `rbuild -t app:1.0 .` is `rbuild build -t app:1.0 .`.
pub fn implicit_build(args: Vec<OsString>, subcommands: &[String]) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--root" || a == "--insecure-registry" {
            i += 2;
            continue;
        }
        if a.starts_with("--root=") || a.starts_with("--insecure-registry=") {
            i += 1;
            continue;
        }
        let known = subcommands.iter().any(|s| *s == a)
            || matches!(a.as_ref(), "-h" | "--help" | "-V" | "--version");
        if known {
            return args;
        }
        let mut out = args;
        out.insert(i, OsString::from("build"));
        return out;
    }
    args
}

use crate::images::format::human_size;

fn progress_mode(args: &BuildArgs) -> Mode {
    if args.quiet {
        return Mode::Quiet;
    }
    match args.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
        ProgressMode::Auto | ProgressMode::Plain => Mode::Plain,
        ProgressMode::Tty => Mode::Tty,
        ProgressMode::Rawjson => Mode::Json,
        ProgressMode::Quiet => Mode::Quiet,
    }
}

/// The platforms of the build: (build = this machine's, the targets, `--platform` given).
/// `--platform A,B` gives several targets (a multi-platform build, [`multi`]). Another
/// architecture needs a qemu binfmt handler ([`emulation`]).
fn target_platforms(args: &BuildArgs) -> miette::Result<(Platform, Vec<Platform>, bool)> {
    let host = ExPlatform::host();
    let host_p = Platform::parse(&host.to_string()).map_err(|e| miette!("host platform: {e}"))?;
    let Some(spec) = &args.platform else {
        return Ok((host_p.clone(), vec![host_p], false));
    };
    let mut targets: Vec<Platform> = Vec::new();
    for one in spec.split(',').map(str::trim) {
        let wanted: ExPlatform = one.parse().map_err(|e| miette!("--platform {spec}: {e}"))?;
        let target = if wanted.matches(&host) || host.matches(&wanted) {
            host_p.clone()
        } else {
            emulation::check(&host, &wanted, Path::new(emulation::BINFMT_DIR))
                .map_err(|e| miette!("building for {e}"))?;
            Platform::parse(&wanted.normalized().to_string())
                .map_err(|e| miette!("--platform {spec}: {e}"))?
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok((host_p, targets, true))
}

/// RUN steps of a stage on another platform than `--platform`'s (`FROM --platform=...`)
/// need emulation too: checked before solving, so the error names the handler and the RUN
/// line instead of the step failing with "exec format error".
fn check_run_platforms(graph: &rbuild_solver::BuildGraph) -> Result<(), rbuild_solver::Error> {
    let host = ExPlatform::host();
    for id in graph.vertices() {
        let v = graph.vertex(id);
        if !matches!(v.op, rbuild_solver::Op::Exec(_)) {
            continue;
        }
        let p = &v.platform;
        let wanted = ExPlatform::new(&p.os, &p.architecture, p.variant.as_deref());
        if let Err(e) = emulation::check(&host, &wanted, Path::new(emulation::BINFMT_DIR)) {
            return Err(rbuild_solver::Error::Instruction {
                message: format!("RUN in a stage for {wanted}: building for {e}"),
                hint: None,
                location: v.location.clone().map(Box::new),
            });
        }
    }
    Ok(())
}

/// The Dockerfile text and the path `.dockerignore` is looked up beside.
struct Definition {
    name: String,
    text: String,
    path: PathBuf,
}

fn read_definition(
    args: &BuildArgs,
    context: Option<&Path>,
    stdin: Option<&stdin::StdinInput>,
) -> miette::Result<Result<Definition, rbuild_parser::ParseError>> {
    let path = match (&args.file, context) {
        // `-f` names a file inside a context tar sent on stdin.
        (Some(f), Some(ctx))
            if matches!(stdin, Some(stdin::StdinInput::Context(_))) && f.is_relative() =>
        {
            ctx.join(f)
        }
        (Some(f), _) => f.clone(),
        (None, Some(ctx)) => ctx.join("Dockerfile"),
        (None, None) => PathBuf::from("-"),
    };
    if path == Path::new("-")
        && let Some(stdin::StdinInput::Dockerfile(bytes)) = stdin
    {
        return Ok(
            rbuild_parser::decode("<stdin>", bytes).map(|text| Definition {
                name: "Dockerfile".to_string(),
                text,
                path,
            }),
        );
    }
    Ok(crate::check::read_dockerfile(&path)?.map(|t| Definition {
        name: if path == Path::new("-") {
            "Dockerfile".to_string()
        } else {
            t.name
        },
        text: t.text,
        path,
    }))
}

pub fn run(args: BuildArgs, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let started = Instant::now();
    let mode = progress_mode(&args);
    let (build_platform, targets, explicit_platform) = target_platforms(&args)?;
    let (outputs, compression) = args::parse_outputs(&args.outputs).map_err(|e| miette!("{e}"))?;
    let extra_hosts = args
        .add_hosts
        .iter()
        .map(|h| args::parse_add_host(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette!("{e}"))?;
    let access = secrets::Access::from_flags(&args.secrets, &args.ssh, &args.allow, &|k| {
        std::env::var(k).ok()
    })
    .map_err(|e| miette!("{e}"))?;
    let named = contexts::parse(&args.build_contexts).map_err(|e| miette!("{e}"))?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|s| cache_io::parse_cache_to(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette!("{e}"))?;
    if targets.len() > 1 {
        multi::check_outputs(args.push, &args.tags, &outputs, &cache_to)
            .map_err(|e| miette!("{e}"))?;
    }
    let cache_from = args
        .cache_from
        .iter()
        .map(|s| cache_io::parse_cache_from(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette!("{e}"))?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }

    // `rbuild build -`: a context tar or a Dockerfile on stdin (the temporary context
    // directory lives until the build returns).
    let stdin_input = if args.context == "-" && args.file.as_deref() != Some(Path::new("-")) {
        let tmp = rbuild_exporter::root::resolve_root(global.root.as_deref())
            .map_err(crate::images::err)?
            .join("tmp-v1");
        Some(stdin::read(std::io::stdin().lock(), &tmp).map_err(|e| miette!("{e}"))?)
    } else {
        None
    };
    let context = if let Some(stdin::StdinInput::Context(dir)) = &stdin_input {
        Some(stdin::context_dir(dir))
    } else if args.context == "-" {
        None
    } else {
        let p = Path::new(&args.context);
        Some(p.canonicalize().map_err(|e| {
            miette!(
                "unable to prepare context: path {:?} not found: {e}",
                args.context
            )
        })?)
    };
    if context.is_none() && args.file.as_deref() == Some(Path::new("-")) {
        return Err(miette!(
            "invalid argument: can't use stdin for both build context and dockerfile"
        ));
    }
    let renderer = Arc::new(Renderer::new(mode));
    let n = renderer.begin(&format!(
        "[internal] load build definition from {}",
        args.file
            .as_deref()
            .and_then(|f| f.file_name())
            .map_or("Dockerfile".into(), |f| f.to_string_lossy().into_owned())
    ));
    let def = match read_definition(&args, context.as_deref(), stdin_input.as_ref())? {
        Ok(d) => d,
        Err(e) => {
            renderer.finish();
            eprint!("{}", e.render());
            return Ok(ExitCode::from(1));
        }
    };
    renderer.status(
        n,
        &format!("transferring dockerfile: {}B done", def.text.len()),
    );
    renderer.done(n);
    let src = Source::new(def.name.clone(), def.text.clone());
    let df = match rbuild_parser::parse_source(&src) {
        Ok(df) => df,
        Err(e) => {
            renderer.finish();
            eprint!("{}", e.render());
            return Ok(ExitCode::from(1));
        }
    };
    let ignore = match &context {
        Some(ctx) => {
            let n = renderer.begin("[internal] load .dockerignore");
            let (found, patterns) = load_for_build(ctx, &def.path)
                .into_diagnostic()
                .map_err(|e| miette!("reading the .dockerignore file: {e}"))?;
            let size = found
                .as_deref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            renderer.status(n, &format!("transferring context: {size}B done"));
            renderer.done(n);
            patterns
        }
        None => Vec::new(),
    };

    let mut build_args = crate::check::build_args(&args.build_args);
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        && !epoch.is_empty()
    {
        build_args
            .entry("SOURCE_DATE_EPOCH".to_string())
            .or_insert(epoch);
    }
    if args.reproducible && !build_args.contains_key("SOURCE_DATE_EPOCH") {
        let dir = context.as_deref().ok_or_else(|| {
            miette!(
                "--reproducible needs a context directory in a git checkout (or SOURCE_DATE_EPOCH)"
            )
        })?;
        let epoch = reproducible::commit_time(dir).map_err(|e| miette!("{e}"))?;
        build_args.insert("SOURCE_DATE_EPOCH".to_string(), epoch);
    }
    let epoch = match build_args
        .get("SOURCE_DATE_EPOCH")
        .filter(|v| !v.is_empty())
    {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| miette!("invalid SOURCE_DATE_EPOCH {v:?}: a Unix time in seconds"))?,
        ),
        None => None,
    };
    let opts = BuildOptions {
        build_args,
        target: args.target.clone(),
        build_platform,
        target_platform: targets[0].clone(),
        explicit_platform,
        multi_platform: targets.len() > 1,
        labels,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        network: match args.network {
            NetworkArg::Default => Network::Default,
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        hostname: None,
        extra_hosts,
        named_contexts: named.named.clone(),
    };

    let root =
        rbuild_exporter::root::resolve_root(global.root.as_deref()).map_err(crate::images::err)?;
    let store_root = root.clone();
    let identity = explain::Identity::new(context.as_deref(), &def.path, args.target.as_deref());
    let registry = RegistryOptions {
        insecure_registries: global.insecure_registries.clone(),
        ..Default::default()
    };
    let notice_renderer = renderer.clone();
    let notice: worker::Notice = Arc::new(move |line: &str| notice_renderer.println(line));
    let worker = RealWorker::open(
        WorkerConfig {
            root,
            context_dir: context.clone(),
            ignore,
            pull: args.pull,
            registry: registry.clone(),
            limits: args.limits(),
            security: args.security(),
        },
        Some(notice),
    )
    .map_err(|e| miette!("{e}"))?;
    worker.set_access(access);
    worker.set_named_contexts(named.local, named.layouts);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    if !cache_from.is_empty() {
        let n = renderer.begin("importing cache manifests");
        let warn = |line: &str| renderer.println(line);
        let imports = rt.block_on(cache_io::load(
            worker.store(),
            &cache_from,
            &registry,
            &warn,
        ));
        for s in &imports.sources {
            renderer.status(n, &format!("{} done", s.name));
        }
        renderer.done(n);
        worker.set_imports(imports);
    }
    // One lowering and solve per target platform (one for a single-platform build).
    let build = async {
        let mut all = Vec::new();
        for target in &targets {
            let mut opts = opts.clone();
            opts.target_platform = target.clone();
            let graph = rbuild_solver::lower(&df, &opts, &worker).await?;
            check_run_platforms(&graph)?;
            for (reference, digest) in resolved_images(&graph) {
                let n = renderer.begin(&format!("[internal] load metadata for {reference}"));
                renderer.status(n, &format!("resolved {digest}"));
                renderer.done(n);
            }
            renderer.start_solver();
            let solved =
                rbuild_solver::solve(&graph, &worker, renderer.clone(), &SolveOptions::default())
                    .await?;
            all.push((target.clone(), solved));
        }
        Ok::<_, rbuild_solver::Error>(all)
    };
    // Ctrl-C drops the build: running steps are killed and every step's guards unmount and
    // remove what it set up before the runtime (waiting for blocking work) is dropped.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let solved = rt.block_on(async {
        match futures_util::future::select(Box::pin(build), Box::pin(interrupted)).await {
            futures_util::future::Either::Left((r, _)) => Some(r),
            futures_util::future::Either::Right(_) => None,
        }
    });
    let Some(solved) = solved else {
        renderer.finish();
        drop(rt);
        eprintln!("Error: the build was interrupted");
        return Ok(ExitCode::from(130));
    };
    let mut solved = match solved {
        Ok(s) => s,
        Err(e) => {
            renderer.finish();
            eprint!("{}", e.render());
            return Ok(ExitCode::from(1));
        }
    };
    let ctx = output::Ctx {
        args: &args,
        worker: &worker,
        renderer: &renderer,
        rt: &rt,
        registry: &registry,
        compression,
        epoch,
        inline_cache: cache_to.contains(&cache_io::CacheTo::Inline),
    };
    let written = if solved.len() > 1 {
        multi::write(&ctx, &solved, &outputs)
    } else {
        output::write(&ctx, &solved[0].1, &outputs)
            .and_then(|s| output::export_cache(&ctx, &solved[0].1, &cache_to).map(|()| s))
    };
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            renderer.finish();
            return Err(miette!("{e}"));
        }
    };
    renderer.finish();
    drop(rt);
    let executed: usize = solved.iter().map(|(_, s)| s.executed).sum();
    let cached: usize = solved.iter().map(|(_, s)| s.cached).sum();
    if let Some(id) = &summary.image_id {
        if args.quiet {
            println!("{id}");
        } else if mode != Mode::Json {
            let platforms = if solved.len() > 1 {
                let names: Vec<String> = solved.iter().map(|(p, _)| p.to_string()).collect();
                format!(" for {}", names.join(", "))
            } else {
                String::new()
            };
            renderer.println(&format!(
                "built {id}{platforms} ({}, {executed} steps run, {cached} cached) in {:.1}s",
                human_size(summary.size),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    // The history keeps one build per context: a multi-platform build records its last
    // platform's.
    let Some((_, last)) = solved.pop() else {
        return Ok(ExitCode::SUCCESS);
    };
    after_build(&store_root, &args, identity, &last, &worker, &renderer);
    Ok(ExitCode::SUCCESS)
}

/// Records the build in the history (printing the explanation with `--explain`), then
/// collects the build cache when it passed its cap.
fn after_build(
    root: &Path,
    args: &BuildArgs,
    identity: explain::Identity,
    solved: &rbuild_solver::SolveResult,
    worker: &RealWorker,
    renderer: &Renderer,
) {
    let forced = |r: &rbuild_solver::cache::KeyRecord| {
        args.no_cache
            || r.stage
                .as_ref()
                .is_some_and(|s| args.no_cache_filter.contains(s))
    };
    let log = worker.build_log();
    let outcome = explain::Outcome {
        identity,
        records: &solved.records,
        log: &log,
        offset: renderer.solver_offset(),
        forced: &forced,
    };
    match explain::record_build(root, &outcome) {
        Ok(rec) if args.explain => {
            for line in &rec.lines {
                eprintln!("{line}");
            }
            let offset = renderer.solver_offset();
            for line in cache_io::explain_imported(&solved.records, &log.imported, offset) {
                eprintln!("{line}");
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: the build was not recorded for --explain: {e}"),
    }
    if let Err(e) = crate::builder::auto_gc(root) {
        eprintln!("warning: automatic build-cache GC: {e}");
    }
}

/// The base images the graph uses (reference, digest), in order, once each.
fn resolved_images(graph: &rbuild_solver::BuildGraph) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for v in graph.vertices() {
        if let rbuild_solver::Op::Image {
            reference, digest, ..
        } = &graph.vertex(v).op
        {
            let item = (reference.clone(), digest.clone());
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    for s in &graph.stages {
        if let Some(b) = &s.base_image {
            let item = (b.reference.clone(), b.digest.clone());
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn bare_form_gets_build() {
        let subs: Vec<String> = ["build", "images", "check"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            implicit_build(os(&["rbuild", "-t", "app:1.0", "."]), &subs),
            os(&["rbuild", "build", "-t", "app:1.0", "."])
        );
        assert_eq!(
            implicit_build(os(&["rbuild", "--root", "/r", "."]), &subs),
            os(&["rbuild", "--root", "/r", "build", "."])
        );
        assert_eq!(
            implicit_build(os(&["rbuild", "--root=/r", "images"]), &subs),
            os(&["rbuild", "--root=/r", "images"])
        );
        assert_eq!(
            implicit_build(os(&["rbuild", "--help"]), &subs),
            os(&["rbuild", "--help"])
        );
        assert_eq!(implicit_build(os(&["rbuild"]), &subs), os(&["rbuild"]));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_200_000), "4.2MB");
    }
}
