//! Source text and positions: byte offsets to 1-based line and column, and the map
//! from a joined logical line back to the physical source.

use serde::Serialize;

/// A named source text (a Dockerfile) with its line index.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

/// A position in a source: 1-based line and column (in characters), and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

/// A source range: start and end positions (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The position of a byte offset (clamped to the text, moved back to a char boundary).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let index = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[index];
        let column = self.text[start..offset].chars().count() + 1;
        Position {
            line: index + 1,
            column,
            offset,
        }
    }

    /// The span of `len` bytes at `offset`.
    pub fn span(&self, offset: usize, len: usize) -> Span {
        Span {
            start: self.position(offset),
            end: self.position(offset.saturating_add(len)),
        }
    }

    /// The byte offset where 1-based `line` starts.
    pub fn line_start(&self, line: usize) -> Option<usize> {
        self.line_starts.get(line.checked_sub(1)?).copied()
    }

    /// The text of 1-based `line`, without its line ending.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(start) = self.line_start(line) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// Maps byte offsets of a joined logical line back to offsets in the source:
/// one entry per physical piece, `(offset in the joined line, offset in the source)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMap {
    pieces: Vec<(usize, usize)>,
}

impl LineMap {
    pub(crate) fn push(&mut self, joined: usize, source: usize) {
        self.pieces.push((joined, source));
    }

    /// The source offset of byte `joined` of the logical line.
    pub fn to_source(&self, joined: usize) -> Option<usize> {
        let index = match self.pieces.binary_search_by_key(&joined, |&(j, _)| j) {
            Ok(i) => {
                // Several pieces can start at the same offset (empty pieces): take the last.
                let mut i = i;
                while self.pieces.get(i + 1).is_some_and(|&(j, _)| j == joined) {
                    i += 1;
                }
                i
            }
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let (j, s) = self.pieces[index];
        Some(s + (joined - j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let src = Source::new("Dockerfile", "FROM a\nRUN ♥ b\r\nX");
        assert_eq!(src.position(0).line, 1);
        let p = src.position(15);
        assert_eq!((p.line, p.column), (2, 7));
        assert_eq!(src.line_text(2), "RUN ♥ b");
        assert_eq!(src.line_text(3), "X");
        assert_eq!(src.line_text(9), "");
    }

    #[test]
    fn line_map() {
        let mut m = LineMap::default();
        m.push(0, 10);
        m.push(5, 30);
        assert_eq!(m.to_source(0), Some(10));
        assert_eq!(m.to_source(4), Some(14));
        assert_eq!(m.to_source(6), Some(31));
    }
}
