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
//! for the xtables lock); iptables-nft and iptables-legacy both work. Each iptables run
//! costs a few milliseconds, so what is in place is read with one `iptables-save` and
//! compared as text first (its canonical form is how the rules are written here); only
//! when something differs (or `iptables-save` is missing) are the `-C` checks run.

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

/// The ruleset as one `iptables-save` printed it: each table's lines.
#[derive(Debug, Default)]
struct Saved {
    tables: std::collections::BTreeMap<String, Vec<String>>,
}

impl Saved {
    /// Reads every table (`None` when `iptables-save` is missing or fails).
    fn read() -> Option<Saved> {
        let out = Command::new("iptables-save").output().ok()?;
        out.status
            .success()
            .then(|| Saved::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    fn parse(text: &str) -> Saved {
        let mut saved = Saved::default();
        let mut table: Option<&mut Vec<String>> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = Some(saved.tables.entry(name.to_string()).or_default());
            } else if line == "COMMIT" {
                table = None;
            } else if let Some(t) = table.as_mut() {
                t.push(line.to_string());
            }
        }
        saved
    }

    fn lines(&self, table: &str) -> &[String] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }

    fn has_chain(&self, table: &str, chain: &str) -> bool {
        let decl = format!(":{chain} ");
        self.lines(table).iter().any(|l| l.starts_with(&decl))
    }

    fn has_rule(&self, table: &str, chain: &str, rule: &[String]) -> bool {
        let want = format!("-A {chain} {}", rule.join(" "));
        self.lines(table).contains(&want)
    }

    /// The chain's `-A` lines, split into words.
    fn rules(&self, table: &str, chain: &str) -> Vec<Vec<String>> {
        let prefix = format!("-A {chain} ");
        self.lines(table)
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| split_words(l))
            .collect()
    }
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
        if Saved::read().is_some_and(|s| self.in_place(&s)) {
            return Ok(());
        }
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
            let keep = self.rules_with_comment(None, table, &chain)?;
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

    /// Whether every chain, bridge-wide rule and jump is in `saved`.
    fn in_place(&self, saved: &Saved) -> bool {
        self.base_rules().iter().all(|(table, chain, rules)| {
            saved.has_chain(table, chain) && rules.iter().all(|r| saved.has_rule(table, chain, r))
        }) && self
            .jumps()
            .iter()
            .all(|(table, chain, rule)| saved.has_rule(table, chain, rule))
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
        let saved = Saved::read();
        for (table, chain, _) in self.base_rules() {
            for line in self.rules_with_comment(saved.as_ref(), table, &chain)? {
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
        let saved = Saved::read();
        for (table, chain, _) in self.base_rules() {
            for line in self.rules_with_comment(saved.as_ref(), table, &chain)? {
                if let Some(id) = comment_id(&line) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The `-A <chain> ...` lines (split into words) of the chain's per-container rules,
    /// from `saved` or else from `iptables -S`; a missing chain has none.
    fn rules_with_comment(
        &self,
        saved: Option<&Saved>,
        table: &str,
        chain: &str,
    ) -> Result<Vec<Vec<String>>> {
        let lines = match saved {
            Some(s) => s.rules(table, chain),
            None => {
                let out = iptables(&args(table, &["-S", chain]))?;
                if !out.status.success() {
                    return Ok(Vec::new());
                }
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(split_words)
                    .collect()
            }
        };
        Ok(lines
            .into_iter()
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
    fn saved_rules_are_recognised_as_iptables_save_prints_them() {
        let fw = Firewall::new("rbuild0", "10.95.0.0/24".parse().unwrap());
        let text = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:RBUILD-FWD-rbuild0 - [0:0]\n-A FORWARD -j RBUILD-FWD-rbuild0\n-A RBUILD-FWD-rbuild0 -o rbuild0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A RBUILD-FWD-rbuild0 -i rbuild0 -j ACCEPT\n-A RBUILD-FWD-rbuild0 -d 10.95.0.2/32 ! -i rbuild0 -o rbuild0 -p tcp -m tcp --dport 80 -m comment --comment \"rbuild:c1\" -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:RBUILD-DNAT-rbuild0 - [0:0]\n:RBUILD-NAT-rbuild0 - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j RBUILD-DNAT-rbuild0\n-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j RBUILD-DNAT-rbuild0\n-A POSTROUTING -j RBUILD-NAT-rbuild0\n-A RBUILD-DNAT-rbuild0 -i rbuild0 -j RETURN\n-A RBUILD-NAT-rbuild0 -s 10.95.0.0/24 ! -o rbuild0 -j MASQUERADE\nCOMMIT\n";
        let saved = Saved::parse(text);
        assert!(fw.in_place(&saved));
        let rules = fw
            .rules_with_comment(Some(&saved), FILTER, &fw.fwd_chain())
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(comment_id(&rules[0]), Some("c1"));
        // A missing jump, another subnet or a rule in the wrong table is not in place.
        let no_jump = Saved::parse(&text.replace("-A POSTROUTING -j RBUILD-NAT-rbuild0\n", ""));
        assert!(!fw.in_place(&no_jump));
        let other = Firewall::new("rbuild0", "10.96.0.0/24".parse().unwrap());
        assert!(!other.in_place(&saved));
        let moved = Saved::parse(&text.replace("*nat", "*mangle"));
        assert!(!fw.in_place(&moved));
    }

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
