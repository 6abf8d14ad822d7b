//! The vertices of the op DAG (BuildKit's LLB in spirit).
//!
//! Every type here serialises to a canonical JSON form: struct fields in declaration
//! order, maps ordered (`BTreeMap`), no host paths, no times other than the
//! `SOURCE_DATE_EPOCH` a build asked for. Cache keys are digests of that form
//! (see [`crate::cache`]).
//!
//! Inputs are positional: a vertex's inputs are the vertices it reads, in order, and
//! the specs below refer to them by index ([`ExecSpec::root`], [`ExecMount`],
//! [`CopyAction::input`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An OCI platform (`os/architecture[/variant]`), serialisable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses and normalises `os/arch[/variant]` (containerd's rules).
    pub fn parse(spec: &str) -> Result<Platform, String> {
        rbuild_parser::args::Platform::parse(spec).map(|p| Platform::from(&p))
    }

    /// The parser's platform type (for `platform_args`).
    pub fn to_parser(&self) -> rbuild_parser::args::Platform {
        rbuild_parser::args::Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

impl From<&rbuild_parser::args::Platform> for Platform {
    fn from(p: &rbuild_parser::args::Platform) -> Platform {
        Platform {
            os: p.os.clone(),
            architecture: p.arch.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// One vertex's operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Op {
    /// A base image (or `COPY --from=<image>` / `RUN --mount=from=<image>`), pinned to the
    /// manifest digest the worker resolved for this build. The key uses the digest and
    /// platform, never the tag.
    Image {
        /// The normalised reference (`docker.io/library/alpine:3.19`).
        reference: String,
        /// `sha256:...` of the manifest for `platform`.
        digest: String,
        platform: Platform,
    },
    /// Paths of a local build context, after `.dockerignore`. Keyed by the content
    /// digest the worker computes ([`crate::Worker::hash_context`]).
    Context(ContextSelection),
    /// `RUN`.
    Exec(ExecSpec),
    /// `COPY`, `ADD`, `WORKDIR` (mkdir), heredoc files.
    File(FileSpec),
}

impl Op {
    /// `image`, `context`, `exec` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Image { .. } => "image",
            Op::Context(_) => "context",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
        }
    }
}

/// What a COPY/ADD (or a bind mount) selects from a local context.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContextSelection {
    /// The context's name: `context` for the main one.
    pub name: String,
    /// Paths or patterns relative to the context root (no leading `/`); empty means the
    /// whole context.
    pub include: Vec<String>,
    /// Patterns left out (`COPY --exclude`); `.dockerignore` is applied by the worker.
    pub exclude: Vec<String>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

/// A process run in a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The argv (a shell-form command already wrapped in the stage's SHELL).
    pub args: Vec<String>,
    /// The environment: the image's ENV plus the ARGs in scope.
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    /// As written in USER (`name`, `uid`, `uid:gid`); empty means root.
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub network: Network,
    pub security: Security,
    /// The input that is the root filesystem; `None` runs on an empty root (scratch).
    pub root: Option<usize>,
    pub mounts: Vec<ExecMount>,
    /// `--add-host HOST:IP` entries for the step's `/etc/hosts` (part of the key, as
    /// BuildKit's `ExtraHosts`; omitted from the key's JSON when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, String)>,
    /// Proxy variables from `--build-arg` (`HTTP_PROXY`, ...). The process gets them but,
    /// as in BuildKit, they are not part of the cache key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_env: BTreeMap<String, String>,
}

/// One extra mount of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMount {
    /// Absolute path inside the container.
    pub target: String,
    #[serde(flatten)]
    pub kind: MountKind,
}

/// Cache mount sharing mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// The typed mount, with its input index where it reads another vertex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mount", rename_all = "lowercase")]
pub enum MountKind {
    /// A directory of an input (a stage, an image, or a context op), read-only unless
    /// `rw` (writes are then discarded).
    Bind {
        input: usize,
        /// The path inside the input (`/` for all of it).
        source: String,
        read_only: bool,
    },
    /// A persistent cache directory shared across builds.
    Cache {
        id: String,
        sharing: CacheSharing,
        /// Seeded from an input (`from=`) when given.
        input: Option<usize>,
        source: String,
        read_only: bool,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    },
    Tmpfs {
        size: Option<u64>,
    },
    /// A secret file (target set) and/or environment variable (`env`).
    Secret {
        id: String,
        required: bool,
        /// Expose the secret as this environment variable.
        env: Option<String>,
        /// False for an env-only secret (no file is mounted at `target`).
        file: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// An SSH agent socket.
    Ssh {
        id: String,
        required: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

/// A sequence of file actions applied to a destination root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// The input the actions apply to; `None` starts from an empty directory.
    pub base: Option<usize>,
    pub actions: Vec<FileAction>,
}

/// One file action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum FileAction {
    /// `WORKDIR`: create a directory (and its parents).
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        /// A user spec (`name`, `uid:gid`), resolved in the destination's `/etc/passwd`.
        owner: Option<String>,
        /// Times of created entries (`SOURCE_DATE_EPOCH`), in seconds.
        created: Option<i64>,
    },
    /// A heredoc source: a file with inline data.
    Mkfile {
        path: String,
        mode: u32,
        data: String,
        owner: Option<String>,
        created: Option<i64>,
    },
    Copy(Box<CopyAction>),
}

