//! Containers on disk: `<root>/containers-v1/<id>/` holds `config.json` (what `create`
//! decided, never changed afterwards; fsynced), `state.json` (status, PIDs, exit code;
//! replaced by rename under the container's `lock` file, not fsynced), `<id>-json.log` (Docker's json-file log)
//! and `rootfs/` (the mount point of the container's snapshot while it runs). Names are
//! made unique under `containers-v1/names.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_executor::MountSpec;
use rbuild_executor::cgroup::Limits;
use rbuild_exporter::lock::FileLock;
use serde::{Deserialize, Serialize};

use crate::build::worker::state::{write_atomic, write_replace};

pub const CONTAINERS_DIR: &str = "containers-v1";

/// What a container was created with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its manifest digest.
    pub image: String,
    pub image_digest: String,
    pub created: String,
    /// The command: entrypoint + cmd, resolved.
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: String,
    pub stop_signal: String,
    pub stop_timeout: Option<u64>,
    /// `bridge`, `none` or `host`.
    pub network: String,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub exposed_ports: Vec<String>,
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub mounts: Vec<MountSpec>,
    pub read_only: bool,
    pub limits: Limits,
    pub labels: BTreeMap<String, String>,
    pub auto_remove: bool,
    pub tty: bool,
    pub interactive: bool,
    /// `--privileged`, `--cap-add/--cap-drop`, `--security-opt`, `--ulimit`, `--shm-size`,
    /// `--cgroupns`.
    #[serde(default)]
    pub security: super::security::SecurityConfig,
    /// `--init`: rbuild's minimal init is PID 1.
    #[serde(default)]
    pub init: bool,
    /// Named and anonymous volumes mounted in the container (`volume rm` refuses them).
    #[serde(default)]
    pub volumes: Vec<super::volumes::VolumeUse>,
    /// `--mount volume-label=` of each of `volumes` (used when `create` makes them).
    #[serde(default, skip_serializing)]
    pub volume_labels: Vec<BTreeMap<String, String>>,
    /// The container's active snapshot.
    pub snapshot: String,
    /// The image's `HEALTHCHECK` with `--health-*` applied.
    #[serde(default)]
    pub healthcheck: Option<super::health::HealthCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// What happened to it since.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The process that runs the container (the detached monitor or the foreground
    /// `rbuild run`).
    pub monitor_pid: Option<i32>,
    /// The sandbox init (forwards SIGTERM/SIGINT to the command).
    pub init_pid: Option<i32>,
    /// The command: PID 1 of the container, as the host sees it.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `0.0.0.0:8080->80/tcp` entries.
    pub ports: Vec<String>,
    pub ip: Option<String>,
    /// Set by `stop`/`kill` so a later exit is not reported as a crash.
    pub stopping: bool,
    /// Health check results (containers with a health check).
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

/// The containers of one root.
#[derive(Debug, Clone)]
pub struct Containers {
    pub dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers, String> {
        let dir = root.join(CONTAINERS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        Ok(Containers { dir })
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.path(id).join(format!("{id}-json.log"))
    }

    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.path(id).join("rootfs")
    }

    /// The container's lock (state changes, starting, removing).
    pub fn lock(&self, id: &str) -> Result<FileLock, String> {
        FileLock::exclusive(self.path(id).join("lock")).map_err(|e| e.to_string())
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("config.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn config(&self, id: &str) -> Result<Config, String> {
        let p = self.path(id).join("config.json");
        let data = std::fs::read(&p).map_err(|e| io_err("read", &p, e))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The recorded state, corrected when the process that ran the container is gone
    /// without recording the exit (killed): then it is exited with 255, as Docker reports a
    /// container whose daemon-side state was lost.
    pub fn state(&self, id: &str) -> State {
        let p = self.path(id).join("state.json");
        let mut st: State = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        if st.status == Status::Running
            && !st.monitor_pid.is_some_and(rbuild_executor::process::alive)
        {
            st.status = Status::Exited;
            st.exit_code.get_or_insert(255);
            st.pid = None;
        }
        st
    }

    /// Changes the state under the container's lock.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State, String> {
        let _lock = self.lock(id)?;
        self.update_locked(id, f)
    }

    /// Changes the state; the caller holds the lock.
    pub fn update_locked(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State, String> {
        let mut st = self.state(id);
        f(&mut st);
        self.write_state(id, &st)?;
        Ok(st)
    }

    /// Replaces `state.json` (renamed into place, not fsynced: [`Containers::state`] reads
    /// a lost or garbled update safely, and a reboot ends every container anyway).
    pub fn write_state(&self, id: &str, st: &State) -> Result<(), String> {
        let data = serde_json::to_vec_pretty(st).map_err(|e| e.to_string())?;
        write_replace(&self.path(id).join("state.json"), &data)
    }

    /// Records a new container; fails when the name is taken.
    pub fn create(&self, cfg: &Config) -> Result<(), String> {
        let _names = FileLock::exclusive(self.dir.join("names.lock")).map_err(|e| e.to_string())?;
        for other in self.ids() {
            if let Ok(c) = self.config(&other)
                && c.name == cfg.name
            {
                return Err(format!(
                    "Conflict. The container name \"/{}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    cfg.name, c.id
                ));
            }
        }
        let dir = self.path(&cfg.id);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        self.write_state(&cfg.id, &State::default())?;
        let data = serde_json::to_vec_pretty(cfg).map_err(|e| e.to_string())?;
        write_atomic(&dir.join("config.json"), &data)
    }

    /// Finds a container by full ID, unique ID prefix or name.
    pub fn find(&self, what: &str) -> Result<String, String> {
        let ids = self.ids();
        if ids.iter().any(|i| i == what) {
            return Ok(what.to_string());
        }
        let name = what.strip_prefix('/').unwrap_or(what);
        for id in &ids {
            if self.config(id).is_ok_and(|c| c.name == name) {
                return Ok(id.clone());
            }
        }
        let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(what)).collect();
        match matches.as_slice() {
            [one] if !what.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(format!("No such container: {what}")),
            _ => Err(format!("multiple IDs found with provided prefix: {what}")),
        }
    }

    /// Removes the container's directory (the caller unmounted and removed the snapshot).
    pub fn remove_dir(&self, id: &str) -> Result<(), String> {
        let dir = self.path(id);
        let rootfs = self.rootfs(id);
        if rootfs.exists() {
            std::fs::remove_dir(&rootfs).map_err(|e| io_err("remove", &rootfs, e))?;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))
    }
}
