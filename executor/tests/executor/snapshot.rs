//! Snapshotter tests: overlay (root only) and the naive fallback.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rbuild_executor::snapshot::{self, Backend, Kind, Mounts, Snapshotter};

use crate::common::{UnmountGuard, mounts_under, require_root};

struct Store {
    dir: tempfile::TempDir,
    s: Snapshotter,
    _guard: UnmountGuard,
}

fn store(backend: Option<Backend>) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open_with(dir.path().join("store"), backend).unwrap();
    let guard = UnmountGuard(dir.path().to_path_buf());
    Store {
        dir,
        s,
        _guard: guard,
    }
}

impl Store {
    /// Mounts `m` on a fresh directory named `name`.
    fn mount(&self, m: &Mounts, name: &str) -> PathBuf {
        let t = self.dir.path().join(name);
        std::fs::create_dir_all(&t).unwrap();
        self.s.mount(m, &t).unwrap();
        t
    }
}

fn is_whiteout(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn overlay_prepare_commit_chain_and_whiteouts() {
    if !require_root("overlay snapshots") {
        return;
    }
    let st = store(None);
    if st.s.backend() != Backend::Overlay {
        eprintln!("skipped: overlayfs is not available here");
        return;
    }
    let m = st.s.prepare("a", None).unwrap();
    assert!(matches!(
        m,
        Mounts::Bind {
            readonly: false,
            ..
        }
    ));
    let t = st.mount(&m, "ma");
    std::fs::write(t.join("base.txt"), "base").unwrap();
    std::fs::create_dir(t.join("dir")).unwrap();
    std::fs::write(t.join("dir/gone.txt"), "x").unwrap();
    snapshot::unmount(&t).unwrap();
    st.s.commit("A", "a").unwrap();
    assert_eq!(st.s.stat("A").unwrap().kind, Kind::Committed);
    assert!(st.s.stat("a").is_err());

    let m = st.s.prepare("b", Some("A")).unwrap();
    let Mounts::Overlay {
        lowerdirs,
        upperdir,
        ..
    } = &m
    else {
        panic!("{m:?}")
    };
    assert_eq!(lowerdirs.len(), 1);
    let upper = upperdir.clone().unwrap();
    let t = st.mount(&m, "mb");
    assert_eq!(std::fs::read_to_string(t.join("base.txt")).unwrap(), "base");
    std::fs::write(t.join("new.txt"), "new").unwrap();
    std::fs::remove_file(t.join("dir/gone.txt")).unwrap();
    snapshot::unmount(&t).unwrap();
    // Writes land only in the upper dir; the deletion is a char 0:0 whiteout there.
    assert!(upper.join("new.txt").exists());
    assert!(!upper.join("base.txt").exists());
    assert!(is_whiteout(&upper.join("dir/gone.txt")));
    assert_eq!(st.s.diff_dir("b").unwrap(), upper);
    assert!(st.s.usage("b").unwrap().inodes >= 3);
    st.s.commit("B", "b").unwrap();

    // A view of the two-layer chain: read-only overlay of both lowers.
    let m = st.s.view("v", Some("B")).unwrap();
    let Mounts::Overlay {
        lowerdirs,
        upperdir,
        ..
    } = &m
    else {
        panic!("{m:?}")
    };
    assert_eq!((lowerdirs.len(), upperdir.is_none()), (2, true));
    let t = st.mount(&m, "mv");
    assert!(t.join("new.txt").exists() && t.join("base.txt").exists());
    assert!(!t.join("dir/gone.txt").exists());
    assert!(std::fs::write(t.join("x"), "x").is_err());
    snapshot::unmount(&t).unwrap();

    // Parents in use cannot be removed; children first.
    assert!(st.s.remove("A").is_err());
    assert!(st.s.prepare("c", Some("b-missing")).is_err());
    assert!(st.s.prepare("v", None).is_err(), "duplicate key");
    st.s.remove("v").unwrap();
    st.s.remove("B").unwrap();
    st.s.remove("A").unwrap();
    assert!(st.s.list().unwrap().is_empty());
    assert!(mounts_under(st.dir.path()).is_empty());
}

#[test]
fn crash_leftovers_are_cleaned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let s = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    s.prepare("kept", None).unwrap();
    // A prepare killed before its metadata was written.
    std::fs::create_dir_all(root.join("snapshots/77/fs/etc")).unwrap();
    // An import whose process is gone.
    std::fs::create_dir_all(root.join("snapshots/78/fs")).unwrap();
    std::fs::write(
        root.join("snapshots/78/meta.json"),
        r#"{"key":"imp","kind":"importing","parent":null,"pid":4000000000}"#,
    )
    .unwrap();
    // A removal interrupted after the rename.
    std::fs::create_dir_all(root.join("removing/12/fs")).unwrap();
    drop(s);
    // Without a sign of a dead process only `removing/` is cleaned (no scan of the store).
    let s = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    assert!(!root.join("removing/12").exists());
    assert!(root.join("snapshots/77").exists());
    drop(s);
    // The marker a killed process left makes the next open look at every snapshot.
    std::fs::write(root.join("active/4000000000-0"), "").unwrap();
    let s = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    assert!(!root.join("active/4000000000-0").exists());
    assert!(!root.join("snapshots/77").exists());
    assert!(!root.join("snapshots/78").exists());
    assert!(!root.join("removing/12").exists());
    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["kept"]);
}

