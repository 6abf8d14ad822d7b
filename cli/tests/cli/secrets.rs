//! `rbuild build --secret/--ssh/--allow` and `RUN --mount=type=secret|ssh`,
//! `RUN --network`, `RUN --security`, as root on the offline busybox base: the secret's
//! bytes reach the step and nothing else (a scan of the saved image, every file of the
//! rbuild root with layer blobs decompressed, and the build's output).

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::UnixListener;
use std::path::Path;

use sha2::Digest as _;

use crate::build::Root;

const FILE_SECRET: &str = "s3cr3t-value-123";
const ENV_SECRET: &str = "env-s3cr3t-456";

use crate::build::dockerfile_dir as context;

fn sha_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (symlinks not followed; sockets and devices skipped), with gzip
/// content also scanned decompressed; returns the files holding one of `needles`.
fn scan(dir: &Path, needles: &[&[u8]], found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            scan(&p, needles, found);
            continue;
        }
        if !t.is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        let mut views = vec![bytes.clone()];
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .is_ok()
            {
                views.push(out);
            }
        }
        for n in needles {
            if views.iter().any(|v| contains(v, n)) {
                found.push(format!(
                    "{} holds {:?}",
                    p.display(),
                    String::from_utf8_lossy(n)
                ));
            }
        }
    }
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let Some(root) = Root::new() else { return };
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("tok.txt");
    std::fs::write(&secret_file, FILE_SECRET).unwrap();
    // The Dockerfile never spells the secrets: the steps write their hashes instead.
    let ctx = context(
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null \
             && stat -c %a /run/secrets/tok > /tok.mode \
             && sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN_VAR test -n \"$TOKEN_VAR\" \
             && ! test -e /run/secrets/envtok \
             && printf %s \"$TOKEN_VAR\" | sha256sum | cut -d' ' -f1 > /env.sha\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/tok,mode=0440,uid=1,gid=2,env=BOTH \
             stat -c '%a %u %g' /etc/app/tok > /custom \
             && test \"$BOTH\" = \"$(cat /etc/app/tok)\"\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /absent\n",
    );
    let src = format!("id=tok,src={}", secret_file.display());
    let out = root.build_env(
        &[
            "-t",
            "sec:1",
            "--secret",
            &src,
            "--secret",
            "id=envtok,env=RBUILD_TEST_SECRET_ENV",
            ctx.path().to_str().unwrap(),
        ],
        &[("RBUILD_TEST_SECRET_ENV", ENV_SECRET)],
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("skipping secret mount absent"), "{log}");

    let img = root.image("sec:1");
    assert_eq!(
        img.file("/tok.sha").unwrap().trim(),
        sha_hex(FILE_SECRET.as_bytes())
    );
    assert_eq!(img.file("/tok.mode").unwrap().trim(), "400");
    assert_eq!(
        img.file("/env.sha").unwrap().trim(),
        sha_hex(ENV_SECRET.as_bytes())
    );
    assert_eq!(img.file("/custom").unwrap().trim(), "440 1 2");
    assert_eq!(img.file("/absent").unwrap().trim(), "skipped");
    // No mount point stub left in any layer.
    let tree = img.tree();
    for stub in ["run/", "run/secrets", "etc/app"] {
        assert!(
            !tree.lines().any(|l| l.contains(&format!(" {stub}"))),
            "{stub} in:\n{tree}"
        );
    }

    // The leakage scan: the saved image, the whole root, the build's output.
    let needles: [&[u8]; 2] = [FILE_SECRET.as_bytes(), ENV_SECRET.as_bytes()];
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = layout_dir.path().join("layout");
    let saved = crate::rbuild_at(
        root.path(),
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
            "sec:1",
        ],
    );
    assert!(saved.status.success());
    let mut found = Vec::new();
    scan(&layout, &needles, &mut found);
    scan(root.path(), &needles, &mut found);
    for n in needles {
        if contains(log.as_bytes(), n) {
            found.push("the build's output".into());
        }
    }
    assert!(found.is_empty(), "secret bytes leaked: {found:#?}");
    let inspect = crate::rbuild_at(root.path(), &["history", "sec:1"]);
    assert!(!contains(&inspect.stdout, FILE_SECRET.as_bytes()));

    // Keys depend on the secret's id, not its bytes: another value is a cache hit.
    std::fs::write(&secret_file, "another-value").unwrap();
    let again = root.build_env(
        &[
            "-t",
            "sec:2",
            "--secret",
            &src,
            "--secret",
            "id=envtok,env=RBUILD_TEST_SECRET_ENV",
            ctx.path().to_str().unwrap(),
        ],
        &[("RBUILD_TEST_SECRET_ENV", "x")],
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(crate::build::executed_steps(&err).is_empty(), "{err}");
    assert_eq!(root.image_id("sec:1"), root.image_id("sec:2"));
}

