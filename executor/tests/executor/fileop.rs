//! COPY/ADD cases: a build context and a destination rootfs are made from a small tree
//! language, one `fileop::copy` runs, and the resulting tree (paths, types, modes, owners,
//! contents, link targets, hard links) or the error is checked.
//!
//! Tree lines: `f PATH CONTENT [MODE] [UID:GID]`, `d PATH [MODE]`, `l PATH TARGET`,
//! `h PATH EXISTING` (hard link), `a PATH gz|bz2|xz|zst|tar` (a test archive, see
//! [`write_archive`]). Expectations: the same `f`/`d`/`l` lines (MODE and UID:GID checked
//! when given; `-` skips CONTENT), `! PATH` (absent), `= PATH PATH` (same inode),
//! `err SUBSTRING`.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rbuild_executor::fileop::{self, CopySpec, Source, SourceKind};

struct Case {
    name: &'static str,
    ctx: &'static str,
    rootfs: &'static str,
    sources: &'static [&'static str],
    dest: &'static str,
    /// Space-separated: `add`, `parents`, `rootfs`, `chown=X`, `chmod=X`, `exclude=X`,
    /// `unpack=false`, `heredoc=NAME:CONTENT`.
    flags: &'static str,
    expect: &'static str,
}

const PASSWD: &str = "d etc 755\nf etc/passwd root:x:0:0::/root:/bin/sh\\napp:x:1000:1001::/home/app:/bin/sh\\n\nf etc/group root:x:0:\\nstaff:x:50:\\napp:x:1001:\\n\n";

