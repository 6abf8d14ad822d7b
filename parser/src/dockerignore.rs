//! `.dockerignore` files and Docker's `patternmatcher` semantics.
//!
//! This reproduces the Go code that decides what `docker build` sends as its context:
//! - [`parse_ignore_file`] is `moby/patternmatcher/ignorefile.ReadAll`;
//! - [`load_for_build`] is BuildKit's `dockerui` choice of ignore file
//!   (`<Dockerfile>.dockerignore` before `<context>/.dockerignore`);
//! - [`PatternMatcher`] is `moby/patternmatcher`, and
//!   [`PatternMatcher::could_reinclude_below`] is fsutil's directory-pruning rule.
//!
//! patternmatcher calls Go's `filepath.Match` only to reject malformed patterns. It matches by
//! translating each pattern into a Go regular expression: `*` becomes `[^/]*`, `?` becomes
//! `[^/]`, `**/` becomes `(.*/)?`, `.+()|{}$` are escaped, `[` and `]` are copied, and `\c`
//! stays the regexp escape `\c`. Two shortcuts skip the regexp: a pattern with no special
//! characters must equal the path, and `x/**` / `**x` become prefix and suffix tests. This
//! module makes the same translation and runs it on a small RE2-compatible engine (linear
//! time, no backtracking), so Docker's quirks carry over too. For example `*.md` matches only
//! at the top level, `**file` also matches `dir/myfile`, `.` matches nothing, and `[*]`
//! becomes `[[^/]*]`, which matches `]`, not `*`.
//!
//! A pattern matches a path when it matches the path or any of its parent directories, and the
//! last matching pattern decides (`!` patterns re-include).
//!
//! BuildKit sends the Dockerfile and the ignore file even when they are excluded. This module
//! does not do that: the caller must.

use std::path::{Path, PathBuf};

/// Errors from reading ignore files and compiling patterns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// A lone `!` (patternmatcher: `illegal exclusion pattern: "!"`); `pattern` as given.
    #[error("illegal exclusion pattern: {pattern:?}")]
    IllegalExclusion { pattern: String },
    /// A malformed pattern (Go's `filepath.ErrBadPattern`); `pattern` as given.
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// The ignore file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line too long for Go's `bufio.Scanner` (64 KiB), which makes Docker fail too.
    #[error("cannot parse {}: line {line} is longer than 65535 bytes", path.display())]
    LineTooLong { path: PathBuf, line: usize },
}

impl IgnoreError {
    fn bad(pattern: &str, reason: impl Into<String>) -> Self {
        let (pattern, reason) = (pattern.to_owned(), reason.into());
        IgnoreError::BadPattern { pattern, reason }
    }
}

/// Go's `bufio.MaxScanTokenSize`: a line of this many bytes (without its `\n`) is an error.
const MAX_LINE: usize = 64 * 1024;

/// Reads a `.dockerignore` file's text like moby's `ignorefile.ReadAll`: BOM strip on the first
/// line, `#` comment lines (only when `#` is the very first character), trim, skip empty,
/// `!` exclusions (the rest is trimmed again), `filepath.Clean` + `ToSlash`, and one leading `/`
/// removed (`/` alone stays).
pub fn parse_ignore_file(text: &str) -> Vec<String> {
    let lines = scan_lines(text).enumerate().map(|(i, line)| {
        let bom = line.strip_prefix('\u{feff}').filter(|_| i == 0);
        bom.unwrap_or(line)
    });
    let patterns = lines.filter(|line| !line.starts_with('#')).map(str::trim);
    let patterns = patterns.filter(|line| !line.is_empty()).map(|line| {
        let (bang, body) = match line.strip_prefix('!') {
            Some(rest) => ("!", rest.trim()),
            None => ("", line),
        };
        if body.is_empty() {
            return bang.to_owned();
        }
        let cleaned = clean(body);
        let relative = cleaned.strip_prefix('/').filter(|rest| !rest.is_empty());
        format!("{bang}{}", relative.unwrap_or(&cleaned))
    });
    patterns.collect()
}

/// Lines as `bufio.ScanLines` yields them: split on `\n`, one trailing `\r` dropped, no empty
/// line after a final `\n`.
fn scan_lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines = (!text.is_empty()).then(|| body.split('\n'));
    let lines = lines.into_iter().flatten();
    lines.map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// Finds the ignore file for a build and parses it.
