//! The bridge driver: a Linux bridge with the subnet's gateway address, one veth pair and
//! one persistent network namespace per container, an IP lease per container, and the
//! bridge's iptables chains. Every mutating operation holds the bridge's lock file, so
//! concurrent `rbuild run`s (separate processes, no daemon) serialize on it.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::dns;
use super::firewall::{Firewall, PortRule};
use super::ipam::{IpamState, Lease, Subnet};
use super::netlink::Netlink;
use super::netns::{self, NetNs};
use super::proxy::PortProxy;
use super::publish::PortMapping;
use crate::error::{Error, IoContext, Result};
use crate::sandbox::EtcFiles;

/// The default bridge's name.
pub const DEFAULT_BRIDGE: &str = "rbuild0";
/// The default bridge's subnet: clear of Docker's 172.17.0.0/16 and podman's 10.88.0.0/16
/// and 10.89.x.0/24 pools; override with [`SUBNET_ENV`].
pub const DEFAULT_SUBNET: &str = "10.95.0.0/24";
/// Environment variable overriding the default bridge's subnet (CIDR).
pub const SUBNET_ENV: &str = "RBUILD_BRIDGE_SUBNET";
/// Where containers' network namespaces are bind-mounted (tmpfs: gone after a reboot, like
/// the namespaces themselves).
pub const DEFAULT_NETNS_DIR: &str = "/run/rbuild/netns";
/// The interface name inside the container.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Where and how a bridge lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Bridge interface name (at most 15 bytes; 12 keeps the chain names short enough).
    pub name: String,
    pub subnet: Subnet,
    /// Lock file and IP leases (`<root>/net/<name>` by default).
    pub state_dir: PathBuf,
    /// Network namespace bind mounts.
    pub netns_dir: PathBuf,
    /// Manage iptables rules (NAT, forwarding, DNAT of published ports).
    pub firewall: bool,
}

impl BridgeConfig {
    /// The default bridge of the rbuild root `root_dir`, the subnet from
    /// `RBUILD_BRIDGE_SUBNET` when set.
    pub fn default_for(root_dir: &Path) -> Result<BridgeConfig> {
        let subnet = match std::env::var(SUBNET_ENV) {
            Ok(s) if !s.trim().is_empty() => s.parse()?,
            _ => DEFAULT_SUBNET.parse()?,
        };
        Ok(BridgeConfig {
            name: DEFAULT_BRIDGE.to_string(),
            subnet,
            state_dir: root_dir.join("net").join(DEFAULT_BRIDGE),
            netns_dir: PathBuf::from(DEFAULT_NETNS_DIR),
            firewall: true,
        })
    }
}

/// A container's attachment to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub container_id: String,
    pub hostname: String,
    /// The container's network namespace: pass `netns.path()` to
    /// [`crate::NetworkMode::Join`].
    pub netns: NetNs,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host side of the veth pair (a port of the bridge).
    pub veth_host: String,
    /// The container interface's MAC (Docker's IP-derived `02:42:<ip>`).
    pub mac: [u8; 6],
}

impl Endpoint {
    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The generated `/etc` files of the container: resolv.conf from the host's (see
    /// [`dns`]), hosts with the container's address and `extra_hosts` (`--add-host`), and
    /// the hostname.
    pub fn etc_files(&self, extra_hosts: &[(String, IpAddr)]) -> EtcFiles {
        EtcFiles {
            resolv_conf: Some(dns::host_resolv_conf()),
            hosts: Some(dns::hosts_file(&self.hostname, Some(self.ip), extra_hosts)),
            hostname: Some(format!("{}\n", self.hostname)),
        }
    }
}

/// What [`Bridge::cleanup_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub leases: Vec<String>,
    pub veths: Vec<String>,
    pub netns: Vec<PathBuf>,
    pub rule_owners: Vec<String>,
}