const CASES: &[Case] = &[
    Case {
        name: "single file to dir/",
        ctx: "f a.txt A 640",
        rootfs: "",
        sources: &["a.txt"],
        dest: "/app/",
        flags: "",
        expect: "d app 755 0:0\nf app/a.txt A 640 0:0",
    },
    Case {
        name: "single file to a file name",
        ctx: "f a.txt A 600",
        rootfs: "",
        sources: &["a.txt"],
        dest: "/app/renamed",
        flags: "",
        expect: "d app 755\nf app/renamed A 600 0:0",
    },
    Case {
        name: "single file into an existing dir without slash",
        ctx: "f a.txt A",
        rootfs: "d usr 755\nd usr/bin 700",
        sources: &["a.txt"],
        dest: "/usr/bin",
        flags: "",
        expect: "d usr/bin 700\nf usr/bin/a.txt A",
    },
    Case {
        name: "file replaces an existing file",
        ctx: "f a.txt NEW 644",
        rootfs: "f x OLD 600",
        sources: &["a.txt"],
        dest: "/x",
        flags: "",
        expect: "f x NEW 644",
    },
    Case {
        name: "wildcard to dir/",
        ctx: "f a.go A\nf b.go B\nf c.txt C\nd sub\nf sub/d.go D",
        rootfs: "",
        sources: &["*.go"],
        dest: "/src/",
        flags: "",
        expect: "f src/a.go A\nf src/b.go B\n! src/c.txt\n! src/d.go\n! src/sub",
    },
    Case {
        name: "wildcard with several matches needs a trailing slash",
        ctx: "f a.go A\nf b.go B",
        rootfs: "",
        sources: &["*.go"],
        dest: "/src",
        flags: "",
        expect: "err the destination must be a directory and end with a /",
    },
    Case {
        name: "wildcard with one match to a file name",
        ctx: "f only.go A",
        rootfs: "",
        sources: &["*.go"],
        dest: "/main.go",
        flags: "",
        expect: "f main.go A",
    },
    Case {
        name: "wildcard matching nothing",
        ctx: "f a.txt A",
        rootfs: "",
        sources: &["*.go"],
        dest: "/src/",
        flags: "",
        expect: "err no source files were specified",
    },
    Case {
        name: "missing source",
        ctx: "f a.txt A",
        rootfs: "",
        sources: &["nope.txt"],
        dest: "/src/",
        flags: "",
        expect: "err \"/nope.txt\": not found",
    },
    Case {
        name: "two files to a non-directory",
        ctx: "f a A\nf b B",
        rootfs: "",
        sources: &["a", "b"],
        dest: "/x",
        flags: "",
        expect: "err When using COPY with more than one source file",
    },
    Case {
        name: "directory copies its contents",
        ctx: "d src 700\nf src/a A 644\nd src/sub 750\nf src/sub/b B 600",
        rootfs: "",
        sources: &["src"],
        dest: "/app",
        flags: "",
        expect: "d app 755 0:0\nf app/a A 644\nd app/sub 750 0:0\nf app/sub/b B 600\n! app/src",
    },
    Case {
        name: "existing top dir keeps its metadata, nested ones take the source's",
        ctx: "d src 700\nd src/sub 700\nf src/sub/b B",
        rootfs: "d app 711\nd app/sub 755",
        sources: &["src/"],
        dest: "/app/",
        flags: "",
        expect: "d app 711\nd app/sub 700\nf app/sub/b B",
    },
    Case {
        name: "wildcard matching directories copies their contents",
        ctx: "d d1\nf d1/x X\nd d2\nf d2/y Y",
        rootfs: "",
        sources: &["d*"],
        dest: "/out/",
        flags: "",
        expect: "f out/x X\nf out/y Y\n! out/d1",
    },
    Case {
        name: "several directories into a new dir without slash merge",
        ctx: "d d1\nf d1/x X\nd d2\nf d2/y Y",
        rootfs: "",
        sources: &["d1", "d2"],
        dest: "/out",
        flags: "",
        expect: "f out/x X\nf out/y Y",
    },
    Case {
        name: "--parents keeps the source path",
        ctx: "d a 700\nd a/b 750\nf a/b/c.txt C\nf a/b/d.txt D",
        rootfs: "",
        sources: &["a/b/c.txt"],
        dest: "/dst",
        flags: "parents",
        expect: "d dst 755\nd dst/a 700\nd dst/a/b 750\nf dst/a/b/c.txt C\n! dst/a/b/d.txt",
    },
    Case {
        name: "--parents with a pivot and a wildcard",
        ctx: "d a\nd a/b\nf a/b/x.txt X\nf a/b/y.md Y",
        rootfs: "",
        sources: &["a/./b/*.txt"],
        dest: "/dst/",
        flags: "parents",
        expect: "f dst/b/x.txt X\n! dst/a\n! dst/b/y.md",
    },
    Case {
        name: "--exclude below a directory and on wildcard matches",
        ctx: "d src\nf src/keep.go K\nf src/skip.txt S\nd src/sub\nf src/sub/t.txt T\nf top.txt X\nf top.go G",
        rootfs: "",
        sources: &["src", "top*"],
        dest: "/app/",
        flags: "exclude=*.txt exclude=sub/*.txt",
        expect: "f app/keep.go K\n! app/skip.txt\nd app/sub\n! app/sub/t.txt\nf app/top.go G\n! app/top.txt",
    },
    Case {
        name: "--chown by name uses the primary group; parents created for the owner",
        ctx: "d src 700\nf src/a A 640",
        rootfs: PASSWD,
        sources: &["src"],
        dest: "/home/app/code/",
        flags: "chown=app",
        expect: "d home 755 1000:1001\nd home/app/code 755 1000:1001\nf home/app/code/a A 640 1000:1001\nd etc 755 0:0",
    },
    Case {
        name: "--chown by id and group name",
        ctx: "f a A",
        rootfs: PASSWD,
        sources: &["a"],
        dest: "/x/",
        flags: "chown=42:staff",
        expect: "f x/a A 644 42:50",
    },
    Case {
        name: "--chown by uid only uses it as gid",
        ctx: "f a A",
        rootfs: "",
        sources: &["a"],
        dest: "/x/",
        flags: "chown=1234",
        expect: "f x/a A 644 1234:1234\nd x 755 1234:1234",
    },
    Case {
        name: "--chown with an unknown user fails",
        ctx: "f a A",
        rootfs: PASSWD,
        sources: &["a"],
        dest: "/x/",
        flags: "chown=ghost",
        expect: "err unable to find user ghost",
    },
    Case {
        name: "--chmod applies to files and directories, keeps setuid",
        ctx: "d d 700\nf d/run R 4755\nd d/sub 700\nf d/sub/f F 600",
        rootfs: "",
        sources: &["d"],
        dest: "/o/",
        flags: "chmod=640",
        expect: "d o 755\nf o/run R 4640\nd o/sub 640\nf o/sub/f F 640",
    },
    Case {
        name: "context owners become 0:0, stage owners are kept",
        ctx: "f a A 644 1000:1000",
        rootfs: "",
        sources: &["a"],
        dest: "/x/",
        flags: "",
        expect: "f x/a A 644 0:0",
    },
    Case {
        name: "COPY --from keeps owners",
        ctx: "f a A 644 1000:1001\nd d 755 7:8\nf d/b B 600 9:9",
        rootfs: "",
        sources: &["a", "d"],
        dest: "/x/",
        flags: "rootfs",
        expect: "f x/a A 644 1000:1001\nf x/b B 600 9:9",
    },
    Case {
        name: "symlinks inside a directory are copied as symlinks",
        ctx: "d d\nf d/real R\nl d/link real\nl d/abs /etc/passwd",
        rootfs: "",
        sources: &["d"],
        dest: "/o/",
        flags: "",
        expect: "f o/real R\nl o/link real\nl o/abs /etc/passwd",
    },
    Case {
        name: "a named symlink source is followed",
        ctx: "d d\nf d/real R 600\nl link d/real",
        rootfs: "",
        sources: &["link"],
        dest: "/o/",
        flags: "",
        expect: "f o/link R 600\n! o/real",
    },
    Case {
        name: "hard links in a copied tree stay hard links",
        ctx: "d d\nf d/one SAME\nh d/two d/one\nf d/other OTHER",
        rootfs: "",
        sources: &["d"],
        dest: "/o/",
        flags: "",
        expect: "= o/one o/two\nf o/two SAME\nf o/other OTHER",
    },
    Case {
        name: "../ escape is refused",
        ctx: "f a A",
        rootfs: "",
        sources: &["../a"],
        dest: "/o/",
        flags: "",
        expect: "err forbidden path outside the build context",
    },
    Case {
        name: "a symlink out of the context is refused",
        ctx: "l out /etc/passwd\nl up ../../../../etc",
        rootfs: "",
        sources: &["out"],
        dest: "/o/",
        flags: "",
        expect: "err symlink /out points outside the build context",
    },
    Case {
        name: "a relative symlink climbing out is refused",
        ctx: "d d\nl d/up ../../etc",
        rootfs: "",
        sources: &["d/up/passwd"],
        dest: "/o/",
        flags: "",
        expect: "err points outside the build context",
    },
    Case {
        name: "a destination symlink is followed inside the root",
        ctx: "f a A",
        rootfs: "d real\nl app /real\nd etc\nl evil /../../../../tmp",
        sources: &["a"],
        dest: "/app/",
        flags: "",
        expect: "l app /real\nf real/a A",
    },
    Case {
        name: "a destination symlink climbing out stays in the root",
        ctx: "f a A",
        rootfs: "l evil ../../../../../../../../rbuild-escape-test",
        sources: &["a"],
        dest: "/evil/",
        flags: "",
        expect: "f rbuild-escape-test/a A",
    },
    Case {
        name: "ADD extracts tar.gz",
        ctx: "a app.tar.gz gz",
        rootfs: "",
        sources: &["app.tar.gz"],
        dest: "/opt/",
        flags: "add",
        expect: "d opt/sub 750\nf opt/a.txt A 640 1000:1000\nf opt/sub/b.txt B 600\nl opt/lnk a.txt\n= opt/a.txt opt/hard\n! opt/app.tar.gz",
    },
    Case {
        name: "ADD extracts tar.xz",
        ctx: "a x.tar.xz xz",
        rootfs: "",
        sources: &["x.tar.xz"],
        dest: "/opt",
        flags: "add",
        expect: "f opt/a.txt A 640\nf opt/sub/b.txt B",
    },
    Case {
        name: "ADD extracts tar.zst",
        ctx: "a x.tar.zst zst",
        rootfs: "",
        sources: &["x.tar.zst"],
        dest: "/opt/",
        flags: "add",
        expect: "f opt/a.txt A 640\nf opt/sub/b.txt B",
    },
    Case {
        name: "ADD extracts tar.bz2 with --chown",
        ctx: "a x.tar.bz2 bz2",
        rootfs: "",
        sources: &["x.tar.bz2"],
        dest: "/opt/",
        flags: "add chown=5:6",
        expect: "f opt/a.txt A 640 5:6\nd opt/sub 750 5:6",
    },
    Case {
        name: "ADD detects archives by content (plain tar with another name)",
        ctx: "a data.bin tar",
        rootfs: "",
        sources: &["data.bin"],
        dest: "/opt/",
        flags: "add",
        expect: "f opt/a.txt A\n! opt/data.bin",
    },
    Case {
        name: "ADD of a non-archive named .tar copies it",
        ctx: "f fake.tar not-a-tar 644",
        rootfs: "",
        sources: &["fake.tar"],
        dest: "/opt/",
        flags: "add",
        expect: "f opt/fake.tar not-a-tar 644",
    },
    Case {
        name: "ADD --unpack=false copies the archive",
        ctx: "a x.tar.gz gz",
        rootfs: "",
        sources: &["x.tar.gz"],
        dest: "/opt/",
        flags: "add unpack=false",
        expect: "f opt/x.tar.gz -\n! opt/a.txt",
    },
    Case {
        name: "COPY never extracts",
        ctx: "a x.tar.gz gz",
        rootfs: "",
        sources: &["x.tar.gz"],
        dest: "/opt/",
        flags: "",
        expect: "f opt/x.tar.gz -",
    },
    Case {
        name: "heredoc files",
        ctx: "",
        rootfs: "",
        sources: &[],
        dest: "/etc/app/",
        flags: "heredoc=conf:hello heredoc=other:world",
        expect: "f etc/app/conf hello 644 0:0\nf etc/app/other world 644",
    },
    Case {
        name: "heredoc to a file name with --chmod",
        ctx: "",
        rootfs: "",
        sources: &[],
        dest: "/run.sh",
        flags: "heredoc=EOF:echo chmod=755",
        expect: "f run.sh echo 755",
    },
    Case {
        name: "a file cannot replace a directory",
        ctx: "f a A",
        rootfs: "d x\nd x/a",
        sources: &["a"],
        dest: "/x/",
        flags: "",
        expect: "err cannot replace to directory /x/a with file",
    },
];

