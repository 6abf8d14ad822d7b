//! rbuild's solver: lowers a parsed Dockerfile into an op DAG (petgraph), computes
//! BuildKit-style content-addressed cache keys before anything runs (each with a record
//! of what went into it, so a cache miss can be explained), and runs the missing steps
//! in parallel. It talks to the outside world only through its [`Worker`] trait, so its
//! tests run against a fake.
//!
//! The CLI's path through it:
//! ```text
//! let graph = rbuild_solver::lower(&dockerfile, &BuildOptions { .. }, &worker).await?;
//! let result = rbuild_solver::solve(&graph, &worker, progress, &SolveOptions::default()).await?;
//! // result.result: the target's snapshot; result.image: its config + history;
//! // result.records: save them, and `explain(&old, &new)` says why keys changed.
//! ```

pub mod cache;
pub mod cache_export;
pub mod config;
pub mod error;
pub mod graph;
pub mod lower;
pub mod op;
pub mod solve;
pub mod worker;

pub use cache::{CacheKey, Explanation, KeyRecord, Reason, diff, explain};
pub use config::{HealthConfig, History, Image, ImageConfig};
pub use error::Error;
pub use graph::{BuildGraph, StageResult, Vertex, VertexId};
pub use lower::{BuildOptions, NamedContext, lower, named_context_key};
pub use op::{ContextSelection, ExecSpec, FileAction, FileSpec, Op, Platform};
pub use solve::{SolveOptions, SolveResult, solve};
pub use worker::{
    ImageResolver, NoProgress, ProgressEvent, ProgressKind, ProgressSink, ResolvedImage, ResultRef,
    Stream, VertexProgress, Worker, WorkerError,
};

/// Compile-time check: the CLI can `tokio::spawn` a build.
#[cfg(test)]
#[allow(dead_code)]
fn futures_are_send<W: Worker + Send + Sync>(
    df: &rbuild_parser::Dockerfile,
    worker: &W,
    graph: &BuildGraph,
) {
    fn is_send<T: Send>(_: T) {}
    let opts = BuildOptions::default();
    is_send(lower(df, &opts, worker));
    is_send(solve(
        graph,
        worker,
        std::sync::Arc::new(NoProgress),
        &SolveOptions::default(),
    ));
}