/// A bridge network (created on first use).
#[derive(Debug, Clone)]
pub struct Bridge {
    cfg: BridgeConfig,
    fw: Firewall,
}

/// The bridge's lock, held while changing anything.
struct Locked {
    _lock: Flock<fs::File>,
    ipam_path: PathBuf,
}

impl Bridge {
    /// The default bridge of the rbuild root `root_dir` (see [`BridgeConfig::default_for`]).
    pub fn open(root_dir: &Path) -> Result<Bridge> {
        Bridge::with_config(BridgeConfig::default_for(root_dir)?)
    }

    pub fn with_config(cfg: BridgeConfig) -> Result<Bridge> {
        let n = &cfg.name;
        if n.is_empty()
            || n.len() > 15
            || !n
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(Error::InvalidArgument {
                what: "bridge name",
                value: n.clone(),
                reason: "1-15 characters of [A-Za-z0-9_-]".into(),
            });
        }
        let fw = Firewall::new(n, cfg.subnet);
        Ok(Bridge { cfg, fw })
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn subnet(&self) -> Subnet {
        self.cfg.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.cfg.subnet.gateway()
    }

    /// The iptables chains of this bridge: (filter forward, nat masquerade, nat DNAT).
    pub fn chains(&self) -> (String, String, String) {
        (
            self.fw.fwd_chain(),
            self.fw.nat_chain(),
            self.fw.dnat_chain(),
        )
    }

    fn lock(&self) -> Result<Locked> {
        let dir = &self.cfg.state_dir;
        fs::create_dir_all(dir).ctx("create", dir)?;
        let path = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open", &path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys(format!("flock {}", path.display()), e))?;
        Ok(Locked {
            _lock: lock,
            ipam_path: dir.join("ipam.json"),
        })
    }

    /// The host veth name of container `id` (stable, so it can be found again).
    pub fn veth_name(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.cfg.name.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        format!("veth{}", &hex::encode(h.finalize())[..10])
    }

    fn alias(&self, id: &str) -> String {
        format!("rbuild:{}:{id}", self.cfg.name)
    }

    fn netns_name(&self, id: &str) -> String {
        format!("{}-{id}", self.cfg.name)
    }

    /// Creates the bridge, its address and rules when missing, and turns IPv4 forwarding on.
    /// Returns the bridge's interface index. Called with the lock held.
    fn ensure(&self, nl: &mut Netlink) -> Result<u32> {
        let name = &self.cfg.name;
        let subnet = self.cfg.subnet;
        let index = match nl.link(name)? {
            Some(l) => l.index,
            None => {
                for r in nl.routes_v4()? {
                    if r.prefix > 0 && subnet.overlaps(r.dst, r.prefix) {
                        return Err(Error::network(
                            format!("create bridge {name} with subnet {subnet}"),
                            format!(
                                "the subnet overlaps the host route {}/{}; choose another \
                                 with {SUBNET_ENV}",
                                r.dst, r.prefix
                            ),
                        ));
                    }
                }
                nl.add_bridge(name, ip_mac(subnet.gateway()))?;
                nl.link(name)?
                    .ok_or_else(|| {
                        Error::network(format!("create bridge {name}"), "not found after creation")
                    })?
                    .index
            }
        };
        let addrs = nl.addresses_v4(index)?;
        if let Some((a, p)) = addrs
            .iter()
            .find(|(a, p)| (*a, *p) != (subnet.gateway(), subnet.prefix()))
        {
            if !addrs.contains(&(subnet.gateway(), subnet.prefix())) {
                return Err(Error::network(
                    format!("bridge {name}"),
                    format!(
                        "it has address {a}/{p}, not {}/{}: delete the bridge (no container \
                         may use it) or set {SUBNET_ENV} to its subnet",
                        subnet.gateway(),
                        subnet.prefix()
                    ),
                ));
            }
        }
        nl.add_address(index, subnet.gateway(), subnet.prefix())?;
        nl.set_link(index, None, None, true)?;
        enable_ip_forward()?;
        if self.cfg.firewall {
            self.fw.setup()?;
        }
        Ok(index)
    }

