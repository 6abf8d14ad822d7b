//! COPY and ADD (BuildKit's `dispatchCopy`): one file op per instruction with a copy
//! action per source; local sources read a context op selecting exactly the paths the
//! instruction names, heredoc sources a small mkfile op.

use std::collections::BTreeMap;

use rbuild_parser::ast::{Copy, Instruction};
use rbuild_parser::heredoc::parse_heredoc;

use super::util::{check_chmod, contains_wildcards, dest_path, normalize_path};
use super::{Lowering, StageState, prefix_command};
use crate::error::Error;
use crate::graph::{Vertex, VertexId};
use crate::op::{ContextSelection, CopyAction, CopySource, FileAction, FileSpec, Op};

/// The name of the main build context.
pub const MAIN_CONTEXT: &str = "context";

fn is_git(src: &str) -> bool {
    let no_fragment = src.split('#').next().unwrap_or(src);
    src.starts_with("git@")
        || src.starts_with("git://")
        || ((src.starts_with("https://")
            || src.starts_with("http://")
            || src.starts_with("ssh://"))
            && no_fragment.trim_end_matches('/').ends_with(".git"))
}

fn is_http(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git(src)
}

/// The file name an `ADD <url>` download gets.
fn url_filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, p)| p);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".into(),
    }
}

