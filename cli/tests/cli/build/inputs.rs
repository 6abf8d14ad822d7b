//! Build inputs: `--build-context` (local directories, `docker-image://`, `oci-layout://`),
//! a context tar on stdin, `--reproducible`, cache mounts seeded `from=` a stage,
//! `--ssh id=KEYFILE` and symbolic `--chmod`.

use std::path::Path;

use super::{Root, executed_steps};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn ctx(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("rbuild-inputs-")
        .tempdir()
        .unwrap();
    write(d.path(), files);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Steps that ran, without the context loads.
fn ran(log: &str) -> Vec<String> {
    executed_steps(log)
        .into_iter()
        .filter(|n| !n.starts_with("[internal]") && !n.starts_with("[context "))
        .collect()
}

#[test]
fn build_context_local_dir_feeds_copy_from_and_mounts_with_its_own_dockerignore() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY --from=extra / /extra/\n\
             RUN --mount=from=extra,target=/mnt cat /mnt/data.txt > /mounted\n",
        ),
        // The main context's .dockerignore must not apply to the named context.
        (".dockerignore", "data.txt\n"),
    ]);
    let extra = ctx(&[
        ("data.txt", "hello"),
        ("ignored.txt", "nope"),
        (".dockerignore", "ignored.txt\n"),
    ]);
    let flag = format!("extra={}", s(extra.path()));
    root.build_ok(&["-t", "bc:1", "--build-context", &flag, s(main.path())]);
    let img = root.image("bc:1");
    assert_eq!(img.file("extra/data.txt").as_deref(), Some("hello"));
    assert_eq!(img.file("mounted").as_deref(), Some("hello"));
    assert_eq!(img.file("extra/ignored.txt"), None, "its own .dockerignore");
    let id = root.image_id("bc:1");

    // The key is the content, not the path: a copy elsewhere hits.
    let copy = ctx(&[
        ("data.txt", "hello"),
        ("ignored.txt", "changed but ignored"),
        (".dockerignore", "ignored.txt\n"),
    ]);
    let flag2 = format!("extra={}", s(copy.path()));
    let log = root.build_ok(&["-t", "bc:1", "--build-context", &flag2, s(main.path())]);
    assert!(ran(&log).is_empty(), "{log}");
    assert_eq!(root.image_id("bc:1"), id);

    // New content runs again.
    write(copy.path(), &[("data.txt", "bye")]);
    let log = root.build_ok(&["-t", "bc:2", "--build-context", &flag2, s(main.path())]);
    assert!(!ran(&log).is_empty(), "{log}");
    assert_eq!(root.image("bc:2").file("mounted").as_deref(), Some("bye"));

    // Without the flag, `extra` is an image name (not in the store, nothing to pull).
    let out = root.build(&[s(main.path())]);
    assert!(!out.status.success());
}

#[test]
fn build_context_local_dir_as_a_stage_base() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[(
        "Dockerfile",
        "FROM files AS f\nFROM busybox\nCOPY --from=f /data.txt /copied\n",
    )]);
    let files = ctx(&[("data.txt", "from the files context")]);
    let flag = format!("files={}", s(files.path()));
    root.build_ok(&["-t", "bc:3", "--build-context", &flag, s(main.path())]);
    assert_eq!(
        root.image("bc:3").file("copied").as_deref(),
        Some("from the files context")
    );
}

#[test]
fn build_context_docker_image_replaces_a_stage() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[(
        "Dockerfile",
        "FROM busybox AS base\nRUN exit 3\nFROM base\nRUN echo ok > /ok\n",
    )]);
    let out = root.build(&[s(main.path())]);
    assert!(!out.status.success(), "the stage itself fails");
    root.build_ok(&[
        "-t",
        "bc:4",
        "--build-context",
        "base=docker-image://busybox:latest",
        s(main.path()),
    ]);
    assert_eq!(root.image("bc:4").file("ok").as_deref(), Some("ok\n"));
}

