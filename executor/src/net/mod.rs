//! Docker-default-bridge networking for containers (`rbuild run --network bridge`): a Linux
//! bridge (`rbuild0`, [`DEFAULT_SUBNET`]) with the gateway address, one persistent network
//! namespace and veth pair per container, IP leases in a locked JSON file, iptables NAT and
//! forwarding rules in chains of their own, the userland port proxy for `-p`, and the
//! container's `resolv.conf`/`hosts`.
//!
//! Everything here blocks (netlink, iptables, the lock file): call it from
//! `spawn_blocking` in async code. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for the netns
//! bind mounts) and, with the firewall managed (the default), the `iptables` command.
//!
//! Typical use by `rbuild run`:
//! ```no_run
//! # fn main() -> rbuild_executor::Result<()> {
//! use rbuild_executor::net::{Bridge, parse_publish};
//! let bridge = Bridge::open(std::path::Path::new("/var/lib/rbuild"))?;
//! let ep = bridge.connect("c0ffee", "c0ffee")?;
//! let proxies = bridge.publish(&ep, &parse_publish("8080:80")?)?;
//! // spec.network = NetworkMode::Join(ep.netns.path().into()); spec.etc = ep.etc_files(&[]);
//! drop(proxies);
//! bridge.disconnect(&ep)?;
//! # Ok(()) }
//! ```

mod bridge;
pub mod dns;
mod firewall;
mod ipam;
mod netlink;
mod netns;
mod proxy;
mod publish;

pub use bridge::{
    Bridge, BridgeConfig, CONTAINER_IFNAME, CleanupReport, DEFAULT_BRIDGE, DEFAULT_NETNS_DIR,
    DEFAULT_SUBNET, Endpoint, SUBNET_ENV,
};
pub use ipam::Subnet;
pub use netns::NetNs;
pub use proxy::{PortProxy, UDP_IDLE_TIMEOUT};
pub use publish::{PortMapping, Proto, parse_publish, publish_all};
