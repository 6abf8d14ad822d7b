//! `rbuild import`: the offline way to make base images.

use std::path::Path;
use std::process::Command;

use crate::{rbuild_at, workspace};

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rbuild-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rootfs_tar(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), "hi\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

#[test]
fn import_applies_changes_and_is_reproducible() {
    let dir = temp("changes");
    let tar = rootfs_tar(&dir);
    let root = dir.join("store");
    let run = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .env("RBUILD_ROOT", &root)
            .env("SOURCE_DATE_EPOCH", "0")
            .args([
                "import",
                "-c",
                "ENV A=1 B=\"${A} two\"",
                "-c",
                "CMD [\"sh\"]",
                "-c",
                "EXPOSE 80",
            ])
            .arg(&tar)
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let first = run("one:1");
    let second = run("two:2");
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(
        first, second,
        "same tarball and changes give the same image ID"
    );

    let out = rbuild_at(&root, &["inspect", "one:1"]);
    assert!(out.status.success());
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Env"], serde_json::json!(["A=1", "B=1 two"]));
    assert_eq!(config["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
    assert_eq!(inspect[0]["Id"], serde_json::json!(first));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_refuses_build_instructions() {
    let dir = temp("refuse");
    let tar = rootfs_tar(&dir);
    let out = rbuild_at(
        &dir.join("store"),
        &["import", "-c", "RUN true", tar.to_str().unwrap(), "x:1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUN is not supported by --change"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn busybox_base_image_script_is_deterministic() {
    if !Path::new("/bin/busybox").exists() {
        println!("skipped: busybox-static not installed");
        return;
    }
    let dir = temp("busybox");
    let script = workspace().join("scripts/busybox-image");
    let make = || {
        let out = Command::new(&script)
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .env("RBUILD_ROOT", dir.join("store"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(make(), make());
    let out = rbuild_at(&dir.join("store"), &["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
