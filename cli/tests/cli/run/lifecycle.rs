//! `--init`, `restart`, `ps --format/--filter` and `logs --since/--until`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use super::{Env, code, stdout};

#[test]
fn init_is_pid_1_and_the_command_its_child() {
    let Some(env) = Env::new() else { return };
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "ps",
        "-o",
        "pid,ppid,args",
    ]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let init = rows.iter().find(|r| r[0] == "1").expect("no PID 1");
    assert!(init.join(" ").contains("rbuild-sandbox-init"), "{out}");
    let ps = rows
        .iter()
        .find(|r| r.get(2) == Some(&"ps"))
        .expect("no ps");
    assert_eq!(ps[1], "1", "the command is not the init's child: {out}");
    assert_ne!(ps[0], "1");
    // Without --init the command itself is PID 1.
    let out = env.ok(&["run", "--rm", "busybox", "ps", "-o", "pid,args"]);
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("1 ps")),
        "{out}"
    );
}

#[test]
fn init_reaps_orphans_passes_exit_codes_and_forwards_signals() {
    let Some(env) = Env::new() else { return };
    let out = env.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "(sleep 0.1 &); sleep 1; ps -o stat,args",
    ]);
    assert!(out.contains("ps -o stat,args"), "{out}");
    assert!(
        !out.lines().skip(1).any(|l| l.trim_start().starts_with('Z')),
        "zombie left: {out}"
    );
    let out = env.run(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 7);
    let out = env.run(&["run", "--rm", "--init", "busybox", "no-such-command"]);
    assert_eq!(code(&out), 127, "{}", String::from_utf8_lossy(&out.stderr));
    // SIGTERM reaches `sleep` through the init (as PID 1 it would ignore it): 128+15.
    env.ok(&[
        "run", "-d", "--init", "--name", "sl", "busybox", "sleep", "1000",
    ]);
    env.ok(&["stop", "-t", "60", "sl"]);
    assert_eq!(env.ok(&["wait", "sl"]).trim(), "143");
    env.ok(&["rm", "sl"]);
}

/// Waits until `rbuild logs NAME` has `n` lines containing `what`.
fn wait_logs(env: &Env, name: &str, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = env.ok(&["logs", name]);
        if logs.matches(what).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "logs of {name}: {logs:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restart_stops_and_starts_detached() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    wait_logs(&env, "r", "started", 1);
    let first: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "r"])).unwrap();
    assert_eq!(env.ok(&["restart", "-t", "30", "r"]).trim(), "r");
    let st: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "r"])).unwrap();
    assert_eq!(st[0]["State"]["Status"], "running");
    assert_ne!(
        st[0]["State"]["StartedAt"], first[0]["State"]["StartedAt"],
        "not started again"
    );
    wait_logs(&env, "r", "started", 2);
    // A stopped container is started again too.
    env.ok(&["stop", "r"]);
    assert_eq!(env.ok(&["restart", "r"]).trim(), "r");
    assert!(env.ok(&["ps"]).contains(" r\n"));
    let out = env.run(&["restart", "nope"]);
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such container: nope"));
    env.ok(&["rm", "-f", "r"]);
}

