//! Lowering: the one module that knows the Dockerfile AST.
//!
//! [`lower`] runs in two phases, like BuildKit's `toDispatchState`:
//! 1. planning — expand every `FROM` over the meta args, find the target, walk the stage
//!    dependencies (`FROM <stage>`, `COPY --from`, `RUN --mount=from=`, and the ONBUILD
//!    triggers of base images, which may add dependencies), and resolve the base images
//!    the reachable stages need through the [`ImageResolver`] (concurrently, repeated
//!    until no trigger adds a new one);
//! 2. dispatch — walk the reachable stages in Dockerfile order and turn each instruction
//!    into vertices and config changes (see `dispatch`, `copy`, `run`).
//!
//! Stages the target does not need are never lowered, and their images never resolved.

mod copy;
mod dispatch;
mod run;
pub mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rbuild_parser::args::{StageEnv, default_args, expand_from_with, resolve_meta_args};
use rbuild_parser::ast::{Dockerfile, Instruction, InstructionKind};
use rbuild_parser::error::{Location, did_you_mean};
use rbuild_parser::mount::Mount;

use crate::config::{Image, rfc3339};
use crate::error::Error;
use crate::graph::{BaseImage, BuildGraph, StageResult, Vertex, VertexId};
use crate::op::{Network, Op, Platform};
use crate::worker::{ImageResolver, ResolvedImage};

use util::{instruction_location, normalize_reference, span_location};

/// What a build asks for, besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// The platform of the image (`TARGETPLATFORM`). Build one platform per lowering.
    pub target_platform: Platform,
    /// `--platform` was given: the image's os/architecture are set to the target's even
    /// when the base image says otherwise (BuildKit's explicit target).
    pub explicit_platform: bool,
    /// One of several target platforms (`--platform A,B`): step names carry the stage's
    /// platform, as BuildKit's (`[linux/arm64 build 2/3] RUN ...`).
    pub multi_platform: bool,
    /// `--label`: added to the target image's labels.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages whose steps always run.
    pub no_cache_filter: Vec<String>,
    /// `--network` default for RUN.
    pub network: Network,
    /// Hostname of RUN containers.
    pub hostname: Option<String>,
    /// `--add-host HOST:IP` for every RUN's `/etc/hosts`.
    pub extra_hosts: Vec<(String, String)>,
    /// `--build-context NAME=VALUE`: what a `FROM NAME`, a stage named NAME,
    /// `COPY --from=NAME` and `RUN --mount=from=NAME` read instead.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// A `--build-context` value, as lowering sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: a context op named after the context (the worker knows where
    /// it is); keyed by its content.
    Local,
    /// An image: `docker-image://` (a normalised reference) or `oci-layout://PATH...`,
    /// passed to the [`ImageResolver`] as is; keyed by the manifest digest it resolves to.
    Image(String),
}

