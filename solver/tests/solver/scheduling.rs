//! The scheduler against the fake worker: execution, cache hits, parallelism, failure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rbuild_solver::{BuildOptions, Error, NoProgress, ProgressKind, SolveOptions, solve};

use crate::{Call, FakeWorker, Recorder, lower, lower_with};

const TWO_STAGES: &str = "\
FROM alpine:3.19 AS a
RUN echo a1
RUN echo a2

FROM busybox AS b
RUN echo b1
RUN echo b2

FROM alpine:3.19
COPY --from=a /a /a
COPY --from=b /b /b
";

fn opts(n: usize) -> SolveOptions {
    SolveOptions { max_parallel: n }
}

#[tokio::test]
async fn first_build_executes_everything_second_is_fully_cached() {
    let w = FakeWorker::new().with_files(&[("src/a", "1")]);
    let text = "FROM alpine:3.19\nCOPY src /src\nRUN make\n";
    let g = lower(text, &w).await;
    let rec = Recorder::new();
    let r = solve(&g, &w, rec.clone(), &opts(4)).await.unwrap();
    assert_eq!((r.executed, r.cached), (4, 0));
    assert_eq!(
        w.executed(),
        [
            "[1/3] FROM docker.io/library/alpine:3.19@sha256:2e41168061e75f7ce2beb4ffcf31ae178a49a67f875a4989e0914c34fe84b3b4",
            "[internal] load build context",
            "[2/3] COPY src /src",
            "[3/3] RUN make",
        ]
    );
    assert!(r.result.is_some());
    assert_eq!(
        r.image.history.last().unwrap().created_by,
        "RUN /bin/sh -c make # buildkit"
    );
    let events = rec.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, ProgressKind::Done { .. }) && e.name == "[3/3] RUN make")
    );

    // Again: only the final step is looked up; nothing runs, not even the base pull.
    w.clear_calls();
    let rec = Recorder::new();
    let g = lower(text, &w).await;
    let r2 = solve(&g, &w, rec.clone(), &opts(4)).await.unwrap();
    assert_eq!((r2.executed, r2.cached), (0, 1));
    assert_eq!(r2.result, r.result);
    assert!(w.executed().is_empty());
    assert_eq!(
        w.calls().iter().filter(|c| **c == Call::CacheGet).count(),
        1
    );
    let cached: Vec<String> = rec
        .events()
        .into_iter()
        .filter(|e| e.kind == ProgressKind::Cached)
        .map(|e| e.name)
        .collect();
    assert_eq!(cached, ["[3/3] RUN make"]);
}

#[tokio::test]
async fn a_context_change_reruns_only_what_depends_on_it() {
    let w = FakeWorker::new().with_files(&[("src/a", "1"), ("docs/x", "d")]);
    let text = "FROM alpine:3.19\nRUN apk add make\nCOPY src /src\nRUN make\nCOPY docs /docs\n";
    let g = lower(text, &w).await;
    solve(&g, &w, Arc::new(NoProgress), &opts(4)).await.unwrap();
    w.write("src/a", "2");
    w.clear_calls();
    let g = lower(text, &w).await;
    let r = solve(&g, &w, Arc::new(NoProgress), &opts(4)).await.unwrap();
    assert_eq!(
        w.executed(),
        [
            "[internal] load build context",
            "[3/5] COPY src /src",
            "[4/5] RUN make",
            "[5/5] COPY docs /docs",
        ]
    );
    assert_eq!(r.cached, 2, "the apk RUN and the docs context");
}

#[tokio::test]
async fn independent_stages_run_in_parallel() {
    let mut w = FakeWorker::new();
    w.delay = Duration::from_millis(30);
    let g = lower(TWO_STAGES, &w).await;
    let r = solve(&g, &w, Arc::new(NoProgress), &opts(8)).await.unwrap();
    assert_eq!(r.executed, 8);
    assert!(
        w.max_running.load(Ordering::SeqCst) >= 2,
        "stages a and b overlap"
    );
}

