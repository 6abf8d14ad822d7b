//! Process helpers for container lifecycle commands (`rbuild stop`, `kill`, `exec`, `top`):
//! signal names, sending signals, finding a sandbox's container process.

use crate::error::{Error, Result};

/// Parses `SIGTERM`, `TERM`, `term` or `15` into a signal number.
pub fn parse_signal(s: &str) -> Result<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if nix::sys::signal::Signal::try_from(n).is_ok() {
            return Ok(n);
        }
        return Err(Error::InvalidSpec(format!("invalid signal: {s}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::InvalidSpec(format!("invalid signal: {s}")))
}

/// Sends signal `sig` to `pid`.
pub fn send_signal(pid: i32, sig: i32) -> Result<()> {
    crate::sys::send_signal(pid, sig)
}

/// Whether `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The children of `pid` (from `/proc/<pid>/task/*/children`).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// The container process (PID 1 of its PID namespace) of the sandbox init `init_pid`, once
/// it has forked it.
pub fn container_pid(init_pid: i32) -> Option<i32> {
    children(init_pid).into_iter().next()
}

/// Every process in the PID namespace of `pid` (itself and its descendants), host PIDs.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out
}
