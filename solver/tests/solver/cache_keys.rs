//! Cache keys through whole solves: stability, exact invalidation, explanations.

use std::collections::BTreeMap;

use rbuild_solver::cache::{KeyRecord, Reason, explain};
use rbuild_solver::{BuildOptions, NoProgress, SolveOptions, solve};

use crate::{FakeWorker, args, lower_with};

const DOCKERFILE: &str = "\
FROM alpine:3.19 AS build
ARG VERSION=1
COPY src /src
RUN make -C /src VERSION=$VERSION
COPY docs /docs
RUN make docs

FROM busybox
COPY --from=build /src/out /app
COPY README.md /README.md
";

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("src/main.c", "int main() {}"),
        ("src/util.c", "void util() {}"),
        ("docs/index.md", "# docs"),
        ("README.md", "readme"),
    ]
}

async fn records(worker: &FakeWorker, opts: &BuildOptions) -> Vec<KeyRecord> {
    let g = lower_with(DOCKERFILE, opts, worker).await.unwrap();
    let r = solve(
        &g,
        worker,
        std::sync::Arc::new(NoProgress),
        &SolveOptions::default(),
    )
    .await
    .unwrap();
    r.records
}

fn keys(records: &[KeyRecord]) -> BTreeMap<String, (String, String)> {
    records
        .iter()
        .map(|r| (r.id.clone(), (r.step.clone(), r.key.0.clone())))
        .collect()
}

fn changed(a: &[KeyRecord], b: &[KeyRecord]) -> Vec<String> {
    let (ka, kb) = (keys(a), keys(b));
    kb.iter()
        .filter(|(id, (_, key))| ka.get(*id).map(|(_, k)| k) != Some(key))
        .map(|(_, (step, _))| step.clone())
        .collect()
}

#[tokio::test]
async fn same_inputs_give_same_keys() {
    let w = FakeWorker::new().with_files(&files());
    let a = records(&w, &BuildOptions::default()).await;
    let w2 = FakeWorker::new().with_files(&files());
    let b = records(&w2, &BuildOptions::default()).await;
    assert_eq!(keys(&a), keys(&b));
    assert!(explain(&a, &b).is_empty());
    assert!(a.len() >= 10, "{}", a.len());
}

#[tokio::test]
async fn one_context_change_invalidates_exactly_its_dependents() {
    let w = FakeWorker::new().with_files(&files());
    let before = records(&w, &BuildOptions::default()).await;
    w.write("docs/index.md", "# new docs");
    let after = records(&w, &BuildOptions::default()).await;
    let mut got = changed(&before, &after);
    got.sort();
    let mut want = vec![
        "[build 4/5] COPY docs /docs",
        "[build 5/5] RUN make docs",
        "[stage-1 2/3] COPY --from=build /src/out /app",
        "[stage-1 3/3] COPY README.md /README.md",
        "[internal] load build context",
    ];
    want.sort();
    assert_eq!(got, want);
    // The reason chain: the context digest at the root, inputs downstream.
    let ex = explain(&before, &after);
    let ctx = ex
        .iter()
        .find(|e| e.step == "[internal] load build context")
        .unwrap();
    assert!(
        matches!(ctx.reasons[..], [Reason::ContextChanged { .. }]),
        "{:?}",
        ctx.reasons
    );
    let copy = ex
        .iter()
        .find(|e| e.step == "[build 4/5] COPY docs /docs")
        .unwrap();
    assert_eq!(
        copy.reasons,
        [Reason::InputChanged {
            step: "[internal] load build context".into()
        }]
    );
    let run = ex
        .iter()
        .find(|e| e.step == "[build 5/5] RUN make docs")
        .unwrap();
    assert_eq!(
        run.reasons,
        [Reason::InputChanged {
            step: "[build 4/5] COPY docs /docs".into()
        }]
    );
}

#[tokio::test]
async fn mtime_only_changes_are_irrelevant() {
    let w = FakeWorker::new().with_files(&files());
    let before = records(&w, &BuildOptions::default()).await;
    w.touch("src/main.c");
    w.touch("README.md");
    let after = records(&w, &BuildOptions::default()).await;
    assert_eq!(keys(&before), keys(&after));
}

