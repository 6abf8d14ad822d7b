//! Image commands through the binary, against a real registry (Debian's
//! `docker-registry`) fed by skopeo with a busybox image made here from
//! Debian's `busybox-static`: pull, images, tag, push, save, rmi, load,
//! inspect, system df/prune. Each test has its own registry and store root;
//! each skips (printing why) when a tool is missing.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use rbuild_exporter::Digest;
use serde_json::{Value, json};

use crate::rbuild_at;

const BUSYBOX: &str = "/bin/busybox";

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn success(out: Output) -> Output {
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out));
    out
}

/// The fixture: what a test compares against.
struct Fixture {
    manifest: Digest,
    config: Digest,
    layer: Digest,
    diff_id: Digest,
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn put(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::sha256(bytes);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

/// A one-layer busybox image (OCI types, deterministic) as an OCI layout.
fn busybox_layout(dir: &Path, busybox: &[u8]) -> Fixture {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    };
    for d in ["bin/", "tmp/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox).unwrap();
    for applet in ["sh", "ls", "echo", "cat"] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::sha256(&tar);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = put(dir, &gz);
    let config = serde_json::to_vec(&json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": go_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "cli test fixture"}],
    }))
    .unwrap();
    let config_digest = put(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.to_string(),
            "size": gz.len(),
        }],
    }))
    .unwrap();
    let manifest_digest = put(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    Fixture {
        manifest: manifest_digest,
        config: config_digest,
        layer,
        diff_id,
    }
}

/// `docker-registry serve` on a free loopback port; killed on drop.
struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    host: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.join("config.yml");
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
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
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
                return Registry { child, host };
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

/// A registry holding the busybox fixture as `bb:1`, and a fresh store root.
struct Env {
    fixture: Fixture,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Env {
    /// `None` (after printing why) when a tool is missing.
    fn new() -> Option<Env> {
        for tool in ["docker-registry", "skopeo"] {
            if !have(tool) {
                println!("skipped: {tool} not installed");
                return None;
            }
        }
        let Ok(busybox) = std::fs::read(BUSYBOX) else {
            println!("skipped: busybox-static not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let fixture = busybox_layout(&dir.path().join("layout"), &busybox);
        let registry = Registry::start(&dir.path().join("registry"));
        let out = Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}", dir.path().join("layout").display()))
            .arg(format!("docker://{}/bb:1", registry.host))
            .output()
            .unwrap();
        success(out);
        Some(Env {
            fixture,
            registry,
            dir,
        })
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn rbuild(&self, args: &[&str]) -> Output {
        rbuild_at(&self.root(), args)
    }

    /// `HOST/NAME`
    fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.host)
    }

    fn pull(&self) -> Output {
        success(self.rbuild(&["pull", &self.name("bb:1")]))
    }

    fn ids(&self) -> Vec<String> {
        stdout(&success(self.rbuild(&["images", "-q"])))
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn pull_twice_then_listed() {
    let Some(env) = Env::new() else { return };
    let name = env.name("bb:1");
    let out = text(&env.pull());
    assert!(out.contains("Pulling from bb"), "{out}");
    assert!(
        out.contains(&format!("Digest: {}", env.fixture.manifest)),
        "{out}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    let out = text(&env.pull());
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}")),
        "{out}"
    );

    let out = stdout(&success(env.rbuild(&["images"])));
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY") && header.contains("TAG"),
        "{out}"
    );
    assert!(header.contains("IMAGE ID"), "{out}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], env.name("bb"), "{out}");
    assert_eq!(row[1], "1", "{out}");
    assert_eq!(row[2], &env.fixture.config.hex()[..12], "{out}");
    assert_eq!(lines.next(), None, "{out}");
    assert_eq!(env.ids(), vec![env.fixture.config.hex()[..12].to_string()]);
}

#[test]
fn tag_and_push_to_another_repository() {
    let Some(env) = Env::new() else { return };
    env.pull();
    let other = env.name("other/bb:2");
    success(env.rbuild(&["tag", &env.name("bb:1"), &other]));
    let out = text(&success(env.rbuild(&["push", &other])));
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}]",
            env.name("other/bb")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("2: digest: {}", env.fixture.manifest)),
        "{out}"
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{other}"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&success(out).stdout).unwrap();
    assert_eq!(v["Digest"], env.fixture.manifest.to_string());
    assert_eq!(v["Layers"], json!([env.fixture.layer.to_string()]));
}

#[test]
fn save_rmi_load_restores_and_inspect() {
    let Some(env) = Env::new() else { return };
    env.pull();
    let name = env.name("bb:1");
    let ids = env.ids();

    let out = stdout(&success(env.rbuild(&["inspect", &name])));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Id"], env.fixture.config.to_string(), "{out}");
    assert_eq!(v[0]["RepoTags"], json!([name]), "{out}");
    assert_eq!(
        v[0]["RootFS"]["Layers"],
        json!([env.fixture.diff_id.to_string()]),
        "{out}"
    );

    let archive = env.dir.path().join("f.tar");
    success(env.rbuild(&["save", "-o", archive.to_str().unwrap(), &name]));
    let out = stdout(&success(env.rbuild(&["rmi", &name])));
    assert!(out.contains(&format!("Untagged: {name}")), "{out}");
    assert!(env.ids().is_empty());
    let out = stdout(&success(env.rbuild(&[
        "load",
        "-i",
        archive.to_str().unwrap(),
    ])));
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    assert_eq!(env.ids(), ids);
}

#[test]
fn pull_of_a_missing_tag_fails() {
    let Some(env) = Env::new() else { return };
    let out = env.rbuild(&["pull", &env.name("bb:nope")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MANIFEST_UNKNOWN"), "{stderr}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
}

#[test]
fn system_df_and_prune_all() {
    let Some(env) = Env::new() else { return };
    env.pull();
    let out = stdout(&success(env.rbuild(&["system", "df"])));
    assert!(out.starts_with("TYPE"), "{out}");
    let images: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&images[1..3], ["1", "1"], "{out}");

    let out = stdout(&success(env.rbuild(&["system", "prune", "-a", "-f"])));
    assert!(
        out.contains(&format!("untagged: {}", env.name("bb:1"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("deleted: {}", env.fixture.config)),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert!(env.ids().is_empty());
    let out = stdout(&success(env.rbuild(&["system", "df"])));
    let images = out.lines().find(|l| l.starts_with("Images")).unwrap();
    assert_eq!(images.split_whitespace().nth(1), Some("0"), "{out}");
}
