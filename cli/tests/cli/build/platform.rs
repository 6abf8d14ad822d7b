//! `--platform` for other architectures, end to end on an x86_64 host: arm64 and arm/v7 RUN
//! steps through qemu-user-static's binfmt_misc handlers (F flag), the image's platform
//! (and variant) in its config, `inspect`/`images`, `run --platform`, a push read back by
//! skopeo, the automatic platform build args, RUN cache entries kept apart per platform,
//! and multi-platform builds (`--platform A,B`: an index pushed, or an OCI archive). The
//! foreign bases are Debian's busybox-static:arm64/armhf ([`super::arm64_archive`]); each
//! test skips, printing why, when qemu-user-static or those packages cannot be had.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::cache_io::Registry;
use super::{Root, executed_steps};

/// A cross build: a stage on the build platform (tools), then the arm64 image, whose RUN
/// steps run busybox applets under qemu.
const CROSS: &str = r#"FROM --platform=$BUILDPLATFORM busybox AS tools
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDARCH
RUN echo "$(uname -m) $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDARCH" > /tools

FROM busybox-arm64
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDARCH
COPY --from=tools /tools /tools
RUN uname -m > /arch
RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDARCH" > /args \
 && od -An -tx1 -j18 -N2 /bin/busybox > /elf-machine \
 && printf 'a\nb\nc\n' | wc -l > /lines
"#;

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-platform-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

#[test]
fn arm64_build_runs_its_steps_under_qemu() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    let ctx = context(CROSS);
    let log = root.build_ok(&[
        "--platform",
        "linux/arm64",
        "-t",
        "app:arm64",
        ctx.path().to_str().unwrap(),
    ]);
    let image = root.image("app:arm64");
    assert_eq!(image.file("/arch").as_deref(), Some("aarch64\n"), "{log}");
    // busybox's od read the ELF machine of the image's own busybox: 0xb7 is EM_AARCH64.
    assert_eq!(image.file("/elf-machine").as_deref(), Some(" b7 00\n"));
    assert_eq!(image.file("/lines").as_deref(), Some("3\n"));
    assert_eq!(
        image.file("/args").as_deref(),
        Some("linux/arm64 linux arm64 [] linux/amd64 amd64\n"),
        "the platform args of the target stage"
    );
    assert_eq!(
        image.file("/tools").as_deref(),
        Some("x86_64 linux/arm64 linux arm64 [] linux/amd64 amd64\n"),
        "the FROM --platform=$BUILDPLATFORM stage ran natively, with the target's args"
    );
    assert_eq!(image.config["architecture"], "arm64");
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config.get("variant"), None);

    let listed = stdout(&ok(root.rbuild(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])));
    assert!(listed.lines().any(|l| l == "app:arm64"), "{listed}");
    let inspect: Value =
        serde_json::from_slice(&ok(root.rbuild(&["inspect", "app:arm64"])).stdout).unwrap();
    assert_eq!(inspect[0]["Architecture"], "arm64", "{inspect}");
    assert_eq!(inspect[0]["Os"], "linux", "{inspect}");
}

