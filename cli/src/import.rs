//! `rbuild import`: an image from a filesystem tarball, as `docker import` makes it.
//! This is how base images are made offline (e.g. from Debian's busybox-static).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use rbuild_exporter::compose::{self, ImageConfigInput, ManifestFormat};
use rbuild_exporter::image::Platform;
use rbuild_exporter::images::Images;
use rbuild_exporter::media::{self, Compression};
use rbuild_exporter::reference::Reference;
use rbuild_parser::ast::{Healthcheck, InstructionKind};
use rbuild_parser::shell::Lexer;
use serde_json::{Map, Value, json};

use crate::images::{err, open_store};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Set a commit message for the imported image (its history comment)
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Set the platform of the image [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Layer compression
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Tarball of the root filesystem (plain, gzip or zstd); `-` reads stdin
    pub file: PathBuf,
    /// Name for the image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
}

pub fn run(args: &ImportArgs, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let name = match &args.name {
        Some(n) => Some(Reference::parse_docker(n).map_err(err)?),
        None => None,
    };
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>().map_err(err)?,
        None => Platform::host(),
    };
    let config = apply_changes(&args.changes)?;
    let compression = match args.compression.as_str() {
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => Compression::Gzip,
    };

    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .into_diagnostic()
                .wrap_err_with(|| format!("opening {}", args.file.display()))?,
        )
    };
    let mut tar = media::decompress(input, None)
        .into_diagnostic()
        .wrap_err("reading the tarball")?;

    let store = open_store(global)?;
    let _lease = store.lease().map_err(err)?;
    let layer =
        compose::add_layer(&store, &mut tar, compression, ManifestFormat::Oci).map_err(err)?;
    let created_by = match &args.message {
        Some(m) => m.clone(),
        None => "rbuild import".to_string(),
    };
    let image = compose::write_image(
        &store,
        std::slice::from_ref(&layer),
        &ImageConfigInput {
            platform,
            created: created_time(),
            config,
            history: vec![created_by],
        },
        ManifestFormat::Oci,
    )
    .map_err(err)?;
    let record = Images::open(&store)
        .record(name.as_ref(), &image.manifest_digest, None)
        .map_err(err)?;
    println!("{}", record.config);
    Ok(ExitCode::SUCCESS)
}

/// `SOURCE_DATE_EPOCH` when set (reproducible IDs), else now.
fn created_time() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0));
    epoch
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Applies `--change` instructions to an empty Docker-style `config` object.
pub(crate) fn apply_changes(changes: &[String]) -> miette::Result<Value> {
    let mut config = Map::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for change in changes {
        let text = format!("FROM scratch\n{change}\n");
        let df = rbuild_parser::parse("--change", &text)
            .map_err(|e| miette!("invalid --change {change:?}:\n{}", e.render()))?;
        let Some(inst) = df.stages.first().and_then(|s| s.instructions.first()) else {
            return Err(miette!("--change {change:?} holds no instruction"));
        };
        let lexer = Lexer::new(df.directives.escape);
        let expand = |word: &str, env: &Vec<(String, String)>| {
            lexer
                .process_word(word, env)
                .map_err(|e| miette!("--change {change:?}: {e}"))
        };
        let command = |c: &rbuild_parser::ast::CommandLine| -> Value {
            if c.shell_form {
                json!(["/bin/sh", "-c", c.args.join(" ")])
            } else {
                json!(c.args)
            }
        };
        match &inst.kind {
            InstructionKind::Cmd(c) => {
                config.insert("Cmd".into(), command(c));
            }
            InstructionKind::Entrypoint(c) => {
                config.insert("Entrypoint".into(), command(c));
            }
            InstructionKind::Env { vars } => {
                for kv in vars {
                    let value = expand(&kv.value, &env)?;
                    env.retain(|(k, _)| k != &kv.key);
                    env.push((kv.key.clone(), value));
                }
                let list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                config.insert("Env".into(), json!(list));
            }
            InstructionKind::Label { labels } => {
                let map = config
                    .entry("Labels")
                    .or_insert_with(|| Value::Object(Map::new()));
                for kv in labels {
                    let key = expand(&kv.key, &env)?;
                    let value = expand(&kv.value, &env)?;
                    if let Some(m) = map.as_object_mut() {
                        m.insert(key, Value::String(value));
                    }
                }
            }
            InstructionKind::Expose { ports } => {
                let map = config
                    .entry("ExposedPorts")
                    .or_insert_with(|| Value::Object(Map::new()));
                for port in ports {
                    let port = expand(port, &env)?;
                    let port = if port.contains('/') {
                        port.to_ascii_lowercase()
                    } else {
                        format!("{port}/tcp")
                    };
                    if let Some(m) = map.as_object_mut() {
                        m.insert(port, json!({}));
                    }
                }
            }
            InstructionKind::Volume { paths } => {
                let map = config
                    .entry("Volumes")
                    .or_insert_with(|| Value::Object(Map::new()));
                for path in paths {
                    let path = expand(path, &env)?;
                    if let Some(m) = map.as_object_mut() {
                        m.insert(path, json!({}));
                    }
                }
            }
            InstructionKind::User { user } => {
                config.insert("User".into(), json!(expand(user, &env)?));
            }
            InstructionKind::Workdir { path } => {
                config.insert("WorkingDir".into(), json!(expand(path, &env)?));
            }
            InstructionKind::Stopsignal { signal } => {
                config.insert("StopSignal".into(), json!(expand(signal, &env)?));
            }
            InstructionKind::Onbuild { expression, .. } => {
                let list = config
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(expression));
                }
            }
            InstructionKind::Healthcheck(Healthcheck::None) => {
                config.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
            }
            InstructionKind::Healthcheck(Healthcheck::Cmd {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                let mut t = vec![if test.shell_form { "CMD-SHELL" } else { "CMD" }.to_string()];
                if test.shell_form {
                    t.push(test.args.join(" "));
                } else {
                    t.extend(test.args.iter().cloned());
                }
                let mut h = Map::new();
                h.insert("Test".into(), json!(t));
                for (key, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        h.insert(
                            key.into(),
                            json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                        );
                    }
                }
                if let Some(r) = retries {
                    h.insert("Retries".into(), json!(r));
                }
                config.insert("Healthcheck".into(), Value::Object(h));
            }
            other => {
                return Err(miette!(
                    "{} is not supported by --change (use CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)",
                    other.name()
                ));
            }
        }
    }
    Ok(Value::Object(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changes_build_a_config() {
        let c = apply_changes(&[
            "ENV PATH=/usr/bin:/bin".into(),
            "ENV HOME=/root GREETING=\"hi ${HOME}\"".into(),
            "CMD [\"sh\"]".into(),
            "ENTRYPOINT exec run".into(),
            "EXPOSE 80 53/UDP".into(),
            "WORKDIR /app".into(),
            "LABEL a=b".into(),
        ])
        .unwrap();
        assert_eq!(
            c["Env"],
            json!(["PATH=/usr/bin:/bin", "HOME=/root", "GREETING=hi /root"])
        );
        assert_eq!(c["Cmd"], json!(["sh"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "exec run"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["WorkingDir"], json!("/app"));
        assert_eq!(c["Labels"], json!({"a": "b"}));
    }

    #[test]
    fn bad_changes_are_refused() {
        assert!(apply_changes(&["RUN true".into()]).is_err());
        assert!(apply_changes(&["RUNN true".into()]).is_err());
    }
}