#[test]
fn build_context_oci_layout_is_a_base_image() {
    let Some(root) = Root::new() else { return };
    let marked = ctx(&[("Dockerfile", "FROM busybox\nRUN echo marker > /marker\n")]);
    root.build_ok(&["-t", "marked:1", s(marked.path())]);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let out = crate::rbuild_at(
        root.path(),
        &["save", "--format", "oci-dir", "-o", s(&layout), "marked:1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::rbuild_at(root.path(), &["rmi", "marked:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let main = ctx(&[("Dockerfile", "FROM alpine:3.19\nRUN cat /marker > /copy\n")]);
    let flag = format!("alpine:3.19=oci-layout://{}", s(&layout));
    root.build_ok(&["-t", "bc:5", "--build-context", &flag, s(main.path())]);
    assert_eq!(root.image("bc:5").file("copy").as_deref(), Some("marker\n"));

    let bad = format!("alpine:3.19=oci-layout://{}:nosuchtag", s(&layout));
    let out = root.build(&["--build-context", &bad, s(main.path())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nosuchtag"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn copy_chmod_symbolic_modes() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY --chmod=u+x,go-w f.txt /f\nCOPY --chmod=a=rX d /d\n\
             RUN stat -c '%a %n' /f /d /d/x /d/y > /modes\n",
        ),
        ("f.txt", "f"),
        ("d/x", "x"),
        ("d/y", "y"),
    ]);
    use std::os::unix::fs::PermissionsExt as _;
    let set = |p: &str, m: u32| {
        std::fs::set_permissions(main.path().join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    set("f.txt", 0o666);
    set("d", 0o700);
    set("d/x", 0o700);
    set("d/y", 0o640);
    root.build_ok(&["-t", "chmod:1", s(main.path())]);
    assert_eq!(
        root.image("chmod:1").file("modes").as_deref(),
        // The destination directory is made (0755), not copied.
        Some("744 /f\n755 /d\n555 /d/x\n444 /d/y\n")
    );
    let bad = ctx(&[(
        "Dockerfile",
        "FROM busybox\nCOPY --chmod=u+q Dockerfile /\n",
    )]);
    let out = root.build(&[s(bad.path())]);
    assert!(!out.status.success());
}

/// `rbuild build ARGS -` with `input` on stdin.
fn build_stdin(root: &Root, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("build")
        .arg("--progress=plain")
        .args(args)
        .arg("-")
        .env("RBUILD_ROOT", root.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn context_tar_on_stdin_plain_and_gzip_with_dockerfile_inside() {
    use std::io::Write as _;
    let Some(root) = Root::new() else { return };
    let tar = tar_of(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
        ("src/a.txt", "from the tar"),
        (".dockerignore", "skip.txt\n"),
        ("skip.txt", "ignored"),
        (
            "build/Other.Dockerfile",
            "FROM busybox\nCOPY src/a.txt /other\n",
        ),
    ]);
    let out = build_stdin(&root, &["-t", "tar:1"], &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = root.image("tar:1");
    assert_eq!(img.file("ctx/src/a.txt").as_deref(), Some("from the tar"));
    assert_eq!(
        img.file("ctx/skip.txt"),
        None,
        ".dockerignore inside the tar"
    );

    // gzip-compressed, `-f` naming a Dockerfile inside the archive.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let out = build_stdin(&root, &["-t", "tar:2", "-f", "build/Other.Dockerfile"], &gz);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        root.image("tar:2").file("other").as_deref(),
        Some("from the tar")
    );

    // A plain Dockerfile on stdin still builds without a context.
    let out = build_stdin(
        &root,
        &["-t", "tar:3"],
        b"FROM busybox\nRUN echo hi > /hi\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing of the unpacked contexts is left behind.
    let tmp = root.path().join("tmp-v1");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "{}", tmp.display());
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "2021-03-04T05:06:07Z")
        .env("GIT_COMMITTER_DATE", "2021-03-04T05:06:07Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reproducible_builds_of_two_clones_in_two_roots_match() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: git not installed");
        return;
    }
    let Some(a) = Root::new() else { return };
    let Some(b) = Root::new() else { return };
    let origin = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY . /app/\nRUN echo built > /app/out && mkdir /app/new\n",
        ),
        (".dockerignore", ".git\n"),
        ("src/main.c", "int main() { return 0; }\n"),
    ]);
    git(origin.path(), &["init", "-q"]);
    git(origin.path(), &["add", "."]);
    git(origin.path(), &["commit", "-q", "-m", "one"]);
    let clones = tempfile::tempdir().unwrap();
    let one = clones.path().join("one");
    let two = clones.path().join("deeper/two");
    for dest in [&one, &two] {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let out = std::process::Command::new("git")
            .args(["clone", "-q", s(origin.path()), s(dest)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The second clone's files are newer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(two.join("src/main.c"), "int main() { return 0; }\n").unwrap();

    a.build_ok(&["--reproducible", "-t", "repro:1", s(&one)]);
    b.build_ok(&["--reproducible", "-t", "repro:1", s(&two)]);
    let id = a.image_id("repro:1");
    assert!(!id.is_empty());
    assert_eq!(id, b.image_id("repro:1"), "same image from two clones");
    let img = a.image("repro:1");
    assert_eq!(
        img.config["created"].as_str().unwrap(),
        "2021-03-04T05:06:07Z"
    );
    // Layer file times are clamped to the commit time.
    let layer = img.layers.last().unwrap();
    assert!(
        layer.iter().any(|e| e.path.starts_with("app/")),
        "{}",
        img.tree()
    );

    // An explicit SOURCE_DATE_EPOCH wins over the commit time.
    let out = a.build_env(
        &["--reproducible", "-t", "repro:2", s(&one)],
        &[("SOURCE_DATE_EPOCH", "1000")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        a.image("repro:2").config["created"].as_str().unwrap(),
        "1970-01-01T00:16:40Z"
    );

    // Not a git checkout: a clear error.
    let plain = ctx(&[("Dockerfile", "FROM busybox\n")]);
    let out = a.build(&["--reproducible", s(plain.path())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a git checkout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cache_mount_from_a_stage_is_seeded_and_persists_and_bind_from_reads_a_subdir() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[(
        "Dockerfile",
        "FROM busybox AS seed\n\
         RUN mkdir -p /data/sub && echo seeded > /data/sub/s.txt\n\
         FROM busybox\n\
         RUN --mount=type=cache,target=/c,from=seed,source=/data/sub cat /c/s.txt > /first && echo more > /c/added\n\
         RUN --mount=type=cache,target=/c,from=seed,source=/data/sub ls /c > /second\n\
         RUN --mount=type=bind,from=seed,source=/data/sub,target=/b cat /b/s.txt > /bound\n\
         COPY --from=seed /data/sub /check/\n",
    )]);
    root.build_ok(&["-t", "cm:1", s(main.path())]);
    let img = root.image("cm:1");
    assert_eq!(img.file("first").as_deref(), Some("seeded\n"));
    assert_eq!(img.file("second").as_deref(), Some("added\ns.txt\n"));
    assert_eq!(img.file("bound").as_deref(), Some("seeded\n"));
    assert_eq!(
        img.file("check/added"),
        None,
        "the stage itself is untouched"
    );
    assert!(img.file("check/s.txt").is_some());

    // The source must be a directory of the stage.
    let bad = ctx(&[(
        "Dockerfile",
        "FROM busybox AS seed\nFROM busybox\nRUN --mount=type=cache,target=/c,from=seed,source=/nope true\n",
    )]);
    let out = root.build(&[s(bad.path())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find_sockets(dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
    use std::os::unix::fs::FileTypeExt as _;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_socket() {
            out.push(e.path());
        } else if t.is_dir() && depth > 0 {
            find_sockets(&e.path(), depth - 1, out);
        }
    }
}

#[test]
fn ssh_key_file_is_served_to_the_step_by_an_agent_that_goes_away() {
    let have = |t: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("ssh-keygen") && have("ssh-agent") && have("ssh-add")) {
        println!("skipped: openssh-client not installed");
        return;
    }
    let Some(root) = Root::new() else { return };
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "rbuild-inputs-key",
            "-f",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let main = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock && sleep 5\n",
    )]);
    // The agent's directory goes to this TMPDIR: empty again after the build.
    let tmp = tempfile::tempdir().unwrap();
    let flag = format!("default={}", s(&key));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args([
            "build",
            "--progress=plain",
            "-t",
            "ssh:1",
            "--ssh",
            &flag,
            s(main.path()),
        ])
        .env("RBUILD_ROOT", root.path())
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the step sleeps, its proxy socket (under mnt-v1/) answers for the key.
    let mut listed = String::new();
    for _ in 0..300 {
        let mut socks = Vec::new();
        find_sockets(&root.path().join("mnt-v1"), 3, &mut socks);
        for sock in socks {
            let out = std::process::Command::new("ssh-add")
                .arg("-l")
                .env("SSH_AUTH_SOCK", &sock)
                .output()
                .unwrap();
            listed.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        if listed.contains("rbuild-inputs-key") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed.contains("rbuild-inputs-key"),
        "the step's agent lists the key: {listed:?}"
    );
    assert_eq!(
        root.image("ssh:1").file("sock").as_deref(),
        Some("/run/buildkit/ssh_agent.0\n")
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "agent cleaned up"
    );

    // A file that is not a key: a clear error.
    let bad = keys.path().join("bad");
    std::fs::write(&bad, "not a key").unwrap();
    let out = root.build(&["--ssh", &format!("default={}", s(&bad)), s(main.path())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not load"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cache_mount_from_a_context_is_reseeded_when_its_content_changes() {
    let Some(root) = Root::new() else { return };
    let main = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/c,from=seed cat /c/v.txt > /seen && echo x >> /c/v.txt\n",
    )]);
    let seed = ctx(&[("v.txt", "1\n")]);
    let flag = format!("seed={}", s(seed.path()));
    let seen = |tag: &str, extra: &[&str]| {
        let mut args = vec!["-t", tag, "--build-context", &flag];
        args.extend_from_slice(extra);
        args.push(s(main.path()));
        root.build_ok(&args);
        root.image(tag).file("seen").unwrap()
    };
    assert_eq!(seen("cf:1", &[]), "1\n");
    // Same content: the same cache, which kept the step's write.
    assert_eq!(seen("cf:2", &["--no-cache"]), "1\nx\n");
    // New content: a new cache seeded from it.
    write(seed.path(), &[("v.txt", "2\n")]);
    assert_eq!(seen("cf:3", &[]), "2\n");
}