#[test]
fn run_platform_picks_and_checks_the_image_platform() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    let out = ok(root.rbuild(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "busybox-arm64",
        "uname",
        "-m",
    ]));
    assert_eq!(stdout(&out), "aarch64\n");
    assert!(!stderr(&out).contains("WARNING"), "{}", stderr(&out));

    // Without --platform a local image of another platform runs, with Docker's warning.
    let out = ok(root.rbuild(&["run", "--rm", "busybox-arm64", "uname", "-m"]));
    assert_eq!(stdout(&out), "aarch64\n");
    assert!(
        stderr(&out).contains(
            "WARNING: The requested image's platform (linux/arm64) does not match the detected host platform (linux/amd64) and no specific platform was requested"
        ),
        "{}",
        stderr(&out)
    );

    // --platform that the local image is not: Docker's error (no pull with --pull never).
    let out = root.rbuild(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--platform",
        "linux/amd64",
        "busybox-arm64",
        "uname",
        "-m",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "image with reference busybox-arm64 was found but does not match the specified platform: wanted linux/amd64, actual: linux/arm64"
        ),
        "{}",
        stderr(&out)
    );

    // create + start take the flag too.
    let id = stdout(&ok(root.rbuild(&[
        "create",
        "--platform",
        "linux/arm64",
        "busybox-arm64",
        "uname",
        "-m",
    ])));
    let out = ok(root.rbuild(&["start", "-a", id.trim()]));
    assert_eq!(stdout(&out), "aarch64\n");
    ok(root.rbuild(&["rm", id.trim()]));

    // An architecture without a registered handler fails before anything runs.
    let unregistered = ["s390x", "ppc64le", "riscv64", "mips64le"]
        .into_iter()
        .find(|a| {
            let name = if *a == "mips64le" { "mips64el" } else { a };
            !Path::new("/proc/sys/fs/binfmt_misc")
                .join(format!("qemu-{name}"))
                .exists()
        });
    if let Some(arch) = unregistered {
        let out = root.rbuild(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "--platform",
            &format!("linux/{arch}"),
            "busybox-arm64",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        let name = if arch == "mips64le" { "mips64el" } else { arch };
        assert!(
            stderr(&out).contains(&format!(
                "running busybox-arm64 for linux/{arch} on this linux/amd64 machine needs the binfmt_misc handler qemu-{name}"
            )),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn pushed_arm64_image_reads_back_as_arm64() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    let Some(registry) = Registry::start() else {
        return;
    };
    if Command::new("skopeo").arg("--version").output().is_err() {
        println!("skipped: skopeo not installed");
        return;
    }
    let name = format!("{}/cross:1", registry.host);
    let ctx = context("FROM busybox-arm64\nRUN uname -m > /arch\n");
    root.build_ok(&[
        "--platform",
        "linux/arm64",
        "-t",
        &name,
        ctx.path().to_str().unwrap(),
    ]);
    ok(root.rbuild(&["push", &name]));

    let skopeo = |args: &[&str]| -> Value {
        let out = ok(Command::new("skopeo")
            .args(args)
            .arg("--tls-verify=false")
            .arg(format!("docker://{name}"))
            .output()
            .unwrap());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let raw = skopeo(&["inspect", "--raw"]);
    assert!(raw["config"]["digest"].is_string(), "a manifest: {raw}");
    let config = skopeo(&["inspect", "--raw", "--config"]);
    assert_eq!(
        (&config["architecture"], &config["os"]),
        (&json!("arm64"), &json!("linux")),
        "{config}"
    );
    let summary = skopeo(&["inspect"]);
    assert_eq!(summary["Architecture"], "arm64", "{summary}");
    assert_eq!(summary["Os"], "linux", "{summary}");

    // Pulled into a fresh root for its platform, it runs there.
    let fresh = Root::new().unwrap();
    // Asked for another platform, the single-platform image is refused, naming its own
    // (rbuild pull's existing rule; newer Docker daemons pull it with a warning instead).
    let out = fresh.rbuild(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no image for platform linux/amd64")
            && stderr(&out).contains("available: linux/arm64"),
        "{}",
        stderr(&out)
    );
    // So is `run --platform` of it.
    let out = fresh.rbuild(&["run", "--rm", "--platform", "linux/amd64", &name, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("available: linux/arm64"),
        "{}",
        stderr(&out)
    );
    ok(fresh.rbuild(&["pull", "--platform", "linux/arm64", &name]));
    let out = ok(fresh.rbuild(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &name,
        "cat",
        "/arch",
    ]));
    assert_eq!(stdout(&out), "aarch64\n");
}

/// An OCI layout whose `latest` is an index of `busybox` (this machine's) and
/// `busybox-arm64`: one base reference for both platforms.
fn two_platform_layout(root: &Root, into: &Path) {
    let blobs = into.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut descriptors = Vec::new();
    for (image, arch) in [("busybox", "amd64"), ("busybox-arm64", "arm64")] {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        ok(root.rbuild(&[
            "save",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
            image,
        ]));
        for f in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), blobs.join(f.file_name())).unwrap();
        }
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let d = &index["manifests"][0];
        descriptors.push(json!({
            "mediaType": d["mediaType"],
            "digest": d["digest"],
            "size": d["size"],
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    }))
    .unwrap();
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(&index));
    std::fs::write(blobs.join(&hex), &index).unwrap();
    std::fs::write(into.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        into.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"),
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
}

#[test]
fn amd64_and_arm64_builds_keep_their_own_run_cache() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    let layout = tempfile::tempdir().unwrap();
    two_platform_layout(&root, layout.path());
    let ctx = context("FROM base\nRUN uname -m > /arch\n");
    let base = format!("base=oci-layout://{}", layout.path().display());
    let build = |platform: &str, tag: &str| -> Vec<String> {
        let log = root.build_ok(&[
            "--platform",
            platform,
            "--build-context",
            &base,
            "-t",
            tag,
            ctx.path().to_str().unwrap(),
        ]);
        executed_steps(&log)
            .into_iter()
            .filter(|s| s.contains("RUN"))
            .collect()
    };
    assert_eq!(build("linux/amd64", "a:1").len(), 1);
    assert_eq!(root.image("a:1").file("/arch").as_deref(), Some("x86_64\n"));
    let arm = build("linux/arm64", "b:1");
    assert_eq!(
        arm.len(),
        1,
        "the arm64 RUN ran, not the amd64 result reused"
    );
    assert_eq!(
        root.image("b:1").file("/arch").as_deref(),
        Some("aarch64\n")
    );
    assert_eq!(root.image("b:1").config["architecture"], "arm64");
    // Each platform's second build is a cache hit of its own result.
    assert_eq!(build("linux/arm64", "b:2"), Vec::<String>::new());
    assert_eq!(
        root.image("b:2").file("/arch").as_deref(),
        Some("aarch64\n")
    );
    assert_eq!(build("linux/amd64", "a:2"), Vec::<String>::new());
    assert_eq!(root.image("a:2").file("/arch").as_deref(), Some("x86_64\n"));
}

