//! `rbuild attach` to a detached container. A container without a terminal is attached to
//! its output only: what it writes from now on (read from its json-file log as the monitor
//! writes it) goes to our stdout and stderr, SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed to it
//! (Docker's `--sig-proxy`), and we exit with its code. One started with `-i` reads a pipe
//! the monitor keeps; `attach` gets its write end the way a `-t` client gets the terminal
//! and copies our stdin into it.
//!
//! A `-t` container: the monitor owns the pty master; it listens on a unix socket
//! (`/run/rbuild/attach/<id>.sock`) and hands every client a duplicate of the master (over
//! `SCM_RIGHTS`: the client writes its keys and window size to it directly) and then a copy
//! of the terminal's output on the socket. Docker's detach keys (Ctrl-P
//! Ctrl-Q) leave the container running.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::{Containers, Status};
use super::{check_input_tty, code, fail};

/// Where the monitor of container `id` listens.
pub fn socket_path(id: &str) -> PathBuf {
    let base = if Path::new("/run").is_dir() {
        PathBuf::from("/run/rbuild/attach")
    } else {
        std::env::temp_dir().join("rbuild-attach")
    };
    base.join(format!("{id}.sock"))
}

/// The monitor's side: the attached clients.
pub struct Server {
    path: PathBuf,
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

impl Server {
    pub fn new(id: &str) -> Server {
        Server {
            path: socket_path(id),
            clients: Arc::default(),
        }
    }

    /// Starts accepting clients (from a thread); each gets a duplicate of `master`.
    pub fn listen(&self, master: OwnedFd) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(&self.path);
        let Ok(listener) = UnixListener::bind(&self.path) else {
            return;
        };
        let clients = self.clients.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if rbuild_executor::tty::send_fd(&stream, &master).is_err() {
                    continue;
                }
                // A client that stops reading is dropped rather than stalling the container.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                if let Ok(mut c) = clients.lock() {
                    c.push(stream);
                }
            }
        });
    }

    /// Copies terminal output to every client (dropping the ones that are gone).
    pub fn broadcast(&self, bytes: &[u8]) {
        if let Ok(mut c) = self.clients.lock() {
            c.retain_mut(|s| s.write_all(bytes).is_ok());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

enum Event {
    /// The container's terminal closed (it exited).
    Ended,
    /// The detach keys were typed.
    Detached,
}

/// `rbuild attach [--no-stdin] CONTAINER`.
pub fn attach_cmd(root: &Path, name: &str, no_stdin: bool) -> ExitCode {
    let containers = match Containers::open(root) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let id = match containers.find(name) {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let cfg = match containers.config(&id) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if containers.state(&id).status != Status::Running {
        return fail("You cannot attach to a stopped container, start it first");
    }
    if !cfg.tty {
        return attach_output(root, &containers, &id, cfg.interactive && !no_stdin);
    }
    let input = cfg.interactive && !no_stdin;
    if let Err(c) = check_input_tty(input, true) {
        return c;
    }
    let (stream, master) = match connect(&containers, &id, name) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let raw = match super::raw_terminal(input, true) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Ok(copy) = master.try_clone() {
        super::runtime::forward_window_size(copy);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let tx = tx.clone();
        let mut stream = stream;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = std::io::stdout();
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                }
            }
            let _ = tx.send(Event::Ended);
        });
    }
    if input {
        std::thread::spawn(move || {
            let mut master = std::fs::File::from(master);
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            // Docker's default detach keys: Ctrl-P Ctrl-Q.
            let mut after_p = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut chunk = Vec::with_capacity(n + 1);
                for &b in &buf[..n] {
                    if after_p {
                        after_p = false;
                        if b == 0x11 {
                            let _ = tx.send(Event::Detached);
                            return;
                        }
                        chunk.push(0x10);
                    }
                    if b == 0x10 {
                        after_p = true;
                    } else {
                        chunk.push(b);
                    }
                }
                if master.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
    } else {
        drop(master);
    }
    let event = rx.recv().unwrap_or(Event::Ended);
    drop(raw);
    match event {
        Event::Detached => {
            eprintln!("read escape sequence");
            ExitCode::SUCCESS
        }
        Event::Ended => match super::cmds::exit_code_when_recorded(&containers, &id) {
            Some(c) => code(c),
            None => ExitCode::SUCCESS,
        },
    }
}

/// Connects to the monitor's socket (it opens it once the process has its terminal or
/// stdin pipe) and receives that descriptor.
fn connect(containers: &Containers, id: &str, name: &str) -> Result<(UnixStream, OwnedFd), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(socket_path(id)) {
            Ok(s) => break s,
            Err(e) => {
                if Instant::now() > deadline || containers.state(id).status != Status::Running {
                    return Err(format!("attach to {name}: {e}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    match rbuild_executor::tty::recv_fd(&stream) {
        Ok(Some(fd)) => Ok((stream, fd)),
        Ok(None) => Err(format!("attach to {name}: the container's input is gone")),
        Err(e) => Err(format!("attach to {name}: {e}")),
    }
}

/// `attach` to a container without a terminal: its output from now on (and our stdin to
/// its stdin when it was started with `-i`), then its exit code.
fn attach_output(root: &Path, containers: &Containers, id: &str, input: bool) -> ExitCode {
    // Before any input: what it answers must not land before the point we follow from.
    let offset = super::cmds::log_end(containers, id);
    if input {
        let (_stream, pipe) = match connect(containers, id, id) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        std::thread::spawn(move || {
            let mut pipe = std::fs::File::from(pipe);
            // Our EOF ends the copy only: the container's stdin stays open, as Docker's.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut pipe);
        });
    }
    super::forward_signals(root, id, Arc::default());
    super::cmds::follow_log(containers, id, offset);
    match super::cmds::exit_code_when_recorded(containers, id) {
        Some(c) => code(c),
        None => ExitCode::SUCCESS,
    }
}
