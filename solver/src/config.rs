//! The image config and history a build writes, field for field as BuildKit's
//! Dockerfile frontend writes them (Docker's config JSON, `dockerspec.DockerOCIImage`).
//!
//! Lowering folds config-only instructions (ENV, LABEL, USER, CMD, ...) into an
//! [`Image`] per stage and appends a [`History`] entry per instruction with BuildKit's
//! `created_by` text. The exporter adds the layers' diff_ids and, without
//! `SOURCE_DATE_EPOCH`, the creation times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::op::Platform;

/// The comment BuildKit puts on every history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An empty JSON object (`{}`), the value type of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// An image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub config: ImageConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// `rootfs` of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The `config` object: what a container of the image runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(
        rename = "User",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(
        rename = "ArgsEscaped",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub args_escaped: bool,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(
        rename = "OnBuild",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(
        rename = "Shell",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
}

/// Docker writes `null` for empty lists and maps (`"Volumes": null`): read it as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `Healthcheck`: durations in nanoseconds, zero meaning "inherit the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    #[serde(
        rename = "Test",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        rename = "Interval",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub interval: u64,
    #[serde(
        rename = "Timeout",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: u64,
    #[serde(
        rename = "StartPeriod",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: u64,
    #[serde(
        rename = "StartInterval",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: u64,
    #[serde(
        rename = "Retries",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub retries: u64,
}

impl HealthConfig {
    /// Go's `%+v` of BuildKit's `HealthcheckConfig`, as its history entry shows it.
    pub fn go_format(&self) -> String {
        format!(
            "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            self.test.join(" "),
            go_duration(self.interval),
            go_duration(self.timeout),
            go_duration(self.start_period),
            go_duration(self.start_interval),
            self.retries
        )
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub created_by: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub author: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub comment: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub empty_layer: bool,
}

impl Image {
    /// BuildKit's `emptyImage`: the config of `FROM scratch`.
    pub fn empty(platform: &Platform) -> Image {
        Image {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: ImageConfig {
                working_dir: "/".into(),
                env: vec![format!("PATH={}", rbuild_parser::args::DEFAULT_PATH)],
                ..ImageConfig::default()
            },
            ..Image::default()
        }
    }

    /// The platform the config names.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }

    /// Appends a history entry (`# buildkit` is added to exec/file steps' text, as
    /// BuildKit's `commitToHistory` does when it has a state).
    pub fn commit(&mut self, created_by: String, with_layer: bool, created: Option<&str>) {
        self.history.push(History {
            created: created.map(str::to_string),
            created_by,
            author: String::new(),
            comment: HISTORY_COMMENT.into(),
            empty_layer: !with_layer,
        });
    }

    /// The value of `key` in `Env`.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.config.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == key).then_some(v)
        })
    }

    /// BuildKit's `addEnv`: replace in place, or append.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        for kv in &mut self.config.env {
            let k = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            if k == key {
                *kv = entry;
                return;
            }
        }
        self.config.env.push(entry);
    }

    /// The env as `(key, value)` pairs in order.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// BuildKit's `withShell`: the stage's SHELL (or `/bin/sh -c`) and the command joined.
    pub fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut out = if self.config.shell.is_empty() {
            default_shell(&self.os)
        } else {
            self.config.shell.clone()
        };
        out.push(args.join(" "));
        out
    }
}

/// The default SHELL of an OS.
pub fn default_shell(os: &str) -> Vec<String> {
    if os == "windows" {
        vec!["cmd".into(), "/S".into(), "/C".into()]
    } else {
        vec!["/bin/sh".into(), "-c".into()]
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String()` of nanoseconds: `0s`, `1.5s`, `5m0s`, `1h0m0s`, `300ms`.
pub fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, div));
    }
    let hours = nanos / 3_600_000_000_000;
    let rest = nanos % 3_600_000_000_000;
    let minutes = rest / 60_000_000_000;
    let secs = rest % 60_000_000_000;
    let secs = format!("{}s", fraction(secs, 1_000_000_000));
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}")
    } else if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

/// `n / div` with the fraction's trailing zeros trimmed.
fn fraction(n: u64, div: u64) -> String {
    let whole = n / div;
    let frac = n % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// RFC 3339 (UTC, `Z`) of Unix seconds, as Go marshals a `time.Time` in UTC.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        (tod % 3600) / 60,
        tod % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_000_000_000), "3s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
        assert_eq!(go_duration(1_500), "1.5µs");
    }

    #[test]
    fn quoting_like_go() {
        assert_eq!(go_quote("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            "[\"/bin/sh\" \"-c\" \"echo hi\"]"
        );
        assert_eq!(go_list(&["/a".into(), "/b".into()]), "[/a /b]");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn env_replace_in_place() {
        let mut img = Image::empty(&Platform::linux_amd64());
        img.env_set("A", "1");
        img.env_set("PATH", "/x");
        assert_eq!(img.config.env, ["PATH=/x", "A=1"]);
        assert_eq!(img.env_get("A"), Some("1"));
    }

    #[test]
    fn docker_configs_with_nulls_parse() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Hostname":"","Env":["PATH=/bin"],"Cmd":null,"Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":null},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:x in /","empty_layer":null}]}"#;
        let img: Image = serde_json::from_str(json).unwrap();
        assert_eq!(img.config.env, ["PATH=/bin"]);
        assert!(img.config.cmd.is_none() && img.config.volumes.is_empty());
        assert!(img.rootfs.diff_ids.is_empty() && !img.history[0].empty_layer);
    }

    #[test]
    fn scratch_config_json() {
        let img = Image::empty(&Platform::linux_amd64());
        let json = serde_json::to_string(&img).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Env\":[\"PATH={}\"],\"WorkingDir\":\"/\"}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}",
                rbuild_parser::args::DEFAULT_PATH
            )
        );
    }
}
