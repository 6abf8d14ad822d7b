//! Lowering behaviour beyond the golden files: pruning, targets, stage references,
//! ONBUILD, platforms, errors with locations.

use rbuild_solver::op::{CopySource, FileAction, Op, Platform};
use rbuild_solver::{BuildOptions, Error};

use crate::{Call, FakeWorker, args, lower, lower_with};

fn resolved(worker: &FakeWorker) -> Vec<String> {
    worker
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Resolve(r, _) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn unused_stages_are_never_lowered_or_resolved() {
    let w = FakeWorker::new();
    let g = lower(
        "FROM golang:1.22 AS unused\nRUN echo no\nFROM alpine:3.19 AS a\nRUN echo a\nFROM busybox\nCOPY --from=a /x /x\n",
        &w,
    )
    .await;
    let names: Vec<&str> = g.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "stage-2"]);
    let mut refs = resolved(&w);
    refs.sort();
    assert_eq!(
        refs,
        [
            "docker.io/library/alpine:3.19",
            "docker.io/library/busybox:latest"
        ]
    );
    assert!(g.vertices().all(|v| !g.vertex(v).name.contains("echo no")));
}

#[tokio::test]
async fn target_selects_a_stage_and_its_dependencies() {
    let w = FakeWorker::new();
    let text = "FROM alpine:3.19 AS base\nRUN echo base\nFROM base AS dev\nRUN echo dev\nFROM base AS prod\nRUN echo prod\n";
    let opts = BuildOptions {
        target: Some("DEV".into()),
        ..BuildOptions::default()
    };
    let g = lower_with(text, &opts, &w).await.unwrap();
    let t = g.target_stage().unwrap();
    assert_eq!(t.name, "dev");
    assert_eq!(g.stages.len(), 2);
    assert!(g.stage("prod").is_none());
    let err = lower_with(
        text,
        &BuildOptions {
            target: Some("prd".into()),
            ..BuildOptions::default()
        },
        &w,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TargetNotFound { .. }));
    assert!(
        err.render().contains("did you mean `prod`?"),
        "{}",
        err.render()
    );
}

#[tokio::test]
async fn copy_from_stage_index_and_image() {
    let w = FakeWorker::new();
    let g = lower(
        "FROM alpine:3.19\nRUN make\nFROM scratch\nCOPY --from=0 /out /out\nCOPY --from=busybox /bin/sh /sh\n",
        &w,
    )
    .await;
    let root = g.target_stage().unwrap().root.unwrap();
    let inputs = g.inputs(root);
    assert_eq!(inputs.len(), 2, "previous COPY and the busybox image");
    assert!(
        matches!(&g.vertex(inputs[1]).op, Op::Image { reference, .. } if reference == "docker.io/library/busybox:latest")
    );
    let first_copy = inputs[0];
    let from0 = g.inputs(first_copy);
    assert_eq!(
        from0.len(),
        1,
        "scratch base has no input; stage 0 is input 0"
    );
    let Op::File(spec) = &g.vertex(first_copy).op else {
        panic!()
    };
    assert_eq!(spec.base, None);
    let FileAction::Copy(c) = &spec.actions[0] else {
        panic!()
    };
    assert_eq!(
        c.source,
        CopySource::Input {
            input: 0,
            path: "/out".into()
        }
    );
}

#[tokio::test]
async fn copy_from_a_later_stage_is_an_error_with_location() {
    let w = FakeWorker::new();
    let err = lower_with(
        "FROM alpine:3.19 AS a\nCOPY --from=b /x /x\nFROM alpine:3.19 AS b\nRUN true\n",
        &BuildOptions {
            target: Some("a".into()),
            ..BuildOptions::default()
        },
        &w,
    )
    .await
    .unwrap_err();
    let out = err.render();
    assert!(out.contains("cannot copy from stage \"b\""), "{out}");
    assert!(out.contains("--> Dockerfile:2:1"), "{out}");
    assert!(out.contains("2 | COPY --from=b /x /x"), "{out}");
}

#[tokio::test]
async fn onbuild_triggers_of_a_parent_stage_run_first() {
    let w = FakeWorker::new();
    let g = lower(
        "FROM alpine:3.19 AS parent\nONBUILD RUN echo trigger\nRUN echo parent\nFROM parent\nRUN echo child\n",
        &w,
    )
    .await;
    let names: Vec<String> = g.vertices().map(|v| g.vertex(v).name.clone()).collect();
    assert_eq!(
        names,
        [
            "[parent 1/2] FROM docker.io/library/alpine:3.19@sha256:2e41168061e75f7ce2beb4ffcf31ae178a49a67f875a4989e0914c34fe84b3b4",
            "[parent 2/2] RUN echo parent",
            "[stage-1 1/2] ONBUILD RUN echo trigger",
            "[stage-1 2/2] RUN echo child",
        ]
    );
    let parent = g.stage("parent").unwrap();
    assert_eq!(parent.image.config.on_build, ["RUN echo trigger"]);
    assert!(g.target_stage().unwrap().image.config.on_build.is_empty());
}