/// The key a `--build-context` name or a `FROM`/`--from` value is looked up under:
/// BuildKit's familiar form without `:latest` (`alpine`, `docker.io/library/alpine` and
/// `alpine:latest` are one name).
pub fn named_context_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match normalize_reference(&lower) {
        Ok(full) => {
            let short = full
                .strip_prefix("docker.io/library/")
                .or_else(|| full.strip_prefix("docker.io/"))
                .unwrap_or(&full);
            short.strip_suffix(":latest").unwrap_or(short).to_string()
        }
        Err(_) => lower,
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            build_platform: Platform::linux_amd64(),
            target_platform: Platform::linux_amd64(),
            explicit_platform: false,
            multi_platform: false,
            labels: BTreeMap::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: Network::Default,
            hostname: None,
            extra_hosts: Vec::new(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// Lowers `df` for `opts`, resolving base images through `resolver`.
pub async fn lower<R: ImageResolver>(
    df: &Dockerfile,
    opts: &BuildOptions,
    resolver: &R,
) -> Result<BuildGraph, Error> {
    let mut l = Lowering::plan(df, opts)?;
    l.resolve_all(resolver).await?;
    l.dispatch_all()?;
    Ok(l.finish())
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    Scratch,
    Stage(usize),
    /// A normalised image reference.
    Image(String),
    /// A local `--build-context` (its key).
    Local(String),
}

/// A stage as planned before dispatch.
#[derive(Debug, Clone)]
struct StagePlan {
    base: Base,
    /// `--platform`, expanded and parsed.
    platform: Option<Platform>,
    /// Progress name: the `AS` name, `stage-N`, or empty when the file has one stage.
    name: String,
    location: Location,
    /// A `--build-context` named like the stage replaces it: its instructions are not run.
    replaced: bool,
}

/// A source a step reads from another stage or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Stage(usize),
    Image(String),
    /// A local `--build-context` (its key).
    Local(String),
}

/// The state of a stage while its instructions are dispatched (BuildKit's
/// `dispatchState`).
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    index: usize,
    name: String,
    root: Option<VertexId>,
    image: Image,
    env: StageEnv,
    /// ARG names declared, in order (for RUN's `|N A=b` history prefix).
    args: Vec<String>,
    platform: Platform,
    workdir: String,
    user: String,
    cmd_set: bool,
    cmd_index: usize,
    cmd_total: usize,
    ignore_cache: bool,
    base_image: Option<BaseImage>,
    /// The instruction being dispatched comes from an ONBUILD trigger.
    in_onbuild: bool,
    /// In a multi-platform build, the platform step names start with.
    name_platform: Option<String>,
}

pub(crate) struct Lowering<'a> {
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    meta: BTreeMap<String, String>,
    escape: char,
    /// `SOURCE_DATE_EPOCH` in seconds, and as RFC 3339.
    epoch: Option<(i64, String)>,
    plans: Vec<StagePlan>,
    target: usize,
    images: HashMap<(String, Platform), ResolvedImage>,
    graph: BuildGraph,
    done: Vec<Option<StageState>>,
    /// `--build-context`s by [`named_context_key`].
    named: BTreeMap<String, NamedContext>,
}

