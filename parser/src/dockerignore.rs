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
mod re {
    /// Sorted, disjoint, inclusive code point ranges.
    type Ranges = Vec<(u32, u32)>;

    /// Zero-width assertions.
    #[derive(Debug, Clone, Copy)]
    enum Look {
        Start,
        End,
        Word,
        NotWord,
    }

    /// Instructions; jumps are relative, so fragments can be wrapped without patching.
    #[derive(Debug, Clone)]
    enum Inst {
        Lit(char),
        AnyNotNl,
        Class(Ranges),
        Look(Look),
        Split(isize, isize),
        Jmp(isize),
        Match,
    }

    /// A compiled expression. The translation always starts it with `^`, so threads start at
    /// the beginning of the text only (Go's `MatchString` would try every position).
    #[derive(Debug, Clone)]
    pub(super) struct Regex {
        insts: Vec<Inst>,
    }

    fn normalize(mut ranges: Ranges, negated: bool) -> Ranges {
        ranges.sort_unstable();
        let mut merged: Ranges = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        if !negated {
            return merged;
        }
        let mut out = Vec::new();
        let mut next = 0;
        for (lo, hi) in merged {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        out.extend((next <= 0x10FFFF).then_some((next, 0x10FFFF)));
        out
    }

    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

    /// `\d \D \s \S \w \W` (ASCII, as in Go); `\p`/`\P` need Unicode tables: unsupported.
    fn perl_class(letter: char) -> Result<Option<Ranges>, String> {
        let base: &[(u32, u32)] = match letter.to_ascii_lowercase() {
            'd' => DIGIT,
            's' => &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
            'w' => WORD,
            'p' => return Err(format!("unsupported Unicode class escape `\\{letter}`")),
            _ => return Ok(None),
        };
        Ok(Some(normalize(base.to_vec(), letter.is_ascii_uppercase())))
    }

    /// `[:name:]` and `[:^name:]` (ASCII, as in Go).
    fn posix_class(name: &str) -> Option<Ranges> {
        let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
        let negated = inner.starts_with('^');
        let ranges: &[(u32, u32)] = match inner.trim_start_matches('^') {
            "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
            "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
            "ascii" => &[(0x00, 0x7F)],
            "blank" => &[(0x09, 0x09), (0x20, 0x20)],
            "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
            "digit" => DIGIT,
            "graph" => &[(0x21, 0x7E)],
            "lower" => &[(0x61, 0x7A)],
            "print" => &[(0x20, 0x7E)],
            "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
            "space" => &[(0x09, 0x0D), (0x20, 0x20)],
            "upper" => &[(0x41, 0x5A)],
            "word" => WORD,
            "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return None,
        };
        Some(normalize(ranges.to_vec(), negated))
    }

    /// Wraps a fragment in `*` or `?`.
    fn repeat(sub: Vec<Inst>, star: bool) -> Vec<Inst> {
        let len = sub.len() as isize;
        let mut out = vec![Inst::Split(1, len + 1 + isize::from(star))];
        out.extend(sub);
        out.extend(star.then_some(Inst::Jmp(-len - 1)));
        out
    }

    struct Parser {
        chars: Vec<char>,
        pos: usize,
    }

    impl Parser {
        fn peek_at(&self, offset: usize) -> Option<char> {
            self.chars.get(self.pos + offset).copied()
        }

        fn bump(&mut self) -> Option<char> {
            let c = self.peek_at(0)?;
            self.pos += 1;
            Some(c)
        }

        fn eat(&mut self, s: &str) -> bool {
            let hit = s
                .chars()
                .enumerate()
                .all(|(i, c)| self.peek_at(i) == Some(c));
            self.pos += if hit { s.chars().count() } else { 0 };
            hit
        }

        /// A sequence of items up to `)` or the end (groups never nest).
        fn concat(&mut self) -> Result<Vec<Inst>, String> {
            let mut items: Vec<Vec<Inst>> = Vec::new();
            let mut repeated = false;
            while let Some(c) = self.peek_at(0).filter(|&c| c != ')') {
                self.pos += 1;
                let item = match c {
                    '*' | '?' => {
                        self.eat("?"); // non-greedy: the same set of matches
                        let sub = items.pop().filter(|_| !repeated);
                        let sub = sub.ok_or_else(|| format!("bad repetition operator: `{c}`"))?;
                        items.push(repeat(sub, c == '*'));
                        repeated = true;
                        continue;
                    }
                    '(' => {
                        let inner = self.concat()?;
                        if !self.eat(")") {
                            return Err("missing closing ): `(`".to_owned());
                        }
                        inner
                    }
                    '[' => vec![Inst::Class(self.class()?)],
                    '\\' if self.eat("Q") => {
                        // `\Q...\E`: literal text up to `\E` or the end.
                        while self.peek_at(0).is_some() && !self.eat("\\E") {
                            items.extend(self.bump().map(|c| vec![Inst::Lit(c)]));
                        }
                        repeated = false;
                        continue;
                    }
                    '\\' => vec![self.escape_outside_class()?],
                    '.' => vec![Inst::AnyNotNl],
                    '^' => vec![Inst::Look(Look::Start)],
                    '$' => vec![Inst::Look(Look::End)],
                    _ => vec![Inst::Lit(c)],
                };
                items.push(item);
                repeated = false;
            }
            Ok(items.into_iter().flatten().collect())
        }

        /// After a backslash outside a class.
        fn escape_outside_class(&mut self) -> Result<Inst, String> {
            let c = self
                .bump()
                .ok_or("trailing backslash at end of expression")?;
            Ok(match c {
                'A' => Inst::Look(Look::Start),
                'z' => Inst::Look(Look::End),
                'b' => Inst::Look(Look::Word),
                'B' => Inst::Look(Look::NotWord),
                _ => match perl_class(c)? {
                    Some(ranges) => Inst::Class(ranges),
                    None => Inst::Lit(self.escape(c)?),
                },
            })
        }

        /// Go's `parseEscape`, after the backslash and `c`.
        fn escape(&mut self, c: char) -> Result<char, String> {
            let invalid = || format!("invalid escape sequence: `\\{c}`");
            let octal = |p: &Self| p.peek_at(0).and_then(|d| d.to_digit(8));
            let value = match c {
                '1'..='7' if octal(self).is_none() => return Err(invalid()), // backreference
                '0'..='7' => {
                    let mut value = c.to_digit(8).unwrap_or_default();
                    for _ in 0..2 {
                        let Some(d) = octal(self) else { break };
                        value = value * 8 + d;
                        self.pos += 1;
                    }
                    value
                }
                'x' => {
                    let mut hex = || self.bump().and_then(|d| d.to_digit(16));
                    match (hex(), hex()) {
                        (Some(high), Some(low)) => high * 16 + low,
                        _ => return Err(invalid()),
                    }
                }
                'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
                    [7, 12, 10, 13, 9, 11]["afnrtv".find(c).unwrap_or(0)]
                }
                _ if c.is_ascii() && !c.is_ascii_alphanumeric() => u32::from(c),
                _ => return Err(invalid()),
            };
            char::from_u32(value).ok_or_else(invalid)
        }

        /// Go's `parseClass`, after the `[`.
        fn class(&mut self) -> Result<Ranges, String> {
            let negated = self.eat("^");
            let mut ranges = Vec::new();
            let mut first = true;
            loop {
                match self.peek_at(0) {
                    None => return Err("missing closing ]".to_owned()),
                    Some(']') if !first => break,
                    _ => first = false,
                }
                if let Some(group) = self.named_class()? {
                    ranges.extend(group);
                    continue;
                }
                if self.peek_at(0) == Some('\\') {
                    if let Some(group) = self.peek_at(1).map(perl_class).transpose()?.flatten() {
                        ranges.extend(group);
                        self.pos += 2;
                        continue;
                    }
                }
                let lo = self.class_char()?;
                let mut hi = lo;
                if self.peek_at(0) == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                    self.pos += 1;
                    hi = self.class_char()?;
                }
                if hi < lo {
                    return Err(format!("invalid character class range: `{lo}-{hi}`"));
                }
                ranges.push((u32::from(lo), u32::from(hi)));
            }
            self.pos += 1;
            Ok(normalize(ranges, negated))
        }