#[tokio::test]
async fn onbuild_trigger_with_copy_from_adds_a_dependency() {
    let mut w = FakeWorker::new();
    let mut img = w.images["docker.io/library/busybox:latest"].clone();
    img.reference = "docker.io/library/trigger:1".into();
    img.config.config.on_build = vec!["COPY --from=assets /a /a".into()];
    w.images.insert(img.reference.clone(), img);
    let g = lower(
        "FROM alpine:3.19 AS assets\nRUN echo assets\nFROM trigger:1\nRUN echo main\n",
        &w,
    )
    .await;
    assert!(
        g.stage("assets").is_some(),
        "trigger's --from pulled in the stage"
    );
    let err = lower_with("FROM trigger:1\n", &BuildOptions::default(), &w)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not resolved") || err.to_string().contains("assets"),
        "{err}"
    );
}

#[tokio::test]
async fn platform_flag_and_platform_args() {
    let w = FakeWorker::new();
    let opts = BuildOptions {
        build_platform: Platform::parse("linux/amd64").unwrap(),
        target_platform: Platform::parse("linux/arm64").unwrap(),
        explicit_platform: true,
        ..BuildOptions::default()
    };
    let g = lower_with(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nARG TARGETARCH\nRUN GOARCH=$TARGETARCH go build\nFROM alpine:3.19\nCOPY --from=build /app /app\n",
        &opts,
        &w,
    )
    .await
    .unwrap();
    let calls = w.calls();
    assert!(calls.contains(&Call::Resolve(
        "docker.io/library/golang:1.22".into(),
        "linux/amd64".into()
    )));
    assert!(calls.contains(&Call::Resolve(
        "docker.io/library/alpine:3.19".into(),
        "linux/arm64".into()
    )));
    let build = g.stage("build").unwrap().root.unwrap();
    let Op::Exec(spec) = &g.vertex(build).op else {
        panic!()
    };
    assert_eq!(spec.env["TARGETARCH"], "arm64");
    assert_eq!(g.vertex(build).platform.to_string(), "linux/amd64");
    let img = &g.target_stage().unwrap().image;
    assert_eq!(
        (img.os.as_str(), img.architecture.as_str()),
        ("linux", "arm64")
    );
}

#[tokio::test]
async fn multi_platform_step_names_carry_the_platform() {
    let w = FakeWorker::new();
    let df = "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nRUN go build\nFROM alpine:3.19\nCOPY --from=build /app /app\n";
    let names = |multi_platform: bool| {
        let opts = BuildOptions {
            build_platform: Platform::parse("linux/amd64").unwrap(),
            target_platform: Platform::parse("linux/arm64").unwrap(),
            explicit_platform: true,
            multi_platform,
            ..BuildOptions::default()
        };
        let w = &w;
        async move {
            let g = lower_with(df, &opts, w).await.unwrap();
            let mut names: Vec<String> = g.vertices().map(|v| g.vertex(v).name.clone()).collect();
            names.sort();
            names
        }
    };
    let multi = names(true).await;
    assert!(
        multi.contains(&"[linux/amd64->arm64 build 2/2] RUN go build".to_string()),
        "{multi:?}"
    );
    assert!(
        multi.contains(&"[linux/arm64 stage-1 2/2] COPY --from=build /app /app".to_string()),
        "{multi:?}"
    );
    let single = names(false).await;
    assert!(
        single.contains(&"[build 2/2] RUN go build".to_string()),
        "{single:?}"
    );
}

#[tokio::test]
async fn proxy_build_args_reach_run_but_not_history() {
    let w = FakeWorker::new();
    let opts = BuildOptions {
        build_args: args(&[("HTTP_PROXY", "http://user:secret@proxy:3128")]),
        ..BuildOptions::default()
    };
    let g = lower_with("FROM alpine:3.19\nRUN wget x\n", &opts, &w)
        .await
        .unwrap();
    let root = g.target_stage().unwrap().root.unwrap();
    let Op::Exec(spec) = &g.vertex(root).op else {
        panic!()
    };
    assert_eq!(
        spec.proxy_env["HTTP_PROXY"],
        "http://user:secret@proxy:3128"
    );
    assert!(!spec.env.contains_key("HTTP_PROXY"));
    let history = serde_json::to_string(&g.target_stage().unwrap().image.history).unwrap();
    assert!(!history.contains("secret"), "{history}");
}