impl<'a> Lowering<'a> {
    fn plan(df: &'a Dockerfile, opts: &'a BuildOptions) -> Result<Lowering<'a>, Error> {
        if df.stages.is_empty() {
            return Err(Error::NoStages);
        }
        let escape = df.directives.escape;
        let target = match &opts.target {
            None => df.stages.len() - 1,
            Some(t) => df.stage(t).map(|s| s.index).ok_or_else(|| {
                let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
                Error::TargetNotFound {
                    target: t.clone(),
                    suggestion: did_you_mean(t, &names).map(str::to_string),
                }
            })?,
        };
        let target_name = df.stages[target].name.clone().unwrap_or_default();
        let defaults = default_args(
            &opts.build_platform.to_parser(),
            &opts.target_platform.to_parser(),
            &target_name,
        );
        let meta = resolve_meta_args(df, &opts.build_args, &defaults)?;
        let epoch = match opts
            .build_args
            .get("SOURCE_DATE_EPOCH")
            .or_else(|| meta.get("SOURCE_DATE_EPOCH"))
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(v) => {
                let secs = v.parse::<i64>().map_err(|_| {
                    Error::at(None, format!("invalid SOURCE_DATE_EPOCH: {v:?}"))
                        .with_hint("SOURCE_DATE_EPOCH is a Unix time in seconds")
                })?;
                Some((secs, rfc3339(secs)))
            }
        };
        let named: BTreeMap<String, NamedContext> = opts
            .named_contexts
            .iter()
            .map(|(k, v)| (named_context_key(k), v.clone()))
            .collect();
        let from_context = |name: &str| {
            named.get(&named_context_key(name)).map(|nc| match nc {
                NamedContext::Local => Base::Local(named_context_key(name)),
                NamedContext::Image(r) => Base::Image(r.clone()),
            })
        };
        let mut plans: Vec<StagePlan> = Vec::with_capacity(df.stages.len());
        for stage in &df.stages {
            let mut text = String::from("FROM ");
            if let Some(p) = &stage.platform {
                text.push_str(&format!("--platform={p} "));
            }
            text.push_str(&stage.base);
            if let Some(n) = &stage.name_as_written {
                text.push_str(&format!(" AS {n}"));
            }
            let location = span_location(&df.file, stage.span, &text);
            let (base, platform) = expand_from_with(stage, &meta, escape).map_err(|e| {
                let mut e = e;
                e.diagnostic.location = Some(location.clone());
                Error::Parse(e)
            })?;
            let platform = match platform {
                None => None,
                Some(p) => Some(Platform::parse(&p).map_err(|e| {
                    Error::at(
                        Some(&location),
                        format!("failed to parse platform {p}: {e}"),
                    )
                })?),
            };
            let lower = base.to_ascii_lowercase();
            let base = if lower == "scratch" {
                Base::Scratch
            } else if let Some(j) = plans
                .iter()
                .enumerate()
                .position(|(j, _)| df.stages[j].name.as_deref() == Some(lower.as_str()))
            {
                Base::Stage(j)
            } else if let Some(b) = from_context(&base) {
                b
            } else {
                Base::Image(normalize_reference(&base).map_err(|e| Error::at(Some(&location), e))?)
            };
            let replacement = stage.name.as_deref().and_then(from_context);
            let replaced = replacement.is_some();
            let base = replacement.unwrap_or(base);
            let name = stage
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{}", stage.index));
            plans.push(StagePlan {
                base,
                platform,
                name,
                location,
                replaced,
            });
        }
        // BuildKit drops the stage name from progress when the build has one state only
        // (sources of COPY --from / mounts that are not stages count as states).
        if plans.len() == 1 && count_external_sources(df) == 0 {
            plans[0].name.clear();
        }
        Ok(Lowering {
            df,
            opts,
            meta,
            escape,
            epoch,
            plans,
            target,
            images: HashMap::new(),
            graph: BuildGraph::default(),
            done: vec![None; df.stages.len()],
            named,
        })
    }

    /// BuildKit's platform in step names of a multi-platform build: the stage's platform,
    /// then `->ARCH` when the target's architecture differs (`linux/amd64->arm64`).
    fn name_platform(&self, stage: &Platform) -> Option<String> {
        if !self.opts.multi_platform {
            return None;
        }
        let target = &self.opts.target_platform;
        let mut text = stage.to_string();
        if target.os != stage.os {
            text.push_str(&format!("->{target}"));
        } else if target.architecture != stage.architecture {
            text.push_str(&format!("->{}", target.architecture));
            if let Some(v) = &target.variant {
                text.push_str(&format!("/{v}"));
            }
        }
        Some(text)
    }

    /// The platform a stage's base is resolved for.
    fn stage_platform(&self, i: usize) -> Platform {
        self.plans[i]
            .platform
            .clone()
            .unwrap_or_else(|| self.opts.target_platform.clone())
    }

    /// The resolved base image of stage `i`, if it starts from one that is resolved.
    fn base_image(&self, i: usize) -> Option<&ResolvedImage> {
        match &self.plans[i].base {
            Base::Image(r) => self.images.get(&(r.clone(), self.stage_platform(i))),
            _ => None,
        }
    }

    /// The ONBUILD triggers stage `i` runs first: its base stage's ONBUILD instructions,
    /// or its base image's `OnBuild` (once resolved).
    fn triggers(&self, i: usize) -> Result<Vec<Instruction>, Error> {
        if self.plans[i].replaced {
            return Ok(Vec::new());
        }
        match &self.plans[i].base {
            Base::Scratch | Base::Local(_) => Ok(Vec::new()),
            Base::Stage(j) => Ok(self.df.stages[*j]
                .instructions
                .iter()
                .filter_map(|inst| match &inst.kind {
                    InstructionKind::Onbuild { trigger, .. } => {
                        let mut t = (**trigger).clone();
                        t.span = self.df.stages[i].span;
                        Some(t)
                    }
                    _ => None,
                })
                .collect()),
            Base::Image(_) => match self.base_image(i) {
                None => Ok(Vec::new()),
                Some(img) => img
                    .config
                    .config
                    .on_build
                    .iter()
                    .map(|expr| self.parse_trigger(i, expr))
                    .collect(),
            },
        }
    }

    /// Parses one ONBUILD expression of a base image; it is located at the stage's FROM.
    fn parse_trigger(&self, i: usize, expr: &str) -> Result<Instruction, Error> {
        let location = &self.plans[i].location;
        let fail = |msg: String| {
            Error::at(
                Some(location),
                format!("failed to process ONBUILD trigger {expr:?} of the base image: {msg}"),
            )
        };
        let df = rbuild_parser::parse(&self.df.file, &format!("FROM scratch\n{expr}\n"))
            .map_err(|e| fail(e.message().to_string()))?;
        let mut insts = df
            .stages
            .into_iter()
            .next()
            .map(|s| s.instructions)
            .unwrap_or_default();
        if insts.len() != 1 {
            return Err(fail("onbuild trigger should be a single expression".into()));
        }
        let mut inst = insts.remove(0);
        if matches!(inst.kind, InstructionKind::Onbuild { .. }) {
            return Err(fail(
                "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
            ));
        }
        inst.span = self.df.stages[i].span;
        Ok(inst)
    }

    /// The stages and images stage `i` reads (besides its base), with the location of
    /// the instruction reading each.
    fn sources(&self, i: usize) -> Result<Vec<(Source, Location)>, Error> {
        let mut out = Vec::new();
        if self.plans[i].replaced {
            return Ok(out);
        }
        for trigger in self.triggers(i)? {
            for from in from_refs(&trigger) {
                if let Some(s) = self.source_for(&from, true) {
                    out.push((s, self.plans[i].location.clone()));
                }
            }
        }
        for inst in &self.df.stages[i].instructions {
            for from in from_refs(inst) {
                if let Some(s) = self.source_for(&from, true) {
                    out.push((s, instruction_location(&self.df.file, inst)));
                }
            }
        }
        Ok(out)
    }

    /// What a `--from` value names: a stage (by name, or by index when `by_index`), or
    /// an image. Values with variables are left to dispatch.
    fn source_for(&self, from: &str, by_index: bool) -> Option<Source> {
        if from.contains('$') {
            return None;
        }
        if by_index && let Ok(n) = from.parse::<usize>() {
            return (n < self.plans.len()).then_some(Source::Stage(n));
        }
        let lower = from.to_ascii_lowercase();
        if let Some(j) = self
            .df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(Source::Stage(j));
        }
        match self.named.get(&named_context_key(from)) {
            Some(NamedContext::Local) => return Some(Source::Local(named_context_key(from))),
            Some(NamedContext::Image(r)) => return Some(Source::Image(r.clone())),
            None => {}
        }
        if lower == "scratch" {
            return None;
        }
        normalize_reference(from).ok().map(Source::Image)
    }

    /// Stages reachable from the target (with what is known of the triggers so far).
    fn reachable(&self) -> Result<BTreeSet<usize>, Error> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.target];
        while let Some(i) = todo.pop() {
            if !seen.insert(i) {
                continue;
            }
            if let Base::Stage(j) = self.plans[i].base {
                todo.push(j);
            }
            for (s, _) in self.sources(i)? {
                if let Source::Stage(j) = s {
                    todo.push(j);
                }
            }
        }
        Ok(seen)
    }

    /// Resolves every image the reachable stages need, until triggers add no more.
    async fn resolve_all<R: ImageResolver>(&mut self, resolver: &R) -> Result<(), Error> {
        loop {
            let mut wanted: Vec<(String, Platform, Location)> = Vec::new();
            for i in self.reachable()? {
                if let Base::Image(r) = &self.plans[i].base {
                    wanted.push((
                        r.clone(),
                        self.stage_platform(i),
                        self.plans[i].location.clone(),
                    ));
                }
                for (s, location) in self.sources(i)? {
                    if let Source::Image(r) = s {
                        wanted.push((r, self.opts.target_platform.clone(), location));
                    }
                }
            }
            let mut seen = BTreeSet::new();
            wanted.retain(|(r, p, _)| {
                !self.images.contains_key(&(r.clone(), p.clone()))
                    && seen.insert((r.clone(), p.clone()))
            });
            if wanted.is_empty() {
                return Ok(());
            }
            let results = futures_util::future::join_all(
                wanted.iter().map(|(r, p, _)| resolver.resolve_image(r, p)),
            )
            .await;
            for ((reference, platform, location), result) in wanted.into_iter().zip(results) {
                let img = result.map_err(|source| Error::ResolveImage {
                    reference: reference.clone(),
                    platform: platform.to_string(),
                    location: Some(Box::new(location)),
                    source,
                })?;
                self.images.insert((reference, platform), img);
            }
        }
    }

    fn dispatch_all(&mut self) -> Result<(), Error> {
        let reachable = self.reachable()?;
        for i in reachable {
            let mut st = self.init_stage(i)?;
            for trigger in self.triggers(i)? {
                st.in_onbuild = true;
                self.dispatch(&mut st, &trigger)?;
            }
            st.in_onbuild = false;
            let replaced = self.plans[i].replaced;
            for inst in self.df.stages[i].instructions.iter().filter(|_| !replaced) {
                self.dispatch(&mut st, inst)?;
            }
            self.done[i] = Some(st);
        }
        Ok(())
    }

    /// BuildKit's stage initialisation: the base's config, env, workdir and user.
    fn init_stage(&mut self, i: usize) -> Result<StageState, Error> {
        let plan = self.plans[i].clone();
        let stage = &self.df.stages[i];
        let ignore_cache = self.opts.no_cache
            || self.opts.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                    || *f == format!("stage-{i}")
            });
        let mut cmd_total = stage
            .instructions
            .iter()
            .filter(|inst| counts_as_step(&inst.kind) && !plan.replaced)
            .count()
            + self.triggers(i)?.len();
        let fresh = StageEnv::new(self.escape, &self.meta, &self.opts.build_args);
        let mut st = match &plan.base {
            Base::Stage(j) => {
                let parent = self.done[*j].clone().ok_or_else(|| {
                    Error::Internal(format!("stage {j} not dispatched before stage {i}"))
                })?;
                let mut image = parent.image.clone();
                image.config.on_build.clear();
                StageState {
                    index: i,
                    name: plan.name.clone(),
                    image,
                    cmd_set: false,
                    cmd_index: 0,
                    cmd_total,
                    ignore_cache,
                    in_onbuild: false,
                    ..parent
                }
            }
            Base::Scratch | Base::Local(_) => {
                let platform = self.stage_platform(i);
                let root = match &plan.base {
                    Base::Local(key) => Some(self.local_root(key, &platform)),
                    _ => None,
                };
                StageState {
                    index: i,
                    name: plan.name.clone(),
                    root,
                    image: Image::empty(&platform),
                    env: fresh.scratch(),
                    args: Vec::new(),
                    name_platform: self.name_platform(&platform),
                    platform,
                    workdir: "/".into(),
                    user: String::new(),
                    cmd_set: false,
                    cmd_index: 0,
                    cmd_total,
                    ignore_cache,
                    base_image: None,
                    in_onbuild: false,
                }
            }
            Base::Image(reference) => {
                let platform = self.stage_platform(i);
                let resolved = self.base_image(i).cloned().ok_or_else(|| {
                    Error::Internal(format!("base image {reference} of stage {i} not resolved"))
                })?;
                let mut image = resolved.config.clone();
                image.created = None;
                image.config.on_build.clear();
                if image.env_get("PATH").is_none() && platform.os != "windows" {
                    image
                        .config
                        .env
                        .push(format!("PATH={}", rbuild_parser::args::DEFAULT_PATH));
                }
                let is_scratch =
                    image.rootfs.diff_ids.is_empty() && image.history.iter().all(|h| h.empty_layer);
                cmd_total += usize::from(!is_scratch);
                let env = fresh.with_base_env(image.env_pairs());
                let workdir = match image.config.working_dir.as_str() {
                    "" => "/".to_string(),
                    wd => util::normalize_path("/", wd, false),
                };
                let user = image.config.user.clone();
                let mut st = StageState {
                    index: i,
                    name: plan.name.clone(),
                    root: None,
                    image,
                    env,
                    args: Vec::new(),
                    platform: platform.clone(),
                    workdir,
                    user,
                    cmd_set: false,
                    cmd_index: 0,
                    cmd_total,
                    ignore_cache,
                    base_image: Some(BaseImage {
                        reference: reference.clone(),
                        digest: resolved.manifest_digest.clone(),
                    }),
                    in_onbuild: false,
                    name_platform: self.name_platform(&platform),
                };
                if !is_scratch {
                    let pinned = pinned(reference, &resolved.manifest_digest);
                    let name = prefix_command(&mut st, &format!("FROM {pinned}"));
                    let v = Vertex {
                        op: Op::Image {
                            reference: reference.clone(),
                            digest: resolved.manifest_digest.clone(),
                            platform: platform.clone(),
                        },
                        name,
                        stage: Some(self.plans[i].name.clone()),
                        location: Some(plan.location.clone()),
                        platform,
                        ignore_cache: false,
                        build_args: BTreeMap::new(),
                    };
                    st.root = Some(self.graph.add(v, &[]));
                }
                st
            }
        };
        if st.name.is_empty() && !plan.name.is_empty() {
            st.name = plan.name;
        }
        Ok(st)
    }

    fn finish(mut self) -> BuildGraph {
        let mut stages = Vec::new();
        let mut target = 0;
        for (i, st) in self.done.into_iter().enumerate() {
            let Some(mut st) = st else { continue };
            if i == self.target {
                target = stages.len();
                for (k, v) in &self.opts.labels {
                    st.image.config.labels.insert(k.clone(), v.clone());
                }
                if self.opts.explicit_platform {
                    let p = &self.opts.target_platform;
                    let same = st.image.os == p.os && st.image.architecture == p.architecture;
                    st.image.os = p.os.clone();
                    st.image.architecture = p.architecture.clone();
                    if p.variant.is_some() || !same {
                        st.image.variant = p.variant.clone();
                    }
                }
                if let Some((_, created)) = &self.epoch {
                    st.image.created = Some(created.clone());
                }
            }
            stages.push(StageResult {
                index: i,
                name: self.plans[i].name.clone(),
                root: st.root,
                image: st.image,
                base_image: st.base_image,
            });
        }
        for s in &mut stages {
            if s.name.is_empty() {
                s.name = format!("stage-{}", s.index);
            }
        }
        self.graph.stages = stages;
        self.graph.target = target;
        self.graph
    }

    /// A vertex of the current stage at `inst`.
    fn vertex(&self, st: &StageState, op: Op, name: String, inst: &Instruction) -> Vertex {
        Vertex {
            op,
            name,
            stage: Some(self.plans[st.index].name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| Some(format!("stage-{}", st.index))),
            location: Some(self.location(st, inst)),
            platform: st.platform.clone(),
            ignore_cache: st.ignore_cache,
            build_args: st
                .args
                .iter()
                .filter_map(|a| st.env.vars().get(a).map(|v| (a.clone(), v.clone())))
                .collect(),
        }
    }
}

