//! Docker-style transfer output: a progress bar per layer on a terminal,
//! plain `<id>: <status>` lines otherwise (logs, CI, pipes).

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_exporter::Digest;
use rbuild_exporter::registry::progress::short_id;
use rbuild_exporter::registry::{Progress, ProgressEvent};

/// Prints pull/push progress to stdout.
#[derive(Debug)]
pub struct CliProgress {
    /// `Downloading` or `Pushing`: the status shown while bytes move.
    verb: &'static str,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl CliProgress {
    pub fn new(verb: &'static str) -> CliProgress {
        let bars = std::io::stdout().is_terminal().then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                Mutex::new(HashMap::new()),
            )
        });
        CliProgress { verb, bars }
    }

    /// A line above the bars (or plain).
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some((mp, _)) => {
                if mp.println(line).is_err() {
                    println!("{line}");
                }
            }
            None => println!("{line}"),
        }
    }

    fn bar(&self, digest: &Digest, size: u64, status: &str) -> Option<ProgressBar> {
        let (mp, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = bars.get(digest) {
            return Some(b.clone());
        }
        let style = ProgressStyle::with_template(
            "{prefix}: {msg:<16} [{bar:30}] {bytes:>10}/{total_bytes:<10}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let b = mp.add(ProgressBar::new(size.max(1)));
        b.set_style(style);
        b.set_prefix(short_id(digest).to_string());
        b.set_message(status.to_string());
        b.enable_steady_tick(Duration::from_millis(200));
        bars.insert(digest.clone(), b.clone());
        Some(b)
    }

    fn existing_bar(&self, digest: &Digest) -> Option<ProgressBar> {
        let (_, bars) = self.bars.as_ref()?;
        let bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.get(digest).cloned()
    }

    fn finish(&self, digest: &Digest, status: &str) {
        let line = format!("{}: {status}", short_id(digest));
        let Some((_, bars)) = &self.bars else {
            println!("{line}");
            return;
        };
        let bar = bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned();
        match bar {
            Some(b) => {
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.finish_with_message(status.to_string());
            }
            None => self.println(&line),
        }
    }
}

impl Progress for CliProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Start {
                digest,
                size,
                status,
            } => {
                if self.bar(&digest, size, &status).is_none() {
                    println!("{}: {status}", short_id(&digest));
                }
            }
            ProgressEvent::Bytes { digest, done, size } => {
                // Only blobs announced with `Start` (layers) get a bar; the
                // config moves silently, as in Docker.
                if let Some(b) = self.existing_bar(&digest) {
                    b.set_message(self.verb);
                    b.set_length(size.max(1));
                    b.set_position(done);
                }
            }
            ProgressEvent::Done { digest, status } => self.finish(&digest, &status),
            ProgressEvent::Retry {
                digest,
                attempt,
                reason,
            } => self.println(&format!(
                "{}: Retrying (attempt {}): {reason}",
                short_id(&digest),
                attempt + 1
            )),
            ProgressEvent::Message(m) => self.println(&m),
        }
    }
}
