//! The line-level parser: BuildKit's `frontend/dockerfile/parser` in Rust.
//!
//! It turns Dockerfile text into a flat list of [`Node`]s: the instruction keyword,
//! its leading `--flags` as written, and its arguments split the way each instruction
//! splits them (JSON arrays, whitespace-separated words, one string, key/value triples),
//! with heredoc bodies attached. No variable is expanded here and no instruction is
//! validated beyond what BuildKit's parser itself rejects; [`crate::instructions`]
//! builds the typed, validated form on top.

use serde::Serialize;

use crate::directives::{DirectiveParser, Directives};
use crate::error::{ErrorKind, ParseError};
use crate::heredoc::{self, Heredoc};
use crate::source::{LineMap, Source};

/// The longest physical line BuildKit's scanner accepts, in bytes.
pub const MAX_LINE_LEN: usize = 65535;

/// One instruction as BuildKit's parser sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword, lower case (`run`, `from`, ...).
    pub cmd: String,
    /// Leading `--flag[=value]` words, quotes removed; a bare `--` ends them and is dropped.
    pub flags: Vec<String>,
    /// The arguments as the reference parser's node chain holds them, before expansion.
    pub args: Vec<String>,
    /// Whether the arguments came from a JSON array.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// 1-based first and last physical line (heredoc bodies included).
    pub start_line: usize,
    pub end_line: usize,
    /// The trigger instruction of an `ONBUILD`.
    pub onbuild: Option<Box<Node>>,
    /// The logical line: continuation lines joined, escapes and newlines removed.
    #[serde(skip)]
    pub original: String,
    /// Maps byte offsets in `original` back to the source.
    #[serde(skip)]
    pub line_map: LineMap,
    /// `#` comments directly above the instruction.
    #[serde(skip)]
    pub comments: Vec<String>,
}

/// A non-fatal finding of the parser itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Build-check rule name, e.g. `NoEmptyContinuation`.
    pub rule: String,
    pub message: String,
    pub line: usize,
}

/// The result of parsing one Dockerfile.
#[derive(Debug, Clone, Serialize)]
pub struct ParsedFile {
    pub directives: Directives,
    pub instructions: Vec<Node>,
    pub warnings: Vec<Warning>,
}

impl ParsedFile {
    /// The escape character in force (`\` unless `# escape=` said otherwise).
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// BuildKit's `Node.Dump()` of the whole file, one line per instruction.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.instructions {
            out.push_str(&node.dump());
            out.push('\n');
        }
        out
    }
}

impl Node {
    /// BuildKit's `Node.Dump()` format: `(cmd ["--flag"] "arg" ...)`.
    pub fn dump(&self) -> String {
        let mut out = format!("({}", self.cmd);
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(&format!(" [{}]", quoted.join(" ")));
        }
        if let Some(sub) = &self.onbuild {
            out.push(' ');
            out.push_str(&sub.dump());
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.push(')');
        out
    }
}

/// Parses Dockerfile text.
pub fn parse(src: &Source) -> Result<ParsedFile, ParseError> {
    Parser::new(src).run()
}

struct Parser<'a> {
    src: &'a Source,
    lines: Vec<PhysLine<'a>>,
    pos: usize,
    directives: DirectiveParser,
}

