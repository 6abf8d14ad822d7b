//! Bridge networking tests (root only; iptables needed). Each test makes its own bridge
//! (`rbt<pid><letter>`) and subnet (`10.<200+k>.<pid % 250>.0/24`), so nothing collides with
//! a real `rbuild0` or a concurrent test run, and tears everything down in a Drop guard.
//! Traffic only ever goes to 127.0.0.0/8 and the test subnet.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rbuild_executor::net::{
    Bridge, BridgeConfig, Endpoint, NetNs, PortProxy, Proto, Subnet, dns, parse_publish,
};
use rbuild_executor::{NetworkMode, ProcessSpec, RunOptions, Stdio};

use crate::common::{UnmountGuard, busybox_rootfs, mounts_under, require_root, use_test_init};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A test bridge in a temp dir, destroyed (with everything on it) on drop.
struct Net {
    bridge: Bridge,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(what: &str, k: u8) -> Option<Net> {
        if !require_root(what) {
            return None;
        }
        if Command::new("iptables").arg("--version").output().is_err() {
            eprintln!("skipped: {what} needs iptables (Debian package `iptables`)");
            return None;
        }
        let pid = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let letter = (b'a' + k) as char;
        let cfg = BridgeConfig {
            name: format!("rbt{}{letter}", pid % 100_000),
            subnet: Subnet::new(Ipv4Addr::new(10, 200 + k, (pid % 250) as u8, 0), 24).unwrap(),
            state_dir: dir.path().join("state"),
            netns_dir: dir.path().join("netns"),
            firewall: true,
        };
        let bridge = Bridge::with_config(cfg).unwrap();
        Some(Net { bridge, dir })
    }

    fn netns_dir(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    /// Leases in the allocator's file.
    fn leases(&self) -> Vec<String> {
        let path = self.dir.path().join("state/ipam.json");
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["leases"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Lines of the bridge's chains that belong to containers (`rbuild:<id>` comments).
    fn container_rules(&self) -> Vec<String> {
        let (fwd, nat, dnat) = self.bridge.chains();
        let mut out = Vec::new();
        for (table, chain) in [("filter", fwd), ("nat", nat), ("nat", dnat)] {
            let o = Command::new("iptables")
                .args(["-w", "-t", table, "-S", &chain])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("rbuild:"))
                    .map(str::to_string),
            );
        }
        out
    }

    fn chains_exist(&self) -> bool {
        let (fwd, nat, dnat) = self.bridge.chains();
        [("filter", fwd), ("nat", nat), ("nat", dnat)]
            .iter()
            .any(|(t, c)| {
                Command::new("iptables")
                    .args(["-w", "-t", t, "-n", "-L", c])
                    .output()
                    .unwrap()
                    .status
                    .success()
            })
    }

    /// Asserts nothing of `ep` is left: veth, netns mount and file, lease, rules.
    fn assert_gone(&self, ep: &Endpoint) {
        assert!(
            !link_exists(&ep.veth_host),
            "veth {} still there",
            ep.veth_host
        );
        assert!(!ep.netns.path().exists(), "netns file left");
        assert!(
            !mounts_under(&self.netns_dir()).contains(&ep.netns.path().to_path_buf()),
            "netns mount left: {:?}",
            mounts_under(&self.netns_dir())
        );
        assert!(!self.leases().contains(&ep.container_id), "lease left");
        assert!(
            !self
                .container_rules()
                .iter()
                .any(|r| r.contains(&format!("rbuild:{}\"", ep.container_id))
                    || r.ends_with(&format!("rbuild:{}", ep.container_id))
                    || r.contains(&format!("rbuild:{} ", ep.container_id))),
            "rules left: {:?}",
            self.container_rules()
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(e) = self.bridge.destroy() {
            eprintln!("destroying test bridge {}: {e}", self.bridge.name());
        }
        let leftover = mounts_under(&self.netns_dir());
        let _guard = UnmountGuard(self.dir.path().to_path_buf());
        if !std::thread::panicking() {
            assert!(leftover.is_empty(), "netns mounts left: {leftover:?}");
            assert!(!link_exists(self.bridge.name()), "bridge left");
            assert!(!self.chains_exist(), "chains left");
        }
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Connects to `addr` from inside `ns`, sends `msg` and returns the reply (the peer echoes).
fn tcp_roundtrip_from(ns: Option<&NetNs>, addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let connect = || -> rbuild_executor::Result<TcpStream> {
        TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|e| rbuild_executor::Error::network(format!("connect {addr}"), e))
    };
    let mut s = match ns {
        Some(ns) => ns.run(connect).unwrap(),
        None => connect().unwrap(),
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(msg).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    buf
}

/// A TCP echo server on `listener` (one thread per connection, until EOF).
fn echo_tcp(listener: TcpListener, prefix: &'static [u8]) {
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf);
                let _ = c.write_all(prefix);
                let _ = c.write_all(&buf);
            });
        }
    });
}

