//! Docker's client configuration: `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`. Reads `auths` (base64 `user:pass` in `auth`, or
//! `username`/`password`, or `identitytoken`), `credsStore` and `credHelpers`
//! (`docker-credential-<helper> get|store|erase`, server on stdin), and
//! writes the same format back (0600, atomically), keeping unknown keys.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A username and secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (`identitytoken`), when the registry issued one.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The parsed `config.json` and where it lives.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
    /// PATH for finding credential helpers (default: the process's).
    helper_path: Option<std::ffi::OsString>,
}

fn cred_err(server: &str, reason: impl Into<String>) -> Error {
    Error::Credentials {
        server: server.to_string(),
        reason: reason.into(),
    }
}

/// The directory of Docker's client config: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".docker"))
}

/// `https://host:port/v1/` or `host:port/` → `host:port`, the way Docker
/// matches `auths` keys against a registry host.
pub fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

impl DockerConfig {
    /// Loads the config from the usual place; a missing file is an empty config.
    pub fn load() -> Result<DockerConfig> {
        let dir = config_dir()
            .ok_or_else(|| cred_err("docker config", "neither DOCKER_CONFIG nor HOME is set"))?;
        Self::load_from(&dir.join("config.json"))
    }

    /// Loads the config at `path`; a missing file is an empty config.
    pub fn load_from(path: &Path) -> Result<DockerConfig> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(cred_err(&path.display().to_string(), "not a JSON object")),
                Err(e) => {
                    return Err(Error::Json {
                        what: path.display().to_string(),
                        source: e,
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
            helper_path: None,
        })
    }