impl Lowering<'_> {
    pub(super) fn dispatch_copy(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        c: &Copy,
        is_add: bool,
    ) -> Result<(), Error> {
        let loc = self.location(st, inst);
        let err = |msg: String| Error::at(Some(&loc), msg);
        let keyword = if is_add { "ADD" } else { "COPY" };

        // Expansion (heredoc sources are not words).
        let mut sources = Vec::new();
        let mut heredocs = Vec::new();
        for src in &c.sources {
            match parse_heredoc(src).ok().flatten() {
                Some(h) if c.heredocs.iter().any(|d| d.name == h.name) => heredocs.push(h.name),
                _ => sources.push(self.expand(st, inst, src)?),
            }
        }
        let dest_written = self.expand(st, inst, &c.dest)?;
        let chown = match &c.chown {
            Some(v) => Some(self.expand(st, inst, v)?).filter(|v| !v.is_empty()),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(v) => Some(self.expand(st, inst, v)?).filter(|v| !v.is_empty()),
            None => None,
        };
        if let Some(m) = &chmod {
            check_chmod(m).map_err(&err)?;
        }
        let mut exclude = Vec::with_capacity(c.exclude.len());
        for e in &c.exclude {
            exclude.push(self.expand(st, inst, e)?);
        }
        let checksum = match &c.checksum {
            Some(v) => Some(self.expand(st, inst, v)?).filter(|v| !v.is_empty()),
            None => None,
        };
        if let Some(sum) = &checksum {
            if !is_add {
                return Err(err("checksum can't be specified for COPY".into()));
            }
            if sources.len() != 1 || !heredocs.is_empty() {
                return Err(err(
                    "checksum can't be specified for multiple sources".into()
                ));
            }
            if !is_http(&sources[0]) && !is_git(&sources[0]) {
                return Err(err("checksum requires HTTP(S) or Git sources".into()));
            }
            let valid = is_git(&sources[0])
                || sum.split_once(':').is_some_and(|(alg, hex)| {
                    matches!(alg, "sha256" | "sha384" | "sha512")
                        && !hex.is_empty()
                        && hex
                            .chars()
                            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                });
            if !valid {
                return Err(err(format!("invalid checksum digest format: {sum:?}")));
            }
        }
        let dest = dest_path(&st.workdir, &dest_written);

        // History text, BuildKit's order: flags, sources, heredocs, dest as written.
        let mut msg = String::from(keyword);
        if c.parents {
            msg.push_str(" --parents");
        }
        if let Some(v) = &chown {
            msg.push_str(&format!(" --chown={v}"));
        }
        if let Some(v) = &chmod {
            msg.push_str(&format!(" --chmod={v}"));
        }
        for s in &sources {
            msg.push(' ');
            msg.push_str(s);
        }
        for h in &heredocs {
            msg.push_str(&format!(" <<{h}"));
        }
        msg.push(' ');
        msg.push_str(&dest_written);

        let text = self.step_text(st, inst, false);
        let name = prefix_command(st, &text);

        let mut inputs: Vec<VertexId> = st.root.into_iter().collect();
        let base = st.root.map(|_| 0);
        let created = self.epoch.as_ref().map(|(s, _)| *s);
        let mut actions = Vec::new();

        // The source of local paths: `--from`, or a context op selecting them.
        let local: Vec<&String> = sources
            .iter()
            .filter(|s| !is_http(s) && !is_git(s))
            .collect();
        let mut local_input: Option<usize> = None;
        if !local.is_empty() {
            let root = match (&c.from, is_add) {
                (Some(from), false) => self.source_root(st, inst, from, true)?,
                _ => {
                    let include = context_include(&local, c.parents);
                    let v = Vertex {
                        op: Op::Context(ContextSelection {
                            name: MAIN_CONTEXT.into(),
                            include,
                            exclude: exclude.clone(),
                        }),
                        name: "[internal] load build context".into(),
                        stage: None,
                        location: None,
                        platform: st.platform.clone(),
                        ignore_cache: false,
                        build_args: BTreeMap::new(),
                    };
                    Some(self.graph.add(v, &[]))
                }
            };
            let root = match root {
                Some(r) => r,
                None => self.empty_vertex(&st.platform),
            };
            inputs.push(root);
            local_input = Some(inputs.len() - 1);
        }

        for src in &sources {
            if is_git(src) {
                if !is_add {
                    return Err(err("source can't be a git ref for COPY".into()));
                }
                let (remote, fragment) = match src.split_once('#') {
                    Some((r, f)) => (r.to_string(), Some(f)),
                    None => (src.clone(), None),
                };
                let (reference, subdir) = match fragment {
                    None => (None, None),
                    Some(f) => match f.split_once(':') {
                        Some((r, d)) => (
                            Some(r.to_string()).filter(|r| !r.is_empty()),
                            Some(d.to_string()).filter(|d| !d.is_empty()),
                        ),
                        None => (Some(f.to_string()).filter(|r| !r.is_empty()), None),
                    },
                };
                let mut a = CopyAction::new(
                    CopySource::Git {
                        remote,
                        reference,
                        subdir,
                        keep_git_dir: c.keep_git_dir.unwrap_or(false),
                        checksum: checksum.clone(),
                    },
                    dest.clone(),
                );
                a.follow_symlinks = false;
                a.dir_contents_only = true;
                a.allow_wildcard = false;
                a.allow_empty_wildcard = false;
                self.finish_action(&mut a, &chown, &chmod, &exclude, c.link, created);
                actions.push(FileAction::Copy(Box::new(a)));
                continue;
            }
            if is_http(src) {
                if !is_add {
                    return Err(err("source can't be a URL for COPY".into()));
                }
                let mut a = CopyAction::new(
                    CopySource::Url {
                        url: src.clone(),
                        filename: url_filename(src),
                        checksum: checksum.clone(),
                    },
                    dest.clone(),
                );
                a.follow_symlinks = false;
                a.dir_contents_only = false;
                a.allow_wildcard = false;
                a.allow_empty_wildcard = false;
                a.attempt_unpack = c.unpack.unwrap_or(false);
                self.finish_action(&mut a, &chown, &chmod, &exclude, c.link, created);
                actions.push(FileAction::Copy(Box::new(a)));
                continue;
            }
            let Some(input) = local_input else {
                return Err(Error::Internal("local COPY source without an input".into()));
            };
            let (src_path, patterns, required) = if c.parents {
                let (parent, pattern) = match src.split_once("/./") {
                    Some((p, pat)) => (p.to_string(), pat.to_string()),
                    None => ("/".to_string(), src.clone()),
                };
                let pattern = normalize_path("/", &pattern, false);
                let required = if !contains_wildcards(&parent) && !contains_wildcards(&pattern) {
                    vec![normalize_path("/", &format!("{parent}/{pattern}"), false)]
                } else {
                    Vec::new()
                };
                (
                    normalize_path("/", &parent, false),
                    vec![pattern.trim_start_matches('/').to_string()],
                    required,
                )
            } else {
                (normalize_path("/", src, false), Vec::new(), Vec::new())
            };
            let mut a = CopyAction::new(
                CopySource::Input {
                    input,
                    path: src_path,
                },
                dest.clone(),
            );
            a.include_patterns = patterns;
            a.required_paths = required;
            a.attempt_unpack = c.unpack.unwrap_or(is_add);
            self.finish_action(&mut a, &chown, &chmod, &exclude, c.link, created);
            actions.push(FileAction::Copy(Box::new(a)));
        }

        for h in &heredocs {
            let Some(doc) = c.heredocs.iter().find(|d| &d.name == h) else {
                continue;
            };
            let mut data = doc.body();
            if doc.expand {
                data = st
                    .env
                    .expand_heredoc(&data)
                    .map_err(|e| err(e.buildkit_message(&data)))?
                    .result;
            }
            let path = normalize_path("/", &doc.name, false);
            let file = Vertex {
                op: Op::File(FileSpec {
                    base: None,
                    actions: vec![FileAction::Mkfile {
                        path: path.clone(),
                        mode: 0o644,
                        data,
                        owner: None,
                        created,
                    }],
                }),
                name: "[internal] preparing inline document".into(),
                stage: None,
                location: Some(loc.clone()),
                platform: st.platform.clone(),
                ignore_cache: false,
                build_args: BTreeMap::new(),
            };
            let id = self.graph.add(file, &[]);
            inputs.push(id);
            let mut a = CopyAction::new(
                CopySource::Input {
                    input: inputs.len() - 1,
                    path,
                },
                dest.clone(),
            );
            a.follow_symlinks = false;
            a.dir_contents_only = false;
            a.allow_wildcard = false;
            a.allow_empty_wildcard = false;
            self.finish_action(&mut a, &chown, &chmod, &[], c.link, created);
            actions.push(FileAction::Copy(Box::new(a)));
        }

        let op = Op::File(FileSpec { base, actions });
        let v = self.vertex(st, op, name, inst);
        st.root = Some(self.graph.add(v, &inputs));
        self.commit(st, format!("{msg} # buildkit"), true);
        Ok(())
    }

    fn finish_action(
        &self,
        a: &mut CopyAction,
        chown: &Option<String>,
        chmod: &Option<String>,
        exclude: &[String],
        link: bool,
        created: Option<i64>,
    ) {
        a.chown = chown.clone();
        a.chmod = chmod.clone();
        a.exclude = exclude.to_vec();
        a.link = link;
        a.created = created;
    }
}

