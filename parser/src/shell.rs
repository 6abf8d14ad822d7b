//! Shell-word expansion as BuildKit's `frontend/dockerfile/shell` lexer does it.
//!
//! [`Lexer`] processes quotes (`'…'`, `"…"`), the escape character (`\` or `` ` ``) and
//! variable references (`$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?m}`,
//! `${v?m}`, `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}`, `${v//p/r}`). It is not a
//! shell: there is no command substitution, arithmetic or `${v=w}`, and positional and
//! special parameters (`$1`, `$@`, `$#`, …) are ordinary (normally unset) variables.
//!
//! Behaviour, error wording and quirks follow BuildKit's `lex.go`, including these:
//! - inside `${v:-w}`, `${v+w}`, `${v?m}` escapes are always processed, even with
//!   [`Lexer::raw_escapes`]; inside `#`, `%` and `/` forms they are always kept raw;
//! - `${v:#p}` and `${v:%p}` are "unsupported modifier" errors;
//! - [`Lexer::process_words`] splits expansions on whitespace, even a quoted default inside
//!   `${v:-"a b"}`, and a `${…}` form with an operand (`:-`, `+`, `#`, `/`, …) drops the text
//!   of the current word collected before it (BuildKit shares one word buffer between the
//!   outer word and the operand): `a${X:-b}c` gives the words `["bc"]`;
//! - with [`Lexer::raw_escapes`], an escape inside double quotes that escapes nothing is
//!   written twice (`"\x"` gives `\\x`);
//! - with [`Lexer::skip_unset_env`], `${v//p/r}` of an unset `v` is written back as `${v/p/r}`;
//! - a byte-order mark at the very start of the word is dropped.
//!
//! Pattern matching is in [`glob`], Go's character classes in [`unicode`].

mod glob;
mod unicode;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use unicode::{is_digit, is_letter, is_space};

/// Variable lookup for expansion.
pub trait Env {
    /// Value of `name`, or None when unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<String>;
    /// All variable names (used for "did you mean" suggestions); may be empty.
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn lookup(&self, name: &str) -> Option<String> {
        (**self).lookup(name)
    }
    fn keys(&self) -> Vec<String> {
        (**self).keys()
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = HashMap::keys(self).cloned().collect();
        keys.sort();
        keys
    }
}

/// Ordered pairs; a later entry wins over an earlier one with the same name.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn keys(&self) -> Vec<String> {
        unique(self.iter().map(|(k, _)| k.as_str()))
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.as_slice().lookup(name)
    }
    fn keys(&self) -> Vec<String> {
        self.as_slice().keys()
    }
}

/// `KEY=VALUE` strings like a process environment (later entries win). An entry without `=`
/// sets its whole text to the empty value, as BuildKit's `EnvsFromSlice` does.
#[derive(Debug, Clone, Copy)]
pub struct EnvList<'a>(pub &'a [String]);

impl EnvList<'_> {
    fn split(entry: &str) -> (&str, &str) {
        entry.split_once('=').unwrap_or((entry, ""))
    }
}

impl Env for EnvList<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .map(|e| Self::split(e))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
    fn keys(&self) -> Vec<String> {
        unique(self.0.iter().map(|e| Self::split(e).0))
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _name: &str) -> Option<String> {
        None
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names
        .filter(|n| seen.insert(*n))
        .map(str::to_owned)
        .collect()
}

/// An expansion error. `message` is BuildKit's text without its `failed to process "…": `
/// prefix (see [`ShellError::buildkit_message`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    pub message: String,
    /// byte offset in the input word where the problem is
    pub offset: usize,
}

impl ShellError {
    fn new(message: impl Into<String>, offset: usize) -> Self {
        ShellError {
            message: message.into(),
            offset,
        }
    }

    /// The full message BuildKit reports for this error in `word`:
    /// `failed to process "<word>": <message>`, the word quoted like Go's `%q`.
    pub fn buildkit_message(&self, word: &str) -> String {
        format!("failed to process {}: {}", go_quote(word), self.message)
    }
}

/// The result of [`Lexer::process_word_with_matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, without field splitting.
    pub result: String,
    /// The expanded word split into fields, as [`Lexer::process_words`] returns them.
    pub words: Vec<String>,
    /// Names referenced and found in the environment.
    pub matched: BTreeSet<String>,
    /// Names referenced but unset.
    pub unmatched: BTreeSet<String>,
}

