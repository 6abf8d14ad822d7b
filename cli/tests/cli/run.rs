//! `rbuild run` and the container lifecycle, as root, on the offline busybox base image.
//! Every test's [`Env`] checks on drop that nothing is left behind: no mounts under its
//! root, no process naming it (detached monitors), no network namespace or veth of its
//! containers.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::build::Root;

struct Env {
    root: Root,
    ids: std::cell::RefCell<Vec<String>>,
    /// Leaked-looking cgroups that existed before this test (a SIGKILLed rbuild of another
    /// run leaves its group until the next start cleans it): not this test's to answer for.
    cgroups_before: Vec<std::path::PathBuf>,
}

impl Env {
    fn new() -> Option<Env> {
        Some(Env {
            root: Root::new()?,
            ids: Default::default(),
            cgroups_before: leaked_cgroups(),
        })
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        c.args(args).env("RBUILD_ROOT", self.path());
        c
    }

    /// Runs `rbuild ARGS`, killed after `limit`. Its output is read while it runs, so a
    /// command that prints more than a pipe holds does not stall.
    fn run_limit(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        }
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rbuild {args:?} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
        self.note_ids();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_limit(args, Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rbuild {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Records the IDs of the root's containers (for the leftover checks).
    fn note_ids(&self) {
        if let Ok(rd) = std::fs::read_dir(self.path().join("containers-v1")) {
            let mut ids = self.ids.borrow_mut();
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && !ids.contains(&name) {
                    ids.push(name);
                }
            }
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Env {
    fn drop(&mut self) {
        self.note_ids();
        // Remove whatever a failed test left, then check that nothing is left.
        let out = self.cmd(&["ps", "-aq", "--no-trunc"]).output().unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.cmd(&["rm", "-f", id]).output();
        }
        if std::thread::panicking() {
            return;
        }
        let root = self.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(left.is_empty(), "mounts left behind: {left:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&root))
                .collect();
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {procs:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let bridge = rbuild_executor::net::Bridge::open(self.path()).unwrap();
        for id in self.ids.borrow().iter() {
            let veth = bridge.veth_name(id);
            // The kernel deletes the pair with the container's namespace, moments later.
            let link = Path::new("/sys/class/net").join(&veth);
            let deadline = Instant::now() + Duration::from_secs(5);
            while link.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!link.exists(), "veth {veth} of {id} left behind");
            if let Ok(rd) = std::fs::read_dir(rbuild_executor::net::DEFAULT_NETNS_DIR) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    assert!(!n.contains(&id[..12]), "netns {n} of {id} left behind");
                }
            }
        }
        let snaps = self.path().join("snapshotter-v1/snapshots");
        for e in std::fs::read_dir(&snaps).unwrap().flatten() {
            let meta = std::fs::read_to_string(e.path().join("meta.json")).unwrap_or_default();
            assert!(!meta.contains("\"ctr-"), "container snapshot left: {meta}");
        }
        let leaked: Vec<_> = leaked_cgroups()
            .into_iter()
            .filter(|g| !self.cgroups_before.contains(g))
            .collect();
        assert!(leaked.is_empty(), "cgroups left behind: {leaked:?}");
    }
}

/// rbuild's cgroups (`.../rbuild/run-<creator pid>-...`, v1 and v2) whose creator has exited:
/// the creator removes its group before it exits, so any such group leaked. Groups of other
/// tests' live processes are not counted.
fn leaked_cgroups() -> Vec<std::path::PathBuf> {
    fn parents(dir: &Path, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name() == "rbuild" {
                out.push(p);
            } else if depth > 0 {
                parents(&p, depth - 1, out);
            }
        }
    }
    let mut dirs = Vec::new();
    parents(Path::new("/sys/fs/cgroup"), 3, &mut dirs);
    let mut leaked = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("run-").and_then(|r| r.split('-').next()) else {
                continue;
            };
            // Checked in this order so a group removed just before its creator exited is
            // not counted.
            if !Path::new("/proc").join(pid).exists() && e.path().exists() {
                leaked.push(e.path());
            }
        }
    }
    leaked
}

