//! `rbuild build` end to end, as root, on the offline busybox base image
//! (`scripts/busybox-image`): the cases under `testdata/build/<case>/` are built and their
//! layers and config compared with `expected-tree.txt` / `expected-config.json`
//! (`RBUILD_BLESS=1` rewrites them), then the cache's behaviour across builds.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::workspace;

mod cache;
mod cache_io;
mod differential;
mod inputs;
mod platform;

/// Skips (returns None) unless root with busybox-static; else the base image archive.
pub fn base_archive() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
        if !root {
            println!("skipped: rbuild build needs root");
            return None;
        }
        if !Path::new("/bin/busybox").exists() {
            println!("skipped: busybox-static not installed");
            return None;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("build-base-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("store");
        let out = Command::new(workspace().join("scripts/busybox-image"))
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .env("RBUILD_ROOT", &store)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-busybox.tar");
        let tmp = dir.join("busybox.tar");
        let out = crate::rbuild_at(
            &store,
            &["save", "-o", tmp.to_str().unwrap(), "busybox:latest"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &tar).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Some(tar)
    })
    .as_deref()
}

/// Skips (returns None, printing why) unless arm64 binaries can run here through
/// qemu-user-static; else an archive of `busybox-arm64:latest` ([`foreign_archive`]).
pub fn arm64_archive() -> Option<&'static Path> {
    static ARM64: OnceLock<Option<PathBuf>> = OnceLock::new();
    ARM64
        .get_or_init(|| foreign_archive("arm64", "aarch64", "linux/arm64"))
        .as_deref()
}

/// As [`arm64_archive`] for 32-bit ARM: `busybox-armhf:latest`, platform linux/arm/v7.
pub fn armhf_archive() -> Option<&'static Path> {
    static ARMHF: OnceLock<Option<PathBuf>> = OnceLock::new();
    ARMHF
        .get_or_init(|| foreign_archive("armhf", "arm", "linux/arm/v7"))
        .as_deref()
}

