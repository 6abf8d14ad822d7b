//! Seccomp profiles in Docker's JSON format and their compilation to BPF programs.
//!
//! A profile (`defaultAction`, `syscalls[{names, action, errnoRet, args[{index, value,
//! valueTwo, op}], includes, excludes}]`) is read as Docker reads it: unknown syscall names
//! are ignored, rules whose action is the default action are skipped (as runc does), and
//! `includes.caps` / `excludes.caps` / `includes.minKernel` select rules by the process's
//! capabilities and the running kernel (`excludes.minKernel`, an rbuild extension, drops a
//! rule on kernels at least that new). `includes.arches` / `excludes.arches` are matched
//! against the host's architecture, as Docker does (so on x86_64 an `amd64` rule also
//! applies to 32-bit x86 calls).
//!
//! `seccompiler` (rust-vmm) builds the BPF. One of its filters has a single on-match
//! action, so a profile becomes several filters the kernel evaluates together, taking the
//! most severe verdict: one that returns `ALLOW` for every syscall some rule names (and the
//! default action otherwise), and one per other action that returns it for that action's
//! rules (and `ALLOW` otherwise). A syscall that matches a rule so gets that rule's action,
//! any other the default action — libseccomp's meaning. For an allow list such as the
//! default profile that is one large program (the allowed calls, each a compare and a
//! return) and one small one per other action (`clone3` → ENOSYS). On x86_64 the rules are
//! compiled for 64-bit and for i386 numbers (each program judges its own architecture's
//! calls and passes the other's), a last program kills any third architecture, and a small
//! one of our own refuses x32-ABI syscall numbers. Each program must stay under the
//! kernel's 4096 instructions (a unit test measures the default profile's).
//!
//! [`default_profile`] is rbuild's own `seccomp_default.json`, written after Docker's
//! default profile: an allow list (EPERM for anything else), capability-gated entries,
//! `clone` without namespace flags, `clone3` → ENOSYS, `personality` and `socket` by
//! argument; its comment lists where rbuild differs.

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
    // The embedded profile is parsed by a unit test; a failure here is a build bug, and
    // the fallback denies every call rather than allowing them.
    serde_json::from_str(DEFAULT_PROFILE).unwrap_or_else(|_| Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
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

/// The architectures rbuild builds filters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// x86_64, with its 32-bit x86 (i386) calls; x32 calls are refused.
    X86_64,
    Aarch64,
}

impl Host {
    /// This machine's architecture.
    fn native() -> Result<Host> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Host::X86_64),
            "aarch64" => Ok(Host::Aarch64),
            other => Err(Error::Seccomp(format!(
                "seccomp filters are not supported on {other}"
            ))),
        }
    }

    /// Names the architecture goes by in `includes`/`excludes.arches`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Host::X86_64 => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
            Host::Aarch64 => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        }
    }
}

/// Syscall name → number, for each table a filter is compiled against.
fn nr_x86_64(name: &str) -> Option<i64> {
    syscalls::x86_64::Sysno::from_str(name)
        .ok()
        .map(|s| i64::from(s.id()))
}

fn nr_i386(name: &str) -> Option<i64> {
    syscalls::x86::Sysno::from_str(name)
        .ok()
        .map(|s| i64::from(s.id()))
}

