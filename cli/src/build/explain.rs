//! `rbuild build --explain` and the build history behind it (`rbuild cache explain`).
//!
//! Every successful build saves its key records (what went into each step's key), the keys
//! that ran, and, for the context selections it hashed, the per-file digest lists
//! (path and the first 128 bits of each file's digest) under
//! `<root>/buildcache-v1/history/`:
//! - `builds/<build id>.json`: one build (the newest [`KEEP`] are kept);
//! - `by-path/<hex>`: the latest build of a canonical context directory + the Dockerfile's
//!   path relative to it + the target;
//! - `by-name/<hex>`: the latest build of a context directory *name* + the Dockerfile's
//!   file name + the target, so a fresh clone of a project in another directory finds the
//!   builds made from the old one;
//! - `last`: the latest build of all.
//!
//! A build is compared with the previous build found by path, else by name. For every
//! step that ran, the explanation says why its key is not one of the previous build's:
//! which context files changed (old and new digests), which build arg, base image, env,
//! command or earlier step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rbuild_executor::context::{Digest, changed_paths};
use rbuild_solver::cache::{KeyRecord, Reason, sha256_digest};
use serde::{Deserialize, Serialize};

use super::worker::BuildLog;
use super::worker::state::{CACHE_DIR, write_atomic};

/// How many builds the history keeps.
pub const KEEP: usize = 64;
/// Hex digits of each context file's digest kept in the history.
const FILE_HEX: usize = 32;
/// Changed context files listed per step before "and N more".
const MAX_FILES: usize = 5;

/// What makes "the previous build of this" findable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The canonical context directory (`-` without context).
    pub context: String,
    /// The Dockerfile relative to the context (absolute when outside it; `-` for stdin).
    pub dockerfile: String,
    /// `--target`, empty for the last stage.
    pub target: String,
}

impl Identity {
    pub fn new(context: Option<&Path>, dockerfile: &Path, target: Option<&str>) -> Identity {
        let dockerfile = if dockerfile == Path::new("-") {
            "-".to_string()
        } else {
            let abs = dockerfile
                .canonicalize()
                .unwrap_or_else(|_| dockerfile.to_path_buf());
            match context.and_then(|c| abs.strip_prefix(c).ok()) {
                Some(rel) => rel.to_string_lossy().into_owned(),
                None => abs.to_string_lossy().into_owned(),
            }
        };
        Identity {
            context: context.map_or("-".into(), |c| c.to_string_lossy().into_owned()),
            dockerfile,
            target: target.unwrap_or("").to_string(),
        }
    }

    fn by_path(&self) -> String {
        hex_of(&format!(
            "{}\0{}\0{}",
            self.context, self.dockerfile, self.target
        ))
    }

    /// Independent of where the project was cloned: the context dir's name, the
    /// Dockerfile's file name, the target.
    fn by_name(&self) -> String {
        let base = |p: &str| {
            Path::new(p)
                .file_name()
                .map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
        };
        hex_of(&format!(
            "{}\0{}\0{}",
            base(&self.context),
            base(&self.dockerfile),
            self.target
        ))
    }
}

fn hex_of(text: &str) -> String {
    let d = sha256_digest(text.as_bytes());
    d.trim_start_matches("sha256:")[..32].to_string()
}

/// One build as the history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    pub id: String,
    /// RFC 3339.
    pub created: String,
    pub identity: Identity,
    /// The build this one was compared with.
    pub previous: Option<String>,
    /// The solver's vertex numbers are offset by this in the progress output (`#n`).
    pub offset: usize,
    pub records: Vec<KeyRecord>,
    /// Keys whose step ran.
    pub executed: Vec<String>,
    /// Context digest → (path, digest prefix) of each selected file.
    pub contexts: BTreeMap<String, Vec<(String, String)>>,
    /// The explanation, as `--explain` printed it.
    pub lines: Vec<String>,
}

/// The history directory of a root.
pub fn history_dir(root: &Path) -> PathBuf {
    root.join(CACHE_DIR).join("history")
}

fn read_pointer(path: &Path) -> Option<String> {
    let id = std::fs::read_to_string(path).ok()?;
    let id = id.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| id.to_string())
}

