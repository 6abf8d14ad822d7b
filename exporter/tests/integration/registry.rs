//! Pull and push against a real `docker-registry`, seeded by skopeo from the
//! offline fixtures; faults injected by the harness's proxy.

use std::time::Duration;

use rbuild_exporter::image::Platform;
use rbuild_exporter::images::Images;
use rbuild_exporter::pull::{PullReport, pull};
use rbuild_exporter::push::push;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::registry::{DockerConfig, NoProgress, RegistryOptions};
use rbuild_exporter::{Digest, Error, Store};

use crate::fixtures::{self, FixtureImage};
use crate::registry_harness::{
    Fault, Proxy, Registry, docker_config_with, have, skopeo_inspect, skopeo_push,
};

fn opts() -> RegistryOptions {
    RegistryOptions {
        backoff: Duration::from_millis(10),
        // An empty config: tests never read the user's ~/.docker.
        docker_config: Some(
            DockerConfig::load_from(std::path::Path::new("/nonexistent/config.json")).unwrap(),
        ),
        ..Default::default()
    }
}

fn r(s: &str) -> Reference {
    Reference::parse_docker(s).unwrap()
}

fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

struct Env {
    _root: tempfile::TempDir,
    store: Store,
}

fn store() -> Env {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    Env { _root: root, store }
}

async fn pull_ok(
    store: &Store,
    reference: &str,
    platform: &Platform,
    o: &RegistryOptions,
) -> PullReport {
    match pull(store, &r(reference), Some(platform), o, &NoProgress).await {
        Ok(rep) => rep,
        Err(e) => panic!("pull {reference}: {e}"),
    }
}

/// A registry seeded with `name` from a fixture layout; `None` when a tool is missing.
fn seeded(
    make: impl FnOnce(&std::path::Path) -> Option<FixtureImage>,
    name: &str,
) -> Option<(Registry, FixtureImage, tempfile::TempDir)> {
    let reg = Registry::start()?;
    let layout = tempfile::tempdir().unwrap();
    let Some(img) = make(layout.path()) else {
        println!("skipped: busybox-static not installed");
        return None;
    };
    if !skopeo_push(layout.path(), &reg, name) {
        return None;
    }
    Some((reg, img, layout))
}

