//! Health checks (`HEALTHCHECK` in the image, `--health-*` on `run`/`create`), run as
//! Docker runs them: the monitor of a running container execs the test in it every
//! interval (every start interval during the start period), with a timeout; a success makes
//! it `healthy`, `retries` failures in a row make it `unhealthy`, and failures during the
//! start period do not count while it has never been healthy. The last five results (start,
//! end, exit code, the first 4096 bytes of output) are kept in the container's state and
//! shown by `inspect` as `State.Health`; `ps` shows `(healthy)`, `(unhealthy)` or
//! `(health: starting)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::state::{Config, Containers, Status};

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept, and output bytes kept per result.
const MAX_LOG_ENTRIES: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// `run`/`create` flags that override the image's `HEALTHCHECK`.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthArgs {
    /// Command to run to check health (run with `/bin/sh -c`)
    #[arg(long = "health-cmd", value_name = "CMD")]
    pub cmd: Option<String>,
    /// Time between running the check (e.g. `30s`, `1m30s`)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub interval: Option<String>,
    /// Maximum time to allow one check to run
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "N")]
    pub retries: Option<u32>,
    /// Start period for the container to initialize before failures count
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub start_period: Option<String>,
    /// Time between running the check during the start period
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub disable: bool,
}

/// A container's resolved health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The argv run in the container (`CMD-SHELL` already as `/bin/sh -c ...`).
    pub argv: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub start_interval_ms: u64,
    pub retries: u32,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    #[serde(rename = "Log")]
    pub log: Vec<Probe>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    #[serde(rename = "Output")]
    pub output: String,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            ..Health::default()
        }
    }

    /// Records a result as Docker does (`in_start_period`: the check began within the start
    /// period).
    fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !(self.status == "starting" && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        let extra = self.log.len().saturating_sub(MAX_LOG_ENTRIES);
        self.log.drain(..extra);
    }
}

fn duration_ms(flag: &str, value: &Option<String>) -> Result<Option<u64>, String> {
    let Some(v) = value else { return Ok(None) };
    let d = super::cmds::parse_go_duration(v)
        .and_then(|d| u64::try_from(d.num_milliseconds()).ok())
        .ok_or_else(|| {
            format!("invalid argument {v:?} for \"--{flag}\" flag: a duration like 30s or 1m30s")
        })?;
    Ok(Some(d))
}

/// The health check of a new container: the image's `HEALTHCHECK` with the flags applied
/// (`None` when there is none, it is `NONE`, or `--no-healthcheck`).
pub fn resolve(
    image: Option<&rbuild_solver::HealthConfig>,
    args: &HealthArgs,
) -> Result<Option<HealthCheck>, String> {
    let overrides = args.cmd.is_some()
        || args.interval.is_some()
        || args.timeout.is_some()
        || args.retries.is_some()
        || args.start_period.is_some()
        || args.start_interval.is_some();
    if args.disable {
        if overrides {
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        return Ok(None);
    }
    let ns_ms = |ns: u64| (ns > 0).then_some(ns / 1_000_000);
    let test: Vec<String> = match &args.cmd {
        Some(c) => vec!["CMD-SHELL".into(), c.clone()],
        None => image.map(|h| h.test.clone()).unwrap_or_default(),
    };
    let argv = match test.split_first() {
        None => return Ok(None),
        Some((kind, _)) if kind == "NONE" => return Ok(None),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), cmd.clone()]
        }
        Some((kind, _)) => return Err(format!("unknown healthcheck test type {kind:?}")),
    };
    let pick = |flag: Option<u64>, img: Option<u64>, default: Duration| -> u64 {
        flag.or(img)
            .filter(|v| *v > 0)
            .unwrap_or(default.as_millis() as u64)
    };
    Ok(Some(HealthCheck {
        argv,
        interval_ms: pick(
            duration_ms("health-interval", &args.interval)?,
            image.and_then(|h| ns_ms(h.interval)),
            DEFAULT_INTERVAL,
        ),
        timeout_ms: pick(
            duration_ms("health-timeout", &args.timeout)?,
            image.and_then(|h| ns_ms(h.timeout)),
            DEFAULT_TIMEOUT,
        ),
        start_period_ms: duration_ms("health-start-period", &args.start_period)?
            .or_else(|| image.and_then(|h| ns_ms(h.start_period)))
            .unwrap_or(0),
        start_interval_ms: pick(
            duration_ms("health-start-interval", &args.start_interval)?,
            image.and_then(|h| ns_ms(h.start_interval)),
            DEFAULT_START_INTERVAL,
        ),
        retries: args
            .retries
            .or_else(|| image.map(|h| h.retries as u32))
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_RETRIES),
    }))
}

