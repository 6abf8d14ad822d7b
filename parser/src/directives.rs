//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the top of a Dockerfile.
//!
//! They are recognised only in the leading run of comment lines; the first line that is
//! not a known directive (a blank line, a plain comment, an instruction) ends them for
//! good. Names are case-insensitive and each may appear once.

use nom::IResult;
use nom::Parser as _;
use nom::bytes::complete::take_while;
use nom::character::complete::{char, satisfy};
use nom::combinator::{recognize, rest};
use nom::sequence::{pair, preceded};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::error::{ErrorKind, ParseError};

/// The directives of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
    /// The raw `check` value, e.g. `skip=JSONArgsRecommended;error=true`.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

impl Serialize for Directives {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("escape", &self.escape.to_string())?;
        if let Some(v) = &self.syntax {
            map.serialize_entry("syntax", v)?;
        }
        if let Some(v) = &self.check {
            map.serialize_entry("check", v)?;
        }
        map.end()
    }
}

/// Feeds lines to the directive grammar until the first non-directive line.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    directives: Directives,
    escape_seen: bool,
    done: bool,
}

impl DirectiveParser {
    pub(crate) fn escape(&self) -> char {
        self.directives.escape
    }

    pub(crate) fn finish(self) -> Directives {
        self.directives
    }

    /// Looks at one line (newline and leading whitespace already removed).
    pub(crate) fn feed(&mut self, line: &str) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive_line(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        let slot = match name.as_str() {
            "escape" => {
                if self.escape_seen {
                    return Err(duplicate(&name));
                }
                let escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::new(
                            ErrorKind::Directive,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        )
                        .with_hint(
                            "use `# escape=\\` (the default) or `# escape=`` (Windows style)",
                        ));
                    }
                };
                self.directives.escape = escape;
                self.escape_seen = true;
                return Ok(());
            }
            "syntax" => &mut self.directives.syntax,
            "check" => &mut self.directives.check,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if slot.is_some() {
            return Err(duplicate(&name));
        }
        *slot = Some(value.to_string());
        Ok(())
    }
}

fn duplicate(name: &str) -> ParseError {
    ParseError::new(
        ErrorKind::Directive,
        format!("only one {name} parser directive can be used"),
    )
    .with_hint("remove the repeated directive")
}

/// Matches `#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`: the name and the trimmed value.
fn directive_line(line: &str) -> Option<(&str, &str)> {
    fn ws(i: &str) -> IResult<&str, &str> {
        take_while(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}'))(i)
    }
    let name = recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ));
    let parsed: IResult<&str, (&str, &str)> = (
        preceded((char('#'), ws), name),
        preceded((ws, char('='), ws), rest),
    )
        .parse(line);
    let (_, (name, value)) = parsed.ok()?;
    let value = value.trim_end_matches([' ', '\t', '\n', '\r', '\u{c}']);
    // `.+?` needs at least one character, and `.` does not match a newline.
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((name, value))
}

/// The parsed `# check=` directive: which rules to skip, and whether warnings fail the build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    /// Rule names to skip; `all` skips every rule.
    pub skip: Vec<String>,
    pub error: bool,
}

impl CheckConfig {
    /// Parses `skip=A,B;error=true` (as BuildKit does, keys case-insensitive).
    pub fn parse(value: &str) -> Result<CheckConfig, ParseError> {
        let mut config = CheckConfig::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, val)) = part.split_once('=') else {
                return Err(bad_check(part));
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "skip" => config.skip.extend(
                    val.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "error" => {
                    config.error = match val.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad_check(part)),
                    }
                }
                _ => return Err(bad_check(part)),
            }
        }
        Ok(config)
    }

    /// Whether `rule` is switched off.
    pub fn skips(&self, rule: &str) -> bool {
        self.skip
            .iter()
            .any(|s| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case(rule))
    }
}

fn bad_check(part: &str) -> ParseError {
    ParseError::new(
        ErrorKind::Directive,
        format!("invalid check directive `{part}`"),
    )
    .with_hint("write `# check=skip=RuleA,RuleB;error=true`")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn directive_grammar() {
        assert_eq!(
            directive_line("# syntax = docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(directive_line("#escape=`"), Some(("escape", "`")));
        assert_eq!(directive_line("# ESCAPE=\\"), Some(("ESCAPE", "\\")));
        assert_eq!(directive_line("# escape="), None);
        assert_eq!(directive_line("# 1x=a"), None);
        assert_eq!(directive_line("# just a comment"), None);
        assert_eq!(directive_line("FROM a"), None);
    }

    #[test]
    fn first_non_directive_ends_them() {
        let mut p = DirectiveParser::default();
        p.feed("# syntax=x").unwrap();
        p.feed("# a comment").unwrap();
        p.feed("# escape=`").unwrap();
        assert_eq!(p.escape(), '\\');
        assert_eq!(p.finish().syntax.as_deref(), Some("x"));
    }

    #[test]
    fn duplicates_and_bad_escape_fail() {
        let mut p = DirectiveParser::default();
        p.feed("# escape=\\").unwrap();
        assert!(p.feed("# Escape=`").is_err());
        let mut p = DirectiveParser::default();
        assert!(p.feed("# escape=x").is_err());
        let mut p = DirectiveParser::default();
        p.feed("# check=skip=A").unwrap();
        assert!(p.feed("# CHECK=error=true").is_err());
    }

    #[test]
    fn check_config() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert!(c.error && c.skips("StageNameCasing") && !c.skips("UndefinedVar"));
        assert!(CheckConfig::parse("skip=all").unwrap().skips("X"));
        assert!(CheckConfig::parse("bogus").is_err());
    }
}
