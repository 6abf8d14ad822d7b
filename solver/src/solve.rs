//! The scheduler: keys first, then a top-down cache walk, then the missing steps run in
//! parallel as their inputs become ready.
//!
//! 1. The target's ancestors are the vertices that matter. Their context ops are hashed
//!    concurrently by the worker and every key is computed ([`crate::cache`]).
//! 2. From the target down: a vertex whose key the cache has is a hit and its inputs are
//!    not needed at all (a fully cached build never pulls its base image); otherwise its
//!    inputs are needed. `--no-cache` / `--no-cache-filter` steps, and everything built
//!    on them, skip the lookup.
//! 3. The needed misses run as soon as their inputs are done, at most
//!    [`SolveOptions::max_parallel`] at a time, all driven by one task. The first failure
//!    drops the others' futures (cancelling them) and is reported with its step.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::cache::{CacheKey, KeyRecord, compute_keys};
use crate::config::Image;
use crate::error::Error;
use crate::graph::{BuildGraph, VertexId};
use crate::op::Op;
use crate::worker::{ProgressKind, ProgressSink, ResultRef, VertexProgress, Worker, WorkerError};

/// How a solve runs.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// The most steps running at once (at least 1).
    pub max_parallel: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            max_parallel: std::thread::available_parallelism().map_or(4, |n| n.get()),
        }
    }
}

/// What a solve produced.
#[derive(Debug, Clone)]
pub struct SolveResult {
    /// The target stage's name.
    pub stage: String,
    /// The target's final result; `None` when the target is an empty scratch stage.
    pub result: Option<ResultRef>,
    /// The target's image config and history.
    pub image: Image,
    /// The key records of every step the target depends on, in graph order (save them
    /// to compare with a later build: [`crate::cache::explain`]).
    pub records: Vec<KeyRecord>,
    /// Steps that ran.
    pub executed: usize,
    /// Steps whose result came from the cache.
    pub cached: usize,
}

