//! Cache keys, computed before anything runs, and the records that explain them.
//!
//! A vertex's key is the sha256 of the canonical JSON of `{op, platform, inputs}` where
//! `op` is the op in its key form and `inputs` are the input vertices' keys:
//! - an image op counts by its manifest digest (never the tag);
//! - a context op by the content digest the worker computed (never mtimes or host paths);
//! - an exec op without its proxy variables (BuildKit leaves `ProxyEnv` out of the key).
//!
//! Every key comes with a [`KeyRecord`] of what went into it, so two builds' records can
//! be compared ([`diff`], [`explain`]) to say *why* a step missed the cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::graph::{BuildGraph, VertexId};
use crate::op::{CopySource, FileAction, Op, Platform, canonical_json};

/// A cache key: `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheKey(pub String);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One input of a keyed vertex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The input's step name.
    pub step: String,
    pub key: CacheKey,
}

/// A base image a key depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub reference: String,
    pub digest: String,
}

/// Everything that went into one key, for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: CacheKey,
    /// A step identity that survives edits of the step's command, so two builds' records
    /// can be matched: `stage@line:col` for Dockerfile steps, the reference for images,
    /// the selection for contexts.
    pub id: String,
    /// The step name (`[build 3/5] RUN make`).
    pub step: String,
    pub stage: Option<String>,
    /// `image`, `context`, `exec`, `file`.
    pub kind: String,
    /// The command (exec argv) or a summary of the op (`copy /src -> /app/`).
    pub summary: String,
    /// The op in key form (proxy env left out, content digests in).
    pub op: serde_json::Value,
    pub platform: String,
    pub inputs: Vec<InputRecord>,
    /// Context ops: the content digest.
    pub context_digest: Option<String>,
    /// Image ops: reference and manifest digest.
    pub base: Option<BaseRecord>,
    /// ARG values in scope at the step.
    pub build_args: BTreeMap<String, String>,
}