///
/// `<Dockerfile path>.dockerignore` (next to the Dockerfile, e.g.
/// `docker/app.Dockerfile.dockerignore`) takes precedence over `<context>/.dockerignore`, as
/// BuildKit does. An empty file still counts as found. A missing file, or a directory in its
/// place, means "not there". Returns the path used (if any) and the patterns. Invalid UTF-8 is
/// replaced with U+FFFD. A line of 64 KiB or more is an error, as it is for Go's scanner.
pub fn load_for_build(
    context_dir: &Path,
    dockerfile: &Path,
) -> Result<(Option<PathBuf>, Vec<String>), IgnoreError> {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    for path in [PathBuf::from(specific), context_dir.join(".dockerignore")] {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if matches!(e.kind(), NotFound | IsADirectory | NotADirectory) => continue,
            Err(source) => return Err(IgnoreError::Read { path, source }),
        };
        let mut lines = bytes.split(|&b| b == b'\n');
        if let Some(i) = lines.position(|line| line.len() >= MAX_LINE) {
            return Err(IgnoreError::LineTooLong { path, line: i + 1 });
        }
        let patterns = parse_ignore_file(&String::from_utf8_lossy(&bytes));
        return Ok((Some(path), patterns));
    }
    Ok((None, Vec::new()))
}

/// How many patterns a [`MatchInfo`] tracks; later ones are re-checked against every parent.
const TRACKED: usize = 256;

/// What a directory's match left for its children (patternmatcher's `MatchInfo`).
///
/// [`MatchInfo::default()`] means "no parent information" (a top-level path, or unknown): the
/// parent directories are then checked from scratch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchInfo {
    /// Bit `i`: pattern `i` matched the path or one of its parents (or, for the BuildKit walk,
    /// what Go records).
    bits: [u64; TRACKED / 64],
    /// The pattern count of the matcher that made it; None for the default value.
    patterns: Option<usize>,
}

