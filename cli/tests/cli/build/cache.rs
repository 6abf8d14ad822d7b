//! The build cache across builds and processes: hits need the same content, never the
//! same mtimes or paths; `--no-cache` re-runs; `SOURCE_DATE_EPOCH` makes IDs reproducible.

use std::path::Path;

use super::{Root, case_dir, copy_case, executed_steps};

fn summary(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| l.starts_with("built "))
        .unwrap_or("")
}

fn build_id(root: &Root, ctx: &Path, extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let iid = dir.path().join("iid");
    let mut args = vec!["--iidfile", iid.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let log = root.build_ok(&args);
    (std::fs::read_to_string(&iid).unwrap(), log)
}

#[test]
fn rebuild_is_cached_with_the_same_image_id() {
    let Some(root) = Root::new() else { return };
    let ctx = copy_case("basic");
    let (first, log) = build_id(&root, ctx.path(), &["-t", "app:1"]);
    assert!(!executed_steps(&log).is_empty());
    let (second, log) = build_id(&root, ctx.path(), &["-t", "app:1"]);
    assert_eq!(
        first, second,
        "a fully cached build gives the same image ID"
    );
    assert!(executed_steps(&log).is_empty(), "{log}");
    assert!(log.contains("CACHED"), "{log}");
    assert!(summary(&log).contains("0 steps run"), "{log}");
    assert!(
        log.contains("exporting layers (6 layers, 0 written)"),
        "no layer re-tarred:\n{log}"
    );

    // Touching a file (mtime only) still hits.
    let a = ctx.path().join("src/a.txt");
    let f = std::fs::File::options().write(true).open(&a).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let (third, log) = build_id(&root, ctx.path(), &["-t", "app:1"]);
    assert_eq!(third, first, "{log}");
    assert!(executed_steps(&log).is_empty(), "{log}");

    // The same context in another directory hits too.
    let elsewhere = copy_case("basic");
    let (fourth, log) = build_id(&root, elsewhere.path(), &[]);
    assert_eq!(fourth, first, "{log}");
    assert!(executed_steps(&log).is_empty(), "{log}");
}

#[test]
fn changed_content_reruns_exactly_the_steps_after_its_copy() {
    let Some(root) = Root::new() else { return };
    let ctx = copy_case("basic");
    build_id(&root, ctx.path(), &[]);
    std::fs::write(ctx.path().join("top.txt"), "changed top\n").unwrap();
    let (_, log) = build_id(&root, ctx.path(), &["-t", "changed:1"]);
    let ran = executed_steps(&log);
    assert_eq!(
        ran,
        [
            "[internal] load build context",
            "[4/6] COPY top.txt .",
            "[5/6] RUN mkdir -p out && cat src/a.txt src/b.txt > out/ab.txt && echo \"hello world\" > out/greeting.txt",
            "[6/6] RUN ln -s out/ab.txt ab-link && chmod 0600 out/greeting.txt && rm src/b.txt",
        ],
        "{log}"
    );
    let image = root.image("changed:1");
    assert_eq!(image.file("app/top.txt").as_deref(), Some("changed top\n"));
}

#[test]
fn no_cache_reruns_every_step() {
    let Some(root) = Root::new() else { return };
    let ctx = case_dir("basic");
    build_id(&root, &ctx, &[]);
    let (_, log) = build_id(&root, &ctx, &["--no-cache"]);
    let ran = executed_steps(&log);
    for step in [
        "[2/6] WORKDIR /app",
        "[3/6] COPY src/ ./src/",
        "[4/6] COPY top.txt .",
    ] {
        assert!(ran.iter().any(|r| r == step), "{step} did not run:\n{log}");
    }
    assert_eq!(
        ran.iter().filter(|r| r.contains("] RUN ")).count(),
        2,
        "{log}"
    );
}

#[test]
fn source_date_epoch_gives_identical_ids_across_roots_and_dirs() {
    let (Some(a), Some(b)) = (Root::new(), Root::new()) else {
        return;
    };
    let (ctx_a, ctx_b) = (copy_case("basic"), copy_case("basic"));
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let id = |root: &Root, ctx: &Path| {
        let dir = tempfile::tempdir().unwrap();
        let iid = dir.path().join("iid");
        let out = root.build_env(
            &["--iidfile", iid.to_str().unwrap(), ctx.to_str().unwrap()],
            &env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&iid).unwrap()
    };
    let first = id(&a, ctx_a.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = id(&b, ctx_b.path());
    assert_eq!(first, second);
}

#[test]
fn cache_mounts_persist_across_builds() {
    let Some(root) = Root::new() else { return };
    let ctx = case_dir("cache-mount");
    root.build_ok(&["-t", "cm:1", ctx.to_str().unwrap()]);
    root.build_ok(&["--no-cache", "-t", "cm:2", ctx.to_str().unwrap()]);
    assert_eq!(root.image("cm:1").file("runs.txt").as_deref(), Some("1\n"));
    assert_eq!(root.image("cm:2").file("runs.txt").as_deref(), Some("2\n"));
}

#[test]
fn cached_layers_survive_system_prune() {
    let Some(root) = Root::new() else { return };
    let ctx = case_dir("basic");
    let (first, _) = build_id(&root, &ctx, &["-t", "pruned:1"]);
    let rmi = crate::rbuild_at(root.path(), &["rmi", "pruned:1"]);
    assert!(rmi.status.success());
    let prune = crate::rbuild_at(root.path(), &["system", "prune", "-f"]);
    assert!(
        prune.status.success(),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    let (second, log) = build_id(&root, &ctx, &["-t", "pruned:1"]);
    assert_eq!(first, second, "{log}");
    assert!(
        log.contains("(6 layers, 0 written)"),
        "the cached layer blobs were kept:\n{log}"
    );
}