fn assert_store_has(store: &Store, img: &FixtureImage) {
    assert_eq!(
        store.read_blob(&img.manifest_digest).unwrap(),
        img.manifest_bytes
    );
    assert!(store.has_blob(&img.config_digest));
    for (d, size) in &img.layers {
        assert_eq!(store.blob_size(d).unwrap(), *size);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_busybox_then_up_to_date() {
    let Some((reg, img, _l)) = seeded(fixtures::busybox, "fix/busybox:1") else {
        return;
    };
    let env = store();
    let reference = format!("{}/fix/busybox:1", reg.host);
    let rep = pull_ok(&env.store, &reference, &amd64(), &opts()).await;
    assert_eq!(rep.manifest, img.manifest_digest);
    assert_eq!(rep.digest, img.manifest_digest);
    assert_eq!(rep.downloaded, 2);
    assert!(!rep.up_to_date);
    assert_store_has(&env.store, &img);
    let rec = Images::open(&env.store).resolve(&reference).unwrap();
    assert_eq!(rec.target, img.manifest_digest);
    assert_eq!(rec.config, img.config_digest);

    let again = pull_ok(&env.store, &reference, &amd64(), &opts()).await;
    assert_eq!(again.downloaded, 0);
    assert!(again.up_to_date);

    // Unknown tag and unknown repository: the registry's error code, named.
    let err = pull(
        &env.store,
        &r(&format!("{}/fix/busybox:nope", reg.host)),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!(
            "pull {}/fix/busybox:nope: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown",
            reg.host
        )
    );
    let err = pull(
        &env.store,
        &r(&format!("{}/no/such:1", reg.host)),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("pull {}/no/such:1: 404 Not Found: ", reg.host)),
        "{err}"
    );
    assert!(err.contains("_UNKNOWN"), "{err}");

    // A single-platform image must match an explicit --platform.
    let err = pull(
        &env.store,
        &r(&reference),
        Some(&"linux/arm64".parse().unwrap()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("linux/arm64") && err.contains("available: linux/amd64"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_selects_platform_from_index() {
    let reg_and =
        |dir: &std::path::Path| fixtures::two_platform(dir).map(|(_, _, imgs)| imgs[0].clone());
    let Some((reg, _amd, layout)) = seeded(reg_and, "fix/multi:1") else {
        return;
    };
    let (idx_digest, idx_bytes, imgs) = fixtures::two_platform(layout.path()).unwrap();
    let env = store();
    let reference = format!("{}/fix/multi:1", reg.host);

    let arm = pull_ok(
        &env.store,
        &reference,
        &"linux/arm64".parse().unwrap(),
        &opts(),
    )
    .await;
    assert_eq!(arm.digest, idx_digest);
    assert_eq!(arm.manifest, imgs[1].manifest_digest);
    assert_eq!(env.store.read_blob(&idx_digest).unwrap(), idx_bytes);
    assert_store_has(&env.store, &imgs[1]);
    assert_eq!(
        Images::open(&env.store)
            .resolve(&reference)
            .unwrap()
            .platform,
        "linux/arm64/v8"
    );

    let amd = pull_ok(&env.store, &reference, &amd64(), &opts()).await;
    assert_eq!(amd.manifest, imgs[0].manifest_digest);
    // The layer is shared: only the config was new.
    assert_eq!(amd.downloaded, 1);

    let err = pull(
        &env.store,
        &r(&reference),
        Some(&"linux/s390x".parse().unwrap()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Context { .. } | Error::NoMatchingPlatform { .. }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("linux/s390x"), "{msg}");
    assert!(msg.contains("linux/amd64, linux/arm64/v8"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_push_keeps_digests_and_skopeo_reads_it() {
    let Some((reg, img, _l)) = seeded(|d| Some(fixtures::multilayer(d)), "fix/ml:1") else {
        return;
    };
    let env = store();
    let src = format!("{}/fix/ml:1", reg.host);
    pull_ok(&env.store, &src, &amd64(), &opts()).await;
    let rec = Images::open(&env.store).resolve(&src).unwrap();
    assert_eq!(rec.media_type, fixtures::DOCKER_MANIFEST);

    let dest = r(&format!("{}/copy/ml:2", reg.host));
    let rep = push(&env.store, &rec, &dest, &opts(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(rep.digest, img.manifest_digest);
    // Same registry: layers and config are mounted from fix/ml, not uploaded.
    assert_eq!((rep.pushed, rep.mounted, rep.existed), (0, 4, 0));
    let raw = skopeo_inspect(&reg, "copy/ml:2", true);
    assert_eq!(raw, img.manifest_bytes, "manifest bytes changed on the way");
    let info: serde_json::Value =
        serde_json::from_slice(&skopeo_inspect(&reg, "copy/ml:2", false)).unwrap();
    assert_eq!(info["Digest"], img.manifest_digest.to_string());
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);

    // Re-push: HEAD finds everything, nothing is uploaded.
    let again = push(&env.store, &rec, &dest, &opts(), &NoProgress)
        .await
        .unwrap();
    assert_eq!((again.pushed, again.mounted, again.existed), (0, 0, 4));
}

#[tokio::test(flavor = "multi_thread")]
async fn push_uploads_chunked_head_skips_and_mounts() {
    let Some((reg, img, _l)) = seeded(fixtures::busybox, "fix/bb:1") else {
        return;
    };
    let proxy = Proxy::start(&reg.host, Fault::None);
    let env = store();
    let o = RegistryOptions {
        chunk_size: 256 * 1024,
        ..opts()
    };
    // Pull through the proxy so the sources name the proxy's host.
    pull_ok(
        &env.store,
        &format!("{}/fix/bb:1", proxy.host),
        &amd64(),
        &o,
    )
    .await;
    let rec = Images::open(&env.store)
        .resolve(&format!("{}/fix/bb:1", proxy.host))
        .unwrap();

    // A fresh registry: real uploads, the big layer in 256 KiB PATCHes.
    let reg2 = Registry::start().unwrap();
    let proxy2 = Proxy::start(&reg2.host, Fault::None);
    let dest = r(&format!("{}/up/bb:1", proxy2.host));
    let rep = push(&env.store, &rec, &dest, &o, &NoProgress)
        .await
        .unwrap();
    assert_eq!((rep.pushed, rep.mounted, rep.existed), (2, 0, 0));
    let layer_size = img.layers[0].1;
    let patches = proxy2.count("PATCH", "/v2/up/bb/blobs/uploads/");
    assert_eq!(
        patches as u64,
        layer_size.div_ceil(256 * 1024),
        "{:#?}",
        proxy2.requests()
    );
    assert_eq!(skopeo_inspect(&reg2, "up/bb:1", true), img.manifest_bytes);

    // Re-push: only HEADs and the manifest PUT.
    let before = proxy2.requests().len();
    let rep = push(&env.store, &rec, &dest, &o, &NoProgress)
        .await
        .unwrap();
    assert_eq!(rep.existed, 2);
    let after: Vec<String> = proxy2.requests()[before..].to_vec();
    assert!(
        after
            .iter()
            .all(|l| l.starts_with("HEAD ") || l.starts_with("PUT /v2/up/bb/manifests/1")),
        "{after:#?}"
    );

    // Another repository of the first registry: mounted from fix/bb.
    let dest = r(&format!("{}/other/bb:7", proxy.host));
    let rep = push(&env.store, &rec, &dest, &o, &NoProgress)
        .await
        .unwrap();
    assert_eq!((rep.pushed, rep.mounted), (0, 2));
    assert_eq!(proxy.count("POST", "mount="), 2, "{:#?}", proxy.requests());
    assert_eq!(proxy.count("PATCH", "/v2/other/"), 0);
    assert_eq!(skopeo_inspect(&reg, "other/bb:7", true), img.manifest_bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_with_docker_config() {
    let Some(reg) = Registry::start_basic("tester", "s3cret") else {
        return;
    };
    let layout = tempfile::tempdir().unwrap();
    let img = fixtures::multilayer(layout.path());
    if !skopeo_push(layout.path(), &reg, "auth/ml:1") {
        return;
    }
    let env = store();
    let reference = format!("{}/auth/ml:1", reg.host);

    // No credentials: refused, clearly.
    let err = pull(
        &env.store,
        &r(&reference),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("pull {reference}: 401 Unauthorized")),
        "{err}"
    );
    assert!(err.contains("UNAUTHORIZED"), "{err}");

    // Wrong password from a DOCKER_CONFIG dir: refused too.
    let (_d, bad) = docker_config_with(&reg.host, "tester", "wrong");
    let o = RegistryOptions {
        docker_config: Some(DockerConfig::load_from(&bad).unwrap()),
        ..opts()
    };
    let err = pull(&env.store, &r(&reference), Some(&amd64()), &o, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401 Unauthorized: UNAUTHORIZED"),
        "{err}"
    );
    assert!(env.store.list_blobs().unwrap().is_empty());

    // Right password: pull, then push to another repo (Basic for writes too).
    let (_d, good) = docker_config_with(&format!("http://{}/v1/", reg.host), "tester", "s3cret");
    let o = RegistryOptions {
        docker_config: Some(DockerConfig::load_from(&good).unwrap()),
        ..opts()
    };
    let rep = pull_ok(&env.store, &reference, &amd64(), &o).await;
    assert_eq!(rep.manifest, img.manifest_digest);
    let rec = Images::open(&env.store).resolve(&reference).unwrap();
    let dest = r(&format!("{}/auth/copy:1", reg.host));
    push(&env.store, &rec, &dest, &o, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        skopeo_inspect(&reg, "auth/copy:1", true),
        img.manifest_bytes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_flow() {
    let Some((reg, img, _l)) = seeded(|d| Some(fixtures::multilayer(d)), "tok/ml:1") else {
        return;
    };
    let proxy = Proxy::start(
        &reg.host,
        Fault::Bearer {
            user: "bob".into(),
            password: "pw".into(),
        },
    );
    let env = store();
    let reference = format!("{}/tok/ml:1", proxy.host);
    let err = pull(
        &env.store,
        &r(&reference),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("401 Unauthorized: UNAUTHORIZED: bad credentials"),
        "{err}"
    );

    let (_d, cfg) = docker_config_with(&proxy.host, "bob", "pw");
    let o = RegistryOptions {
        docker_config: Some(DockerConfig::load_from(&cfg).unwrap()),
        ..opts()
    };
    let rep = pull_ok(&env.store, &reference, &amd64(), &o).await;
    assert_eq!(rep.manifest, img.manifest_digest);
    let tokens: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("GET /token") && l.ends_with("-> 200"))
        .collect();
    // One token for the pull scope, cached for every blob (the refused
    // anonymous try above is the one 401).
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert!(
        tokens[0].contains("scope=repository%3Atok%2Fml%3Apull"),
        "{tokens:#?}"
    );
    assert!(tokens[0].contains("service=rbuild-test"), "{tokens:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_after_server_errors() {
    let Some((reg, img, _l)) = seeded(|d| Some(fixtures::multilayer(d)), "retry/ml:1") else {
        return;
    };
    let proxy = Proxy::start(
        &reg.host,
        Fault::FailFirst {
            path: "/v2/retry/ml/".into(),
            status: 500,
            times: 2,
        },
    );
    let env = store();
    let rep = pull_ok(
        &env.store,
        &format!("{}/retry/ml:1", proxy.host),
        &amd64(),
        &opts(),
    )
    .await;
    assert_eq!(rep.manifest, img.manifest_digest);
    assert_eq!(proxy.count("GET", "-> 500"), 2, "{:#?}", proxy.requests());

    // More failures than tries: the last status and body come through.
    let proxy = Proxy::start(
        &reg.host,
        Fault::FailFirst {
            path: "/manifests/".into(),
            status: 503,
            times: 100,
        },
    );
    let env = store();
    let err = pull(
        &env.store,
        &r(&format!("{}/retry/ml:1", proxy.host)),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("503 Service Unavailable: UNKNOWN: injected failure"),
        "{err}"
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 4);
}

async fn broken_blob(fault: impl FnOnce(String) -> Fault, expect: &str) {
    let Some((reg, img, _l)) = seeded(|d| Some(fixtures::multilayer(d)), "bad/ml:1") else {
        return;
    };
    let big = img.layers[2].0.clone();
    let proxy = Proxy::start(&reg.host, fault(big.to_string()));
    let env = store();
    let reference = format!("{}/bad/ml:1", proxy.host);
    let err = pull(
        &env.store,
        &r(&reference),
        Some(&amd64()),
        &opts(),
        &NoProgress,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("pull {reference}: blob {big}: ")),
        "{err}"
    );
    assert!(err.contains(expect), "{err}");
    assert!(!env.store.has_blob(&big));
    assert!(Images::open(&env.store).list().unwrap().is_empty());
    let ingest = env.store.root().join("content-v1/ingest");
    assert_eq!(std::fs::read_dir(ingest).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_blob_is_refused() {
    broken_blob(|path| Fault::Truncate { path }, "broke off").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digest_blob_is_refused() {
    broken_blob(|path| Fault::Corrupt { path }, "does not match its digest").await;
}

#[test]
fn tools_present_or_skipped() {
    // Documents which real peers this machine has (the tests above skip without them).
    for t in ["docker-registry", "skopeo", "htpasswd"] {
        println!("{t}: {}", if have(t) { "found" } else { "missing" });
    }
    let _ = Digest::sha256(b"");
}
