//! The HTTP side of the registry client: endpoint and plain-HTTP policy,
//! authentication state (challenge, Basic, per-scope bearer tokens), retries
//! with backoff on 5xx/429 and broken connections, and error bodies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::auth::{CachedToken, Challenge, TokenResponse, parse_www_authenticate};
use super::credentials::{Credentials, DockerConfig};
use crate::error::{Error, Result};

/// How a [`Registry`] behaves.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Tries per request, counting the first (5xx, 429 and broken connections are retried).
    pub max_attempts: u32,
    /// First backoff delay; doubles on each retry.
    pub backoff: Duration,
    /// Blobs larger than this are uploaded in PATCH chunks of this size;
    /// smaller ones in one monolithic PUT.
    pub chunk_size: u64,
    /// Blob transfers running at once.
    pub concurrency: usize,
    /// Credentials to use instead of Docker's config (e.g. for `login`).
    pub credentials: Option<Credentials>,
    /// Where to look credentials up; `None` loads Docker's config on first need.
    pub docker_config: Option<DockerConfig>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            max_attempts: 4,
            backoff: Duration::from_millis(250),
            chunk_size: 32 * 1024 * 1024,
            concurrency: 3,
            credentials: None,
            docker_config: None,
        }
    }
}

/// Whether `host` (`name[:port]`, `[v6]:port`) may be reached over plain
/// HTTP: loopback always (`localhost`, `127.0.0.0/8`, `::1`), others only
/// when listed in `insecure` (as `host` or `host:port`).
pub fn is_insecure(host: &str, insecure: &[String]) -> bool {
    let (name, _port) = split_host_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        if ip.is_loopback() {
            return true;
        }
    }
    insecure.iter().any(|entry| {
        let e = entry
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        e.eq_ignore_ascii_case(host) || {
            let (en, ep) = split_host_port(e);
            ep.is_none() && en.eq_ignore_ascii_case(name)
        }
    })
}

/// `host:port` → (`host`, `Some(port)`); `[::1]:5000` → (`::1`, `Some(5000)`).
fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            return (name, after.strip_prefix(':'));
        }
        return (rest, None);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: no port then.
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// Parses a registry error body (`{"errors":[{"code":…,"message":…}]}`) into
/// the first error code and a `: CODE: message[; CODE2: message2]` detail.
/// Anything else becomes `: <body text>` (shortened), or nothing when empty.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        if !b.errors.is_empty() {
            let code = Some(b.errors[0].code.clone()).filter(|c| !c.is_empty());
            let parts: Vec<String> = b
                .errors
                .iter()
                .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{}: {}", e.code, e.message),
                    (false, true) => e.code.clone(),
                    _ => e.message.clone(),
                })
                .collect();
            return (code, format!(": {}", parts.join("; ")));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return (None, String::new());
    }
    let short: String = text.chars().take(200).collect();
    let ell = if short.len() < text.len() { "…" } else { "" };
    (None, format!(": {}{ell}", short.replace('\n', " ")))
}

/// Everything an error message needs from a failed response.
pub(crate) async fn error_from_response(op: &str, resp: Response) -> Error {
    let status = resp.status();
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    let (mut code, mut detail) = parse_error_body(&body);
    if code.is_none() && status == StatusCode::UNAUTHORIZED {
        code = Some("UNAUTHORIZED".into());
        if detail.is_empty() {
            detail = ": UNAUTHORIZED: authentication required".into();
        }
    }
    Error::Registry {
        op: op.to_string(),
        status: status.to_string(),
        code,
        detail,
    }
}