impl Lowering<'_> {
    /// A local `--build-context` as a context op (what `COPY --from` and bind mounts
    /// read).
    fn local_context(&mut self, key: &str, platform: &Platform) -> VertexId {
        let v = Vertex {
            op: Op::Context(crate::op::ContextSelection {
                name: key.to_string(),
                include: Vec::new(),
                exclude: Vec::new(),
            }),
            name: format!("[context {key}] load from client"),
            stage: None,
            location: None,
            platform: platform.clone(),
            ignore_cache: false,
            build_args: BTreeMap::new(),
        };
        self.graph.add(v, &[])
    }

    /// A local `--build-context` as a stage's root filesystem (`FROM <name>`): its
    /// files copied into a snapshot, so RUN can work on them.
    fn local_root(&mut self, key: &str, platform: &Platform) -> VertexId {
        let ctx = self.local_context(key, platform);
        let mut copy = crate::op::CopyAction::new(
            crate::op::CopySource::Input {
                input: 0,
                path: "/".into(),
            },
            "/".into(),
        );
        copy.allow_wildcard = false;
        copy.created = self.epoch.as_ref().map(|(s, _)| *s);
        let v = Vertex {
            op: Op::File(crate::op::FileSpec {
                base: None,
                actions: vec![crate::op::FileAction::Copy(Box::new(copy))],
            }),
            name: format!("[context {key}] copy to a filesystem"),
            stage: None,
            location: None,
            platform: platform.clone(),
            ignore_cache: false,
            build_args: BTreeMap::new(),
        };
        self.graph.add(v, &[ctx])
    }

    /// An empty filesystem (a `scratch` source of COPY --from or a bind mount).
    fn empty_vertex(&mut self, platform: &Platform) -> VertexId {
        let v = Vertex {
            op: Op::File(crate::op::FileSpec {
                base: None,
                actions: Vec::new(),
            }),
            name: "[internal] empty filesystem".into(),
            stage: None,
            location: None,
            platform: platform.clone(),
            ignore_cache: false,
            build_args: BTreeMap::new(),
        };
        self.graph.add(v, &[])
    }

    /// Where an instruction is: its line, or the stage's FROM for an ONBUILD trigger.
    fn location(&self, st: &StageState, inst: &Instruction) -> Location {
        if st.in_onbuild {
            self.plans[st.index].location.clone()
        } else {
            instruction_location(&self.df.file, inst)
        }
    }
}