/// Why a key differs from the previous build's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// No step of that name in the previous build.
    New,
    /// The selected context files changed.
    ContextChanged {
        old: String,
        new: String,
    },
    /// The base image now resolves to another manifest.
    BaseImageChanged {
        reference: String,
        old: String,
        new: String,
    },
    BuildArgChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// An environment variable (not an ARG) changed.
    EnvChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    CommandChanged {
        old: String,
        new: String,
    },
    /// Another field of the op changed (`cwd`, `user`, `mounts`, `actions`, ...).
    OpChanged {
        field: String,
    },
    PlatformChanged {
        old: String,
        new: String,
    },
    /// An input step's key changed (see that step's reasons).
    InputChanged {
        step: String,
    },
    /// The step was forced (`--no-cache`, `--no-cache-filter`).
    IgnoreCache,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        match self {
            Reason::New => write!(f, "new step"),
            Reason::ContextChanged { old, new } => {
                write!(
                    f,
                    "context files changed ({} -> {})",
                    short(old),
                    short(new)
                )
            }
            Reason::BaseImageChanged {
                reference,
                old,
                new,
            } => write!(
                f,
                "base image {reference} changed ({} -> {})",
                short(old),
                short(new)
            ),
            Reason::BuildArgChanged { name, old, new } => {
                write!(f, "build arg {name} changed: {} -> {}", opt(old), opt(new))
            }
            Reason::EnvChanged { name, old, new } => {
                write!(f, "env {name} changed: {} -> {}", opt(old), opt(new))
            }
            Reason::CommandChanged { old, new } => {
                write!(f, "command changed: {old:?} -> {new:?}")
            }
            Reason::OpChanged { field } => write!(f, "{field} changed"),
            Reason::PlatformChanged { old, new } => write!(f, "platform changed: {old} -> {new}"),
            Reason::InputChanged { step } => write!(f, "input changed: {step}"),
            Reason::IgnoreCache => write!(f, "cache disabled for this step"),
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// The op as it enters its key.
pub fn key_form(op: &Op, content_digest: Option<&str>) -> serde_json::Value {
    match op {
        Op::Image {
            digest, platform, ..
        } => serde_json::json!({"type": "image", "digest": digest, "platform": platform}),
        Op::Context(sel) => serde_json::json!({
            "type": "context",
            "name": sel.name,
            "include": sel.include,
            "exclude": sel.exclude,
            "content": content_digest,
        }),
        Op::Exec(spec) => {
            let mut spec = spec.clone();
            spec.proxy_env.clear();
            serde_json::to_value(Op::Exec(spec)).unwrap_or_default()
        }
        Op::File(_) => serde_json::to_value(op).unwrap_or_default(),
    }
}

/// The key of an op (in key form) on a platform with its inputs' keys.
pub fn compute_key(op: &serde_json::Value, platform: &Platform, inputs: &[CacheKey]) -> CacheKey {
    let doc = serde_json::json!({"v": 1, "op": op, "platform": platform, "inputs": inputs});
    CacheKey(sha256_digest(
        canonical_json(&doc).unwrap_or_default().as_bytes(),
    ))
}

/// A one-line summary of an op.
pub fn summarize(op: &Op) -> String {
    match op {
        Op::Image { reference, .. } => reference.clone(),
        Op::Context(sel) => {
            if sel.include.is_empty() {
                format!("{} (all)", sel.name)
            } else {
                format!("{} [{}]", sel.name, sel.include.join(", "))
            }
        }
        Op::Exec(spec) => spec.args.join(" "),
        Op::File(spec) => spec
            .actions
            .iter()
            .map(|a| match a {
                FileAction::Mkdir { path, .. } => format!("mkdir {path}"),
                FileAction::Mkfile { path, .. } => format!("mkfile {path}"),
                FileAction::Copy(c) => match &c.source {
                    CopySource::Input { path, .. } => format!("copy {path} -> {}", c.dest),
                    CopySource::Url { url, .. } => format!("copy {url} -> {}", c.dest),
                    CopySource::Git {
                        remote, reference, ..
                    } => format!(
                        "copy {remote}#{} -> {}",
                        reference.as_deref().unwrap_or(""),
                        c.dest
                    ),
                },
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Keys and records of every vertex, given the context digests (by vertex).
pub fn compute_keys(
    graph: &BuildGraph,
    context_digests: &HashMap<VertexId, String>,
) -> HashMap<VertexId, KeyRecord> {
    let mut out: HashMap<VertexId, KeyRecord> = HashMap::new();
    // Vertex ids are in insertion order, and inputs are always added first.
    for id in graph.vertices() {
        let v = graph.vertex(id);
        let content = context_digests.get(&id).map(String::as_str);
        let op = key_form(&v.op, content);
        let inputs: Vec<InputRecord> = graph
            .inputs(id)
            .into_iter()
            .filter_map(|i| {
                out.get(&i).map(|r| InputRecord {
                    step: r.step.clone(),
                    key: r.key.clone(),
                })
            })
            .collect();
        let input_keys: Vec<CacheKey> = inputs.iter().map(|i| i.key.clone()).collect();
        let key = compute_key(&op, &v.platform, &input_keys);
        let base = match &v.op {
            Op::Image {
                reference, digest, ..
            } => Some(BaseRecord {
                reference: reference.clone(),
                digest: digest.clone(),
            }),
            _ => None,
        };
        let step_id = step_identity(v);
        out.insert(
            id,
            KeyRecord {
                key,
                id: step_id,
                step: v.name.clone(),
                stage: v.stage.clone(),
                kind: v.op.kind().to_string(),
                summary: summarize(&v.op),
                op,
                platform: v.platform.to_string(),
                inputs,
                context_digest: content.map(str::to_string),
                base,
                build_args: v.build_args.clone(),
            },
        );
    }
    out
}

/// See [`KeyRecord::id`].
fn step_identity(v: &crate::graph::Vertex) -> String {
    match &v.op {
        Op::Image {
            reference,
            platform,
            ..
        } => format!("image {reference} {platform}"),
        Op::Context(sel) => format!(
            "context {} [{}] exclude [{}]",
            sel.name,
            sel.include.join(" "),
            sel.exclude.join(" ")
        ),
        op => {
            let Some(loc) = &v.location else {
                return v.name.clone();
            };
            let mut id = format!(
                "{}@{}:{}",
                v.stage.as_deref().unwrap_or(""),
                loc.span.start.line,
                loc.span.start.column
            );
            if let Op::File(spec) = op
                && spec.base.is_none()
                && let Some(FileAction::Mkfile { path, .. }) = spec.actions.first()
            {
                id.push_str(&format!(" inline {path}"));
            }
            if v.name.contains("] ONBUILD ") {
                // Triggers all point at the FROM line: keep their position too.
                id.push(' ');
                id.push_str(v.name.split(']').next().unwrap_or(""));
            }
            id
        }
    }
}

/// The bracketed position of a step name (`[build 3/5]`), if any.
fn position(step: &str) -> Option<&str> {
    step.starts_with('[')
        .then(|| step.split_once(']').map(|(p, _)| p))
        .flatten()
        .filter(|p| p.contains('/'))
}

/// Why `new`'s key differs from `old`'s (empty when the keys are equal).
pub fn diff(old: &KeyRecord, new: &KeyRecord) -> Vec<Reason> {
    if old.key == new.key {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    if old.platform != new.platform {
        reasons.push(Reason::PlatformChanged {
            old: old.platform.clone(),
            new: new.platform.clone(),
        });
    }
    if let (Some(o), Some(n)) = (&old.context_digest, &new.context_digest)
        && o != n
    {
        reasons.push(Reason::ContextChanged {
            old: o.clone(),
            new: n.clone(),
        });
    }
    if let (Some(o), Some(n)) = (&old.base, &new.base)
        && o.digest != n.digest
    {
        reasons.push(Reason::BaseImageChanged {
            reference: n.reference.clone(),
            old: o.digest.clone(),
            new: n.digest.clone(),
        });
    }
    let arg_names: BTreeSet<&String> = old.build_args.keys().chain(new.build_args.keys()).collect();
    for name in &arg_names {
        let (o, n) = (old.build_args.get(*name), new.build_args.get(*name));
        if o != n {
            reasons.push(Reason::BuildArgChanged {
                name: (*name).clone(),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    if old.kind == new.kind && old.kind == "exec" {
        if old.summary != new.summary {
            reasons.push(Reason::CommandChanged {
                old: old.summary.clone(),
                new: new.summary.clone(),
            });
        }
        let env = |r: &KeyRecord| -> BTreeMap<String, String> {
            r.op.get("env")
                .and_then(|e| serde_json::from_value(e.clone()).ok())
                .unwrap_or_default()
        };
        let (oe, ne) = (env(old), env(new));
        let names: BTreeSet<&String> = oe.keys().chain(ne.keys()).collect();
        for name in names {
            if arg_names.contains(name) {
                continue;
            }
            let (o, n) = (oe.get(name), ne.get(name));
            if o != n {
                reasons.push(Reason::EnvChanged {
                    name: name.clone(),
                    old: o.cloned(),
                    new: n.cloned(),
                });
            }
        }
        for field in op_fields_changed(&old.op, &new.op) {
            if !matches!(field.as_str(), "args" | "env") {
                reasons.push(Reason::OpChanged { field });
            }
        }
    } else if old.kind != new.kind || old.summary != new.summary {
        reasons.push(Reason::CommandChanged {
            old: old.summary.clone(),
            new: new.summary.clone(),
        });
    } else if old.kind != "context" && old.kind != "image" {
        for field in op_fields_changed(&old.op, &new.op) {
            reasons.push(Reason::OpChanged { field });
        }
    }
    let old_inputs: BTreeMap<&str, &CacheKey> = old
        .inputs
        .iter()
        .map(|i| (i.step.as_str(), &i.key))
        .collect();
    for (i, input) in new.inputs.iter().enumerate() {
        let changed = match old_inputs.get(input.step.as_str()) {
            Some(k) => **k != input.key,
            None => old.inputs.get(i).is_none_or(|o| o.key != input.key),
        };
        if changed {
            reasons.push(Reason::InputChanged {
                step: input.step.clone(),
            });
        }
    }
    if old.inputs.len() > new.inputs.len() {
        reasons.push(Reason::OpChanged {
            field: "inputs".into(),
        });
    }
    if reasons.is_empty() {
        reasons.push(Reason::OpChanged { field: "op".into() });
    }
    reasons
}

/// The top-level fields of two op JSON objects that differ, sorted.
fn op_fields_changed(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return vec!["op".into()];
    };
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| k.to_string())
        .collect()
}

/// One step's explanation: its name and why its key changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub step: String,
    pub key: CacheKey,
    pub reasons: Vec<Reason>,
}

/// Compares two builds' records: for every step of `new` whose key is not among
/// `old`'s, why. Steps are matched by [`KeyRecord::id`], then by name, then by their
/// `[stage i/n]` position; a step with no match is [`Reason::New`].
pub fn explain(old: &[KeyRecord], new: &[KeyRecord]) -> Vec<Explanation> {
    let by_id: HashMap<&str, &KeyRecord> = old.iter().map(|r| (r.id.as_str(), r)).collect();
    let by_step: HashMap<&str, &KeyRecord> = old.iter().map(|r| (r.step.as_str(), r)).collect();
    let by_position: HashMap<&str, &KeyRecord> = old
        .iter()
        .filter_map(|r| position(&r.step).map(|p| (p, r)))
        .collect();
    let known: BTreeSet<&CacheKey> = old.iter().map(|r| &r.key).collect();
    new.iter()
        .filter(|r| !known.contains(&r.key))
        .map(|r| {
            let previous = by_id
                .get(r.id.as_str())
                .or_else(|| by_step.get(r.step.as_str()))
                .or_else(|| position(&r.step).and_then(|p| by_position.get(p)));
            Explanation {
                step: r.step.clone(),
                key: r.key.clone(),
                reasons: match previous {
                    Some(o) => diff(o, r),
                    None => vec![Reason::New],
                },
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::op::ContextSelection;

    #[test]
    fn context_key_depends_on_content_only() {
        let sel = Op::Context(ContextSelection {
            name: "context".into(),
            include: vec!["src".into()],
            exclude: vec![],
        });
        let p = Platform::linux_amd64();
        let a = compute_key(&key_form(&sel, Some("sha256:aa")), &p, &[]);
        let b = compute_key(&key_form(&sel, Some("sha256:aa")), &p, &[]);
        let c = compute_key(&key_form(&sel, Some("sha256:bb")), &p, &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.0.starts_with("sha256:") && a.0.len() == 71);
    }

    #[test]
    fn image_key_ignores_the_tag() {
        let p = Platform::linux_amd64();
        let img = |r: &str| Op::Image {
            reference: r.into(),
            digest: "sha256:1".into(),
            platform: p.clone(),
        };
        assert_eq!(
            compute_key(&key_form(&img("docker.io/library/a:1"), None), &p, &[]),
            compute_key(&key_form(&img("docker.io/library/a:latest"), None), &p, &[])
        );
    }

    #[test]
    fn run_key_depends_on_the_platform() {
        // The same RUN on the same input (a platform-neutral base, e.g. files on scratch,
        // or one manifest an index lists for both) must not share a result across platforms.
        let run = Op::Exec(crate::op::ExecSpec {
            args: vec!["/bin/sh".into(), "-c".into(), "uname -m > /arch".into()],
            env: Default::default(),
            cwd: "/".into(),
            user: String::new(),
            hostname: None,
            network: crate::op::Network::None,
            security: crate::op::Security::Sandbox,
            root: Some(0),
            mounts: vec![],
            extra_hosts: Vec::new(),
            proxy_env: Default::default(),
        });
        let input = [CacheKey("sha256:base".into())];
        let amd64 = compute_key(&key_form(&run, None), &Platform::linux_amd64(), &input);
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let arm64 = compute_key(&key_form(&run, None), &arm64, &input);
        let armv7 = Platform::parse("linux/arm/v7").unwrap();
        let armv7 = compute_key(&key_form(&run, None), &armv7, &input);
        assert_ne!(amd64, arm64);
        assert_ne!(arm64, armv7);
    }

    #[test]
    fn reasons_display() {
        let r = Reason::BuildArgChanged {
            name: "V".into(),
            old: Some("1".into()),
            new: None,
        };
        assert_eq!(r.to_string(), "build arg V changed: 1 -> (unset)");
        let r = Reason::ContextChanged {
            old: format!("sha256:{}", "a".repeat(64)),
            new: format!("sha256:{}", "b".repeat(64)),
        };
        assert_eq!(
            r.to_string(),
            "context files changed (aaaaaaaaaaaa -> bbbbbbbbbbbb)"
        );
    }
}
