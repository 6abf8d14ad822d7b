//! Where blobs came from: for each blob pulled or pushed, the registry
//! repositories known to hold it (`localhost:5000/app`), so a push to another
//! repository of the same registry can mount instead of upload (containerd's
//! `distribution.source` labels play this role).
//!
//! Layout: `<root>/distribution-v1/sources/<alg>/<hex>`, one `domain/path`
//! per line, replaced atomically. Best effort: losing it only costs uploads.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::store::Store;

const DIR: &str = "distribution-v1/sources";

fn file_of(store: &Store, digest: &Digest) -> PathBuf {
    store
        .root()
        .join(DIR)
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// The repositories (`domain/path`) known to hold `digest`, oldest first.
pub fn sources(store: &Store, digest: &Digest) -> Vec<String> {
    std::fs::read_to_string(file_of(store, digest))
        .map(|s| {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Of the repositories holding `digest`, one on `domain` other than `path`.
pub fn mount_source(store: &Store, digest: &Digest, domain: &str, path: &str) -> Option<String> {
    let prefix = format!("{domain}/");
    sources(store, digest).into_iter().find_map(|s| {
        s.strip_prefix(&prefix)
            .filter(|p| *p != path)
            .map(str::to_string)
    })
}

/// Notes that `domain/path` holds `digest`. Errors are ignored (see module docs).
pub fn record(store: &Store, digest: &Digest, domain: &str, path: &str) {
    let entry = format!("{domain}/{path}");
    let mut all = sources(store, digest);
    if all.contains(&entry) {
        return;
    }
    all.push(entry);
    // Keep the list short: the most recent few are what matter.
    if all.len() > 16 {
        all.drain(..all.len() - 16);
    }
    let p = file_of(store, digest);
    let Some(dir) = p.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::Builder::new().prefix(".src-").tempfile_in(dir) else {
        return;
    };
    let mut text = all.join("\n");
    text.push('\n');
    if std::io::Write::write_all(&mut tmp, text.as_bytes()).is_ok() {
        let _ = tmp.persist(&p);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_and_find() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let dg = Digest::sha256(b"x");
        assert!(sources(&s, &dg).is_empty());
        record(&s, &dg, "localhost:5000", "a/b");
        record(&s, &dg, "localhost:5000", "a/b");
        record(&s, &dg, "other:1", "c");
        assert_eq!(sources(&s, &dg), vec!["localhost:5000/a/b", "other:1/c"]);
        assert_eq!(
            mount_source(&s, &dg, "localhost:5000", "z").as_deref(),
            Some("a/b")
        );
        assert_eq!(mount_source(&s, &dg, "localhost:5000", "a/b"), None);
        assert_eq!(mount_source(&s, &dg, "localhost:5001", "z"), None);
    }
}
