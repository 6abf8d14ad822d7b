//! Seccomp profiles in Docker's JSON format and their compilation to BPF programs.
//!
//! A profile (`defaultAction`, `syscalls[{names, action, errnoRet, args[{index, value,
//! valueTwo, op}], includes, excludes}]`) is read as Docker reads it: unknown syscall names
//! are ignored, rules whose action is the default action are skipped (as runc does), and
//! `includes.caps` / `excludes.caps` / `includes.minKernel` select rules by the process's
//! capabilities and the running kernel (`excludes.minKernel`, an rbuild extension, drops a
//! rule on kernels at least that new).
//!
//! `seccompiler` (rust-vmm) builds the BPF. One of its filters has a single on-match
//! action, so a profile becomes several filters the kernel evaluates together, taking the
//! most severe verdict: one that returns `ALLOW` for every syscall some rule names (and the
//! default action otherwise), and one per other action that returns it for that action's
//! rules (and `ALLOW` otherwise). A syscall that matches a rule so gets that rule's action,
//! any other the default action — libseccomp's meaning. On x86_64 the rules are compiled
//! for 64-bit and for i386 numbers (each program judges its own architecture's calls and
//! passes the other's), a last program kills any third architecture, and a small one of our
//! own refuses x32-ABI syscall numbers, which would otherwise bypass a deny list.
//!
//! [`default_profile`] is rbuild's own policy written from Docker's documentation of its
//! default profile ("Significant syscalls blocked by the default profile"): a deny list
//! with EPERM (ENOSYS for `clone3`, so C libraries fall back to `clone`), with the same
//! capability-dependent exceptions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::error::{Error, Result};

/// A seccomp profile in Docker's format (fields rbuild does not use are ignored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// One entry of `syscalls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The old single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Selector,
    #[serde(default)]
    pub excludes: Selector,
}

/// A condition on a syscall argument (`op` is libseccomp's `SCMP_CMP_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u8,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// `includes` / `excludes` of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// rbuild's default profile (see the module docs).
pub fn default_profile() -> Profile {
    // The embedded profile is parsed by a unit test; a failure here is a build bug.
    serde_json::from_str(DEFAULT_PROFILE).unwrap_or_else(|_| Profile {
        default_action: "SCMP_ACT_ALLOW".into(),
        default_errno_ret: None,
        architectures: Vec::new(),
        syscalls: Vec::new(),
    })
}

impl Profile {
    /// Reads and checks a profile file (`--security-opt seccomp=FILE`): the error names the
    /// file and what is wrong with it.
    pub fn from_file(path: &Path) -> Result<Profile> {
        let text = std::fs::read(path).map_err(|e| Error::io("read seccomp profile", path, e))?;
        let bad = |why: String| Error::Seccomp(format!("profile {}: {why}", path.display()));
        let p: Profile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        p.check().map_err(|e| bad(e.to_string()))?;
        Ok(p)
    }

    /// Validates actions and operators (without compiling).
    pub fn check(&self) -> Result<()> {
        action(&self.default_action, self.default_errno_ret)?;
        for r in &self.syscalls {
            action(&r.action, r.errno_ret)?;
            for a in &r.args {
                condition(a)?;
            }
        }
        Ok(())
    }
}

fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32)),
        other => return Err(Error::Seccomp(format!("unknown action {other:?}"))),
    })
}

fn condition(a: &Arg) -> Result<SeccompCondition> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        // libseccomp: `value` is the mask, `valueTwo` the datum.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(Error::Seccomp(format!("unknown operator {other:?}"))),
    };
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Seccomp(format!("argument {}: {e}", a.index)))
}

/// Names this machine's architecture goes by in profiles.
fn native_arch() -> Result<(TargetArch, &'static [&'static str])> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, &["amd64", "x86_64", "SCMP_ARCH_X86_64"])),
        "aarch64" => Ok((
            TargetArch::aarch64,
            &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        )),
        other => Err(Error::Seccomp(format!(
            "seccomp filters are not supported on {other}"
        ))),
    }
}

/// `major.minor` of the running kernel.
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(&rel)
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut it = s
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Whether a rule applies to a process holding `caps` on this kernel and architecture.
fn selected(r: &SyscallRule, caps: &BTreeSet<String>, arches: &[&str], kernel: (u32, u32)) -> bool {
    let inc = &r.includes;
    if !inc.caps.iter().all(|c| caps.contains(c)) {
        return false;
    }
    if !inc.arches.is_empty() && !inc.arches.iter().any(|a| arches.contains(&a.as_str())) {
        return false;
    }
    if inc
        .min_kernel
        .as_deref()
        .is_some_and(|v| kernel < parse_version(v))
    {
        return false;
    }
    let exc = &r.excludes;
    if exc.caps.iter().any(|c| caps.contains(c)) {
        return false;
    }
    if exc.arches.iter().any(|a| arches.contains(&a.as_str())) {
        return false;
    }
    if exc
        .min_kernel
        .as_deref()
        .is_some_and(|v| kernel >= parse_version(v))
    {
        return false;
    }
    true
}