    /// Looks credential helpers up on `path` instead of the process's PATH.
    pub fn with_helper_path(mut self, path: impl Into<std::ffi::OsString>) -> DockerConfig {
        self.helper_path = Some(path.into());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.doc
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The credential helper responsible for `server`, if any.
    pub fn helper_for(&self, server: &str) -> Option<String> {
        let want = normalize_key(server);
        if let Some(Value::Object(helpers)) = self.doc.get("credHelpers") {
            for (k, v) in helpers {
                if normalize_key(k) == want {
                    if let Some(h) = v.as_str().filter(|s| !s.is_empty()) {
                        return Some(h.to_string());
                    }
                }
            }
        }
        self.str_field("credsStore").map(str::to_string)
    }

    /// Credentials for `server` (a registry host such as `localhost:5000`, or
    /// Docker Hub's `https://index.docker.io/v1/`): from its credential helper
    /// when one is configured, else from `auths`.
    pub fn get(&self, server: &str) -> Result<Option<Credentials>> {
        if let Some(helper) = self.helper_for(server) {
            if let Some(c) = helper_get(self.helper_path.as_deref(), &helper, server)? {
                return Ok(Some(c));
            }
        }
        self.get_from_auths(server)
    }

    fn get_from_auths(&self, server: &str) -> Result<Option<Credentials>> {
        let want = normalize_key(server);
        let Some(Value::Object(auths)) = self.doc.get("auths") else {
            return Ok(None);
        };
        // Prefer an exact key match, then a normalised one.
        let entry = auths
            .get(server)
            .or_else(|| {
                auths
                    .iter()
                    .find(|(k, _)| normalize_key(k) == want)
                    .map(|(_, v)| v)
            })
            .and_then(Value::as_object);
        let Some(entry) = entry else { return Ok(None) };
        let get = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let identity_token = get("identitytoken").map(str::to_string);
        if let Some(auth) = get("auth") {
            let raw = B64
                .decode(auth.trim())
                .map_err(|e| cred_err(server, format!("invalid base64 in auths.auth: {e}")))?;
            let text =
                String::from_utf8(raw).map_err(|_| cred_err(server, "auths.auth is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| cred_err(server, "auths.auth is not user:password"))?;
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: pass.trim_end_matches('\n').to_string(),
                identity_token,
            }));
        }
        if let (Some(u), Some(p)) = (get("username"), get("password")) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
                identity_token,
            }));
        }
        Ok(identity_token.map(|t| Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(t),
        }))
    }

    /// Stores credentials for `server`: in its credential helper when one is
    /// configured, else as `auths[server].auth` in the file.
    pub fn store(&mut self, server: &str, creds: &Credentials) -> Result<()> {
        if let Some(helper) = self.helper_for(server) {
            let body = serde_json::json!({
                "ServerURL": server,
                "Username": creds.username,
                "Secret": creds.password,
            });
            run_helper(
                self.helper_path.as_deref(),
                &helper,
                "store",
                server,
                body.to_string().as_bytes(),
            )?;
            // Docker keeps an empty entry so `auths` lists the server.
            self.auths_mut()
                .insert(server.to_string(), Value::Object(Map::new()));
        } else {
            let auth = B64.encode(format!("{}:{}", creds.username, creds.password));
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(auth));
            self.auths_mut()
                .insert(server.to_string(), Value::Object(entry));
        }
        self.save()
    }

    /// Removes credentials for `server`; `Ok(false)` when there were none.
    pub fn erase(&mut self, server: &str) -> Result<bool> {
        let mut found = false;
        if let Some(helper) = self.helper_for(server) {
            found |= run_helper(
                self.helper_path.as_deref(),
                &helper,
                "erase",
                server,
                server.as_bytes(),
            )
            .is_ok();
        }
        let want = normalize_key(server);
        let auths = self.auths_mut();
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| k.as_str() == server || normalize_key(k) == want)
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        found |= !keys.is_empty();
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let slot = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(m) => m,
            // Just made an object above.
            _ => unreachable!("auths is an object"),
        }
    }

    /// Writes the file atomically with mode 0600 (temp file + rename).
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut text =
            serde_json::to_string_pretty(&Value::Object(self.doc.clone())).map_err(|e| {
                Error::Json {
                    what: self.path.display().to_string(),
                    source: e,
                }
            })?;
        text.push('\n');
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let tpath = tmp.path().to_path_buf();
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&tpath, e))?;
        tmp.write_all(text.as_bytes())
            .map_err(|e| Error::io(&tpath, e))?;
        tmp.as_file().sync_all().map_err(|e| Error::io(&tpath, e))?;
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&self.path, e.error))?;
        Ok(())
    }
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; returns stdout.
fn run_helper(
    search_path: Option<&std::ffi::OsStr>,
    helper: &str,
    action: &str,
    server: &str,
    input: &[u8],
) -> Result<Vec<u8>> {
    let program = format!("docker-credential-{helper}");
    let mut cmd = Command::new(&program);
    if let Some(p) = search_path {
        // std looks the program up on the child's PATH when it is set.
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cred_err(server, format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| cred_err(server, format!("{program} {action}: writing stdin: {e}")))?;
    }
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)
            .map_err(|e| cred_err(server, format!("{program} {action}: reading stdout: {e}")))?;
    }
    let mut stderr = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| cred_err(server, format!("{program} {action}: {e}")))?;
    if !status.success() {
        let msg = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout })
            .trim()
            .to_string();
        return Err(cred_err(
            server,
            format!("{program} {action} failed ({status}): {msg}"),
        ));
    }
    Ok(stdout)
}

