//! Writes the layer of a directory into a content store and prints what it
//! made and how fast: the hook `bench/layer.sh` times.
//!
//! ```text
//! cargo run --release -p rbuild-exporter --example layer_export -- DIR \
//!     [--store DIR] [--compression gzip|zstd|none] [--level N] [--threads N] \
//!     [--epoch SECS] [--overlay] [--keep]
//! ```
//!
//! Without `--store` a temporary store is used and removed; without `--keep`
//! the blob is deleted again (so repeated runs measure the same work).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use rbuild_exporter::Store;
use rbuild_exporter::layer::{LayerOptions, WhiteoutSource, write_layer};
use rbuild_exporter::media::Compression;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layer_export: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut store_dir = None;
    let mut keep = false;
    let mut opts = LayerOptions::default();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--store" => store_dir = Some(PathBuf::from(value()?)),
            "--compression" => {
                opts.compression = match value()?.as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "none" => Compression::None,
                    other => return Err(format!("unknown compression {other:?}").into()),
                }
            }
            "--level" => opts.level = Some(value()?.parse()?),
            "--threads" => opts.threads = Some(value()?.parse()?),
            "--epoch" => opts.source_date_epoch = Some(value()?.parse()?),
            "--overlay" => opts.whiteouts = WhiteoutSource::Overlay,
            "--keep" => keep = true,
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?}").into()),
        }
    }
    let dir = dir.ok_or("usage: layer_export DIR [options]")?;
    let tmp;
    let store_dir = match store_dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let store = Store::open(&store_dir)?;
    let start = Instant::now();
    let layer = write_layer(&store, &dir, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} diff_id={} size={} tar_size={} ratio={:.3} time={:.3}s tar_throughput={:.1}MB/s",
        layer.digest,
        layer.diff_id,
        layer.size,
        layer.tar_size,
        layer.size as f64 / layer.tar_size.max(1) as f64,
        secs,
        layer.tar_size as f64 / secs / 1e6,
    );
    if !keep {
        store.delete(&layer.digest)?;
    }
    Ok(())
}