#[tokio::test]
async fn parallelism_is_bounded() {
    let mut w = FakeWorker::new();
    w.delay = Duration::from_millis(5);
    let g = lower(TWO_STAGES, &w).await;
    solve(&g, &w, Arc::new(NoProgress), &opts(1)).await.unwrap();
    assert_eq!(w.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failure_cancels_the_rest_and_names_the_step() {
    let mut w = FakeWorker::new();
    w.delay = Duration::from_millis(20);
    w.fail_on = Some("echo a1".into());
    let g = lower(TWO_STAGES, &w).await;
    let rec = Recorder::new();
    let err = solve(&g, &w, rec.clone(), &opts(8)).await.unwrap_err();
    let Error::StepFailed {
        step,
        command,
        source,
        location,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(step, "[a 2/3] RUN echo a1");
    assert_eq!(command, "/bin/sh -c echo a1");
    assert_eq!(source.exit_code, Some(2));
    assert_eq!(location.as_ref().unwrap().span.start.line, 2);
    let out = err.render();
    assert!(
        out.contains("did not complete successfully: exit code: 2"),
        "{out}"
    );
    assert!(out.contains("--> Dockerfile:2:1"), "{out}");
    assert!(out.contains("boom: something went wrong"), "{out}");
    let executed = w.executed();
    assert!(
        !executed.iter().any(|s| s.contains("echo a2")),
        "{executed:?}"
    );
    assert!(!executed.iter().any(|s| s.contains("COPY")), "{executed:?}");
    let events = rec.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, ProgressKind::Error { .. }))
    );
    assert!(
        events.iter().any(|e| e.kind == ProgressKind::Canceled),
        "stage b was running"
    );
    // Nothing of the failed step was cached.
    assert_eq!(
        w.cache.lock().unwrap().len(),
        executed.len()
            - 1
            - events
                .iter()
                .filter(|e| e.kind == ProgressKind::Canceled)
                .count()
    );
}

#[tokio::test]
async fn no_cache_reruns_everything_and_filter_reruns_a_stage_and_dependents() {
    let w = FakeWorker::new();
    let g = lower(TWO_STAGES, &w).await;
    solve(&g, &w, Arc::new(NoProgress), &opts(4)).await.unwrap();

    w.clear_calls();
    let all = BuildOptions {
        no_cache: true,
        ..BuildOptions::default()
    };
    let g = lower_with(TWO_STAGES, &all, &w).await.unwrap();
    let r = solve(&g, &w, Arc::new(NoProgress), &opts(4)).await.unwrap();
    // Base images are content-addressed: --no-cache reruns the steps, not the pulls.
    assert_eq!((r.executed, r.cached), (6, 2));

    w.clear_calls();
    let filter = BuildOptions {
        no_cache_filter: vec!["b".into()],
        ..BuildOptions::default()
    };
    let g = lower_with(TWO_STAGES, &filter, &w).await.unwrap();
    let r = solve(&g, &w, Arc::new(NoProgress), &opts(4)).await.unwrap();
    let mut ran = w.executed();
    ran.sort();
    assert_eq!(
        ran,
        [
            "[b 2/3] RUN echo b1",
            "[b 3/3] RUN echo b2",
            "[stage-2 3/3] COPY --from=b /b /b",
        ]
    );
    assert_eq!(
        r.cached, 2,
        "busybox and the COPY --from=a step below are hits"
    );
}

#[tokio::test]
async fn empty_scratch_target_has_no_result() {
    let w = FakeWorker::new();
    let g = lower("FROM scratch\nENV A=1\n", &w).await;
    let r = solve(&g, &w, Arc::new(NoProgress), &opts(2)).await.unwrap();
    assert!(r.result.is_none());
    assert_eq!(r.image.config.env[1], "A=1");
}