/// Loads a build of the history; `None` = the last build.
pub fn load(root: &Path, id: Option<&str>) -> Result<BuildRecord, String> {
    let dir = history_dir(root);
    let id = match id {
        Some(id) => id.to_string(),
        None => read_pointer(&dir.join("last"))
            .ok_or_else(|| "no build has been recorded in this root yet".to_string())?,
    };
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("invalid build ID {id:?}"));
    }
    let path = dir.join("builds").join(format!("{id}.json"));
    let bytes = std::fs::read(&path).map_err(|e| format!("build {id}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The previous build of `identity`: by canonical path, else by name.
fn previous(root: &Path, identity: &Identity) -> Option<BuildRecord> {
    let dir = history_dir(root);
    [
        dir.join("by-path").join(identity.by_path()),
        dir.join("by-name").join(identity.by_name()),
    ]
    .iter()
    .filter_map(|p| read_pointer(p))
    .find_map(|id| load(root, Some(&id)).ok())
}

fn new_id() -> String {
    let now = chrono::Utc::now();
    let salt = hex_of(&format!(
        "{}-{}",
        std::process::id(),
        now.timestamp_nanos_opt().unwrap_or(0)
    ));
    format!("{}-{}", now.format("%Y%m%dT%H%M%S"), &salt[..8])
}

/// What the caller knows about a build that the records don't say.
pub struct Outcome<'a> {
    pub identity: Identity,
    pub records: &'a [KeyRecord],
    pub log: &'a BuildLog,
    pub offset: usize,
    /// Whether a step's cache was disabled (`--no-cache`, `--no-cache-filter`).
    pub forced: &'a dyn Fn(&KeyRecord) -> bool,
}

/// Compares the build with the previous one of its identity, saves it to the history and
/// returns it (its `lines` are the explanation).
pub fn record_build(root: &Path, outcome: &Outcome<'_>) -> Result<BuildRecord, String> {
    let used: BTreeSet<&str> = outcome
        .records
        .iter()
        .filter_map(|r| r.context_digest.as_deref())
        .collect();
    let contexts = outcome
        .log
        .contexts
        .iter()
        .filter(|(d, _)| used.contains(d.as_str()))
        .map(|(d, files)| {
            let files = files
                .iter()
                .map(|(p, f)| (p.clone(), hex::encode(f.0)[..FILE_HEX].to_string()))
                .collect();
            (d.clone(), files)
        })
        .collect();
    let prev = previous(root, &outcome.identity);
    let mut rec = BuildRecord {
        id: new_id(),
        created: rbuild_exporter::images::now_rfc3339(),
        identity: outcome.identity.clone(),
        previous: prev.as_ref().map(|p| p.id.clone()),
        offset: outcome.offset,
        records: outcome.records.to_vec(),
        executed: outcome
            .records
            .iter()
            .filter(|r| outcome.log.executed.contains(&r.key.0))
            .map(|r| r.key.0.clone())
            .collect(),
        contexts,
        lines: Vec::new(),
    };
    rec.lines = explain_lines(prev.as_ref(), &rec, outcome.forced);
    save(root, &rec)?;
    Ok(rec)
}

fn save(root: &Path, rec: &BuildRecord) -> Result<(), String> {
    let dir = history_dir(root);
    let builds = dir.join("builds");
    let bytes = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
    write_atomic(&builds.join(format!("{}.json", rec.id)), &bytes)?;
    for p in [
        dir.join("by-path").join(rec.identity.by_path()),
        dir.join("by-name").join(rec.identity.by_name()),
        dir.join("last"),
    ] {
        write_atomic(&p, rec.id.as_bytes())?;
    }
    // Keep the newest builds (IDs start with their time).
    let mut names: Vec<String> = std::fs::read_dir(&builds)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let excess = names.len().saturating_sub(KEEP);
    for n in &names[..excess] {
        let _ = std::fs::remove_file(builds.join(n));
    }
    Ok(())
}

/// `sha256:ab12cd34ef56…`
fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}…", hex.get(..12).unwrap_or(hex))
}

fn opt(v: &Option<String>) -> String {
    v.as_ref().map_or("(unset)".into(), |v| format!("{v:?}"))
}