fn in_ns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    ns.run(|| Ok(f())).unwrap()
}

#[test]
fn endpoints_reach_each_other_and_the_gateway() {
    let Some(net) = Net::new("bridge endpoints", 0) else {
        return;
    };
    let a = net.bridge.connect("ca", "host-a").unwrap();
    let b = net.bridge.connect("cb", "host-b").unwrap();
    let subnet = net.bridge.subnet();
    assert_ne!(a.ip, b.ip);
    assert!(subnet.contains(a.ip) && subnet.contains(b.ip));
    assert_eq!(a.gateway, subnet.gateway());
    assert_eq!(net.leases(), ["ca", "cb"]);
    let (fwd, nat, _) = net.bridge.chains();
    let rules = |table: &str, chain: &str| {
        let o = Command::new("iptables")
            .args(["-w", "-t", table, "-S", chain])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        rules("nat", &nat).contains(&format!(
            "-s {subnet} ! -o {} -j MASQUERADE",
            net.bridge.name()
        )),
        "{}",
        rules("nat", &nat)
    );
    assert!(rules("filter", "FORWARD").contains(&format!("-j {fwd}")));
    // Refusals: the same container twice, a bad id, a second bridge on an overlapping
    // subnet (which creates nothing).
    let again = net.bridge.connect("ca", "x").unwrap_err().to_string();
    assert!(again.contains("already connected"), "{again}");
    assert!(net.bridge.connect("../x", "x").is_err());
    let mut cfg = net.bridge.config().clone();
    cfg.name = format!("{}z", &cfg.name[..cfg.name.len() - 1]);
    cfg.state_dir = net.dir.path().join("state2");
    cfg.subnet = Subnet::new(subnet.network(), 16).unwrap();
    let other = Bridge::with_config(cfg).unwrap();
    let clash = other.connect("c", "c").unwrap_err().to_string();
    assert!(clash.contains("overlaps"), "{clash}");
    assert!(!link_exists(other.name()));
    assert_eq!(net.leases(), ["ca", "cb"]);
    assert!(link_exists(net.bridge.name()) && link_exists(&a.veth_host));
    let master = std::fs::read_link(format!("/sys/class/net/{}/master", a.veth_host)).unwrap();
    assert!(master.ends_with(net.bridge.name()), "{master:?}");
    assert_eq!(a.mac[..2], [0x02, 0x42]);

    // Inside a: interfaces, default route via the gateway, lo up (a loopback round trip).
    let (dev, route, lo_ok) = in_ns(&a.netns, || {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        let route = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ok = TcpStream::connect_timeout(&l.local_addr().unwrap(), TIMEOUT).is_ok();
        (dev, route, ok)
    });
    assert!(dev.contains("eth0:") && dev.contains("lo:"), "{dev}");
    let gw_hex = format!("{:08X}", u32::from_le_bytes(a.gateway.octets()));
    assert!(
        route
            .lines()
            .any(|l| l.starts_with("eth0\t00000000\t") && l.contains(&gw_hex)),
        "no default route via {}: {route}",
        a.gateway
    );
    assert!(lo_ok, "lo is not up");

    // a -> b over the bridge.
    let lb = in_ns(&b.netns, || TcpListener::bind((b.ip, 0)).unwrap());
    let b_addr = lb.local_addr().unwrap();
    echo_tcp(lb, b"b:");
    assert_eq!(
        tcp_roundtrip_from(Some(&a.netns), b_addr, b"ping"),
        b"b:ping"
    );
    // b -> gateway (the host end of the bridge).
    let lg = TcpListener::bind((a.gateway, 0)).unwrap();
    let g_addr = lg.local_addr().unwrap();
    echo_tcp(lg, b"gw:");
    assert_eq!(tcp_roundtrip_from(Some(&b.netns), g_addr, b"hi"), b"gw:hi");

    net.bridge.disconnect(&a).unwrap();
    net.assert_gone(&a);
    // b is untouched by a's teardown.
    assert_eq!(
        tcp_roundtrip_from(Some(&b.netns), g_addr, b"again"),
        b"gw:again"
    );
    net.bridge.disconnect(&b).unwrap();
    net.assert_gone(&b);
    assert!(net.leases().is_empty());
}

