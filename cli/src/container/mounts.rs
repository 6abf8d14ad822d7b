//! `-v`/`--volume`, `--mount` and `--tmpfs` as docker parses them, and the image's
//! `Volumes`: bind mounts and tmpfs become executor [`MountSpec`]s; volumes become
//! [`VolumeUse`]s (an anonymous one without a name yet: `create` makes it).

use std::collections::BTreeMap;

use rbuild_executor::MountSpec;

use super::args::parse_bytes;
use super::volumes::{VolumeUse, valid_name};

/// What the flags ask for.
#[derive(Debug, Default)]
pub struct Requested {
    pub mounts: Vec<MountSpec>,
    pub volumes: Vec<VolumeUse>,
    /// `volume-label=` of `--mount type=volume`, per volume (by index in `volumes`).
    pub labels: Vec<BTreeMap<String, String>>,
}

impl Requested {
    fn targets(&self) -> impl Iterator<Item = &str> {
        self.mounts
            .iter()
            .map(|m| match m {
                MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target.as_str(),
            })
            .chain(self.volumes.iter().map(|v| v.target.as_str()))
    }

    fn add_volume(&mut self, v: VolumeUse, labels: BTreeMap<String, String>) {
        self.volumes.push(v);
        self.labels.push(labels);
    }
}

fn clean_target(t: &str) -> String {
    let parts: Vec<&str> = t
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn bind(source: &str, target: &str, readonly: bool, what: &str) -> Result<MountSpec, String> {
    let source = std::fs::canonicalize(source).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
            )
        }
        _ => format!("invalid {what}: bind source path {source}: {e}"),
    })?;
    Ok(MountSpec::Bind {
        source,
        target: clean_target(target),
        readonly,
    })
}

