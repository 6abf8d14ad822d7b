//! Registry authentication: parsing `WWW-Authenticate` challenges (RFC 7235)
//! and the Docker token flow (`GET realm?service=…&scope=…`, with Basic
//! credentials when we have some).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower case (`basic`, `bearer`).
    pub scheme: String,
    /// Parameters with lower-case names (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges. Malformed
/// parts are skipped rather than failing: the caller then reports the 401.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_and_commas();
        let Some(token) = p.token() else { break };
        // Either a new scheme, or (after a scheme) a `name=value` parameter.
        p.skip_ws();
        if p.peek() == Some(b'=') && !out.is_empty() {
            let value = p.param_value();
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
            continue;
        }
        out.push(Challenge {
            scheme: token.to_ascii_lowercase(),
            params: BTreeMap::new(),
        });
        // Parameters follow the scheme after whitespace, without a comma.
        p.skip_ws();
        if let Some(name) = p.token() {
            p.skip_ws();
            if p.peek() == Some(b'=') {
                let value = p.param_value();
                if let Some(last) = out.last_mut() {
                    last.params.insert(name.to_ascii_lowercase(), value);
                }
            } else {
                // token68 form (e.g. `Negotiate abc==`): keep it unnamed.
                if let Some(last) = out.last_mut() {
                    last.params.insert(String::new(), name);
                }
            }
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// After a parameter name, at its `=`: the value, quoted or a bare token.
    fn param_value(&mut self) -> String {
        self.i += 1;
        self.skip_ws();
        if self.peek() == Some(b'"') {
            self.quoted()
        } else {
            self.token().unwrap_or_default()
        }
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// An RFC 7230 token (plus `/` and `=`-free token68 characters).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c);
            if !ok {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A quoted string starting at `"`, with backslash escapes.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The body of a token server's answer.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The bearer token (`token`, or the OAuth2 `access_token`).
    pub fn bearer(&self) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(self.access_token.as_deref().filter(|t| !t.is_empty()))
    }

    /// When to stop using the token: a little before it expires
    /// (the spec's default lifetime is 60 s).
    pub fn valid_until(&self, now: Instant) -> Instant {
        let secs = self.expires_in.unwrap_or(60).max(60);
        now + Duration::from_secs(secs.saturating_sub(10))
    }
}

/// A cached bearer token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: String,
    pub valid_until: Instant,
}

/// Scope strings for a repository: `repository:NAME:pull[,push]`.
pub fn repository_scope(repo: &str, push: bool) -> String {
    if push {
        format!("repository:{repo}:pull,push")
    } else {
        format!("repository:{repo}:pull")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn basic_and_multiple_challenges() {
        let c = parse_www_authenticate(r#"Basic realm="Registry Realm""#);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));

        let c = parse_www_authenticate(
            r#"Basic realm="a, b", Bearer realm="https://t/x",service=reg , error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn escapes_case_and_garbage() {
        let c = parse_www_authenticate(r#"BEARER Realm="x\"y""#);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("x\"y"));
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate("  ,, ").is_empty());
        // Unterminated quote: still yields what it can.
        let c = parse_www_authenticate(r#"Bearer realm="https://t"#);
        assert_eq!(c[0].param("realm"), Some("https://t"));
    }

    #[test]
    fn token_response() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.bearer(), Some("a"));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"t","access_token":""}"#).unwrap();
        assert_eq!(t.bearer(), Some("t"));
        let now = Instant::now();
        assert!(t.valid_until(now) >= now + Duration::from_secs(50));
        assert_eq!(repository_scope("a/b", true), "repository:a/b:pull,push");
    }
}