#[tokio::test]
async fn build_arg_change_is_explained() {
    let w = FakeWorker::new().with_files(&files());
    let before = records(&w, &BuildOptions::default()).await;
    let opts = BuildOptions {
        build_args: args(&[("VERSION", "2")]),
        ..BuildOptions::default()
    };
    let after = records(&w, &opts).await;
    let ex = explain(&before, &after);
    let run = ex
        .iter()
        .find(|e| e.step.starts_with("[build 3/5] RUN make -C /src"))
        .unwrap_or_else(|| panic!("{ex:#?}"));
    assert!(
        run.reasons.contains(&Reason::BuildArgChanged {
            name: "VERSION".into(),
            old: Some("1".into()),
            new: Some("2".into()),
        }),
        "{:?}",
        run.reasons
    );
    // The COPY before the RUN does not use the arg's value in its op: unchanged key.
    assert!(!ex.iter().any(|e| e.step == "[build 2/5] COPY src /src"));
    // The step name changed with the expanded arg; the records still match by identity.
    assert!(run.step.contains("VERSION=2"));
}

#[tokio::test]
async fn proxy_args_do_not_change_keys() {
    let w = FakeWorker::new().with_files(&files());
    let before = records(&w, &BuildOptions::default()).await;
    let opts = BuildOptions {
        build_args: args(&[("https_proxy", "http://proxy:3128")]),
        ..BuildOptions::default()
    };
    let after = records(&w, &opts).await;
    assert_eq!(keys(&before), keys(&after));
}

#[tokio::test]
async fn base_image_change_is_explained() {
    let mut w = FakeWorker::new().with_files(&files());
    let before = records(&w, &BuildOptions::default()).await;
    let img = w
        .images
        .get_mut("docker.io/library/busybox:latest")
        .unwrap();
    img.manifest_digest = rbuild_solver::cache::sha256_digest(b"new busybox");
    let after = records(&w, &BuildOptions::default()).await;
    let ex = explain(&before, &after);
    let from = ex
        .iter()
        .find(|e| e.step.contains("FROM docker.io/library/busybox"))
        .unwrap();
    assert!(
        matches!(&from.reasons[..], [Reason::BaseImageChanged { reference, .. }] if reference == "docker.io/library/busybox:latest"),
        "{:?}",
        from.reasons
    );
    let copy = ex
        .iter()
        .find(|e| e.step.contains("COPY --from=build"))
        .unwrap();
    assert!(
        matches!(&copy.reasons[..], [Reason::InputChanged { step }] if step.contains("busybox")),
        "{:?}",
        copy.reasons
    );
    // diff on the image records directly names the digests.
    let old = before.iter().find(|r| r.step.contains("busybox")).unwrap();
    let new = after.iter().find(|r| r.step.contains("busybox")).unwrap();
    assert!(matches!(
        &rbuild_solver::diff(old, new)[..],
        [Reason::BaseImageChanged { reference, .. }] if reference == "docker.io/library/busybox:latest"
    ));
}

#[tokio::test]
async fn command_change_is_explained() {
    let w = FakeWorker::new().with_files(&files());
    let g = lower_with(
        "FROM alpine:3.19\nRUN echo a\n",
        &BuildOptions::default(),
        &w,
    )
    .await
    .unwrap();
    let a = solve(
        &g,
        &w,
        std::sync::Arc::new(NoProgress),
        &SolveOptions::default(),
    )
    .await
    .unwrap()
    .records;
    let g = lower_with(
        "FROM alpine:3.19\nRUN echo b\n",
        &BuildOptions::default(),
        &w,
    )
    .await
    .unwrap();
    let b = solve(
        &g,
        &w,
        std::sync::Arc::new(NoProgress),
        &SolveOptions::default(),
    )
    .await
    .unwrap()
    .records;
    let old = a.iter().find(|r| r.kind == "exec").unwrap();
    let new = b.iter().find(|r| r.kind == "exec").unwrap();
    assert_eq!(
        rbuild_solver::diff(old, new),
        [Reason::CommandChanged {
            old: "/bin/sh -c echo a".into(),
            new: "/bin/sh -c echo b".into()
        }]
    );
}