/// `reference@digest` (the tag kept), as BuildKit names the FROM vertex.
fn pinned(reference: &str, digest: &str) -> String {
    if reference.contains('@') || digest.is_empty() {
        reference.to_string()
    } else {
        format!("{reference}@{digest}")
    }
}

/// Whether an instruction is numbered in progress names (`[2/5]`).
fn counts_as_step(kind: &InstructionKind) -> bool {
    matches!(
        kind,
        InstructionKind::Add(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Run(_)
            | InstructionKind::Workdir { .. }
    )
}

/// BuildKit's `prefixCommand`: `[name i/n] ` (+ `ONBUILD `) before the step text.
pub(crate) fn prefix_command(st: &mut StageState, text: &str) -> String {
    if st.cmd_total == 0 {
        return text.to_string();
    }
    st.cmd_index += 1;
    let width = st.cmd_total.to_string().len();
    let mut out = String::from("[");
    if let Some(p) = &st.name_platform {
        out.push_str(p);
        out.push(' ');
    }
    if !st.name.is_empty() {
        out.push_str(&st.name);
        out.push(' ');
    }
    out.push_str(&format!(
        "{:>width$}/{}] ",
        st.cmd_index,
        st.cmd_total,
        width = width
    ));
    if st.in_onbuild {
        out.push_str("ONBUILD ");
    }
    out.push_str(text);
    out
}

/// The `--from` values of an instruction (COPY --from, RUN --mount from=, and cache
/// mounts' implicit `scratch`).
fn from_refs(inst: &Instruction) -> Vec<String> {
    match &inst.kind {
        InstructionKind::Copy(c) => c.from.iter().cloned().collect(),
        InstructionKind::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| Mount::parse(m, None).ok())
            .filter(|m| m.kind != rbuild_parser::mount::MountType::Tmpfs)
            .filter_map(|m| m.from)
            .collect(),
        _ => Vec::new(),
    }
}