#[test]
fn missing_required_secret_or_agent_fails_clearly() {
    let Some(root) = Root::new() else { return };
    let ctx = context("FROM busybox\nRUN --mount=type=secret,id=nope,required true\n");
    let out = root.build(&[ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("secret nope is required but was not provided"),
        "{err}"
    );
    assert!(err.contains("--secret id=nope"), "{err}");

    let ctx = context("FROM busybox\nRUN --mount=type=ssh,required=true true\n");
    let out = root.build(&[ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no SSH agent \"default\""), "{err}");

    // A --secret whose file is missing fails before anything runs.
    let out = root.build(&[
        "--secret",
        "id=x,src=/nonexistent/secret",
        ctx.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("secret x: failed to stat"), "{err}");
}

#[test]
fn ssh_agent_is_forwarded() {
    let Some(root) = Root::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // A fake agent: answers one line per connection.
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(&c).read_line(&mut line);
            let _ = (&c).write_all(b"fake-agent-reply\n");
        }
    });
    // busybox `nc` talks to unix sockets only in some builds; else the socket is checked.
    let ctx = context(
        "FROM busybox\n\
         RUN --mount=type=ssh test \"$SSH_AUTH_SOCK\" = /run/buildkit/ssh_agent.0 \
             && test -S \"$SSH_AUTH_SOCK\" \
             && if nc 2>&1 | grep -q -- ' -U'; then echo hi | nc -U \"$SSH_AUTH_SOCK\" > /reply; \
                else echo fake-agent-reply > /reply; fi \
             && stat -c %a \"$SSH_AUTH_SOCK\" > /mode\n\
         RUN --mount=type=ssh,id=other,target=/tmp/agent,uid=1000,mode=0660 \
             test \"$SSH_AUTH_SOCK\" = /tmp/agent \
             && stat -c '%a %u' /tmp/agent > /other\n\
         RUN --mount=type=ssh,id=absent test -z \"$SSH_AUTH_SOCK\" && echo skipped > /absent\n",
    );
    let s = sock.to_str().unwrap();
    let other = format!("other={s}");
    let out = root.build_env(
        &[
            "-t",
            "ssh:1",
            "--ssh",
            "default",
            "--ssh",
            &other,
            ctx.path().to_str().unwrap(),
        ],
        &[("SSH_AUTH_SOCK", s)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let img = root.image("ssh:1");
    assert_eq!(img.file("/reply").unwrap().trim(), "fake-agent-reply");
    assert_eq!(img.file("/mode").unwrap().trim(), "600");
    assert_eq!(img.file("/other").unwrap().trim(), "660 1000");
    assert_eq!(img.file("/absent").unwrap().trim(), "skipped");
    let tree = img.tree();
    assert!(!tree.contains("ssh_agent"), "{tree}");
    assert!(!tree.contains("tmp/agent"), "{tree}");
}

/// Interface names in a `/proc/net/dev` listing.
fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn run_network_modes() {
    let Some(root) = Root::new() else { return };
    let ctx = context(
        "FROM busybox\n\
         RUN --network=none cat /proc/net/dev > /none\n\
         RUN --network=default cat /proc/net/dev > /default\n\
         RUN --network=host cat /proc/net/dev > /host\n",
    );
    root.build_ok(&["-t", "net:1", ctx.path().to_str().unwrap()]);
    let img = root.image("net:1");
    assert_eq!(interfaces(&img.file("/none").unwrap()), ["lo"]);
    // default is the host's network, as BuildKit's. Containers of tests running beside this
    // one come and go with their veths: those are left out of the comparison.
    let steady = |v: Vec<String>| -> Vec<String> {
        v.into_iter().filter(|n| !n.starts_with("veth")).collect()
    };
    let host = steady(interfaces(
        &std::fs::read_to_string("/proc/net/dev").unwrap(),
    ));
    let mut default = steady(interfaces(&img.file("/default").unwrap()));
    let mut hostnet = steady(interfaces(&img.file("/host").unwrap()));
    let mut want = host.clone();
    want.sort();
    default.sort();
    hostnet.sort();
    assert_eq!(default, want);
    assert_eq!(hostnet, want);
}

fn cap_eff(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn run_security_insecure_needs_allow() {
    let Some(root) = Root::new() else { return };
    let ctx = context(
        "FROM busybox\n\
         RUN grep CapEff /proc/self/status > /sandbox\n\
         RUN --security=insecure grep CapEff /proc/self/status > /insecure\n",
    );
    let out = root.build(&["-t", "sec:ins", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--allow security.insecure"), "{err}");

    root.build_ok(&[
        "-t",
        "sec:ins",
        "--allow",
        "security.insecure",
        ctx.path().to_str().unwrap(),
    ]);
    let img = root.image("sec:ins");
    let ours = cap_eff(&std::fs::read_to_string("/proc/self/status").unwrap());
    let insecure = cap_eff(&img.file("/insecure").unwrap());
    let sandbox = cap_eff(&img.file("/sandbox").unwrap());
    assert_eq!(insecure, ours, "insecure gets every capability we hold");
    // Docker's default set.
    assert_eq!(sandbox, "00000000a80425fb");
}
