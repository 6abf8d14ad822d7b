//! Two containers on the default bridge reach each other by address, as on Docker's bridge.

use super::Env;

#[test]
fn two_containers_talk_over_the_bridge() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--hostname",
        "srvhost",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "srv"])).unwrap();
    let ip = inspect[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "no address: {inspect}"
    );
    let url = format!("http://{ip}:8080/hostname");
    // The server may need a moment to listen; the client container retries a few times.
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- {url} && exit 0; sleep 0.3; done; exit 1"
    );
    let out = env.run(&[
        "run", "--rm", "--name", "client", "busybox", "sh", "-c", &script,
    ]);
    assert!(
        out.status.success(),
        "client could not reach {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "srvhost");
    // The client has an address of its own on the same subnet (a different one).
    let out = env.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0",
    ]);
    let prefix = &ip[..ip.rfind('.').unwrap()];
    assert!(out.contains(&format!("inet {prefix}.")), "{out}");
    assert!(!out.contains(&format!("inet {ip}/")), "{out}");
    env.ok(&["rm", "-f", "srv"]);
}
