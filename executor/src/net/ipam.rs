//! IPv4 subnets and the bridge's address allocator: one JSON file (container id → lease)
//! read and written under the bridge's lock file, addresses handed out round-robin from
//! `.2` so a just-released address is not reused at once (as Docker and netavark do).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, IoContext, Result};

/// An IPv4 network `addr/prefix` (the address is the network address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// `network/prefix`; the host bits of `addr` are cleared. Prefixes above /30 leave no
    /// room for a gateway and a container and are refused.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        if !(8..=30).contains(&prefix) {
            return Err(Error::InvalidArgument {
                what: "subnet",
                value: format!("{addr}/{prefix}"),
                reason: "the prefix length must be between 8 and 30".into(),
            });
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        Ok(Subnet { network, prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's address: the first host (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Number of addresses in the subnet.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(n))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// True when the two networks share an address.
    pub fn overlaps(&self, other_net: Ipv4Addr, other_prefix: u8) -> bool {
        let p = self.prefix.min(other_prefix);
        u32::from(self.network) & mask(p) == u32::from(other_net) & mask(p)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet> {
        let bad = |reason: &str| Error::InvalidArgument {
            what: "subnet",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected CIDR notation like 10.89.0.0/24"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("bad prefix length"))?;
        Subnet::new(addr, prefix)
    }
}

/// One container's lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// Host-side veth name.
    pub veth: String,
    /// The container's netns bind mount.
    pub netns: PathBuf,
    /// Set (under the bridge lock) before the first firewall rule of a published port is
    /// added: a lease without it has no per-container rules to look for at teardown.
    #[serde(default)]
    pub published: bool,
}

/// The allocator's file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpamState {
    /// The subnet the leases belong to; leases of another subnet are dropped on load.
    pub subnet: Option<String>,
    /// The last address handed out (round-robin start).
    pub last: Option<Ipv4Addr>,
    pub leases: BTreeMap<String, Lease>,
}

impl IpamState {
    /// Reads the state at `path` (empty when missing), for `subnet`.
    pub fn load(path: &Path, subnet: &Subnet) -> Result<IpamState> {
        let mut st: IpamState = match fs::read(path) {
            Ok(b) if b.is_empty() => IpamState::default(),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Metadata {
                path: path.to_path_buf(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpamState::default(),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let here = subnet.to_string();
        if st.subnet.as_deref() != Some(here.as_str()) {
            st.leases.retain(|_, l| subnet.contains(l.ip));
            st.last = st.last.filter(|ip| subnet.contains(*ip));
            st.subnet = Some(here);
        }
        Ok(st)
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(|e| Error::Metadata {
            path: path.to_path_buf(),
            source: e,
        })?;
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, data).ctx("write", &tmp)?;
        fs::rename(&tmp, path).ctx("rename", path)
    }

    /// The next free address after the last one handed out (skipping the network, the
    /// gateway and the broadcast address).
    pub fn next_free(&self, subnet: &Subnet) -> Result<Ipv4Addr> {
        let used: std::collections::HashSet<Ipv4Addr> =
            self.leases.values().map(|l| l.ip).collect();
        let size = subnet.size();
        let base = u32::from(subnet.network());
        let start = self
            .last
            .map(|ip| u32::from(ip).wrapping_sub(base))
            .unwrap_or(1);
        for step in 1..size {
            let off = (start + step) % size;
            if off < 2 || off == size - 1 {
                continue;
            }
            let ip = Ipv4Addr::from(base + off);
            if !used.contains(&ip) {
                return Ok(ip);
            }
        }
        Err(Error::network(
            format!("allocate an address in {subnet}"),
            "no free address left",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnet_math() {
        let s: Subnet = "10.89.0.7/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.89.0.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 89, 0, 255));
        assert!(s.contains(Ipv4Addr::new(10, 89, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 1, 1)));
        assert!(s.overlaps(Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(!s.overlaps(Ipv4Addr::new(10, 88, 0, 0), 16));
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
    }

    #[test]
    fn allocation_round_robin_and_exhaustion() {
        let s: Subnet = "10.9.9.0/29".parse().unwrap();
        let mut st = IpamState::default();
        let mut got = Vec::new();
        for i in 0..5 {
            let ip = st.next_free(&s).unwrap();
            st.last = Some(ip);
            st.leases.insert(
                format!("c{i}"),
                Lease {
                    ip,
                    veth: String::new(),
                    netns: PathBuf::new(),
                    published: false,
                },
            );
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        assert!(st.next_free(&s).is_err());
        st.leases.remove("c1");
        assert_eq!(st.next_free(&s).unwrap(), Ipv4Addr::new(10, 9, 9, 3));
        st.leases.remove("c4");
        // Round-robin: after .6 wraps and finds .3 before .6.
        assert_eq!(st.next_free(&s).unwrap(), Ipv4Addr::new(10, 9, 9, 3));
    }
}