/// `get` from a helper; "credentials not found" is `None`, not an error.
fn helper_get(
    search_path: Option<&std::ffi::OsStr>,
    helper: &str,
    server: &str,
) -> Result<Option<Credentials>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let out = match run_helper(search_path, helper, "get", server, server.as_bytes()) {
        Ok(out) => out,
        Err(Error::Credentials { reason, .. })
            if reason
                .to_ascii_lowercase()
                .contains("credentials not found") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let reply: Reply = serde_json::from_slice(&out).map_err(|e| {
        cred_err(
            server,
            format!("docker-credential-{helper} get: invalid JSON reply: {e}"),
        )
    })?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(None);
    }
    // Docker's convention: user `<token>` means the secret is an identity token.
    if reply.username == "<token>" {
        return Ok(Some(Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(reply.secret),
        }));
    }
    Ok(Some(Credentials {
        username: reply.username,
        password: reply.secret,
        identity_token: None,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn auths_base64_and_key_normalisation() {
        let d = tempfile::tempdir().unwrap();
        let auth = B64.encode("alice:s3cr:et");
        let p = write(
            d.path(),
            &format!(
                r#"{{"auths":{{"http://localhost:5000/v2/":{{"auth":"{auth}"}},
                "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        );
        let c = DockerConfig::load_from(&p).unwrap();
        let got = c.get("localhost:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("alice", "s3cr:et")
        );
        let hub = c.get("https://index.docker.io/v1/").unwrap().unwrap();
        assert_eq!(hub.username, "bob");
        assert!(c.get("docker.io").unwrap().is_some());
        assert!(c.get("other:5000").unwrap().is_none());
        assert!(!format!("{got:?}").contains("s3cr"));
    }

    #[test]
    fn missing_empty_and_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let c = DockerConfig::load_from(&d.path().join("none.json")).unwrap();
        assert!(c.get("x").unwrap().is_none());
        let c = DockerConfig::load_from(&write(d.path(), "  \n")).unwrap();
        assert!(c.get("x").unwrap().is_none());
        assert!(DockerConfig::load_from(&write(d.path(), "{nope")).is_err());
        let c =
            DockerConfig::load_from(&write(d.path(), r#"{"auths":{"x":{"auth":"!!"}}}"#)).unwrap();
        let err = c.get("x").unwrap_err().to_string();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn store_and_erase_keep_other_keys_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), r#"{"psFormat":"table","auths":{}}"#);
        let mut c = DockerConfig::load_from(&p).unwrap();
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
            identity_token: None,
        };
        c.store("localhost:5000", &creds).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("psFormat"), "{text}");
        assert!(text.contains(&B64.encode("u:p")), "{text}");
        let c2 = DockerConfig::load_from(&p).unwrap();
        assert_eq!(c2.get("localhost:5000").unwrap().unwrap(), creds);
        let mut c2 = c2;
        assert!(c2.erase("localhost:5000").unwrap());
        assert!(!c2.erase("localhost:5000").unwrap());
        assert!(
            DockerConfig::load_from(&p)
                .unwrap()
                .get("localhost:5000")
                .unwrap()
                .is_none()
        );
    }

    /// A fake `docker-credential-test` helper, put first on PATH.
    #[test]
    fn credential_helpers() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = d.path().join("helper.log");
        let script = format!(
            r#"#!/bin/sh
read server
echo "$1 $server" >> {log}
case "$1:$server" in
  get:helper.example:5000) echo '{{"ServerURL":"helper.example:5000","Username":"hu","Secret":"hs"}}' ;;
  get:store.example) echo '{{"ServerURL":"store.example","Username":"su","Secret":"ss"}}' ;;
  get:*) echo "credentials not found in native keychain"; exit 1 ;;
  store:*) exit 0 ;;
  erase:*) exit 0 ;;
esac
"#,
            log = log.display()
        );
        let helper = bin.join("docker-credential-test");
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        // PATH is process-wide (and set_var needs unsafe): give the config
        // a PATH with the fake helper's directory first instead.
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let p = write(
            d.path(),
            r#"{"credsStore":"test","credHelpers":{"helper.example:5000":"test"},
               "auths":{"fallback.example":{"auth":"ZnU6ZnA="}}}"#,
        );
        let c = DockerConfig::load_from(&p).unwrap().with_helper_path(path);
        let h = c.get("helper.example:5000").unwrap().unwrap();
        assert_eq!((h.username.as_str(), h.password.as_str()), ("hu", "hs"));
        let s = c.get("store.example").unwrap().unwrap();
        assert_eq!(s.username, "su");
        // Not in the helper: falls back to `auths`.
        let f = c.get("fallback.example").unwrap().unwrap();
        assert_eq!((f.username.as_str(), f.password.as_str()), ("fu", "fp"));
        assert!(c.get("nowhere.example").unwrap().is_none());
        // A helper that is not installed is a clear error.
        let p2 = write(d.path(), r#"{"credsStore":"absent-helper"}"#);
        let err = DockerConfig::load_from(&p2)
            .unwrap()
            .get("x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker-credential-absent-helper"), "{err}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("get helper.example:5000"), "{logged}");
    }
}
