//! `--chown` and `--chmod` values of COPY/ADD.
//!
//! `--chown=user[:group]` follows BuildKit's `readUser` (solver/llbsolver/file/user_linux.go):
//! a numeric user is used as both uid and gid unless a group is given; a user name is looked
//! up in the destination rootfs's `/etc/passwd` (uid and primary gid); a group name in its
//! `/etc/group`. Unlike BuildKit (which silently falls back to 0), a name that is not there is
//! an error, as the Dockerfile reference documents ("the build will fail"). The passwd and
//! group parsing is the sandbox's ([`crate::user`]).

use std::path::Path;

use super::resolve::{is_missing, resolve_in_root};
use crate::error::{Error, Result};
use crate::user;

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// Resolves a `--chown` value against `rootfs` (the destination root filesystem).
pub fn resolve_chown(spec: &str, rootfs: &Path) -> Result<Owner> {
    let invalid = |reason: &str| Error::InvalidArgument {
        what: "--chown",
        value: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(invalid("expected user[:group]"));
    }
    let numeric = |s: &str| s.parse::<u32>().ok();
    let all_numeric =
        numeric(user_part).is_some() && group_part.is_none_or(|g| numeric(g).is_some());
    let (passwd, group) = if all_numeric {
        (None, None)
    } else {
        (
            read_etc(rootfs, "/etc/passwd")?,
            read_etc(rootfs, "/etc/group")?,
        )
    };
    let (uid, mut gid) = match numeric(user_part) {
        Some(uid) => (uid, uid),
        None => {
            let id = user::resolve(user_part, passwd.as_deref(), group.as_deref())?;
            (id.uid, id.gid)
        }
    };
    if let Some(g) = group_part {
        gid = match numeric(g) {
            Some(gid) => gid,
            None => {
                let spec = format!("0:{g}");
                user::resolve(&spec, passwd.as_deref(), group.as_deref())?.gid
            }
        };
    }
    Ok(Owner { uid, gid })
}

/// Reads `/etc/passwd`-like files of a rootfs (resolved inside it); None when missing.
fn read_etc(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let file = resolve_in_root(rootfs, path, true)?;
    match std::fs::read(&file) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(Error::io("read", file, e)),
    }
}

/// A parsed `--chmod`: octal bits, or symbolic clauses as chmod(1) spells them
/// (`u+x,go-w`, `a=rX`, `g=u`; Dockerfile 1.14 / BuildKit 0.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<ChmodClause>),
}

/// One symbolic clause: who (a mask of the `u`, `g`, `o` permission bits; `a` when none
/// is written, as BuildKit applies no umask), and its operations in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmodClause {
    who: u32,
    ops: Vec<(char, String)>,
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    /// The mode a copied file or directory (`mode`, all 0o7777 bits) gets. Octal modes
    /// replace the permission bits and keep setuid/setgid/sticky (fsutil's
    /// `copyFileInfo`); symbolic ones change the bits they name. `X` sets execute for
    /// directories and for files that already have an execute bit.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        let clauses = match self {
            Chmod::Octal(m) => return (mode & !0o777) | (m & 0o777),
            Chmod::Symbolic(c) => c,
        };
        let mut cur = mode;
        for clause in clauses {
            for (op, perms) in &clause.ops {
                let mut bits = 0u32;
                for p in perms.chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || cur & 0o111 != 0 => 0o111,
                        'X' => 0,
                        's' => 0o6000,
                        't' => 0o1000,
                        // Copy another class's bits (`g=u`) to every class.
                        'u' => ((cur >> 6) & 0o7) * 0o111,
                        'g' => ((cur >> 3) & 0o7) * 0o111,
                        'o' => (cur & 0o7) * 0o111,
                        _ => 0,
                    };
                }
                let bits = bits & clause.who;
                cur = match op {
                    '+' => cur | bits,
                    '-' => cur & !bits,
                    // `=` clears the class's permission bits (directories keep setuid and
                    // setgid unless named, as chmod(1) does).
                    _ => {
                        let clear = if is_dir {
                            clause.who & 0o1777
                        } else {
                            clause.who
                        };
                        (cur & !clear) | bits
                    }
                };
            }
        }
        cur
    }
}