    /// Attaches container `id` (`[A-Za-z0-9_.-]`, at most 64 characters): a new network
    /// namespace with `eth0` (an address of the subnet, default route via the gateway) and
    /// `lo` up, the host end of its veth pair on the bridge.
    pub fn connect(&self, id: &str, hostname: &str) -> Result<Endpoint> {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        {
            return Err(Error::InvalidArgument {
                what: "container id",
                value: id.to_string(),
                reason: "1-64 characters of [A-Za-z0-9_.-]".into(),
            });
        }
        let locked = self.lock()?;
        let mut nl = Netlink::open()?;
        let bridge_index = self.ensure(&mut nl)?;
        let subnet = self.cfg.subnet;
        let mut state = IpamState::load(&locked.ipam_path, &subnet)?;
        if state.leases.contains_key(id) {
            return Err(Error::network(
                format!("connect {id} to {}", self.cfg.name),
                "already connected",
            ));
        }
        let ip = state.next_free(&subnet)?;
        let veth = self.veth_name(id);
        let netns_path = self.cfg.netns_dir.join(self.netns_name(id));
        // The lease first: a crash from here on leaves something cleanup_stale finds.
        state.last = Some(ip);
        state.leases.insert(
            id.to_string(),
            Lease {
                ip,
                veth: veth.clone(),
                netns: netns_path.clone(),
                published: false,
            },
        );
        state.save(&locked.ipam_path)?;
        let mac = ip_mac(ip);
        match self.plumb(&mut nl, bridge_index, id, &veth, ip, mac) {
            Ok(ns) => Ok(Endpoint {
                container_id: id.to_string(),
                hostname: hostname.to_string(),
                netns: ns,
                ip,
                prefix: subnet.prefix(),
                gateway: subnet.gateway(),
                veth_host: veth,
                mac,
            }),
            Err(e) => {
                let _ = self.teardown_locked(&locked, &mut nl, id, false);
                Err(e)
            }
        }
    }

