//! Pseudo-terminals for `rbuild run -t` and `exec -t`, made the way runc makes them: the
//! container process opens the pty inside the container (its own devpts instance, so `tty`
//! prints `/dev/pts/0`), makes the slave its controlling terminal and stdio, and passes the
//! master back over a unix socket (the init's fd 5). The caller copies the master's output
//! out ([`PtyIo::on_output`]) and gets a duplicate of the master for input and window-size
//! changes ([`PtyIo::on_master`]).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::sys;

pub use crate::sys::RawTerminal;

/// The descriptor number of the terminal socket in the sandbox and exec inits.
pub(crate) const CONSOLE_FD: i32 = 5;

/// What the init needs to open the terminal: its initial size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TtySpec {
    /// Rows and columns, set before the process starts (`None`: the kernel's 0x0).
    pub size: Option<(u16, u16)>,
}

/// The caller's side of a process's terminal.
pub struct PtyIo<'a> {
    pub tty: TtySpec,
    /// Called once with a duplicate of the master when the process has its terminal (for
    /// copying input to it and forwarding window-size changes).
    pub on_master: Option<Box<dyn FnOnce(OwnedFd) + 'a>>,
    /// The terminal's output, as it comes.
    pub on_output: &'a mut dyn FnMut(&[u8]),
}

impl std::fmt::Debug for PtyIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyIo").field("tty", &self.tty).finish()
    }
}

/// Whether `fd` (e.g. `std::io::stdin().as_fd()`) is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    sys::is_terminal(fd)
}

/// The window size (rows, cols) of terminal `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    sys::window_size(fd)
}

/// Copies the window size of terminal `from` to the pty master `to` (the process gets
/// SIGWINCH when it changed).
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<()> {
    match sys::window_size(from) {
        Some((rows, cols)) => sys::set_window_size(to, rows, cols),
        None => Ok(()),
    }
}

/// Sends descriptor `fd` (a terminal master) over the unix socket `sock` (`rbuild attach`).
pub fn send_fd(sock: impl AsFd, fd: impl AsFd) -> Result<()> {
    sys::send_fd(sock, fd)
}

/// Receives a descriptor sent with [`send_fd`]; `None` when the peer closed without one.
pub fn recv_fd(sock: impl AsFd) -> Result<Option<OwnedFd>> {
    sys::recv_fd(sock)
}

/// In the container process, before dropping privileges: opens the pty in the current
/// `/dev/pts`, owned by `uid` (group `tty`, as runc does), makes it the controlling terminal
/// and stdio of a new session, binds it over `/dev/console` when `console`, and sends the
/// master to the caller over `sock`.
pub(crate) fn setup_console(sock: &OwnedFd, tty: &TtySpec, uid: u32, console: bool) -> Result<()> {
    let _ = nix::unistd::setsid();
    let pty = sys::open_pty(tty.size)?;
    nix::unistd::fchown(
        &pty.slave,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(5)),
    )
    .map_err(|e| Error::sys(format!("chown {}", pty.name.display()), e))?;
    if console {
        let target = Path::new("/dev/console");
        if std::fs::symlink_metadata(target).is_err() {
            File::create(target).map_err(|e| Error::io("create", target, e))?;
        }
        sys::bind_mount(&pty.name, target, false, false)?;
    }
    sys::make_controlling_tty(&pty.slave)?;
    sys::send_fd(sock, &pty.master)
}

/// The caller's loop while the process runs on a terminal: receives the master on `sock`,
/// hands a duplicate to `io.on_master`, copies the output to `io.on_output` and collects the
/// init's report from `report` until it closes; the terminal is drained until every slave is
/// closed (or for 2 s after the report, for processes left holding it). `tick` runs about
/// every 100 ms (cancellation).
pub(crate) fn pump(
    sock: OwnedFd,
    report: &mut File,
    io: &mut PtyIo<'_>,
    mut tick: impl FnMut(),
) -> Result<Vec<u8>> {
    let mut sock = Some(sock);
    let mut master: Option<File> = None;
    let mut report_open = true;
    let mut report_buf = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut drain_deadline: Option<Instant> = None;
    loop {
        tick();
        if !report_open {
            if sock.is_none() && master.is_none() {
                break;
            }
            let d = *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
            if Instant::now() > d {
                break;
            }
        }
        let mut fds = Vec::new();
        if let Some(s) = &sock {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if let Some(m) = &master {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if report_open {
            fds.push(PollFd::new(report.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let mut ready = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect::<Vec<_>>()
            .into_iter();
        drop(fds);
        let sock_ready = sock.is_some() && ready.next() == Some(true);
        let master_ready = master.is_some() && ready.next() == Some(true);
        let report_ready = report_open && ready.next() == Some(true);
        if master_ready && let Some(m) = master.as_mut() {
            match m.read(&mut buf) {
                // EIO: every slave is closed.
                Ok(0) | Err(_) => master = None,
                Ok(n) => (io.on_output)(&buf[..n]),
            }
        }
        if sock_ready && let Some(s) = sock.take() {
            if let Some(m) = sys::recv_fd(&s).ok().flatten() {
                if let Some(cb) = io.on_master.take()
                    && let Ok(dup) = m.try_clone()
                {
                    cb(dup);
                }
                master = Some(File::from(m));
            }
        }
        if report_ready {
            match report.read(&mut buf) {
                Ok(0) | Err(_) => report_open = false,
                Ok(n) => report_buf.extend_from_slice(&buf[..n]),
            }
        }
    }
    Ok(report_buf)
}
