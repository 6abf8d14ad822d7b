//! The security and resource flags of `rbuild run`/`create`, spelled and validated as
//! `docker run`'s: `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`, `--ulimit`,
//! `--shm-size`, `--memory-swap`, `--cpu-shares`, `--cpuset-cpus`, `--cgroupns`.

use clap::Args;
use rbuild_executor::cgroup::{self, Limits};
use rbuild_executor::seccomp::Profile;
use rbuild_executor::security::{self, Seccomp, Security};
use serde::{Deserialize, Serialize};

/// The flags (flattened into `CreateArgs`).
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// Add Linux capabilities (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (`CHOWN`, `ALL`)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges: every capability, no seccomp, no masked paths, host devices
    #[arg(long)]
    pub privileged: bool,
    /// Security options: `no-new-privileges[=true|false]`, `seccomp=unconfined|PROFILE.json`
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Ulimit options: `TYPE=SOFT[:HARD]` (`nofile=1024:2048`)
    #[arg(long = "ulimit", value_name = "TYPE=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,
    /// Memory plus swap limit (`-1`: unlimited swap; default twice `--memory`)
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (`0-3`, `0,1`)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Cgroup namespace: `host` or `private` (default: private on cgroup v2, host on v1)
    #[arg(long = "cgroupns", value_name = "MODE")]
    pub cgroupns: Option<String>,
}

/// What the container was created with (part of its `config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    pub privileged: bool,
    pub no_new_privs: bool,
    /// The `--security-opt` values as given (for `inspect`).
    pub security_opt: Vec<String>,
    pub security: Security,
}

/// Docker's boolean spellings.
fn parse_bool(opt: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "invalid --security-opt {opt:?}: invalid boolean {v:?}"
        )),
    }
}

/// Validates the flags, fills `limits` (memory+swap, shares, cpuset) and returns the
/// container's security settings.
pub fn security_config(args: &SecurityArgs, limits: &mut Limits) -> Result<SecurityConfig, String> {
    let mut sec = Security::default();
    for c in &args.cap_add {
        sec.cap_add
            .push(security::normalize_cap(c).map_err(|e| e.to_string())?);
    }
    for c in &args.cap_drop {
        sec.cap_drop
            .push(security::normalize_cap(c).map_err(|e| e.to_string())?);
    }
    let mut no_new_privs = false;
    for opt in &args.security_opt {
        // Docker accepts `key=value` and the older `key:value`.
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        match k {
            "no-new-privileges" => no_new_privs = parse_bool(opt, v)?,
            "seccomp" => {
                sec.seccomp = match v {
                    "unconfined" => Seccomp::Unconfined,
                    "" => return Err(format!("invalid --security-opt {opt:?}: no profile")),
                    path => Seccomp::Profile(
                        Profile::from_file(std::path::Path::new(path))
                            .map_err(|e| e.to_string())?,
                    ),
                }
            }
            // No AppArmor or SELinux here: accepted, like Docker on a host without them.
            "apparmor" | "label" => {}
            _ => return Err(format!("invalid --security-opt: {opt:?}")),
        }
    }
    for u in &args.ulimits {
        sec.ulimits
            .push(security::parse_ulimit(u).map_err(|e| e.to_string())?);
    }
    if let Some(s) = &args.shm_size {
        let bytes = super::args::parse_bytes(s)?;
        if bytes == 0 {
            return Err(format!("invalid --shm-size {s:?}: must be greater than 0"));
        }
        sec.shm_size = Some(bytes);
    }
    sec.cgroupns_private = match args.cgroupns.as_deref() {
        None => cgroup::version() == cgroup::Version::V2,
        Some("private") => true,
        Some("host") => false,
        Some(m) => return Err(format!("invalid cgroup namespace mode: {m:?}")),
    };
    limits.memory_swap_bytes = memory_swap(limits.memory_bytes, args.memory_swap.as_deref())?;
    if let Some(s) = args.cpu_shares
        && s > 0
    {
        limits.cpu_shares = Some(s.clamp(2, 262_144));
    }
    if let Some(c) = &args.cpuset_cpus {
        let ok = !c.is_empty()
            && c.split(',').all(|part| {
                let mut r = part.splitn(2, '-');
                r.all(|n| n.parse::<u32>().is_ok())
            });
        if !ok {
            return Err(format!("invalid value {c:?} for cpuset cpus"));
        }
        limits.cpuset_cpus = Some(c.clone());
    }
    // Unknown capability names fail here rather than when the container starts.
    security::effective_caps(&sec, args.privileged).map_err(|e| e.to_string())?;
    Ok(SecurityConfig {
        privileged: args.privileged,
        no_new_privs,
        security_opt: args.security_opt.clone(),
        security: sec,
    })
}

/// Docker's `--memory-swap`: needs `--memory`, at least as large; `-1` unlimited; unset
/// (or 0) is twice the memory limit.
fn memory_swap(memory: Option<u64>, flag: Option<&str>) -> Result<Option<i64>, String> {
    let swap = match flag.map(str::trim) {
        None | Some("0") => None,
        Some("-1") => Some(-1),
        Some(s) => Some(
            i64::try_from(super::args::parse_bytes(s)?)
                .map_err(|_| format!("invalid --memory-swap {s:?}"))?,
        ),
    };
    match (memory, swap) {
        (None, Some(_)) => Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
                .to_string(),
        ),
        (Some(m), Some(s)) if s >= 0 && (s as u64) < m => Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".to_string(),
        ),
        (Some(m), None) => Ok(i64::try_from(m.saturating_mul(2)).ok()),
        (_, s) => Ok(s),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_swap_validates_like_docker() {
        let m = 64 << 20;
        assert_eq!(memory_swap(Some(m), None).unwrap(), Some(2 * m as i64));
        assert_eq!(memory_swap(Some(m), Some("-1")).unwrap(), Some(-1));
        assert_eq!(
            memory_swap(Some(m), Some("128m")).unwrap(),
            Some(2 * m as i64)
        );
        assert!(
            memory_swap(None, Some("128m"))
                .unwrap_err()
                .contains("Memory limit")
        );
        assert!(
            memory_swap(Some(m), Some("32m"))
                .unwrap_err()
                .contains("larger than memory")
        );
        assert_eq!(memory_swap(None, None).unwrap(), None);
    }

    #[test]
    fn security_opts_parse() {
        let mut l = Limits::default();
        let a = SecurityArgs {
            security_opt: vec!["no-new-privileges".into(), "seccomp=unconfined".into()],
            cap_add: vec!["net_admin".into()],
            ..SecurityArgs::default()
        };
        let c = security_config(&a, &mut l).unwrap();
        assert!(c.no_new_privs);
        assert_eq!(c.security.seccomp, Seccomp::Unconfined);
        assert_eq!(c.security.cap_add, ["CAP_NET_ADMIN"]);
        let a = SecurityArgs {
            security_opt: vec!["no-new-privileges=false".into()],
            ..SecurityArgs::default()
        };
        assert!(!security_config(&a, &mut l).unwrap().no_new_privs);
        for bad in ["bogus=1", "no-new-privileges=maybe", "seccomp="] {
            let a = SecurityArgs {
                security_opt: vec![bad.into()],
                ..SecurityArgs::default()
            };
            assert!(security_config(&a, &mut l).is_err(), "{bad}");
        }
        let a = SecurityArgs {
            cap_drop: vec!["FLY".into()],
            ..SecurityArgs::default()
        };
        assert!(
            security_config(&a, &mut l)
                .unwrap_err()
                .contains("unknown capability")
        );
    }
}
