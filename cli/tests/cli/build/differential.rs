//! The same Dockerfiles built by `docker build` with BuildKit (`DOCKER_BUILDKIT=1`), where a
//! Docker daemon and buildx answer (not in CI): the final file trees and the key config
//! fields must agree. Our busybox base is loaded into Docker under a test-only name.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use super::{Root, SavedImage, case_dir};

const BASE: &str = "rbuild-difftest-busybox:latest";
/// Debian's Docker 20.10 client, whose `DOCKER_BUILDKIT=1` builds need no buildx plugin
/// (a newer client on PATH may insist on buildx).
const DOCKER: &str = "/usr/bin/docker";

/// Removes the test's images from Docker on drop.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER)
            .arg("rmi")
            .arg("-f")
            .args(&self.0)
            .output();
    }
}

/// The merged file tree of the layers after the base: path → entry line (whiteouts applied).
/// The image's whole final filesystem (base included): layers differ legitimately (BuildKit
/// keeps directories overlayfs copied up unchanged, such as `/etc` after a RUN; rbuild drops
/// them), the filesystem they make must not.
fn merged(image: &SavedImage) -> BTreeMap<String, String> {
    let mut tree = BTreeMap::new();
    for layer in &image.layers {
        for e in layer {
            let path = e.path.trim_end_matches('/');
            let path = path.strip_prefix("./").unwrap_or(path).to_string();
            if path.is_empty() || path == "." {
                continue;
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                tree.retain(|p: &String, _| !p.starts_with(&prefix));
            } else if let Some(gone) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    gone.to_string()
                } else {
                    format!("{dir}/{gone}")
                };
                let prefix = format!("{gone}/");
                tree.retain(|p: &String, _| *p != gone && !p.starts_with(&prefix));
            } else {
                let line = e.line.replacen(&e.path, &path, 1);
                tree.insert(path, line);
            }
        }
    }
    tree
}

fn key_config(image: &SavedImage) -> Value {
    let c = &image.config["config"];
    let history: Vec<Value> = image.config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .skip(1)
                .map(|e| {
                    Value::String(normalize_created_by(e["created_by"].as_str().unwrap_or("")))
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "Env": c["Env"], "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"],
        "WorkingDir": c["WorkingDir"], "User": c["User"], "Labels": c["Labels"],
        "ExposedPorts": c["ExposedPorts"], "history": history,
    })
}

/// History texts that differ between BuildKit versions, made comparable. Docker 20.10
/// embeds BuildKit 0.8: its EXPOSE history prints a Go map (`EXPOSE map[80/tcp:{}]`) where
/// current BuildKit, which rbuild follows, prints a list (`EXPOSE [80/tcp]`), and its
/// COPY/ADD history leaves out the `--chown`/`--chmod` flags that current BuildKit records.
fn normalize_created_by(created_by: &str) -> String {
    if created_by.starts_with("COPY ") || created_by.starts_with("ADD ") {
        return created_by
            .split(' ')
            .filter(|w| !w.starts_with("--chown=") && !w.starts_with("--chmod="))
            .collect::<Vec<_>>()
            .join(" ");
    }
    match created_by
        .strip_prefix("EXPOSE map[")
        .and_then(|r| r.strip_suffix(']'))
    {
        Some(ports) => {
            let ports: Vec<&str> = ports
                .split(' ')
                .map(|p| p.trim_end_matches(":{}"))
                .collect();
            format!("EXPOSE [{}]", ports.join(" "))
        }
        None => created_by.to_string(),
    }
}

#[test]
fn docker_buildkit_builds_the_same_images() {
    let Some(root) = Root::new() else { return };
    let docker_ok = Command::new(DOCKER)
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker_ok {
        println!("skipped: no Docker daemon");
        return;
    }
    let mut cleanup = DockerImages(vec![BASE.to_string()]);
    let tag = crate::rbuild_at(root.path(), &["tag", "busybox:latest", BASE]);
    assert!(tag.status.success());
    let load = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} save {BASE} | /usr/bin/docker load",
            env!("CARGO_BIN_EXE_rbuild")
        ))
        .env("RBUILD_ROOT", root.path())
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let base_arg = format!("BASE={BASE}");
    // Not "heredoc": Docker 20.10's built-in frontend predates heredocs, and the
    // `# syntax=docker/dockerfile:1` frontend it would need comes from Docker Hub.
    for case in ["basic", "multistage", "user", "dockerignore", "add-tar"] {
        let ctx = case_dir(case);
        let docker_tag = format!("rbuild-difftest-{case}:1");
        let out = Command::new(DOCKER)
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "--build-arg", &base_arg, "-t", &docker_tag])
            .arg(&ctx)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && err.contains("buildx") {
            println!("skipped: docker has no BuildKit (buildx) here");
            return;
        }
        assert!(out.status.success(), "docker build {case}: {err}");
        cleanup.0.push(docker_tag.clone());
        let archive = tempfile::NamedTempFile::new().unwrap();
        let saved = Command::new(DOCKER)
            .args(["save", "-o"])
            .arg(archive.path())
            .arg(&docker_tag)
            .output()
            .unwrap();
        assert!(saved.status.success());
        let loaded = crate::rbuild_at(
            root.path(),
            &["load", "-q", "-i", archive.path().to_str().unwrap()],
        );
        assert!(
            loaded.status.success(),
            "{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let ours = format!("ours-{case}:1");
        root.build_ok(&["--build-arg", &base_arg, "-t", &ours, ctx.to_str().unwrap()]);
        let (a, b) = (root.image(&ours), root.image(&docker_tag));
        let (ours_tree, docker_tree) = (merged(&a), merged(&b));
        let differences: Vec<String> = ours_tree
            .keys()
            .chain(docker_tree.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| ours_tree.get(*k) != docker_tree.get(*k))
            .map(|k| {
                format!(
                    "{k}: ours {:?}, docker {:?}",
                    ours_tree.get(k),
                    docker_tree.get(k)
                )
            })
            .collect();
        assert!(
            differences.is_empty(),
            "{case}: file trees differ:\n{}",
            differences.join("\n")
        );
        assert_eq!(
            key_config(&a),
            key_config(&b),
            "{case}: configs differ (ours left, docker right)"
        );
    }
}