#[tokio::test]
async fn labels_and_no_cache_filter_options() {
    let w = FakeWorker::new();
    let opts = BuildOptions {
        labels: args(&[("org.example.build", "42")]),
        no_cache_filter: vec!["build".into()],
        ..BuildOptions::default()
    };
    let g = lower_with(
        "FROM alpine:3.19 AS build\nRUN make\nFROM alpine:3.19\nCOPY --from=build /a /a\n",
        &opts,
        &w,
    )
    .await
    .unwrap();
    assert_eq!(
        g.target_stage().unwrap().image.config.labels["org.example.build"],
        "42"
    );
    assert!(g.stage("build").unwrap().image.config.labels.is_empty());
    let build_root = g.stage("build").unwrap().root.unwrap();
    assert!(g.vertex(build_root).ignore_cache);
    let target_root = g.target_stage().unwrap().root.unwrap();
    assert!(!g.vertex(target_root).ignore_cache);
}

#[tokio::test]
async fn instruction_errors_are_located() {
    let w = FakeWorker::new();
    for (text, want, line) in [
        (
            "FROM alpine:3.19\nARG M=999\nCOPY --chmod=$M a /b\n",
            "invalid chmod parameter",
            3,
        ),
        (
            "FROM alpine:3.19\nARG P=80/bogus\nEXPOSE $P\n",
            "invalid proto: bogus",
            3,
        ),
        (
            "FROM alpine:3.19\nSTOPSIGNAL SIGNOPE\n",
            "Invalid signal: SIGNOPE",
            2,
        ),
        ("FROM alpine:3.19\nENV A=${B:?required}\n", "required", 2),
        (
            "FROM alpine:3.19\nCOPY https://example.com/x /x\n",
            "source can't be a URL for COPY",
            2,
        ),
        (
            "FROM alpine:3.19\nRUN --mount=type=bind,from=nosuch,target=/x true\n",
            "nosuch",
            2,
        ),
        (
            "FROM nosuch/image\n",
            "failed to resolve docker.io/nosuch/image:latest",
            1,
        ),
    ] {
        let err = lower_with(text, &BuildOptions::default(), &w)
            .await
            .unwrap_err();
        let d = err.to_diagnostic();
        assert!(d.message.contains(want), "{text}: {}", d.message);
        assert_eq!(
            d.location.as_ref().map(|l| l.span.start.line),
            Some(line),
            "{text}: {}",
            err.render()
        );
    }
}

#[tokio::test]
async fn stage_names_hidden_for_single_stage_files() {
    let w = FakeWorker::new();
    let g = lower("FROM alpine:3.19\nRUN a\nRUN b\n", &w).await;
    let names: Vec<String> = g.vertices().map(|v| g.vertex(v).name.clone()).collect();
    assert!(names[1].starts_with("[2/3] RUN a"), "{names:?}");
    let g = lower("FROM alpine:3.19\nRUN --mount=type=cache,target=/c a\n", &w).await;
    let names: Vec<String> = g.vertices().map(|v| g.vertex(v).name.clone()).collect();
    assert!(names[1].starts_with("[stage-0 2/2] RUN"), "{names:?}");
}

/// The shared corpus directory (`../shared/corpora` or `$RBUILD_CORPORA`).
fn corpora() -> std::path::PathBuf {
    match std::env::var_os("RBUILD_CORPORA") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"),
    }
}

#[tokio::test]
async fn realworld_dockerfiles_lower_and_solve() {
    let dir = corpora().join("realworld");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("skipped: no corpus at {}", dir.display());
        return;
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "MANIFEST.tsv"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut lowered = 0;
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(df) = rbuild_parser::parse("Dockerfile", &text) else {
            continue;
        };
        let mut w = FakeWorker::new();
        w.any_image = true;
        match rbuild_solver::lower(&df, &BuildOptions::default(), &w).await {
            Ok(g) => {
                lowered += 1;
                let r = rbuild_solver::solve(
                    &g,
                    &w,
                    std::sync::Arc::new(rbuild_solver::NoProgress),
                    &rbuild_solver::SolveOptions::default(),
                )
                .await;
                if let Err(e) = r {
                    failures.push(format!("{}: solve: {e}", path.display()));
                }
            }
            Err(e) => {
                // Needs --build-arg ENGINE_VERSION, as with BuildKit.
                let expected = path.ends_with("docker__cli__e2e_testdata_engine_Dockerfile")
                    && e.to_string()
                        .contains("invalid reference format \"docker:-dind\"");
                if !expected {
                    failures.push(format!("{}: {}", path.display(), e.render()));
                }
            }
        }
    }
    println!("lowered {lowered} of {} files", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
