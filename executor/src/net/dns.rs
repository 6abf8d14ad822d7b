//! The container's `/etc/resolv.conf` and `/etc/hosts` on a bridge network, following
//! Docker's (libnetwork `resolvconf` and `etchosts`) rules for the default bridge:
//!
//! - resolv.conf: the host's file, or systemd-resolved's upstream file
//!   (`/run/systemd/resolve/resolv.conf`) when the host's only nameserver is the
//!   127.0.0.53 stub; loopback nameservers (127.0.0.0/8, `::1`) are dropped since they
//!   mean nothing inside the container's network namespace, IPv6 ones too (the bridge is
//!   IPv4-only); `search`/`options` lines are kept. When no nameserver is left, Docker's
//!   fallback (Google's 8.8.8.8 and 8.8.4.4, [`DEFAULT_DNS`]) is used: pointing at the
//!   gateway would not help, as nothing answers DNS there (no embedded DNS server on the
//!   default bridge, as in Docker).
//! - hosts: Docker's default entries, the `--add-host` entries, then the container's own
//!   address with its hostname.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::error::{Error, Result};

/// Docker's fallback nameservers when the host has no usable one.
pub const DEFAULT_DNS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
];

/// Where the host's resolver configuration lives.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's file listing the real upstream servers.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The container's resolv.conf from the host's, read from the usual places.
pub fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let upstream = Path::new(RESOLVED_UPSTREAM);
    let content = if only_resolved_stub(&main) && upstream.exists() {
        std::fs::read_to_string(upstream).unwrap_or(main)
    } else {
        main
    };
    resolv_conf(&content, &DEFAULT_DNS)
}

fn nameservers(content: &str) -> impl Iterator<Item = &str> {
    content.lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver")).then(|| w.next()).flatten()
    })
}

fn only_resolved_stub(content: &str) -> bool {
    let ns: Vec<&str> = nameservers(content).collect();
    !ns.is_empty() && ns.iter().all(|n| *n == "127.0.0.53")
}

/// Filters a host resolv.conf for a bridge container: loopback and IPv6 nameservers
/// dropped, `fallback` used when none is left, comments and other lines kept.
pub fn resolv_conf(host: &str, fallback: &[IpAddr]) -> String {
    let mut out = String::new();
    let mut kept = 0;
    for line in host.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("nameserver") {
            let addr = w.next().unwrap_or("");
            // An IPv6 address may carry a zone (`fe80::1%eth0`).
            let ip = addr.split('%').next().unwrap_or("").parse::<IpAddr>();
            match ip {
                Ok(IpAddr::V4(v4)) if !v4.is_loopback() => {
                    kept += 1;
                    out.push_str(line.trim());
                    out.push('\n');
                }
                _ => {}
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        for ip in fallback {
            out.push_str(&format!("nameserver {ip}\n"));
        }
    }
    out
}

/// Docker's default `/etc/hosts` head.
const HOSTS_DEFAULTS: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// The container's `/etc/hosts`: defaults, `extra` (`--add-host`), then `ip hostname`.
pub fn hosts_file(hostname: &str, ip: Option<Ipv4Addr>, extra: &[(String, IpAddr)]) -> String {
    let mut out = HOSTS_DEFAULTS.to_string();
    for (name, addr) in extra {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// Parses an `--add-host` value: `name:ip` or `name=ip` (Docker 25+), with `host-gateway`
/// standing for `gateway` (the bridge's address, Docker's default host-gateway-ip).
pub fn parse_add_host(spec: &str, gateway: Ipv4Addr) -> Result<(String, IpAddr)> {
    let bad = |reason: &str| Error::InvalidArgument {
        what: "--add-host",
        value: spec.to_string(),
        reason: reason.to_string(),
    };
    // `=` first: an IPv6 address contains `:`.
    let (name, addr) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| bad("expected HOST:IP"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        return Err(bad("invalid host name"));
    }
    let addr = if addr == "host-gateway" {
        IpAddr::V4(gateway)
    } else {
        let a = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        a.parse().map_err(|_| bad("invalid IP address"))?
    };
    Ok((name.to_string(), addr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolv_filtering() {
        let host = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0 trust-ad\n";
        let got = resolv_conf(host, &DEFAULT_DNS);
        assert_eq!(
            got,
            "# generated\nsearch example.com\nnameserver 10.1.2.3\noptions edns0 trust-ad\n"
        );
        let got = resolv_conf("nameserver 127.0.0.53\noptions edns0\n", &DEFAULT_DNS);
        assert_eq!(
            got,
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf("", &[]), "");
        assert!(only_resolved_stub("nameserver 127.0.0.53\n"));
        assert!(!only_resolved_stub(
            "nameserver 127.0.0.53\nnameserver 1.1.1.1\n"
        ));
        assert!(!only_resolved_stub(""));
    }

    #[test]
    fn hosts_and_add_host() {
        let gw = Ipv4Addr::new(10, 89, 0, 1);
        let extra = vec![
            parse_add_host("db:10.0.0.5", gw).unwrap(),
            parse_add_host("host.docker.internal:host-gateway", gw).unwrap(),
            parse_add_host("v6=::1", gw).unwrap(),
            parse_add_host("v6b:[fe80::1]", gw).unwrap(),
        ];
        let h = hosts_file("abc123", Some(Ipv4Addr::new(10, 89, 0, 2)), &extra);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.5\tdb\n"));
        assert!(h.contains("10.89.0.1\thost.docker.internal\n"));
        assert!(h.contains("::1\tv6\n"));
        assert!(h.contains("fe80::1\tv6b\n"));
        assert!(h.ends_with("10.89.0.2\tabc123\n"));
        assert!(parse_add_host("nohost", gw).is_err());
        assert!(parse_add_host(":1.2.3.4", gw).is_err());
        assert!(parse_add_host("x:notanip", gw).is_err());
    }
}
