//! Bench driver: hashes a whole context directory with the incremental context hasher.
//!
//! `context_hash <context-dir> <cache-dir> [ignore-pattern...]` prints the digest, the entry
//! count, how many files were read and the time taken.

use std::path::PathBuf;
use std::process::ExitCode;

use rbuild_executor::context::{ContextHasher, Selection};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(context), Some(cache)) = (args.first(), args.get(1)) else {
        eprintln!("usage: context_hash <context-dir> <cache-dir> [ignore-pattern...]");
        return ExitCode::from(2);
    };
    let selection = Selection {
        includes: vec![".".into()],
        ignore: args[2..].to_vec(),
        follow_symlinks: true,
        ..Selection::default()
    };
    let started = std::time::Instant::now();
    let result = ContextHasher::open(&PathBuf::from(cache))
        .and_then(|hasher| hasher.hash_selection(&PathBuf::from(context), &selection));
    match result {
        Ok(d) => {
            let s = d.stats;
            println!(
                "{} entries={} read={} hits={} bytes_read={} in {:.3}s",
                d.digest,
                s.entries,
                s.files_read,
                s.cache_hits,
                s.bytes_read,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
