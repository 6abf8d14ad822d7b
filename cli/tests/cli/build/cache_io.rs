//! `--cache-to` / `--cache-from` (issue #7): the build cache exported from one root and
//! imported into a fresh one, from a copy of the sources in another directory — through a
//! local OCI layout, a registry, and an image's inline cache. Every RUN writes the time
//! and a random UUID (busybox's `date` has no `%N`), so an identical file proves the step
//! did not run again.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Root, executed_steps};

const EPOCH: &str = "1700000000";

const DOCKERFILE: &str = "FROM busybox
COPY src /src
RUN date +%s%N > /stamp && cat /proc/sys/kernel/random/uuid >> /stamp && cat /src/a.txt > /copy
RUN date +%s%N > /stamp2 && cat /proc/sys/kernel/random/uuid >> /stamp2 && echo second > /second
";

/// A build context with `Dockerfile` in a fresh temporary directory.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.txt"), "from the context\n").unwrap();
    dir
}

/// Builds `ctx` with `args` and a fixed `SOURCE_DATE_EPOCH`; returns the log and the
/// manifest digest.
fn build(root: &Root, ctx: &Path, args: &[&str]) -> (String, String) {
    let meta = tempfile::NamedTempFile::new().unwrap();
    let mut all = vec!["--metadata-file", meta.path().to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = root.build_env(&all, &[("SOURCE_DATE_EPOCH", EPOCH)]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {all:?} failed:\n{log}");
    let meta: Value = serde_json::from_slice(&std::fs::read(meta.path()).unwrap()).unwrap();
    let digest = meta["containerimage.digest"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (log, digest)
}

fn runs(log: &str) -> Vec<String> {
    executed_steps(log)
        .into_iter()
        .filter(|s| s.contains(" RUN "))
        .collect()
}

#[test]
fn local_round_trip_hits_every_step_in_a_fresh_root_from_another_directory() {
    let Some(a) = Root::new() else { return };
    let cache = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={},mode=max", cache.path().display());
    let ctx_a = context(DOCKERFILE);
    let (log, digest_a) = build(&a, ctx_a.path(), &["--cache-to", &dest, "-t", "app:1"]);
    assert_eq!(runs(&log).len(), 2, "{log}");
    assert!(log.contains("exporting cache"), "{log}");
    let image_a = a.image("app:1");
    let stamp = image_a.file("stamp").unwrap();
    assert!(cache.path().join("index.json").is_file());
    assert!(cache.path().join("oci-layout").is_file());
    drop(a);

    let b = Root::new().unwrap();
    let ctx_b = context(DOCKERFILE);
    let from = format!("type=local,src={}", cache.path().display());
    let (log, digest_b) = build(
        &b,
        ctx_b.path(),
        &["--cache-from", &from, "-t", "app:1", "--explain"],
    );
    assert!(runs(&log).is_empty(), "every RUN step is cached:\n{log}");
    let imported_line = format!(
        "RUN date +%s%N > /stamp2 && cat /proc/sys/kernel/random/uuid >> /stamp2 && echo second > /second — CACHED (imported from local {})",
        cache.path().display()
    );
    assert!(log.contains(&imported_line), "{log}");
    assert!(log.contains("CACHED"), "{log}");
    let image_b = b.image("app:1");
    assert_eq!(image_b.file("stamp").unwrap(), stamp);
    assert_eq!(image_b.file("copy").as_deref(), Some("from the context\n"));
    assert_eq!(image_b.file("second").as_deref(), Some("second\n"));
    assert_eq!(digest_b, digest_a, "the same image, byte for byte");

    // The imported records are now local: a rebuild without --cache-from hits too.
    let (log, digest_c) = build(&b, ctx_b.path(), &["-t", "app:1"]);
    assert!(runs(&log).is_empty(), "{log}");
    assert_eq!(digest_c, digest_a);

    // Re-exporting into the same directory replaces the `latest` entry, keeps others.
    let tagged = format!("type=local,dest={},tag=v2", cache.path().display());
    build(
        &b,
        ctx_b.path(),
        &["--cache-to", &dest, "--cache-to", &tagged],
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(cache.path().join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v2"]);
}

const MULTISTAGE: &str = "FROM busybox AS build
RUN date +%s%N > /built && cat /proc/sys/kernel/random/uuid >> /built
FROM busybox
COPY --from=build /built /built
RUN echo final > /final
";

/// Exports with `mode`, then builds `--target build` in a fresh root from the cache:
/// whether the intermediate stage's RUN ran again.
fn intermediate_reruns(mode: &str) -> bool {
    let a = Root::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(MULTISTAGE);
    let dest = format!("type=local,dest={},mode={mode}", cache.path().display());
    let (log, _) = build(&a, ctx.path(), &["--cache-to", &dest]);
    assert_eq!(runs(&log).len(), 2, "{log}");
    drop(a);

    let b = Root::new().unwrap();
    let from = format!("type=local,src={}", cache.path().display());
    // The final stage hits either way.
    let (log, _) = build(&b, ctx.path(), &["--cache-from", &from]);
    assert!(runs(&log).is_empty(), "mode={mode}:\n{log}");
    let b = Root::new().unwrap();
    let (log, _) = build(
        &b,
        ctx.path(),
        &["--cache-from", &from, "--target", "build"],
    );
    !runs(&log).is_empty()
}

#[test]
fn min_mode_exports_the_final_stage_only_and_max_every_stage() {
    if Root::new().is_none() {
        return;
    }
    assert!(
        intermediate_reruns("min"),
        "mode=min leaves the build stage out"
    );
    assert!(!intermediate_reruns("max"), "mode=max has the build stage");
}

/// The layout's cache config.
fn cache_config(dir: &Path) -> Value {
    let read = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&read(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.rbuild.cache.config.v1+json"
    );
    serde_json::from_slice(&read(manifest["config"]["digest"].as_str().unwrap())).unwrap()
}

#[test]
fn a_corrupt_blob_in_the_cache_is_skipped_and_its_step_runs_again() {
    let Some(a) = Root::new() else { return };
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(DOCKERFILE);
    let dest = format!("type=local,dest={}", cache.path().display());
    build(&a, ctx.path(), &["--cache-to", &dest, "-t", "app:1"]);
    let stamp = a.image("app:1").file("stamp").unwrap();
    let stamp2 = a.image("app:1").file("stamp2").unwrap();
    drop(a);

    // The last RUN's layer blob is overwritten.
    let cfg = cache_config(cache.path());
    let record = cfg["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"].as_str().unwrap_or("").contains("echo second"))
        .unwrap_or_else(|| panic!("no record of the last RUN in {cfg}"));
    let snapshot = &cfg["snapshots"][record["snapshot"].as_u64().unwrap() as usize];
    let layer = &cfg["layers"][snapshot["layer"].as_u64().unwrap() as usize];
    let hex = layer["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let blob = cache.path().join("blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let b = Root::new().unwrap();
    let from = format!("type=local,src={}", cache.path().display());
    let (log, _) = build(&b, ctx.path(), &["--cache-from", &from, "-t", "app:1"]);
    let ran = runs(&log);
    assert_eq!(ran.len(), 1, "only the corrupt step runs:\n{log}");
    assert!(ran[0].contains("echo second"), "{log}");
    assert!(log.contains("warning: cache record"), "{log}");
    let image = b.image("app:1");
    assert_eq!(
        image.file("stamp").unwrap(),
        stamp,
        "the first RUN was imported"
    );
    assert_ne!(
        image.file("stamp2").unwrap(),
        stamp2,
        "the second RUN ran again"
    );
    assert_eq!(image.file("second").as_deref(), Some("second\n"));
}

/// `docker-registry serve` on a free loopback port; killed on drop.
pub(super) struct Registry {
    child: Child,
    pub(super) host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(super) fn start() -> Option<Registry> {
        let found = Command::new("sh")
            .args(["-c", "command -v docker-registry"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            println!("skipped: docker-registry not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n",
                    storage.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let host = format!("127.0.0.1:{port}");
            if ready(&mut child, &host) {
                return Some(Registry {
                    child,
                    host,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not come up");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `GET /v2/` to answer 200.
fn ready(child: &mut Child, host: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(host) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(
                s,
                "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            );
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.contains(" 200 ") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn registry_round_trip_into_a_wiped_root() {
    let Some(a) = Root::new() else { return };
    let Some(registry) = Registry::start() else {
        return;
    };
    let reference = format!("{}/app:cache", registry.host);
    let ctx = context(DOCKERFILE);
    let to = format!("type=registry,ref={reference},mode=max");
    let (log, digest_a) = build(&a, ctx.path(), &["--cache-to", &to, "-t", "app:1"]);
    assert!(log.contains("writing cache manifest sha256:"), "{log}");
    let stamp = a.image("app:1").file("stamp").unwrap();
    drop(a);

    let b = Root::new().unwrap();
    let ctx_b = context(DOCKERFILE);
    let from = format!("type=registry,ref={reference}");
    let (log, digest_b) = build(&b, ctx_b.path(), &["--cache-from", &from, "-t", "app:1"]);
    assert!(runs(&log).is_empty(), "{log}");
    assert_eq!(b.image("app:1").file("stamp").unwrap(), stamp);
    assert_eq!(digest_b, digest_a);
}

#[test]
fn inline_cache_of_a_pushed_image_feeds_a_wiped_root() {
    let Some(a) = Root::new() else { return };
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = format!("{}/app:1", registry.host);
    let ctx = context(DOCKERFILE);
    let (log, digest_a) = build(
        &a,
        ctx.path(),
        &["--cache-to", "type=inline", "-t", &image, "--push"],
    );
    assert_eq!(runs(&log).len(), 2, "{log}");
    let saved = a.image(&image);
    assert!(
        saved.config.get("rbuild.cache.v1").is_some(),
        "the config carries the cache"
    );
    let stamp = saved.file("stamp").unwrap();
    drop(a);

    let b = Root::new().unwrap();
    let ctx_b = context(DOCKERFILE);
    let (log, _) = build(&b, ctx_b.path(), &["--cache-from", &image, "-t", "app:2"]);
    assert!(runs(&log).is_empty(), "{log}");
    assert_eq!(b.image("app:2").file("stamp").unwrap(), stamp);
    // The same Dockerfile with the inline cache asked for again gives the same image.
    let (_, digest_b) = build(
        &b,
        ctx_b.path(),
        &[
            "--cache-from",
            &image,
            "--cache-to",
            "type=inline",
            "-t",
            "app:3",
        ],
    );
    assert_eq!(digest_b, digest_a);
}

#[test]
fn a_max_export_after_an_imported_hit_keeps_the_stages_it_did_not_need() {
    let Some(a) = Root::new() else { return };
    let ctx = context(MULTISTAGE);
    let first = tempfile::tempdir().unwrap();
    let to = format!("type=local,dest={},mode=max", first.path().display());
    build(&a, ctx.path(), &["--cache-to", &to]);
    drop(a);

    // A fully cached build from the first cache, re-exported: the build stage was never
    // looked up, yet the second cache has it.
    let b = Root::new().unwrap();
    let second = tempfile::tempdir().unwrap();
    let from = format!("type=local,src={}", first.path().display());
    let to = format!("type=local,dest={},mode=max", second.path().display());
    let (log, _) = build(&b, ctx.path(), &["--cache-from", &from, "--cache-to", &to]);
    assert!(runs(&log).is_empty(), "{log}");
    drop(b);
    drop(first);

    let c = Root::new().unwrap();
    let from = format!("type=local,src={}", second.path().display());
    let (log, _) = build(
        &c,
        ctx.path(),
        &["--cache-from", &from, "--target", "build"],
    );
    assert!(runs(&log).is_empty(), "{log}");
}

/// The snapshots under `root` an import made (`c-` keys).
fn imported_snapshots(root: &Path) -> usize {
    let dir = root.join("snapshotter-v1/snapshots");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("meta.json")).is_ok_and(|m| m.contains("\"c-"))
        })
        .count()
}

#[test]
fn builder_prune_all_removes_what_an_import_made() {
    let Some(a) = Root::new() else { return };
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(DOCKERFILE);
    let to = format!("type=local,dest={}", cache.path().display());
    build(&a, ctx.path(), &["--cache-to", &to]);
    drop(a);

    let b = Root::new().unwrap();
    let from = format!("type=local,src={}", cache.path().display());
    build(&b, ctx.path(), &["--cache-from", &from]);
    assert!(
        imported_snapshots(b.path()) >= 2,
        "COPY and both RUNs imported"
    );
    let out = crate::rbuild_at(b.path(), &["builder", "prune", "-a", "-f"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(imported_snapshots(b.path()), 0);
}

#[test]
fn several_sources_are_merged_and_an_unreadable_one_is_a_warning() {
    let Some(a) = Root::new() else { return };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ctx_one, ctx_two) = (context(DOCKERFILE), context(MULTISTAGE));
    let to = |d: &Path| format!("type=local,dest={},mode=max", d.display());
    build(&a, ctx_one.path(), &["--cache-to", &to(one.path())]);
    build(&a, ctx_two.path(), &["--cache-to", &to(two.path())]);
    drop(a);

    let b = Root::new().unwrap();
    let from = |d: &Path| format!("type=local,src={}", d.display());
    let sources = [
        "--cache-from",
        "type=local,src=/nonexistent/rbuild-cache",
        "--cache-from",
        &from(one.path()),
        "--cache-from",
        &from(two.path()),
    ];
    for ctx in [&ctx_one, &ctx_two] {
        let (log, _) = build(&b, ctx.path(), &sources);
        assert!(runs(&log).is_empty(), "{log}");
        assert!(
            log.contains("warning: cache import from local /nonexistent/rbuild-cache skipped"),
            "{log}"
        );
    }
}

/// Writes `bytes` as a blob of the layout; returns its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

#[test]
fn a_layer_whose_content_is_not_its_diff_id_is_skipped() {
    let Some(a) = Root::new() else { return };
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(DOCKERFILE);
    let dest = format!("type=local,dest={}", cache.path().display());
    build(&a, ctx.path(), &["--cache-to", &dest, "-t", "app:1"]);
    drop(a);

    // The last RUN's layer keeps its (valid) blob but claims another diff_id: the config,
    // manifest and index are rewritten consistently around the lie.
    let dir = cache.path();
    let mut cfg = cache_config(dir);
    let record = cfg["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"].as_str().unwrap_or("").contains("echo second"))
        .unwrap()
        .clone();
    let snapshot = cfg["snapshots"][record["snapshot"].as_u64().unwrap() as usize].clone();
    let layer = snapshot["layer"].as_u64().unwrap() as usize;
    cfg["layers"][layer]["diffID"] = format!("sha256:{}", "ab".repeat(32)).into();
    let config = serde_json::to_vec(&cfg).unwrap();
    let config_digest = put_blob(dir, &config);
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("blobs/sha256")
                .join(old.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = put_blob(dir, &manifest).into();
    index["manifests"][0]["size"] = manifest.len().into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let b = Root::new().unwrap();
    let from = format!("type=local,src={}", dir.display());
    let (log, _) = build(&b, ctx.path(), &["--cache-from", &from, "-t", "app:1"]);
    let ran = runs(&log);
    assert_eq!(ran.len(), 1, "{log}");
    assert!(ran[0].contains("echo second"), "{log}");
    assert!(log.contains("not its diff_id"), "{log}");
    assert_eq!(b.image("app:1").file("second").as_deref(), Some("second\n"));
}

#[test]
fn a_failed_cache_export_fails_the_build_unless_ignore_error() {
    let Some(root) = Root::new() else { return };
    let ctx = context(DOCKERFILE);
    // Nothing listens on port 1 of loopback.
    let to = "type=registry,ref=127.0.0.1:1/app:cache";
    let out = root.build(&["--cache-to", to, ctx.path().to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("exporting cache to 127.0.0.1:1/app:cache"),
        "{log}"
    );

    let ignored = format!("{to},ignore-error=true");
    let (log, _) = build(&root, ctx.path(), &["--cache-to", &ignored]);
    assert!(log.contains("(ignored: ignore-error=true)"), "{log}");
}

#[test]
fn a_reused_cache_directory_drops_blobs_no_entry_needs() {
    let Some(root) = Root::new() else { return };
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(DOCKERFILE);
    let dest = format!("type=local,dest={}", cache.path().display());
    build(&root, ctx.path(), &["--cache-to", &dest]);
    let first: Vec<String> = cache_config(cache.path())["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    std::fs::write(ctx.path().join("src/a.txt"), "changed\n").unwrap();
    build(&root, ctx.path(), &["--cache-to", &dest]);
    let cfg = cache_config(cache.path());
    let second: Vec<&str> = cfg["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let blob = |d: &str| {
        cache
            .path()
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let gone: Vec<&String> = first
        .iter()
        .filter(|d| !second.contains(&d.as_str()))
        .collect();
    assert!(!gone.is_empty(), "the COPY and RUN layers changed");
    for d in gone {
        assert!(!blob(d).exists(), "{d} is no longer needed");
    }
    for d in second {
        assert!(blob(d).exists(), "{d} is needed");
    }
}
