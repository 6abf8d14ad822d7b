//! `rbuild build` flags, spelled as `docker build`'s, and `--output` parsing.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (format: "name:tag"); repeatable
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (`K` alone takes it from the environment)
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Do not cache specified stages
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// External cache sources (e.g. "type=local,src=DIR", "type=registry,ref=REF", or an
    /// image reference with an inline cache); repeatable
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Cache export destinations (e.g. "type=local,dest=DIR[,mode=max]",
    /// "type=registry,ref=REF[,mode=max]", "type=inline"); repeatable
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Always attempt to pull all referenced images
    #[arg(long)]
    pub pull: bool,
    /// Additional build contexts (e.g. name=path, name=docker-image://REF,
    /// name=oci-layout://PATH[:TAG|@DIGEST])
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Reproducible output: SOURCE_DATE_EPOCH from the context's last git commit (an
    /// explicit SOURCE_DATE_EPOCH wins): image and history times, layer file mtimes clamped
    #[arg(long)]
    pub reproducible: bool,
    /// Set target platform for build: another architecture's RUN steps run through
    /// qemu-user-static; several, comma-separated, make an image index (with --push or
    /// --output type=oci)
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,...]")]
    pub platform: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,
    /// Add a custom host-to-IP mapping (format: "host:ip")
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or
    /// "id=mysecret,env=VAR")
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// SSH agent socket to expose to the build (format: "default|<id>[=<socket>]")
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,
    /// Memory limit for each RUN step (e.g. 512m, 2g)
    #[arg(short = 'm', long = "memory", value_name = "BYTES", value_parser = parse_bytes)]
    pub memory: Option<u64>,
    /// CPU shares for each RUN step (relative weight, 1024 = default)
    #[arg(long = "cpu-shares", value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// Limit the CPU CFS period of each RUN step (microseconds)
    #[arg(long = "cpu-period", value_name = "US")]
    pub cpu_period: Option<u64>,
    /// Limit the CPU CFS quota of each RUN step (microseconds per period)
    #[arg(long = "cpu-quota", value_name = "US")]
    pub cpu_quota: Option<u64>,
    /// Limit the number of processes and threads of each RUN step (rbuild extension)
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// Ulimit options of each RUN step: `TYPE=SOFT[:HARD]` (`nofile=1024:2048`)
    #[arg(long = "ulimit", value_name = "TYPE=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<rbuild_executor::security::Ulimit>,
    /// Size of /dev/shm of each RUN step (default 64m)
    #[arg(long = "shm-size", value_name = "BYTES", value_parser = parse_bytes)]
    pub shm_size: Option<u64>,
    /// Allow extra privileged entitlement (e.g. "security.insecure")
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Set type of progress output
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata to the file
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Output destination (format: "type=local,dest=path"; types: image, local, tar, oci, docker)
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the image to its registry (every --tag) after the build
    #[arg(long)]
    pub push: bool,
    /// After the build, say why each step that ran missed the cache (compared with the
    /// previous build of the same context, Dockerfile and target)
    #[arg(long)]
    pub explain: bool,
    /// Build context directory, or `-` to read a Dockerfile from stdin (no context)
    #[arg(value_name = "PATH|-")]
    pub context: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A live view on a terminal, plain lines otherwise
    Auto,
    /// The live view
    Tty,
    /// BuildKit's plain lines
    Plain,
    /// One JSON object per event
    Rawjson,
    /// Nothing
    Quiet,
}

/// Where a build's result goes (`--output`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The local image store (tagged with `--tag` and `name=`).
    Image { names: Vec<String>, push: bool },
    /// The final root filesystem copied to a directory.
    Local { dest: PathBuf },
    /// The final root filesystem as a tar (`-` for stdout).
    Tar { dest: String },
    /// An OCI archive of the image.
    Oci { dest: String },
    /// A docker-archive of the image (`docker load`).
    Docker { dest: String },
}

/// Layer compression of exported images (`--output ...,compression=zstd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

