//! `rbuild build --explain`, `rbuild cache explain` and `rbuild builder prune`, as root on
//! the offline busybox base (skipped otherwise).

use std::path::{Path, PathBuf};

use crate::build::{Root, executed_steps};

const DOCKERFILE: &str = "FROM busybox:latest
ARG V=1
COPY src/ /app/src/
RUN cat /app/src/main.c > /out.txt && echo \"$V\" >> /out.txt
";

/// A project directory named `proj` inside a fresh temp dir.
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(proj.join("src")).unwrap();
    std::fs::write(proj.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(proj.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    std::fs::write(proj.join("src/util.c"), "int util;\n").unwrap();
    (dir, proj)
}

fn build(root: &Root, ctx: &Path, extra: &[&str]) -> String {
    let mut args: Vec<&str> = extra.to_vec();
    args.push(ctx.to_str().unwrap());
    root.build_ok(&args)
}

/// The explanation line of the step named like `needle`.
fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle) && l.contains(" — not cached: "))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
}

#[test]
fn explain_names_the_changed_file_and_build_arg() {
    let Some(root) = Root::new() else { return };
    let (_d, ctx) = project();
    let log = build(&root, &ctx, &["--explain", "-t", "ex:1"]);
    assert!(log.contains("explain: no earlier build"), "{log}");

    std::fs::write(ctx.join("src/main.c"), "int main(void) { return 1; }\n").unwrap();
    let log = build(&root, &ctx, &["--explain", "-t", "ex:1"]);
    let line = line_with(&log, "COPY src/ /app/src/ — not cached:");
    assert!(line.starts_with('#'), "{line}");
    assert!(
        line.contains("context file src/main.c changed (sha256:"),
        "{line}"
    );
    assert!(line.contains("… → sha256:"), "{line}");
    assert!(!line.contains("util.c"), "only the changed file: {line}");
    let run = line_with(&log, "RUN cat /app/src/main.c");
    assert!(run.contains("not cached: earlier step #"), "{run}");

    let log = build(&root, &ctx, &["--explain", "--build-arg", "V=2"]);
    let run = line_with(&log, "RUN cat /app/src/main.c");
    assert!(run.contains("build arg V changed (\"1\" → \"2\")"), "{run}");
    assert!(!log.contains("COPY src/ /app/src/ — not cached"), "{log}");

    // The last build's explanation without rebuilding.
    let out = crate::rbuild_at(root.path(), &["cache", "explain"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("build arg V changed"), "{text}");
    let out = crate::rbuild_at(root.path(), &["cache", "ls"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
}

#[test]
fn a_fresh_copy_elsewhere_is_all_cached_and_explained_as_such() {
    let Some(root) = Root::new() else { return };
    let (_a, first) = project();
    build(&root, &first, &[]);
    let (_b, second) = project();
    let log = build(&root, &second, &["--explain"]);
    assert!(executed_steps(&log).is_empty(), "{log}");
    assert!(log.contains("explain: compared with build"), "{log}");
    assert!(log.contains("nothing missed the cache"), "{log}");
}

#[test]
fn builder_prune_all_empties_the_cache_but_keeps_images() {
    let Some(root) = Root::new() else { return };
    let (_d, ctx) = project();
    build(&root, &ctx, &["-t", "kept:1"]);
    let out = crate::rbuild_at(root.path(), &["system", "df", "-v"]);
    let df = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && df.contains("CACHE ID"), "{df}");
    assert!(df.contains("regular"), "{df}");

    let out = crate::rbuild_at(root.path(), &["builder", "prune", "--all", "-f"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Total reclaimed space: "), "{text}");
    assert!(!text.contains("Total reclaimed space: 0B"), "{text}");

    let out = crate::rbuild_at(root.path(), &["images"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    let img = root.image("kept:1");
    assert!(img.file("out.txt").is_some());

    let log = build(&root, &ctx, &["--explain", "-t", "kept:1"]);
    let ran = executed_steps(&log);
    assert!(ran.iter().any(|s| s.contains("RUN cat")), "{log}");
    assert!(ran.iter().any(|s| s.contains("COPY src/")), "{log}");
    assert!(log.contains("cache record is gone"), "{log}");
}

#[test]
fn builder_prune_until_keeps_recent_records() {
    let Some(root) = Root::new() else { return };
    let (_d, ctx) = project();
    build(&root, &ctx, &[]);
    let out = crate::rbuild_at(
        root.path(),
        &["builder", "prune", "-f", "--filter", "until=1h"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = build(&root, &ctx, &[]);
    assert!(executed_steps(&log).is_empty(), "{log}");
    // keep-storage 0 keeps nothing.
    let out = crate::rbuild_at(
        root.path(),
        &["builder", "prune", "-f", "--keep-storage", "0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = build(&root, &ctx, &[]);
    assert!(!executed_steps(&log).is_empty(), "{log}");
}
