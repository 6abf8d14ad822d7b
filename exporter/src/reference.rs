//! Image references, parsed and normalised exactly as Docker does
//! (the grammar of distribution/reference: `normalize.go`, `reference.go`,
//! `regexp.go`): `busybox` is `docker.io/library/busybox:latest`, a first path
//! component is a registry domain when it contains `.` or `:`, is `localhost`,
//! or has upper case; repository paths are lower case; tags match
//! `[\w][\w.-]{0,127}`.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag a name without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed repository path (without the domain).
pub const REPOSITORY_NAME_MAX: usize = 255;

const ALPHANUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
// `\w` as Go means it (ASCII only), not Unicode word characters.
const TAG: &str = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
const IPV6: &str = r"\[(?:[a-fA-F0-9:]+)\]";

fn domain_and_port() -> String {
    let domain_name = format!(r"{DOMAIN_NAME_COMPONENT}(?:\.{DOMAIN_NAME_COMPONENT})*");
    format!("(?:{domain_name}|{IPV6}){OPTIONAL_PORT}")
}

fn remote_name() -> String {
    let path_component = format!("{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*");
    format!("{path_component}(?:/{path_component})*")
}

fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        // The patterns are constants; a failure is a bug caught by every test.
        Err(e) => panic!("reference grammar does not compile: {e}"),
    }
}

static REFERENCE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!("(?:{}/)?{}", domain_and_port(), remote_name());
    compile(&format!("^({name})(?::({TAG}))?(?:@({DIGEST}))?$"))
});
static ANCHORED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        "^(?:({})/)?({})$",
        domain_and_port(),
        remote_name()
    ))
});
static ANCHORED_TAG_RE: LazyLock<Regex> = LazyLock::new(|| compile(&format!("^{TAG}$")));
static IDENTIFIER_RE: LazyLock<Regex> = LazyLock::new(|| compile("^[a-f0-9]{64}$"));

