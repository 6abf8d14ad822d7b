//! The solver's only view of the world: the [`Worker`] trait (images, context hashing,
//! the cache, execution) and the progress events the CLI renders.
//!
//! The methods return `impl Future + Send`, so implementations may be written with
//! `async fn` and the solver stays generic (`W: Worker`, no boxing).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;
use crate::config::Image;
use crate::op::{ContextSelection, Op, Platform};

/// An error the worker reports. For a failed process, `exit_code` and the last lines of
/// its output let the solver name the failure like BuildKit does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WorkerError {
    pub message: String,
    pub exit_code: Option<i32>,
    pub output_tail: Vec<String>,
}

impl WorkerError {
    pub fn new(message: impl Into<String>) -> WorkerError {
        WorkerError {
            message: message.into(),
            exit_code: None,
            output_tail: Vec::new(),
        }
    }

    /// A process that exited with `code`, with the tail of its output.
    pub fn exit(code: i32, output_tail: Vec<String>) -> WorkerError {
        WorkerError {
            message: format!("exit code: {code}"),
            exit_code: Some(code),
            output_tail,
        }
    }
}

/// An opaque id of a result (a committed snapshot) the worker produced or found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResultRef(pub String);

impl fmt::Display for ResultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A base image as the worker resolved it for one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The normalised reference (`docker.io/library/alpine:3.19`).
    pub reference: String,
    /// The digest of the platform's manifest (`sha256:...`).
    pub manifest_digest: String,
    /// Its config (env, workdir, user, onbuild, history, rootfs...).
    pub config: Image,
}

/// Resolves image references to manifests and configs: what lowering needs.
pub trait ImageResolver: Sync {
    /// Resolves `reference` (as written, normalised by the worker) for `platform`.
    fn resolve_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> impl Future<Output = Result<ResolvedImage, WorkerError>> + Send;
}

/// Everything a build does outside the solver.
pub trait Worker: ImageResolver {
    /// The content digest of a context selection (after `.dockerignore`): file contents,
    /// names, modes and ownership; never mtimes or absolute host paths.
    fn hash_context(
        &self,
        selection: &ContextSelection,
    ) -> impl Future<Output = Result<String, WorkerError>> + Send;

    /// The result recorded for `key`, if any.
    fn cache_get(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<ResultRef>, WorkerError>> + Send;

    /// Records `result` for `key`.
    fn cache_put(
        &self,
        key: &CacheKey,
        result: &ResultRef,
    ) -> impl Future<Output = Result<(), WorkerError>> + Send;

    /// Runs one op on its inputs' results (in the op's input order). Logs go to
    /// `progress`. Dropping the future cancels the step.
    fn execute(
        &self,
        op: &Op,
        inputs: &[ResultRef],
        key: &CacheKey,
        progress: &VertexProgress,
    ) -> impl Future<Output = Result<ResultRef, WorkerError>> + Send;
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What happened to a vertex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ProgressKind {
    /// The vertex started executing.
    Started,
    /// Its result came from the cache.
    Cached,
    /// A line of output.
    Log { stream: Stream, line: String },
    /// It finished.
    Done {
        #[serde(serialize_with = "ser_duration")]
        duration: Duration,
    },
    /// It failed.
    Error {
        message: String,
        #[serde(serialize_with = "ser_duration")]
        duration: Duration,
    },
    /// It was stopped because another step failed.
    Canceled,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A progress event: `vertex` numbers vertices in the order they first report, from 1
/// (BuildKit's `#7`); `name` is the step name (`[build 3/5] RUN make`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressEvent {
    pub vertex: usize,
    pub name: String,
    #[serde(flatten)]
    pub kind: ProgressKind,
}

impl ProgressEvent {
    /// The event as BuildKit's plain progress prints it: `#7 [build 3/5] RUN make`,
    /// `#7 CACHED`, `#7 0.412 make: Nothing to be done`, `#7 DONE 0.4s`, `#7 ERROR: ...`,
    /// `#7 CANCELED`.
    pub fn plain_line(&self) -> String {
        let n = self.vertex;
        match &self.kind {
            ProgressKind::Started => format!("#{n} {}", self.name),
            ProgressKind::Cached => format!("#{n} {}\n#{n} CACHED", self.name),
            ProgressKind::Log { line, .. } => format!("#{n} {line}"),
            ProgressKind::Done { duration } => {
                format!("#{n} DONE {:.1}s", duration.as_secs_f64())
            }
            ProgressKind::Error { message, .. } => format!("#{n} ERROR: {message}"),
            ProgressKind::Canceled => format!("#{n} CANCELED"),
        }
    }
}

/// Receives progress events (the CLI renders them; tests record them).
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// The progress handle of one vertex, handed to [`Worker::execute`].
#[derive(Clone)]
pub struct VertexProgress {
    pub(crate) vertex: usize,
    pub(crate) name: String,
    pub(crate) sink: Arc<dyn ProgressSink>,
}

impl fmt::Debug for VertexProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexProgress")
            .field("vertex", &self.vertex)
            .field("name", &self.name)
            .finish()
    }
}

impl VertexProgress {
    pub fn new(vertex: usize, name: impl Into<String>, sink: Arc<dyn ProgressSink>) -> Self {
        VertexProgress {
            vertex,
            name: name.into(),
            sink,
        }
    }

    /// The progress number (`#7`).
    pub fn vertex(&self) -> usize {
        self.vertex
    }

    /// The step name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reports a line of output.
    pub fn log(&self, stream: Stream, line: impl Into<String>) {
        self.emit(ProgressKind::Log {
            stream,
            line: line.into(),
        });
    }

    pub(crate) fn emit(&self, kind: ProgressKind) {
        self.sink.event(ProgressEvent {
            vertex: self.vertex,
            name: self.name.clone(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_like_buildkit() {
        let ev = |kind| ProgressEvent {
            vertex: 7,
            name: "[build 3/5] RUN make".into(),
            kind,
        };
        assert_eq!(
            ev(ProgressKind::Started).plain_line(),
            "#7 [build 3/5] RUN make"
        );
        assert_eq!(
            ev(ProgressKind::Cached).plain_line(),
            "#7 [build 3/5] RUN make\n#7 CACHED"
        );
        assert_eq!(
            ev(ProgressKind::Done {
                duration: Duration::from_millis(420)
            })
            .plain_line(),
            "#7 DONE 0.4s"
        );
        assert_eq!(ev(ProgressKind::Canceled).plain_line(), "#7 CANCELED");
    }
}