/// Reads at most `limit` bytes of a body (for error messages and manifests).
pub(crate) async fn read_limited(mut resp: Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `e` and its sources, joined with `: ` (reqwest's own message is terse).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn retryable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || (s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED)
}

#[derive(Debug, Default)]
struct AuthState {
    /// The last challenge the registry sent.
    challenge: Option<Challenge>,
    /// Bearer tokens by scope set (sorted, space-joined).
    tokens: HashMap<String, CachedToken>,
}

#[derive(Debug)]
struct Inner {
    /// The registry as references name it (`localhost:5000`, `docker.io`).
    domain: String,
    /// `http(s)://api-host`, no trailing slash.
    base: String,
    http: reqwest::Client,
    opts: RegistryOptions,
    creds: OnceLock<Result<Option<Credentials>, String>>,
    auth: Mutex<AuthState>,
}

/// A client for one registry. Cheap to clone; clones share tokens.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// One repository on a registry, with the label its errors carry
/// (e.g. `pull localhost:5000/app:1`).
#[derive(Debug, Clone)]
pub struct Repository {
    pub(crate) registry: Registry,
    pub(crate) name: String,
    pub(crate) op: String,
    pub(crate) push: bool,
}

impl Registry {
    /// A client for the registry `domain` (as in a reference: `localhost:5000`).
    pub fn new(domain: &str, opts: RegistryOptions) -> Result<Registry> {
        let api = super::api_host(domain);
        let scheme = if is_insecure(api, &opts.insecure_registries)
            || is_insecure(domain, &opts.insecure_registries)
        {
            "http"
        } else {
            "https"
        };
        // reqwest is built without a default crypto provider: install ring's
        // (a no-op when some provider is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::RegistryTransport {
                op: format!("registry {domain}"),
                reason: format!("cannot set up the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Registry {
            inner: Arc::new(Inner {
                domain: domain.to_string(),
                base: format!("{scheme}://{api}"),
                http,
                opts,
                creds: OnceLock::new(),
                auth: Mutex::new(AuthState::default()),
            }),
        })
    }

    /// The registry as references name it.
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// `http(s)://host[:port]`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.opts
    }

    /// A handle on repository `name` (the path, e.g. `library/busybox`).
    /// `push` asks for push scope in tokens; `op` labels errors.
    pub fn repository(&self, name: &str, push: bool, op: impl Into<String>) -> Repository {
        Repository {
            registry: self.clone(),
            name: name.to_string(),
            op: op.into(),
            push,
        }
    }

    /// `GET /v2/`, authenticating as needed: checks that the registry speaks
    /// API v2 and that our credentials (if any) are accepted. For `login`.
    pub async fn ping(&self) -> Result<()> {
        let op = format!("login {}", self.inner.domain);
        let url = format!("{}/v2/", self.inner.base);
        let resp = self.send(&op, &[], &|c| c.get(&url)).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(error_from_response(&op, resp).await)
    }

    fn credentials(&self) -> Result<Option<Credentials>> {
        let got = self.inner.creds.get_or_init(|| {
            if let Some(c) = &self.inner.opts.credentials {
                return Ok(Some(c.clone()));
            }
            let key = super::credential_key(&self.inner.domain);
            let lookup = |cfg: &DockerConfig| cfg.get(&key).map_err(|e| e.to_string());
            match &self.inner.opts.docker_config {
                Some(cfg) => lookup(cfg),
                None => DockerConfig::load()
                    .map_err(|e| e.to_string())
                    .and_then(|c| lookup(&c)),
            }
        });
        got.clone().map_err(|reason| Error::Credentials {
            server: self.inner.domain.clone(),
            reason,
        })
    }

    /// The Authorization header for `scopes`, from what we know so far.
    async fn auth_header(&self, op: &str, scopes: &[String]) -> Result<Option<String>> {
        let key = scope_key(scopes);
        let challenge = {
            let st = self.lock_auth();
            if let Some(t) = st.tokens.get(&key) {
                if t.valid_until > Instant::now() {
                    return Ok(Some(format!("Bearer {}", t.token)));
                }
            }
            st.challenge.clone()
        };
        match challenge {
            Some(c) if c.is_bearer() => {
                let token = self.fetch_token(op, &c, scopes).await?;
                Ok(Some(format!("Bearer {token}")))
            }
            Some(c) if c.is_basic() => Ok(self.credentials()?.map(|c| basic_header(&c))),
            _ => Ok(None),
        }
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // A panic while holding this lock leaves plain data behind: keep going.
        match self.inner.auth.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Runs the token flow of a Bearer challenge for `scopes`; caches the token.
    async fn fetch_token(&self, op: &str, c: &Challenge, scopes: &[String]) -> Result<String> {
        let realm = c.param("realm").ok_or_else(|| Error::RegistryProtocol {
            op: op.to_string(),
            reason: "Bearer challenge without realm".into(),
        })?;
        let mut url = url::Url::parse(realm).map_err(|e| Error::RegistryProtocol {
            op: op.to_string(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        let creds = self.credentials()?;
        let mut all_scopes: Vec<String> = scopes.to_vec();
        if let Some(s) = c.param("scope") {
            for s in s.split(' ').filter(|s| !s.is_empty()) {
                if !all_scopes.iter().any(|x| x == s) {
                    all_scopes.push(s.to_string());
                }
            }
        }
        type MakeReq = Box<dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync>;
        let make: MakeReq =
            if let Some(refresh) = creds.as_ref().and_then(|c| c.identity_token.clone()) {
                // OAuth2 refresh-token grant, as Docker does for identity tokens.
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", &refresh)
                    .append_pair("client_id", "rbuild");
                if let Some(s) = c.param("service") {
                    form.append_pair("service", s);
                }
                if !all_scopes.is_empty() {
                    form.append_pair("scope", &all_scopes.join(" "));
                }
                let body = form.finish();
                Box::new(move |h: &reqwest::Client| {
                    h.post(url.clone())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                })
            } else {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = c.param("service") {
                        q.append_pair("service", s);
                    }
                    for s in &all_scopes {
                        q.append_pair("scope", s);
                    }
                    if let Some(c) = &creds {
                        q.append_pair("account", &c.username);
                    }
                }
                let basic = creds.as_ref().map(basic_header);
                Box::new(move |h: &reqwest::Client| {
                    let r = h.get(url.clone());
                    match &basic {
                        Some(b) => r.header(AUTHORIZATION, b.clone()),
                        None => r,
                    }
                })
            };
        self.finish_token(op, scopes, &*make).await
    }

    async fn finish_token(
        &self,
        op: &str,
        scopes: &[String],
        make: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
    ) -> Result<String> {
        let resp = self.send_raw(op, make).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(op, resp).await);
        }
        let body =
            read_limited(resp, 1024 * 1024)
                .await
                .map_err(|reason| Error::RegistryTransport {
                    op: op.to_string(),
                    reason: format!("token response: {reason}"),
                })?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::RegistryProtocol {
                op: op.to_string(),
                reason: format!("invalid token response: {e}"),
            })?;
        let token = t.bearer().ok_or_else(|| Error::RegistryProtocol {
            op: op.to_string(),
            reason: "token response without a token".into(),
        })?;
        let token = token.to_string();
        self.lock_auth().tokens.insert(
            scope_key(scopes),
            CachedToken {
                token: token.clone(),
                valid_until: t.valid_until(Instant::now()),
            },
        );
        Ok(token)
    }

    /// Sends a request built by `make` (called again for each try), with
    /// retries on transient failures; no authentication.
    async fn send_raw(
        &self,
        op: &str,
        make: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
    ) -> Result<Response> {
        let opts = &self.inner.opts;
        let mut attempt = 1;
        loop {
            let last = attempt >= opts.max_attempts.max(1);
            match make(&self.inner.http).send().await {
                Ok(r) if retryable_status(r.status()) && !last => {}
                Ok(r) => return Ok(r),
                Err(e) if transient(&e) && !last => {}
                Err(e) => {
                    return Err(Error::RegistryTransport {
                        op: op.to_string(),
                        reason: error_chain(&e),
                    });
                }
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.opts.backoff;
        base.saturating_mul(1u32 << attempt.saturating_sub(1).min(6))
    }

    /// Sends an authenticated request for `scopes` (retrying transient
    /// failures); on a 401 learns the challenge, authenticates once and
    /// retries. The caller checks the final status.
    pub(crate) async fn send(
        &self,
        op: &str,
        scopes: &[String],
        make: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
    ) -> Result<Response> {
        let mut reauthed = false;
        loop {
            let header = self.auth_header(op, scopes).await?;
            let sent_auth = header.is_some();
            let with_auth = |c: &reqwest::Client| {
                let r = make(c);
                match &header {
                    Some(h) => r.header(AUTHORIZATION, h.as_str()),
                    None => r,
                }
            };
            let resp = self.send_raw(op, &with_auth).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || reauthed {
                return Ok(resp);
            }
            let Some(challenge) = pick_challenge(resp.headers()) else {
                return Ok(resp);
            };
            {
                let mut st = self.lock_auth();
                st.tokens.remove(&scope_key(scopes));
                st.challenge = Some(challenge.clone());
            }
            // Basic credentials we already sent were refused, or there are
            // none to offer: the 401 stands. (Requests running concurrently
            // may each learn the challenge: only what *this* request sent counts.)
            if challenge.is_basic() && (sent_auth || self.credentials()?.is_none()) {
                return Ok(resp);
            }
            reauthed = true;
        }
    }
}

fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect();
    all.iter()
        .find(|c| c.is_bearer())
        .or_else(|| all.iter().find(|c| c.is_basic()))
        .cloned()
}

