//! `Op::Exec`: RUN in the sandbox on an active snapshot of its root input, with its
//! mounts (bind, cache, tmpfs, secret, ssh), output streamed to the step's progress, then
//! committed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rbuild_executor::sandbox::{
    self, EtcFiles, MountSpec, NetworkMode, ProcessSpec, RunOptions, Stdio,
};
use rbuild_exporter::lock::FileLock;
use rbuild_solver::cache::CacheKey;
use rbuild_solver::op::{CacheSharing, ExecMount, ExecSpec, MountKind, Network, Security};
use rbuild_solver::{ResultRef, Stream, VertexProgress, WorkerError};

use super::file::view_of;
use super::mounts::{Active, Throwaway, View, finish_step};
use super::{Inner, Input, blocking, input_of, result_name, werr};
use crate::build::secrets::StepFiles;

/// BuildKit's hostname for RUN containers.
const DEFAULT_HOSTNAME: &str = "buildkitsandbox";
/// Output lines kept for the error of a failed step.
const TAIL_LINES: usize = 20;

/// Sets the cancel flag when the step's future is dropped (another step failed).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(super) async fn execute(
    inner: &Arc<Inner>,
    spec: &ExecSpec,
    inputs: &[ResultRef],
    key: &CacheKey,
    progress: &VertexProgress,
) -> Result<ResultRef, WorkerError> {
    if spec.security == Security::Insecure && !inner.access().allow_insecure {
        return Err(WorkerError::new(
            "RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure to rbuild build",
        ));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let inner = inner.clone();
    let spec = spec.clone();
    let inputs = inputs.to_vec();
    let name = result_name(&inner, key);
    let progress = progress.clone();
    blocking(move || run(&inner, &spec, &inputs, &name, &progress, cancel)).await
}

/// What a RUN's extra mounts hold open until the process is done.
#[derive(Default)]
struct Held {
    views: Vec<View>,
    throwaways: Vec<Throwaway>,
    locks: Vec<FileLock>,
    /// Secret files and ssh agent proxies (a private tmpfs).
    files: Option<StepFiles>,
}

fn snapshot_input(inputs: &[ResultRef], i: usize) -> Result<&ResultRef, WorkerError> {
    inputs
        .get(i)
        .ok_or_else(|| werr(format!("exec input {i} missing")))
}

/// `source` inside a view dir (no escaping above it).
fn join_source(dir: &Path, source: &str) -> PathBuf {
    let rel: PathBuf = Path::new(source)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    dir.join(rel)
}

fn run(
    inner: &Inner,
    spec: &ExecSpec,
    inputs: &[ResultRef],
    name: &str,
    progress: &VertexProgress,
    cancel: Arc<AtomicBool>,
) -> Result<ResultRef, WorkerError> {
    let sn = &inner.snapshotter;
    let parent = match spec.root {
        None => None,
        Some(i) => match input_of(snapshot_input(inputs, i)?) {
            Input::Snapshot(s) => Some(s.to_string()),
            Input::Context(_) => return Err(werr("RUN cannot run on a context")),
        },
    };
    let (active, mounts) =
        Active::prepare(sn, format!("active-{}", inner.unique()), parent.as_deref())?;
    let mut rootfs = inner.mount_point()?;
    rootfs.mount(sn, &mounts)?;

    let mut held = Held::default();
    let mut specs = Vec::new();
    let mut access_env: Vec<(String, String)> = Vec::new();
    for m in &spec.mounts {
        match &m.kind {
            MountKind::Bind {
                input,
                source,
                read_only,
            } => {
                let view = view_of(inner, snapshot_input(inputs, *input)?)?;
                let src = join_source(view.dir(), source);
                if !src.exists() {
                    return Err(werr(format!(
                        "failed to mount {}: {source} not found in the mount source",
                        m.target
                    )));
                }
                let src = if *read_only || !src.is_dir() {
                    src
                } else {
                    let t = Throwaway::new(&src, inner.mount_point()?)?;
                    let dir = t.dir().to_path_buf();
                    held.throwaways.push(t);
                    dir
                };
                specs.push(MountSpec::Bind {
                    source: src,
                    target: m.target.clone(),
                    readonly: *read_only,
                });
                held.views.push(view);
            }
            MountKind::Cache {
                id,
                sharing,
                input,
                source,
                read_only,
                uid,
                gid,
                mode,
            } => {
                // `from=` (BuildKit): a cache of its own per id and source, seeded the first
                // time with the source directory of the stage, image or context.
                let (id, seed) = match input {
                    Some(i) => {
                        let r = snapshot_input(inputs, *i)?;
                        let view = view_of(inner, r)?;
                        let src = join_source(view.dir(), source);
                        if !src.is_dir() {
                            return Err(werr(format!(
                                "failed to mount {}: {source} is not a directory in the cache mount's from= source",
                                m.target
                            )));
                        }
                        // A context's result names no content: key by its digest, so new
                        // content seeds a new cache (as a new stage result does).
                        let from = match input_of(r) {
                            Input::Snapshot(s) => s.to_string(),
                            Input::Context(name) => {
                                format!("{}@{}", r.0, inner.context_digest(name)?)
                            }
                        };
                        (format!("{id}\0from={from}\0{source}"), Some((view, src)))
                    }
                    None => (id.clone(), None),
                };
                let seed_dir = seed.as_ref().map(|(_, src)| src.as_path());
                let (dir, lock) = cache_dir(inner, &id, *sharing, *uid, *gid, *mode, seed_dir)?;
                drop(seed);
                held.locks.extend(lock);
                specs.push(MountSpec::Bind {
                    source: dir,
                    target: m.target.clone(),
                    readonly: *read_only,
                });
            }
            MountKind::Tmpfs { size } => specs.push(MountSpec::Tmpfs {
                target: m.target.clone(),
                size_bytes: *size,
                mode: None,
            }),
            MountKind::Secret { .. } | MountKind::Ssh { .. } => {
                access_mount(inner, m, &mut held, &mut specs, &mut access_env, progress)?;
            }
        }
    }

    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(spec.proxy_env.iter().map(|(k, v)| format!("{k}={v}")));
    if !spec.env.contains_key("PATH") {
        env.push(format!("PATH={}", sandbox::DEFAULT_PATH));
    }
    for (k, v) in access_env {
        env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string());
    let network = match spec.network {
        Network::None => NetworkMode::None,
        Network::Default | Network::Host => NetworkMode::Host,
    };
    let mut p = ProcessSpec::new(rootfs.path(), spec.args.clone());
    p.env = env;
    p.cwd = spec.cwd.clone();
    p.user = spec.user.clone();
    p.hostname = hostname.clone();
    p.etc = etc_files(&hostname, &spec.extra_hosts, spec.network);
    p.network = network;
    p.mounts = specs;
    p.limits = inner.cfg.limits.clone();
    p.security = inner.cfg.security.clone();
    // Docker's RUN allows setuid binaries (sudo, su).
    p.no_new_privs = false;
    p.privileged = spec.security == Security::Insecure;

    let mut tail: VecDeque<String> = VecDeque::new();
    let mut on_line = |stream: sandbox::Stream, line: &str| {
        let s = match stream {
            sandbox::Stream::Stdout => Stream::Stdout,
            sandbox::Stream::Stderr => Stream::Stderr,
        };
        progress.log(s, line.to_string());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    // Other RunOptions fields (for `rbuild run`) keep their defaults.
    #[allow(clippy::needless_update)]
    let status = sandbox::run(
        &p,
        Stdio::Capture {
            tail: 0,
            on_line: Some(&mut on_line),
        },
        &RunOptions {
            cancel: Some(cancel.clone()),
            ..RunOptions::default()
        },
    )
    .map_err(|e| werr(format!("running the step: {e}")))?;
    drop(held);
    rootfs.unmount()?;
    drop(rootfs);
    if cancel.load(Ordering::Relaxed) {
        return Err(WorkerError::new("canceled"));
    }
    if !status.success() {
        let mut lines: Vec<String> = tail.into_iter().collect();
        if let Some(msg) = &status.message {
            lines.push(msg.clone());
        }
        if status.oom_killed {
            lines.push("the process was killed: out of memory".into());
        }
        return Err(WorkerError::exit(status.code, lines));
    }
    finish_step(inner, active, parent.as_deref(), name)
}

/// `RUN --mount=type=secret|ssh`: the secret as a read-only file on a private tmpfs and/or
/// an environment variable, or a proxy socket to the ssh agent (with `SSH_AUTH_SOCK` for
/// the first one); skipped (logged by id) when not given and not required.
fn access_mount(
    inner: &Inner,
    m: &ExecMount,
    held: &mut Held,
    specs: &mut Vec<MountSpec>,
    env: &mut Vec<(String, String)>,
    progress: &VertexProgress,
) -> Result<(), WorkerError> {
    let access = inner.access();
    let files = |held: &mut Held| -> Result<(), WorkerError> {
        if held.files.is_none() {
            held.files = Some(StepFiles::new(inner.mount_point()?)?);
        }
        Ok(())
    };
    match &m.kind {
        MountKind::Secret {
            id,
            required,
            env: var,
            file,
            uid,
            gid,
            mode,
        } => {
            let Some(data) = access.secret(id) else {
                if *required {
                    return Err(werr(format!(
                        "secret {id} is required but was not provided: pass --secret id={id},src=FILE (or env=VAR) to rbuild build"
                    )));
                }
                progress.log(
                    Stream::Stderr,
                    format!("skipping secret mount {id}: no such secret was provided"),
                );
                return Ok(());
            };
            if let Some(var) = var {
                let value = String::from_utf8(data.to_vec()).map_err(|_| {
                    werr(format!("secret {id} is not UTF-8: it cannot be env={var}"))
                })?;
                env.push((var.clone(), value));
            }
            if *file {
                files(held)?;
                if let Some(f) = held.files.as_mut() {
                    let source = f.secret_file(data, *uid, *gid, *mode)?;
                    specs.push(MountSpec::Bind {
                        source,
                        target: m.target.clone(),
                        readonly: true,
                    });
                }
            }
        }
        MountKind::Ssh {
            id,
            required,
            uid,
            gid,
            mode,
        } => {
            let Some(agent) = access.ssh(id) else {
                if *required {
                    return Err(werr(format!(
                        "no SSH agent {id:?} was forwarded: pass --ssh {id}=$SSH_AUTH_SOCK to rbuild build"
                    )));
                }
                progress.log(
                    Stream::Stderr,
                    format!("skipping ssh mount {id}: no such ssh agent was forwarded"),
                );
                return Ok(());
            };
            files(held)?;
            if let Some(f) = held.files.as_mut() {
                let source = f.agent_socket(agent, *uid, *gid, *mode)?;
                specs.push(MountSpec::Bind {
                    source,
                    target: m.target.clone(),
                    readonly: false,
                });
                if !env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                    env.push(("SSH_AUTH_SOCK".into(), m.target.clone()));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The generated `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` of a RUN.
fn etc_files(hostname: &str, extra_hosts: &[(String, String)], network: Network) -> EtcFiles {
    let mut hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, ip) in extra_hosts {
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    let resolv = match network {
        Network::None => String::new(),
        _ => std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_else(|_| "nameserver 8.8.8.8\nnameserver 8.8.4.4\n".into()),
    };
    EtcFiles {
        resolv_conf: Some(resolv),
        hosts: Some(hosts),
        hostname: Some(format!("{hostname}\n")),
    }
}

/// The directory of cache mount `id` (created with `uid`/`gid`/`mode` the first time), and
/// for `sharing=locked` (and `private`, which BuildKit gives a fresh copy when busy) the
/// lock held for the run.
fn cache_dir(
    inner: &Inner,
    id: &str,
    sharing: CacheSharing,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    seed: Option<&Path>,
) -> Result<(PathBuf, Option<FileLock>), WorkerError> {
    use sha2::Digest as _;
    let base = inner.cfg.root.join("cachemounts-v1");
    let hex = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    let dir = base.join(&hex[..32]);
    std::fs::create_dir_all(&base).map_err(|e| werr(format!("{}: {e}", base.display())))?;
    let lock = match sharing {
        CacheSharing::Shared => None,
        CacheSharing::Locked | CacheSharing::Private => {
            Some(FileLock::exclusive(base.join(format!("{}.lock", &hex[..32]))).map_err(werr)?)
        }
    };
    if !dir.exists() {
        let tmp = base.join(format!(".tmp-{}", inner.unique()));
        std::fs::create_dir(&tmp).map_err(|e| werr(format!("{}: {e}", tmp.display())))?;
        let set = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt as _;
            std::os::unix::fs::chown(&tmp, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode.unwrap_or(0o755)))?;
            std::fs::write(tmp.join("../").join(format!("{}.id", &hex[..32])), id)?;
            Ok(())
        };
        if let Some(src) = seed {
            // Owners and modes as in the source (a stage's files keep theirs).
            let spec = rbuild_executor::fileop::CopySpec {
                sources: vec![rbuild_executor::fileop::Source::Path("/".into())],
                dest: "/".into(),
                source_kind: rbuild_executor::fileop::SourceKind::Rootfs,
                ..Default::default()
            };
            if let Err(e) = rbuild_executor::fileop::copy(&spec, src, &tmp) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(werr(format!(
                    "seeding a cache mount from {}: {e}",
                    src.display()
                )));
            }
        }
        set().map_err(|e| werr(format!("cache mount {id}: {e}")))?;
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another build made it meanwhile.
            let _ = std::fs::remove_dir(&tmp);
        }
    }
    Ok((dir, lock))
}
