//! `rbuild run -t` / `exec -t` through a real pseudo-terminal: the test opens a pty (40x100),
//! runs rbuild as the session leader on its slave (`setsid -c`), types into the master and
//! reads what a user would see.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{LocalFlags, tcgetattr};

use super::{Env, code, stdout};

/// rbuild running on a pty the test holds the master of.
struct Term {
    child: Child,
    master: std::fs::File,
    /// Kept to read the terminal's settings after rbuild exits.
    slave: OwnedFd,
    slave_path: std::path::PathBuf,
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Term {
    fn spawn(env: &Env, args: &[&str]) -> Term {
        let ws = Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).unwrap();
        let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
        let mut cmd = std::process::Command::new("setsid");
        cmd.arg("-c")
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .env("RBUILD_ROOT", env.path())
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Term {
            child,
            master,
            slave: pty.slave,
            slave_path,
            rx,
            seen: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits until the output contains `what` (panics with the output after 60 s).
    fn expect(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the terminal: {:?}",
                self.text()
            );
            if let Ok(b) = self.rx.recv_timeout(Duration::from_millis(50)) {
                self.seen.extend_from_slice(&b);
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits for rbuild to exit; returns its exit code (the output is complete after).
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rbuild did not exit; terminal: {:?}", self.text());
            }
            if let Ok(b) = self.rx.recv_timeout(Duration::from_millis(50)) {
                self.seen.extend_from_slice(&b);
            }
        };
        // Everything rbuild wrote is in the pty already; a quiet second ends it.
        while let Ok(b) = self.rx.recv_timeout(Duration::from_secs(1)) {
            self.seen.extend_from_slice(&b);
        }
        status.code().unwrap_or(-1)
    }

    /// Types Ctrl-C until rbuild exits (a SIGINT that lands between the shell's fork and
    /// the command's exec is the shell's, not the command's); returns the exit code.
    fn interrupt(&mut self) -> i32 {
        for _ in 0..30 {
            self.send(&[0x03]);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if self.child.try_wait().unwrap().is_some() {
                    return self.wait();
                }
                if let Ok(b) = self.rx.recv_timeout(Duration::from_millis(50)) {
                    self.seen.extend_from_slice(&b);
                }
            }
        }
        self.wait()
    }

    /// Whether the terminal is back in canonical (cooked) mode.
    fn cooked(&self) -> bool {
        tcgetattr(&self.slave)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }
}