/// The syscall rules of one action: number → `None` (every call) or the OR of rules.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add_rule(rules: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    let slot = rules.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (slot.as_mut(), rule) {
        (None, _) => {}
        (Some(_), None) => *slot = None,
        (Some(v), Some(r)) => v.push(r),
    }
}

fn to_filter(rules: &Rules) -> BTreeMap<i64, Vec<SeccompRule>> {
    rules
        .iter()
        .map(|(nr, r)| (*nr, r.clone().unwrap_or_default()))
        .collect()
}

fn build(
    rules: &Rules,
    mismatch: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram> {
    let f = SeccompFilter::new(to_filter(rules), mismatch, on_match, arch)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    BpfProgram::try_from(f).map_err(|e| Error::Seccomp(e.to_string()))
}

/// Action key for grouping (the action's return value, which includes the errno).
fn key(a: &SeccompAction) -> u32 {
    u32::from(a.clone())
}

/// Compiles `profile` for a process holding `caps` into the BPF programs to install, in
/// order. On x86_64 the profile is compiled twice, for 64-bit and for 32-bit (i386)
/// syscall numbers: each program judges the calls of its own architecture and lets the
/// other's through, and a last one kills calls of any third architecture.
pub(crate) fn compile(profile: &Profile, caps: &BTreeSet<String>) -> Result<Vec<BpfProgram>> {
    profile.check()?;
    let (arch, arch_names) = native_arch()?;
    let kernel = kernel_version();
    let native = programs(profile, caps, kernel, arch, arch_names, &|n| {
        syscalls::Sysno::from_str(n).ok().map(|s| i64::from(s.id()))
    })?;
    if arch != TargetArch::x86_64 {
        return Ok(native);
    }
    let compat = programs(
        profile,
        caps,
        kernel,
        arch,
        &["x86", "i386", "SCMP_ARCH_X86"],
        &|n| {
            syscalls::x86::Sysno::from_str(n)
                .ok()
                .map(|s| i64::from(s.id()))
        },
    )?;
    let mut out = vec![x32_guard()];
    for p in native {
        out.push(pass_other_arches(p, AUDIT_ARCH_X86_64)?);
    }
    for p in compat {
        out.push(pass_other_arches(p, AUDIT_ARCH_I386)?);
    }
    out.push(arch_guard(&[AUDIT_ARCH_X86_64, AUDIT_ARCH_I386]));
    Ok(out)
}

const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
/// Offset of `arch` in `struct seccomp_data`.
const ARCH_OFFSET: u32 = 4;

/// The programs of `profile` for one architecture (`resolve`: syscall name → number).
fn programs(
    profile: &Profile,
    caps: &BTreeSet<String>,
    kernel: (u32, u32),
    arch: TargetArch,
    arch_names: &[&str],
    resolve: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<BpfProgram>> {
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut by_action: BTreeMap<u32, (SeccompAction, Rules)> = BTreeMap::new();
    for r in &profile.syscalls {
        if !selected(r, caps, arch_names, kernel) {
            continue;
        }
        let act = action(&r.action, r.errno_ret)?;
        if act == default {
            continue;
        }
        let rule = if r.args.is_empty() {
            None
        } else {
            let conds = r.args.iter().map(condition).collect::<Result<Vec<_>>>()?;
            Some(SeccompRule::new(conds).map_err(|e| Error::Seccomp(e.to_string()))?)
        };
        let group = &mut by_action
            .entry(key(&act))
            .or_insert_with(|| (act.clone(), Rules::new()))
            .1;
        for name in r.names.iter().chain(r.name.iter()) {
            // Names this kernel or architecture does not have are ignored, as Docker does.
            if let Some(nr) = resolve(name) {
                add_rule(group, nr, rule.clone());
            }
        }
    }
    let mut out = Vec::new();
    if default != SeccompAction::Allow {
        let mut any = Rules::new();
        for (_, rules) in by_action.values() {
            for (nr, r) in rules {
                match r {
                    None => add_rule(&mut any, *nr, None),
                    Some(v) => {
                        for rule in v {
                            add_rule(&mut any, *nr, Some(rule.clone()));
                        }
                    }
                }
            }
        }
        out.push(build(&any, default.clone(), SeccompAction::Allow, arch)?);
    }
    for (act, rules) in by_action.values() {
        if *act == SeccompAction::Allow || rules.is_empty() {
            continue;
        }
        out.push(build(rules, SeccompAction::Allow, act.clone(), arch)?);
    }
    Ok(out)
}

/// Rewrites the architecture check seccompiler puts first (load `arch`; equal → go on;
/// else kill) to judge `audit` calls and allow every other architecture's.
fn pass_other_arches(mut p: BpfProgram, audit: u32) -> Result<BpfProgram> {
    let shape_ok = p.len() > 3
        && p[0].code == 0x20
        && p[0].k == ARCH_OFFSET
        && p[1].code == 0x15
        && (p[1].jt, p[1].jf) == (1, 0)
        && p[2].code == 0x06;
    if !shape_ok {
        return Err(Error::Seccomp(
            "unexpected architecture check in a compiled filter".into(),
        ));
    }
    p[1].k = audit;
    p[2].k = libc::SECCOMP_RET_ALLOW;
    Ok(p)
}

/// Kills calls of any architecture not in `allowed`.
fn arch_guard(allowed: &[u32]) -> BpfProgram {
    let n = allowed.len();
    let mut p = vec![sock_filter {
        code: 0x20,
        jt: 0,
        jf: 0,
        k: ARCH_OFFSET,
    }];
    for (i, a) in allowed.iter().enumerate() {
        // Equal: jump to the ALLOW after the KILL.
        p.push(sock_filter {
            code: 0x15,
            jt: u8::try_from(n - i).unwrap_or(0),
            jf: 0,
            k: *a,
        });
    }
    p.push(sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_KILL_PROCESS,
    });
    p.push(sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    });
    p
}

