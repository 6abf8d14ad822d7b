//! `RUN --mount=...`, `--network=...` and `--security=...` values, typed.
//!
//! Mount values may hold variables (`--mount=target=$DIR`), which BuildKit expands when
//! the step is dispatched. [`Mount::parse`] takes an optional expander: without one
//! (as `rbuild check` calls it) fields holding a `$` are accepted unvalidated.

use serde::Serialize;

/// Expands one word (variables, quotes), as the lowering does with the stage's ARG/ENV.
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// `from=`: a stage, image or build context the source is taken from.
    pub from: Option<String>,
    pub source: Option<String>,
    /// Where to mount; relative paths (and an absent target) are taken from the
    /// working directory, as BuildKit does.
    pub target: Option<String>,
    pub read_only: bool,
    /// secret/ssh: fail when the secret or agent is not given.
    pub required: bool,
    /// cache id, or secret/ssh id.
    pub id: Option<String>,
    pub sharing: CacheSharing,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// secret: expose it as this environment variable.
    pub env: Option<String>,
}

impl Mount {
    /// Parses one `--mount` value (a CSV record of `key=value` fields, as BuildKit does).
    pub fn parse(value: &str, expand: Option<Expander<'_>>) -> Result<Mount, String> {
        let fields = csv_fields(value)?;
        let mut m = Mount {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            read_only: false,
            required: false,
            id: None,
            sharing: CacheSharing::Shared,
            uid: None,
            gid: None,
            mode: None,
            size: None,
            env: None,
        };
        let mut ro_auto = true;
        let mut sharing_set = false;
        for field in &fields {
            let (key, raw) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v),
                None => {
                    match field.to_ascii_lowercase().as_str() {
                        "readonly" | "ro" => m.read_only = true,
                        "readwrite" | "rw" => m.read_only = false,
                        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                            m.required = true;
                        }
                        "required" => {
                            return Err(format!(
                                "unexpected key 'required' for mount type '{}'",
                                m.kind.as_str()
                            ));
                        }
                        _ => {
                            return Err(format!(
                                "invalid field '{field}' must be a key=value pair"
                            ));
                        }
                    }
                    if !field.eq_ignore_ascii_case("required") {
                        ro_auto = false;
                    }
                    continue;
                }
            };
            let value = match expand {
                Some(f) => f(raw)?,
                None => raw.to_string(),
            };
            // Without an expander a value holding a variable cannot be checked yet.
            let deferred = expand.is_none() && value.contains('$');
            match key.as_str() {
                "type" => {
                    let lower = value.to_ascii_lowercase();
                    m.kind = MountType::ALL
                        .iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, t)| *t)
                        .ok_or_else(|| {
                            format!(
                                "unsupported mount type {value:?} (use bind, cache, tmpfs, secret or ssh)"
                            )
                        })?;
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" if !deferred => {
                    m.read_only = parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" if !deferred => {
                    m.read_only = !parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind.as_str()
                        ));
                    }
                    if !deferred {
                        m.required = parse_bool(&key, &value)?;
                    }
                }
                "sharing" => {
                    sharing_set = true;
                    if !deferred {
                        m.sharing = match value.to_ascii_lowercase().as_str() {
                            "shared" => CacheSharing::Shared,
                            "private" => CacheSharing::Private,
                            "locked" => CacheSharing::Locked,
                            _ => {
                                return Err(format!(
                                    "unsupported sharing value {value:?} (use shared, private or locked)"
                                ));
                            }
                        };
                    }
                }
                "id" => m.id = Some(value),
                "uid" | "gid" | "mode" if !deferred => {
                    let radix = if key == "mode" { 8 } else { 10 };
                    let n = u32::from_str_radix(&value, radix)
                        .map_err(|_| format!("invalid value for {key}: {value}"))?;
                    match key.as_str() {
                        "uid" => m.uid = Some(n),
                        "gid" => m.gid = Some(n),
                        _ => m.mode = Some(n),
                    }
                }
                "size" if !deferred => {
                    m.size = Some(
                        ram_in_bytes(&value)
                            .ok_or_else(|| format!("invalid value for size: {value}"))?,
                    );
                }
                "env" => m.env = Some(value),
                "readonly" | "ro" | "readwrite" | "rw" | "uid" | "gid" | "mode" | "size" => {}
                _ => return Err(format!("unexpected key '{key}' in '{field}'")),
            }
        }
        let file_info_allowed = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (name, set) in [("mode", m.mode), ("uid", m.uid), ("gid", m.gid)] {
                if set.is_some() {
                    return Err(format!(
                        "{name} not allowed for {:?} type mounts",
                        m.kind.as_str()
                    ));
                }
            }
        }
        if ro_auto {
            m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if sharing_set && m.kind != MountType::Cache {
            return Err(format!(
                "invalid cache sharing set for {} mount",
                m.kind.as_str()
            ));
        }
        if m.kind == MountType::Secret && m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.kind == MountType::Secret && m.id.is_none() && m.target.is_none() && m.env.is_none() {
            return Err("invalid secret mount: one of id, target or env is required".into());
        }
        if m.size.is_some() && m.kind != MountType::Tmpfs {
            return Err(format!(
                "size not allowed for {:?} type mounts",
                m.kind.as_str()
            ));
        }
        Ok(m)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// Splits one CSV record like Go's `encoding/csv` (quoted fields, `""` escapes).
fn csv_fields(record: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut rest = record;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "extraneous or missing \" in quoted-field: {record}"
                        ));
                    }
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            field.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => field.push(c),
                }
            };
            fields.push(field);
            rest = &quoted[end..];
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => return Ok(fields),
                None => {
                    return Err(format!(
                        "extraneous or missing \" in quoted-field: {record}"
                    ));
                }
            }
        } else {
            let (field, next) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err(format!("bare \" in non-quoted-field: {record}"));
            }
            fields.push(field.to_string());
            match next {
                Some(r) => rest = r,
                None => return Ok(fields),
            }
        }
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1g`, `512`, `1.5GiB` (binary multiples).
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = num * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

impl NetworkMode {
    pub fn parse(value: &str) -> Result<NetworkMode, String> {
        match value {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!(
                "unsupported network mode {value:?} (use default, none or host)"
            )),
        }
    }
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

impl SecurityMode {
    pub fn parse(value: &str) -> Result<SecurityMode, String> {
        match value {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(format!(
                "unsupported security mode {value:?} (use sandbox or insecure)"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount() {
        let m = Mount::parse(
            "type=cache,target=/root/.cache,id=pip,sharing=locked,uid=1000,gid=1000,mode=0755",
            None,
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, CacheSharing::Locked);
        assert_eq!(
            (m.uid, m.gid, m.mode),
            (Some(1000), Some(1000), Some(0o755))
        );
        assert!(!m.read_only);
    }

    #[test]
    fn bind_defaults_read_only() {
        let m = Mount::parse("target=/src,from=build,source=/out", None).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        assert!(
            !Mount::parse("type=bind,target=/x,rw", None)
                .unwrap()
                .read_only
        );
    }

    #[test]
    fn secrets_ssh_tmpfs() {
        let m = Mount::parse("type=secret,id=aws,env=AWS_KEY,required", None).unwrap();
        assert!(m.required && m.env.as_deref() == Some("AWS_KEY"));
        assert_eq!(Mount::parse("type=ssh", None).unwrap().kind, MountType::Ssh);
        let t = Mount::parse("type=tmpfs,target=/t,size=64m", None).unwrap();
        assert_eq!(t.size, Some(64 << 20));
    }

    #[test]
    fn errors() {
        for (bad, want) in [
            ("type=nfs,target=/x", "unsupported mount type"),
            ("type=bind,target=/x,uid=1", "uid not allowed"),
            (
                "type=bind,target=/x,sharing=locked",
                "invalid cache sharing",
            ),
            ("type=cache,target=/x,sharing=weird", "unsupported sharing"),
            ("type=cache,target=/x,foo=bar", "unexpected key 'foo'"),
            ("type=bind,target=/x,required", "unexpected key 'required'"),
            ("type=cache,target=/x,uid=abc", "invalid value for uid"),
            ("type=secret,id=x,from=y", "should not have a from"),
            ("type=bind,target=\"x", "bare \""),
            ("oops", "must be a key=value pair"),
        ] {
            let err = Mount::parse(bad, None).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn variables_deferred_then_expanded() {
        assert!(Mount::parse("type=cache,target=/x,uid=$UID", None).is_ok());
        let expand = |s: &str| Ok(s.replace("$UID", "42"));
        let m = Mount::parse("type=cache,target=/x,uid=$UID", Some(&expand)).unwrap();
        assert_eq!(m.uid, Some(42));
    }

    #[test]
    fn quoted_csv_fields() {
        let m = Mount::parse("type=bind,\"target=/a,b\"", None).unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_in_bytes("512"), Some(512));
        assert_eq!(ram_in_bytes("1.5KiB"), Some(1536));
        assert_eq!(ram_in_bytes("x"), None);
    }
}