/// A physical line: its text with the newline, and the byte offset where it starts.
#[derive(Clone, Copy)]
struct PhysLine<'a> {
    text: &'a str,
    start: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a Source) -> Self {
        let text = src.text();
        let mut lines = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let end = text[start..]
                .find('\n')
                .map_or(text.len(), |i| start + i + 1);
            lines.push(PhysLine {
                text: &text[start..end],
                start,
            });
            start = end;
        }
        Parser {
            src,
            lines,
            pos: 0,
            directives: DirectiveParser::default(),
        }
    }

    /// The next physical line, with the 1-based number it has.
    fn next_line(&mut self) -> Result<Option<(PhysLine<'a>, usize)>, ParseError> {
        let Some(mut line) = self.lines.get(self.pos).copied() else {
            return Ok(None);
        };
        self.pos += 1;
        if trim_newline(line.text).len() > MAX_LINE_LEN {
            return Err(ParseError::new(
                ErrorKind::LineTooLong,
                format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
            )
            .at(self.src, line.start, 0));
        }
        if self.pos == 1
            && let Some(rest) = line.text.strip_prefix('\u{feff}')
        {
            line = PhysLine {
                text: rest,
                start: line.start + '\u{feff}'.len_utf8(),
            };
        }
        Ok(Some((line, self.pos)))
    }

    fn run(mut self) -> Result<ParsedFile, ParseError> {
        let mut nodes = Vec::new();
        let mut warnings = Vec::new();
        let mut comments: Vec<String> = Vec::new();

        while let Some((first, start_line)) = self.next_line()? {
            if is_comment(first.text) {
                let comment = trim_leading_ws(trim_newline(first.text))[1..].trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_string());
                }
            }
            let token = trim_leading_ws(trim_newline(first.text));
            let token_start = first.start + (trim_newline(first.text).len() - token.len());
            self.directive(token, token_start)?;
            let token = if is_comment(token) { "" } else { token };

            let mut joined = String::new();
            let mut map = LineMap::default();
            let (piece, mut end_of_line) = trim_continuation(token, self.escape());
            if end_of_line && piece.is_empty() {
                continue;
            }
            map.push(joined.len(), token_start);
            joined.push_str(piece);

            let mut end_line = start_line;
            let mut empty_continuation = false;
            while !end_of_line {
                let Some((line, number)) = self.next_line()? else {
                    break;
                };
                end_line = number;
                let token = trim_newline(line.text);
                self.directive(token, line.start)?;
                if is_comment(line.text) {
                    continue;
                }
                if trim_leading_ws(token).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (piece, eol) = trim_continuation(token, self.escape());
                end_of_line = eol;
                map.push(joined.len(), line.start);
                joined.push_str(piece);
            }

            if empty_continuation {
                warnings.push(Warning {
                    rule: "NoEmptyContinuation".into(),
                    message: format!("Empty continuation line found in: {joined}"),
                    line: end_line,
                });
            }

            let escape = self.escape();
            let mut node = node_from_line(&joined, escape)
                .map_err(|e| e.at_line_range(self.src, first.start, start_line, end_line))?;
            node.line_map = map;
            node.comments = std::mem::take(&mut comments);

            if can_contain_heredoc(&node) && joined.contains("<<") {
                let docs = heredoc::heredocs_from_line(&joined)
                    .map_err(|e| e.at_line_range(self.src, first.start, start_line, end_line))?;
                for mut doc in docs {
                    let mut terminated = false;
                    while let Some((line, number)) = self.next_line()? {
                        end_line = number;
                        let mut candidate = trim_newline(line.text);
                        if doc.chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        doc.content.push_str(line.text);
                    }
                    if !terminated {
                        return Err(ParseError::new(
                            ErrorKind::UnterminatedHeredoc,
                            format!("unterminated heredoc `{}`", doc.name),
                        )
                        .with_hint(format!(
                            "end the heredoc with a line holding only `{}`",
                            doc.name
                        ))
                        .at_line_range(
                            self.src,
                            first.start,
                            start_line,
                            end_line,
                        ));
                    }
                    node.heredocs.push(doc);
                }
            }

            node.start_line = start_line;
            node.end_line = end_line;
            set_lines(&mut node);
            nodes.push(node);
        }

        if nodes.is_empty() {
            return Err(ParseError::new(
                ErrorKind::NoInstructions,
                "file with no instructions".to_string(),
            )
            .with_hint("a Dockerfile needs at least a FROM instruction"));
        }
        Ok(ParsedFile {
            directives: self.directives.finish(),
            instructions: nodes,
            warnings,
        })
    }

    fn escape(&self) -> char {
        self.directives.escape()
    }

    fn directive(&mut self, token: &str, offset: usize) -> Result<(), ParseError> {
        self.directives
            .feed(token)
            .map_err(|e| e.at(self.src, offset, token.len()))
    }
}

/// An ONBUILD trigger shares its parent's lines.
fn set_lines(node: &mut Node) {
    if let Some(sub) = node.onbuild.as_deref_mut() {
        sub.start_line = node.start_line;
        sub.end_line = node.end_line;
        sub.line_map = node.line_map.clone();
    }
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = node.onbuild.as_deref().unwrap_or(node);
    matches!(node.cmd.as_str(), "add" | "copy" | "run") && !node.json
}