impl MatchInfo {
    fn get(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    fn set(&mut self, i: usize) {
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

/// patternmatcher's match types.
#[derive(Debug, Clone)]
enum Kind {
    /// The path must equal the cleaned pattern.
    Exact,
    /// `x**`: the path starts with these bytes.
    Prefix(Vec<u8>),
    /// `**x`: the path ends with these bytes (or is them minus a leading `/`).
    Suffix(Vec<u8>),
    Regex(re::Regex),
}

impl Pattern {
    fn is_match(&self, path: &str) -> bool {
        let bytes = path.as_bytes();
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => bytes.starts_with(prefix),
            Kind::Suffix(suffix) => {
                let bare = suffix.strip_prefix(b"/") == Some(bytes);
                bytes.ends_with(suffix) || bare
            }
            Kind::Regex(regex) => regex.is_match(path),
        }
    }
}

/// A compiled list of `.dockerignore` patterns (moby's `patternmatcher.PatternMatcher`).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    sources: Vec<String>,
    exclusions: bool,
    /// fsutil's `onlyPrefixExcludeExceptions`: every `!` pattern is a plain path.
    only_prefix_exceptions: bool,
}

impl PatternMatcher {
    /// Compile patterns (Go `filepath.Match` syntax plus `**` and `!` exceptions).
    ///
    /// Each pattern is trimmed (blank ones are dropped) and `filepath.Clean`ed before its `!`
    /// is removed, exactly as patternmatcher does. A malformed pattern (bad `[` class, trailing
    /// backslash, lone `!`) is an error naming the pattern. Docker compiles its regexp only on
    /// first use and fails the build then; this does it here, so a pattern Go would reject
    /// lazily (say `[z-a]`, or `\q`) is rejected even if Docker never got to use it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        let mut matcher = PatternMatcher {
            patterns: Vec::new(),
            sources: Vec::new(),
            exclusions: false,
            only_prefix_exceptions: true,
        };
        let sources = patterns.iter().map(AsRef::as_ref);
        for source in sources.filter(|s| !s.trim().is_empty()) {
            let mut cleaned = clean(source.trim());
            let exclusion = cleaned.starts_with('!');
            if exclusion {
                if cleaned.len() == 1 {
                    let pattern = source.to_owned();
                    return Err(IgnoreError::IllegalExclusion { pattern });
                }
                cleaned.remove(0);
                matcher.exclusions = true;
                let plain = without_trailing_glob(&cleaned);
                matcher.only_prefix_exceptions &= !plain.contains(['*', '[', ']', '?', '^', '\\']);
            }
            if !glob_syntax_ok(&cleaned) {
                return Err(IgnoreError::bad(source, "invalid filepath.Match syntax"));
            }
            let kind = compile(&cleaned)
                .map_err(|e| IgnoreError::bad(source, format!("error parsing regexp: {e}")))?;
            let pattern = Pattern {
                cleaned,
                exclusion,
                kind,
            };
            matcher.patterns.push(pattern);
            matcher.sources.push(source.to_owned());
        }
        Ok(matcher)
    }

    /// patternmatcher's `MatchesOrParentMatches`: is this context-relative path
    /// (`/`-separated, no leading `./`) excluded?
    pub fn matches(&self, path: &str) -> bool {
        let dir = go_dir(path);
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.is_match(path) || ancestors(&dir).any(|a| pattern.is_match(a)) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Like patternmatcher's `MatchesUsingParentResults`, for walks: pass the [`MatchInfo`]
    /// returned for the parent directory (or the default for top-level entries) and keep the
    /// returned one for this path's children.
    ///
    /// This always agrees with [`matches`](Self::matches). The Go code does not always: it
    /// records nothing for a pattern it skipped at the parent. So with `a/b` and then `!a`,
    /// Go's walk excludes `a/b` but `MatchesOrParentMatches` keeps it. moby#43037 meant the
    /// two to agree. For Go's exact walk result, use
    /// [`matches_using_parent_buildkit`](Self::matches_using_parent_buildkit).
    pub fn matches_using_parent(&self, path: &str, parent: MatchInfo) -> (bool, MatchInfo) {
        self.walk_step(path, parent, false)
    }

    /// `MatchesUsingParentResults` as BuildKit (fsutil) runs it, bug for bug (see
    /// [`matches_using_parent`](Self::matches_using_parent)). Beyond 256 patterns the later
    /// ones are checked against every parent directory, not against the parent's record.
    pub fn matches_using_parent_buildkit(&self, path: &str, info: MatchInfo) -> (bool, MatchInfo) {
        self.walk_step(path, info, true)
    }

    fn walk_step(&self, path: &str, parent: MatchInfo, buildkit: bool) -> (bool, MatchInfo) {
        let count = self.patterns.len();
        let have_parent = parent.patterns == Some(count);
        let dir = if have_parent && count <= TRACKED {
            String::new()
        } else {
            go_dir(path)
        };
        let mut info = MatchInfo {
            patterns: Some(count),
            ..MatchInfo::default()
        };
        let mut matched = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let tracked = i < TRACKED;
            let hit = if have_parent && tracked && parent.get(i) {
                true
            } else {
                // Go skips an inclusion once matched (an exclusion until matched): it cannot
                // change the result then, but its record is still needed for the children.
                if pattern.exclusion != matched && (buildkit || !tracked) {
                    continue;
                }
                let parents = !have_parent || !tracked;
                pattern.is_match(path) || (parents && ancestors(&dir).any(|a| pattern.is_match(a)))
            };
            if hit {
                if tracked {
                    info.set(i);
                }
                matched = !pattern.exclusion;
            }
        }
        (matched, info)
    }

    /// True if any pattern is an exclusion (`!`).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// For pruning an excluded directory during a walk, as fsutil decides it: false when no `!`
    /// pattern could re-include anything below `dir`, so the walk can skip it entirely.
    ///
    /// As fsutil does: with no `!` patterns, false. If a `!` pattern has glob characters
    /// (`*[]?^\`) other than a trailing `/*` or `/**`, true. Otherwise true only when some `!`
    /// pattern is `dir` or lies below it.
    pub fn could_reinclude_below(&self, dir: &str) -> bool {
        if !self.exclusions || !self.only_prefix_exceptions {
            return self.exclusions;
        }
        let dir_slash = format!("{dir}/");
        let mut exceptions = self.patterns.iter().filter(|p| p.exclusion);
        exceptions
            .any(|p| format!("{}/", without_trailing_glob(&p.cleaned)).starts_with(&dir_slash))
    }

    /// The source patterns, in order, as given to [`new`](Self::new) (blank ones dropped).
    pub fn patterns(&self) -> &[String] {
        &self.sources
    }
}