#[test]
fn naive_fallback_diff_in_overlay_format() {
    let st = store(Some(Backend::Naive));
    let base = st.s.prepare("base", None).unwrap();
    let Mounts::Bind { source: b, .. } = &base else {
        panic!("{base:?}")
    };
    std::fs::write(b.join("same.txt"), "same").unwrap();
    std::fs::write(b.join("changed.txt"), "old").unwrap();
    std::fs::write(b.join("deleted.txt"), "bye").unwrap();
    std::fs::create_dir_all(b.join("d/sub")).unwrap();
    std::fs::write(b.join("d/sub/keep"), "k").unwrap();
    std::fs::write(b.join("d/rm"), "r").unwrap();
    std::os::unix::fs::symlink("same.txt", b.join("link")).unwrap();
    st.s.commit("BASE", "base").unwrap();

    let m = st.s.prepare("work", Some("BASE")).unwrap();
    let Mounts::Bind { source: w, .. } = &m else {
        panic!("{m:?}")
    };
    // The naive prepare is a full copy of the parent.
    assert_eq!(std::fs::read_to_string(w.join("d/sub/keep")).unwrap(), "k");
    std::fs::write(w.join("changed.txt"), "new content").unwrap();
    std::fs::remove_file(w.join("deleted.txt")).unwrap();
    std::fs::remove_file(w.join("d/rm")).unwrap();
    std::fs::write(w.join("added.txt"), "add").unwrap();

    let diff = st.s.diff_dir("work").unwrap();
    let mut names = Vec::new();
    let mut stack = vec![diff.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let rel = e.path().strip_prefix(&diff).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            names.push(rel);
        }
    }
    names.sort();
    assert_eq!(
        names,
        vec!["added.txt", "changed.txt", "d", "d/rm", "deleted.txt"],
        "{names:?}"
    );
    assert!(is_whiteout(&diff.join("deleted.txt")));
    assert!(is_whiteout(&diff.join("d/rm")));
    assert_eq!(
        std::fs::read_to_string(diff.join("changed.txt")).unwrap(),
        "new content"
    );
    st.s.commit("WORK", "work").unwrap();
    assert!(!diff.exists(), "diff dir removed at commit");
}

