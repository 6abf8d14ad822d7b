//! Paths inside a root: lexical cleaning, chroot-like symlink resolution
//! ([`resolve_in_root`], containerd's `fs.RootPath`), and the source wildcards of COPY/ADD
//! (Go's `filepath.Match` per path component, as fsutil's `ResolveWildcards`).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Symlinks followed in one resolution before giving up (Linux's `MAXSYMLINKS` is 40;
/// containerd allows 255).
const MAX_LINKS: usize = 255;

/// What a resolution does with a path that tries to leave its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// chroot semantics: `..` stops at the root, an absolute symlink target starts again at
    /// the root. For destination rootfs writes and sources from another stage or image.
    Clamp,
    /// The build context: a `..` above the root or any symlink leaving it (absolute target,
    /// or `..` above the root) is an error naming the path.
    Refuse,
    /// Archive extraction (BuildKit's `resolveRootPath`): an absolute symlink target is taken
    /// relative to the root, a relative one climbing above it is an error.
    AbsoluteInRoot,
}

/// Resolves `path` (`/`-separated, taken relative to `root` even when absolute) inside
/// `root` like a chroot: each component that is a symlink is replaced by its target, read
/// relative to `root`; `..` never climbs above `root`. The last component is followed only
/// when `follow_last`. Components that do not exist are appended as they are. The result is
/// `root` joined with the resolved components.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf> {
    resolve(root, path, follow_last, Confine::Clamp)
}

/// [`resolve_in_root`] with a choice of what to do with escapes.
pub fn resolve(root: &Path, path: &str, follow_last: bool, confine: Confine) -> Result<PathBuf> {
    let rel = resolve_rel(root, path, follow_last, confine)?;
    let mut out = root.to_path_buf();
    out.extend(&rel);
    Ok(out)
}

/// The resolved components of [`resolve`], relative to `root`.
pub(crate) fn resolve_rel(
    root: &Path,
    path: &str,
    follow_last: bool,
    confine: Confine,
) -> Result<Vec<OsString>> {
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = split(OsStr::new(path)).collect();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if done.pop().is_none() && confine == Confine::Refuse {
                return Err(Error::PathEscape {
                    path: path.to_owned(),
                });
            }
            continue;
        }
        let last = todo.is_empty();
        let mut candidate = root.to_path_buf();
        candidate.extend(&done);
        candidate.push(&part);
        if last && !follow_last {
            done.push(part);
            break;
        }
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => {
                done.push(part);
                continue;
            }
            Err(e) => return Err(Error::io("lstat", candidate, e)),
        };
        if !meta.file_type().is_symlink() {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Error::SymlinkLoop {
                path: path.to_owned(),
            });
        }
        let target = std::fs::read_link(&candidate).ctx("readlink", &candidate)?;
        let shown = || display_rel(&done, &part);
        if target.as_os_str().as_bytes().starts_with(b"/") {
            if confine == Confine::Refuse {
                let target = target.display().to_string();
                return Err(Error::SymlinkEscape {
                    path: shown(),
                    target,
                });
            }
            done.clear();
        } else if confine != Confine::Clamp && escapes(&done, target.as_os_str()) {
            let target = target.display().to_string();
            return Err(Error::SymlinkEscape {
                path: shown(),
                target,
            });
        }
        for (i, c) in split(target.as_os_str()).enumerate() {
            todo.insert(i, c);
        }
    }
    Ok(done)
}

fn display_rel(done: &[OsString], part: &OsStr) -> String {
    let mut p = PathBuf::from("/");
    p.extend(done);
    p.push(part);
    p.display().to_string()
}

/// Would the relative `target`, read in the directory `done`, climb above the root?
fn escapes(done: &[OsString], target: &OsStr) -> bool {
    let mut depth = done.len();
    for c in split(target) {
        if c == ".." {
            match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            }
        } else {
            depth += 1;
        }
    }
    false
}

/// The non-empty, non-`.` components of a `/`-separated path.
fn split(path: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    let parts = path.as_bytes().split(|&b| b == b'/');
    let parts = parts.filter(|c| !c.is_empty() && *c != b".");
    parts.map(|c| OsStr::from_bytes(c).to_owned())
}

pub(crate) fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Go's `path.Clean` of `"/" + path` without the leading `/`: `..` stops at the root.
/// `""` for the root itself.
pub fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// Whether `path` climbs above its root with `..` anywhere (`a/../../b` does).
pub fn climbs_out(path: &str) -> bool {
    let mut depth = 0usize;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// fsutil's `containsWildcards`: `*`, `?` or `[` not escaped by a backslash.
pub fn has_wildcards(component: &str) -> bool {
    let mut bytes = component.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
    }
    false
}

/// Expands a source path with wildcards inside `root` (fsutil's `ResolveWildcards`): the
/// components before the first wildcard are resolved (symlinks followed, confined as
/// `confine` says), the rest are matched one directory level at a time with Go's
/// `filepath.Match`, descending only into real directories. `skip` drops candidates (by their
/// root-relative path) before they are matched, e.g. `.dockerignore`d entries. Matches are
/// root-relative `/`-separated paths in lexical order. A path without wildcards is returned
/// as it is (cleaned), whether it exists or not.
pub fn expand_wildcards(
    root: &Path,
    path: &str,
    confine: Confine,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let cleaned = clean_rel(path);
    let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    let Some(first) = parts.iter().position(|p| has_wildcards(p)) else {
        return Ok(vec![cleaned]);
    };
    let base = parts[..first].join("/");
    let resolved = resolve_rel(root, &base, true, confine)?;
    let mut base_abs = root.to_path_buf();
    base_abs.extend(&resolved);
    let mut found = Vec::new();
    match_level(&base_abs, &base, &parts[first..], skip, &mut found)?;
    Ok(found)
}

