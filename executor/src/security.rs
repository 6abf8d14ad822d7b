//! A sandboxed process's security settings as `docker run` spells them: capabilities
//! (`--cap-add`/`--cap-drop`, `--privileged`), the seccomp profile (`--security-opt
//! seccomp=...`), resource limits (`--ulimit`), the size of `/dev/shm` and the cgroup
//! namespace. Pure values and their validation; the sandbox init applies them.

use std::collections::BTreeSet;
use std::str::FromStr;

use caps::Capability;

use crate::error::{Error, Result};
use crate::seccomp::Profile;

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's default size of `/dev/shm` (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Which seccomp filter the process gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Seccomp {
    /// rbuild's version of Docker's default profile ([`crate::seccomp::default_profile`]).
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (`--security-opt seccomp=PROFILE.json`).
    Profile(Profile),
}

/// One `--ulimit NAME=SOFT[:HARD]`; `u64::MAX` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The ulimit names Docker accepts.
pub const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Security settings of a sandboxed process (Docker's defaults when `Default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Security {
    /// Capabilities added to / dropped from Docker's default set: `CAP_*` names or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: Seccomp,
    pub ulimits: Vec<Ulimit>,
    /// Size of the `/dev/shm` tmpfs (default [`DEFAULT_SHM_SIZE`]).
    pub shm_size: Option<u64>,
    /// A private cgroup namespace (`--cgroupns private`): `/proc/self/cgroup` shows `/`.
    pub cgroupns_private: bool,
}

/// `chown`, `cap_chown`, `CAP_CHOWN` → `CAP_CHOWN`; `all` → `ALL`; unknown names are an
/// error, as in Docker.
pub fn normalize_cap(name: &str) -> Result<String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    Capability::from_str(&full)
        .map(|c| c.to_string())
        .map_err(|_| Error::InvalidSpec(format!("unknown capability: {name:?}")))
}

/// The capability set of the process, as Docker's `TweakCapabilities`: every capability
/// when privileged; with `--cap-add ALL` all but the dropped ones; with `--cap-drop ALL`
/// only the added ones; otherwise the default set minus the dropped plus the added ones.
pub fn effective_caps(sec: &Security, privileged: bool) -> Result<BTreeSet<String>> {
    let all: BTreeSet<String> = caps::all().iter().map(|c| c.to_string()).collect();
    if privileged {
        return Ok(all);
    }
    let add = sec
        .cap_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<BTreeSet<_>>>()?;
    let drop = sec
        .cap_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<BTreeSet<_>>>()?;
    let mut out: BTreeSet<String> = if add.contains("ALL") {
        all.difference(&drop).cloned().collect()
    } else if drop.contains("ALL") {
        add.clone()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add.iter().cloned())
            .collect()
    };
    out.remove("ALL");
    Ok(out)
}

/// Parses `NAME=SOFT[:HARD]` (`-1` is unlimited), as `docker run --ulimit`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = |why: &str| Error::InvalidSpec(format!("invalid ulimit argument: {s:?}: {why}"));
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let name = name.trim().to_ascii_lowercase();
    if !ULIMIT_NAMES.contains(&name.as_str()) {
        return Err(bad(&format!("invalid ulimit type: {name}")));
    }
    let num = |v: &str| -> Result<u64> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            t => t.parse::<u64>().map_err(|_| bad("invalid value")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(bad(&format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit { name, soft, hard })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str]) -> Security {
        Security {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Security::default()
        }
    }

    #[test]
    fn cap_names_normalise_like_docker() {
        assert_eq!(normalize_cap("chown").unwrap(), "CAP_CHOWN");
        assert_eq!(normalize_cap("cap_net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(normalize_cap("All").unwrap(), "ALL");
        let e = normalize_cap("FLY").unwrap_err().to_string();
        assert!(e.contains("unknown capability"), "{e}");
    }

    #[test]
    fn caps_are_default_plus_added_minus_dropped() {
        let c = effective_caps(&sec(&["NET_ADMIN"], &["chown"]), false).unwrap();
        assert!(c.contains("CAP_NET_ADMIN"));
        assert!(!c.contains("CAP_CHOWN"));
        assert_eq!(c.len(), 14);
        let c = effective_caps(&sec(&["KILL"], &["ALL"]), false).unwrap();
        assert_eq!(c.into_iter().collect::<Vec<_>>(), ["CAP_KILL"]);
        let c = effective_caps(&sec(&["ALL"], &["SYS_ADMIN"]), false).unwrap();
        assert!(!c.contains("CAP_SYS_ADMIN") && c.contains("CAP_SYS_TIME"));
        let c = effective_caps(&sec(&[], &["ALL"]), true).unwrap();
        assert!(c.contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn ulimits_parse_like_docker() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }
}