/// Solves the target of `graph` with `worker`, reporting to `progress`.
pub async fn solve<W: Worker>(
    graph: &BuildGraph,
    worker: &W,
    progress: Arc<dyn ProgressSink>,
    opts: &SolveOptions,
) -> Result<SolveResult, Error> {
    let target = graph
        .target_stage()
        .ok_or_else(|| Error::Internal("the graph has no target stage".into()))?;
    let Some(root) = target.root else {
        return Ok(SolveResult {
            stage: target.name.clone(),
            result: None,
            image: target.image.clone(),
            records: Vec::new(),
            executed: 0,
            cached: 0,
        });
    };

    // 1. Ancestors, context digests, keys.
    let needed = ancestors(graph, root);
    let numbers: HashMap<VertexId, usize> = needed
        .iter()
        .enumerate()
        .map(|(n, v)| (*v, n + 1))
        .collect();
    let handle = |v: VertexId| {
        VertexProgress::new(
            numbers.get(&v).copied().unwrap_or(0),
            graph.vertex(v).name.clone(),
            progress.clone(),
        )
    };
    let contexts: Vec<VertexId> = needed
        .iter()
        .copied()
        .filter(|v| matches!(graph.vertex(*v).op, Op::Context(_)))
        .collect();
    let hashed = futures_util::future::join_all(contexts.iter().map(|v| async {
        let Op::Context(sel) = &graph.vertex(*v).op else {
            return (*v, Err(WorkerError::new("not a context op")));
        };
        (*v, worker.hash_context(sel).await)
    }))
    .await;
    let mut digests = HashMap::new();
    for (v, r) in hashed {
        let digest = r.map_err(|source| Error::Worker {
            step: graph.vertex(v).name.clone(),
            source,
        })?;
        digests.insert(v, digest);
    }
    let mut all_keys = compute_keys(graph, &digests);
    let keys: HashMap<VertexId, CacheKey> = needed
        .iter()
        .filter_map(|v| all_keys.get(v).map(|r| (*v, r.key.clone())))
        .collect();
    let records: Vec<KeyRecord> = needed.iter().filter_map(|v| all_keys.remove(v)).collect();

    // 2. Forced steps and the top-down cache walk.
    let mut forced: HashMap<VertexId, bool> = HashMap::new();
    for &v in &needed {
        let f = graph.vertex(v).ignore_cache
            || graph
                .inputs(v)
                .iter()
                .any(|i| forced.get(i).copied().unwrap_or(false));
        forced.insert(v, f);
    }
    let mut want: BTreeSet<VertexId> = BTreeSet::from([root]);
    let mut results: HashMap<VertexId, ResultRef> = HashMap::new();
    let mut cached = 0;
    for &v in needed.iter().rev() {
        if !want.contains(&v) {
            continue;
        }
        let key = key_of(&keys, v)?;
        if !forced.get(&v).copied().unwrap_or(false) {
            let hit = worker
                .cache_get(key)
                .await
                .map_err(|source| Error::Worker {
                    step: graph.vertex(v).name.clone(),
                    source,
                })?;
            if let Some(r) = hit {
                results.insert(v, r);
                cached += 1;
                continue;
            }
        }
        want.extend(graph.inputs(v));
    }
    for &v in &needed {
        if want.contains(&v) && results.contains_key(&v) {
            handle(v).emit(ProgressKind::Cached);
        }
    }

    // 3. Run the misses.
    let to_run: Vec<VertexId> = needed
        .iter()
        .copied()
        .filter(|v| want.contains(v) && !results.contains_key(v))
        .collect();
    let executed = to_run.len();
    let mut waiting: Vec<VertexId> = to_run;
    let mut running = FuturesUnordered::new();
    let mut in_flight: BTreeSet<VertexId> = BTreeSet::new();
    let limit = opts.max_parallel.max(1);
    let run = |v: VertexId, inputs: Vec<ResultRef>, key: CacheKey, p: VertexProgress| async move {
        let started = Instant::now();
        let vertex = graph.vertex(v);
        let result = match worker.execute(&vertex.op, &inputs, &key, &p).await {
            Ok(r) => worker.cache_put(&key, &r).await.map(|()| r),
            Err(e) => Err(e),
        };
        (v, result, started.elapsed(), p)
    };
    loop {
        // Launch every ready step, up to the limit, in graph order.
        let mut i = 0;
        while i < waiting.len() && in_flight.len() < limit {
            let v = waiting[i];
            let inputs = graph.inputs(v);
            if inputs.iter().all(|x| results.contains_key(x)) {
                waiting.remove(i);
                let refs: Vec<ResultRef> = inputs
                    .iter()
                    .filter_map(|x| results.get(x).cloned())
                    .collect();
                let p = handle(v);
                p.emit(ProgressKind::Started);
                in_flight.insert(v);
                running.push(run(v, refs, key_of(&keys, v)?.clone(), p));
            } else {
                i += 1;
            }
        }
        let Some((v, result, elapsed, p)) = running.next().await else {
            break;
        };
        in_flight.remove(&v);
        match result {
            Ok(r) => {
                p.emit(ProgressKind::Done { duration: elapsed });
                results.insert(v, r);
            }
            Err(source) => {
                p.emit(ProgressKind::Error {
                    message: source.message.clone(),
                    duration: elapsed,
                });
                for other in &in_flight {
                    handle(*other).emit(ProgressKind::Canceled);
                }
                drop(running);
                return Err(step_failed(graph, v, source));
            }
        }
    }
    if !waiting.is_empty() {
        return Err(Error::Internal(format!(
            "{} steps could not be scheduled",
            waiting.len()
        )));
    }
    let result = results.get(&root).cloned();
    Ok(SolveResult {
        stage: target.name.clone(),
        result,
        image: target.image.clone(),
        records,
        executed,
        cached,
    })
}

fn key_of(keys: &HashMap<VertexId, CacheKey>, v: VertexId) -> Result<&CacheKey, Error> {
    keys.get(&v)
        .ok_or_else(|| Error::Internal(format!("no cache key for vertex {}", v.index())))
}

fn step_failed(graph: &BuildGraph, v: VertexId, source: WorkerError) -> Error {
    let vertex = graph.vertex(v);
    let command = match &vertex.op {
        Op::Exec(spec) => spec.args.join(" "),
        other => crate::cache::summarize(other),
    };
    Error::StepFailed {
        step: vertex.name.clone(),
        command,
        location: vertex.location.clone().map(Box::new),
        source,
    }
}

/// `root` and everything it reads, in graph (topological) order.
fn ancestors(graph: &BuildGraph, root: VertexId) -> Vec<VertexId> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(v) = todo.pop() {
        if seen.insert(v) {
            todo.extend(graph.inputs(v));
        }
    }
    seen.into_iter().collect()
}
