//! The real [`Worker`]: the solver's view of the world implemented over the executor
//! (overlay snapshots, the sandbox, COPY/ADD, context hashing) and the exporter (content
//! store, image index, pulls, layer blobs).
//!
//! State under the rbuild root (besides the exporter's content store and image index):
//! - `snapshotter-v1/`: the executor's snapshotter; image layers are committed snapshots
//!   `layer-<chain id hex>` (unpacked once, shared by every build), step results are
//!   `b-<key prefix>-<unique>`;
//! - `buildcache-v1/`: the cache key → snapshot map and per-snapshot records
//!   ([`state`]);
//! - `roots/build-*.json`: GC roots for the blobs the cache reuses;
//! - `context-cache-v1/`: the context hasher's incremental records;
//! - `cachemounts-v1/`: `RUN --mount=type=cache` directories;
//! - `mnt-v1/`: temporary mount points (`<pid>-<n>`), cleaned up by the next build when
//!   a killed process left some.
//!
//! Every blocking step runs in `spawn_blocking` (the solver drives all futures on one
//! task); each cleans up after itself with guards ([`mounts`]) even when its future is
//! dropped (a cancelled step's process is killed through a flag).

mod exec;
mod file;
pub mod image;
pub mod mounts;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_executor::Snapshotter;
use rbuild_executor::context::{ContextHasher, Selection};
use rbuild_exporter::Store;
use rbuild_exporter::registry::RegistryOptions;
use rbuild_solver::cache::CacheKey;
use rbuild_solver::{
    ContextSelection, ImageResolver, Op, Platform, ResolvedImage, ResultRef, VertexProgress,
    Worker, WorkerError,
};

/// The snapshot key of an image layer stack (imported caches name base layers alike).
pub(crate) use image::layer_key as image_layer_key;
pub use state::State;

/// The name of the main build context (the solver's `MAIN_CONTEXT`).
pub const MAIN_CONTEXT: &str = "context";
/// A result naming a local context: `context:<name>`.
const CONTEXT_PREFIX: &str = "context:";

/// How the worker was set up for one build.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The rbuild root.
    pub root: PathBuf,
    /// The build context directory (canonical); `None` for a build without context
    /// (`rbuild build -`).
    pub context_dir: Option<PathBuf>,
    /// `.dockerignore` patterns.
    pub ignore: Vec<String>,
    /// `--pull`: always ask the registry.
    pub pull: bool,
    pub registry: RegistryOptions,
    /// `--memory`, `--cpu-*`, `--pids-limit`: the cgroup limits of every RUN step.
    pub limits: rbuild_executor::cgroup::Limits,
    /// `--ulimit`, `--shm-size` of every RUN step.
    pub security: rbuild_executor::security::Security,
}

/// Receives a line about work that has no vertex of its own (pulls while resolving).
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Inner {
    pub cfg: WorkerConfig,
    pub store: Store,
    pub snapshotter: Snapshotter,
    pub state: State,
    /// One hash at a time: the hasher's record file is read, updated and replaced whole
    /// (it walks on rayon's pool anyway).
    hasher: std::sync::Mutex<ContextHasher>,
    mnt_dir: PathBuf,
    counter: AtomicU64,
    resolved: tokio::sync::Mutex<HashMap<(String, Platform), ResolvedImage>>,
    notice: Option<Notice>,
    /// `--secret`, `--ssh`, `--allow`: what RUN steps may reach (none unless set).
    access: std::sync::OnceLock<Arc<crate::build::secrets::Access>>,
    /// What this build hashed, hit and ran, for `--explain`.
    log: std::sync::Mutex<BuildLog>,
    /// `--cache-from` sources, looked up when the local cache misses.
    pub(crate) imports: std::sync::OnceLock<Arc<crate::build::cache_io::Imports>>,
    /// Local `--build-context`s by [`rbuild_solver::named_context_key`].
    named: std::sync::OnceLock<HashMap<String, LocalContext>>,
    /// OCI layout directories (`--build-context NAME=oci-layout://...`) by the reference
    /// lowering passes to the resolver.
    pub(crate) layouts: std::sync::OnceLock<HashMap<String, image::OciLayoutRef>>,
}

/// A local `--build-context` directory and its own `.dockerignore` patterns (BuildKit
/// reads the named context's `.dockerignore`, never the main context's).
#[derive(Debug, Clone)]
pub struct LocalContext {
    pub dir: PathBuf,
    pub ignore: Vec<String>,
}

/// What one build's worker saw, for `--explain` and the build history.
#[derive(Debug, Clone, Default)]
pub struct BuildLog {
    /// Context digest → the selected files and their digests.
    pub contexts: HashMap<String, Vec<(String, rbuild_executor::context::Digest)>>,
    /// Keys that hit the cache.
    pub hits: std::collections::BTreeSet<String>,
    /// Keys whose step ran.
    pub executed: std::collections::BTreeSet<String>,
    /// Keys that hit a `--cache-from` source → the source's name.
    pub imported: std::collections::BTreeMap<String, String>,
}

