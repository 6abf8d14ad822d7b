//! Context hashing: location independence, mtime independence without re-reads, change
//! detection naming the file, `.dockerignore`, modes, symlinks, wildcards, escapes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rbuild_executor::context::{ContextHasher, Selection, changed_paths};

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn sample(root: &Path) {
    write(root, "src/main.rs", "fn main() {}");
    write(root, "src/lib/mod.rs", "pub mod x;");
    write(root, "README.md", "# hi");
    write(root, "target/debug/big", "build output");
    write(root, "logs/a.log", "noise");
    std::os::unix::fs::symlink("src/main.rs", root.join("main-link")).unwrap();
    // Deterministic modes whatever the umask.
    for (rel, mode) in [
        ("src/main.rs", 0o644),
        ("src/lib/mod.rs", 0o644),
        ("README.md", 0o644),
    ] {
        let perms = std::fs::Permissions::from_mode(mode);
        std::fs::set_permissions(root.join(rel), perms).unwrap();
    }
    for dir in ["src", "src/lib"] {
        std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn all() -> Selection {
    Selection {
        includes: vec![".".into()],
        ignore: vec!["target".into(), "**/*.log".into()],
        follow_symlinks: true,
        ..Selection::default()
    }
}

#[test]
fn same_content_elsewhere_same_digest() {
    let (a, b, cache) = (tempdir(), tempdir(), tempdir());
    sample(a.path());
    sample(b.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let da = hasher.hash_selection(a.path(), &all()).unwrap();
    let db = hasher.hash_selection(b.path(), &all()).unwrap();
    assert_eq!(da.digest, db.digest);
    assert_eq!(da.files, db.files);
    let names: Vec<&str> = da.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ".",
            "README.md",
            "logs",
            "main-link",
            "src",
            "src/lib",
            "src/lib/mod.rs",
            "src/main.rs"
        ]
    );
    // The ignored files are not even read.
    assert_eq!(da.stats.files_read, 3);
}

#[test]
fn touching_mtime_changes_nothing_and_reads_nothing() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    set_old_times(ctx.path());
    // The files were just written: record them anyway (see `racy_files_are_not_recorded`).
    let mut hasher = ContextHasher::open(cache.path()).unwrap();
    hasher.set_racy_window(std::time::Duration::ZERO);
    let first = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(first.stats.files_read, 3);
    assert_eq!(hasher.files_read(), 3);

    // A new hasher (a new process) reads the record from disk.
    let mut hasher = ContextHasher::open(cache.path()).unwrap();
    hasher.set_racy_window(std::time::Duration::ZERO);
    let second = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.stats.files_read, 0);
    assert_eq!(second.stats.cache_hits, 3);
    assert_eq!(hasher.files_read(), 0);

    // Touch: the mtime changes, the content does not.
    let file = ctx.path().join("src/main.rs");
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let third = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(third.digest, first.digest);
    assert_eq!(
        third.stats.files_read, 1,
        "only the touched file is read again"
    );
    let fourth = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(fourth.stats.files_read, 0, "and recorded again");
}

#[test]
fn changing_a_file_names_it() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let before = hasher.hash_selection(ctx.path(), &all()).unwrap();
    write(ctx.path(), "src/lib/mod.rs", "pub mod y;");
    let after = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_ne!(before.digest, after.digest);
    assert_eq!(
        changed_paths(&before.files, &after.files),
        ["src/lib/mod.rs"]
    );

    write(ctx.path(), "new.txt", "new");
    let added = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(changed_paths(&after.files, &added.files), ["new.txt"]);
}

#[test]
fn ignored_files_do_not_count() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let before = hasher.hash_selection(ctx.path(), &all()).unwrap();
    write(ctx.path(), "target/debug/big", "other output");
    write(ctx.path(), "logs/b.log", "more noise");
    write(ctx.path(), "src/deep/x.log", "noise");
    let after = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(changed_paths(&before.files, &after.files), ["src/deep"]);
    // Naming an ignored file is "not found", as in BuildKit (it was never sent).
    let sel = Selection {
        includes: vec!["target/debug/big".into()],
        ..all()
    };
    let err = hasher
        .hash_selection(ctx.path(), &sel)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn mode_changes_change_the_digest() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let before = hasher.hash_selection(ctx.path(), &all()).unwrap();
    let perms = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(ctx.path().join("src/main.rs"), perms).unwrap();
    let after = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_ne!(before.digest, after.digest);
    assert_eq!(changed_paths(&before.files, &after.files), ["src/main.rs"]);
}

#[test]
fn selections_wildcards_symlinks_and_excludes() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let sel = Selection {
        includes: vec!["src/*.rs".into(), "main-link".into(), "src/lib".into()],
        exclude: vec!["mod.rs".into()],
        ..all()
    };
    let got = hasher.hash_selection(ctx.path(), &sel).unwrap();
    let names: Vec<&str> = got.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["main-link", "src/lib", "src/main.rs"]);
    // The followed link hashes like the file it names (same type, mode and content).
    assert_eq!(got.files[0].1, got.files[2].1);

    let none = Selection {
        includes: vec!["*.go".into()],
        ..all()
    };
    let err = hasher
        .hash_selection(ctx.path(), &none)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no source files were specified"), "{err}");

    std::os::unix::fs::symlink("/etc", ctx.path().join("etc-link")).unwrap();
    let out = Selection {
        includes: vec!["etc-link/passwd".into()],
        ..all()
    };
    let err = hasher
        .hash_selection(ctx.path(), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("points outside the build context"), "{err}");
    let up = Selection {
        includes: vec!["../x".into()],
        ..all()
    };
    assert!(hasher.hash_selection(ctx.path(), &up).is_err());
}

#[test]
fn reincluded_files_below_an_ignored_directory() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    write(ctx.path(), "target/keep/me.txt", "kept");
    let hasher = ContextHasher::open(cache.path()).unwrap();
    let sel = Selection {
        ignore: vec!["target".into(), "!target/keep/me.txt".into()],
        ..all()
    };
    let got = hasher.hash_selection(ctx.path(), &sel).unwrap();
    let names: Vec<&str> = got.files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"target/keep/me.txt"), "{names:?}");
    assert!(!names.contains(&"target/debug/big"), "{names:?}");
}

#[test]
fn racy_files_are_not_recorded() {
    let (ctx, cache) = (tempdir(), tempdir());
    sample(ctx.path());
    let hasher = ContextHasher::open(cache.path()).unwrap();
    hasher.hash_selection(ctx.path(), &all()).unwrap();
    // Written just now: a same-tick rewrite could keep size and mtime, so no record yet.
    let again = hasher.hash_selection(ctx.path(), &all()).unwrap();
    assert_eq!(again.stats.files_read, 3);
}

fn set_old_times(root: &Path) {
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(999_999);
    for rel in ["src/main.rs", "src/lib/mod.rs", "README.md"] {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join(rel))
            .unwrap();
        file.set_modified(old).unwrap();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