#[test]
fn ps_format_and_filter() {
    let Some(env) = Env::new() else { return };
    let a = env.ok(&["create", "--name", "a", "-l", "app=web", "busybox", "true"]);
    std::thread::sleep(Duration::from_millis(20));
    env.ok(&["create", "--name", "b", "-l", "app=db", "busybox", "true"]);
    let out = env.ok(&["ps", "-a", "--format", "{{.Names}}\\t{{.Labels}}"]);
    assert_eq!(out, "b\tapp=db\na\tapp=web\n");
    let out = env.ok(&["ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "CONTAINER ID   NAMES");
    assert_eq!(lines[2], format!("{}   a", &a.trim()[..12]));
    let out = env.ok(&["ps", "-a", "--format", "json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["Names"], "a");
    assert_eq!(rows[1]["State"], "created");
    assert!(
        rows[1]["CreatedAt"]
            .as_str()
            .unwrap()
            .ends_with("+0000 UTC")
    );
    let f = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        env.ok(&all)
    };
    assert_eq!(f(&["-a", "--filter", "label=app=web"]), "a\n");
    assert_eq!(f(&["-a", "--filter", "label=app"]), "b\na\n");
    assert_eq!(f(&["-a", "-f", "name=b"]), "b\n");
    assert_eq!(f(&["--filter", "status=created"]), "b\na\n");
    assert_eq!(f(&["--filter", "status=running"]), "");
    assert_eq!(f(&["-a", "-f", "name=a", "-f", "name=b"]), "b\na\n");
    assert_eq!(
        env.ok(&["ps", "-aq", "-f", "label=app=db", "--no-trunc"])
            .trim()
            .len(),
        64
    );
    let out = env.run(&["ps", "-a", "--format", "{{.Nope}}"]);
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
    assert_eq!(f(&["-l"]), "b\n");
    assert_eq!(f(&["-n", "2"]), "b\na\n");
    let out = env.run(&["ps", "-a", "-f", "color=red"]);
    assert_ne!(code(&out), 0);
    env.ok(&["rm", "a", "b"]);
}

#[test]
fn logs_since_and_until() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "--name",
        "l",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1.2; echo two",
    ]);
    let ts = env.ok(&["logs", "-t", "l"]);
    let times: Vec<&str> = ts
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "{ts}");
    assert_eq!(env.ok(&["logs", "--since", times[1], "l"]), "two\n");
    assert_eq!(env.ok(&["logs", "--until", times[0], "l"]), "one\n");
    // Unix seconds and relative durations.
    let two: chrono::DateTime<chrono::Utc> = times[1].parse().unwrap();
    let secs = format!("{}.{:09}", two.timestamp(), two.timestamp_subsec_nanos());
    assert_eq!(env.ok(&["logs", "--since", &secs, "l"]), "two\n");
    assert_eq!(env.ok(&["logs", "--since", "1h30m", "l"]), "one\ntwo\n");
    assert_eq!(env.ok(&["logs", "--until", "1h", "l"]), "");
    let out = env.run(&["logs", "--since", "yesterday", "l"]);
    assert_ne!(code(&out), 0);
    assert!(stdout(&out).is_empty());
    env.ok(&["rm", "l"]);
}

#[test]
fn images_format_templates() {
    let Some(env) = Env::new() else { return };
    // (Env's checks on drop look into the container snapshots.)
    env.ok(&["run", "--rm", "busybox", "true"]);
    let out = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(out.lines().any(|l| l == "busybox:latest"), "{out}");
    let out = env.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].ends_with("TAG"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("busybox ") && l.ends_with(" latest"))
    );
    let out = env.ok(&["images"]);
    assert!(out.starts_with("REPOSITORY   TAG"), "{out}");
    assert!(out.lines().next().unwrap().contains("IMAGE ID"));
    let out = env.run(&["images", "--format", "{{.Nope}}"]);
    assert_ne!(code(&out), 0);
}