#[test]
fn copy_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = run_case(case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_case(case: &Case) -> Result<(), String> {
    let ctx = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    build_tree(ctx.path(), case.ctx)?;
    build_tree(root.path(), case.rootfs)?;
    let mut spec = CopySpec {
        sources: case
            .sources
            .iter()
            .map(|s| Source::Path((*s).to_owned()))
            .collect(),
        dest: case.dest.to_owned(),
        ..CopySpec::default()
    };
    for flag in case.flags.split_whitespace() {
        match flag.split_once('=') {
            None if flag == "add" => spec.is_add = true,
            None if flag == "parents" => spec.parents = true,
            None if flag == "rootfs" => spec.source_kind = SourceKind::Rootfs,
            Some(("chown", v)) => spec.chown = Some(v.to_owned()),
            Some(("chmod", v)) => {
                spec.chmod = Some(fileop::parse_chmod(v).map_err(|e| e.to_string())?)
            }
            Some(("exclude", v)) => spec.exclude.push(v.to_owned()),
            Some(("unpack", v)) => spec.unpack = Some(v == "true"),
            Some(("heredoc", v)) => {
                let (name, content) = v.split_once(':').unwrap_or((v, ""));
                let content = content.as_bytes().to_vec();
                spec.sources.push(Source::Inline {
                    name: name.to_owned(),
                    content,
                });
            }
            _ => return Err(format!("bad flag {flag}")),
        }
    }
    let result = fileop::copy(&spec, ctx.path(), root.path());
    if let Some(want) = case.expect.strip_prefix("err ") {
        return match result {
            Err(e) if e.to_string().contains(want) => Ok(()),
            Err(e) => Err(format!("error {e:?} does not contain {want:?}")),
            Ok(_) => Err(format!("succeeded, expected error {want:?}")),
        };
    }
    result.map_err(|e| format!("copy failed: {e}"))?;
    for line in case.expect.lines() {
        check(root.path(), line).map_err(|e| format!("{line:?}: {e}"))?;
    }
    Ok(())
}

fn build_tree(root: &Path, spec: &str) -> Result<(), String> {
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let path = root.join(f[1]);
        let io = |e: std::io::Error| format!("{line}: {e}");
        match f[0] {
            "f" => {
                std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io)?;
                std::fs::write(&path, f[2].replace("\\n", "\n")).map_err(io)?;
                set_meta(&path, f.get(3).copied().unwrap_or("644"), f.get(4).copied())
                    .map_err(io)?;
            }
            "d" => {
                std::fs::create_dir_all(&path).map_err(io)?;
                set_meta(&path, f.get(2).copied().unwrap_or("755"), f.get(3).copied())
                    .map_err(io)?;
            }
            "l" => std::os::unix::fs::symlink(f[2], &path).map_err(io)?,
            "h" => std::fs::hard_link(root.join(f[2]), &path).map_err(io)?,
            "a" => write_archive(&path, f[2]).map_err(io)?,
            other => return Err(format!("bad tree line kind {other}")),
        }
    }
    Ok(())
}

