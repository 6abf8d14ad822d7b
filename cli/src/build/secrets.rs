//! What a build's RUN steps may reach beyond their inputs: `--secret`, `--ssh` and
//! `--allow` (docker buildx's spellings), and the per-step files that expose them.
//!
//! Secrets are read once when the build starts and kept in memory only. A step that mounts
//! one gets it as a file on a private tmpfs (mounted under `mnt-v1/`, bind-mounted
//! read-only at the target inside the sandbox, whose stub the sandbox removes afterwards)
//! and/or as an environment variable handed to the sandbox through its spec pipe. The bytes
//! never reach a snapshot, the image, a cache key (keys name the secret id only, as
//! BuildKit's do), a key record or the progress log.
//!
//! SSH agents are forwarded through a proxy socket on the same tmpfs (owned by the mount's
//! `uid`/`gid` with its `mode`, as BuildKit's), which relays each connection to the host's
//! agent socket.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rbuild_solver::WorkerError;

use super::worker::mounts::MountGuard;

/// BuildKit's limit on the size of one secret.
const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// A secret's bytes; never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The secrets, ssh agents and entitlements of one build.
#[derive(Debug, Clone, Default)]
pub struct Access {
    secrets: BTreeMap<String, Secret>,
    /// ssh id → the host's agent socket.
    ssh: BTreeMap<String, PathBuf>,
    /// Agents started for `--ssh ID=KEYFILE` (killed when the last clone is dropped).
    agents: Vec<Arc<super::ssh_keys::KeyAgent>>,
    /// `--allow security.insecure`.
    pub allow_insecure: bool,
}

impl Access {
    /// Reads `--secret`, `--ssh` and `--allow` values (`getenv` for env secrets and
    /// `SSH_AUTH_SOCK`).
    pub fn from_flags(
        secrets: &[String],
        ssh: &[String],
        allow: &[String],
        getenv: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Access, String> {
        let mut access = Access::default();
        for spec in secrets {
            let (id, secret) = parse_secret(spec, getenv)?;
            access.secrets.insert(id, secret);
        }
        for spec in ssh {
            let (id, paths) = parse_ssh(spec, getenv)?;
            let socket = match paths.as_slice() {
                [one] if is_socket(one) => one.clone(),
                keys => {
                    let agent = Arc::new(super::ssh_keys::KeyAgent::start(&id, keys)?);
                    let socket = agent.socket().to_path_buf();
                    access.agents.push(agent);
                    socket
                }
            };
            access.ssh.insert(id, socket);
        }
        for value in allow.iter().flat_map(|a| a.split(',')) {
            match value.trim() {
                "security.insecure" => access.allow_insecure = true,
                // Builds share the host's network by default; nothing to grant.
                "network.host" => {}
                other => {
                    return Err(format!(
                        "invalid --allow {other:?}: use security.insecure or network.host"
                    ));
                }
            }
        }
        Ok(access)
    }

    pub fn secret(&self, id: &str) -> Option<&[u8]> {
        self.secrets.get(id).map(|s| s.0.as_slice())
    }

    pub fn ssh(&self, id: &str) -> Option<&Path> {
        self.ssh.get(id).map(PathBuf::as_path)
    }
}

/// `id=x,src=FILE`, `id=x,env=VAR`, `type=file|env`, `source=`; a bare `id=x` reads the
/// environment variable `x` (as buildx does).
fn parse_secret(
    spec: &str,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Secret), String> {
    let mut kind = None;
    let (mut id, mut src, mut env) = (None, None, None);
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid --secret field {field:?}: expected key=value"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "type" => match v {
                "file" | "env" => kind = Some(v.to_string()),
                _ => return Err(format!("unsupported --secret type {v:?} (file or env)")),
            },
            "id" => id = Some(v.to_string()),
            "source" | "src" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            other => return Err(format!("unexpected key {other:?} in --secret {spec:?}")),
        }
    }
    if kind.as_deref() == Some("env") && env.is_none() {
        env = src.take();
    }
    let id = id
        .or_else(|| src.as_deref().and_then(file_name))
        .or_else(|| env.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("--secret {spec:?} has no id="))?;
    let bytes = match (src, env) {
        (Some(path), _) => read_secret_file(&id, Path::new(&path))?,
        (None, var) => {
            let var = var.unwrap_or_else(|| id.clone());
            getenv(&var)
                .ok_or_else(|| {
                    format!(
                        "secret {id}: environment variable {var} is not set (use --secret id={id},src=FILE for a file)"
                    )
                })?
                .into_bytes()
        }
    };
    if bytes.len() as u64 > MAX_SECRET_SIZE {
        return Err(format!(
            "secret {id} is too big ({} bytes; at most {MAX_SECRET_SIZE})",
            bytes.len()
        ));
    }
    Ok((id, Secret(bytes)))
}