#[test]
fn multi_platform_build_pushes_an_index() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    let Some(registry) = Registry::start() else {
        return;
    };
    if Command::new("skopeo").arg("--version").output().is_err() {
        println!("skipped: skopeo not installed");
        return;
    }
    // One base name per architecture, picked by the automatic TARGETARCH.
    ok(root.rbuild(&["tag", "busybox", "busybox-amd64"]));
    // The build-platform stage is the same for both targets: it runs once.
    let ctx = context(
        "ARG TARGETARCH\n\
         FROM --platform=$BUILDPLATFORM busybox AS gen\n\
         RUN cat /proc/sys/kernel/random/uuid > /id\n\
         FROM busybox-$TARGETARCH\n\
         COPY --from=gen /id /id\n\
         ARG TARGETPLATFORM\n\
         RUN echo \"$(uname -m) $TARGETPLATFORM\" > /arch\n",
    );
    let name = format!("{}/multi:1", registry.host);
    let meta = tempfile::NamedTempFile::new().unwrap();
    let log = root.build_ok(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &name,
        "--push",
        "--metadata-file",
        meta.path().to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    assert!(log.contains("for linux/amd64, linux/arm64"), "{log}");
    // Step names carry the platform, as BuildKit's.
    let ran = executed_steps(&log);
    assert!(
        ran.iter()
            .any(|s| s.starts_with("[linux/arm64 stage-1 3/3] RUN echo")),
        "{ran:?}"
    );
    assert!(
        ran.iter()
            .any(|s| s.starts_with("[linux/amd64 stage-1 3/3] RUN echo")),
        "{ran:?}"
    );
    assert_eq!(
        ran.iter().filter(|s| s.contains("RUN cat")).count(),
        1,
        "{ran:?}"
    );
    assert!(
        log.contains("[linux/amd64->arm64 gen 2/2] RUN cat"),
        "{log}"
    );

    let inspect = |args: &[&str]| -> Value {
        let out = ok(Command::new("skopeo")
            .args(args)
            .arg("--tls-verify=false")
            .arg(format!("docker://{name}"))
            .output()
            .unwrap());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let index = inspect(&["inspect", "--raw"]);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let platforms: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["os"].as_str().unwrap().to_string(),
                m["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux".to_string(), "amd64".to_string()),
            ("linux".to_string(), "arm64".to_string())
        ]
    );
    let meta: Value = serde_json::from_slice(&std::fs::read(meta.path()).unwrap()).unwrap();
    let digest = inspect(&["inspect"])["Digest"].clone();
    assert_eq!(meta["containerimage.digest"], digest, "the index's digest");
    let arm = inspect(&["--override-arch", "arm64", "inspect"]);
    assert_eq!(arm["Architecture"], "arm64", "{arm}");

    // A fresh root pulls each platform from the index, and each runs as its own.
    let fresh = Root::new().unwrap();
    ok(fresh.rbuild(&["pull", "--platform", "linux/arm64", &name]));
    let run = |platform: &str| {
        stdout(&ok(fresh.rbuild(&[
            "run",
            "--rm",
            "--platform",
            platform,
            &name,
            "cat",
            "/arch",
            "/id",
        ])))
    };
    let arm = run("linux/arm64");
    assert!(arm.starts_with("aarch64 linux/arm64\n"), "{arm}");
    // The local image is arm64 now: asking for amd64 pulls that one from the index.
    let amd = run("linux/amd64");
    assert!(amd.starts_with("x86_64 linux/amd64\n"), "{amd}");
    assert_eq!(
        arm.lines().nth(1),
        amd.lines().nth(1),
        "one /id, from the shared stage"
    );
}