fn set_meta(path: &Path, mode: &str, owner: Option<&str>) -> std::io::Result<()> {
    let mode = u32::from_str_radix(mode, 8).map_err(std::io::Error::other)?;
    if let Some((u, g)) = owner.and_then(|o| o.split_once(':')) {
        let (u, g) = (u.parse().ok(), g.parse().ok());
        std::os::unix::fs::lchown(path, u, g)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A test archive: `a.txt` (A, 0640, 1000:1000), `sub/` (0750), `sub/b.txt` (B, 0600),
/// `lnk -> a.txt`, `hard` (hard link to `a.txt`), compressed as asked.
fn write_archive(path: &Path, kind: &str) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name(link)?;
        }
        builder.append_data(&mut h, name, data)
    };
    add("a.txt", tar::EntryType::Regular, 0o640, b"A", None)?;
    add("sub/", tar::EntryType::Directory, 0o750, b"", None)?;
    add("sub/b.txt", tar::EntryType::Regular, 0o600, b"B", None)?;
    add("lnk", tar::EntryType::Symlink, 0o777, b"", Some("a.txt"))?;
    add("hard", tar::EntryType::Link, 0o640, b"", Some("a.txt"))?;
    let tar = builder.into_inner()?;
    let bytes = match kind {
        "tar" => tar,
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&tar)?;
            e.finish()?
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(&tar)?;
            e.finish()?
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&tar)?;
            e.finish()?
        }
        "zst" => zstd::encode_all(tar.as_slice(), 3)?,
        _ => return Err(std::io::Error::other("unknown archive kind")),
    };
    std::fs::write(path, bytes)
}