#[test]
fn sandbox_joins_the_endpoint_namespace() {
    let Some(net) = Net::new("sandbox on a bridge", 1) else {
        return;
    };
    use_test_init();
    let rootfs = net.dir.path().join("rootfs");
    if !busybox_rootfs(&rootfs) {
        return;
    }
    let ep = net.bridge.connect("sbx", "webapp").unwrap();
    let extra = [dns::parse_add_host("db:10.1.2.3", ep.gateway).unwrap()];
    let mut spec = ProcessSpec::new(
        &rootfs,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "cat /proc/net/dev; ip addr show eth0; ip route; cat /etc/hosts /etc/hostname".into(),
        ],
    );
    spec.network = NetworkMode::Join(ep.netns.path().to_path_buf());
    spec.hostname = ep.hostname.clone();
    spec.etc = ep.etc_files(&extra);
    let st = rbuild_executor::run(
        &spec,
        Stdio::Capture {
            tail: 200,
            on_line: None,
        },
        &RunOptions::default(),
    )
    .unwrap();
    let out = st.tail.join("\n");
    assert_eq!(st.code, 0, "{out}");
    assert!(out.contains("eth0:"), "{out}");
    assert!(
        out.contains(&format!("inet {}/{}", ep.ip, ep.prefix)),
        "{out}"
    );
    assert!(out.contains(&ep.mac_string()), "{out}");
    assert!(
        out.contains(&format!("default via {}", ep.gateway)),
        "{out}"
    );
    assert!(out.contains(&format!("{}\twebapp", ep.ip)), "{out}");
    assert!(out.contains("10.1.2.3\tdb"), "{out}");
    net.bridge.disconnect(&ep).unwrap();
    net.assert_gone(&ep);
    drop(UnmountGuard(rootfs));
}