#[test]
fn exit_codes() {
    let Some(env) = Env::new() else { return };
    assert_eq!(code(&env.run(&["run", "--rm", "busybox", "true"])), 0);
    assert_eq!(
        code(&env.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"])),
        3
    );
    let out = env.run(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(code(&out), 126, "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&out), 127);
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));
    let out = env.run(&["run", "--rm", "--pull", "never", "no-such-image", "true"]);
    assert_eq!(code(&out), 125);
    assert_eq!(
        code(&env.run(&["run", "--rm", "--no-such-flag", "busybox"])),
        125
    );
}

#[test]
fn env_workdir_user_pid1_hostname() {
    let Some(env) = Env::new() else { return };
    let out = env.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/work/dir",
        "-u",
        "1000:1000",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g) $(hostname) $$ $PATH",
    ]);
    assert_eq!(
        out.trim(),
        "bar /work/dir 1000:1000 box 1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

#[test]
fn network_none_has_only_lo() {
    let Some(env) = Env::new() else { return };
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
}

#[test]
fn rm_leaves_nothing_and_ps_lists_exited() {
    let Some(env) = Env::new() else { return };
    env.ok(&["run", "--rm", "busybox", "touch", "/file"]);
    let dirs: Vec<_> = std::fs::read_dir(env.path().join("containers-v1"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
    assert_eq!(
        code(&env.run(&["run", "--name", "kept", "busybox", "sh", "-c", "exit 5"])),
        5
    );
    let ps = env.ok(&["ps", "-a"]);
    let line = ps.lines().find(|l| l.contains("kept")).unwrap_or_default();
    assert!(line.contains("Exited (5)"), "{ps}");
    assert!(line.contains("busybox"), "{ps}");
    assert!(!env.ok(&["ps"]).contains("kept"));
    let inspect = env.ok(&["inspect", "kept"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["State"]["ExitCode"], 5);
    assert_eq!(v[0]["Name"], "/kept");
    env.ok(&["rm", "kept"]);
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn detached_logs_stop_rm() {
    let Some(env) = Env::new() else { return };
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("bg") && ps.contains("Up"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = env.run(&["logs", "bg"]);
        if stdout(&out).contains("hello") && String::from_utf8_lossy(&out.stderr).contains("oops") {
            break;
        }
        assert!(Instant::now() < deadline, "no logs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(
        env.path()
            .join("containers-v1")
            .join(id.trim())
            .join(format!("{}-json.log", id.trim())),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["log"].as_str().unwrap().ends_with('\n'));
    assert!(first["time"].is_string());
    let start = Instant::now();
    env.ok(&["stop", "-t", "20", "bg"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "SIGTERM was not delivered"
    );
    assert_eq!(env.ok(&["wait", "bg"]).trim(), "0");
    assert!(env.ok(&["logs", "--tail", "1", "bg"]).contains("bye"));
    assert!(env.ok(&["ps", "-a"]).contains("Exited (0)"));
    env.ok(&["rm", "bg"]);
    assert!(env.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn published_port_reachable_from_host() {
    let Some(env) = Env::new() else { return };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let publish = format!("127.0.0.1:{port}:8080");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "webhost",
        "-p",
        &publish,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        })();
        match attempt {
            Ok(r) if r.contains("webhost") => break r,
            _ if Instant::now() > deadline => panic!("port {port} not reachable: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.contains("200"), "{body}");
    assert!(
        env.ok(&["ps"])
            .contains(&format!("127.0.0.1:{port}->8080/tcp"))
    );
    env.ok(&["rm", "-f", "web"]);
}

#[test]
fn exec_into_running_container() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run", "-d", "--name", "ex", "-e", "A=1", "busybox", "sleep", "300",
    ]);
    let out = env.ok(&[
        "exec",
        "-e",
        "B=2",
        "-w",
        "/tmp",
        "ex",
        "sh",
        "-c",
        "echo $A $B $(pwd) $(hostname)",
    ]);
    let cfg_host = out
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    assert_eq!(out.trim(), format!("1 2 /tmp {cfg_host}"));
    let ps = env.ok(&["exec", "ex", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 300")),
        "{ps}"
    );
    assert_eq!(code(&env.run(&["exec", "ex", "sh", "-c", "exit 4"])), 4);
    assert_eq!(code(&env.run(&["exec", "ex", "no-such-command"])), 127);
    assert_eq!(code(&env.run(&["exec", "-u", "1000", "ex", "id", "-u"])), 0);
    assert!(env.ok(&["top", "ex"]).contains("sleep 300"));
    // An exec'd process is the container's too (its cgroup), though not a child of PID 1.
    let mut exec = env
        .cmd(&["exec", "ex", "sleep", "123"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut top = String::new();
    for _ in 0..200 {
        top = env.ok(&["top", "ex"]);
        if top.contains("sleep 123") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(top.contains("sleep 123"), "{top}");
    let _ = exec.kill();
    let _ = exec.wait();
    // -d returns at once and the command runs on its own, with -e, -w and -u applied.
    let out = env.run(&[
        "exec",
        "-d",
        "-e",
        "C=3",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "ex",
        "sh",
        "-c",
        "sleep 1; echo $C $(pwd) $(id -u) > /tmp/detached",
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    let detached = loop {
        let o = env.run(&["exec", "ex", "cat", "/tmp/detached"]);
        if code(&o) == 0 {
            break stdout(&o);
        }
        assert!(Instant::now() < deadline, "the detached exec never wrote");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(detached.trim(), "3 /tmp 1000");
    let start = Instant::now();
    env.ok(&["stop", "-t", "1", "ex"]);
    assert!(start.elapsed() < Duration::from_secs(15));
    env.ok(&["rm", "ex"]);
}

#[test]
fn memory_limit_oom_is_137() {
    let Some(env) = Env::new() else { return };
    let out = env.run_limit(
        &[
            "run",
            "--rm",
            "-m",
            "32m",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "tail /dev/zero",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code(&out), 137, "{}", String::from_utf8_lossy(&out.stderr));
}

/// Docker's behaviour: the OOM killer hitting a child leaves the main process's status
/// (not 137), and `OOMKilled` still tells.
#[test]
fn oom_kill_of_a_child_keeps_the_containers_exit_status() {
    let Some(env) = Env::new() else { return };
    let out = env.run_limit(
        &[
            "run",
            "--name",
            "oomchild",
            "-m",
            "32m",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "(tail /dev/zero); echo child $?; exit 3",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "child 137");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "oomchild"])).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], true, "{v}");
    assert_eq!(v[0]["State"]["ExitCode"], 3, "{v}");
    env.ok(&["rm", "oomchild"]);
}

mod bridge;
mod commit;
mod glibc;
mod lifecycle;
mod prune;
mod security;
mod tty;
mod volumes;