/// Parses `--output` values: `type=local,dest=out`, or a bare path (local), or `-` (tar to
/// stdout). Returns the outputs and the compression asked for.
pub fn parse_outputs(specs: &[String]) -> Result<(Vec<Output>, Compression), String> {
    let mut out = Vec::new();
    let mut compression = Compression::Gzip;
    for spec in specs {
        if !spec.contains('=') {
            out.push(if spec == "-" {
                Output::Tar { dest: "-".into() }
            } else {
                Output::Local {
                    dest: PathBuf::from(spec),
                }
            });
            continue;
        }
        let mut kind = None;
        let mut dest = None;
        let mut names = Vec::new();
        let mut push = false;
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| {
                format!("invalid --output field {field:?} in {spec:?}: expected key=value")
            })?;
            match k.trim() {
                "type" => kind = Some(v.to_string()),
                "dest" => dest = Some(v.to_string()),
                "name" => names.extend(v.split(';').map(str::to_string)),
                "push" => push = v == "true",
                "compression" => {
                    compression = match v {
                        "gzip" => Compression::Gzip,
                        "zstd" => Compression::Zstd,
                        "uncompressed" => Compression::Uncompressed,
                        other => {
                            return Err(format!(
                                "unsupported compression {other:?} (gzip, zstd, uncompressed)"
                            ));
                        }
                    }
                }
                "oci-mediatypes" | "force-compression" | "compression-level"
                | "rewrite-timestamp" => {}
                other => return Err(format!("unsupported --output option {other:?} in {spec:?}")),
            }
        }
        let need_dest = |what: &str| {
            dest.clone()
                .ok_or_else(|| format!("--output type={what} needs dest=PATH"))
        };
        out.push(match kind.as_deref() {
            Some("image") => Output::Image { names, push },
            Some("registry") => Output::Image { names, push: true },
            Some("local") => Output::Local {
                dest: PathBuf::from(need_dest("local")?),
            },
            Some("tar") => Output::Tar {
                dest: need_dest("tar")?,
            },
            Some("oci") => Output::Oci {
                dest: need_dest("oci")?,
            },
            Some("docker") => Output::Docker {
                dest: need_dest("docker")?,
            },
            Some(other) => {
                return Err(format!(
                    "unsupported --output type {other:?} (image, local, tar, oci, docker)"
                ));
            }
            None => return Err(format!("--output {spec:?} has no type=")),
        });
    }
    Ok((out, compression))
}

/// `--add-host host:ip` (also `host=ip`).
/// `--memory`: Docker's sizes (`512m`, `2g`, `1048576`).
fn parse_bytes(v: &str) -> Result<u64, String> {
    rbuild_parser::mount::ram_in_bytes(v)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("invalid size {v:?} (use e.g. 512m or 2g)"))
}

impl BuildArgs {
    /// The security settings every RUN step gets (ulimits, `/dev/shm` size; Docker's
    /// capabilities and default seccomp filter).
    pub fn security(&self) -> rbuild_executor::security::Security {
        rbuild_executor::security::Security {
            ulimits: self.ulimits.clone(),
            shm_size: self.shm_size,
            ..Default::default()
        }
    }

    /// The cgroup limits every RUN step gets.
    pub fn limits(&self) -> rbuild_executor::cgroup::Limits {
        rbuild_executor::cgroup::Limits {
            memory_bytes: self.memory,
            cpu_quota_us: self.cpu_quota,
            cpu_period_us: self.cpu_period,
            cpu_shares: self.cpu_shares,
            pids_max: self.pids_limit,
            ..Default::default()
        }
    }
}

fn parse_ulimit(v: &str) -> Result<rbuild_executor::security::Ulimit, String> {
    rbuild_executor::security::parse_ulimit(v).map_err(|e| e.to_string())
}

pub fn parse_add_host(v: &str) -> Result<(String, String), String> {
    let (host, ip) = v
        .split_once('=')
        .or_else(|| v.split_once(':'))
        .ok_or_else(|| format!("invalid --add-host {v:?}: expected HOST:IP"))?;
    if host.is_empty() || ip.is_empty() {
        return Err(format!("invalid --add-host {v:?}: expected HOST:IP"));
    }
    Ok((host.to_string(), ip.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        let (o, c) = parse_outputs(&["type=local,dest=out".into(), "-".into()]).unwrap();
        assert_eq!(
            o,
            [
                Output::Local { dest: "out".into() },
                Output::Tar { dest: "-".into() }
            ]
        );
        assert_eq!(c, Compression::Gzip);
        let (o, c) = parse_outputs(&["type=oci,dest=a.tar,compression=zstd".into()]).unwrap();
        assert_eq!(
            o,
            [Output::Oci {
                dest: "a.tar".into()
            }]
        );
        assert_eq!(c, Compression::Zstd);
        assert!(parse_outputs(&["type=tar".into()]).is_err());
        assert!(parse_outputs(&["type=nope,dest=x".into()]).is_err());
    }

    #[test]
    fn add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.2").unwrap(),
            ("db".into(), "10.0.0.2".into())
        );
        assert_eq!(
            parse_add_host("v6=::1").unwrap(),
            ("v6".into(), "::1".into())
        );
        assert!(parse_add_host("x").is_err());
    }
}