fn nr_aarch64(name: &str) -> Option<i64> {
    // Profiles use libseccomp's names; the generic table's `fstatat` is its `newfstatat`
    // (the one spelling that differs: without it glibc's stat would fail on arm64).
    let name = if name == "newfstatat" {
        "fstatat"
    } else {
        name
    };
    syscalls::aarch64::Sysno::from_str(name)
        .ok()
        .map(|s| i64::from(s.id()))
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
/// order, for this machine and its running kernel.
pub(crate) fn compile(profile: &Profile, caps: &BTreeSet<String>) -> Result<Vec<BpfProgram>> {
    compile_for(profile, caps, kernel_version(), Host::native()?)
}

/// [`compile`] for `host` and a kernel of version `kernel`. On x86_64 the profile is
/// compiled twice, for 64-bit and for 32-bit (i386) syscall numbers: each program judges
/// the calls of its own architecture and lets the other's through, and a last one kills
/// calls of any third architecture. On aarch64 seccompiler's own check kills the others.
pub(crate) fn compile_for(
    profile: &Profile,
    caps: &BTreeSet<String>,
    kernel: (u32, u32),
    host: Host,
) -> Result<Vec<BpfProgram>> {
    profile.check()?;
    let arch_names = host.names();
    if host == Host::Aarch64 {
        return programs(
            profile,
            caps,
            kernel,
            TargetArch::aarch64,
            arch_names,
            &nr_aarch64,
        );
    }
    let native = programs(
        profile,
        caps,
        kernel,
        TargetArch::x86_64,
        arch_names,
        &nr_x86_64,
    )?;
    // The i386 calls get the rules selected for the host, by their own numbers (Docker
    // resolves each name for every architecture of the filter the same way).
    let compat = programs(
        profile,
        caps,
        kernel,
        TargetArch::x86_64,
        arch_names,
        &nr_i386,
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

    /// Docker's default capability set, plus `extra`.
    fn docker_caps(extra: &[&str]) -> BTreeSet<String> {
        let mut c = caps(&crate::security::DEFAULT_CAPS);
        c.extend(extra.iter().map(|s| s.to_string()));
        c
    }

    fn every_cap() -> BTreeSet<String> {
        caps::all().iter().map(|c| c.to_string()).collect()
    }

    /// A kernel new enough for every gated rule of the default profile.
    const KERNEL: (u32, u32) = (6, 8);

    #[test]
    fn default_profile_parses_as_an_allow_list() {
        let p: Profile = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(p, default_profile());
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.default_errno_ret, Some(libc::EPERM as u32));
        p.check().unwrap();
        let allowed: BTreeSet<&str> = p
            .syscalls
            .iter()
            .filter(|r| r.action == "SCMP_ACT_ALLOW")
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect();
        assert!(allowed.len() > 350, "{} names allowed", allowed.len());
        for blocked in ["io_uring_setup", "kexec_load", "keyctl", "userfaultfd"] {
            assert!(!allowed.contains(blocked), "{blocked} is allowed");
        }
    }

    /// The kernel refuses a program longer than 4096 instructions (BPF_MAXINSNS;
    /// seccompiler stops below it) and a process whose filters add up to more than 32768
    /// (MAX_INSNS_PER_PATH, with 4 instructions of overhead each).
    #[test]
    fn default_profile_programs_fit_the_kernel_limits() {
        let p = default_profile();
        for host in [Host::X86_64, Host::Aarch64] {
            for (set, c) in [("docker", docker_caps(&[])), ("all", every_cap())] {
                let progs = compile_for(&p, &c, KERNEL, host).unwrap();
                let sizes: Vec<usize> = progs.iter().map(Vec::len).collect();
                // The longest path through all programs, over every syscall number (what
                // the kernel runs for a call its action cache cannot answer).
                let audit = match host {
                    Host::X86_64 => AUDIT_ARCH_X86_64,
                    Host::Aarch64 => AUDIT_ARCH_AARCH64,
                };
                let longest = (0..600)
                    .map(|nr| {
                        let steps = progs.iter().map(|p| eval_counting(p, audit, nr, [0; 6]).1);
                        steps.sum::<usize>()
                    })
                    .max()
                    .unwrap_or(0);
                eprintln!("{host:?} caps={set}: program sizes {sizes:?}, longest path {longest}");
                assert!(sizes.iter().all(|n| *n < 4096), "{host:?} {set}: {sizes:?}");
                let total: usize = sizes.iter().map(|n| n + 4).sum();
                assert!(total <= 32768, "{host:?} {set}: {total}");
                // The allow list really is in there: five instructions per call without
                // conditions, and each architecture has more than 250 of them.
                let largest = sizes.iter().max().copied().unwrap_or(0);
                assert!(largest > 5 * 250, "{host:?} {set}: {sizes:?}");
            }
        }
    }

    #[test]
    fn capabilities_gate_rules_like_docker() {
        let p = default_profile();
        let allows = |name: &str, c: &BTreeSet<String>| {
            p.syscalls.iter().any(|r| {
                r.action == "SCMP_ACT_ALLOW"
                    && r.names.iter().any(|n| n == name)
                    && selected(r, c, Host::X86_64.names(), KERNEL)
            })
        };
        assert!(!allows("mount", &docker_caps(&[])));
        assert!(allows("mount", &docker_caps(&["CAP_SYS_ADMIN"])));
        assert!(!allows("reboot", &docker_caps(&[])));
        assert!(allows("reboot", &caps(&["CAP_SYS_BOOT"])));
        // CAP_SYS_CHROOT is in Docker's default set, so chroot is allowed by default.
        assert!(allows("chroot", &docker_caps(&[])));
        assert!(!allows("chroot", &caps(&[])));
        assert!(allows("arch_prctl", &caps(&[])));
        assert!(!allows("cacheflush", &caps(&[])));
    }

    #[test]
    fn ptrace_needs_kernel_4_8_or_cap_sys_ptrace() {
        let p = default_profile();
        let z = [0u64; 6];
        let nr = |n: &str| nr_x86_64(n).unwrap();
        let old = compile_for(&p, &docker_caps(&[]), (4, 4), Host::X86_64).unwrap();
        let new = compile_for(&p, &docker_caps(&[]), (5, 10), Host::X86_64).unwrap();
        let traced = compile_for(&p, &caps(&["CAP_SYS_PTRACE"]), (4, 4), Host::X86_64).unwrap();
        let on = |progs: &[BpfProgram], n: &str| verdict_on(progs, AUDIT_ARCH_X86_64, nr(n), z);
        assert_eq!(on(&old, "ptrace"), EPERM);
        assert_eq!(on(&new, "ptrace"), ALLOW);
        assert_eq!(on(&new, "process_vm_readv"), ALLOW);
        assert_eq!(on(&traced, "ptrace"), ALLOW);
        // kcmp and pidfd_getfd only ever with CAP_SYS_PTRACE.
        assert_eq!(on(&new, "kcmp"), EPERM);
        assert_eq!(on(&traced, "pidfd_getfd"), ALLOW);
        assert_eq!(parse_version("6.18.44-fc"), (6, 18));
    }

    /// A classic-BPF interpreter for the instructions seccompiler emits, over a
    /// `seccomp_data` of (arch, nr, args).
    fn eval(prog: &BpfProgram, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        eval_counting(prog, arch, nr, args).0
    }

    /// [`eval`] and the number of instructions it ran.
    fn eval_counting(prog: &BpfProgram, arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
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
        let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let f = &prog[pc];
            pc += 1;
            steps += 1;
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
                0x06 => return (f.k, steps),
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

    /// The kernel's verdict over several filters: the most severe action (signed
    /// comparison of the action bits); among equals the newest filter's.
    fn verdict(progs: &[BpfProgram], nr: i64, args: [u64; 6]) -> u32 {
        let audit = match std::env::consts::ARCH {
            "x86_64" => AUDIT_ARCH_X86_64,
            _ => AUDIT_ARCH_AARCH64,
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

    /// The host's own numbers (for the custom-profile tests below).
    fn nr(name: &str) -> i64 {
        i64::from(syscalls::Sysno::from_str(name).unwrap().id())
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    /// Verdicts of the default profile on one architecture's calls (`audit`, `resolve`),
    /// compiled for `host`.
    struct Judge {
        plain: Vec<BpfProgram>,
        admin: Vec<BpfProgram>,
        all: Vec<BpfProgram>,
        audit: u32,
        resolve: fn(&str) -> Option<i64>,
    }

    impl Judge {
        fn new(host: Host, audit: u32, resolve: fn(&str) -> Option<i64>) -> Judge {
            let p = default_profile();
            Judge {
                plain: compile_for(&p, &docker_caps(&[]), KERNEL, host).unwrap(),
                admin: compile_for(&p, &docker_caps(&["CAP_SYS_ADMIN"]), KERNEL, host).unwrap(),
                all: compile_for(&p, &every_cap(), KERNEL, host).unwrap(),
                audit,
                resolve,
            }
        }

        fn nr(&self, name: &str) -> i64 {
            (self.resolve)(name).unwrap_or_else(|| panic!("no syscall {name}"))
        }

        fn on(&self, progs: &[BpfProgram], name: &str, args: [u64; 6]) -> u32 {
            verdict_on(progs, self.audit, self.nr(name), args)
        }

        fn plain(&self, name: &str) -> u32 {
            self.on(&self.plain, name, [0; 6])
        }

        fn admin(&self, name: &str) -> u32 {
            self.on(&self.admin, name, [0; 6])
        }

        fn all(&self, name: &str) -> u32 {
            self.on(&self.all, name, [0; 6])
        }

        /// What every architecture shares.
        fn check_common(&self) {
            for name in [
                "read",
                "write",
                "openat",
                "close",
                "execve",
                "exit_group",
                "futex",
                "mmap",
                "munmap",
                "mprotect",
                "brk",
                "epoll_ctl",
                "epoll_pwait",
                "io_setup",
                "io_getevents",
                "statx",
                "getdents64",
                "rseq",
                "getrandom",
                "wait4",
                "rt_sigaction",
                "rt_sigreturn",
                "prctl",
                "capset",
                "setresuid",
                "setgroups",
                "pipe2",
                "dup3",
                "sendto",
                "recvmsg",
                "pidfd_open",
                "prlimit64",
                "set_robust_list",
                "faccessat2",
                "seccomp",
                "uname",
                "chroot",
                "ptrace",
            ] {
                assert_eq!(self.plain(name), ALLOW, "{name}");
            }
            // Not in Docker's list, whatever the capabilities.
            for name in [
                "kexec_load",
                "keyctl",
                "add_key",
                "io_uring_setup",
                "userfaultfd",
            ] {
                assert_eq!(self.plain(name), EPERM, "{name}");
                assert_eq!(self.all(name), EPERM, "{name} with every capability");
            }
            // Capability-gated.
            for (name, cap_holder_allowed) in [
                ("mount", true),
                ("umount2", true),
                ("unshare", true),
                ("setns", true),
                ("fsopen", true),
                ("open_tree", true),
                ("perf_event_open", true),
                ("bpf", true),
                ("open_by_handle_at", false),
                ("reboot", false),
                ("init_module", false),
                ("acct", false),
                ("settimeofday", false),
                ("clock_settime", false),
                ("vhangup", false),
                ("mbind", false),
                ("syslog", true),
                ("kcmp", false),
            ] {
                assert_eq!(self.plain(name), EPERM, "{name}");
                let admin = if cap_holder_allowed { ALLOW } else { EPERM };
                assert_eq!(self.admin(name), admin, "{name} with CAP_SYS_ADMIN");
                assert_eq!(self.all(name), ALLOW, "{name} with every capability");
            }
            // A number no kernel has.
            assert_eq!(verdict_on(&self.plain, self.audit, 1000, [0; 6]), EPERM);
            // clone: forks and threads yes, namespace flags only with CAP_SYS_ADMIN.
            let sigchld = 17u64;
            let thread = 0x003d_0f00u64;
            for flags in [sigchld, thread, 0x4111] {
                let args = [flags, 0, 0, 0, 0, 0];
                assert_eq!(self.on(&self.plain, "clone", args), ALLOW, "{flags:#x}");
            }
            for ns in [
                0x0002_0000u64,
                0x0200_0000,
                0x0400_0000,
                0x0800_0000,
                0x1000_0000,
            ] {
                let args = [sigchld | ns, 0, 0, 0, 0, 0];
                assert_eq!(self.on(&self.plain, "clone", args), EPERM, "{ns:#x}");
                assert_eq!(self.on(&self.admin, "clone", args), ALLOW, "{ns:#x}");
            }
            assert_eq!(self.plain("clone3"), ENOSYS);
            assert_eq!(self.admin("clone3"), ALLOW);
            // personality: Docker's five values only.
            for v in [0u64, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
                let args = [v, 0, 0, 0, 0, 0];
                assert_eq!(self.on(&self.plain, "personality", args), ALLOW, "{v:#x}");
            }
            for v in [1u64, 0x0040_0000, 0x0004_0000] {
                let args = [v, 0, 0, 0, 0, 0];
                assert_eq!(self.on(&self.plain, "personality", args), EPERM, "{v:#x}");
                assert_eq!(self.on(&self.all, "personality", args), EPERM, "{v:#x}");
            }
            // socket: AF_VSOCK (40) refused, AF_UNIX and AF_INET allowed.
            let sock = |domain: u64| self.on(&self.plain, "socket", [domain, 1, 0, 0, 0, 0]);
            assert_eq!(sock(40), EPERM);
            assert_eq!(sock(1), ALLOW);
            assert_eq!(sock(2), ALLOW);
        }
    }

    #[test]
    fn default_profile_on_x86_64() {
        let j = Judge::new(Host::X86_64, AUDIT_ARCH_X86_64, nr_x86_64);
        j.check_common();
        for name in [
            "open",
            "stat",
            "newfstatat",
            "epoll_wait",
            "fork",
            "vfork",
            "arch_prctl",
            "modify_ldt",
        ] {
            assert_eq!(j.plain(name), ALLOW, "{name}");
        }
        assert_eq!(j.plain("iopl"), EPERM);
        assert_eq!(j.all("iopl"), ALLOW);
        // x32-ABI numbers are refused, even for calls the list allows.
        let x32_read = 0x4000_0000 | j.nr("read");
        assert_eq!(
            verdict_on(&j.plain, AUDIT_ARCH_X86_64, x32_read, [0; 6]),
            EPERM
        );
        assert_eq!(
            verdict_on(&j.all, AUDIT_ARCH_X86_64, x32_read, [0; 6]),
            EPERM
        );
        // Any architecture but x86_64 and i386 is killed.
        let read = j.nr("read");
        assert_eq!(
            verdict_on(&j.plain, AUDIT_ARCH_AARCH64, read, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn default_profile_on_i386_calls_of_x86_64() {
        let j = Judge::new(Host::X86_64, AUDIT_ARCH_I386, nr_i386);
        j.check_common();
        // Names only i386 has are compiled into its program (skipped for x86_64).
        for name in [
            "_llseek",
            "mmap2",
            "chown32",
            "socketcall",
            "fcntl64",
            "arch_prctl",
        ] {
            assert_eq!(j.plain(name), ALLOW, "{name}");
            assert!(nr_x86_64(name).is_none() || name == "arch_prctl");
        }
        // i386's `mount` (21) is x86_64's `access`: each judged by its own table.
        let mount = j.nr("mount");
        assert_eq!(verdict_on(&j.plain, AUDIT_ARCH_I386, mount, [0; 6]), EPERM);
        assert_eq!(
            verdict_on(&j.plain, AUDIT_ARCH_X86_64, mount, [0; 6]),
            ALLOW
        );
    }

    #[test]
    fn default_profile_on_aarch64() {
        let j = Judge::new(Host::Aarch64, AUDIT_ARCH_AARCH64, nr_aarch64);
        j.check_common();
        assert!(nr_aarch64("open").is_none() && nr_aarch64("arch_prctl").is_none());
        // libseccomp's name for the generic table's fstatat (glibc's stat).
        assert_eq!(j.plain("newfstatat"), ALLOW);
        assert_eq!(j.nr("newfstatat"), 79);
        // Calls of another architecture (32-bit arm, x86_64) are killed.
        let read = j.nr("read");
        for audit in [40 | 0x4000_0000, AUDIT_ARCH_X86_64] {
            assert_eq!(
                verdict_on(&j.plain, audit, read, [0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn host_compile_uses_the_host_numbers() {
        let progs = compile(&default_profile(), &docker_caps(&[])).unwrap();
        assert_eq!(verdict(&progs, nr("read"), [0; 6]), ALLOW);
        assert_eq!(verdict(&progs, nr("kexec_load"), [0; 6]), EPERM);
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