#[test]
fn arm_v7_build_carries_its_variant() {
    let Some(root) = Root::with_armhf() else {
        return;
    };
    let ctx = context(
        "FROM busybox-armhf\nARG TARGETPLATFORM\nARG TARGETARCH\nARG TARGETVARIANT\nRUN echo \"$(uname -m) $TARGETPLATFORM $TARGETARCH $TARGETVARIANT\" > /arch\n",
    );
    // `linux/arm` means v7, as BuildKit normalises it.
    root.build_ok(&[
        "--platform",
        "linux/arm",
        "-t",
        "app:armv7",
        ctx.path().to_str().unwrap(),
    ]);
    let image = root.image("app:armv7");
    assert_eq!(
        image.file("/arch").as_deref(),
        Some("armv7l linux/arm/v7 arm v7\n")
    );
    assert_eq!(
        (
            &image.config["os"],
            &image.config["architecture"],
            &image.config["variant"]
        ),
        (&json!("linux"), &json!("arm"), &json!("v7"))
    );
    let inspect: Value =
        serde_json::from_slice(&ok(root.rbuild(&["inspect", "app:armv7"])).stdout).unwrap();
    assert_eq!(inspect[0]["Variant"], "v7", "{inspect}");
    let out = ok(root.rbuild(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm/v7",
        "app:armv7",
        "uname",
        "-m",
    ]));
    assert_eq!(stdout(&out), "armv7l\n");
    // Another variant of the architecture is another platform.
    let out = root.rbuild(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--platform",
        "linux/arm/v6",
        "app:armv7",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wanted linux/arm/v6, actual: linux/arm/v7"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn multi_platform_build_writes_an_oci_archive_and_a_directory_per_platform() {
    let Some(root) = Root::with_arm64() else {
        return;
    };
    if Command::new("skopeo").arg("--version").output().is_err() {
        println!("skipped: skopeo not installed");
        return;
    }
    ok(root.rbuild(&["tag", "busybox", "busybox-amd64"]));
    let ctx = context("ARG TARGETARCH\nFROM busybox-$TARGETARCH\nRUN uname -m > /arch\n");
    let out_dir = tempfile::tempdir().unwrap();
    let archive = out_dir.path().join("multi.tar");
    let files = out_dir.path().join("files");
    root.build_ok(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "multi:1",
        "-o",
        &format!("type=oci,dest={}", archive.display()),
        "-o",
        &format!("type=local,dest={}", files.display()),
        ctx.path().to_str().unwrap(),
    ]);
    // type=local: one directory per platform, named as buildx names them.
    for (dir, arch) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
        let got = std::fs::read_to_string(files.join(dir).join("arch")).unwrap();
        assert_eq!(got, arch, "{dir}");
        assert!(files.join(dir).join("bin/busybox").is_file(), "{dir}");
    }
    // Nothing went into the local store.
    let listed = stdout(&ok(root.rbuild(&["images", "-q", "multi:1"])));
    assert_eq!(listed, "", "the local store holds one platform per name");

    let source = format!("oci-archive:{}", archive.display());
    let skopeo = |args: &[&str]| -> Value {
        let out = ok(Command::new("skopeo")
            .args(args)
            .arg(&source)
            .output()
            .unwrap());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let index = skopeo(&["inspect", "--raw"]);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    for arch in ["amd64", "arm64"] {
        let config = skopeo(&["--override-arch", arch, "inspect", "--config", "--raw"]);
        assert_eq!(config["architecture"], arch, "{config}");
    }

    // `rbuild load` picks a platform out of it, by default this machine's.
    let archive = archive.to_str().unwrap();
    for (platform, load, arch) in [
        (
            "linux/arm64",
            &["load", "--platform", "linux/arm64", "-i", archive][..],
            "aarch64\n",
        ),
        ("linux/amd64", &["load", "-i", archive][..], "x86_64\n"),
    ] {
        ok(root.rbuild(load));
        let out = ok(root.rbuild(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "multi:1",
            "cat",
            "/arch",
        ]));
        assert_eq!(stdout(&out), arch);
    }
}