/// The worker; cheap to clone.
#[derive(Clone)]
pub struct RealWorker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RealWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealWorker")
            .field("root", &self.inner.cfg.root)
            .finish_non_exhaustive()
    }
}

/// An error of the worker, as the solver takes it.
pub(crate) fn werr(e: impl std::fmt::Display) -> WorkerError {
    WorkerError::new(e.to_string())
}

/// Runs blocking work off the solver's task.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkerError::new(format!("worker task failed: {e}")))?
}

impl RealWorker {
    /// Opens the worker's state under `cfg.root` (creating it) and cleans up mount points a
    /// killed build left behind.
    pub fn open(cfg: WorkerConfig, notice: Option<Notice>) -> Result<RealWorker, String> {
        let root = cfg.root.clone();
        let store = Store::open(&root).map_err(|e| e.to_string())?;
        let snapshotter = Snapshotter::open(root.join("snapshotter-v1"))
            .map_err(|e| format!("opening the snapshotter: {e}"))?;
        let state = State::open(&root)?;
        let hasher =
            ContextHasher::open(&root.join("context-cache-v1")).map_err(|e| e.to_string())?;
        let mnt_dir = root.join("mnt-v1");
        std::fs::create_dir_all(&mnt_dir).map_err(|e| format!("{}: {e}", mnt_dir.display()))?;
        mounts::clean_stale(&mnt_dir);
        Ok(RealWorker {
            inner: Arc::new(Inner {
                cfg,
                store,
                snapshotter,
                state,
                hasher: std::sync::Mutex::new(hasher),
                mnt_dir,
                counter: AtomicU64::new(0),
                resolved: tokio::sync::Mutex::new(HashMap::new()),
                notice,
                access: std::sync::OnceLock::new(),
                log: std::sync::Mutex::new(BuildLog::default()),
                imports: std::sync::OnceLock::new(),
                named: std::sync::OnceLock::new(),
                layouts: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        &self.inner.snapshotter
    }

    pub fn state(&self) -> &State {
        &self.inner.state
    }

    /// What the build hashed, hit and ran so far.
    pub fn build_log(&self) -> BuildLog {
        self.inner.log().clone()
    }

    /// Gives RUN steps the build's secrets, ssh agents and entitlements (once).
    pub fn set_access(&self, access: crate::build::secrets::Access) {
        let _ = self.inner.access.set(Arc::new(access));
    }

    /// Gives the build its local `--build-context` directories (keyed by
    /// [`rbuild_solver::named_context_key`]) and OCI layouts (once).
    pub fn set_named_contexts(
        &self,
        local: HashMap<String, LocalContext>,
        layouts: HashMap<String, image::OciLayoutRef>,
    ) {
        let _ = self.inner.named.set(local);
        let _ = self.inner.layouts.set(layouts);
    }

    /// Gives the build its `--cache-from` sources (once).
    pub fn set_imports(&self, imports: crate::build::cache_io::Imports) {
        let _ = self.inner.imports.set(Arc::new(imports));
    }

    /// A fresh mount point guard under `mnt-v1/`.
    pub fn mount_point(&self) -> Result<mounts::MountGuard, WorkerError> {
        self.inner.mount_point()
    }
}

impl Inner {
    pub(crate) fn unique(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{}-{n}-{nanos:x}", std::process::id())
    }

    /// What RUN steps may reach: `--secret`, `--ssh`, `--allow`.
    pub(crate) fn access(&self) -> Arc<crate::build::secrets::Access> {
        self.access.get().cloned().unwrap_or_default()
    }

    pub(crate) fn mount_point(&self) -> Result<mounts::MountGuard, WorkerError> {
        mounts::MountGuard::create(&self.mnt_dir.join(self.unique()))
    }

    /// The context directory a `context:<name>` result names.
    pub(crate) fn context_dir(&self, name: &str) -> Result<&Path, WorkerError> {
        if name != MAIN_CONTEXT {
            return self
                .named
                .get()
                .and_then(|m| m.get(name))
                .map(|c| c.dir.as_path())
                .ok_or_else(|| {
                    WorkerError::new(format!(
                        "no --build-context {name:?} was given to this build"
                    ))
                });
        }
        self.cfg.context_dir.as_deref().ok_or_else(|| {
            WorkerError::new("this build has no context (the Dockerfile came from stdin with `-`)")
        })
    }

    /// The content digest of a whole local context (after its `.dockerignore`).
    pub(crate) fn context_digest(&self, name: &str) -> Result<String, WorkerError> {
        let dir = self.context_dir(name)?.to_path_buf();
        let selection = Selection {
            includes: vec![".".to_string()],
            ignore: self.context_ignore(name),
            exclude: Vec::new(),
            follow_symlinks: true,
        };
        let hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        let digest = hasher
            .hash_selection(&dir, &selection)
            .map_err(|e| WorkerError::new(format!("hashing context {name:?}: {e}")))?;
        Ok(digest.digest.to_string())
    }

    /// The `.dockerignore` patterns of a local context.
    pub(crate) fn context_ignore(&self, name: &str) -> Vec<String> {
        if name == MAIN_CONTEXT {
            return self.cfg.ignore.clone();
        }
        self.named
            .get()
            .and_then(|m| m.get(name))
            .map(|c| c.ignore.clone())
            .unwrap_or_default()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, BuildLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notice(&self, line: &str) {
        if let Some(n) = &self.notice {
            n(line);
        }
    }
}

/// What a result names: a local context or a committed snapshot.
pub(crate) enum Input<'a> {
    Context(&'a str),
    Snapshot(&'a str),
}

pub(crate) fn input_of(r: &ResultRef) -> Input<'_> {
    match r.0.strip_prefix(CONTEXT_PREFIX) {
        Some(name) => Input::Context(name),
        None => Input::Snapshot(&r.0),
    }
}

/// A new snapshot name for a result of `key`.
pub(crate) fn result_name(inner: &Inner, key: &CacheKey) -> String {
    let hex = key.0.strip_prefix("sha256:").unwrap_or(&key.0);
    format!("b-{}-{}", &hex[..hex.len().min(16)], inner.unique())
}

impl ImageResolver for RealWorker {
    async fn resolve_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, WorkerError> {
        image::resolve(&self.inner, reference, platform).await
    }
}

impl RealWorker {
    /// The local cache's result for `key` (its snapshot must be committed).
    async fn local_cache_get(&self, key: &CacheKey) -> Result<Option<ResultRef>, WorkerError> {
        let inner = self.inner.clone();
        let key = key.0.clone();
        blocking(move || {
            let Some(result) = inner.state.get(&key) else {
                return Ok(None);
            };
            // A hit needs its snapshot, committed.
            let hit = result.starts_with(CONTEXT_PREFIX)
                || matches!(inner.snapshotter.stat(&result),
                    Ok(info) if info.kind == rbuild_executor::snapshot::Kind::Committed);
            if !hit {
                return Ok(None);
            }
            inner.state.touch(&key);
            inner.log().hits.insert(key);
            Ok(Some(ResultRef(result)))
        })
        .await
    }
}

impl Worker for RealWorker {
    async fn hash_context(&self, selection: &ContextSelection) -> Result<String, WorkerError> {
        let inner = self.inner.clone();
        let sel = selection.clone();
        blocking(move || {
            let dir = inner.context_dir(&sel.name)?.to_path_buf();
            let includes = if sel.include.is_empty() {
                vec![".".to_string()]
            } else {
                sel.include.clone()
            };
            let selection = Selection {
                includes,
                ignore: inner.context_ignore(&sel.name),
                exclude: sel.exclude.clone(),
                follow_symlinks: true,
            };
            let hasher = inner.hasher.lock().unwrap_or_else(|p| p.into_inner());
            let digest = hasher
                .hash_selection(&dir, &selection)
                .map_err(|e| WorkerError::new(format!("failed to compute cache key: {e}")))?;
            drop(hasher);
            let text = digest.digest.to_string();
            inner.log().contexts.insert(text.clone(), digest.files);
            Ok(text)
        })
        .await
    }

    async fn cache_get(&self, key: &CacheKey) -> Result<Option<ResultRef>, WorkerError> {
        if let Some(hit) = self.local_cache_get(key).await? {
            return Ok(Some(hit));
        }
        let inner = self.inner.clone();
        let Some(imports) = inner.imports.get().cloned() else {
            return Ok(None);
        };
        let Some((snapshot, source)) = crate::build::cache_io::import(&inner, &imports, key).await
        else {
            return Ok(None);
        };
        let k = key.0.clone();
        let result = snapshot.clone();
        blocking(move || {
            inner.state.put(&k, &result).map_err(WorkerError::new)?;
            let mut log = inner.log();
            log.hits.insert(k.clone());
            log.imported.insert(k, source);
            Ok(())
        })
        .await?;
        Ok(Some(ResultRef(snapshot)))
    }

    async fn cache_put(&self, key: &CacheKey, result: &ResultRef) -> Result<(), WorkerError> {
        let inner = self.inner.clone();
        let key = key.0.clone();
        let result = result.0.clone();
        blocking(move || {
            inner.state.put(&key, &result).map_err(WorkerError::new)?;
            inner.log().executed.insert(key);
            Ok(())
        })
        .await
    }

    async fn execute(
        &self,
        op: &Op,
        inputs: &[ResultRef],
        key: &CacheKey,
        progress: &VertexProgress,
    ) -> Result<ResultRef, WorkerError> {
        match op {
            Op::Context(sel) => {
                self.inner.context_dir(&sel.name)?;
                Ok(ResultRef(format!("{CONTEXT_PREFIX}{}", sel.name)))
            }
            Op::Image {
                reference,
                digest,
                platform,
            } => image::execute(&self.inner, reference, digest, platform).await,
            Op::File(spec) => file::execute(&self.inner, spec, inputs, key, progress).await,
            Op::Exec(spec) => exec::execute(&self.inner, spec, inputs, key, progress).await,
        }
    }
}
