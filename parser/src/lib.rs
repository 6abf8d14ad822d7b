//! rbuild's Dockerfile front end.
//!
//! It knows nothing of execution. Layers, from the bytes up:
//! - [`raw`]: the line-level parser, equivalent to BuildKit's `frontend/dockerfile/parser`
//!   (directives, continuations, heredocs, the per-instruction argument splitting).
//! - [`instructions`]: typed instructions and stages with validated flags and source spans.
//! - [`shell`]: shell-word expansion as BuildKit's `shell` lexer does it.
//! - [`dockerignore`]: `.dockerignore` files and Docker's `patternmatcher` semantics.
//! - [`lint`]: BuildKit-compatible build checks (warnings with the same rule names).
//! - [`diagnostic`]: errors with `file:line:col`, the source line, a caret and a hint.

pub mod dockerignore;
pub mod shell;