#[test]
fn run_it_prompts_reads_and_sees_its_terminal() {
    let Some(env) = Env::new() else { return };
    let mut t = Term::spawn(
        &env,
        &[
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "printf 'name? '; read n; echo \"hello $n\"; [ -t 0 ] && echo isatty; stty size; tty",
        ],
    );
    t.expect("name? ");
    t.send(b"world\n");
    let rc = t.wait();
    let out = t.text();
    assert_eq!(rc, 0, "{out:?}");
    assert!(out.contains("hello world\r\n"), "{out:?}");
    assert!(out.contains("isatty\r\n"), "{out:?}");
    assert!(out.contains("40 100\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    assert!(t.cooked(), "the terminal was left in raw mode");
    env.note_ids();
}

#[test]
fn ctrl_c_reaches_the_container_as_sigint() {
    let Some(env) = Env::new() else { return };
    let mut t = Term::spawn(
        &env,
        &[
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "trap 'echo interrupted; exit 130' INT; echo ready; sleep 100; echo not-interrupted",
        ],
    );
    t.expect("ready");
    let rc = t.interrupt();
    let out = t.text();
    assert_eq!(rc, 130, "{out:?}");
    assert!(out.contains("interrupted\r\n"), "{out:?}");
    assert!(!out.contains("not-interrupted"), "{out:?}");
    assert!(t.cooked(), "the terminal was left in raw mode");
}

#[test]
fn window_size_changes_reach_the_container() {
    let Some(env) = Env::new() else { return };
    let mut t = Term::spawn(
        &env,
        &[
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "trap 'stty size; exit 3' WINCH; stty size; echo ready; while :; do sleep 0.1; done",
        ],
    );
    t.expect("ready");
    assert!(t.text().contains("40 100"), "{:?}", t.text());
    // Resizing our terminal signals SIGWINCH to rbuild (its foreground process group).
    let st = std::process::Command::new("stty")
        .arg("-F")
        .arg(&t.slave_path)
        .args(["rows", "50", "cols", "120"])
        .status()
        .unwrap();
    assert!(st.success());
    t.expect("50 120");
    assert_eq!(t.wait(), 3, "{:?}", t.text());
}

#[test]
fn exec_it_gets_its_own_terminal() {
    let Some(env) = Env::new() else { return };
    env.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    let mut t = Term::spawn(
        &env,
        &[
            "exec",
            "-it",
            "box",
            "sh",
            "-c",
            "tty; stty size; printf 'say: '; read x; echo \"got $x\"; exit 7",
        ],
    );
    t.expect("say: ");
    t.send(b"abc\n");
    let rc = t.wait();
    let out = t.text();
    assert_eq!(rc, 7, "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("40 100\r\n"), "{out:?}");
    assert!(out.contains("got abc\r\n"), "{out:?}");
    assert!(t.cooked(), "the terminal was left in raw mode");
    env.ok(&["rm", "-f", "box"]);
}

#[test]
fn tty_without_a_terminal_and_detached() {
    let Some(env) = Env::new() else { return };
    // -it with stdin not a terminal: Docker's refusal.
    let out = env.run(&["run", "--rm", "-it", "busybox", "true"]);
    assert_eq!(code(&out), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -t alone still gets a terminal; its output has CRLF line ends.
    let out = env.run(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo tty-yes",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "tty-yes\r\n");
    // -d -t: the monitor owns the terminal and logs it as stdout.
    env.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "dt",
        "busybox",
        "sh",
        "-c",
        "echo hi; tty",
    ]);
    assert_eq!(env.ok(&["wait", "dt"]).trim(), "0");
    let logs = env.run(&["logs", "dt"]);
    assert_eq!(stdout(&logs), "hi\r\n/dev/pts/0\r\n");
    assert!(logs.stderr.is_empty());
    env.ok(&["rm", "dt"]);
}

#[test]
fn ctrl_c_with_init_interrupts_sleep() {
    let Some(env) = Env::new() else { return };
    // `sleep` is the init's child (not PID 1, which ignores SIGINT): Ctrl-C kills it and the
    // init exits 128+2.
    let mut t = Term::spawn(
        &env,
        &[
            "run",
            "--rm",
            "-it",
            "--init",
            "busybox",
            "sh",
            "-c",
            "echo ready; exec sleep 100",
        ],
    );
    t.expect("ready");
    assert_eq!(t.interrupt(), 130, "{:?}", t.text());
    assert!(t.cooked(), "the terminal was left in raw mode");
}

#[test]
fn start_ai_attaches_a_created_tty_container() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "create",
        "-it",
        "--name",
        "s",
        "busybox",
        "sh",
        "-c",
        "printf 'in? '; read x; echo \"got $x\"; tty",
    ]);
    let mut t = Term::spawn(&env, &["start", "-ai", "s"]);
    t.expect("in? ");
    t.send(b"xyz\n");
    let rc = t.wait();
    let out = t.text();
    assert_eq!(rc, 0, "{out:?}");
    assert!(out.contains("got xyz\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    // The terminal's output is in the log too, as stdout.
    let logs = env.ok(&["logs", "s"]);
    assert!(logs.contains("got xyz\r\n"), "{logs:?}");
    env.ok(&["rm", "s"]);
}

#[test]
fn run_it_command_not_found_is_127() {
    let Some(env) = Env::new() else { return };
    let mut t = Term::spawn(&env, &["run", "--rm", "-it", "busybox", "no-such-cmd"]);
    let rc = t.wait();
    let out = t.text();
    assert_eq!(rc, 127, "{out:?}");
    assert!(
        out.contains("executable file not found in $PATH\r\n"),
        "{out:?}"
    );
    assert!(t.cooked(), "the terminal was left in raw mode");
}

#[test]
fn attach_to_a_detached_tty_container_and_detach() {
    let Some(env) = Env::new() else { return };
    env.ok(&["run", "-dit", "--name", "a", "busybox", "sh"]);
    let mut t = Term::spawn(&env, &["attach", "a"]);
    t.send(b"echo hi-$((40+2)); stty size\n");
    t.expect("hi-42\r\n");
    t.expect("40 100\r\n");
    // Ctrl-P Ctrl-Q: detached, the container keeps running.
    t.send(&[0x10, 0x11]);
    assert_eq!(t.wait(), 0, "{:?}", t.text());
    assert!(t.cooked(), "the terminal was left in raw mode");
    assert!(env.ok(&["ps"]).contains(" a\n"));
    // Attached again, `exit 4` ends the container and attach returns its code.
    let mut t = Term::spawn(&env, &["attach", "a"]);
    t.send(b"echo again; exit 4\n");
    t.expect("again\r\n");
    assert_eq!(t.wait(), 4, "{:?}", t.text());
    assert_eq!(env.ok(&["wait", "a"]).trim(), "4");
    let out = env.run(&["attach", "a"]);
    assert_ne!(code(&out), 0);
    env.ok(&["rm", "a"]);
}
