//! Helpers of the build checks: the words an instruction expands, BuildKit's name and
//! reference rules, suggestions, hints.

use crate::args::StageEnv;
use crate::ast::{Instruction, InstructionKind};
use crate::raw::go_quote;
use crate::shell::Expansion;

/// The words BuildKit expands (and checks for undefined variables) in an instruction.
pub(super) fn expanded_words(inst: &Instruction, env: &StageEnv) -> Vec<Expansion> {
    let mut words: Vec<&str> = Vec::new();
    let mut heredocs = Vec::new();
    match &inst.kind {
        InstructionKind::Env { vars } | InstructionKind::Label { labels: vars } => {
            for kv in vars {
                words.push(&kv.key);
                words.push(&kv.value);
            }
        }
        InstructionKind::Add(c) | InstructionKind::Copy(c) => {
            words.extend(c.chown.as_deref());
            words.extend(c.checksum.as_deref());
            words.extend(
                c.sources
                    .iter()
                    .filter(|s| !s.starts_with("<<"))
                    .map(String::as_str),
            );
            words.push(&c.dest);
            heredocs.extend(
                c.heredocs
                    .iter()
                    .filter(|h| h.expand)
                    .map(|h| h.content.as_str()),
            );
        }
        InstructionKind::Workdir { path: w }
        | InstructionKind::User { user: w }
        | InstructionKind::Stopsignal { signal: w } => words.push(w),
        InstructionKind::Volume { paths } => words.extend(paths.iter().map(String::as_str)),
        InstructionKind::Run(r) => words.extend(r.mounts.iter().map(String::as_str)),
        _ => {}
    }
    let mut out: Vec<Expansion> = words
        .into_iter()
        .filter_map(|w| env.expand(w).ok())
        .collect();
    out.extend(
        heredocs
            .into_iter()
            .filter_map(|h| env.expand_heredoc(h).ok()),
    );
    out
}

/// BuildKit's secret-name check: a token from its deny list as a whole `_`-separated word,
/// unless `public` is one too.
pub(super) fn is_secret_name(key: &str) -> bool {
    const DENY: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let lower = key.to_lowercase();
    let has = |tokens: &[&str]| {
        tokens.iter().any(|t| {
            lower.match_indices(t).any(|(i, _)| {
                let before = i == 0 || lower.as_bytes()[i - 1] == b'_';
                let end = i + t.len();
                before && (end == lower.len() || lower.as_bytes()[end] == b'_')
            })
        })
    };
    has(DENY) && !has(&["public"])
}

/// Absolute on Linux, or a Windows drive path (whose platform this parser cannot know).
pub(super) fn is_abs(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || path.starts_with('\\')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

/// A COPY source as a context-relative path for the ignore matcher (`./a/../b` → `b`);
/// None for the whole context.
pub(super) fn context_path(source: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in source.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Quotes a value for an `ENV k=v` hint when it has spaces or quotes.
pub(super) fn shell_quote(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '\t', '"', '\'']) {
        go_quote(value)
    } else {
        value.to_string()
    }
}

/// What to write instead of a shell-form CMD/ENTRYPOINT.
pub(super) fn json_hint(keyword: &str, command: &str) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| go_quote(s));
    let plain = !command.trim().is_empty()
        && !command
            .chars()
            .any(|c| "|&;<>()$`\\\"'*?[]#~=%{}!\n".contains(c));
    if plain {
        let words: Vec<String> = command.split_whitespace().map(json).collect();
        format!("write `{keyword} [{}]`", words.join(", "))
    } else {
        format!(
            "write `{keyword} [\"/bin/sh\", \"-c\", {}]` with `exec` before the program, or set SHELL explicitly",
            json(command.trim())
        )
    }
}

/// BuildKit's `suggest.Search`: the closest option by edit distance, below 3; none on an
/// exact match.
pub(super) fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let norm = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let value_n = norm(value);
    let mut best: Option<(usize, &str)> = None;
    for opt in options {
        let o = norm(opt);
        if o == value_n {
            return None;
        }
        let d = levenshtein(&value_n, &o);
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, opt));
        }
    }
    best.map(|(_, o)| o.to_string())
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether `s` parses as docker's `reference.ParseNormalizedNamed` accepts it:
/// `[domain[:port]/]path[:tag][@digest]`, lower-case path components, not a bare 64-hex id.
pub(super) fn valid_reference(s: &str) -> bool {
    let hex = |s: &str, min: usize| s.len() >= min && s.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() == 64 && hex(s, 64) && s == s.to_lowercase() {
        return false;
    }
    let (rest, digest) = s.split_once('@').map_or((s, None), |(r, d)| (r, Some(d)));
    if let Some(d) = digest {
        let Some((alg, h)) = d.split_once(':') else {
            return false;
        };
        let alg_ok = alg.split(['-', '_', '+', '.']).all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !alg_ok || !hex(h, 32) {
            return false;
        }
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if t.is_empty()
            || t.len() > 128
            || !t.starts_with(word)
            || !t.chars().all(|c| word(c) || c == '.' || c == '-')
        {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let (domain, path) = match name.split_once('/') {
        Some((d, p)) if d.contains(['.', ':']) || d == "localhost" || d != d.to_lowercase() => {
            (Some(d), p)
        }
        _ => (None, name),
    };
    if let Some(d) = domain {
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) if !d.ends_with(']') => (h, Some(p)),
            _ => (d, None),
        };
        let label = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let host_ok = (host.starts_with('[') && host.ends_with(']')) || host.split('.').all(label);
        if !host_ok || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return false;
        }
    }
    path.split('/').all(path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
fn path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let run = |s: &str| s.find(|c: char| !alnum(c)).unwrap_or(s.len());
    let mut rest = component;
    loop {
        let n = run(rest);
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        if rest.is_empty() {
            return true;
        }
        let sep_len = rest.find(alnum).unwrap_or(rest.len());
        let sep = &rest[..sep_len];
        if !matches!(sep, "." | "_" | "__") && !sep.chars().all(|c| c == '-') {
            return false;
        }
        rest = &rest[sep_len..];
    }
}