fn file_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn read_secret_file(id: &str, path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("secret {id}: failed to stat {}: {e}", path.display()))?;
    if meta.len() > MAX_SECRET_SIZE {
        return Err(format!(
            "secret {id}: {} is too big ({} bytes; at most {MAX_SECRET_SIZE})",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("secret {id}: reading {}: {e}", path.display()))
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// `default`, `default=$SSH_AUTH_SOCK`, `id=SOCKET`, `id=KEYFILE[,KEYFILE]`: the id and
/// its paths (one agent socket, or private key files).
fn parse_ssh(
    spec: &str,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<PathBuf>), String> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, paths)) => (id, paths),
        None => (spec, ""),
    };
    if id.is_empty() {
        return Err(format!("invalid --ssh {spec:?}: expected ID[=SOCKET]"));
    }
    let path = if paths.is_empty() {
        getenv("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!(
                    "invalid empty ssh agent socket for --ssh {id}: make sure SSH_AUTH_SOCK is set"
                )
            })?
    } else {
        paths.to_string()
    };
    let mut out = Vec::new();
    for p in path.split(',').filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        match std::fs::metadata(&p) {
            Ok(m) if m.file_type().is_socket() || m.is_file() => out.push(p),
            Ok(_) => {
                return Err(format!(
                    "--ssh {id}={}: neither an agent socket nor a key file",
                    p.display()
                ));
            }
            Err(e) => return Err(format!("--ssh {id}={}: {e}", p.display())),
        }
    }
    if out.len() > 1 && out.iter().any(|p| is_socket(p)) {
        return Err(format!(
            "--ssh {spec:?}: pass one agent socket, or key files only"
        ));
    }
    Ok((id.to_string(), out))
}

/// Files a step gets from [`Access`]: secret files and agent proxy sockets on a private
/// tmpfs, unmounted (with its contents) on drop.
pub struct StepFiles {
    // Field order matters: the proxies stop before the tmpfs goes.
    proxies: Vec<AgentProxy>,
    dir: MountGuard,
    n: usize,
}

impl StepFiles {
    pub fn new(mut dir: MountGuard) -> Result<StepFiles, WorkerError> {
        dir.mount_tmpfs()?;
        Ok(StepFiles {
            proxies: Vec::new(),
            dir,
            n: 0,
        })
    }

    fn next_path(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        self.dir.path().join(format!("{what}-{}", self.n))
    }