/// Where a copy reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CopySource {
    /// A path (or wildcard pattern) in an input vertex: a context op, a stage, an image
    /// or a heredoc file.
    Input { input: usize, path: String },
    /// `ADD <url>`: downloaded by the executor (never unpacked unless `--unpack`).
    Url {
        url: String,
        /// The file name the download gets (the URL path's last element).
        filename: String,
        /// `--checksum=sha256:...`, verified after download.
        checksum: Option<String>,
    },
    /// `ADD <git url>#<ref>[:<subdir>]`: a checkout of a repository.
    Git {
        /// The remote as written, without the fragment.
        remote: String,
        /// Branch, tag or commit (`None`: the default branch).
        reference: Option<String>,
        subdir: Option<String>,
        keep_git_dir: bool,
        /// `--checksum`: the commit the ref must resolve to.
        checksum: Option<String>,
    },
}

/// `COPY`/`ADD` of one source with Docker's semantics (the executor's fileop implements
/// them: wildcards, directory-contents rule, trailing-slash rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    pub source: CopySource,
    /// Absolute destination, resolved against WORKDIR; a trailing `/` is kept (it means
    /// "into this directory").
    pub dest: String,
    /// `--chown` as written (after expansion), resolved in the destination's passwd.
    pub chown: Option<String>,
    /// `--chmod`: an octal mode or a symbolic one (`u+x`).
    pub chmod: Option<String>,
    pub exclude: Vec<String>,
    /// `--parents`: patterns relative to the source root whose parent dirs are kept.
    pub include_patterns: Vec<String>,
    /// `--parents` sources without wildcards must exist.
    pub required_paths: Vec<String>,
    pub follow_symlinks: bool,
    /// A source directory's contents are copied, not the directory itself.
    pub dir_contents_only: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    pub create_dest_path: bool,
    /// ADD: extract local tar archives.
    pub attempt_unpack: bool,
    /// `--link` (layer independent of the destination; same result here).
    pub link: bool,
    pub created: Option<i64>,
}

impl CopyAction {
    /// A COPY/ADD of `source` to `dest` with BuildKit's Dockerfile defaults.
    pub fn new(source: CopySource, dest: String) -> CopyAction {
        CopyAction {
            source,
            dest,
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            include_patterns: Vec::new(),
            required_paths: Vec::new(),
            follow_symlinks: true,
            dir_contents_only: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            create_dest_path: true,
            attempt_unpack: false,
            link: false,
            created: None,
        }
    }
}

/// Canonical JSON of a value: serde field order, ordered maps, no whitespace.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    // Round trip through `Value` so maps keyed by strings come out sorted whatever the
    // source type (serde_json's `preserve_order` keeps insertion order in `Map`).
    let v = serde_json::to_value(value)?;
    Ok(sorted(v).to_string())
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_roundtrips() {
        let op = Op::Exec(ExecSpec {
            args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            env: [("B".to_string(), "2".to_string()), ("A".into(), "1".into())]
                .into_iter()
                .collect(),
            cwd: "/src".into(),
            user: String::new(),
            hostname: None,
            network: Network::None,
            security: Security::Sandbox,
            root: Some(0),
            mounts: vec![ExecMount {
                target: "/root/.cache".into(),
                kind: MountKind::Cache {
                    id: "/root/.cache".into(),
                    sharing: CacheSharing::Locked,
                    input: None,
                    source: "/".into(),
                    read_only: false,
                    uid: None,
                    gid: None,
                    mode: None,
                },
            }],
            extra_hosts: Vec::new(),
            proxy_env: BTreeMap::new(),
        });
        let json = canonical_json(&op).unwrap();
        assert!(json.starts_with("{\"args\":"), "{json}");
        assert!(json.contains("\"env\":{\"A\":\"1\",\"B\":\"2\"}"), "{json}");
        assert!(!json.contains("proxy_env"));
        // No hosts: the key is what it was before the field existed.
        assert!(!json.contains("extra_hosts"));
        let back: Op = serde_json::from_str(&json).unwrap();
        assert_eq!(back, op);
        let Op::Exec(mut spec) = op else { panic!() };
        spec.extra_hosts = vec![("db".into(), "10.0.0.2".into())];
        let with_host = canonical_json(&Op::Exec(spec)).unwrap();
        assert!(
            with_host.contains("\"extra_hosts\":[[\"db\",\"10.0.0.2\"]]"),
            "{with_host}"
        );
    }

    #[test]
    fn platform_display_and_parse() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap(),
            Platform::linux_amd64()
        );
        assert!(Platform::parse("linux").is_err());
    }
}
