//! The userland port proxy (what `docker-proxy` does): listens on a host address and port
//! and relays to the container's address, so published ports work from the host via
//! `localhost`, which iptables DNAT does not cover. TCP: each accepted connection is copied
//! both ways by two threads, half-closes passed on. UDP: one backend socket per client
//! address, dropped after [`UDP_IDLE_TIMEOUT`] without traffic (docker-proxy's 90 s).
//!
//! The handle is owned by whatever outlives the container (its monitor process): dropping
//! it (or [`PortProxy::stop`]) closes the listener and every relayed connection.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::publish::{PortMapping, Proto};
use crate::error::{Error, Result};

/// How long a UDP client's backend socket lives without traffic.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the proxy's threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Timeout connecting to the container.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Registry = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running proxy for one published port.
#[derive(Debug)]
pub struct PortProxy {
    local: SocketAddr,
    backend: SocketAddr,
    proto: Proto,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    conns: Registry,
}

impl PortProxy {
    /// Listens on `host_ip:host_port` (port 0: any free port, see [`PortProxy::local_addr`])
    /// and relays to `container_ip:container_port`.
    pub fn start(
        host_ip: IpAddr,
        host_port: u16,
        container_ip: Ipv4Addr,
        container_port: u16,
        proto: Proto,
    ) -> Result<PortProxy> {
        let local = SocketAddr::new(host_ip, host_port);
        let backend = SocketAddr::new(IpAddr::V4(container_ip), container_port);
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Registry = Arc::default();
        let bind_err = |e: std::io::Error| {
            Error::network(format!("publish {local}/{proto}"), format!("bind: {e}"))
        };
        let (local, thread) = match proto {
            Proto::Tcp => {
                let listener = TcpListener::bind(local).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                listener.set_nonblocking(true).map_err(bind_err)?;
                let (stop, conns) = (stop.clone(), conns.clone());
                let t = std::thread::Builder::new()
                    .name(format!("proxy-tcp-{}", local.port()))
                    .spawn(move || tcp_accept_loop(listener, backend, stop, conns))
                    .map_err(|e| Error::network("spawn proxy thread", e))?;
                (local, t)
            }
            Proto::Udp => {
                let sock = UdpSocket::bind(local).map_err(bind_err)?;
                let local = sock.local_addr().map_err(bind_err)?;
                sock.set_read_timeout(Some(TICK)).map_err(bind_err)?;
                let stop = stop.clone();
                let t = std::thread::Builder::new()
                    .name(format!("proxy-udp-{}", local.port()))
                    .spawn(move || udp_loop(sock, backend, stop))
                    .map_err(|e| Error::network("spawn proxy thread", e))?;
                (local, t)
            }
        };
        Ok(PortProxy {
            local,
            backend,
            proto,
            stop,
            thread: Some(thread),
            conns,
        })
    }

    /// Starts the proxy of a parsed `-p` mapping: all addresses (`0.0.0.0`) unless the
    /// mapping names one; a fixed port, a random one (0), or the first free one of a host
    /// port range.
    pub fn start_mapping(m: &PortMapping, container_ip: Ipv4Addr) -> Result<PortProxy> {
        let ip = m.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if m.host_port == 0 || m.host_port == m.host_port_end {
            return PortProxy::start(ip, m.host_port, container_ip, m.container_port, m.proto);
        }
        let mut last = None;
        for port in m.host_port..=m.host_port_end {
            match PortProxy::start(ip, port, container_ip, m.container_port, m.proto) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::network(format!("publish {m}"), "empty port range")))
    }

    /// The address actually listened on (with the chosen port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The container address relayed to.
    pub fn backend_addr(&self) -> SocketAddr {
        self.backend
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Stops listening and closes every relayed connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, c) in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn tcp_accept_loop(
    listener: TcpListener,
    backend: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Registry,
) {
    let next_id = AtomicU64::new(0);
    let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, tick) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                continue;
            }
            // EMFILE and friends: back off rather than spin.
            Err(_) => {
                std::thread::sleep(TICK);
                continue;
            }
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let conns = conns.clone();
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name("proxy-tcp-conn".into())
            .spawn(move || relay_tcp(id, client, backend, &conns, &stop));
    }
}

/// Relays one client connection until both directions are done.
fn relay_tcp(id: u64, client: TcpStream, backend: SocketAddr, conns: &Registry, stop: &AtomicBool) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&backend, CONNECT_TIMEOUT) else {
        // Like docker-proxy: the client sees the connection closed.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3)) = (client.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    {
        let mut reg = conns.lock().unwrap_or_else(PoisonError::into_inner);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        reg.insert(id * 2, c3);
        if let Ok(s3) = server.try_clone() {
            reg.insert(id * 2 + 1, s3);
        }
    }
    let up = std::thread::Builder::new()
        .name("proxy-tcp-up".into())
        .spawn(move || copy_half(c2, s2));
    copy_half(server, client);
    if let Ok(t) = up {
        let _ = t.join();
    }
    let mut reg = conns.lock().unwrap_or_else(PoisonError::into_inner);
    reg.remove(&(id * 2));
    reg.remove(&(id * 2 + 1));
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to` for writing.
fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One UDP client's backend socket.
struct UdpFlow {
    sock: UdpSocket,
    last: Mutex<Instant>,
}

fn udp_loop(host: UdpSocket, backend: SocketAddr, stop: Arc<AtomicBool>) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpFlow>>>> = Arc::default();
    let mut buf = vec![0u8; 65535];
    let mut replies: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (n, client) = match host.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                replies.retain(|t| !t.is_finished());
                continue;
            }
            Err(_) => {
                std::thread::sleep(TICK);
                continue;
            }
        };
        let existing = flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .cloned();
        let flow = match existing {
            Some(f) => f,
            None => match new_udp_flow(&host, client, backend, &flows, &stop) {
                Some((f, t)) => {
                    replies.push(t);
                    f
                }
                None => continue,
            },
        };
        *flow.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let _ = flow.sock.send(&buf[..n]);
    }
    for t in replies {
        let _ = t.join();
    }
}

type UdpFlows = Arc<Mutex<HashMap<SocketAddr, Arc<UdpFlow>>>>;

/// Opens the backend socket of a new client and starts its reply thread.
fn new_udp_flow(
    host: &UdpSocket,
    client: SocketAddr,
    backend: SocketAddr,
    flows: &UdpFlows,
    stop: &Arc<AtomicBool>,
) -> Option<(Arc<UdpFlow>, JoinHandle<()>)> {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).ok()?;
    sock.connect(backend).ok()?;
    sock.set_read_timeout(Some(TICK)).ok()?;
    let flow = Arc::new(UdpFlow {
        sock,
        last: Mutex::new(Instant::now()),
    });
    let host = host.try_clone().ok()?;
    let (f, flows2, stop) = (flow.clone(), flows.clone(), stop.clone());
    let t = std::thread::Builder::new()
        .name("proxy-udp-reply".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !stop.load(Ordering::SeqCst) {
                match f.sock.recv(&mut buf) {
                    Ok(n) => {
                        *f.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                        let _ = host.send_to(&buf[..n], client);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        let idle = f
                            .last
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .elapsed();
                        if idle > UDP_IDLE_TIMEOUT {
                            break;
                        }
                    }
                    // ECONNREFUSED (nothing listening in the container yet) and the like:
                    // keep the flow, the client may retry.
                    Err(_) => std::thread::sleep(TICK),
                }
            }
            flows2
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&client);
        })
        .ok()?;
    flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(client, flow.clone());
    Some((flow, t))
}