fn match_level(
    dir: &Path,
    rel: &str,
    patterns: &[&str],
    skip: &dyn Fn(&str) -> bool,
    found: &mut Vec<String>,
) -> Result<()> {
    let Some((pattern, rest)) = patterns.split_first() else {
        return Ok(());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.ctx("read directory", dir)?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let text = name.to_string_lossy();
        if !glob_match(pattern, &text)? {
            continue;
        }
        let child_rel = if rel.is_empty() {
            text.into_owned()
        } else {
            format!("{rel}/{text}")
        };
        if skip(&child_rel) {
            continue;
        }
        if rest.is_empty() {
            found.push(child_rel);
            continue;
        }
        let child = dir.join(&name);
        let is_dir = std::fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir());
        if is_dir {
            match_level(&child, &child_rel, rest, skip, found)?;
        }
    }
    Ok(())
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[class]` (ranges, `^` negation) and
/// `\` escapes. A malformed pattern is an error.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool> {
    let bad = |reason: &str| Error::InvalidArgument {
        what: "pattern",
        value: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern first (Go reports ErrBadPattern for a bad class anywhere).
    let mut i = 0;
    while i < p.len() {
        i = match p[i] {
            '\\' if i + 1 >= p.len() => return Err(bad("trailing backslash")),
            '\\' => i + 2,
            '[' => class_end(&p, i).ok_or_else(|| bad("malformed character class"))?,
            _ => i + 1,
        };
    }
    Ok(glob_at(&p, &n))
}

/// Backtracking matcher over validated patterns (star positions are retried).
fn glob_at(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') if n[ni] != '/' => Some(pi + 1),
            Some('[') => class_end(p, pi).filter(|_| class_matches(p, pi, n[ni])),
            Some('\\') if p.get(pi + 1) == Some(&n[ni]) => Some(pi + 2),
            Some(&c) if c != '\\' && c != '?' && c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) if n[sn] != '/' => {
                    star = Some((sp, sn + 1));
                    pi = sp + 1;
                    ni = sn + 1;
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Index just past the `]` closing the class opened at `start`, if well formed.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut ranges = 0;
    loop {
        match p.get(i)? {
            ']' if ranges > 0 => return Some(i + 1),
            _ => {
                let (_, next) = class_char(p, i)?;
                i = next;
                if p.get(i) == Some(&'-') {
                    let (_, next) = class_char(p, i + 1)?;
                    i = next;
                }
                ranges += 1;
            }
        }
    }
}

fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        '-' | ']' => None,
        &c => Some((c, i + 1)),
    }
}

fn class_matches(p: &[char], start: usize, c: char) -> bool {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&ch) = p.get(i) {
        if ch == ']' && !first {
            break;
        }
        first = false;
        let Some((lo, next)) = class_char(p, i) else {
            return false;
        };
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            if let Some((h, next)) = class_char(p, i + 1) {
                hi = h;
                i = next;
            }
        }
        hit |= lo <= c && c <= hi;
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_go() {
        let cases = [
            ("*", "abc", true),
            ("*", ".hidden", true),
            ("a*c", "abbbc", true),
            ("a*c", "abd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("a*b*c", "axxbyyc", true),
            ("[]a]", "]", false),
        ];
        for (p, n, want) in cases {
            let got = glob_match(p, n).unwrap_or(false);
            assert_eq!(got, want, "{p} vs {n}");
        }
        assert!(glob_match("[", "a").is_err());
        assert!(glob_match("a\\", "a").is_err());
        assert!(glob_match("[a-]", "a").is_err());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_rel("/a/./b/../c/"), "a/c");
        assert_eq!(clean_rel("../../x"), "x");
        assert_eq!(clean_rel("."), "");
        assert!(climbs_out("../x"));
        assert!(climbs_out("a/../../x"));
        assert!(!climbs_out("a/../x"));
        assert!(has_wildcards("*.go"));
        assert!(!has_wildcards("a\\*"));
    }

    #[test]
    fn resolves_inside_root() -> Result<()> {
        let dir = tempfile::tempdir().ctx("tempdir", "/tmp")?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/etc")).ctx("mkdir", root)?;
        std::os::unix::fs::symlink("/real/etc", root.join("etc")).ctx("symlink", root)?;
        std::os::unix::fs::symlink("../../../real", root.join("up")).ctx("symlink", root)?;
        let got = resolve_in_root(root, "/etc/passwd", true)?;
        assert_eq!(got, root.join("real/etc/passwd"));
        assert_eq!(
            resolve_in_root(root, "/up/etc", true)?,
            root.join("real/etc")
        );
        assert_eq!(resolve_in_root(root, "/etc", false)?, root.join("etc"));
        assert_eq!(
            resolve_in_root(root, "/../../etc/x", true)?,
            root.join("real/etc/x")
        );
        let refused = resolve(root, "etc/passwd", true, Confine::Refuse);
        assert!(matches!(refused, Err(Error::SymlinkEscape { .. })));
        let refused = resolve(root, "up", true, Confine::AbsoluteInRoot);
        assert!(matches!(refused, Err(Error::SymlinkEscape { .. })));
        let refused = resolve(root, "../x", true, Confine::Refuse);
        assert!(matches!(refused, Err(Error::PathEscape { .. })));
        std::os::unix::fs::symlink("loop", root.join("loop")).ctx("symlink", root)?;
        let looped = resolve_in_root(root, "loop", true);
        assert!(matches!(looped, Err(Error::SymlinkLoop { .. })));
        Ok(())
    }
}