#[test]
fn published_ports_tcp_udp_and_dnat() {
    let Some(net) = Net::new("port publishing", 2) else {
        return;
    };
    let ep = net.bridge.connect("web", "web").unwrap();
    // Servers inside the container's namespace.
    let (tl, us) = in_ns(&ep.netns, || {
        (
            TcpListener::bind("0.0.0.0:7001").unwrap(),
            UdpSocket::bind("0.0.0.0:7002").unwrap(),
        )
    });
    echo_tcp(tl, b"ctr:");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = us.recv_from(&mut buf) {
            let mut reply = b"udp:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = us.send_to(&reply, from);
        }
    });

    // The proxy alone, on a loopback address of its own (so no concurrent test's listener
    // can take the port once it is closed) with a random port.
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let own_lo = IpAddr::V4(Ipv4Addr::new(127, 77, (std::process::id() % 250) as u8, 1));
    let p = PortProxy::start(own_lo, 0, ep.ip, 7001, Proto::Tcp).unwrap();
    let addr = p.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(tcp_roundtrip_from(None, addr, b"hello"), b"ctr:hello");
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let got = tcp_roundtrip_from(None, addr, &big);
    assert_eq!(&got[4..], &big[..]);
    p.stop();
    assert!(
        TcpStream::connect_timeout(&addr, TIMEOUT).is_err(),
        "proxy still listening"
    );

    let pu = PortProxy::start(lo, 0, ep.ip, 7002, Proto::Udp).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    for msg in [&b"one"[..], b"two"] {
        client.send_to(msg, pu.local_addr()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, pu.local_addr());
        assert_eq!(&buf[..4], b"udp:");
        assert_eq!(&buf[4..n], msg);
    }
    drop(pu);

    // A host port range with its first port taken: the next one is used.
    let taken = TcpListener::bind((own_lo, 0)).unwrap();
    let first = taken.local_addr().unwrap().port();
    let spec = format!("{own_lo}:{first}-{}:7001", first + 2);
    let m = parse_publish(&spec).unwrap();
    let pr = PortProxy::start_mapping(&m[0], ep.ip).unwrap();
    assert!(
        (first + 1..=first + 2).contains(&pr.local_addr().port()),
        "{spec}"
    );
    assert_eq!(tcp_roundtrip_from(None, pr.local_addr(), b"r"), b"ctr:r");
    drop((pr, taken));

    // Through the bridge's publish: proxy on all addresses plus DNAT/forward rules. The
    // host reaches it on loopback (proxy) and on the gateway address (DNAT in OUTPUT).
    let maps = parse_publish("7001").unwrap();
    let proxies = net.bridge.publish(&ep, &maps).unwrap();
    let port = proxies[0].local_addr().port();
    let rules = net.container_rules();
    assert!(
        rules
            .iter()
            .any(|r| r.contains("DNAT") && r.contains(&format!("{}:7001", ep.ip))),
        "{rules:?}"
    );
    let via_lo = SocketAddr::new(lo, port);
    assert_eq!(tcp_roundtrip_from(None, via_lo, b"x"), b"ctr:x");
    let via_gw = SocketAddr::new(IpAddr::V4(ep.gateway), port);
    assert_eq!(tcp_roundtrip_from(None, via_gw, b"y"), b"ctr:y");
    // ... and that went through the DNAT rule, not the proxy.
    let (_, _, dnat) = net.bridge.chains();
    let o = Command::new("iptables")
        .args(["-w", "-t", "nat", "-L", &dnat, "-n", "-v", "-x"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let hits: u64 = listing
        .lines()
        .find(|l| l.contains(" DNAT ") && l.contains("to:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(hits > 0, "DNAT rule unused:\n{listing}");
    drop(proxies);
    net.bridge.disconnect(&ep).unwrap();
    net.assert_gone(&ep);
}

#[test]
fn cleanup_stale_removes_leftovers_of_dead_containers() {
    let Some(net) = Net::new("stale cleanup", 3) else {
        return;
    };
    let dead1 = net.bridge.connect("dead1", "d1").unwrap();
    let dead2 = net.bridge.connect("dead2", "d2").unwrap();
    let live = net.bridge.connect("alive", "al").unwrap();
    // dead2 had a published port; its proxy died with it, its rules did not.
    drop(
        net.bridge
            .publish(&dead2, &parse_publish("127.0.0.1::80").unwrap())
            .unwrap(),
    );
    assert!(!net.container_rules().is_empty());
    // A namespace whose lease never got written (a crash in between).
    let ghost = NetNs::create(&net.netns_dir(), &format!("{}-ghost", net.bridge.name())).unwrap();
    assert!(ghost.path().exists());

    // A container whose lease got lost (its veth, namespace and rules are still found: by
    // the veth's alias, the namespace file's name and the rules' comments).
    let lost = net.bridge.connect("lost", "lost").unwrap();
    drop(
        net.bridge
            .publish(&lost, &parse_publish("127.0.0.1::81/udp").unwrap())
            .unwrap(),
    );
    let ipam = net.dir.path().join("state/ipam.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ipam).unwrap()).unwrap();
    v["leases"].as_object_mut().unwrap().remove("lost");
    std::fs::write(&ipam, v.to_string()).unwrap();

    let live_ids: HashSet<String> = ["alive".to_string()].into();
    let report = net.bridge.cleanup_stale(&live_ids).unwrap();
    assert_eq!(report.leases, ["dead1", "dead2"]);
    assert!(report.netns.iter().any(|p| p == ghost.path()), "{report:?}");
    assert_eq!(report.veths, std::slice::from_ref(&lost.veth_host));
    assert_eq!(report.rule_owners, ["lost"]);
    net.assert_gone(&dead1);
    net.assert_gone(&dead2);
    net.assert_gone(&lost);
    assert!(!ghost.path().exists());
    assert_eq!(net.leases(), ["alive"]);
    assert!(link_exists(&live.veth_host));
    // The live container still works, and a new one does not get a stale address twice.
    let lg = TcpListener::bind((live.gateway, 0)).unwrap();
    let g_addr = lg.local_addr().unwrap();
    echo_tcp(lg, b"");
    assert_eq!(tcp_roundtrip_from(Some(&live.netns), g_addr, b"ok"), b"ok");
    // Nothing left to clean on a second pass.
    let again = net.bridge.cleanup_stale(&live_ids).unwrap();
    assert_eq!(again, Default::default());
    // Drop of `net` destroys the rest (the live endpoint included) and checks it.
}

#[test]
fn netns_create_run_remove() {
    if !require_root("netns") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _guard = UnmountGuard(dir.path().to_path_buf());
    let ns = NetNs::create(dir.path(), "t1").unwrap();
    assert!(NetNs::create(dir.path(), "t1").is_err(), "created twice");
    assert!(NetNs::create(dir.path(), "../x").is_err());
    let mine = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = ns
        .run(|| Ok(std::fs::read_link("/proc/thread-self/ns/net").unwrap()))
        .unwrap();
    assert_ne!(mine, inside);
    // The calling thread is untouched.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        mine
    );
    // Only lo, down, in a fresh namespace.
    let dev = ns
        .run(|| Ok(std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()))
        .unwrap();
    assert_eq!(dev.lines().count(), 3, "{dev}");
    let path = ns.path().to_path_buf();
    assert!(NetNs::open(&path).is_some());
    ns.remove().unwrap();
    assert!(!path.exists());
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn a_released_endpoint_is_gone_its_veth_deleted_by_the_kernel_with_the_namespace() {
    let Some(net) = Net::new("bridge release", 0) else {
        return;
    };
    let ep = net.bridge.connect("rel", "host-rel").unwrap();
    drop(
        net.bridge
            .publish(&ep, &parse_publish("127.0.0.1::82").unwrap())
            .unwrap(),
    );
    let (veth, ns_path, id) = (
        ep.veth_host.clone(),
        ep.netns.path().to_path_buf(),
        ep.container_id.clone(),
    );
    assert!(link_exists(&veth));
    net.bridge.release(ep).unwrap();
    assert!(!ns_path.exists(), "netns file left");
    assert!(!net.leases().contains(&id), "lease left");
    assert!(
        !net.container_rules()
            .iter()
            .any(|r| r.contains("rbuild:rel")),
        "rules left: {:?}",
        net.container_rules()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while link_exists(&veth) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!link_exists(&veth), "the kernel did not delete {veth}");
}
