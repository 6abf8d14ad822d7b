//! `--build-context NAME=VALUE` (docker buildx): a local directory (its own
//! `.dockerignore` applies), `docker-image://REF[@DIGEST]`, or
//! `oci-layout://PATH[:TAG|@DIGEST]`. Parsed here into what lowering sees
//! ([`NamedContext`]) and what the worker needs (directories, layouts).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rbuild_parser::dockerignore::load_for_build;
use rbuild_solver::lower::util::normalize_reference;
use rbuild_solver::{NamedContext, named_context_key};

use super::worker::LocalContext;
use super::worker::image::OciLayoutRef;

/// The parsed `--build-context` flags.
#[derive(Debug, Default)]
pub struct Contexts {
    /// For [`rbuild_solver::BuildOptions::named_contexts`].
    pub named: BTreeMap<String, NamedContext>,
    /// Local directories by [`named_context_key`].
    pub local: HashMap<String, LocalContext>,
    /// OCI layouts by the reference lowering passes to the resolver.
    pub layouts: HashMap<String, OciLayoutRef>,
}

pub fn parse(flags: &[String]) -> Result<Contexts, String> {
    let mut out = Contexts::default();
    for flag in flags {
        let (name, value) = flag
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("invalid --build-context {flag:?}: expected NAME=VALUE"))?;
        let key = named_context_key(name);
        if key == super::worker::MAIN_CONTEXT {
            return Err(format!(
                "--build-context {name}=...: `{key}` names the main build context; pick another name"
            ));
        }
        if out.named.contains_key(&key) {
            return Err(format!("--build-context {name:?} given twice"));
        }
        let nc = if let Some(r) = value.strip_prefix("docker-image://") {
            let full = normalize_reference(r)
                .map_err(|e| format!("--build-context {name}={value}: {e}"))?;
            NamedContext::Image(full)
        } else if let Some(l) = value.strip_prefix("oci-layout://") {
            let layout =
                OciLayoutRef::parse(l).map_err(|e| format!("--build-context {name}: {e}"))?;
            let reference = layout.reference();
            out.layouts.insert(reference.clone(), layout);
            NamedContext::Image(reference)
        } else if value.contains("://") || value.starts_with("git@") || value.starts_with("target:")
        {
            return Err(format!(
                "--build-context {name}={value}: only local directories, docker-image:// and oci-layout:// are supported"
            ));
        } else {
            let dir = Path::new(value)
                .canonicalize()
                .map_err(|e| format!("--build-context {name}={value}: {e}"))?;
            if !dir.is_dir() {
                return Err(format!("--build-context {name}={value}: not a directory"));
            }
            // BuildKit reads `.dockerignore` at the root of the named context.
            let (_, ignore) = load_for_build(&dir, &dir.join("Dockerfile"))
                .map_err(|e| format!("--build-context {name}: reading its .dockerignore: {e}"))?;
            out.local.insert(key.clone(), LocalContext { dir, ignore });
            NamedContext::Local
        };
        out.named.insert(key, nc);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn images_and_errors() {
        let c = parse(&["alpine=docker-image://busybox:1".into()]).unwrap();
        assert_eq!(
            c.named["alpine"],
            NamedContext::Image("docker.io/library/busybox:1".into())
        );
        assert!(parse(&["x".into()]).is_err());
        assert!(parse(&["context=docker-image://busybox".into()]).is_err());
        assert!(parse(&["x=/definitely/not/here".into()]).is_err());
        assert!(parse(&["x=https://example.com/a.git".into()]).is_err());
        assert!(parse(&["a=docker-image://b".into(), "A=docker-image://c".into()]).is_err());
    }

    #[test]
    fn local_dir_keeps_its_own_dockerignore() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".dockerignore"), "secret\n").unwrap();
        let c = parse(&[format!("src={}", d.path().display())]).unwrap();
        assert_eq!(c.named["src"], NamedContext::Local);
        assert_eq!(c.local["src"].ignore, ["secret"]);
    }

    #[test]
    fn oci_layout_tags_and_digests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.json"), "{}").unwrap();
        let p = d.path().canonicalize().unwrap();
        let l = OciLayoutRef::parse(&format!("{}:v1", p.display())).unwrap();
        assert_eq!(l.tag.as_deref(), Some("v1"));
        assert_eq!(l.dir, p);
        let l = OciLayoutRef::parse(&format!("{}@sha256:ab", p.display())).unwrap();
        assert_eq!(l.digest.as_deref(), Some("sha256:ab"));
        assert!(OciLayoutRef::parse("/nope/nowhere").is_err());
    }
}
