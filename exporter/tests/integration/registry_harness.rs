//! Real registries for tests: Debian's `docker-registry` (distribution 2.8)
//! on a free loopback port with its own temp storage, open or behind htpasswd
//! Basic auth; and [`Proxy`], a tiny HTTP/1.1 proxy in front of one that
//! logs requests and injects faults (5xx, truncated or corrupted blobs) or
//! demands Bearer tokens from its own token endpoint.
//!
//! Tests call [`Registry::start`] and return early (printing "skipped: …")
//! when it gives `None`, i.e. when `docker-registry` is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "docker-registry";

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A running `docker-registry serve`; killed on drop.
#[derive(Debug)]
#[allow(dead_code)] // fields and helpers for tests still to come (store helper's, CLI)
pub struct Registry {
    child: Child,
    pub port: u16,
    /// `127.0.0.1:PORT`
    pub host: String,
    pub dir: tempfile::TempDir,
    /// With Basic auth: (user, password).
    pub user: Option<(String, String)>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Registry {
    /// An open registry; `None` (after printing why) if the binary is missing.
    pub fn start() -> Option<Registry> {
        Self::start_with(None)
    }

    /// A registry with htpasswd Basic auth for `user:password` (bcrypt, by
    /// `htpasswd -Bbn`); `None` if `docker-registry` or `htpasswd` is missing.
    pub fn start_basic(user: &str, password: &str) -> Option<Registry> {
        if !have("htpasswd") {
            println!("skipped: htpasswd (apache2-utils) not installed");
            return None;
        }
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    fn start_with(user: Option<(String, String)>) -> Option<Registry> {
        if !have(REGISTRY_BIN) {
            println!("skipped: docker-registry not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = &user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                file.display()
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{auth}",
                    storage.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut child = child;
            let host = format!("127.0.0.1:{port}");
            if wait_ready(&mut child, &host) {
                return Some(Registry {
                    child,
                    port,
                    host,
                    dir,
                    user,
                });
            }
            // Lost the port race or failed: try another port.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not come up");
    }

    /// The registry's log (for assertion messages).
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `--dest-creds`/`--creds` value for skopeo.
    pub fn skopeo_creds(&self) -> Option<String> {
        self.user.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }
}

/// Waits until `GET /v2/` answers (200, or 401 with auth).
fn wait_ready(child: &mut Child, host: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(status) = http_status(host, "GET", "/v2/") {
            if status == 200 || status == 401 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a bare HTTP/1.1 request, `None` if it could not connect.
pub fn http_status(host: &str, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `skopeo copy` of an OCI layout to `docker://HOST/NAME`; `false` (after
/// printing why) if skopeo is missing.
pub fn skopeo_push(layout: &Path, reg: &Registry, name: &str) -> bool {
    if !have("skopeo") {
        println!("skipped: skopeo not installed");
        return false;
    }
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    if let Some(c) = reg.skopeo_creds() {
        cmd.args(["--dest-creds", &c]);
    }
    cmd.arg(format!("oci:{}", layout.display()))
        .arg(format!("docker://{}/{name}", reg.host));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// `skopeo inspect [--raw]` of `docker://HOST/NAME` (stdout bytes).
pub fn skopeo_inspect(reg: &Registry, name: &str, raw: bool) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    if let Some(c) = reg.skopeo_creds() {
        cmd.args(["--creds", &c]);
    }
    let out = cmd
        .arg(format!("docker://{}/{name}", reg.host))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What [`Proxy`] does to traffic.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Answer the first `times` requests whose path contains `path` with `status`.
    FailFirst {
        path: String,
        status: u16,
        times: usize,
    },
    /// Cut GET bodies of paths containing `path` in half (Content-Length kept).
    Truncate { path: String },
    /// Flip bytes of GET bodies of paths containing `path` (same length).
    Corrupt { path: String },
    /// Demand `Authorization: Bearer` on /v2/ (the token comes from the
    /// proxy's `/token`, which wants Basic `user:password`).
    Bearer { user: String, password: String },
}

/// One request the proxy saw: "METHOD /path?query -> status".
pub type Log = Arc<Mutex<Vec<String>>>;

/// A logging, fault-injecting HTTP proxy on a free loopback port.
#[derive(Debug)]
pub struct Proxy {
    pub host: String,
    pub log: Log,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new((fault, 0usize)));
        let (up, lg, st, me) = (
            upstream.to_string(),
            log.clone(),
            stop.clone(),
            host.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (up, lg, state, me) = (up.clone(), lg.clone(), state.clone(), me.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &up, &lg, &state, &me);
                });
            }
        });
        Proxy { host, log, stop }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Requests whose line starts with `method` and contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} ")) && l.contains(needle))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn respond(
    mut out: &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    content_length: usize,
) {
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        let lk = k.to_ascii_lowercase();
        if lk == "connection"
            || lk == "keep-alive"
            || lk == "content-length"
            || lk == "transfer-encoding"
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    ));
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
}

