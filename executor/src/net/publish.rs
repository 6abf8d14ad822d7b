//! `-p/--publish` and `-P/--publish-all`: Docker's port-spec syntax (go-connections'
//! `nat.ParsePortSpec`): `[ip:][hostPort:]containerPort[/proto]`, ports or ranges
//! (`8000-8001:80-81`), an empty host port for a random one (`127.0.0.1::80`), and a host
//! range with a single container port meaning "any free port of that range".

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The host address to listen on; `None` for all addresses (Docker's default).
    pub host_ip: Option<IpAddr>,
    /// First acceptable host port; 0 for any free (ephemeral) port.
    pub host_port: u16,
    /// Last acceptable host port (== `host_port` for a fixed port): any free port of
    /// `host_port..=host_port_end` is taken.
    pub host_port_end: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            match ip {
                IpAddr::V4(v4) => write!(f, "{v4}:")?,
                IpAddr::V6(v6) => write!(f, "[{v6}]:")?,
            }
        }
        if self.host_port != 0 {
            write!(f, "{}", self.host_port)?;
            if self.host_port_end != self.host_port {
                write!(f, "-{}", self.host_port_end)?;
            }
            f.write_str(":")?;
        } else if self.host_ip.is_some() {
            f.write_str(":")?;
        }
        write!(f, "{}/{}", self.container_port, self.proto)
    }
}

fn invalid(spec: &str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        what: "port publish spec",
        value: spec.to_string(),
        reason: reason.into(),
    }
}

/// `N` or `N-M` (ports 1..=65535, N <= M).
fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let port = |p: &str| {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().filter(|&n| n != 0)
    };
    let (a, b) = (port(a)?, port(b)?);
    (a <= b).then_some((a, b))
}

fn parse_proto(spec: &str, p: &str) -> Result<Proto> {
    match p.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "sctp" => Err(invalid(spec, "sctp is not supported")),
        other => Err(invalid(spec, format!("invalid protocol {other:?}"))),
    }
}

/// Parses one `-p` value into the mappings it stands for (one per container port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, parse_proto(spec, p)?),
        None => (spec, Proto::Tcp),
    };
    // Split off the container port and host port from the right; what is left is the IP
    // (which for IPv6 must be bracketed).
    let (ip, host, ctr) = match rest.rsplit_once(':') {
        None => ("", "", rest),
        Some((left, ctr)) => match left.rsplit_once(':') {
            None => ("", left, ctr),
            Some((ip, host)) => (ip, host, ctr),
        },
    };
    let host_ip = if ip.is_empty() {
        None
    } else {
        let bare = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(ip);
        Some(
            bare.parse::<IpAddr>()
                .map_err(|_| invalid(spec, format!("invalid IP address {ip:?}")))?,
        )
    };
    if ctr.is_empty() {
        return Err(invalid(spec, "no container port specified"));
    }
    let (cstart, cend) =
        parse_range(ctr).ok_or_else(|| invalid(spec, format!("invalid container port {ctr:?}")))?;
    let (hstart, hend) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| invalid(spec, format!("invalid host port {host:?}")))?
    };
    let ccount = cend - cstart;
    if !host.is_empty() && hend - hstart != ccount && cstart != cend {
        return Err(invalid(
            spec,
            format!("invalid ranges specified for container and host ports: {ctr} and {host}"),
        ));
    }
    Ok((0..=ccount)
        .map(|i| {
            let (hp, hpe) = if host.is_empty() {
                (0, 0)
            } else if cstart == cend {
                (hstart, hend)
            } else {
                (hstart + i, hstart + i)
            };
            PortMapping {
                host_ip,
                host_port: hp,
                host_port_end: hpe,
                container_port: cstart + i,
                proto,
            }
        })
        .collect())
}

/// `-P`: every exposed port of the image config (`ExposedPorts` keys like `80/tcp`, `53/udp`,
/// or `8000-8002/tcp`) on a random host port, on all addresses.
pub fn publish_all<S: AsRef<str>>(exposed: &[S]) -> Result<Vec<PortMapping>> {
    let mut out = Vec::new();
    for e in exposed {
        let e = e.as_ref();
        let (ports, proto) = match e.split_once('/') {
            Some((p, proto)) => (p, parse_proto(e, proto)?),
            None => (e, Proto::Tcp),
        };
        let (a, b) = parse_range(ports).ok_or_else(|| invalid(e, "invalid exposed port"))?;
        for port in a..=b {
            out.push(PortMapping {
                host_ip: None,
                host_port: 0,
                host_port_end: 0,
                container_port: port,
                proto,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn m(ip: Option<IpAddr>, h: u16, he: u16, c: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: ip,
            host_port: h,
            host_port_end: he,
            container_port: c,
            proto,
        }
    }

    #[test]
    fn docker_syntax() {
        use Proto::*;
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(parse_publish("80").unwrap(), [m(None, 0, 0, 80, Tcp)]);
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            [m(None, 8080, 8080, 80, Tcp)]
        );
        assert_eq!(
            parse_publish("53:53/udp").unwrap(),
            [m(None, 53, 53, 53, Udp)]
        );
        assert_eq!(
            parse_publish("53:53/UDP").unwrap(),
            [m(None, 53, 53, 53, Udp)]
        );
        assert_eq!(parse_publish("80/tcp").unwrap(), [m(None, 0, 0, 80, Tcp)]);
        assert_eq!(
            parse_publish("127.0.0.1:8080:80").unwrap(),
            [m(lo, 8080, 8080, 80, Tcp)]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            [m(lo, 0, 0, 80, Tcp)]
        );
        assert_eq!(parse_publish("::80").unwrap(), [m(None, 0, 0, 80, Tcp)]);
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            [m(None, 8000, 8000, 80, Tcp), m(None, 8001, 8001, 81, Tcp)]
        );
        assert_eq!(
            parse_publish("80-81/udp").unwrap(),
            [m(None, 0, 0, 80, Udp), m(None, 0, 0, 81, Udp)]
        );
        // A host range with one container port: any free port of the range.
        assert_eq!(
            parse_publish("8000-8010:80").unwrap(),
            [m(None, 8000, 8010, 80, Tcp)]
        );
        let v6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            [m(v6, 8080, 8080, 80, Tcp)]
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "abc",
            "0",
            "70000",
            "8080:",
            "8000-8002:80-81",
            "81-80",
            "1.2.3:80:80",
            "80/sctp",
            "80/icmp",
            "a:b:c:d:80:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad:?} should fail");
        }
        let msg = parse_publish("8000-8002:80-81").unwrap_err().to_string();
        assert!(msg.contains("invalid ranges"), "{msg}");
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            "8080:80/tcp",
            "127.0.0.1:8080:80/udp",
            "80/tcp",
            "127.0.0.1::80/tcp",
        ] {
            let m = parse_publish(spec).unwrap();
            assert_eq!(m[0].to_string(), spec);
        }
    }

    #[test]
    fn publish_all_exposed() {
        let got = publish_all(&["80/tcp", "53/udp", "9000-9001/tcp"]).unwrap();
        let ports: Vec<(u16, Proto)> = got.iter().map(|m| (m.container_port, m.proto)).collect();
        assert_eq!(
            ports,
            [
                (80, Proto::Tcp),
                (53, Proto::Udp),
                (9000, Proto::Tcp),
                (9001, Proto::Tcp)
            ]
        );
        assert!(got.iter().all(|m| m.host_port == 0 && m.host_ip.is_none()));
    }
}
