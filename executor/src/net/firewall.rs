//! The bridge's iptables rules, Docker's layout in chains of its own so teardown is exact:
//!
//! - filter `RBUILD-FWD-<bridge>` (jumped to first from `FORWARD`, whose policy Docker sets
//!   to DROP): replies to the bridge, everything from the bridge (out and between
//!   containers), and per published port the new connections to the container.
//! - nat `RBUILD-NAT-<bridge>` (from `POSTROUTING`): MASQUERADE of the subnet leaving by
//!   another interface, plus per published port the hairpin masquerade.
//! - nat `RBUILD-DNAT-<bridge>` (from `PREROUTING` and, for non-loopback destinations,
//!   `OUTPUT`, for local addresses only): per published port a DNAT to the container, so
//!   traffic to the host's non-loopback addresses reaches it without the userland proxy
//!   (loopback is the proxy's job, as with docker-proxy).
//!
//! Per-container rules carry the comment `rbuild:<container id>` so they can be removed
//! exactly, also after a crash. Rules are managed with the `iptables` command (`-w` waits
//! for the xtables lock); iptables-nft and iptables-legacy both work.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use super::ipam::Subnet;
use super::publish::Proto;
use crate::error::{Error, Result};

/// The chains and rules of one bridge.
#[derive(Debug, Clone)]
pub(crate) struct Firewall {
    bridge: String,
    subnet: Subnet,
}

const FILTER: &str = "filter";
const NAT: &str = "nat";
const COMMENT_PREFIX: &str = "rbuild:";

/// One published port's rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortRule {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    pub proto: Proto,
}

fn iptables(args: &[String]) -> Result<std::process::Output> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::network(
                    "iptables",
                    "the iptables command is not installed (Debian/Ubuntu package `iptables`); \
                     bridge networking needs it for NAT and forwarding rules",
                )
            } else {
                Error::network("run iptables", e)
            }
        })?;
    Ok(out)
}