fn check(root: &Path, line: &str) -> Result<(), String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let path = root.join(f[1]);
    let meta = std::fs::symlink_metadata(&path);
    match f[0] {
        "!" => {
            return if meta.is_err() {
                Ok(())
            } else {
                Err("exists".into())
            };
        }
        "=" => {
            let other = std::fs::symlink_metadata(root.join(f[2])).map_err(|e| e.to_string())?;
            let meta = meta.map_err(|e| e.to_string())?;
            return if meta.ino() == other.ino() {
                Ok(())
            } else {
                Err("not the same inode".into())
            };
        }
        _ => {}
    }
    let meta = meta.map_err(|e| e.to_string())?;
    let (mode_at, owner_at) = match f[0] {
        "f" => {
            if !meta.is_file() {
                return Err("not a file".into());
            }
            let content = std::fs::read(&path).map_err(|e| e.to_string())?;
            if f[2] != "-" && content != f[2].as_bytes() {
                return Err(format!("content {:?}", String::from_utf8_lossy(&content)));
            }
            (3, 4)
        }
        "d" if !meta.is_dir() => return Err("not a directory".into()),
        "d" => (2, 3),
        "l" => {
            let target = std::fs::read_link(&path).map_err(|e| e.to_string())?;
            return if target == Path::new(f[2]) {
                Ok(())
            } else {
                Err(format!("target {target:?}"))
            };
        }
        other => return Err(format!("bad expectation {other}")),
    };
    if let Some(mode) = f.get(mode_at) {
        let got = meta.mode() & 0o7777;
        if format!("{got:o}") != *mode {
            return Err(format!("mode {got:o}"));
        }
    }
    if let Some(owner) = f.get(owner_at) {
        let got = format!("{}:{}", meta.uid(), meta.gid());
        if got != *owner {
            return Err(format!("owner {got}"));
        }
    }
    Ok(())
}

#[test]
fn download_sources_are_0600_and_never_extracted() -> Result<(), String> {
    let ctx = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = ctx.path().join("dl");
    write_archive(&file, "gz").map_err(|e| e.to_string())?;
    let spec = CopySpec {
        is_add: true,
        sources: vec![Source::Download {
            path: file,
            name: "pkg.tar.gz".into(),
        }],
        dest: "/tmp/".into(),
        ..CopySpec::default()
    };
    fileop::copy(&spec, ctx.path(), root.path()).map_err(|e| e.to_string())?;
    check(root.path(), "f tmp/pkg.tar.gz - 600 0:0")?;
    check(root.path(), "! tmp/a.txt")
}

#[test]
fn archive_entries_cannot_escape() -> Result<(), String> {
    let ctx = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    // A symlink to `..` followed by a file through it.
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_link_name("../../..").map_err(|e| e.to_string())?;
    builder
        .append_data(&mut h, "up", std::io::empty())
        .map_err(|e| e.to_string())?;
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    builder
        .append_data(&mut h, "up/pwned", b"x".as_slice())
        .map_err(|e| e.to_string())?;
    let tar = builder.into_inner().map_err(|e| e.to_string())?;
    std::fs::write(ctx.path().join("evil.tar"), tar).map_err(|e| e.to_string())?;
    let spec = CopySpec {
        is_add: true,
        sources: vec![Source::Path("evil.tar".into())],
        dest: "/x/".into(),
        ..CopySpec::default()
    };
    let err = fileop::copy(&spec, ctx.path(), root.path())
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("outside")),
        "{err:?}"
    );
    assert!(!root.path().join("pwned").exists());
    Ok(())
}