/// Runs the container's checks from a thread until `stop` is set. `pid` is the container's
/// PID 1 on the host.
pub fn spawn_checker(containers: Containers, cfg: Config, pid: i32, stop: Arc<AtomicBool>) {
    let Some(check) = cfg.healthcheck.clone() else {
        return;
    };
    std::thread::spawn(move || {
        let started = Instant::now();
        let start_period = Duration::from_millis(check.start_period_ms);
        loop {
            let wait = if started.elapsed() < start_period {
                check.start_interval_ms
            } else {
                check.interval_ms
            };
            let deadline = Instant::now() + Duration::from_millis(wait);
            while Instant::now() < deadline {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // A paused container is not probed (the probe would freeze with it).
            if super::cmds::is_paused(&containers.state(&cfg.id)) {
                continue;
            }
            let in_start_period = started.elapsed() < start_period;
            let probe = run_probe(&cfg, &check, pid);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let _ = containers.update(&cfg.id, |st| {
                if st.status == Status::Running {
                    st.health.get_or_insert_with(Health::starting).record(
                        probe,
                        check.retries,
                        in_start_period,
                    );
                }
            });
        }
    });
}

/// One check: the test run in the container as its user, in its working directory.
fn run_probe(cfg: &Config, check: &HealthCheck, pid: i32) -> Probe {
    let start = super::state::now();
    let spec = rbuild_executor::ExecSpec {
        pid,
        argv: check.argv.clone(),
        env: cfg.env.clone(),
        cwd: cfg.cwd.clone(),
        user: cfg.user.clone(),
        no_new_privs: cfg.security.no_new_privs,
        privileged: cfg.security.privileged,
        security: cfg.security.security.clone(),
    };
    let timeout = Duration::from_millis(check.timeout_ms);
    let (exit_code, output) = match rbuild_executor::exec_capture(&spec, timeout, MAX_OUTPUT) {
        Ok(c) => match c.status {
            Some(st) => (
                st.code,
                match st.message.filter(|_| st.code == 126 || st.code == 127) {
                    Some(m) => m,
                    None => String::from_utf8_lossy(&c.output).into_owned(),
                },
            ),
            None => (
                -1,
                format!("Health check exceeded timeout ({})", go_duration(timeout)),
            ),
        },
        Err(e) => (-1, format!("health check: {e}")),
    };
    Probe {
        start,
        end: super::state::now(),
        exit_code,
        output,
    }
}

/// A duration as Go prints it (`30s`, `1m30s`, `1h0m0s`, `500ms`).
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// `ps`'s suffix for a running container's health.
pub fn ps_suffix(h: Option<&Health>) -> &'static str {
    match h.map(|h| h.status.as_str()) {
        Some("healthy") => " (healthy)",
        Some("unhealthy") => " (unhealthy)",
        Some("starting") => " (health: starting)",
        _ => "",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn results_move_the_status_as_dockers() {
        let mut h = Health::starting();
        // Failures in the start period do not count while never healthy.
        h.record(probe(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(probe(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        // Once healthy, the start period no longer shields failures.
        h.record(probe(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 1));
        h.record(probe(-1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        for _ in 0..10 {
            h.record(probe(1), 2, false);
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
    }

    #[test]
    fn durations_print_as_go() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn flags_override_the_image_and_none_disables() {
        let image = rbuild_solver::HealthConfig {
            test: vec!["CMD".into(), "check".into(), "--fast".into()],
            interval: 5_000_000_000,
            retries: 7,
            ..Default::default()
        };
        let none = HealthArgs::default();
        let hc = resolve(Some(&image), &none).unwrap().unwrap();
        assert_eq!(hc.argv, ["check", "--fast"]);
        assert_eq!(
            (hc.interval_ms, hc.timeout_ms, hc.retries),
            (5000, 30_000, 7)
        );
        let flags = HealthArgs {
            cmd: Some("test -f /ok".into()),
            interval: Some("1s".into()),
            start_period: Some("1m30s".into()),
            ..Default::default()
        };
        let hc = resolve(Some(&image), &flags).unwrap().unwrap();
        assert_eq!(hc.argv, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(
            (hc.interval_ms, hc.start_period_ms, hc.retries),
            (1000, 90_000, 7)
        );
        let off = HealthArgs {
            disable: true,
            ..Default::default()
        };
        assert_eq!(resolve(Some(&image), &off).unwrap(), None);
        let nothing = rbuild_solver::HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(resolve(Some(&nothing), &none).unwrap(), None);
        assert_eq!(resolve(None, &none).unwrap(), None);
        let bad = HealthArgs {
            interval: Some("soon".into()),
            cmd: Some("true".into()),
            ..Default::default()
        };
        assert!(
            resolve(None, &bad)
                .unwrap_err()
                .contains("--health-interval")
        );
    }
}