        /// `[:name:]`; like Go, the closing `:]` is looked for in the rest of the expression.
        fn named_class(&mut self) -> Result<Option<Ranges>, String> {
            if self.peek_at(0) != Some('[') || self.peek_at(1) != Some(':') {
                return Ok(None);
            }
            let rest = self.chars.get(self.pos + 2..).unwrap_or_default();
            let Some(i) = rest.windows(2).position(|w| w == [':', ']']) else {
                return Ok(None);
            };
            let end = self.pos + i + 4;
            let name: String = self
                .chars
                .get(self.pos..end)
                .unwrap_or_default()
                .iter()
                .collect();
            self.pos = end;
            let ranges = posix_class(&name);
            ranges
                .map(Some)
                .ok_or_else(|| format!("invalid character class range: `{name}`"))
        }

        fn class_char(&mut self) -> Result<char, String> {
            match self.bump() {
                None => Err("missing closing ]".to_owned()),
                Some('\\') => {
                    let c = self
                        .bump()
                        .ok_or("trailing backslash at end of expression")?;
                    self.escape(c)
                }
                Some(c) => Ok(c),
            }
        }
    }

    fn is_word(c: &char) -> bool {
        c.is_ascii_alphanumeric() || *c == '_'
    }

    impl Regex {
        pub(super) fn new(expr: &str) -> Result<Self, String> {
            let mut parser = Parser {
                chars: expr.chars().collect(),
                pos: 0,
            };
            let mut insts = parser.concat()?;
            if parser.pos < parser.chars.len() {
                return Err("unexpected ): `)`".to_owned());
            }
            insts.push(Inst::Match);
            Ok(Regex { insts })
        }

        /// Adds the threads reachable from `pc` at `pos` to `list`; true on reaching Match.
        /// `marks[pc] == pos + 1` means already added for `pos` (each list has its own `pos`).
        fn add(
            &self,
            list: &mut Vec<usize>,
            marks: &mut [usize],
            pc: usize,
            text: &[char],
            pos: usize,
        ) -> bool {
            let mut stack = vec![pc];
            while let Some(pc) = stack.pop() {
                match marks.get_mut(pc) {
                    Some(mark) if *mark != pos + 1 => *mark = pos + 1,
                    _ => continue,
                }
                let jump = |offset: &isize| pc.checked_add_signed(*offset);
                let before = || {
                    pos.checked_sub(1)
                        .and_then(|i| text.get(i))
                        .is_some_and(is_word)
                };
                let after = || text.get(pos).is_some_and(is_word);
                let holds = |look: &Look| match look {
                    Look::Start => pos == 0,
                    Look::End => pos == text.len(),
                    Look::Word => before() != after(),
                    Look::NotWord => before() == after(),
                };
                match self.insts.get(pc) {
                    Some(Inst::Match) => return true,
                    Some(Inst::Jmp(to)) => stack.extend(jump(to)),
                    Some(Inst::Split(a, b)) => {
                        stack.extend([jump(b), jump(a)].into_iter().flatten())
                    }
                    Some(Inst::Look(look)) => stack.extend(holds(look).then_some(pc + 1)),
                    Some(_) => list.push(pc),
                    None => {}
                }
            }
            false
        }

        pub(super) fn is_match(&self, text: &str) -> bool {
            let text: Vec<char> = text.chars().collect();
            let mut marks = vec![0; self.insts.len()];
            let (mut current, mut next) = (Vec::new(), Vec::new());
            for pos in 0..=text.len() {
                if pos == 0 && self.add(&mut current, &mut marks, 0, &text, pos) {
                    return true;
                }
                let Some(&c) = text.get(pos) else { break };
                for &pc in &current {
                    let step = match self.insts.get(pc) {
                        Some(Inst::Lit(lit)) => *lit == c,
                        Some(Inst::AnyNotNl) => c != '\n',
                        Some(Inst::Class(ranges)) => ranges
                            .iter()
                            .any(|&(lo, hi)| (lo..=hi).contains(&u32::from(c))),
                        _ => false,
                    };
                    if step && self.add(&mut next, &mut marks, pc + 1, &text, pos + 1) {
                        return true;
                    }
                }
                if next.is_empty() {
                    return false;
                }
                current.clear();
                std::mem::swap(&mut current, &mut next);
            }
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// patternmatcher_test.go's TestMatches and Go's filepath.Match table (as TestMatch runs
    /// it), then cases of our own: top level only, parents, `.`, `*`, regexp quirks.
    #[rustfmt::skip]
    const SINGLE: &[(&str, &str, bool)] = &[
        ("**", "file", true), ("**", "file/", true), ("**/", "file", true), ("**/", "file/", true),
        ("**", "/", true), ("**/", "/", true), ("**", "dir/file", true), ("**/", "dir/file", true),
        ("**", "dir/file/", true), ("**/", "dir/file/", true), ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true), ("dir/**", "dir/file", true), ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true), ("dir/**", "dir/dir2/file/", true), ("**/dir", "dir", true),
        ("**/dir", "dir/file", true), ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true), ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true), ("**file", "file", true), ("**file", "dir/file", true),
        ("**/file", "dir/file", true), ("**file", "dir/dir/file", true), ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true), ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true), ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true), ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false), ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true), ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true), ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false), ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true), ("a[b-d]e", "ae", false), ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false), ("a[^b-d]e", "aze", true), (".*", ".foo", true), (".*", "foo", false),
        ("abc.def", "abcdef", false), ("abc.def", "abc.def", true), ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true), ("abc?def", "abcdef", false), ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true), ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true), ("abc/**", "abc", false), ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true), ("**/.foo", ".foo", true), ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true), ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true), ("a\\*b", "a*b", true),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
        ("abc", "abc", true), ("*", "abc", true), ("*c", "abc", true), ("a*", "a", true),
        ("a*", "ab/c", true), ("a*/b", "abc/b", true), ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true), ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true), ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[^c]", "abc", false), ("ab[^e-g]", "abc", true), ("a\\*b", "ab", false), ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true), ("a???b", "a☺b", false), ("[a-ζ]*", "α", true), ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false), ("a*b", "a/b", false), ("[\\]a]", "]", true), ("[\\-]", "-", true),
        ("[x\\-]", "-", true), ("[x\\-]", "z", false), ("[\\-x]", "x", true), ("*x", "xxx", true),
        ("*.md", "README.md", true), ("*.md", "docs/README.md", false), ("**/*.md", "docs/a/R.md", true),
        ("docs", "docs/a/b.txt", true), ("docs/", "docs/a", true), ("./docs", "docs/a", true),
        (".", "a", false), ("*", "a/b/c", true), ("**file", "dir/myfile", true), ("[*]", "*", false),
        ("[*]", "]", true), ("[?]", "^]", true), ("a\\Qb*", "ab[^/]*$", true), ("\\d*", "42", true),
        ("[[:digit:]]x", "7x", true), ("[[:^digit:]]", "x", true), ("[\\d]", "5", true),
        ("\\.git", ".git/HEAD", true), ("*^a", "a", true), ("**/x\\n", "x\n", true),
        ("**/*.go", "a\nb/c.go", false), ("\\bx*", "xy", true), ("a\\Bb", "ab", true),
        ("\\101", "A", true), ("\\x41*", "Ab", true), ("[a-c]/**", "b/x", true),
    ];

    #[rustfmt::skip]
    const MULTI: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
        (&["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false),
        (&["!fileutils.go", "*.go"], "fileutils.go", true), (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/other.md", true),
        (&["*", "!src", "src/**/*.test.js"], "src/a/b.test.js", true),
        (&["*", "!src", "src/**/*.test.js"], "src/a/b.js", false), (&["  !x  "], "x", false), (&[], "x", false),
    ];

    /// Walks `path` parent-first with `matches_using_parent[_buildkit]`; the result for `path`.
    fn walk(m: &PatternMatcher, path: &str, buildkit: bool) -> bool {
        let (mut result, mut info) = (false, MatchInfo::default());
        let ends = path.match_indices('/').map(|(i, _)| i).chain([path.len()]);
        for end in ends.filter(|&e| e > 0) {
            let step = if buildkit {
                PatternMatcher::matches_using_parent_buildkit
            } else {
                PatternMatcher::matches_using_parent
            };
            (result, info) = step(m, &path[..end], info);
        }
        result
    }

    #[test]
    fn patternmatcher_tables() {
        let single = SINGLE
            .iter()
            .map(|(pattern, path, want)| (std::slice::from_ref(pattern), path, want));
        for (patterns, path, &want) in
            single.chain(MULTI.iter().map(|(p, path, want)| (*p, path, want)))
        {
            let m = PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
            let case = format!("{patterns:?} {path:?}");
            assert_eq!(m.matches(path), want, "matches {case}");
            assert_eq!(walk(&m, path, false), want, "walk {case}");
            assert_eq!(walk(&m, path, true), want, "buildkit walk {case}");
            let no_context = m.matches_using_parent_buildkit(path, MatchInfo::default());
            assert_eq!(no_context.0, want, "no context {case}");
        }
        assert!(SINGLE.len() + MULTI.len() > 120);
    }

    #[test]
    fn buildkit_walk_differs_from_parent_matching() {
        let m = PatternMatcher::new(&["a/b", "!a"]).unwrap();
        assert!(!m.matches("a/b") && !walk(&m, "a/b", false) && walk(&m, "a/b", true));
        let m = PatternMatcher::new(&["a", "!a/b", "a"]).unwrap();
        assert!(m.matches("a/b") && walk(&m, "a/b", false) && !walk(&m, "a/b", true));
    }

    #[test]
    fn many_patterns_fall_back() {
        let mut patterns: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
        patterns.extend(["deep", "!deep/keep", "deep/keep/x"].map(String::from));
        let m = PatternMatcher::new(&patterns).unwrap();
        for path in [
            "deep/a",
            "deep/keep",
            "deep/keep/x/y",
            "deep/keep/z",
            "p299/q",
            "p300",
        ] {
            assert_eq!(walk(&m, path, false), m.matches(path), "{path}");
            assert_eq!(walk(&m, path, true), m.matches(path), "{path}");
        }
        assert!(m.matches("deep/keep/x/y") && !m.matches("deep/keep/z") && m.matches("p299/q"));
    }

    #[test]
    fn invalid_patterns() {
        #[rustfmt::skip]
        let bad = [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "a\\", "[a-b-c]", "!", " ! ",
            "!/", "[z-a]", "\\q", "\\1", "\\pL", "[[:nope:]]", "[a-**]", "\\é", "\\x4",
        ];
        for pattern in bad {
            let err = PatternMatcher::new(&["ok", pattern]).expect_err(pattern);
            assert!(err.to_string().contains("pattern"), "{pattern}: {err}");
        }
        let err = PatternMatcher::new(&["[abc"]).unwrap_err();
        assert!(matches!(&err, IgnoreError::BadPattern { pattern, .. } if pattern == "[abc"));
    }

    #[test]
    fn matcher_accessors_and_pruning() {
        let m = PatternMatcher::new(&["docs", "", "  ", "!docs/README.md  "]).unwrap();
        assert_eq!(m.patterns(), ["docs", "!docs/README.md  "]);
        assert!(m.has_exclusions() && m.could_reinclude_below("docs"));
        assert!(!m.could_reinclude_below("src") && !m.could_reinclude_below("doc"));
        let m = PatternMatcher::new(&["a"]).unwrap();
        assert!(!m.has_exclusions() && !m.could_reinclude_below("a"));
        assert!(
            PatternMatcher::new(&["a", "!*.md"])
                .unwrap()
                .could_reinclude_below("a")
        );
        let m = PatternMatcher::new(&["a", "!a/b/**"]).unwrap();
        assert!(m.could_reinclude_below("a") && m.could_reinclude_below("a/b"));
        assert!(!m.could_reinclude_below("c") && !m.could_reinclude_below("a/b/c"));
    }

    #[test]
    fn helpers_follow_go() {
        #[rustfmt::skip]
        let cases = [
            ("", "."), ("a/../b", "b"), ("./x", "x"), ("/../x", "/x"), ("../x", "../x"), ("a//b/", "a/b"),
            ("/", "/"), ("a/..", "."), ("!a/../b", "b"), ("../../a/./b/..", "../../a"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input}");
        }
        assert_eq!(
            ancestors(&go_dir("a/b/c")).collect::<Vec<_>>(),
            ["a", "a/b"]
        );
        assert_eq!(ancestors(&go_dir("/a")).collect::<Vec<_>>(), ["", "/"]);
        assert_eq!(ancestors(&go_dir("a")).count(), 0);
    }

    #[test]
    fn ignore_file_parsing() {
        let text = "\u{feff}test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n\
                    ! /inverted/abs/path\n!\n! ";
        let want = [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!",
        ];
        assert_eq!(parse_ignore_file(text), want);
        let text =
            "  # not a comment\r\n./x\na/../b\n/\n\t*.md \n!  ./keep/ \n\u{feff}y\nnm/\n..\nz\r";
        let want = [
            "# not a comment",
            "x",
            "b",
            "/",
            "*.md",
            "!keep",
            "\u{feff}y",
            "nm",
            "..",
            "z",
        ];
        assert_eq!(parse_ignore_file(text), want);
        assert!(parse_ignore_file("").is_empty() && parse_ignore_file("\n\n# c\n").is_empty());
    }

    #[test]
    fn load_for_build_precedence() {
        let root = std::env::temp_dir().join(format!("rbuild-dockerignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("docker")).unwrap();
        let (dockerfile, general) = (
            root.join("docker/app.Dockerfile"),
            root.join(".dockerignore"),
        );
        let specific = root.join("docker/app.Dockerfile.dockerignore");
        let load = || load_for_build(&root, &dockerfile);
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(load().unwrap(), (None, Vec::new()));
        std::fs::write(&general, "a\n!b\n").unwrap();
        assert_eq!(
            load().unwrap(),
            (Some(general.clone()), strings(&["a", "!b"]))
        );
        std::fs::write(&specific, "").unwrap();
        assert_eq!(load().unwrap(), (Some(specific.clone()), Vec::new()));
        std::fs::write(&specific, "# c\n/c/\n").unwrap();
        assert_eq!(load().unwrap(), (Some(specific.clone()), strings(&["c"])));
        std::fs::remove_file(&specific).unwrap();
        std::fs::create_dir(&specific).unwrap();
        assert_eq!(load().unwrap().0, Some(general.clone()));
        std::fs::write(&general, format!("ok\n{}\n", "x".repeat(MAX_LINE))).unwrap();
        let err = load().unwrap_err();
        assert!(
            matches!(&err, IgnoreError::LineTooLong { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(".dockerignore"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn glob_text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab/*?\\[\\]^!\\\\.\\-:{}()$|+ QEdpx0\n]{0,12}").unwrap()
    }

    fn glob_path() -> impl Strategy<Value = String> {
        let parts =
            proptest::sample::select(&["a", "b", "ab", "ba", "a.b", "\\[", "]", "-", "*"][..]);
        proptest::collection::vec(parts, 1..5).prop_map(|parts| parts.join("/"))
    }

    proptest! {
        #[test]
        fn never_panics(
            patterns in proptest::collection::vec(prop_oneof![any::<String>(), glob_text()], 0..4),
            path in prop_oneof![any::<String>(), glob_text()],
        ) {
            if let Ok(m) = PatternMatcher::new(&patterns) {
                let (walked, _) = m.matches_using_parent(&path, MatchInfo::default());
                prop_assert_eq!(walked, m.matches(&path));
                let _ = (m.could_reinclude_below(&path), m.matches_using_parent_buildkit(&path, MatchInfo::default()));
            }
        }

        #[test]
        fn walking_agrees_with_matches(
            patterns in proptest::collection::vec(
                prop_oneof![glob_path(), glob_path().prop_map(|p| format!("!{p}")), glob_text()], 1..5),
            path in glob_path(),
        ) {
            if let Ok(m) = PatternMatcher::new(&patterns) {
                prop_assert_eq!(walk(&m, &path, false), m.matches(&path));
                if m.patterns().len() == 1 {
                    prop_assert_eq!(walk(&m, &path, true), m.matches(&path));
                }
            }
        }
    }
}