#[test]
fn pause_freezes_the_container_until_unpause() {
    let Some(env) = Env::new() else { return };
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /n; sleep 0.05; done",
    ]);
    let n_file = env
        .path()
        .join("containers-v1")
        .join(id.trim())
        .join("rootfs/n");
    let count = || -> u64 {
        std::fs::read_to_string(&n_file)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < 2 {
        assert!(Instant::now() < deadline, "the ticker never ticked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let inspect = |tpl: &str| env.ok(&["inspect", "-f", tpl, "ticker"]).trim().to_string();

    assert_eq!(env.ok(&["pause", "ticker"]).trim(), "ticker");
    assert_eq!(
        inspect("{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    assert!(env.ok(&["ps"]).contains("(Paused)"));
    assert_eq!(
        env.ok(&["ps", "-q", "--filter", "status=paused"])
            .trim()
            .len(),
        12
    );
    let frozen_at = count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), frozen_at, "the container ran while paused");
    // Docker's refusals while paused.
    let out = env.run(&["pause", "ticker"]);
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already paused"));
    let out = env.run(&["exec", "ticker", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is paused, unpause the container before exec"),
        "{out:?}"
    );
    let out = env.run(&["kill", "-s", "TERM", "ticker"]);
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"));

    // A commit of a paused container leaves it paused; one of a running container pauses
    // it only for the commit.
    env.ok(&["commit", "ticker", "ticker:paused"]);
    assert_eq!(inspect("{{.State.Paused}}"), "true");
    assert_eq!(env.ok(&["unpause", "ticker"]).trim(), "ticker");
    assert_eq!(
        inspect("{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= frozen_at {
        assert!(Instant::now() < deadline, "the ticker did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.run(&["unpause", "ticker"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not paused"));
    env.ok(&["commit", "ticker", "ticker:running"]);
    assert_eq!(inspect("{{.State.Paused}}"), "false");

    // stop of a paused container kills it (it cannot take its stop signal).
    env.ok(&["pause", "ticker"]);
    env.ok(&["stop", "-t", "30", "ticker"]);
    assert_eq!(
        inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    env.ok(&["rm", "ticker"]);
}

#[test]
fn attach_without_a_terminal_streams_output_passes_signals_and_exits_with_the_code() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 2; echo out; echo err >&2; exit 5",
    ]);
    wait_logs(&env, "talker", "before", 1);
    let out = env.run(&["attach", "talker"]);
    assert_eq!(code(&out), 5, "{out:?}");
    // Only what it wrote after we attached, each on its own stream.
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    env.ok(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    wait_logs(&env, "trapper", "ready", 1);
    let child = env
        .cmd(&["attach", "trapper"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    rbuild_executor::process::send_signal(child.id() as i32, 15).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 9, "{out:?}");
    assert_eq!(stdout(&out), "got-term\n");

    // -i: our stdin reaches the container's; our EOF does not close it.
    env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "reader",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "read a; echo got $a; read b; echo then $b",
    ]);
    // `rbuild attach reader` with `input` written to its stdin, which is then closed.
    let attach_with = |input: &[u8]| {
        let mut child = env
            .cmd(&["attach", "reader"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child
    };
    let mut first = attach_with(b"one\n");
    wait_logs(&env, "reader", "got one", 1);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "reader"])
            .trim(),
        "running"
    );
    let _ = first.kill();
    let _ = first.wait();
    let out = attach_with(b"two\n").wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "then two\n");
    env.ok(&["rm", "talker", "trapper", "reader"]);
}

#[test]
fn healthchecks_from_the_image_and_flags() {
    let Some(env) = Env::new() else { return };
    let ctx = crate::build::dockerfile_dir(
        "FROM busybox\nHEALTHCHECK --interval=1s --timeout=5s --retries=2 CMD test -f /ok && echo fine\n",
    );
    env.root
        .build_ok(&["-t", "hc:1", ctx.path().to_str().unwrap()]);
    let health = |name: &str| -> serde_json::Value {
        let out = env.ok(&["inspect", "-f", "{{json .State.Health}}", name]);
        serde_json::from_str(out.trim()).unwrap()
    };
    let wait_for = |name: &str, status: &str| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = health(name);
            if h["Status"] == status {
                return h;
            }
            assert!(Instant::now() < deadline, "{name} never {status}: {h}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "hc:1",
        "sh",
        "-c",
        "sleep 3; touch /ok; exec sleep 600",
    ]);
    assert_eq!(health("hc")["Status"], "starting");
    let h = wait_for("hc", "healthy");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert_eq!(last["Output"], "fine\n", "{h}");
    assert!(env.ok(&["ps"]).contains("(healthy)"));
    env.ok(&["exec", "hc", "rm", "/ok"]);
    let h = wait_for("hc", "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert!(env.ok(&["ps"]).contains("(unhealthy)"));

    // Flags: a check that outlives its timeout fails with Docker's message.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network",
        "none",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    let h = wait_for("slow", "unhealthy");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], -1, "{h}");
    assert_eq!(last["Output"], "Health check exceeded timeout (1s)", "{h}");
    // --no-healthcheck: no health at all.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--network",
        "none",
        "--no-healthcheck",
        "hc:1",
        "sleep",
        "600",
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "off"])).unwrap();
    assert!(inspect[0]["State"].get("Health").is_none(), "{inspect}");
    assert!(
        inspect[0]["Config"].get("Healthcheck").is_none(),
        "{inspect}"
    );
    assert!(!env.ok(&["ps", "--filter", "name=off"]).contains("health"));
    env.ok(&["rm", "-f", "hc", "slow", "off"]);
}
