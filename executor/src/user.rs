//! `USER` resolution against a rootfs's `/etc/passwd` and `/etc/group`, with the rules of
//! Docker's `user.GetExecUser`: `name`, `uid`, `name:group`, `uid:gid`; a numeric uid
//! missing from passwd is allowed (gid 0, home `/`), a missing name is an error;
//! supplementary groups are the groups that list the user as a member.

use crate::error::{Error, Result};

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (without duplicates; may include `gid`).
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd (`/` when unknown), used for `HOME` when it is unset.
    pub home: String,
}

impl Identity {
    /// root:root with home `/root`... as Docker: home from passwd, `/` when absent.
    pub fn root() -> Self {
        Identity {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/root".to_string(),
        }
    }
}

#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) with the contents of
/// the rootfs's passwd and group files (`None` when a file is missing).
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<Identity> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();

    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid: Option<u32> = user_part.parse().ok();
    let entry = users.iter().find(|u| match numeric_uid {
        Some(uid) => u.uid == uid || u.name == user_part,
        None => u.name == user_part,
    });
    let (uid, mut gid, home, name) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => {
            return Err(Error::User {
                spec: spec.to_string(),
                reason: format!(
                    "unable to find user {user_part}: no matching entries in passwd file"
                ),
            });
        }
    };

    let mut additional = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            let numeric: Option<u32> = g.parse().ok();
            match groups.iter().find(|e| match numeric {
                Some(n) => e.gid == n || e.name == g,
                None => e.name == g,
            }) {
                Some(e) => gid = e.gid,
                None => match numeric {
                    Some(n) => gid = n,
                    None => {
                        return Err(Error::User {
                            spec: spec.to_string(),
                            reason: format!(
                                "unable to find group {g}: no matching entries in group file"
                            ),
                        });
                    }
                },
            }
        }
        _ => {
            if let Some(name) = name {
                for g in &groups {
                    if g.members.contains(&name) && !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() {
            "/".to_string()
        } else {
            home
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n";

    fn r(spec: &str) -> Result<Identity> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn default_is_root() {
        let id = r("").unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (0, 0, "/root"));
        assert_eq!(id.additional_gids, vec![10]);
    }

    #[test]
    fn by_name_with_supplementary_groups() {
        let id = r("app").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.additional_gids, vec![10, 50]);
        assert_eq!(id.home, "/home/app");
    }

    #[test]
    fn numeric_uid_known_and_unknown() {
        assert_eq!(r("1000").unwrap().gid, 1000);
        let id = r("4242").unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (4242, 0, "/"));
        assert!(id.additional_gids.is_empty());
    }

    #[test]
    fn user_and_group() {
        let id = r("app:staff").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 50));
        assert!(id.additional_gids.is_empty());
        assert_eq!(r("1000:7").unwrap().gid, 7);
        assert_eq!(r("daemon:wheel").unwrap().gid, 10);
    }

    #[test]
    fn missing_user_or_group_is_an_error() {
        let e = r("nobody").unwrap_err().to_string();
        assert!(e.contains("no matching entries in passwd file"), "{e}");
        let e = r("app:nogroup").unwrap_err().to_string();
        assert!(e.contains("no matching entries in group file"), "{e}");
    }

    #[test]
    fn no_files() {
        let id = resolve("123:456", None, None).unwrap();
        assert_eq!((id.uid, id.gid), (123, 456));
        assert!(resolve("app", None, None).is_err());
    }
}