/// BuildKit's `shell.Lex`.
#[derive(Debug, Clone)]
pub struct Lexer {
    /// The escape character: `'\\'` or `` '`' ``.
    pub escape: char,
    /// BuildKit `RawQuotes`: keep quote characters in the output.
    pub raw_quotes: bool,
    /// BuildKit `RawEscapes`: keep escape characters in the output.
    pub raw_escapes: bool,
    /// BuildKit `SkipProcessQuotes`: quotes are ordinary characters.
    pub skip_process_quotes: bool,
    /// BuildKit `SkipUnsetEnv`: leave `$VAR` text as is when VAR is unset.
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character and all options off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string (BuildKit's `ProcessWord`): no field splitting.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        self.process(word, env, true).map(|e| e.result)
    }

    /// Expands `word` and splits it into fields on unquoted whitespace (BuildKit's
    /// `ProcessWords`). Whitespace coming from a variable is split on; whitespace inside
    /// quotes or escaped is kept; empty fields are dropped.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        self.process(word, env, false).map(|e| e.words)
    }

    /// Like process_word, also reporting which variable names were referenced and found
    /// (`matched`) and referenced but unset (`unmatched`) – used by the UndefinedVar lint.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, ShellError> {
        self.process(word, env, true)
    }

    fn process(&self, word: &str, env: &dyn Env, capture: bool) -> Result<Expansion, ShellError> {
        let mut w = ShellWord {
            lex: self,
            env,
            src: word,
            // Go's text/scanner skips a byte-order mark at the start of its input.
            pos: if word.starts_with('\u{feff}') {
                '\u{feff}'.len_utf8()
            } else {
                0
            },
            raw_escapes: self.raw_escapes,
            capture,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            words_buf: String::new(),
        };
        let (result, words) = w.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion {
            result,
            words,
            matched: w.matched,
            unmatched: w.unmatched,
        })
    }
}

/// Field splitting state of one `process_stop_on` call (BuildKit's `wordsStruct`). The word
/// being built lives in [`ShellWord::words_buf`], shared by nested calls like in BuildKit.
#[derive(Debug, Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if !is_space(ch) {
            self.add_raw_char(buf, ch);
        } else if self.in_word && !buf.is_empty() {
            self.words.push(std::mem::take(buf));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

/// Characters with their own handler in `process_stop_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Dollar,
    SingleQuote,
    DoubleQuote,
}

