//! `--ssh ID=KEYFILE[,KEYFILE]`: docker loads private key files into an agent of its own.
//! rbuild starts the system's `ssh-agent` (openssh-client) on a socket in a private
//! temporary directory, loads the keys with `ssh-add`, and kills the agent when the build
//! ends (the guard's drop). The agent runs with a command, `cat` reading a pipe rbuild
//! holds: ssh-agent exits when its command does, so even a SIGKILLed rbuild (no drop; and
//! Debian's setgid ssh-agent drops a parent-death signal) leaves no agent behind — the pipe
//! closes, `cat` ends, the agent notices within its 10 s parent check. The agent runs as a separate process, so the key material never
//! lives in rbuild's memory and OpenSSH parses every key format it supports (see the README
//! for why this over an in-process agent crate).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ssh-agent` holding a build's key files; killed on drop.
#[derive(Debug)]
pub struct KeyAgent {
    /// `cat` (ssh-agent's command); the agent is its child.
    child: Child,
    /// `cat`'s stdin: closing it (rbuild exiting) ends `cat`, then the agent.
    _guard: Option<std::process::ChildStdin>,
    socket: PathBuf,
    // Removed after the agent is killed (field order).
    _dir: tempfile::TempDir,
}

impl KeyAgent {
    /// Starts an agent and loads `keys` into it; `id` names the `--ssh` entry in errors.
    pub fn start(id: &str, keys: &[PathBuf]) -> Result<KeyAgent, String> {
        for k in keys {
            std::fs::File::open(k)
                .map_err(|e| format!("--ssh {id}: reading the key file {}: {e}", k.display()))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("rbuild-ssh-")
            .tempdir()
            .map_err(|e| format!("--ssh {id}: a directory for the agent socket: {e}"))?;
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "--ssh {id}: key files are loaded into the system's ssh-agent, which is not installed (Debian package openssh-client); or pass an agent socket"
                    )
                } else {
                    format!("--ssh {id}: starting ssh-agent: {e}")
                }
            })?;
        let guard = child.stdin.take();
        let mut agent = KeyAgent {
            child,
            _guard: guard,
            socket,
            _dir: dir,
        };
        agent.wait_for_socket(id)?;
        for k in keys {
            let out = Command::new("ssh-add")
                .arg("-q")
                .arg(k)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .env("SSH_ASKPASS_REQUIRE", "never")
                .env_remove("DISPLAY")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("--ssh {id}: running ssh-add (openssh-client): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "--ssh {id}: ssh-add could not load {}: {} (a passphrase-protected key needs your own agent: pass its socket)",
                    k.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(agent)
    }

    fn wait_for_socket(&mut self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.socket.exists() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("--ssh {id}: ssh-agent exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("--ssh {id}: ssh-agent did not create its socket"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The process ids of the agents under `cat`.
    fn agents(&self) -> Vec<i32> {
        i32::try_from(self.child.id())
            .map(rbuild_executor::process::children)
            .unwrap_or_default()
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        for pid in self.agents() {
            let _ = rbuild_executor::process::send_signal(pid, 15);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn have(tool: &str) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn serves_the_key_and_goes_away() {
        if !(have("ssh-keygen") && have("ssh-agent") && have("ssh-add")) {
            println!("skipped: openssh-client not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let agent = KeyAgent::start("default", std::slice::from_ref(&key)).unwrap();
        let listed = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", agent.socket())
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("rbuild-test"),
            "{listed:?}"
        );
        let socket = agent.socket().to_path_buf();
        let pids = agent.agents();
        assert_eq!(pids.len(), 1);
        drop(agent);
        assert!(!socket.exists());
        let gone = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !rbuild_executor::process::alive(pids[0])
        });
        assert!(gone, "the agent is killed on drop");

        let bad = d.path().join("not-a-key");
        std::fs::write(&bad, "nope").unwrap();
        let e = KeyAgent::start("x", &[bad]).unwrap_err();
        assert!(e.contains("could not load"), "{e}");
    }

    #[test]
    fn the_agent_ends_when_its_owner_is_gone_without_a_drop() {
        if !(have("ssh-keygen") && have("ssh-agent") && have("ssh-add")) {
            println!("skipped: openssh-client not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut agent = KeyAgent::start("default", &[key]).unwrap();
        let pids = agent.agents();
        assert_eq!(pids.len(), 1, "one agent under cat");
        // What a SIGKILLed rbuild leaves: the pipe closed, nothing killed.
        drop(agent._guard.take());
        let _ = agent.child.wait();
        let mut gone = false;
        for _ in 0..1000 {
            if !rbuild_executor::process::alive(pids[0]) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::forget(agent);
        assert!(gone, "ssh-agent {} outlived its owner", pids[0]);
    }
}