/// Parses a `--chmod` value: an octal mode (at most `7777`) or symbolic clauses
/// (`[ugoa]*[+-=][rwxXst]*|[ugo]`, comma separated).
pub fn parse_chmod(value: &str) -> Result<Chmod> {
    let bad = |reason: &str| Error::InvalidArgument {
        what: "--chmod",
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) {
        let mode = u32::from_str_radix(value, 8).ok().filter(|m| *m <= 0o7777);
        return mode
            .map(Chmod::Octal)
            .ok_or_else(|| bad("expected an octal mode between 0 and 7777"));
    }
    let mut clauses = Vec::new();
    for clause in value.split(',') {
        let who_end = clause.find(['+', '-', '=']).unwrap_or(clause.len());
        let (who_text, mut rest) = clause.split_at(who_end);
        let mut who = 0;
        for c in who_text.chars() {
            who |= match c {
                'u' => USER,
                'g' => GROUP,
                'o' => OTHER,
                'a' => USER | GROUP | OTHER,
                _ => return Err(bad("expected an octal mode or clauses like u+x,go-w")),
            };
        }
        if who == 0 {
            who = USER | GROUP | OTHER;
        }
        if rest.is_empty() {
            return Err(bad("a symbolic clause needs +, - or ="));
        }
        let mut ops = Vec::new();
        while let Some(op) = rest.chars().next() {
            let tail = &rest[1..];
            let end = tail.find(['+', '-', '=']).unwrap_or(tail.len());
            let perms = &tail[..end];
            let copies = perms.len() == 1 && "ugo".contains(perms);
            if !copies && !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(bad("permissions are r, w, x, X, s, t, or one of u, g, o"));
            }
            ops.push((op, perms.to_string()));
            rest = &tail[end..];
        }
        clauses.push(ChmodClause { who, ops });
    }
    Ok(Chmod::Symbolic(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_forms() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).map_err(|e| Error::io("mkdir", &etc, e))?;
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
        std::fs::write(etc.join("passwd"), passwd).map_err(|e| Error::io("write", &etc, e))?;
        std::fs::write(etc.join("group"), group).map_err(|e| Error::io("write", &etc, e))?;
        let root = dir.path();
        assert_eq!(
            resolve_chown("1000", root)?,
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(resolve_chown("7:8", root)?, Owner { uid: 7, gid: 8 });
        assert_eq!(
            resolve_chown("app", root)?,
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_chown("app:staff", root)?,
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(resolve_chown("5:staff", root)?, Owner { uid: 5, gid: 50 });
        assert!(resolve_chown("nobody", root).is_err());
        assert!(resolve_chown("app:nogroup", root).is_err());
        assert!(resolve_chown(":x", root).is_err());
        assert_eq!(parse_chmod("755")?, Chmod::Octal(0o755));
        assert_eq!(parse_chmod("4755")?, Chmod::Octal(0o4755));
        assert!(parse_chmod("u+x").is_ok());
        assert!(parse_chmod("99").is_err());
        assert!(parse_chmod("").is_err());
        assert!(parse_chmod("u").is_err());
        assert!(parse_chmod("z+x").is_err());
        assert!(parse_chmod("u+q").is_err());
        Ok(())
    }

    #[test]
    fn symbolic_chmod_arithmetic() -> Result<()> {
        let m = |spec: &str, mode: u32, dir: bool| -> Result<u32> {
            Ok(parse_chmod(spec)?.apply(mode, dir))
        };
        assert_eq!(m("u+x,go-w", 0o666, false)?, 0o744);
        assert_eq!(m("+x", 0o644, false)?, 0o755);
        assert_eq!(m("a=r", 0o4755, false)?, 0o444);
        assert_eq!(m("go=", 0o777, true)?, 0o700);
        // X: directories, and files already executable by someone.
        assert_eq!(m("a+X", 0o644, false)?, 0o644);
        assert_eq!(m("a+X", 0o744, false)?, 0o755);
        assert_eq!(m("a+X", 0o600, true)?, 0o711);
        assert_eq!(m("a=rX", 0o700, true)?, 0o555);
        // Copying a class, several ops in one clause, special bits.
        assert_eq!(m("g=u", 0o740, false)?, 0o770);
        assert_eq!(m("o=u-w", 0o750, false)?, 0o755);
        assert_eq!(m("u+s,+t", 0o755, false)?, 0o5755);
        assert_eq!(m("u-x+w", 0o500, false)?, 0o600);
        // `=` on a directory keeps setgid unless named.
        assert_eq!(m("g=rx", 0o2770, true)?, 0o2750);
        // Octal keeps the special bits of what is copied.
        assert_eq!(m("600", 0o4755, false)?, 0o4600);
        Ok(())
    }
}