    /// Writes a secret as a file owned by `uid:gid` with `mode`; returns its path.
    pub fn secret_file(
        &mut self,
        data: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<PathBuf, WorkerError> {
        let path = self.next_path("secret");
        let write = || -> std::io::Result<()> {
            std::fs::write(&path, data)?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
        };
        write().map_err(|e| WorkerError::new(format!("writing a secret file: {e}")))?;
        Ok(path)
    }

    /// A socket owned by `uid:gid` with `mode` that relays connections to `agent`.
    pub fn agent_socket(
        &mut self,
        agent: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<PathBuf, WorkerError> {
        let path = self.next_path("ssh");
        let err = |e: std::io::Error| WorkerError::new(format!("ssh agent proxy: {e}"));
        let listener = UnixListener::bind(&path).map_err(err)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(err)?;
        self.proxies
            .push(AgentProxy::start(listener, agent.to_path_buf()).map_err(err)?);
        Ok(path)
    }
}

/// Accepts connections on a socket and relays each to the agent, until dropped.
struct AgentProxy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    fn start(listener: UnixListener, agent: PathBuf) -> std::io::Result<AgentProxy> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ssh-agent-proxy".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let agent = agent.clone();
                            let _ = std::thread::Builder::new()
                                .name("ssh-agent-conn".into())
                                .spawn(move || relay(client, &agent));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })?;
        Ok(AgentProxy {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways between a step's connection and the agent until either side closes.
fn relay(client: UnixStream, agent: &Path) {
    let _ = client.set_nonblocking(false);
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(mut client_r), Ok(mut upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut upstream_w);
        let _ = upstream_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_r, mut client_w) = (upstream, client);
    let _ = std::io::copy(&mut upstream_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("from-env".into()),
            "tok" => Some("by-id".into()),
            _ => None,
        }
    }

    #[test]
    fn secret_specs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.txt");
        std::fs::write(&file, "file-bytes").unwrap();
        let f = file.to_str().unwrap();
        let (id, s) = parse_secret(&format!("id=a,src={f}"), &env).unwrap();
        assert_eq!((id.as_str(), s.0.as_slice()), ("a", &b"file-bytes"[..]));
        let (id, _) = parse_secret(&format!("type=file,source={f}"), &env).unwrap();
        assert_eq!(id, "s.txt");
        let (id, s) = parse_secret("id=b,env=TOKEN", &env).unwrap();
        assert_eq!((id.as_str(), s.0.as_slice()), ("b", &b"from-env"[..]));
        let (_, s) = parse_secret("id=c,type=env,src=TOKEN", &env).unwrap();
        assert_eq!(s.0, b"from-env");
        let (_, s) = parse_secret("id=tok", &env).unwrap();
        assert_eq!(s.0, b"by-id");
        assert!(format!("{s:?}").contains("redacted"));
        for (bad, want) in [
            ("id=x,env=NOPE", "NOPE is not set"),
            ("id=x,src=/no/such/file", "failed to stat"),
            ("id=x,type=weird", "unsupported --secret type"),
            ("id=x,foo=bar", "unexpected key"),
            ("idx", "expected key=value"),
        ] {
            let e = parse_secret(bad, &env).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn agent_proxy_relays_connections() {
        use std::io::{BufRead as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let server = std::thread::spawn(move || {
            let (c, _) = agent.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(c.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            (&c).write_all(format!("agent got {line}").as_bytes())
                .unwrap();
        });
        let proxy_path = dir.path().join("proxy.sock");
        let proxy =
            AgentProxy::start(UnixListener::bind(&proxy_path).unwrap(), agent_path).unwrap();
        let mut c = UnixStream::connect(&proxy_path).unwrap();
        c.write_all(b"hello\n").unwrap();
        let mut reply = String::new();
        std::io::BufReader::new(c).read_line(&mut reply).unwrap();
        assert_eq!(reply, "agent got hello\n");
        server.join().unwrap();
        drop(proxy);
    }

    #[test]
    fn ssh_and_allow() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let s = sock.to_str().unwrap().to_string();
        let getenv = |n: &str| (n == "SSH_AUTH_SOCK").then(|| s.clone());
        let a = Access::from_flags(
            &[],
            &["default".into(), format!("other={s}")],
            &["security.insecure".into()],
            &getenv,
        )
        .unwrap();
        assert_eq!(a.ssh("default"), Some(sock.as_path()));
        assert_eq!(a.ssh("other"), Some(sock.as_path()));
        assert!(a.allow_insecure);
        let e = Access::from_flags(&[], &["default".into()], &[], &|_| None).unwrap_err();
        assert!(e.contains("SSH_AUTH_SOCK"), "{e}");
        let file = dir.path().join("key");
        std::fs::write(&file, "k").unwrap();
        let e = Access::from_flags(&[], &[format!("k={}", file.display())], &[], &|_| None)
            .unwrap_err();
        assert!(e.contains("--ssh k"), "{e}");
        let e = Access::from_flags(&[], &[], &["nope".into()], &|_| None).unwrap_err();
        assert!(e.contains("security.insecure"), "{e}");
    }
}