/// The context paths a COPY reads (relative, no leading `/`); empty means everything.
fn context_include(sources: &[&String], parents: bool) -> Vec<String> {
    let mut out = Vec::new();
    for src in sources {
        let joined = if parents {
            src.replacen("/./", "/", 1)
        } else {
            (*src).clone()
        };
        let p = normalize_path("/", &joined, false);
        let rel = p.trim_start_matches('/').to_string();
        if rel.is_empty() {
            return Vec::new();
        }
        if !out.contains(&rel) {
            out.push(rel);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_git() {
        assert!(is_http("https://example.com/a.tar.gz"));
        assert!(!is_http("https://github.com/o/r.git#main"));
        assert!(is_git("git@github.com:o/r.git"));
        assert_eq!(
            url_filename("https://example.com/dl/a.tar.gz?x=1"),
            "a.tar.gz"
        );
        assert_eq!(url_filename("https://example.com/"), "__unnamed__");
        assert_eq!(url_filename("https://example.com"), "__unnamed__");
    }

    #[test]
    fn includes() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = s(&["b.txt", "./a/", "a"]);
        let refs: Vec<&String> = a.iter().collect();
        assert_eq!(context_include(&refs, false), ["a", "b.txt"]);
        let all = s(&["src", "."]);
        let refs: Vec<&String> = all.iter().collect();
        assert!(context_include(&refs, false).is_empty());
        let p = s(&["src/./pkg/*.go"]);
        let refs: Vec<&String> = p.iter().collect();
        assert_eq!(context_include(&refs, true), ["src/pkg/*.go"]);
    }
}
