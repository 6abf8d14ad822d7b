//! rbuild's Dockerfile front end.
//!
//! It knows nothing of execution. Layers, from the bytes up:
//! - [`raw`]: the line-level parser, equivalent to BuildKit's `frontend/dockerfile/parser`
//!   (directives, continuations, heredocs, the per-instruction argument splitting).
//! - [`instructions`] and [`ast`]: typed instructions and stages with validated flags and
//!   source spans.
//! - [`shell`]: shell-word expansion as BuildKit's `shell` lexer does it.
//! - [`dockerignore`]: `.dockerignore` files and Docker's `patternmatcher` semantics.
//! - [`lint`]: BuildKit-compatible build checks (warnings with the same rule names).
//! - [`error`]: errors with `file:line:col`, the source line, a caret and a hint.

pub mod args;
pub mod ast;
pub mod directives;
pub mod dockerignore;
pub mod error;
mod flags;
pub mod heredoc;
pub mod instructions;
pub mod lint;
pub mod mount;
pub mod raw;
pub mod shell;
pub mod source;
mod values;

pub use ast::{Dockerfile, Instruction, InstructionKind, Stage};
pub use error::{Diagnostic, ErrorKind, ParseError, Severity};
pub use source::Source;

/// Parses and validates a Dockerfile: `name` is used in diagnostics.
pub fn parse(name: &str, text: &str) -> Result<Dockerfile, ParseError> {
    parse_source(&Source::new(name, text))
}

/// [`parse`] for a [`Source`] the caller keeps (to lint it, or to locate later errors).
pub fn parse_source(src: &Source) -> Result<Dockerfile, ParseError> {
    let raw = raw::parse(src)?;
    instructions::build(src, raw)
}

/// Decodes Dockerfile bytes: UTF-8 required; the error points at the first bad byte.
pub fn decode(name: &str, bytes: &[u8]) -> Result<String, ParseError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(bytes).into_owned();
        ParseError::new(ErrorKind::Encoding, "the Dockerfile is not valid UTF-8")
            .with_hint("save the file as UTF-8")
            .at(&Source::new(name, text), valid, 1)
    })
}
