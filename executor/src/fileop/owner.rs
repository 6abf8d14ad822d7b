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

/// Parses a `--chmod` value: octal permission bits (at most `7777`).
pub fn parse_chmod(value: &str) -> Result<u32> {
    let mode = u32::from_str_radix(value, 8).ok().filter(|m| *m <= 0o7777);
    mode.ok_or_else(|| Error::InvalidArgument {
        what: "--chmod",
        value: value.to_owned(),
        reason: "expected an octal mode such as 755".to_owned(),
    })
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
        assert_eq!(parse_chmod("755")?, 0o755);
        assert_eq!(parse_chmod("4755")?, 0o4755);
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("99").is_err());
        Ok(())
    }
}
