//! Heredocs: `RUN <<EOF`, `<<-EOF` (leading tabs stripped), quoted delimiters that
//! turn expansion off, several on one line, `COPY <<EOF /dest`.

use serde::Serialize;

use crate::error::{ErrorKind, ParseError};
use crate::shell::{Lexer, NoEnv};

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body as written: every line up to the delimiter line, with its line ending.
    /// For `<<-` the leading tabs are still there; see [`Heredoc::body`].
    pub content: String,
    /// False when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    #[serde(skip)]
    pub chomp: bool,
    /// The file descriptor of `3<<EOF` (0 when none is written).
    #[serde(skip)]
    pub fd: u32,
}

impl Heredoc {
    /// The body with `<<-` tab stripping applied.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// The heredocs a logical line opens, in order (BuildKit's `heredocsFromLine`).
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseError> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    let words = lexer.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Parses one word as `[fd]<<[-]NAME`, or returns None when it is not a heredoc.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ParseError> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);

    // Lex the delimiter with and without quote removal: if the counts of quote
    // characters differ, some part was quoted and the body is not expanded.
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let lex_err = |e: crate::shell::ShellError| {
        ParseError::new(
            ErrorKind::Syntax,
            format!("invalid heredoc delimiter `{rest}`: {e}"),
        )
    };
    let words = lexer.process_words(rest, &NoEnv).map_err(lex_err)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &NoEnv).map_err(lex_err)?;
    let [raw] = raw.as_slice() else {
        return Err(ParseError::new(
            ErrorKind::Syntax,
            format!("internal lexing of heredoc produced inconsistent results: {rest}"),
        ));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quotes(name) == quotes(raw),
        chomp,
        fd,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doc(word: &str) -> Option<(String, bool, bool, u32)> {
        parse_heredoc(word)
            .unwrap()
            .map(|h| (h.name, h.expand, h.chomp, h.fd))
    }

    #[test]
    fn delimiters() {
        assert_eq!(doc("<<EOF"), Some(("EOF".into(), true, false, 0)));
        assert_eq!(doc("<<-EOF"), Some(("EOF".into(), true, true, 0)));
        assert_eq!(doc("<<'EOF'"), Some(("EOF".into(), false, false, 0)));
        assert_eq!(doc("<<\"EOF\""), Some(("EOF".into(), false, false, 0)));
        assert_eq!(doc("<<E\"O\"F"), Some(("EOF".into(), false, false, 0)));
        assert_eq!(doc("3<<EOF"), Some(("EOF".into(), true, false, 3)));
        assert_eq!(doc("<<"), None);
        assert_eq!(doc("<<<EOF"), None);
        assert_eq!(doc("echo"), None);
    }

    #[test]
    fn several_on_a_line() {
        let docs = heredocs_from_line("COPY <<A <<-'B' /dest/").unwrap();
        let names: Vec<_> = docs
            .iter()
            .map(|d| (d.name.as_str(), d.expand, d.chomp))
            .collect();
        assert_eq!(names, [("A", true, false), ("B", false, true)]);
    }

    #[test]
    fn chomp_strips_tabs() {
        let h = Heredoc {
            name: "E".into(),
            content: "\t\tone\n\ttwo\n".into(),
            expand: true,
            chomp: true,
            fd: 0,
        };
        assert_eq!(h.body(), "one\ntwo\n");
    }
}