/// Runs iptables and fails with its stderr when it fails.
fn run(args: &[String]) -> Result<()> {
    let out = iptables(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::network(
            format!("iptables {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// Runs iptables and reports whether it succeeded (for `-C` checks and best-effort deletes).
fn ok(args: &[String]) -> Result<bool> {
    Ok(iptables(args)?.status.success())
}

fn args(table: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["-t".to_string(), table.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

impl Firewall {
    pub fn new(bridge: &str, subnet: Subnet) -> Firewall {
        Firewall {
            bridge: bridge.to_string(),
            subnet,
        }
    }

    pub fn fwd_chain(&self) -> String {
        format!("RBUILD-FWD-{}", self.bridge)
    }

    pub fn nat_chain(&self) -> String {
        format!("RBUILD-NAT-{}", self.bridge)
    }

    pub fn dnat_chain(&self) -> String {
        format!("RBUILD-DNAT-{}", self.bridge)
    }

    /// The jumps from the built-in chains: (table, chain, rule).
    fn jumps(&self) -> Vec<(&'static str, &'static str, Vec<String>)> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (fwd, nat, dnat) = (self.fwd_chain(), self.nat_chain(), self.dnat_chain());
        vec![
            (FILTER, "FORWARD", s(&["-j", &fwd])),
            (NAT, "POSTROUTING", s(&["-j", &nat])),
            (
                NAT,
                "PREROUTING",
                s(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", &dnat]),
            ),
            (
                NAT,
                "OUTPUT",
                s(&[
                    "!",
                    "-d",
                    "127.0.0.0/8",
                    "-m",
                    "addrtype",
                    "--dst-type",
                    "LOCAL",
                    "-j",
                    &dnat,
                ]),
            ),
        ]
    }

    /// The bridge-wide rules of each chain: (table, chain, rules).
    fn base_rules(&self) -> Vec<(&'static str, String, Vec<Vec<String>>)> {
        let br = self.bridge.as_str();
        let subnet = self.subnet.to_string();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        vec![
            (
                FILTER,
                self.fwd_chain(),
                vec![
                    s(&[
                        "-o",
                        br,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "RELATED,ESTABLISHED",
                        "-j",
                        "ACCEPT",
                    ]),
                    s(&["-i", br, "-j", "ACCEPT"]),
                ],
            ),
            (
                NAT,
                self.nat_chain(),
                vec![s(&["-s", &subnet, "!", "-o", br, "-j", "MASQUERADE"])],
            ),
            (NAT, self.dnat_chain(), vec![s(&["-i", br, "-j", "RETURN"])]),
        ]
    }

    /// Creates the chains with their bridge-wide rules and the jumps to them. Idempotent and
    /// cheap when everything is in place (checks only, so running containers never see the
    /// rules flushed); a chain missing a base rule (e.g. after a subnet change) is rebuilt.
    pub fn setup(&self) -> Result<()> {
        for (table, chain, rules) in self.base_rules() {
            if !ok(&args(table, &["-n", "-L", &chain]))? {
                run(&args(table, &["-N", &chain]))?;
            }
            let mut complete = true;
            for r in &rules {
                let mut check = args(table, &["-C", &chain]);
                check.extend(r.iter().cloned());
                if !ok(&check)? {
                    complete = false;
                    break;
                }
            }
            if complete {
                continue;
            }
            // Keep per-container rules; replace the base rules.
            let keep = self.rules_with_comment(table, &chain)?;
            run(&args(table, &["-F", &chain]))?;
            for r in rules {
                let mut a = args(table, &["-A", &chain]);
                a.extend(r);
                run(&a)?;
            }
            for line in keep {
                let mut a = args(table, &[]);
                a.extend(line);
                run(&a)?;
            }
        }
        for (table, chain, rule) in self.jumps() {
            let mut check = args(table, &["-C", chain]);
            check.extend(rule.clone());
            if !ok(&check)? {
                let mut a = args(table, &["-I", chain, "1"]);
                a.extend(rule);
                run(&a)?;
            }
        }
        Ok(())
    }

    /// Removes the jumps and the chains; anything missing is fine.
    pub fn teardown(&self) -> Result<()> {
        for (table, chain, rule) in self.jumps() {
            let mut del = args(table, &["-D", chain]);
            del.extend(rule);
            while ok(&del)? {}
        }
        for (table, chain, _) in self.base_rules() {
            if ok(&args(table, &["-n", "-L", &chain]))? {
                run(&args(table, &["-F", &chain]))?;
                run(&args(table, &["-X", &chain]))?;
            }
        }
        Ok(())
    }

    /// Adds the DNAT, forward and hairpin rules of one published port of container `id`.
    pub fn add_port(&self, id: &str, p: &PortRule) -> Result<()> {
        let comment = format!("{COMMENT_PREFIX}{id}");
        let proto = p.proto.as_str();
        let hport = p.host_port.to_string();
        let cport = p.container_port.to_string();
        let cip = p.container_ip.to_string();
        let dest = format!("{}:{}", p.container_ip, p.container_port);
        let br = self.bridge.as_str();
        let mut dnat = args(NAT, &["-A", &self.dnat_chain()]);
        if let Some(IpAddr::V4(ip)) = p.host_ip.filter(|ip| !ip.is_unspecified()) {
            dnat.extend(["-d".to_string(), format!("{ip}/32")]);
        }
        let tail = [
            "!",
            "-i",
            br,
            "-p",
            proto,
            "-m",
            proto,
            "--dport",
            &hport,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "DNAT",
            "--to-destination",
            &dest,
        ];
        dnat.extend(tail.iter().map(|s| s.to_string()));
        let fwd = args(
            FILTER,
            &[
                "-A",
                &self.fwd_chain(),
                "-d",
                &format!("{cip}/32"),
                "!",
                "-i",
                br,
                "-o",
                br,
                "-p",
                proto,
                "-m",
                proto,
                "--dport",
                &cport,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "ACCEPT",
            ],
        );
        let hairpin = args(
            NAT,
            &[
                "-A",
                &self.nat_chain(),
                "-s",
                &format!("{cip}/32"),
                "-d",
                &format!("{cip}/32"),
                "-p",
                proto,
                "-m",
                proto,
                "--dport",
                &cport,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "MASQUERADE",
            ],
        );
        // Only non-loopback IPv4 host addresses get DNAT rules (loopback and IPv6 host IPs
        // are the proxy's alone).
        if !matches!(p.host_ip, Some(ip) if ip.is_ipv6() || ip.is_loopback()) {
            run(&dnat)?;
        }
        run(&fwd)?;
        run(&hairpin)
    }

    /// Removes every rule of container `id`.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.remove_where(|cid| cid == id)
    }

    /// Removes the per-container rules whose container id fails `keep`.
    pub fn remove_where(&self, remove: impl Fn(&str) -> bool) -> Result<()> {
        for (table, chain, _) in self.base_rules() {
            for line in self.rules_with_comment(table, &chain)? {
                let Some(id) = comment_id(&line) else {
                    continue;
                };
                if !remove(id) {
                    continue;
                }
                let mut a = args(table, &["-D"]);
                a.extend(line.into_iter().skip(1));
                run(&a)?;
            }
        }
        Ok(())
    }

    /// The container ids with rules in the bridge's chains.
    pub fn container_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for (table, chain, _) in self.base_rules() {
            for line in self.rules_with_comment(table, &chain)? {
                if let Some(id) = comment_id(&line) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The `-A <chain> ...` lines (split into words) of the chain's per-container rules; a
    /// missing chain has none.
    fn rules_with_comment(&self, table: &str, chain: &str) -> Result<Vec<Vec<String>>> {
        let out = iptables(&args(table, &["-S", chain]))?;
        if !out.status.success() {
            return Ok(Vec::new());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(split_words)
            .filter(|w| comment_id(w).is_some())
            .collect())
    }
}

/// The container id of a rule's `--comment rbuild:<id>`.
fn comment_id(words: &[String]) -> Option<&str> {
    let i = words.iter().position(|w| w == "--comment")?;
    words.get(i + 1)?.strip_prefix(COMMENT_PREFIX)
}

/// Splits an `iptables -S` line into words (double quotes group, backslash escapes).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn words_and_comment_ids() {
        let w = split_words(
            r#"-A RBUILD-FWD-rbuild0 -d 10.89.0.2/32 -m comment --comment "rbuild:abc" -j ACCEPT"#,
        );
        assert_eq!(w[0], "-A");
        assert_eq!(comment_id(&w), Some("abc"));
        let w = split_words("-A X -m comment --comment rbuild:c1 -j RETURN");
        assert_eq!(comment_id(&w), Some("c1"));
        let w = split_words(r#"-A X -m comment --comment "other thing" -j RETURN"#);
        assert_eq!(w[5], "other thing");
        assert_eq!(comment_id(&w), None);
    }
}