/// Skips (None, printing why) unless binaries of Debian architecture `deb_arch` run here
/// through qemu-user-static's `qemu-<qemu_arch>`; else an archive of
/// `busybox-<deb_arch>:latest` for `platform`, made like the amd64 base from Debian's
/// busybox-static:<deb_arch> (fetched once into the target directory by
/// `scripts/foreign-busybox`, from the Debian mirror apt is configured with).
///
/// Machine-global state: when qemu-user-static is installed but the binfmt_misc handler is
/// not registered (no systemd), this registers it with `scripts/qemu-binfmt` (idempotent;
/// `scripts/test` does it for aarch64 up front).
fn foreign_archive(deb_arch: &str, qemu_arch: &str, platform: &str) -> Option<PathBuf> {
    base_archive()?;
    if !cfg!(target_arch = "x86_64") {
        println!("skipped: the {deb_arch} tests emulate {deb_arch} on an x86_64 host");
        return None;
    }
    if !Path::new(&format!("/usr/bin/qemu-{qemu_arch}-static")).exists() {
        println!("skipped: qemu-user-static not installed (apt-get install qemu-user-static)");
        return None;
    }
    if !Path::new("/proc/sys/fs/binfmt_misc")
        .join(format!("qemu-{qemu_arch}"))
        .exists()
    {
        let out = Command::new(workspace().join("scripts/qemu-binfmt"))
            .arg(qemu_arch)
            .output()
            .unwrap();
        if !out.status.success() {
            println!(
                "skipped: cannot register the qemu-{qemu_arch} binfmt_misc handler: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
    }
    let handler = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu_arch}"));
    let text = std::fs::read_to_string(&handler).unwrap_or_default();
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or("");
    if text.lines().next() != Some("enabled") || !flags.contains('F') {
        println!(
            "skipped: the qemu-{qemu_arch} handler here is disabled or lacks the F flag (rbuild needs it): {}",
            text.replace('\n', "; ")
        );
        return None;
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian");
    let out = Command::new(workspace().join("scripts/foreign-busybox"))
        .arg(deb_arch)
        .arg(&cache)
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "skipped: Debian's busybox-static:{deb_arch} is not available: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let busybox = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("build-{deb_arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store");
    let name = format!("busybox-{deb_arch}:latest");
    let out = Command::new(workspace().join("scripts/busybox-image"))
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg(&name)
        .env("RBUILD_ROOT", &store)
        .env("BUSYBOX", &busybox)
        .env("PLATFORM", platform)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("build-busybox-{deb_arch}.tar"));
    let tmp = dir.join("busybox.tar");
    let out = crate::rbuild_at(&store, &["save", "-o", tmp.to_str().unwrap(), &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &tar).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(tar)
}

/// A fresh rbuild root with the busybox base loaded, removed on drop.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Option<Root> {
        let base = base_archive()?;
        let dir = tempfile::Builder::new()
            .prefix("rbuild-build-test-")
            .tempdir()
            .unwrap();
        let out = crate::rbuild_at(dir.path(), &["load", "-q", "-i", base.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Root { dir })
    }

    /// A fresh root with `busybox:latest` (this machine's) and `busybox-arm64:latest`
    /// loaded; None (skipped) unless arm64 binaries can run here ([`arm64_archive`]).
    pub fn with_arm64() -> Option<Root> {
        Root::with_foreign(arm64_archive()?)
    }

    /// As [`Root::with_arm64`] with `busybox-armhf:latest` (linux/arm/v7).
    pub fn with_armhf() -> Option<Root> {
        Root::with_foreign(armhf_archive()?)
    }

    fn with_foreign(archive: &Path) -> Option<Root> {
        let root = Root::new()?;
        let out = crate::rbuild_at(
            root.path(),
            &["load", "-q", "-i", archive.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(root)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rbuild ARGS` in this root.
    pub fn rbuild(&self, args: &[&str]) -> Output {
        crate::rbuild_at(self.path(), args)
    }

    /// `rbuild build --progress=plain ARGS` in this root.
    pub fn build(&self, args: &[&str]) -> Output {
        self.build_env(args, &[])
    }

    pub fn build_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.arg("build").arg("--progress=plain").args(args);
        cmd.env("RBUILD_ROOT", self.path())
            .env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Builds and asserts success; returns stderr.
    pub fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build {args:?} failed:\n{err}");
        err
    }

    /// The image `reference` as an OCI layout: (config, layers' entries).
    pub fn image(&self, reference: &str) -> SavedImage {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let out = crate::rbuild_at(
            self.path(),
            &[
                "save",
                "--format",
                "oci-dir",
                "-o",
                layout.to_str().unwrap(),
                reference,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        SavedImage::read(&layout)
    }

    /// The image ID of `reference`.
    pub fn image_id(&self, reference: &str) -> String {
        let out = crate::rbuild_at(self.path(), &["images", "-q", "--no-trunc", reference]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// One tar entry of a layer, rendered for golden files.
pub struct Entry {
    pub path: String,
    pub line: String,
    pub content: Vec<u8>,
}

pub struct SavedImage {
    pub config: Value,
    pub layers: Vec<Vec<Entry>>,
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

impl SavedImage {
    fn read(layout: &Path) -> SavedImage {
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest: Value = serde_json::from_slice(&blob(
            layout,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        let config: Value = serde_json::from_slice(&blob(
            layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        let mut layers = Vec::new();
        for l in manifest["layers"].as_array().unwrap() {
            let bytes = blob(layout, l["digest"].as_str().unwrap());
            let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(&bytes[..]))
            } else {
                Box::new(&bytes[..])
            };
            let mut archive = tar::Archive::new(reader);
            let mut entries = Vec::new();
            for e in archive.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let h = e.header();
                let mode = h.mode().unwrap() & 0o7777;
                let (uid, gid) = (h.uid().unwrap(), h.gid().unwrap());
                let kind = h.entry_type();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                let line = match (kind, link) {
                    (tar::EntryType::Symlink, Some(l)) => {
                        format!("l {mode:04o} {uid}:{gid} {path} -> {l}")
                    }
                    (tar::EntryType::Link, Some(l)) => {
                        format!("h {mode:04o} {uid}:{gid} {path} => {l}")
                    }
                    (tar::EntryType::Directory, _) => format!("d {mode:04o} {uid}:{gid} {path}"),
                    _ => {
                        let shown = match std::str::from_utf8(&content) {
                            Ok(s) if s.len() <= 80 => format!("{s:?}"),
                            _ => format!(
                                "sha256:{}",
                                &hex::encode(sha2::Sha256::digest(&content))[..16]
                            ),
                        };
                        format!("f {mode:04o} {uid}:{gid} {path} {} {shown}", content.len())
                    }
                };
                entries.push(Entry {
                    path,
                    line,
                    content,
                });
            }
            layers.push(entries);
        }
        SavedImage { config, layers }
    }

    /// The layers after the busybox base, one block per layer.
    pub fn tree(&self) -> String {
        let mut out = String::new();
        for (i, layer) in self.layers.iter().enumerate().skip(1) {
            out.push_str(&format!("# layer {i}\n"));
            for e in layer {
                out.push_str(&e.line);
                out.push('\n');
            }
        }
        out
    }

    /// A file's content, from the topmost layer that has it.
    pub fn file(&self, path: &str) -> Option<String> {
        let path = path.trim_start_matches('/');
        self.layers.iter().rev().find_map(|l| {
            l.iter()
                .find(|e| e.path == path)
                .map(|e| String::from_utf8_lossy(&e.content).into_owned())
        })
    }

    /// The config without times and digests: platform, `config`, history after the base.
    pub fn config_summary(&self) -> Value {
        let history: Vec<Value> = self.config["history"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|h| {
                json!({
                    "created_by": h["created_by"],
                    "empty_layer": h.get("empty_layer").cloned().unwrap_or(json!(false)),
                })
            })
            .collect();
        json!({
            "architecture": self.config["architecture"],
            "os": self.config["os"],
            "config": self.config["config"],
            "layers": self.layers.len(),
            "diff_ids": self.config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            "history": history,
        })
    }
}

/// Compares with a golden file (`RBUILD_BLESS=1` rewrites it).
pub fn golden(path: &Path, actual: &str) {
    if std::env::var_os("RBUILD_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing: run with RBUILD_BLESS=1", path.display()));
    assert_eq!(
        expected,
        actual,
        "{} differs (RBUILD_BLESS=1 rewrites it)",
        path.display()
    );
}

pub fn case_dir(case: &str) -> PathBuf {
    workspace().join("testdata/build").join(case)
}

/// A copy of a case's context in a temp dir (tests that edit files).
pub fn copy_case(case: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-build-ctx-")
        .tempdir()
        .unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", case_dir(case).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Builds `case` and checks its layers and config against the golden files.
fn check_case(case: &str) {
    let Some(root) = Root::new() else { return };
    let dir = case_dir(case);
    let tag = format!("case-{case}:1");
    let err = root.build_ok(&["-t", &tag, dir.to_str().unwrap()]);
    let image = root.image(&tag);
    golden(&dir.join("expected-tree.txt"), &image.tree());
    let config = serde_json::to_string_pretty(&image.config_summary()).unwrap() + "\n";
    golden(&dir.join("expected-config.json"), &config);
    if case == "multistage" {
        assert!(
            !err.contains("must never run"),
            "the unused stage ran:\n{err}"
        );
        assert!(
            !err.contains("[unused"),
            "the unused stage was lowered:\n{err}"
        );
    }
}

#[test]
fn case_basic() {
    check_case("basic");
}

#[test]
fn case_multistage() {
    check_case("multistage");
}

#[test]
fn case_heredoc() {
    check_case("heredoc");
}

#[test]
fn case_user() {
    check_case("user");
}

#[test]
fn case_dockerignore() {
    check_case("dockerignore");
}

#[test]
fn case_add_tar() {
    check_case("add-tar");
}

#[test]
fn case_cache_mount() {
    check_case("cache-mount");
}

#[test]
fn failing_run_reports_location_exit_code_and_output() {
    let Some(root) = Root::new() else { return };
    let out = root.build(&[case_dir("fail").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fail/Dockerfile:4:1"), "{err}");
    assert!(
        err.contains("did not complete successfully: exit code: 3"),
        "{err}"
    );
    assert!(
        err.contains("last lines of output:\nline one\nline two"),
        "{err}"
    );
    assert!(err.contains("4 | RUN echo \"line one\""), "{err}");
    assert!(!err.contains("never runs"), "{err}");
}

#[test]
fn dockerfile_errors_render_like_a_compiler() {
    let Some(root) = Root::new() else { return };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY --form=x a b\n",
    )
    .unwrap();
    let out = root.build(&[ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:2:6"), "{err}");
    assert!(err.contains("did you mean `--from`?"), "{err}");
}

/// An architecture whose qemu handler is not registered here, with that handler's name
/// (the arm64 tests register qemu-aarch64, so that one is not a candidate on x86_64).
fn unemulated_arch() -> Option<(&'static str, &'static str)> {
    let candidates = [
        ("s390x", "qemu-s390x"),
        ("ppc64le", "qemu-ppc64le"),
        ("riscv64", "qemu-riscv64"),
        ("mips64le", "qemu-mips64el"),
    ];
    let found = candidates
        .into_iter()
        .find(|(_, h)| !Path::new("/proc/sys/fs/binfmt_misc").join(h).exists());
    if found.is_none() {
        println!("skipped: every candidate architecture has a qemu handler registered here");
    }
    found
}

#[test]
fn other_platforms_fail_clearly() {
    let Some(root) = Root::new() else { return };
    let Some((arch, handler)) = unemulated_arch() else {
        return;
    };
    let out = root.build(&[
        "--platform",
        &format!("linux/{arch}"),
        case_dir("basic").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("building for linux/{arch} on this"))
            && err.contains(&format!("binfmt_misc handler {handler}")),
        "{err}"
    );
    assert!(
        err.contains("qemu-user-static") && err.contains("binfmt-support"),
        "names the packages: {err}"
    );
}

/// Regression: a stage `FROM --platform=` another architecture failed its RUN with "exec
/// format error" when no qemu handler was registered; now the build stops before running
/// anything, at that RUN line, naming the handler.
#[test]
fn run_in_a_stage_of_another_platform_needs_its_handler() {
    let Some(root) = Root::new() else { return };
    let Some((arch, handler)) = unemulated_arch() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("empty.tar");
    tar::Builder::new(std::fs::File::create(&tar).unwrap())
        .finish()
        .unwrap();
    let platform = format!("linux/{arch}");
    let out = crate::rbuild_at(
        root.path(),
        &[
            "import",
            "--platform",
            &platform,
            tar.to_str().unwrap(),
            "other:1",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM busybox\nRUN true\nFROM --platform={platform} other:1\nRUN true\n"),
    )
    .unwrap();
    let out = root.build(&[dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("RUN in a stage for {platform}"))
            && err.contains(&format!("binfmt_misc handler {handler}"))
            && err.contains("Dockerfile:4"),
        "{err}"
    );
    assert!(!err.contains("exec format error"), "{err}");

    // `rbuild run` of it (no --platform: the local image's own) fails the same way, up front.
    let out = crate::rbuild_at(root.path(), &["run", "--rm", "other:1", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("running other:1 for {platform} on this"))
            && err.contains(&format!("needs the binfmt_misc handler {handler}")),
        "{err}"
    );
}

/// Regression: a base image the local store has only for another platform was reported
/// as "not in the local image store either"; the error now names the platform it has.
#[test]
fn a_base_local_only_for_another_platform_is_named() {
    let Some(root) = Root::new() else { return };
    if !cfg!(target_arch = "x86_64") {
        println!("skipped: linux/386 is native only on x86_64");
        return;
    }
    // A registry nobody listens on: the pull fails at once, without the internet.
    let out = crate::rbuild_at(root.path(), &["tag", "busybox", "127.0.0.1:1/bb:1"]);
    assert!(out.status.success(), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM 127.0.0.1:1/bb:1\nRUN true\n",
    )
    .unwrap();
    let out = root.build(&["--platform", "linux/386", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the local image store has it for linux/amd64 only, not for linux/386"),
        "{err}"
    );
    assert!(
        !err.contains("not in the local image store either"),
        "{err}"
    );
}

/// A multi-platform build only pushes (the local store holds one platform per name):
/// anything else is refused before building. linux/386 runs natively on amd64, so this
/// needs no qemu.
#[test]
fn multi_platform_builds_refuse_what_they_cannot_write() {
    // Regression: the help said only this machine's platform was supported.
    let help = crate::rbuild(&["build", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("qemu-user-static") && help.contains("comma-separated"),
        "{help}"
    );
    let Some(root) = Root::new() else { return };
    if !cfg!(target_arch = "x86_64") {
        println!("skipped: linux/386 is native only on x86_64");
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let tar = format!("type=tar,dest={}", out_dir.path().join("x.tar").display());
    let basic = case_dir("basic");
    let cases: [(&[&str], &str); 4] = [
        (&["-t", "m:1"], "cannot be stored in the local image store"),
        (&["--push"], "--push needs a name"),
        (
            &["-t", "127.0.0.1:1/m:1", "--push", "-o", &tar],
            "--output type=tar is not supported for multi-platform builds yet",
        ),
        (
            &[
                "-t",
                "127.0.0.1:1/m:1",
                "--push",
                "--cache-to",
                "type=inline",
            ],
            "--cache-to is not supported for multi-platform builds yet",
        ),
    ];
    for (extra, message) in cases {
        let mut args = vec!["--platform", "linux/amd64,linux/386"];
        args.extend_from_slice(extra);
        args.push(basic.to_str().unwrap());
        let out = root.build(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(err.contains("--output type=oci,dest=FILE"), "a hint: {err}");
        assert!(!err.contains("RUN"), "nothing was built: {err}");
    }
}

#[test]
fn bare_form_outputs_and_files() {
    let Some(root) = Root::new() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let o = |n: &str| out_dir.path().join(n).to_string_lossy().into_owned();
    let ctx = case_dir("basic");
    // The bare form, with --iidfile and --metadata-file.
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args([
            "--root",
            root.path().to_str().unwrap(),
            "-t",
            "bare:1",
            "-t",
            "bare:2",
            "-q",
        ])
        .args(["--iidfile", &o("iid"), "--metadata-file", &o("meta.json")])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(std::fs::read_to_string(o("iid")).unwrap(), id);
    let meta: Value = serde_json::from_slice(&std::fs::read(o("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["containerimage.config.digest"], json!(id));
    assert_eq!(
        meta["image.name"],
        json!("docker.io/library/bare:1,docker.io/library/bare:2")
    );
    assert_eq!(root.image_id("bare:2"), id);
    // Local directory and tarball outputs.
    let local = o("rootfs");
    root.build_ok(&[
        "-o",
        &format!("type=local,dest={local}"),
        "-o",
        &format!("type=tar,dest={}", o("rootfs.tar")),
        ctx.to_str().unwrap(),
    ]);
    let ab = std::fs::read_to_string(Path::new(&local).join("app/out/ab.txt")).unwrap();
    assert_eq!(ab, "alpha\nbeta\n");
    assert!(Path::new(&local).join("bin/busybox").is_file());
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(o("rootfs.tar"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|l| l == "app/out/ab.txt"), "{listing}");
    // An OCI archive (zstd layers).
    root.build_ok(&[
        "-o",
        &format!("type=oci,dest={},compression=zstd", o("img.tar")),
        ctx.to_str().unwrap(),
    ]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(o("img.tar"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("index.json"));
}

/// A temporary build context holding only a `Dockerfile` with `text`.
pub fn dockerfile_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
    dir
}

/// Names of the steps that ran (not cached) in a plain progress log.
pub fn executed_steps(log: &str) -> Vec<String> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut ran = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, text)) = rest.split_once(' ') else {
            continue;
        };
        if text.starts_with("DONE ") {
            if let Some(name) = names.get(n) {
                if !name.starts_with("[internal] load build definition")
                    && !name.starts_with("[internal] load .dockerignore")
                    && !name.starts_with("[internal] load metadata")
                    && !name.starts_with("exporting")
                {
                    ran.push(name.clone());
                }
            }
        } else if !names.contains_key(n) {
            names.insert(n.to_string(), text.to_string());
        }
    }
    ran
}

/// Serves `body` over HTTP on localhost for every request until the listener is dropped.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn add_url_downloads_and_verifies_checksums() {
    let Some(root) = Root::new() else { return };
    const BODY: &[u8] = b"downloaded content\n";
    let port = serve(BODY);
    let sum = hex::encode(sha2::Sha256::digest(BODY));
    let ctx = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/dir/file.txt");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM busybox\nADD --checksum=sha256:{sum} {url} /dl/\nADD {url} /dl/named.txt\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd
        .env("RBUILD_ROOT", root.path())
        .args(["build", "--progress=plain", "-t", "dl:1"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = root.image("dl:1");
    assert_eq!(
        image.file("dl/file.txt").as_deref(),
        Some("downloaded content\n")
    );
    assert_eq!(
        image.file("dl/named.txt").as_deref(),
        Some("downloaded content\n")
    );
    let line = &image.layers[1]
        .iter()
        .find(|e| e.path == "dl/file.txt")
        .unwrap()
        .line;
    assert!(line.starts_with("f 0600 0:0 "), "{line}");

    // A wrong checksum fails the step.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM busybox\nADD --checksum=sha256:{} {url} /dl/\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(err.to_lowercase().contains("checksum"), "{err}");
}

#[test]
fn run_steps_get_the_builds_resource_limits() {
    let Some(root) = Root::new() else { return };
    let ctx = tempfile::tempdir().unwrap();
    // `sort` keeps the whole newline-free stream in memory: 64 MB against a 16 MB limit.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN head -c 64m /dev/zero | sort > /dev/null\n",
    )
    .unwrap();
    let dir = ctx.path().to_str().unwrap();
    let out = root.build(&["--memory", "16m", "--no-cache", dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("out of memory"), "{err}");

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait\n",
    )
    .unwrap();
    let out = root.build(&["--pids-limit", "4", "--no-cache", dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a pids limit of 4 stops the 8 children: {err}"
    );
    assert!(root.build(&["--memory", "lots", dir]).status.code() != Some(0));
}

#[test]
fn add_host_is_in_the_step_and_its_cache_key() {
    let Some(root) = Root::new() else { return };
    let ctx = dockerfile_dir("FROM busybox\nRUN grep -w db /etc/hosts > /db\n");
    let dir = ctx.path().to_str().unwrap();
    let db = |ip: &str, tag: &str| {
        let log = root.build_ok(&["--add-host", &format!("db:{ip}"), "-t", tag, dir]);
        let img = root.image(tag);
        (executed_steps(&log), img.file("db"))
    };
    let (ran, file) = db("10.0.0.2", "h:1");
    assert!(ran.iter().any(|s| s.contains("RUN grep")), "{ran:?}");
    assert_eq!(file.as_deref(), Some("10.0.0.2\tdb\n"));
    // Another address is another step, not the first one's cached result.
    let (ran, file) = db("10.0.0.3", "h:2");
    assert!(ran.iter().any(|s| s.contains("RUN grep")), "{ran:?}");
    assert_eq!(file.as_deref(), Some("10.0.0.3\tdb\n"));
    // The same address again hits.
    let (ran, _) = db("10.0.0.2", "h:3");
    assert!(!ran.iter().any(|s| s.contains("RUN grep")), "{ran:?}");
}