/// A stored file list as the hasher's type (digest prefix, zero-padded).
fn files_of(list: &[(String, String)]) -> Vec<(String, Digest)> {
    list.iter()
        .map(|(p, h)| {
            let mut d = [0u8; 32];
            if let Ok(bytes) = hex::decode(h) {
                for (slot, b) in d.iter_mut().zip(bytes) {
                    *slot = b;
                }
            }
            (p.clone(), Digest(d))
        })
        .collect()
}

/// Why the files of a context selection changed: one phrase per file.
fn context_changes(old: &BuildRecord, o: &KeyRecord, new: &BuildRecord, n: &KeyRecord) -> String {
    let list = |b: &BuildRecord, r: &KeyRecord| {
        r.context_digest
            .as_ref()
            .and_then(|d| b.contexts.get(d))
            .cloned()
    };
    let (Some(ol), Some(nl)) = (list(old, o), list(new, n)) else {
        return format!(
            "context files changed ({} → {})",
            short(o.context_digest.as_deref().unwrap_or("")),
            short(n.context_digest.as_deref().unwrap_or(""))
        );
    };
    let (om, nm): (HashMap<&str, &str>, HashMap<&str, &str>) = (
        ol.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect(),
        nl.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect(),
    );
    let paths = changed_paths(&files_of(&ol), &files_of(&nl));
    if paths.is_empty() {
        return "context selection changed".into();
    }
    let mut parts: Vec<String> = paths
        .iter()
        .take(MAX_FILES)
        .map(|p| match (om.get(p.as_str()), nm.get(p.as_str())) {
            (Some(a), Some(b)) => {
                format!("context file {p} changed ({} → {})", short(a), short(b))
            }
            (None, Some(b)) => format!("context file {p} added ({})", short(b)),
            (Some(a), None) => format!("context file {p} removed (was {})", short(a)),
            (None, None) => format!("context file {p} changed"),
        })
        .collect();
    if paths.len() > MAX_FILES {
        parts.push(format!(
            "and {} more context files",
            paths.len() - MAX_FILES
        ));
    }
    parts.join("; ")
}

fn reason_text(r: &Reason) -> Option<String> {
    Some(match r {
        Reason::New => "new step (no matching step in the previous build)".into(),
        Reason::ContextChanged { old, new } => {
            format!("context files changed ({} → {})", short(old), short(new))
        }
        Reason::BaseImageChanged {
            reference,
            old,
            new,
        } => format!(
            "base image {reference} changed ({} → {})",
            short(old),
            short(new)
        ),
        Reason::BuildArgChanged { name, old, new } => {
            format!("build arg {name} changed ({} → {})", opt(old), opt(new))
        }
        Reason::EnvChanged { name, old, new } => {
            format!("env {name} changed ({} → {})", opt(old), opt(new))
        }
        Reason::CommandChanged { old, new } => format!("command changed ({old:?} → {new:?})"),
        Reason::OpChanged { field } => format!("{field} changed"),
        Reason::PlatformChanged { old, new } => format!("platform changed ({old} → {new})"),
        Reason::InputChanged { .. } => return None,
        Reason::IgnoreCache => "cache disabled for this step".into(),
    })
}