/// How many `--from`/mount sources of the whole file are not stage names (BuildKit
/// registers a state for each, which turns stage names on in progress output).
fn count_external_sources(df: &Dockerfile) -> usize {
    let is_stage = |f: &str| {
        let lower = f.to_ascii_lowercase();
        df.stages
            .iter()
            .any(|s| s.name.as_deref() == Some(lower.as_str()))
            || f.parse::<usize>().is_ok()
    };
    let mut n = 0;
    for inst in df.stages.iter().flat_map(|s| &s.instructions) {
        n += from_refs(inst).iter().filter(|f| !is_stage(f)).count();
        if let InstructionKind::Run(r) = &inst.kind {
            n += r
                .mounts
                .iter()
                .filter_map(|m| Mount::parse(m, None).ok())
                .filter(|m| m.kind == rbuild_parser::mount::MountType::Cache && m.from.is_none())
                .count();
        }
    }
    n
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod named_context_tests {
    use super::*;
    use crate::worker::WorkerError;

    struct Resolver;

    impl ImageResolver for Resolver {
        async fn resolve_image(
            &self,
            reference: &str,
            platform: &Platform,
        ) -> Result<ResolvedImage, WorkerError> {
            let mut config = Image::empty(platform);
            config.rootfs.diff_ids.push("sha256:00".into());
            Ok(ResolvedImage {
                reference: reference.to_string(),
                manifest_digest: format!("sha256:{:0>64}", reference.len()),
                config,
            })
        }
    }

    fn lower_text(text: &str, named: &[(&str, NamedContext)]) -> Result<BuildGraph, Error> {
        let df = rbuild_parser::parse("Dockerfile", text).unwrap();
        let opts = BuildOptions {
            named_contexts: named
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..BuildOptions::default()
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(lower(&df, &opts, &Resolver))
    }

    #[test]
    fn keys_use_the_familiar_form() {
        assert_eq!(named_context_key("alpine"), "alpine");
        assert_eq!(
            named_context_key("docker.io/library/alpine:latest"),
            "alpine"
        );
        assert_eq!(named_context_key("Alpine:3.19"), "alpine:3.19");
        assert_eq!(named_context_key("ghcr.io/o/r"), "ghcr.io/o/r");
    }

    #[test]
    fn contexts_replace_stages_and_feed_copy_from() {
        let g = lower_text(
            "FROM busybox AS base\nRUN never\nFROM base\nCOPY --from=src a /a\n",
            &[
                (
                    "base",
                    NamedContext::Image("docker.io/library/other:1".into()),
                ),
                ("src", NamedContext::Local),
            ],
        )
        .unwrap();
        let ops: Vec<&Op> = g.vertices().map(|v| &g.vertex(v).op).collect();
        assert!(
            !ops.iter().any(|op| matches!(op, Op::Exec(_))),
            "the replaced stage's RUN is not lowered: {ops:?}"
        );
        assert!(ops.iter().any(|op| matches!(op,
            Op::Image { reference, .. } if reference == "docker.io/library/other:1")));
        assert!(ops.iter().any(|op| matches!(op,
            Op::Context(sel) if sel.name == "src")));
        // Without the contexts, the stage runs and `src` is an image.
        let g = lower_text(
            "FROM busybox AS base\nRUN never\nFROM base\nCOPY --from=src a /a\n",
            &[],
        )
        .unwrap();
        assert!(g.vertices().any(|v| matches!(g.vertex(v).op, Op::Exec(_))));
    }
}
