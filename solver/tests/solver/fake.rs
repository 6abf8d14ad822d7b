//! A fake worker: canned base images, an in-memory build context (path → contents and an
//! mtime the hash ignores), an in-memory cache, and a log of every call. Steps can be
//! slowed down (to observe parallelism) or made to fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_solver::cache::{CacheKey, sha256_digest};
use rbuild_solver::config::{History, Image, ImageConfig, RootFs};
use rbuild_solver::op::{ContextSelection, Op, Platform};
use rbuild_solver::{
    ImageResolver, ProgressEvent, ProgressSink, ResolvedImage, ResultRef, Stream, VertexProgress,
    Worker, WorkerError,
};

/// One call the solver made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Resolve(String, String),
    HashContext(Vec<String>),
    CacheGet,
    CachePut,
    Execute(String),
}

#[derive(Debug, Default)]
pub struct FakeWorker {
    pub images: BTreeMap<String, ResolvedImage>,
    /// Context files: path → (contents, mtime).
    pub files: Mutex<BTreeMap<String, (String, u64)>>,
    pub cache: Mutex<HashMap<CacheKey, ResultRef>>,
    pub calls: Mutex<Vec<Call>>,
    /// Per-step delay.
    pub delay: Duration,
    /// Exec steps whose command contains this fail with exit code 2.
    pub fail_on: Option<String>,
    /// Resolve any reference (to a copy of alpine's config) instead of failing.
    pub any_image: bool,
    running: AtomicUsize,
    pub max_running: AtomicUsize,
    counter: AtomicUsize,
}