/// x86_64: syscall numbers with the x32 bit (0x40000000) fail with EPERM.
fn x32_guard() -> BpfProgram {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JGE | BPF_K, BPF_RET | BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    vec![
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: 0x4000_0000,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_profile_parses_and_compiles() {
        let p: Profile = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(p, default_profile());
        let progs = compile(&p, &caps(&["CAP_CHOWN"])).unwrap();
        // x32 guard + EPERM group + ENOSYS (clone3) group on x86_64.
        assert!(progs.len() >= 2, "{}", progs.len());
        assert!(progs.iter().all(|p| p.len() < 4096));
    }

    #[test]
    fn capabilities_lift_rules_like_docker() {
        let p = default_profile();
        let nr = i64::from(syscalls::Sysno::mount.id());
        let find = |c: &BTreeSet<String>| {
            let mut hit = false;
            for r in &p.syscalls {
                if selected(r, c, &["amd64"], (6, 1)) && r.names.iter().any(|n| n == "mount") {
                    hit = true;
                }
            }
            hit
        };
        assert!(find(&caps(&[])));
        assert!(!find(&caps(&["CAP_SYS_ADMIN"])));
        assert!(nr > 0);
    }

    #[test]
    fn min_kernel_selects_ptrace() {
        let p = default_profile();
        let r = p
            .syscalls
            .iter()
            .find(|r| r.names.iter().any(|n| n == "ptrace"))
            .unwrap();
        assert!(!selected(r, &caps(&[]), &["amd64"], (5, 10)));
        assert!(selected(r, &caps(&[]), &["amd64"], (4, 4)));
        assert_eq!(parse_version("6.18.44-fc"), (6, 18));
    }

    /// A classic-BPF interpreter for the instructions seccompiler emits, over a
    /// `seccomp_data` of (arch, nr, args).
    fn eval(prog: &BpfProgram, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let f = &prog[pc];
            pc += 1;
            match f.code {
                0x20 => acc = word(f.k),
                0x54 => acc &= f.k,
                0x05 => pc += f.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let hit = match f.code {
                        0x15 => acc == f.k,
                        0x25 => acc > f.k,
                        0x35 => acc >= f.k,
                        _ => acc & f.k != 0,
                    };
                    pc += usize::from(if hit { f.jt } else { f.jf });
                }
                0x06 => return f.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    /// The kernel's verdict over several filters: the most severe action (signed
    /// comparison of the action bits); among equals the newest filter's.
    fn verdict(progs: &[BpfProgram], nr: i64, args: [u64; 6]) -> u32 {
        let audit = match std::env::consts::ARCH {
            "x86_64" => AUDIT_ARCH_X86_64,
            _ => 183 | 0x8000_0000 | 0x4000_0000,
        };
        verdict_on(progs, audit, nr, args)
    }

    fn verdict_on(progs: &[BpfProgram], audit: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut best: Option<u32> = None;
        for p in progs.iter().rev() {
            let r = eval(p, audit, nr as u32, args);
            let action = |v: u32| (v & 0xffff_0000) as i32;
            if best.is_none_or(|b| action(r) < action(b)) {
                best = Some(r);
            }
        }
        best.unwrap()
    }

    fn nr(name: &str) -> i64 {
        i64::from(syscalls::Sysno::from_str(name).unwrap().id())
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn default_profile_verdicts_are_dockers() {
        let p = default_profile();
        let plain = compile(&p, &caps(&["CAP_CHOWN", "CAP_KILL"])).unwrap();
        let admin = compile(&p, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        let z = [0u64; 6];
        assert_eq!(verdict(&plain, nr("read"), z), ALLOW);
        assert_eq!(verdict(&plain, nr("mount"), z), EPERM);
        assert_eq!(verdict(&admin, nr("mount"), z), ALLOW);
        assert_eq!(verdict(&plain, nr("unshare"), z), EPERM);
        assert_eq!(verdict(&plain, nr("keyctl"), z), EPERM);
        assert_eq!(verdict(&admin, nr("keyctl"), z), EPERM);
        // clone: plain forks are fine, namespace flags are not (without CAP_SYS_ADMIN).
        let sigchld = [17u64, 0, 0, 0, 0, 0];
        let newuser = [17u64 | 0x1000_0000, 0, 0, 0, 0, 0];
        assert_eq!(verdict(&plain, nr("clone"), sigchld), ALLOW);
        assert_eq!(verdict(&plain, nr("clone"), newuser), EPERM);
        assert_eq!(verdict(&admin, nr("clone"), newuser), ALLOW);
        assert_eq!(
            verdict(&plain, nr("clone3"), z),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        // personality: only the allowed personas.
        assert_eq!(
            verdict(&plain, nr("personality"), [8, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(&plain, nr("personality"), [0xffff_ffff, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(&plain, nr("personality"), [0x0040_0000, 0, 0, 0, 0, 0]),
            EPERM
        );
        // socket: AF_VSOCK (40) refused, AF_INET allowed.
        assert_eq!(verdict(&plain, nr("socket"), [40, 1, 0, 0, 0, 0]), EPERM);
        assert_eq!(verdict(&plain, nr("socket"), [2, 1, 0, 0, 0, 0]), ALLOW);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(verdict(&plain, 0x4000_0000 | nr("read"), z), EPERM, "x32");
            // 32-bit x86 calls are judged by their own numbers.
            let i386 = |name: &str| i64::from(syscalls::x86::Sysno::from_str(name).unwrap().id());
            let on = |progs: &[BpfProgram], name: &str| {
                verdict_on(progs, AUDIT_ARCH_I386, i386(name), z)
            };
            assert_eq!(on(&plain, "read"), ALLOW);
            assert_eq!(on(&plain, "mount"), EPERM);
            assert_eq!(on(&admin, "mount"), ALLOW);
            assert_eq!(on(&plain, "ptrace"), ALLOW);
            // i386's `mount` (21) is x86_64's `access`: each judged by its own table.
            assert_eq!(verdict(&plain, i386("mount"), z), ALLOW);
            // Any other architecture is killed.
            let arm = 40 | 0x4000_0000;
            assert_eq!(
                verdict_on(&plain, arm, nr("read"), z),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn mixed_actions_follow_libseccomp_meaning() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
                {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                {"names":["mkdir"],"action":"SCMP_ACT_KILL_PROCESS"},
                {"names":["getpid"],"action":"SCMP_ACT_LOG"},
                {"names":["openat"],"action":"SCMP_ACT_ALLOW",
                 "args":[{"index":2,"value":3,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        )
        .unwrap();
        let progs = compile(&p, &caps(&[])).unwrap();
        let z = [0u64; 6];
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(verdict(&progs, nr("read"), z), ALLOW);
        assert_eq!(verdict(&progs, nr("close"), z), enosys);
        assert_eq!(
            verdict(&progs, nr("mkdir"), z),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(verdict(&progs, nr("getpid"), z), libc::SECCOMP_RET_LOG);
        // openat read-only (flags & O_ACCMODE == 0) allowed, for writing not.
        assert_eq!(verdict(&progs, nr("openat"), [0, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&progs, nr("openat"), [0, 0, 2, 0, 0, 0]), enosys);
    }

    #[test]
    fn custom_profiles_compile_and_bad_ones_are_refused() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","write","no_such_call"],"action":"SCMP_ACT_ALLOW"},
                {"names":["mkdir"],"action":"SCMP_ACT_KILL_PROCESS"},
                {"names":["openat"],"action":"SCMP_ACT_ALLOW",
                 "args":[{"index":2,"value":1,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        )
        .unwrap();
        let progs = compile(&p, &caps(&[])).unwrap();
        assert!(progs.len() >= 3);
        let bad: Profile =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOPE","syscalls":[]}"#).unwrap();
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("SCMP_ACT_NOPE")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, "{ not json").unwrap();
        let e = Profile::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("p.json"), "{e}");
    }
}