/// A named image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// `ParseNormalizedNamed`: a familiar or full name to its full form
    /// (no default tag added).
    pub fn parse_normalized(s: &str) -> Result<Reference> {
        if IDENTIFIER_RE.is_match(s) {
            return Err(invalid(
                s,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder
            .split_once(':')
            .map_or(remainder.as_str(), |r| r.0);
        if remote.to_lowercase() != remote {
            return Err(invalid(
                s,
                format!("repository name ({remote}) must be lowercase"),
            ));
        }
        let r = Self::parse(&format!("{domain}/{remainder}")).map_err(|e| match e {
            Error::InvalidReference { reason, .. } => invalid(s, reason),
            other => other,
        })?;
        Ok(r)
    }

    /// `ParseDockerRef`: like [`Reference::parse_normalized`], then a name
    /// with both tag and digest keeps only the digest, and a bare name gets
    /// the `latest` tag. This is the form images are stored under.
    pub fn parse_docker(s: &str) -> Result<Reference> {
        let mut r = Self::parse_normalized(s)?;
        if r.digest.is_some() {
            r.tag = None;
        } else if r.tag.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// `Parse`: the strict grammar, without normalisation.
    pub fn parse(s: &str) -> Result<Reference> {
        if s.is_empty() {
            return Err(invalid(
                s,
                "repository name must have at least one component",
            ));
        }
        let Some(caps) = REFERENCE_RE.captures(s) else {
            let lower = s.to_lowercase();
            if lower != s && REFERENCE_RE.is_match(&lower) {
                return Err(invalid(s, "repository name must be lowercase"));
            }
            return Err(invalid(s, "invalid reference format"));
        };
        let name = caps.get(1).map_or("", |m| m.as_str());
        let (domain, path) = match ANCHORED_NAME_RE.captures(name) {
            Some(n) => (
                n.get(1).map_or("", |m| m.as_str()).to_string(),
                n.get(2).map_or("", |m| m.as_str()).to_string(),
            ),
            None => (String::new(), name.to_string()),
        };
        if path.len() > REPOSITORY_NAME_MAX {
            return Err(invalid(
                s,
                format!("repository name must not be more than {REPOSITORY_NAME_MAX} characters"),
            ));
        }
        let tag = caps.get(2).map(|m| m.as_str().to_string());
        let digest = match caps.get(3) {
            Some(m) => Some(
                m.as_str()
                    .parse::<Digest>()
                    .map_err(|e| invalid(s, e.to_string()))?,
            ),
            None => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry domain (with port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with this tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        if !ANCHORED_TAG_RE.is_match(tag) {
            return Err(invalid(tag, "invalid tag format"));
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository with this digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The repository alone (no tag, no digest).
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The name as Docker prints it: `busybox`, `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            if let Some(rest) = self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                if !rest.contains('/') {
                    return rest.to_string();
                }
            }
            return self.path.clone();
        }
        self.name()
    }

    /// The whole reference as Docker prints it: `busybox:latest`.
    pub fn familiar_string(&self) -> String {
        self.render(self.familiar_name())
    }

    fn render(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

/// `splitDockerDomain` of normalize.go.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remote) = match name.split_once('/') {
        None => {
            return (
                DEFAULT_DOMAIN.to_string(),
                format!("{OFFICIAL_REPO_PREFIX}{name}"),
            );
        }
        Some((maybe_domain, rest)) => {
            if maybe_domain == "localhost"
                || maybe_domain.contains(['.', ':'])
                || maybe_domain.to_lowercase() != maybe_domain
            {
                (maybe_domain.to_string(), rest.to_string())
            } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
                (DEFAULT_DOMAIN.to_string(), rest.to_string())
            } else {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            }
        }
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.name()))
    }
}

impl FromStr for Reference {
    type Err = Error;

    /// Parses with [`Reference::parse_docker`].
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse_docker(s)
    }
}

/// What a user may name an image by on the command line (`ParseAnyReference`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A full digest, or 64 hex digits (taken as sha256): an image ID or manifest digest.
    Digest(Digest),
    /// A named reference in docker form (tag defaulted, or digest).
    Named(Reference),
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        if IDENTIFIER_RE.is_match(s) {
            return Ok(ImageRef::Digest(format!("sha256:{s}").parse()?));
        }
        if let Ok(d) = s.parse::<Digest>() {
            return Ok(ImageRef::Digest(d));
        }
        Ok(ImageRef::Named(Reference::parse_docker(s)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    /// input, ParseDockerRef result (None = error), familiar string of it.
    fn cases() -> Vec<(String, Option<(String, String)>)> {
        let ok = |i: &str, full: &str, fam: &str| {
            (i.to_string(), Some((full.to_string(), fam.to_string())))
        };
        let err = |i: &str| (i.to_string(), None);
        vec![
            ok(
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ok(
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ok(
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ok(
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ok(
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ok(
                "index.docker.io/user/app:v1",
                "docker.io/user/app:v1",
                "user/app:v1",
            ),
            ok("user/app", "docker.io/user/app:latest", "user/app:latest"),
            ok(
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            ok(
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            ok(
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000/a/b:latest",
            ),
            ok(
                &format!("localhost:5000/a/b@{D}"),
                &format!("localhost:5000/a/b@{D}"),
                &format!("localhost:5000/a/b@{D}"),
            ),
            ok(
                &format!("busybox:latest@{D}"),
                &format!("docker.io/library/busybox@{D}"),
                &format!("busybox@{D}"),
            ),
            ok(
                &format!("busybox@{D}"),
                &format!("docker.io/library/busybox@{D}"),
                &format!("busybox@{D}"),
            ),
            ok(
                "example.com/app",
                "example.com/app:latest",
                "example.com/app:latest",
            ),
            ok(
                "example.com:443/a/b/c:t",
                "example.com:443/a/b/c:t",
                "example.com:443/a/b/c:t",
            ),
            ok(
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest",
                "127.0.0.1:5000/x:latest",
            ),
            ok("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
            ok(
                "Registry.Example/x",
                "Registry.Example/x:latest",
                "Registry.Example/x:latest",
            ),
            ok("UPPER/x", "UPPER/x:latest", "UPPER/x:latest"),
            ok(
                "localhost",
                "docker.io/library/localhost:latest",
                "localhost:latest",
            ),
            ok(
                "a_b__c-d---e.f",
                "docker.io/library/a_b__c-d---e.f:latest",
                "a_b__c-d---e.f:latest",
            ),
            ok(
                "app:V1.0-rc_2",
                "docker.io/library/app:V1.0-rc_2",
                "app:V1.0-rc_2",
            ),
            ok("app:_x", "docker.io/library/app:_x", "app:_x"),
            ok(
                &format!("app:{}", "t".repeat(128)),
                &format!("docker.io/library/app:{}", "t".repeat(128)),
                &format!("app:{}", "t".repeat(128)),
            ),
            ok("foo/bar:5000", "docker.io/foo/bar:5000", "foo/bar:5000"),
            err(""),
            err("Busybox"),
            err("docker.io/library/Busybox"),
            err("busybox:"),
            err("busybox:-tag"),
            err("busybox:.tag"),
            err(&format!("app:{}", "t".repeat(129))),
            err("a/../b"),
            err("-app"),
            err("app-"),
            err("a__-b"),
            err("a...b"),
            err("/app"),
            err("app/"),
            err("a//b"),
            err("busybox@sha256:abc"),
            err("busybox@md5:0123456789abcdef0123456789abcdef"),
            err(&"a".repeat(64).replace('a', "f")),
            err(&"x".repeat(256)),
            err("example.com:port/app"),
            err("app name"),
            err("app:t\u{e9}"),
        ]
    }

    #[test]
    fn docker_reference_table() {
        let cases = cases();
        assert!(cases.len() >= 30);
        for (input, want) in cases {
            let got = Reference::parse_docker(&input);
            match (got, want) {
                (Ok(r), Some((full, fam))) => {
                    assert_eq!(r.to_string(), full, "full form of {input:?}");
                    assert_eq!(r.familiar_string(), fam, "familiar form of {input:?}");
                    // The full form parses back to itself.
                    assert_eq!(Reference::parse_docker(&full).unwrap(), r, "{input:?}");
                }
                (Err(_), None) => {}
                (Ok(r), None) => panic!("{input:?} should fail, parsed as {r}"),
                (Err(e), Some((full, _))) => panic!("{input:?} should be {full}, got {e}"),
            }
        }
    }

    #[test]
    fn parts_and_helpers() {
        let r = Reference::parse_docker("localhost:5000/a/b:t").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.name(), "localhost:5000/a/b");
        assert_eq!(r.repository().to_string(), "localhost:5000/a/b");
        assert_eq!(r.with_tag("u").unwrap().to_string(), "localhost:5000/a/b:u");
        assert!(r.with_tag("-bad").is_err());
        let d: Digest = D.parse().unwrap();
        assert_eq!(
            r.with_digest(d.clone()).to_string(),
            format!("localhost:5000/a/b@{D}")
        );
        // parse_normalized keeps tag and digest both and adds no tag.
        let both = Reference::parse_normalized(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(both.to_string(), format!("docker.io/library/busybox:1@{D}"));
        let bare = Reference::parse_normalized("busybox").unwrap();
        assert_eq!(bare.to_string(), "docker.io/library/busybox");
        assert_eq!(bare.familiar_string(), "busybox");
    }

    #[test]
    fn any_reference() {
        let hex = &D["sha256:".len()..];
        assert_eq!(
            ImageRef::parse(hex).unwrap(),
            ImageRef::Digest(D.parse().unwrap())
        );
        assert_eq!(
            ImageRef::parse(D).unwrap(),
            ImageRef::Digest(D.parse().unwrap())
        );
        assert!(matches!(
            ImageRef::parse("busybox").unwrap(),
            ImageRef::Named(_)
        ));
        // A short hex prefix is a name (lookups try it as an ID prefix too).
        assert!(matches!(
            ImageRef::parse("7cc4b5ae").unwrap(),
            ImageRef::Named(_)
        ));
    }
}
