//! `rbuild commit`: a new image from a container's changes, as `docker commit` makes it: the
//! container's image, plus one layer written by the exporter's layer writer from the
//! container snapshot's diff (overlay whiteouts become OCI ones), a history entry, and the
//! container's config (command, environment, working directory, user, labels) with the
//! `-c` instructions applied (parsed by `rbuild-parser`, as `rbuild import --change`).
//!
//! A running container is paused (frozen) while its layer is written, as Docker does
//! (`-p=false`: not paused, and files written during the commit may or may not be in the
//! layer). A stopped one is committed under its lock.

use std::path::Path;
use std::process::ExitCode;

use clap::{ArgAction, Args};
use rbuild_exporter::compose::{self, ManifestFormat};
use rbuild_exporter::image::{Image as StoredImage, Layer};
use rbuild_exporter::images::Images;
use rbuild_exporter::layer::{self, LayerOptions, WhiteoutSource};
use rbuild_exporter::reference::Reference;
use rbuild_exporter::{Digest, Store};
use serde_json::{Map, Value, json};

use super::state::{Config, Containers, Status};

#[derive(Debug, Clone, Args)]
pub struct CommitArgs {
    /// Author (e.g. `Jane Doe <jane@example.com>`)
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Pause the container during the commit
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

pub fn commit(root: &Path, args: &CommitArgs) -> ExitCode {
    match commit_inner(root, args) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The image config's `config` object for the container: its command split back into the
/// image's entrypoint and the rest, its environment, working directory, user and labels.
fn container_config(base: &Value, cfg: &Config) -> Value {
    let mut c = base.as_object().cloned().unwrap_or_default();
    let entrypoint: Vec<String> = c
        .get("Entrypoint")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if !entrypoint.is_empty() && cfg.argv.starts_with(&entrypoint) {
        c.insert("Cmd".into(), json!(cfg.argv[entrypoint.len()..]));
    } else {
        c.insert("Entrypoint".into(), Value::Null);
        c.insert("Cmd".into(), json!(cfg.argv));
    }
    c.insert("Env".into(), json!(cfg.env));
    c.insert("WorkingDir".into(), json!(cfg.cwd));
    c.insert("User".into(), json!(cfg.user));
    if !cfg.labels.is_empty() {
        c.insert("Labels".into(), json!(cfg.labels));
    }
    Value::Object(c)
}

/// Applies `changes` (an `import --change` config fragment) onto `config`: maps merge,
/// `Env` merges by key, `OnBuild` appends, anything else replaces.
fn merge_changes(config: &mut Value, changes: Value) {
    let Some(c) = config.as_object_mut() else {
        return;
    };
    let Value::Object(changes) = changes else {
        return;
    };
    for (k, v) in changes {
        match (k.as_str(), v) {
            ("Env", Value::Array(new)) => {
                let old: Vec<String> = c
                    .get("Env")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default();
                let new: Vec<String> = new
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                c.insert(k, json!(super::args::merge_env(&old, &new)));
            }
            ("Labels" | "ExposedPorts" | "Volumes", Value::Object(new)) => {
                let entry = c.entry(k).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Some(m) = entry.as_object_mut() {
                    m.extend(new);
                }
            }
            ("OnBuild", Value::Array(new)) => {
                let entry = c.entry(k).or_insert_with(|| Value::Array(Vec::new()));
                if !entry.is_array() {
                    *entry = Value::Array(Vec::new());
                }
                if let Some(a) = entry.as_array_mut() {
                    a.extend(new);
                }
            }
            (_, v) => {
                c.insert(k, v);
            }
        }
    }
}

/// Unpauses a container when dropped.
struct Thaw<'a>(&'a Containers, &'a str);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Err(e) = super::cmds::unpause(self.0, self.1) {
            eprintln!("Error: {e}");
        }
    }
}