fn basic_header(c: &Credentials) -> String {
    format!(
        "Basic {}",
        B64.encode(format!("{}:{}", c.username, c.password))
    )
}

fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn insecure_decision() {
        let none: Vec<String> = vec![];
        for h in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1:5000",
            "127.10.0.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_insecure(h, &none), "{h}");
        }
        for h in [
            "registry.example:5000",
            "10.0.0.1:5000",
            "docker.io",
            "localhost.example.com",
        ] {
            assert!(!is_insecure(h, &none), "{h}");
        }
        let list = vec![
            "reg.test:5000".to_string(),
            "http://plain.test/".to_string(),
        ];
        assert!(is_insecure("reg.test:5000", &list));
        assert!(!is_insecure("reg.test:5001", &list));
        assert!(!is_insecure("reg.test", &list));
        assert!(is_insecure("plain.test", &list));
        assert!(is_insecure("plain.test:8080", &list));
    }

    #[test]
    fn error_bodies() {
        let (code, detail) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1"}}]}"#,
        );
        assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(detail, ": MANIFEST_UNKNOWN: manifest unknown");
        let (code, detail) = parse_error_body(
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"},{"code":"DENIED"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("UNAUTHORIZED"));
        assert_eq!(detail, ": UNAUTHORIZED: authentication required; DENIED");
        assert_eq!(parse_error_body(b""), (None, String::new()));
        assert_eq!(
            parse_error_body(b"<html>bad gateway</html>\n"),
            (None, ": <html>bad gateway</html>".to_string())
        );
        let long = vec![b'x'; 1000];
        assert!(parse_error_body(&long).1.ends_with('…'));
    }

    #[test]
    fn error_message_shape() {
        let e = Error::Registry {
            op: "pull localhost:5000/app:1".into(),
            status: StatusCode::NOT_FOUND.to_string(),
            code: Some("MANIFEST_UNKNOWN".into()),
            detail: ": MANIFEST_UNKNOWN: manifest unknown".into(),
        };
        assert_eq!(
            e.to_string(),
            "pull localhost:5000/app:1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
    }

    #[test]
    fn endpoints() {
        let r = Registry::new("localhost:5000", RegistryOptions::default()).unwrap();
        assert_eq!(r.base_url(), "http://localhost:5000");
        let r = Registry::new("docker.io", RegistryOptions::default()).unwrap();
        assert_eq!(r.base_url(), "https://registry-1.docker.io");
        let r = Registry::new(
            "reg.test:5000",
            RegistryOptions {
                insecure_registries: vec!["reg.test:5000".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.base_url(), "http://reg.test:5000");
        assert_eq!(scope_key(&["b".into(), "a".into()]), "a b");
    }
}