fn handle(
    conn: TcpStream,
    upstream: &str,
    log: &Log,
    state: &Mutex<(Fault, usize)>,
    me: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let req = read_request(&mut reader)?;
    let path = req.target.clone();
    let record = |status: u16| {
        log.lock()
            .unwrap()
            .push(format!("{} {path} -> {status}", req.method))
    };
    let fault = state.lock().unwrap().0.clone();
    match &fault {
        Fault::FailFirst {
            path: p,
            status,
            times,
        } if path.contains(p.as_str()) => {
            let mut st = state.lock().unwrap();
            if st.1 < *times {
                st.1 += 1;
                drop(st);
                record(*status);
                let body = br#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
                respond(&conn, *status, &[], body, body.len());
                return Ok(());
            }
        }
        Fault::Bearer { user, password } => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            if path.starts_with("/token") {
                let want = format!("Basic {}", b64.encode(format!("{user}:{password}")));
                if header(&req.headers, "authorization") != Some(want.as_str()) {
                    record(401);
                    let body =
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                    respond(&conn, 401, &[], body, body.len());
                    return Ok(());
                }
                record(200);
                let body = br#"{"token":"test-token","expires_in":300}"#;
                respond(
                    &conn,
                    200,
                    &[("Content-Type".into(), "application/json".into())],
                    body,
                    body.len(),
                );
                return Ok(());
            }
            if header(&req.headers, "authorization") != Some("Bearer test-token") {
                record(401);
                let challenge = format!(
                    r#"Bearer realm="http://{me}/token",service="rbuild-test",scope="repository:x:pull""#
                );
                let body =
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                respond(
                    &conn,
                    401,
                    &[("WWW-Authenticate".into(), challenge)],
                    body,
                    body.len(),
                );
                return Ok(());
            }
        }
        _ => {}
    }
    // Forward, with Connection: close so the upstream ends the body with EOF.
    let mut up = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if lk == "connection" || lk == "authorization" && matches!(fault, Fault::Bearer { .. }) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut ur = BufReader::new(up);
    let mut status_line = String::new();
    ur.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        ur.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let declared: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    if req.method != "HEAD" {
        if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            body = read_chunked(&mut ur)?;
        } else {
            ur.read_to_end(&mut body)?;
        }
    }
    record(status);
    let is_get = req.method == "GET" && status == 200;
    let content_length = if req.method == "HEAD" {
        declared
    } else {
        body.len()
    };
    match &fault {
        Fault::Truncate { path: p } if is_get && path.contains(p.as_str()) => {
            let half = body.len() / 2;
            respond(&conn, status, &headers, &body[..half], body.len());
            // Close without sending the rest.
            let _ = conn.shutdown(Shutdown::Both);
        }
        Fault::Corrupt { path: p } if is_get && path.contains(p.as_str()) => {
            for b in body.iter_mut().step_by(97) {
                *b ^= 0x5a;
            }
            respond(&conn, status, &headers, &body, body.len());
        }
        _ => respond(&conn, status, &headers, &body, content_length),
    }
    Ok(())
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let n =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            let mut rest = String::new();
            let _ = r.read_line(&mut rest);
            return Ok(out);
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A temp `DOCKER_CONFIG` dir with `config.json` holding `auths` for `host`.
pub fn docker_config_with(host: &str, user: &str, password: &str) -> (tempfile::TempDir, PathBuf) {
    use base64::Engine as _;
    let d = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let p = d.path().join("config.json");
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    (d, p)
}