fn image(
    reference: &str,
    env: &[&str],
    f: impl FnOnce(&mut ImageConfig),
    history: &[&str],
) -> ResolvedImage {
    let mut config = ImageConfig {
        env: env.iter().map(|s| s.to_string()).collect(),
        ..ImageConfig::default()
    };
    f(&mut config);
    ResolvedImage {
        reference: reference.to_string(),
        manifest_digest: sha256_digest(reference.as_bytes()),
        config: Image {
            created: Some("2024-01-01T00:00:00Z".into()),
            architecture: "amd64".into(),
            os: "linux".into(),
            config,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![sha256_digest(format!("{reference} layer").as_bytes())],
            },
            history: history
                .iter()
                .map(|h| History {
                    created: Some("2024-01-01T00:00:00Z".into()),
                    created_by: h.to_string(),
                    empty_layer: h.starts_with("CMD") || h.starts_with("ENV"),
                    ..History::default()
                })
                .collect(),
            ..Image::default()
        },
    }
}

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl FakeWorker {
    pub fn new() -> FakeWorker {
        let mut images = BTreeMap::new();
        for img in [
            image(
                "docker.io/library/alpine:3.19",
                &[PATH],
                |c| c.cmd = Some(vec!["/bin/sh".into()]),
                &["ADD file:abc in / ", "CMD [\"/bin/sh\"]"],
            ),
            image(
                "docker.io/library/busybox:latest",
                &[PATH],
                |c| c.cmd = Some(vec!["sh".into()]),
                &["ADD file:bb in / ", "CMD [\"sh\"]"],
            ),
            image(
                "docker.io/library/golang:1.22",
                &[
                    "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "GOLANG_VERSION=1.22.0",
                    "GOPATH=/go",
                ],
                |c| c.working_dir = "/go".into(),
                &["ADD file:go in / ", "ENV GOPATH=/go"],
            ),
            image(
                "docker.io/library/node:onbuild",
                &[PATH],
                |c| {
                    c.working_dir = "/usr/src/app".into();
                    c.on_build = vec![
                        "COPY package.json /usr/src/app/".into(),
                        "RUN npm install".into(),
                        "COPY . /usr/src/app".into(),
                    ];
                    c.cmd = Some(vec!["npm".into(), "start".into()]);
                },
                &["ADD file:node in / "],
            ),
            image(
                "example.com/tools/nopath:1",
                &["LANG=C.UTF-8"],
                |c| {
                    c.user = "app".into();
                    c.labels = [("org.example.vendor".to_string(), "Example".to_string())]
                        .into_iter()
                        .collect();
                    c.entrypoint = Some(vec!["/entry".into()]);
                    c.cmd = Some(vec!["--help".into()]);
                },
                &["ADD file:np in / "],
            ),
        ] {
            images.insert(img.reference.clone(), img);
        }
        FakeWorker {
            images,
            ..FakeWorker::default()
        }
    }

    pub fn with_files(self, files: &[(&str, &str)]) -> FakeWorker {
        {
            let mut f = self.files.lock().unwrap();
            for (p, c) in files {
                f.insert(p.to_string(), (c.to_string(), 1));
            }
        }
        self
    }

    pub fn write(&self, path: &str, contents: &str) {
        let mut f = self.files.lock().unwrap();
        let mtime = f.get(path).map_or(1, |(_, m)| m + 1);
        f.insert(path.to_string(), (contents.to_string(), mtime));
    }

    /// Changes only the mtime of a file.
    pub fn touch(&self, path: &str) {
        let mut f = self.files.lock().unwrap();
        if let Some(entry) = f.get_mut(path) {
            entry.1 += 100;
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn executed(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Execute(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    fn log(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
}

fn selected(sel: &ContextSelection, path: &str) -> bool {
    let excluded = sel
        .exclude
        .iter()
        .any(|e| path == e || path.starts_with(&format!("{e}/")));
    let included = sel.include.is_empty()
        || sel.include.iter().any(|i| {
            path == i
                || path.starts_with(&format!("{i}/"))
                || (i.contains('*') && path.ends_with(i.trim_start_matches('*')))
        });
    included && !excluded
}

impl ImageResolver for FakeWorker {
    async fn resolve_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, WorkerError> {
        self.log(Call::Resolve(reference.to_string(), platform.to_string()));
        if let Some(img) = self.images.get(reference) {
            return Ok(img.clone());
        }
        if self.any_image {
            let mut img = self.images["docker.io/library/alpine:3.19"].clone();
            img.reference = reference.to_string();
            img.manifest_digest = sha256_digest(reference.as_bytes());
            return Ok(img);
        }
        Err(WorkerError::new(format!("{reference}: not found")))
    }
}

impl Worker for FakeWorker {
    async fn hash_context(&self, selection: &ContextSelection) -> Result<String, WorkerError> {
        self.log(Call::HashContext(selection.include.clone()));
        let files = self.files.lock().unwrap();
        let mut material = String::new();
        for (path, (contents, _mtime)) in files.iter() {
            if selected(selection, path) {
                material.push_str(&format!("{path}\0{contents}\0"));
            }
        }
        Ok(sha256_digest(material.as_bytes()))
    }

    async fn cache_get(&self, key: &CacheKey) -> Result<Option<ResultRef>, WorkerError> {
        self.log(Call::CacheGet);
        Ok(self.cache.lock().unwrap().get(key).cloned())
    }

    async fn cache_put(&self, key: &CacheKey, result: &ResultRef) -> Result<(), WorkerError> {
        self.log(Call::CachePut);
        self.cache
            .lock()
            .unwrap()
            .insert(key.clone(), result.clone());
        Ok(())
    }

    async fn execute(
        &self,
        op: &Op,
        inputs: &[ResultRef],
        _key: &CacheKey,
        progress: &VertexProgress,
    ) -> Result<ResultRef, WorkerError> {
        self.log(Call::Execute(progress.name().to_string()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let guard = Decrement(&self.running);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        drop(guard);
        if let (Op::Exec(spec), Some(pat)) = (op, &self.fail_on)
            && spec.args.join(" ").contains(pat.as_str())
        {
            progress.log(Stream::Stderr, "boom: something went wrong");
            return Err(WorkerError::exit(
                2,
                vec!["boom: something went wrong".into()],
            ));
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        Ok(ResultRef(format!(
            "r{n}-{}-from-{}",
            op.kind(),
            inputs.len()
        )))
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records progress events.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<ProgressEvent>>,
}

impl ProgressSink for Recorder {
    fn event(&self, event: ProgressEvent) {
        self.events.lock().unwrap().push(event);
    }
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().unwrap().clone()
    }
}
