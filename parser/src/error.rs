//! The parser's error type and the diagnostic renderer shared with build checks.
//!
//! Every diagnostic renders like a compiler's:
//! ```text
//! error: unknown instruction `RUNN`
//!  --> Dockerfile:3:1
//!   |
//! 3 | RUNN echo hello
//!   | ^^^^
//!   = hint: did you mean `RUN`?
//! ```

use std::fmt;

use serde::Serialize;

use crate::source::{Source, Span};

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The text is not UTF-8.
    Encoding,
    LineTooLong,
    NoInstructions,
    Directive,
    Syntax,
    UnterminatedHeredoc,
    UnknownInstruction,
    UnknownFlag,
    InvalidFlag,
    /// Wrong number or form of an instruction's arguments.
    Arguments,
    /// An instruction outside any stage (before the first FROM).
    NoStage,
    /// A variable expansion failed (`${v:?msg}`, bad substitution).
    Expansion,
    /// A build check configured as an error (`# check=error=true`).
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub span: Span,
    /// The source line the span starts on, without its line ending.
    #[serde(skip)]
    pub line_text: String,
}

impl Location {
    /// The location of `len` bytes at `offset` of `src`.
    pub fn new(src: &Source, offset: usize, len: usize) -> Location {
        let span = src.span(offset, len);
        Location {
            file: src.name().to_string(),
            line_text: src.line_text(span.start.line).to_string(),
            span,
        }
    }
}

/// A located message with an optional hint: an error or a build-check warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The build-check rule name (`JSONArgsRecommended`, ...), for warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    /// Renders the diagnostic for a terminal or a log, compiler style.
    pub fn render(&self) -> String {
        let mut out = match (&self.severity, &self.rule) {
            (Severity::Error, None) => format!("error: {}\n", self.message),
            (Severity::Error, Some(rule)) => format!("error[{rule}]: {}\n", self.message),
            (Severity::Warning, None) => format!("warning: {}\n", self.message),
            (Severity::Warning, Some(rule)) => format!("warning[{rule}]: {}\n", self.message),
        };
        let gutter;
        if let Some(loc) = &self.location {
            let start = loc.span.start;
            let number = start.line.to_string();
            gutter = " ".repeat(number.len());
            out.push_str(&format!(
                "{gutter}--> {}:{}:{}\n",
                loc.file, start.line, start.column
            ));
            out.push_str(&format!("{gutter} |\n"));
            let shown = loc.line_text.replace('\t', "    ");
            out.push_str(&format!("{number} | {shown}\n"));
            let before: String = loc
                .line_text
                .chars()
                .take(start.column.saturating_sub(1))
                .map(|c| if c == '\t' { "    " } else { " " })
                .collect();
            let line_chars = loc.line_text.chars().count();
            let width = if loc.span.end.line == start.line {
                loc.span.end.column.saturating_sub(start.column)
            } else {
                line_chars.saturating_sub(start.column - 1)
            }
            .max(1);
            out.push_str(&format!("{gutter} | {before}{}\n", "^".repeat(width)));
        } else {
            gutter = String::new();
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("{gutter} = hint: {hint}\n"));
        }
        out
    }
}

/// An error reading a Dockerfile. Displays as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Boxed: errors travel far through `Result`s and should stay small.
    pub diagnostic: Box<Diagnostic>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.diagnostic.location {
            write!(
                f,
                "{}:{}:{}: ",
                loc.file, loc.span.start.line, loc.span.start.column
            )?;
        }
        f.write_str(&self.diagnostic.message)
    }
}

impl ParseError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ParseError {
        ParseError {
            kind,
            diagnostic: Box::new(Diagnostic {
                severity: Severity::Error,
                rule: None,
                message: message.into(),
                hint: None,
                location: None,
            }),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ParseError {
        self.diagnostic.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.diagnostic.message
    }

    pub fn location(&self) -> Option<&Location> {
        self.diagnostic.location.as_ref()
    }

    /// Points the error at `len` bytes at `offset`, unless it already points somewhere.
    pub fn at(mut self, src: &Source, offset: usize, len: usize) -> ParseError {
        if self.diagnostic.location.is_none() {
            self.diagnostic.location = Some(Location::new(src, offset, len));
        }
        self
    }

    /// Points the error at a whole instruction starting at `offset` (to the end of its
    /// first line), unless it already points somewhere.
    pub fn at_line_range(
        self,
        src: &Source,
        offset: usize,
        start_line: usize,
        _end_line: usize,
    ) -> ParseError {
        let len = src.line_text(start_line).len();
        let line_start = src.line_start(start_line).unwrap_or(offset);
        let len = len.saturating_sub(offset.saturating_sub(line_start));
        self.at(src, offset, len)
    }

    /// The full compiler-style rendering.
    pub fn render(&self) -> String {
        self.diagnostic.render()
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to suggest.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), *c))
        .filter(|&(d, c)| d <= (c.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: edits, with a swap of neighbours counting once.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_caret_and_hint() {
        let src = Source::new("Dockerfile", "FROM a\nRUNN echo\n");
        let err = ParseError::new(ErrorKind::UnknownInstruction, "unknown instruction `RUNN`")
            .with_hint("did you mean `RUN`?")
            .at(&src, 7, 4);
        assert_eq!(
            err.to_string(),
            "Dockerfile:2:1: unknown instruction `RUNN`"
        );
        assert_eq!(
            err.render(),
            "error: unknown instruction `RUNN`\n --> Dockerfile:2:1\n  |\n2 | RUNN echo\n  | ^^^^\n  = hint: did you mean `RUN`?\n"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("RUNN", &["RUN", "FROM"]), Some("RUN"));
        assert_eq!(
            did_you_mean("entrypoitn", &["ENTRYPOINT", "ENV"]),
            Some("ENTRYPOINT")
        );
        assert_eq!(did_you_mean("xyz", &["RUN"]), None);
        assert_eq!(did_you_mean("form", &["from", "chown"]), Some("from"));
    }
}