/// Builds a node from one logical line (BuildKit's `newNodeFromLine`).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, ParseError> {
    let (cmd_word, flags, rest) = split_command(line)?;
    let cmd = cmd_word.to_lowercase();
    let mut onbuild = None;
    let (args, json) = match cmd.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(&rest)?,
        "arg" => (parse_words(&rest, escape), false),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&rest)?,
        "env" => (parse_name_val(&rest, "ENV", escape)?, false),
        "label" => (parse_name_val(&rest, "LABEL", escape)?, false),
        "expose" | "from" => (split_whitespace(&rest), false),
        "healthcheck" => parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (parse_string(&rest), false),
        "onbuild" => {
            if !rest.is_empty() {
                onbuild = Some(Box::new(node_from_line(&rest, escape)?));
            }
            (Vec::new(), false)
        }
        // BuildKit's parser ignores unknown keywords (its node chain holds one empty
        // value); the instruction layer reports them.
        _ => (vec![String::new()], false),
    };
    Ok(Node {
        cmd,
        flags,
        args,
        json,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        onbuild,
        original: line.to_string(),
        line_map: LineMap::default(),
        comments: Vec::new(),
    })
}

/// Splits `KEYWORD [--flags] rest` (BuildKit's `splitCommand`).
fn split_command(line: &str) -> Result<(&str, Vec<String>, String), ParseError> {
    let line = line.trim();
    let (cmd, rest) = match line.find(is_regex_ws) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_regex_ws)),
        None => (line, ""),
    };
    let (args, flags) = extract_builder_flags(rest);
    Ok((cmd, flags, args.trim().to_string()))
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]`.
fn is_regex_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Go's `unicode.IsSpace`.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c > '\u{ff}' && c.is_whitespace())
}

/// Takes the leading `--flag` words off `line` (BuildKit's `extractBuilderFlags`).
/// Returns the rest of the line and the flags.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    loop {
        let Some((pos, ch)) = chars.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        };
        match phase {
            Phase::Spaces => {
                if is_go_space(ch) {
                    continue;
                }
                if !line[pos..].starts_with("--") {
                    return (&line[pos..], words);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if is_go_space(ch) {
                    if word == "--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
}

/// Words separated by whitespace, with quotes and escapes kept as written
/// (BuildKit's `parseWords`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    loop {
        let Some(ch) = chars.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return words;
        };
        if phase == Phase::Spaces {
            if is_go_space(ch) {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if is_go_space(ch) {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if chars.peek().is_none() {
                        continue;
                    }
                    word.push(ch);
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    if chars.peek().is_none() {
                        phase = Phase::Word;
                        continue;
                    }
                    word.push(ch);
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
}

/// `ENV`/`LABEL` arguments as key, value, separator triples (BuildKit's `parseNameVal`).
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, ParseError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        // Legacy `ENV name value`: the value is the whole rest of the line.
        let Some(i) = rest.find(is_regex_ws) else {
            return Err(ParseError::new(
                ErrorKind::Syntax,
                format!("{key} must have two arguments"),
            )
            .with_hint(format!("write `{key} {rest}=value`")));
        };
        let value = rest[i..].trim_start_matches(is_regex_ws);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ParseError::new(
                ErrorKind::Syntax,
                format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value"),
            )
            .with_hint("every word must be `name=value`; quote values that hold spaces"));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_regex_ws)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_string(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    }
}

/// The result of trying `rest` as a JSON string array.
enum JsonArray {
    Strings(Vec<String>),
    NotJson,
}

fn parse_json(rest: &str) -> Result<JsonArray, ParseError> {
    let rest = rest.trim_start_matches(is_go_space);
    if !rest.starts_with('[') {
        return Ok(JsonArray::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonArray::NotJson);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ParseError::new(
                ErrorKind::Syntax,
                "only string arrays are allowed in JSON form".to_string(),
            )
            .with_hint(
                "every element of the JSON array must be a string, e.g. [\"echo\", \"hi\"]",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(JsonArray::Strings)
}

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), ParseError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        JsonArray::Strings(v) => (v, true),
        JsonArray::NotJson => (vec![rest.to_string()], false),
    })
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), ParseError> {
    Ok(match parse_json(rest)? {
        JsonArray::Strings(v) => (v, true),
        JsonArray::NotJson => (split_whitespace(rest), false),
    })
}

fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), ParseError> {
    let sep = rest
        .char_indices()
        .find(|&(_, c)| is_go_space(c))
        .map_or(rest.len(), |(i, _)| i);
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let cmd = rest[sep..].trim_start_matches(is_go_space);
    let (mut args, json) = maybe_json(cmd)?;
    args.insert(0, rest[..sep].to_string());
    Ok((args, json))
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn trim_leading_ws(s: &str) -> &str {
    s.trim_start_matches(is_go_space)
}

fn is_comment(s: &str) -> bool {
    trim_leading_ws(s).starts_with('#')
}

/// Removes a trailing line-continuation escape: the regex `([^E])E[ \t]*$|^E[ \t]*$`.
/// Returns the line and whether it ends the instruction.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint` for non-ASCII characters.
fn is_go_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
        || ('\u{e000}'..='\u{f8ff}').contains(&c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dump(text: &str) -> String {
        parse(&Source::new("Dockerfile", text)).unwrap().dump()
    }

    #[test]
    fn flags_end_at_double_dash() {
        assert_eq!(
            dump("COPY --doit=true -- foo /tmp/\n"),
            "(copy [\"--doit=true\"] \"foo\" \"/tmp/\")\n"
        );
    }

    #[test]
    fn continuation_keeps_indent_and_skips_comments() {
        assert_eq!(
            dump("RUN echo hello\\\n# c\n  world\n"),
            "(run \"echo hello  world\")\n"
        );
    }

    #[test]
    fn double_escape_is_not_a_continuation() {
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a\\ \t", '\\'), ("a", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
    }

    #[test]
    fn env_forms() {
        assert_eq!(dump("ENV a b c\n"), "(env \"a\" \"b c\" \"\")\n");
        assert_eq!(
            dump("ENV a=\"x y\" b=2\n"),
            "(env \"a\" \"\\\"x y\\\"\" \"=\" \"b\" \"2\" \"=\")\n"
        );
        let err = parse(&Source::new("Dockerfile", "ENV PATH\n")).unwrap_err();
        assert!(err.to_string().contains("ENV must have two arguments"));
    }

    #[test]
    fn json_fallback_and_nested_error() {
        assert_eq!(dump("CMD ['a']\n"), "(cmd \"['a']\")\n");
        assert_eq!(dump("CMD []\n"), "(cmd)\n");
        assert!(parse(&Source::new("Dockerfile", "CMD [\"a\", [\"b\"]]\n")).is_err());
    }

    #[test]
    fn onbuild_nests() {
        assert_eq!(
            dump("ONBUILD RUN [\"echo\", \"test\"]\n"),
            "(onbuild (run \"echo\" \"test\"))\n"
        );
    }

    #[test]
    fn unknown_keyword_has_empty_arg() {
        assert_eq!(dump("FOO bar\n"), "(foo \"\")\n");
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(
            go_quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(go_quote("♥\u{a0}"), "\"♥\\u00a0\"");
    }

    #[test]
    fn heredoc_bodies_attach() {
        let f = parse(&Source::new(
            "Dockerfile",
            "FROM x\nRUN <<EOF bash\necho hi\nEOF\nCOPY <<-A <<B /d/\n\tone\n\tA\ntwo\nB\n",
        ))
        .unwrap();
        let run = &f.instructions[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        assert_eq!((run.start_line, run.end_line), (2, 4));
        let copy = &f.instructions[2];
        assert_eq!(copy.heredocs[0].content, "\tone\n");
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert_eq!(copy.end_line, 9);
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let err = parse(&Source::new("Dockerfile", "FROM x\nRUN <<EOF\necho\n")).unwrap_err();
        assert!(err.to_string().contains("unterminated heredoc"));
    }

    #[test]
    fn too_long_line() {
        let text = format!("FROM x\nRUN {}\n", "a".repeat(MAX_LINE_LEN));
        let err = parse(&Source::new("Dockerfile", &text)).unwrap_err();
        assert!(err.to_string().contains("max allowed size of 65535"));
    }

    #[test]
    fn empty_continuation_warns() {
        let f = parse(&Source::new("Dockerfile", "FROM x\nRUN a \\\n\n  b\n")).unwrap();
        assert_eq!(f.warnings.len(), 1);
        assert_eq!(f.warnings[0].rule, "NoEmptyContinuation");
    }
}