    /// The namespace, veth pair and addresses of a new endpoint.
    fn plumb(
        &self,
        nl: &mut Netlink,
        bridge_index: u32,
        id: &str,
        veth: &str,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<NetNs> {
        // A leftover of a crashed run with the same id.
        if let Some(old) = nl.link(veth)? {
            nl.delete_link(old.index)?;
        }
        netns::remove_path(&self.cfg.netns_dir.join(self.netns_name(id)))?;
        let ns = NetNs::create(&self.cfg.netns_dir, &self.netns_name(id))?;
        let ns_file = fs::File::open(ns.path()).ctx("open", ns.path())?;
        nl.add_veth(veth, CONTAINER_IFNAME, mac, ns_file.as_fd())?;
        drop(ns_file);
        let host = nl.link(veth)?.ok_or_else(|| {
            Error::network(format!("create veth {veth}"), "not found after creation")
        })?;
        nl.set_link(host.index, Some(bridge_index), Some(&self.alias(id)), true)?;
        let (prefix, gateway) = (self.cfg.subnet.prefix(), self.gateway());
        ns.run(|| {
            let mut inner = Netlink::open()?;
            let lo = inner
                .link("lo")?
                .ok_or_else(|| Error::network("container netns", "no lo interface"))?;
            inner.set_link(lo.index, None, None, true)?;
            let eth = inner.link(CONTAINER_IFNAME)?.ok_or_else(|| {
                Error::network(
                    "container netns",
                    "eth0 missing after creating the veth pair",
                )
            })?;
            inner.add_address(eth.index, ip, prefix)?;
            inner.set_link(eth.index, None, None, true)?;
            inner.add_default_route(gateway)
        })?;
        Ok(ns)
    }

    /// Publishes ports of a connected container: DNAT and forward rules (when the firewall
    /// is managed) and a userland proxy per mapping. The proxies are returned for the
    /// container's monitor to own; their `local_addr` has the chosen host port.
    pub fn publish(&self, ep: &Endpoint, mappings: &[PortMapping]) -> Result<Vec<PortProxy>> {
        let mut proxies = Vec::new();
        for m in mappings {
            let proxy = PortProxy::start_mapping(m, ep.ip)?;
            if self.cfg.firewall {
                let locked = self.lock()?;
                let mut state = IpamState::load(&locked.ipam_path, &self.cfg.subnet)?;
                if let Some(lease) = state.leases.get_mut(&ep.container_id)
                    && !lease.published
                {
                    lease.published = true;
                    state.save(&locked.ipam_path)?;
                }
                self.fw.add_port(
                    &ep.container_id,
                    &PortRule {
                        host_ip: m.host_ip,
                        host_port: proxy.local_addr().port(),
                        container_ip: ep.ip,
                        container_port: m.container_port,
                        proto: m.proto,
                    },
                )?;
            }
            proxies.push(proxy);
        }
        Ok(proxies)
    }

    /// Detaches a container: its rules, veth pair and namespace go, its address is released.
    pub fn disconnect(&self, ep: &Endpoint) -> Result<()> {
        self.disconnect_id(&ep.container_id)
    }

    /// [`Bridge::disconnect`] by container id (e.g. after a restart of rbuild).
    pub fn disconnect_id(&self, id: &str) -> Result<()> {
        let locked = self.lock()?;
        let mut nl = Netlink::open()?;
        self.teardown_locked(&locked, &mut nl, id, false)
    }

    /// [`Bridge::disconnect`] of an endpoint the caller gives up (with its handle on the
    /// namespace): the kernel deletes the veth pair with the namespace, after we return.
    pub fn release(&self, ep: Endpoint) -> Result<()> {
        let locked = self.lock()?;
        let mut nl = Netlink::open()?;
        let id = ep.container_id.clone();
        drop(ep);
        self.teardown_locked(&locked, &mut nl, &id, true)
    }

    /// The endpoint of a connected container, from its lease (`hostname` is not recorded and
    /// comes back empty).
    pub fn endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        let locked = self.lock()?;
        let state = IpamState::load(&locked.ipam_path, &self.cfg.subnet)?;
        let Some(lease) = state.leases.get(id) else {
            return Ok(None);
        };
        let Some(ns) = NetNs::open(&lease.netns) else {
            return Ok(None);
        };
        Ok(Some(Endpoint {
            container_id: id.to_string(),
            hostname: String::new(),
            netns: ns,
            ip: lease.ip,
            prefix: self.cfg.subnet.prefix(),
            gateway: self.gateway(),
            veth_host: lease.veth.clone(),
            mac: ip_mac(lease.ip),
        }))
    }

    /// Removes everything of container `id`, continuing past failures (the first is
    /// returned). `kernel_veth`: the caller holds no reference to the namespace any more
    /// ([`Bridge::release`]), so the kernel may delete the veth pair with it.
    fn teardown_locked(
        &self,
        locked: &Locked,
        nl: &mut Netlink,
        id: &str,
        kernel_veth: bool,
    ) -> Result<()> {
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        // Per-container rules exist only for a lease marked published (or one without a
        // lease: a crash's leftovers); others skip the firewall read (an exec of
        // iptables-save).
        let state = IpamState::load(&locked.ipam_path, &self.cfg.subnet);
        let published = state
            .as_ref()
            .map_or(true, |st| st.leases.get(id).is_none_or(|l| l.published));
        if self.cfg.firewall && published {
            note(self.fw.remove_container(id));
        }
        // The namespace first. With `kernel_veth`, when it was there and is now unmounted,
        // the kernel deletes the veth pair with it (its end inside goes with the namespace,
        // taking the peer) once nothing holds the namespace, off our path: an explicit
        // delete waits ~20 ms for the network stack to quiesce, a third of a short
        // `run --rm`. Otherwise (a crash's leftovers, a caller keeping the namespace) the
        // veth is deleted here.
        let ns_path = self.cfg.netns_dir.join(self.netns_name(id));
        let had_ns = crate::sys::is_netns_file(&ns_path);
        let ns_removed = netns::remove_path(&ns_path);
        let kernel_deletes_veth = kernel_veth && had_ns && ns_removed.is_ok();
        note(ns_removed);
        let veth = self.veth_name(id);
        if !kernel_deletes_veth {
            note(nl.link(&veth).and_then(|l| match l {
                Some(l) => nl.delete_link(l.index),
                None => Ok(()),
            }));
        }
        note(state.and_then(|mut st| {
            if st.leases.remove(id).is_some() {
                st.save(&locked.ipam_path)
            } else {
                Ok(())
            }
        }));
        first.map_or(Ok(()), Err)
    }