/// One expansion run over a word (BuildKit's `shellWord`).
struct ShellWord<'a> {
    lex: &'a Lexer,
    env: &'a dyn Env,
    src: &'a str,
    /// Byte offset of the next character; always at a char boundary.
    pos: usize,
    raw_escapes: bool,
    capture: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    words_buf: String,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn special(&self, ch: char) -> Option<Special> {
        match ch {
            '$' => Some(Special::Dollar),
            '\'' if !self.lex.skip_process_quotes => Some(Special::SingleQuote),
            '"' if !self.lex.skip_process_quotes => Some(Special::DoubleQuote),
            _ => None,
        }
    }

    /// Processes up to `stop` (consumed) or the end of input (`stop` None), with the
    /// escape-keeping mode temporarily set to `raw_escapes`.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        self.words_buf.clear();
        let mut words = Words::default();
        while let Some(mut ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish(&mut self.words_buf)));
            }
            if let Some(special) = self.special(ch) {
                let text = match special {
                    Special::Dollar => self.dollar()?,
                    Special::SingleQuote => self.single_quote()?,
                    Special::DoubleQuote => self.double_quote()?,
                };
                result.push_str(&text);
                if special == Special::Dollar {
                    words.add_string(&mut self.words_buf, &text);
                } else {
                    words.add_raw_string(&mut self.words_buf, &text);
                }
                continue;
            }
            self.next();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(&mut self.words_buf, ch);
                    result.push(ch);
                }
                // The escape escapes anything; alone at the end it disappears.
                let Some(escaped) = self.next() else {
                    break;
                };
                ch = escaped;
                words.add_raw_char(&mut self.words_buf, ch);
            } else {
                words.add_char(&mut self.words_buf, ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(ShellError::new(
                format!("unexpected end of statement while looking for matching {stop}"),
                self.pos,
            ));
        }
        Ok((result, words.finish(&mut self.words_buf)))
    }

    /// `'…'`: everything up to the next `'` is literal.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let mut out = String::new();
        self.next();
        if self.lex.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching single-quote",
                        start,
                    ));
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// `"…"`: variables are expanded; the escape only escapes `"`, `$` and itself.
    fn double_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let mut out = String::new();
        self.next();
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            let Some(peeked) = self.peek() else {
                return Err(ShellError::new(
                    "unexpected end of statement while looking for matching double-quote",
                    start,
                ));
            };
            match peeked {
                '"' => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                '$' => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                _ => {
                    self.next();
                    let mut ch = peeked;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // An escape before the end: the missing quote is reported next.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.next();
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// Looks `name` up, recording it as matched or unmatched.
    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = self.env.lookup(name);
        if self.capture {
            let set = if value.is_some() {
                &mut self.matched
            } else {
                &mut self.unmatched
            };
            set.insert(name.to_owned());
        }
        value
    }

    /// A name after `$`: a run of digits, one special parameter character, or letters,
    /// digits and `_`. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&c| is_digit(c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// `$name` and the `${…}` forms; the scanner is at the `$`.
    fn dollar(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::new("syntax error: missing '}'", start)),
            Some('{' | '}' | ':') => {
                return Err(ShellError::new("syntax error: bad substitution", start));
            }
            Some(_) => {}
        }
        let name = self.name();
        let modifier_at = self.pos;
        let first = self.next();
        // Go's string(rune) of EOF is U+FFFD.
        let mut chs = String::from(first.unwrap_or(char::REPLACEMENT_CHARACTER));
        let unsupported = |chs: &str| {
            ShellError::new(
                format!("unsupported modifier ({chs}) in substitution"),
                modifier_at,
            )
        };
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = first == Some(':');
                let op = if null_is_unset {
                    let op = self.next();
                    chs.push(op.unwrap_or(char::REPLACEMENT_CHARACTER));
                    op
                } else {
                    first
                };
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(unsupported(&chs));
                }
                let word = self.operand('}', raw, "syntax error: missing '}'", start)?;
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                let empty = null_is_unset && value.is_empty();
                match op {
                    Some('-') => Ok(if !set || empty { word } else { value }),
                    Some('+') => Ok(if !set || empty { String::new() } else { word }),
                    Some('?') => {
                        let default = if !set {
                            "is not allowed to be unset"
                        } else if empty {
                            "is not allowed to be empty"
                        } else {
                            return Ok(value);
                        };
                        let message = if word.is_empty() { default } else { &word };
                        Err(ShellError::new(format!("{name}: {message}"), start))
                    }
                    Some(op @ ('#' | '%')) => {
                        // A doubled operator (`##`, `%%`) is the greedy form.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let trimmed = if op == '%' {
                            glob::trim_suffix(pattern, &value, greedy)
                        } else {
                            glob::trim_prefix(pattern, &value, greedy)
                        };
                        trimmed.map_err(|m| ShellError::new(m, start))
                    }
                    _ => Err(unsupported(&chs)),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = self.operand('/', true, "syntax error: missing '/' in ${}", start)?;
                let replacement = self.operand('}', true, "syntax error: missing '}'", start)?;
                match self.get_env(&name) {
                    None if self.lex.skip_unset_env => {
                        Ok(format!("${{{name}/{pattern}/{replacement}}}"))
                    }
                    value => glob::replace(&pattern, &value.unwrap_or_default(), &replacement, all)
                        .map_err(|m| ShellError::new(m, start)),
                }
            }
            _ => Err(unsupported(&chs)),
        }
    }

    /// The operand of a `${…}` form, up to `stop`. An error that leaves the input exhausted
    /// becomes `missing` (reported at `start`, the `$`).
    fn operand(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: &str,
        start: usize,
    ) -> Result<String, ShellError> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(ShellError::new(missing, start)),
            Err(e) => Err(e),
        }
    }
}

/// Go's `strconv.Quote`, approximately: Go's printable test needs the full Unicode tables;
/// this one escapes controls, non-ASCII spaces, format characters and private-use
/// characters, and keeps everything else.
fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let _ = match c {
            '"' | '\\' => write!(out, "\\{c}"),
            '\u{7}' => write!(out, "\\a"),
            '\u{8}' => write!(out, "\\b"),
            '\u{c}' => write!(out, "\\f"),
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            '\u{b}' => write!(out, "\\v"),
            c if c < ' ' || c == '\u{7f}' => write!(out, "\\x{:02x}", u32::from(c)),
            c if go_printable(c) => write!(out, "{c}"),
            c if u32::from(c) < 0x10000 => write!(out, "\\u{:04x}", u32::from(c)),
            c => write!(out, "\\U{:08x}", u32::from(c)),
        };
    }
    out.push('"');
    out
}

fn go_printable(c: char) -> bool {
    let u = u32::from(c);
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(u, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E)
            || matches!(u, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF)
            || matches!(u, 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..)
            || matches!(u, 0xE0001 | 0xE0020..=0xE007F)
            || (u & 0xFFFE) == 0xFFFE
            || (0xFDD0..=0xFDEF).contains(&u))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