/// `-v HOST:CTR[:OPTS]`, `-v NAME:CTR[:OPTS]`, `-v CTR` (anonymous volume).
fn parse_volume(v: &str, out: &mut Requested) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [c] => ("", *c, ""),
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => return Err(format!("invalid volume specification: '{v}'")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "invalid volume specification: '{v}': invalid mount config: invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    let mut readonly = false;
    let mut copy_up = true;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => copy_up = false,
            "z" | "Z" | "rprivate" | "private" => {}
            _ => return Err(format!("invalid mode: {o}")),
        }
    }
    if source.starts_with('/') {
        if !copy_up {
            return Err(format!(
                "invalid volume specification: '{v}': nocopy is for volumes"
            ));
        }
        out.mounts.push(bind(source, target, readonly, "volume")?);
        return Ok(());
    }
    if !source.is_empty() && !valid_name(source) {
        return Err(format!(
            "create {source}: \"{source}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    out.add_volume(
        VolumeUse {
            name: source.to_string(),
            target: clean_target(target),
            readonly,
            anonymous: source.is_empty(),
            copy_up,
        },
        BTreeMap::new(),
    );
    Ok(())
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// `--mount type=bind|volume|tmpfs,source=,target=,readonly,...` (docker's CSV fields).
fn parse_mount(spec: &str, out: &mut Requested) -> Result<(), String> {
    let bad = |msg: String| format!("invalid argument \"{spec}\" for \"--mount\" flag: {msg}");
    let mut kind = "volume".to_string();
    let mut source = String::new();
    let mut target = String::new();
    let mut readonly = false;
    let mut copy_up = true;
    let mut labels = BTreeMap::new();
    let mut size = None;
    let mut mode = None;
    let mut seen_volume_opt = None;
    let mut seen_bind_opt = None;
    let mut seen_tmpfs_opt = None;
    for field in spec.split(',') {
        let field = field.trim_matches('"');
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> Result<String, String> {
            v.map(str::to_string)
                .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.as_str() {
            "type" => kind = need(value)?,
            "source" | "src" => source = need(value)?,
            "target" | "destination" | "dst" => target = need(value)?,
            "readonly" | "ro" => readonly = parse_bool(&key, value.unwrap_or("")).map_err(bad)?,
            "bind-propagation" => {
                seen_bind_opt = Some(key.clone());
                let v = need(value)?;
                match v.as_str() {
                    "rprivate" | "private" => {}
                    "shared" | "rshared" | "slave" | "rslave" => {
                        return Err(bad(format!(
                            "bind-propagation={v} is not supported (mounts are rprivate)"
                        )));
                    }
                    _ => return Err(bad(format!("invalid bind-propagation: {v}"))),
                }
            }
            "bind-nonrecursive" | "bind-recursive" | "consistency" => {
                if key != "consistency" {
                    seen_bind_opt = Some(key.clone());
                }
            }
            "volume-nocopy" => {
                seen_volume_opt = Some(key.clone());
                copy_up = !parse_bool(&key, value.unwrap_or("")).map_err(bad)?;
            }
            "volume-label" => {
                seen_volume_opt = Some(key.clone());
                let v = need(value)?;
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                labels.insert(k.to_string(), val.to_string());
            }
            "volume-driver" => {
                seen_volume_opt = Some(key.clone());
                let v = need(value)?;
                if v != "local" {
                    return Err(bad(format!(
                        "volume driver {v} is not supported (local only)"
                    )));
                }
            }
            "volume-opt" => {
                return Err(bad(
                    "volume-opt is not supported (local volumes are plain directories)".into(),
                ));
            }
            "tmpfs-size" => {
                seen_tmpfs_opt = Some(key.clone());
                size = Some(parse_bytes(&need(value)?).map_err(bad)?);
            }
            "tmpfs-mode" => {
                seen_tmpfs_opt = Some(key.clone());
                let v = need(value)?;
                mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| bad(format!("invalid value for tmpfs-mode: {v}")))?,
                );
            }
            _ => {
                return Err(bad(format!("unexpected key '{key}' in '{field}'")));
            }
        }
    }
    if target.is_empty() {
        return Err(bad("target is required".into()));
    }
    if !target.starts_with('/') {
        return Err(bad(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    let misplaced = |opt: &Option<String>, for_type: &str| -> Result<(), String> {
        match opt {
            Some(o) if kind != for_type => {
                Err(bad(format!("cannot mix '{o}' options with type '{kind}'")))
            }
            _ => Ok(()),
        }
    };
    misplaced(&seen_volume_opt, "volume")?;
    misplaced(&seen_bind_opt, "bind")?;
    misplaced(&seen_tmpfs_opt, "tmpfs")?;
    match kind.as_str() {
        "bind" => {
            if source.is_empty() {
                return Err(bad("source is required when specifying bind mounts".into()));
            }
            if !source.starts_with('/') {
                return Err(bad(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            out.mounts.push(bind(&source, &target, readonly, "mount")?);
        }
        "volume" => {
            if !source.is_empty() && !valid_name(&source) {
                return Err(bad(format!(
                    "invalid volume name {source:?}: only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )));
            }
            out.add_volume(
                VolumeUse {
                    anonymous: source.is_empty(),
                    name: source,
                    target: clean_target(&target),
                    readonly,
                    copy_up,
                },
                labels,
            );
        }
        "tmpfs" => {
            if !source.is_empty() {
                return Err(bad(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified"
                        .into(),
                ));
            }
            if readonly {
                return Err(bad("a read-only tmpfs is not supported".into()));
            }
            out.mounts.push(MountSpec::Tmpfs {
                target: clean_target(&target),
                size_bytes: size,
                mode,
            });
        }
        other => {
            return Err(bad(format!(
                "invalid mount type '{other}' (bind, volume and tmpfs are supported)"
            )));
        }
    }
    Ok(())
}

fn parse_tmpfs(t: &str) -> Result<MountSpec, String> {
    let (path, opts) = t.split_once(':').unwrap_or((t, ""));
    if !path.starts_with('/') {
        return Err(format!("invalid tmpfs {t:?}: the path must be absolute"));
    }
    let mut size_bytes = None;
    let mut mode = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(s) = o.strip_prefix("size=") {
            size_bytes = Some(parse_bytes(s)?);
        } else if let Some(m) = o.strip_prefix("mode=") {
            mode = Some(
                u32::from_str_radix(m, 8)
                    .map_err(|_| format!("invalid tmpfs mode {m:?} in {t:?}"))?,
            );
        }
    }
    Ok(MountSpec::Tmpfs {
        target: clean_target(path),
        size_bytes,
        mode,
    })
}

/// All the container's mounts: `-v`, `--mount`, `--tmpfs`, then an anonymous volume for each
/// of the image's `Volumes` no flag covers. Two mounts on one target are refused.
pub fn requested<'a>(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: impl IntoIterator<Item = &'a String>,
) -> Result<Requested, String> {
    let mut out = Requested::default();
    for v in volumes {
        parse_volume(v, &mut out)?;
    }
    for m in mounts {
        parse_mount(m, &mut out)?;
    }
    for t in tmpfs {
        out.mounts.push(parse_tmpfs(t)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in out.targets() {
        if !seen.insert(t.to_string()) {
            return Err(format!("Duplicate mount point: {t}"));
        }
    }
    for iv in image_volumes {
        let target = clean_target(iv);
        if seen.insert(target.clone()) {
            out.add_volume(
                VolumeUse {
                    name: String::new(),
                    target,
                    readonly: false,
                    anonymous: true,
                    copy_up: true,
                },
                BTreeMap::new(),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one_mount(spec: &str) -> Result<Requested, String> {
        requested(&[], &[spec.to_string()], &[], [])
    }

    #[test]
    fn volume_flag_forms() {
        let r = requested(
            &["data:/data:ro".into(), "/anon".into(), "/tmp:/host".into()],
            &[],
            &[],
            [],
        )
        .unwrap();
        assert_eq!(r.volumes.len(), 2);
        assert_eq!(r.volumes[0].name, "data");
        assert!(r.volumes[0].readonly && !r.volumes[0].anonymous);
        assert!(r.volumes[1].anonymous && r.volumes[1].name.is_empty());
        assert!(matches!(&r.mounts[0], MountSpec::Bind { target, .. } if target == "/host"));
        assert!(requested(&["da/ta:/x".into()], &[], &[], []).is_err());
        assert!(requested(&["data:rel".into()], &[], &[], []).is_err());
    }

    #[test]
    fn mount_flag_fields() {
        let r = one_mount("type=volume,src=v1,dst=/v,volume-nocopy,volume-label=a=b,ro").unwrap();
        let v = &r.volumes[0];
        assert_eq!((v.name.as_str(), v.target.as_str()), ("v1", "/v"));
        assert!(v.readonly && !v.copy_up);
        assert_eq!(r.labels[0]["a"], "b");
        let r = one_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            r.mounts[0],
            MountSpec::Tmpfs {
                target: "/t".into(),
                size_bytes: Some(1 << 20),
                mode: Some(0o1770)
            }
        );
        let r =
            one_mount("type=bind,source=/tmp,target=/h,readonly=true,bind-propagation=rprivate")
                .unwrap();
        assert!(matches!(
            &r.mounts[0],
            MountSpec::Bind { readonly: true, .. }
        ));
    }

    #[test]
    fn mount_flag_errors_name_the_field() {
        let e = one_mount("type=bind,source=/tmp,target=/h,colour=red").unwrap_err();
        assert!(e.contains("unexpected key 'colour'"), "{e}");
        let e = one_mount("type=bind,source=/no/such/dir,target=/h").unwrap_err();
        assert!(
            e.contains("bind source path does not exist: /no/such/dir"),
            "{e}"
        );
        let e = one_mount("type=volume,target=/v,tmpfs-size=1m").unwrap_err();
        assert!(e.contains("tmpfs-size"), "{e}");
        let e = one_mount("type=tmpfs,source=x,target=/t").unwrap_err();
        assert!(e.contains("Source"), "{e}");
        assert!(
            one_mount("type=bind,source=/tmp")
                .unwrap_err()
                .contains("target")
        );
        assert!(one_mount("type=nfs,target=/x").unwrap_err().contains("nfs"));
        assert!(one_mount("type=volume,target=/x,readonly=maybe").is_err());
    }

    #[test]
    fn image_volumes_become_anonymous_unless_covered() {
        let iv = ["/data".to_string(), "/logs/".to_string()];
        let r = requested(&["named:/data".into()], &[], &[], iv.iter()).unwrap();
        assert_eq!(r.volumes.len(), 2);
        assert_eq!(r.volumes[1].target, "/logs");
        assert!(r.volumes[1].anonymous);
        assert!(requested(&["a1:/x".into(), "b1:/x".into()], &[], &[], []).is_err());
    }
}