    /// Removes what crashed runs left behind: leases, veths, namespaces and rules of every
    /// container not in `live` (the ids of containers still running).
    pub fn cleanup_stale(&self, live: &HashSet<String>) -> Result<CleanupReport> {
        let locked = self.lock()?;
        let mut nl = Netlink::open()?;
        let mut report = CleanupReport::default();
        let state = IpamState::load(&locked.ipam_path, &self.cfg.subnet)?;
        for id in state.leases.keys().filter(|id| !live.contains(*id)) {
            self.teardown_locked(&locked, &mut nl, id, false)?;
            report.leases.push(id.clone());
        }
        let alias_prefix = format!("rbuild:{}:", self.cfg.name);
        for link in nl.links()? {
            let Some(id) = link
                .alias
                .as_deref()
                .and_then(|a| a.strip_prefix(&alias_prefix))
            else {
                continue;
            };
            if !live.contains(id) {
                nl.delete_link(link.index)?;
                report.veths.push(link.name);
            }
        }
        let ns_prefix = format!("{}-", self.cfg.name);
        if let Ok(entries) = fs::read_dir(&self.cfg.netns_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_prefix(&ns_prefix) else {
                    continue;
                };
                if !live.contains(id) {
                    netns::remove_path(&e.path())?;
                    report.netns.push(e.path());
                }
            }
        }
        if self.cfg.firewall {
            let stale: Vec<String> = self
                .fw
                .container_ids()?
                .into_iter()
                .filter(|id| !live.contains(id))
                .collect();
            self.fw.remove_where(|id| stale.iter().any(|s| s == id))?;
            report.rule_owners = stale;
        }
        Ok(report)
    }

    /// Removes the whole network: every container's endpoint (see
    /// [`Bridge::cleanup_stale`] with no live container), the rules, the bridge and the
    /// state directory.
    pub fn destroy(&self) -> Result<()> {
        self.cleanup_stale(&HashSet::new())?;
        let _locked = self.lock()?;
        if self.cfg.firewall {
            self.fw.teardown()?;
        }
        let mut nl = Netlink::open()?;
        if let Some(l) = nl.link(&self.cfg.name)? {
            nl.delete_link(l.index)?;
        }
        let ipam = self.cfg.state_dir.join("ipam.json");
        match fs::remove_file(&ipam) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", ipam, e)),
            _ => Ok(()),
        }
    }
}

/// Docker's IP-derived MAC, `02:42:<the address's 4 bytes>` (locally administered, so
/// unique on the bridge as long as the addresses are).
fn ip_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Turns IPv4 forwarding on (needed for NAT out of the bridge), leaving it alone when on.
fn enable_ip_forward() -> Result<()> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    let now = fs::read_to_string(path).ctx("read", path)?;
    if now.trim() != "1" {
        fs::write(path, "1\n").ctx("write", path)?;
    }
    Ok(())
}