fn import_and_check(st: &Store) {
    st.s.import_layer_dir("L1", None, |d| {
        std::fs::write(d.join("a"), "1").unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        std::fs::write(d.join("dir/old"), "o").unwrap();
        Ok(())
    })
    .unwrap();
    st.s.import_layer_dir("L2", Some("L1"), |d| {
        // Overlay-lower format: a whiteout for `a`, a new file in `dir`.
        nix::sys::stat::mknod(
            &d.join("a"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        std::fs::write(d.join("dir/new"), "n").unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(st.s.stat("L2").unwrap().parent.as_deref(), Some("L1"));
    let m = st.s.view("v", Some("L2")).unwrap();
    let t = st.mount(&m, "view");
    assert!(!t.join("a").exists(), "whiteout hides a");
    assert!(t.join("dir/old").exists() && t.join("dir/new").exists());
    snapshot::unmount(&t).unwrap();
    // A failed import leaves nothing behind.
    assert!(
        st.s.import_layer_dir("L3", Some("L2"), |_| Err(rbuild_executor::Error::Sandbox(
            "unpack failed".into()
        )))
        .is_err()
    );
    assert!(st.s.stat("L3").is_err());
}

#[test]
fn import_layers_overlay() {
    if !require_root("overlay snapshots") {
        return;
    }
    let st = store(Some(Backend::Overlay));
    import_and_check(&st);
}

#[test]
fn import_layers_naive() {
    if !require_root("mounting snapshots") {
        return;
    }
    let st = store(Some(Backend::Naive));
    import_and_check(&st);
}

#[test]
fn long_chains_fit_the_mount_data_limit() {
    if !require_root("overlay snapshots") {
        return;
    }
    let st = store(Some(Backend::Overlay));
    let mut parent: Option<String> = None;
    for i in 0..150 {
        let key = format!("layer-{i}");
        st.s.import_layer_dir(&key, parent.as_deref(), |d| {
            std::fs::write(d.join(format!("f{i}")), "x")
                .map_err(|e| rbuild_executor::Error::io("write", d, e))
        })
        .unwrap();
        parent = Some(key);
    }
    let m = st.s.prepare("top", parent.as_deref()).unwrap();
    let t = st.mount(&m, "top");
    assert!(t.join("f0").exists() && t.join("f149").exists());
    snapshot::unmount(&t).unwrap();
}

#[test]
fn overlay_probe_is_remembered_for_the_boot() {
    if !require_root("overlay probe") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let s = Snapshotter::open(&root).unwrap();
    assert_eq!(s.backend(), Backend::Overlay);
    let probe = root.join("overlay-probe");
    let text = std::fs::read_to_string(&probe).unwrap();
    let (key, verdict) = text.trim().rsplit_once(' ').unwrap();
    assert_eq!(verdict, "yes");
    // The recorded verdict is what later opens use, not a new probe.
    std::fs::write(&probe, format!("{key} no\n")).unwrap();
    assert_eq!(Snapshotter::open(&root).unwrap().backend(), Backend::Naive);
    // A verdict from another boot (or filesystem) is probed again.
    std::fs::write(&probe, "other-boot 0 no\n").unwrap();
    assert_eq!(
        Snapshotter::open(&root).unwrap().backend(),
        Backend::Overlay
    );
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn keys_are_found_through_the_index_which_open_rebuilds_once_per_boot() {
    let st = store(Some(Backend::Naive));
    let root = st.dir.path().join("store");
    st.s.prepare("a-active", None).unwrap();
    st.s.commit("a", "a-active").unwrap();
    st.s.prepare("b", Some("a")).unwrap();
    assert_eq!(st.s.stat("a").unwrap().kind, Kind::Committed);
    // The active key of a commit is no snapshot any more, and its entry is gone.
    assert!(st.s.stat("a-active").is_err());
    let keys = root.join("keys");
    let entries = || {
        std::fs::read_dir(&keys)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    assert_eq!(entries(), 2);

    // A stale entry (its snapshot now holds another key) is no snapshot, and a key whose
    // entry points elsewhere cannot be created twice.
    let b_id = st.s.stat("b").unwrap().id;
    let a_entry = std::fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path()).unwrap() != b_id
                && !e.file_name().to_string_lossy().starts_with('.')
        })
        .unwrap()
        .path();
    std::fs::write(&a_entry, &b_id).unwrap();
    assert!(
        st.s.stat("a").is_err(),
        "an entry is checked against meta.json"
    );
    assert!(st.s.stat("b").is_ok());

    // A store indexed in another boot (or before the index existed) is indexed again on
    // open: every snapshot is found, without stale entries winning.
    std::fs::write(keys.join(".complete"), "another-boot").unwrap();
    std::fs::remove_file(
        std::fs::read_dir(&keys)
            .unwrap()
            .flatten()
            .find(|e| std::fs::read_to_string(e.path()).unwrap() == b_id)
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(st.s.stat("b").is_err());
    let again = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    assert_eq!(again.stat("a").unwrap().kind, Kind::Committed);
    assert_eq!(again.stat("b").unwrap().id, b_id);
    assert!(again.prepare("b", None).is_err(), "b exists");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let complete = std::fs::read_to_string(keys.join(".complete")).unwrap();
    assert_eq!(complete.split_whitespace().next(), Some(boot.trim()));
    // Removing a snapshot removes its entry.
    again.remove("b").unwrap();
    assert!(again.stat("b").is_err());
    again.prepare("b", Some("a")).unwrap();
    assert!(again.stat("b").is_ok());
}

#[test]
fn an_open_store_is_marked_and_an_import_of_a_dead_process_does_not_block_its_key() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let s = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    let markers = || std::fs::read_dir(root.join("active")).unwrap().count();
    assert_eq!(markers(), 1);
    let second = Snapshotter::open_with(&root, Some(Backend::Naive)).unwrap();
    assert_eq!(markers(), 2);
    drop(second);
    assert_eq!(markers(), 1);
    // An import whose process died, indexed as a real one would be.
    std::fs::create_dir_all(root.join("snapshots/90/fs")).unwrap();
    std::fs::write(
        root.join("snapshots/90/meta.json"),
        r#"{"key":"layer-x","kind":"importing","parent":null,"pid":4000000000}"#,
    )
    .unwrap();
    let entry = hex::encode(sha2::Sha256::digest(b"layer-x"));
    std::fs::write(root.join("keys").join(entry), "90").unwrap();
    assert_eq!(s.stat("layer-x").unwrap().kind, Kind::Importing);
    s.import_layer_dir("layer-x", None, |d| {
        std::fs::write(d.join("f"), "x").map_err(|e| rbuild_executor::Error::io("write", d, e))
    })
    .unwrap();
    assert_eq!(s.stat("layer-x").unwrap().kind, Kind::Committed);
    assert!(!root.join("snapshots/90").exists());
}