/// fsutil's `patternWithoutTrailingGlob`.
fn without_trailing_glob(pattern: &str) -> &str {
    let pattern = pattern.strip_suffix("/**").unwrap_or(pattern);
    pattern.strip_suffix("/*").unwrap_or(pattern)
}

/// Go's `path.Clean` (what `filepath.Clean` does on Unix).
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|&last| last != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir` on Unix.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_owned(),
    }
}

/// The parent directories patternmatcher tries: each leading run of components of `dir`
/// (`strings.Split(dir, "/")[:i+1]`), none for `.`.
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let ends = (dir != ".").then(|| dir.match_indices('/').map(|(i, _)| i).chain([dir.len()]));
    ends.into_iter().flatten().map(move |end| &dir[..end])
}

/// Whether Go's `filepath.Match` accepts `pattern`: the checks of its `matchChunk`, which it
/// runs on every `*`-separated chunk whatever the name. Chunks never split a class that
/// `matchChunk` accepts, so one pass over the whole pattern gives the same answer.
fn glob_syntax_ok(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                let rest = chars.as_str();
                let mut s = rest.strip_prefix('^').unwrap_or(rest);
                let mut ranges = 0;
                loop {
                    if let Some(after) = s.strip_prefix(']').filter(|_| ranges > 0) {
                        s = after;
                        break;
                    }
                    let Some(mut after) = class_escape(s) else {
                        return false;
                    };
                    if let Some(range_end) = after.strip_prefix('-') {
                        let Some(after_end) = class_escape(range_end) else {
                            return false;
                        };
                        after = after_end;
                    }
                    s = after;
                    ranges += 1;
                }
                chars = s.chars();
            }
            '\\' if chars.next().is_none() => return false,
            _ => {}
        }
    }
    true
}

/// Go's `getEsc`: one (possibly escaped) class character, which must not be the last one.
fn class_escape(s: &str) -> Option<&str> {
    let mut chars = s.chars();
    match chars.next()? {
        '-' | ']' => return None,
        '\\' => {
            chars.next()?;
        }
        _ => {}
    }
    Some(chars.as_str()).filter(|rest| !rest.is_empty())
}

/// patternmatcher's `compile`: picks the match type and builds the regexp.
fn compile(cleaned: &str) -> Result<Kind, String> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut regex = String::from("^");
    let mut detected = Detected::Exact;
    let mut chars = cleaned.chars().peekable();
    chars.next_if_eq(&'\u{feff}'); // Go's text/scanner drops a leading byte-order mark
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                chars.next_if_eq(&'/');
                // At the end Go writes no `.*` for a prefix match, which uses no regexp anyway.
                let at_end = chars.peek().is_none();
                regex.push_str(if at_end { ".*" } else { "(.*/)?" });
                detected = match detected {
                    _ if first => Detected::Suffix,
                    Detected::Exact if at_end => Detected::Prefix,
                    _ => Detected::Regexp,
                };
            }
            '*' | '?' => {
                regex.push_str(if c == '*' { "[^/]*" } else { "[^/]" });
                detected = Detected::Regexp;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => regex.extend(['\\', c]),
            '\\' => {
                regex.push('\\');
                if let Some(next) = chars.next() {
                    regex.push(next);
                    detected = Detected::Regexp;
                }
            }
            '[' | ']' => {
                regex.push(c);
                detected = Detected::Regexp;
            }
            _ => regex.push(c),
        }
        first = false;
    }
    let bytes = cleaned.as_bytes();
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(bytes[..bytes.len().saturating_sub(2)].to_vec()),
        Detected::Suffix => Kind::Suffix(bytes.get(2..).unwrap_or_default().to_vec()),
        Detected::Regexp => Kind::Regex(re::Regex::new(&(regex + "$"))?),
    })
}

/// The part of Go's RE2 syntax (`regexp.Compile`, Perl flags) that the translation can produce,
/// run as a Pike VM. `|`, `+` and `{` never reach it unescaped, and `(` only as `(.*/)`.
mod re;

#[cfg(test)]
mod tests;
