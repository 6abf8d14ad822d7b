//! `ADD <url>`: a streamed download into a temp file, its `--checksum` verified, its mtime
//! taken from `Last-Modified` (as BuildKit does).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use rbuild_solver::{Stream, VertexProgress, WorkerError};

use crate::build::worker::werr;

pub(super) async fn fetch(
    url: &str,
    path: &Path,
    checksum: Option<&str>,
    progress: &VertexProgress,
) -> Result<(), WorkerError> {
    let fail = |what: String| WorkerError::new(format!("ADD {url}: {what}"));
    // reqwest is built without a default crypto provider (as in the exporter).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("invalid response status {}", resp.status())));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| std::time::SystemTime::from(t.with_timezone(&chrono::Utc)));
    let mut file = std::fs::File::create(path).map_err(|e| fail(e.to_string()))?;
    let mut body = resp.bytes_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| fail(error_chain(&e)))?;
        total += chunk.len() as u64;
        file.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
    }
    file.sync_all().map_err(|e| fail(e.to_string()))?;
    if let Some(t) = modified {
        file.set_modified(t).map_err(|e| fail(e.to_string()))?;
    }
    drop(file);
    progress.log(Stream::Stdout, format!("downloaded {url}: {total} bytes"));
    if let Some(sum) = checksum {
        rbuild_executor::fileop::verify_checksum(path, sum).map_err(werr)?;
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}
