//! Terminals: the container's pseudo-terminal (opened inside its `/dev/pts`), making it the
//! controlling terminal, passing the master to the caller over a unix socket, window sizes
//! and raw mode of the caller's own terminal.

#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::pty::Winsize;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::error::{Error, Result};

/// A terminal pair opened in the current mount namespace's `/dev/ptmx`.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's path (`/dev/pts/0` in a container's fresh devpts).
    pub name: PathBuf,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// `openpty(3)` with an initial window size (rows, cols).
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty> {
    let ws = size.map(|(r, c)| winsize(r, c));
    let p = nix::pty::openpty(ws.as_ref(), None).map_err(|e| Error::sys("openpty", e))?;
    let name = nix::unistd::ttyname(&p.slave).map_err(|e| Error::sys("ttyname", e))?;
    Ok(Pty {
        master: p.master,
        slave: p.slave,
        name,
    })
}

/// Makes `tty` the controlling terminal of this process (a session leader, after
/// `setsid`) and its stdin, stdout and stderr.
pub fn make_controlling_tty(tty: &OwnedFd) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal from another session) and
    // touches no memory of ours; the descriptor is open for the whole call.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys("TIOCSCTTY", Errno::last()));
    }
    nix::unistd::dup2_stdin(tty).map_err(|e| Error::sys("dup2 stdin", e))?;
    nix::unistd::dup2_stdout(tty).map_err(|e| Error::sys("dup2 stdout", e))?;
    nix::unistd::dup2_stderr(tty).map_err(|e| Error::sys("dup2 stderr", e))?;
    Ok(())
}

/// The window size (rows, cols) of terminal `fd`; `None` when it is not a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = winsize(0, 0);
    // SAFETY: TIOCGWINSZ writes one `struct winsize` (nix's Winsize is `repr(C)` and the
    // same type as libc's) into `ws`, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws as *mut Winsize) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of terminal `fd` (a pty master: the kernel signals SIGWINCH to the
/// foreground process group of its slave).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let ws = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from `ws`, which lives for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const Winsize) } < 0 {
        return Err(Error::sys("TIOCSWINSZ", Errno::last()));
    }
    Ok(())
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// A connected pair of unix sockets (close-on-exec) for passing a descriptor.
pub fn fd_socketpair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))
}

/// Sends descriptor `fd` over the unix socket `sock`.
pub fn send_fd(sock: impl AsFd, fd: impl AsFd) -> Result<()> {
    let (sock, fd) = (sock.as_fd(), fd.as_fd());
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"t")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send terminal descriptor", e))?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`]; `None` when the peer closed without one.
pub fn recv_fd(sock: impl AsFd) -> Result<Option<OwnedFd>> {
    let sock = sock.as_fd();
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(|e| Error::sys("receive terminal descriptor", e))?,
        }
    };
    let mut got = None;
    for c in msg.cmsgs().map_err(|e| Error::sys("control message", e))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in this process for this message;
                // nothing else refers to it, so taking ownership is sound.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    Ok(got)
}

/// The caller's terminal in raw mode; the saved settings come back on drop (every return
/// and unwinding path of the scope holding it).
#[derive(Debug)]
pub struct RawTerminal {
    fd: OwnedFd,
    saved: Termios,
}

impl RawTerminal {
    /// Puts terminal `fd` in raw mode (`cfmakeraw`, as Docker's CLI does for `-it`).
    pub fn enable(fd: BorrowedFd<'_>) -> Result<RawTerminal> {
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| Error::Sandbox(format!("dup terminal: {e}")))?;
        let saved = tcgetattr(fd.as_fd()).map_err(|e| Error::sys("tcgetattr", e))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw).map_err(|e| Error::sys("tcsetattr", e))?;
        Ok(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