/// The explanation of `new` against `old`: a header, then one line per step that ran.
pub fn explain_lines(
    old: Option<&BuildRecord>,
    new: &BuildRecord,
    forced: &dyn Fn(&KeyRecord) -> bool,
) -> Vec<String> {
    let executed: BTreeSet<&str> = new.executed.iter().map(String::as_str).collect();
    let number: HashMap<&str, usize> = new
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.0.as_str(), i + 1 + new.offset))
        .collect();
    let by_key: HashMap<&str, &KeyRecord> =
        new.records.iter().map(|r| (r.key.0.as_str(), r)).collect();
    let mut lines = vec![match old {
        Some(o) => format!(
            "explain: compared with build {} ({}) of {}",
            o.id, o.created, o.identity.context
        ),
        None => format!(
            "explain: no earlier build of {} ({}{}) to compare with",
            new.identity.context,
            new.identity.dockerfile,
            if new.identity.target.is_empty() {
                String::new()
            } else {
                format!(", target {}", new.identity.target)
            }
        ),
    }];
    let explanations: HashMap<String, Vec<Reason>> = old
        .map(|o| rbuild_solver::cache::explain(&o.records, &new.records))
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.key.0, e.reasons))
        .collect();
    let old_keys: BTreeSet<&str> = old
        .map(|o| o.records.iter().map(|r| r.key.0.as_str()).collect())
        .unwrap_or_default();
    let old_by_id: HashMap<&str, &KeyRecord> = old
        .map(|o| o.records.iter().map(|r| (r.id.as_str(), r)).collect())
        .unwrap_or_default();
    let mut missed = 0;
    for r in &new.records {
        if !executed.contains(r.key.0.as_str()) || r.kind == "context" {
            continue;
        }
        missed += 1;
        let n = number.get(r.key.0.as_str()).copied().unwrap_or(0);
        let why: Vec<String> = if forced(r) {
            vec!["cache disabled (--no-cache / --no-cache-filter)".into()]
        } else if let Some(o) = old.filter(|_| old_keys.contains(r.key.0.as_str())) {
            vec![format!(
                "unchanged since build {}, but its cache record is gone (pruned?)",
                o.id
            )]
        } else if let Some(o) = old {
            let reasons = explanations.get(&r.key.0).cloned().unwrap_or_default();
            let mut why: Vec<String> = Vec::new();
            for input in &r.inputs {
                if old_keys.contains(input.key.0.as_str()) {
                    continue;
                }
                let Some(ir) = by_key.get(input.key.0.as_str()) else {
                    why.push(format!("input {} changed", input.step));
                    continue;
                };
                let prev = old_by_id.get(ir.id.as_str());
                match (ir.kind.as_str(), prev) {
                    ("context", Some(p)) => why.push(context_changes(o, p, new, ir)),
                    ("context", None) => why.push("new context selection".into()),
                    ("image", Some(p)) if p.base != ir.base => {
                        if let (Some(a), Some(b)) = (&p.base, &ir.base) {
                            why.push(format!(
                                "base image {} changed ({} → {})",
                                b.reference,
                                short(&a.digest),
                                short(&b.digest)
                            ));
                        }
                    }
                    _ => {
                        let m = number.get(input.key.0.as_str()).copied().unwrap_or(0);
                        why.push(format!("earlier step #{m} {} changed", ir.step));
                    }
                }
            }
            let input_changed = !why.is_empty();
            for reason in &reasons {
                // For file ops, args in scope are not in the key: a changed arg is only
                // a cause when nothing else is.
                if input_changed
                    && r.kind != "exec"
                    && matches!(reason, Reason::BuildArgChanged { .. })
                {
                    continue;
                }
                if let Some(t) = reason_text(reason) {
                    why.push(t);
                }
            }
            if why.is_empty() {
                why.push("its key changed".into());
            }
            why
        } else {
            vec!["no earlier build to compare with".into()]
        };
        lines.push(format!("#{n} {} — not cached: {}", r.step, why.join("; ")));
    }
    if missed == 0 {
        lines.push(format!(
            "all {} steps cached: nothing missed the cache",
            new.records.iter().filter(|r| r.kind != "context").count()
        ));
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        let a = Identity::new(
            Some(Path::new("/src/a/app")),
            Path::new("/nonexistent/Dockerfile"),
            None,
        );
        let b = Identity {
            context: "/elsewhere/app".into(),
            ..a.clone()
        };
        assert_ne!(a.by_path(), b.by_path());
        assert_eq!(a.by_name(), b.by_name());
        let c = Identity {
            target: "build".into(),
            ..b.clone()
        };
        assert_ne!(b.by_name(), c.by_name());
    }

    #[test]
    fn digests_shorten() {
        assert_eq!(
            short(&format!("sha256:{}", "a".repeat(64))),
            "sha256:aaaaaaaaaaaa…"
        );
        let f = files_of(&[("x".into(), "ab".repeat(16))]);
        assert_eq!(f[0].1.0[0], 0xab);
        assert_eq!(f[0].1.0[31], 0);
    }
}