fn commit_inner(root: &Path, args: &CommitArgs) -> Result<String, String> {
    let name = match &args.repository {
        Some(r) => Some(Reference::parse_docker(r).map_err(|e| e.to_string())?),
        None => None,
    };
    let changes = crate::import::apply_changes(&args.changes).map_err(|e| e.to_string())?;
    let containers = Containers::open(root)?;
    let id = containers.find(&args.container)?;
    let cfg = containers.config(&id)?;
    let st = containers.state(&id);
    let _lock = match st.status {
        Status::Running => None,
        _ => Some(containers.lock(&id)?),
    };
    // Paused for the commit (thawed on drop), unless already paused by the user.
    let _paused = if args.pause && st.status == Status::Running && !super::cmds::is_paused(&st) {
        super::cmds::pause(&containers, &id)?;
        Some(Thaw(&containers, &id))
    } else {
        None
    };
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let _lease = store.lease().map_err(|e| e.to_string())?;
    let digest: Digest = cfg
        .image_digest
        .parse()
        .map_err(|e| format!("image of container {id}: {e}"))?;
    let base = StoredImage::load(&store, &digest)
        .map_err(|e| format!("the image of container {id} ({}): {e}", cfg.image))?;
    let sn = super::runtime::snapshotter(root)?;
    let diff = sn
        .diff_dir(&cfg.snapshot)
        .map_err(|e| format!("the changes of container {id}: {e}"))?;
    let lo = LayerOptions {
        whiteouts: WhiteoutSource::Overlay,
        format: ManifestFormat::Oci,
        ..LayerOptions::default()
    };
    let blob = layer::write_layer(&store, &diff, &lo)
        .map_err(|e| format!("writing the layer of container {id}: {e}"))?;
    let mut layers = base.layers.clone();
    let new_layer: Layer = blob.into();
    let mut image: Value = serde_json::from_slice(&base.config_bytes)
        .map_err(|e| format!("the config of image {}: {e}", base.config_digest))?;
    let now = rbuild_exporter::images::now_rfc3339();
    let obj = image.as_object_mut().ok_or_else(|| {
        format!(
            "the config of image {} is not an object",
            base.config_digest
        )
    })?;
    let mut config = container_config(obj.get("config").unwrap_or(&Value::Null), &cfg);
    merge_changes(&mut config, changes);
    obj.insert("config".into(), config);
    obj.insert("created".into(), json!(now));
    match &args.author {
        Some(a) => obj.insert("author".into(), json!(a)),
        None => obj.remove("author"),
    };
    let mut entry = Map::new();
    entry.insert("created".into(), json!(now));
    entry.insert("created_by".into(), json!(cfg.argv.join(" ")));
    if let Some(a) = &args.author {
        entry.insert("author".into(), json!(a));
    }
    if let Some(m) = &args.message {
        entry.insert("comment".into(), json!(m));
    }
    let history = obj.entry("history").or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        h.push(Value::Object(entry));
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.push(json!(new_layer.diff_id.to_string()));
    }
    layers.push(new_layer);
    let bytes = serde_json::to_vec(&image).map_err(|e| e.to_string())?;
    let stored = compose::write_image_with_config(&store, &layers, &bytes, ManifestFormat::Oci)
        .map_err(|e| format!("writing the image: {e}"))?;
    let record = Images::open(&store)
        .record(name.as_ref(), &stored.manifest_digest, None)
        .map_err(|e| format!("naming the image: {e}"))?;
    Ok(record.config.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changes_merge_into_the_config() {
        let mut c = json!({
            "Env": ["PATH=/bin", "A=1"],
            "Labels": {"x": "1"},
            "Cmd": ["sh"],
        });
        let ch = crate::import::apply_changes(&[
            "ENV A=2".into(),
            "LABEL y=2".into(),
            "CMD [\"cat\",\"/hello\"]".into(),
            "HEALTHCHECK --interval=5s CMD true".into(),
        ])
        .unwrap();
        merge_changes(&mut c, ch);
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2"]));
        assert_eq!(c["Labels"], json!({"x": "1", "y": "2"}));
        assert_eq!(c["Cmd"], json!(["cat", "/hello"]));
        assert_eq!(c["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(c["Healthcheck"]["Interval"], json!(5_000_000_000u64));
    }
}
