//! Build progress on stderr, as BuildKit prints it: plain numbered lines (`#7 [build 3/5]
//! RUN make`, `#7 0.512 output`, `#7 DONE 0.4s`, `#7 CACHED`), a live view with a spinner
//! and the last output lines of each running step on a terminal, one JSON object per
//! event (`rawjson`), or nothing.
//!
//! The solver numbers its vertices from 1; the build's own steps before it (loading the
//! Dockerfile, resolving images, `.dockerignore`) come first, so solver numbers are
//! shifted by their count, and the export step takes the next number after the last.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_solver::{ProgressEvent, ProgressKind, ProgressSink};

/// Output lines shown under a running step in the live view.
const LIVE_LINES: usize = 5;
/// Longest output line shown in the live view (characters).
const LIVE_WIDTH: usize = 110;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Json,
    Quiet,
}

#[derive(Default)]
struct St {
    offset: usize,
    max: usize,
    starts: HashMap<usize, Instant>,
    names: HashMap<usize, String>,
    bars: HashMap<usize, ProgressBar>,
    lines: HashMap<usize, VecDeque<String>>,
}

/// Renders progress events; shared by the solver's sink and the command.
pub struct Renderer {
    mode: Mode,
    multi: Option<MultiProgress>,
    st: Mutex<St>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("mode", &self.mode)
            .finish()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Renderer {
    pub fn new(mode: Mode) -> Renderer {
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Renderer {
            mode,
            multi,
            st: Mutex::new(St::default()),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints a line above the live view (or plainly).
    pub fn println(&self, line: &str) {
        match (&self.multi, self.mode) {
            (_, Mode::Quiet | Mode::Json) => {}
            (Some(m), _) if !m.is_hidden() => {
                if m.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            _ => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }

    /// Starts one of the build's own steps; returns its number.
    pub fn begin(&self, name: &str) -> usize {
        let n = {
            let mut st = self.st();
            st.max += 1;
            let n = st.max;
            st.starts.insert(n, Instant::now());
            st.names.insert(n, name.to_string());
            n
        };
        match self.mode {
            Mode::Plain => self.println(&format!("#{n} {name}")),
            Mode::Json => {
                self.json(serde_json::json!({"vertex": n, "name": name, "event": "started"}))
            }
            Mode::Tty => self.start_bar(n, name),
            Mode::Quiet => {}
        }
        n
    }

    /// A status line of one of the build's own steps (`#8 writing image sha256:... done`).
    pub fn status(&self, n: usize, line: &str) {
        match self.mode {
            Mode::Plain => self.println(&format!("#{n} {line}")),
            Mode::Json => self.json(
                serde_json::json!({"vertex": n, "event": "log", "stream": "stdout", "line": line}),
            ),
            Mode::Tty => self.log_line(n, line),
            Mode::Quiet => {}
        }
    }

    /// Finishes one of the build's own steps.
    pub fn done(&self, n: usize) {
        let (elapsed, name) = {
            let st = self.st();
            (
                st.starts.get(&n).map(|s| s.elapsed()).unwrap_or_default(),
                st.names.get(&n).cloned().unwrap_or_default(),
            )
        };
        match self.mode {
            Mode::Plain => self.println(&format!("#{n} DONE {}\n", secs(elapsed))),
            Mode::Json => self.json(serde_json::json!({"vertex": n, "name": name, "event": "done", "duration": elapsed.as_secs_f64()})),
            Mode::Tty => self.finish_bar(n, &format!(" => {name}  {}", secs(elapsed))),
            Mode::Quiet => {}
        }
    }

    /// The solver's vertices are numbered after the build's own steps so far.
    pub fn start_solver(&self) {
        let mut st = self.st();
        st.offset = st.max;
    }

    /// What the solver's vertex numbers are offset by (`#n` = vertex + offset).
    pub fn solver_offset(&self) -> usize {
        self.st().offset
    }

    fn start_bar(&self, n: usize, name: &str) {
        let Some(m) = &self.multi else { return };
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:.dim}{msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = m.add(ProgressBar::new_spinner());
        bar.set_style(style);
        bar.set_prefix(truncate(name, LIVE_WIDTH));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.st().bars.insert(n, bar);
    }

    fn log_line(&self, n: usize, line: &str) {
        let mut st = self.st();
        let lines = st.lines.entry(n).or_default();
        if lines.len() == LIVE_LINES {
            lines.pop_front();
        }
        lines.push_back(truncate(line, LIVE_WIDTH));
        let msg: String = lines.iter().map(|l| format!("\n    {l}")).collect();
        if let Some(bar) = st.bars.get(&n) {
            bar.set_message(msg);
        }
    }

    fn finish_bar(&self, n: usize, line: &str) {
        let bar = {
            let mut st = self.st();
            st.lines.remove(&n);
            st.bars.remove(&n)
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        self.println(line);
    }

    /// Stops the live view (before the final summary or an error).
    pub fn finish(&self) {
        let bars: Vec<ProgressBar> = self.st().bars.drain().map(|(_, b)| b).collect();
        for b in bars {
            b.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl ProgressSink for Renderer {
    fn event(&self, event: ProgressEvent) {
        let (n, elapsed) = {
            let mut st = self.st();
            let n = event.vertex + st.offset;
            st.max = st.max.max(n);
            if event.kind == ProgressKind::Started {
                st.starts.insert(n, Instant::now());
            }
            st.names.insert(n, event.name.clone());
            (
                n,
                st.starts.get(&n).map(|s| s.elapsed()).unwrap_or_default(),
            )
        };
        let renumbered = ProgressEvent { vertex: n, ..event };
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                if let Ok(v) = serde_json::to_value(&renumbered) {
                    self.json(v);
                }
            }
            Mode::Plain => {
                let text = match &renumbered.kind {
                    ProgressKind::Log { line, .. } => {
                        format!("#{n} {:.3} {line}", elapsed.as_secs_f64())
                    }
                    ProgressKind::Done { .. }
                    | ProgressKind::Cached
                    | ProgressKind::Error { .. }
                    | ProgressKind::Canceled => format!("{}\n", renumbered.plain_line()),
                    ProgressKind::Started => renumbered.plain_line(),
                };
                self.println(&text);
            }
            Mode::Tty => match &renumbered.kind {
                ProgressKind::Started => self.start_bar(n, &renumbered.name),
                ProgressKind::Log { line, .. } => self.log_line(n, line),
                ProgressKind::Cached => self.println(&format!(" => CACHED {}", renumbered.name)),
                ProgressKind::Done { duration } => {
                    self.finish_bar(n, &format!(" => {}  {}", renumbered.name, secs(*duration)))
                }
                ProgressKind::Error { duration, .. } => self.finish_bar(
                    n,
                    &format!(" => ERROR {}  {}", renumbered.name, secs(*duration)),
                ),
                ProgressKind::Canceled => {
                    self.finish_bar(n, &format!(" => CANCELED {}", renumbered.name))
                }
            },
        }
    }
}
