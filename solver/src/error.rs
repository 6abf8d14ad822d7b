//! The solver's one error type. Errors caused by a Dockerfile line carry its location so
//! the CLI renders them like parser errors ([`Error::to_diagnostic`]).

use rbuild_parser::error::{Diagnostic, Location, ParseError, Severity};

use crate::worker::WorkerError;

/// Anything lowering or solving can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An error the parser's helpers reported (meta args, FROM expansion), located.
    #[error("{0}")]
    Parse(#[from] ParseError),

    /// A problem with one instruction: a bad value, a failed expansion, an unknown stage.
    #[error("{}{message}", prefix(location))]
    Instruction {
        message: String,
        hint: Option<String>,
        location: Option<Box<Location>>,
    },

    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found")]
    TargetNotFound {
        target: String,
        /// The closest stage name, if any.
        suggestion: Option<String>,
    },

    /// The Dockerfile has no stage to build.
    #[error("the Dockerfile has no stages to build")]
    NoStages,

    /// The worker could not resolve a base image (or a `--from` image).
    #[error(
        "{}failed to resolve {reference} ({platform}): {source}",
        prefix(location)
    )]
    ResolveImage {
        reference: String,
        platform: String,
        location: Option<Box<Location>>,
        source: WorkerError,
    },

    /// Hashing a context selection, or a cache lookup, failed.
    #[error("{step}: {source}")]
    Worker { step: String, source: WorkerError },

    /// A step ran and failed (non-zero exit, copy error, ...).
    #[error("{}{}", prefix(location), step_failed_message(step, command, source))]
    StepFailed {
        /// The progress name (`[build 3/5] RUN make`).
        step: String,
        /// The command as run (RUN argv joined), or the instruction.
        command: String,
        location: Option<Box<Location>>,
        source: WorkerError,
    },

    /// The graph is inconsistent (a bug, not a user error).
    #[error("internal solver error: {0}")]
    Internal(String),
}

fn prefix(location: &Option<Box<Location>>) -> String {
    match location {
        Some(l) => format!("{}:{}:{}: ", l.file, l.span.start.line, l.span.start.column),
        None => String::new(),
    }
}

fn step_failed_message(step: &str, command: &str, source: &WorkerError) -> String {
    match source.exit_code {
        Some(code) => format!(
            "{step}: process {} did not complete successfully: exit code: {code}",
            crate::config::go_quote(command)
        ),
        None => format!("{step}: {}", source.message),
    }
}

impl Error {
    /// An instruction error at `location`.
    pub fn at(location: Option<&Location>, message: impl Into<String>) -> Error {
        Error::Instruction {
            message: message.into(),
            hint: None,
            location: location.cloned().map(Box::new),
        }
    }

    /// Adds a hint (instruction errors only).
    pub fn with_hint(self, hint: impl Into<String>) -> Error {
        match self {
            Error::Instruction {
                message, location, ..
            } => Error::Instruction {
                message,
                hint: Some(hint.into()),
                location,
            },
            other => other,
        }
    }

    /// Where in the Dockerfile the error is, if it comes from a line.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Parse(e) => e.location(),
            Error::Instruction { location, .. }
            | Error::ResolveImage { location, .. }
            | Error::StepFailed { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// The error as a compiler-style diagnostic (`file:line:col`, the line, a caret);
    /// render it with [`Diagnostic::render`]. A failed step also lists its output tail.
    pub fn to_diagnostic(&self) -> Diagnostic {
        if let Error::Parse(e) = self {
            return (*e.diagnostic).clone();
        }
        let message = match self {
            Error::Instruction { message, .. } => message.clone(),
            Error::ResolveImage {
                reference,
                platform,
                source,
                ..
            } => format!("failed to resolve {reference} ({platform}): {source}"),
            Error::StepFailed {
                step,
                command,
                source,
                ..
            } => step_failed_message(step, command, source),
            other => other.to_string(),
        };
        let hint = match self {
            Error::Instruction { hint, .. } => hint.clone(),
            Error::TargetNotFound {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            Error::StepFailed { source, .. } if !source.output_tail.is_empty() => Some(format!(
                "last lines of output:\n{}",
                source.output_tail.join("\n")
            )),
            _ => None,
        };
        Diagnostic {
            severity: Severity::Error,
            rule: None,
            message,
            hint,
            location: self.location().cloned(),
        }
    }

    /// [`Error::to_diagnostic`] rendered.
    pub fn render(&self) -> String {
        self.to_diagnostic().render()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rbuild_parser::source::Source;

    #[test]
    fn located_error_renders_like_the_parser() {
        let src = Source::new("Dockerfile", "FROM scratch\nCOPY --chmod=999 a /b\n");
        let loc = Location::new(&src, 13, 20);
        let err = Error::at(Some(&loc), "invalid chmod parameter: '999'")
            .with_hint("use an octal mode like 0755");
        assert_eq!(
            err.to_string(),
            "Dockerfile:2:1: invalid chmod parameter: '999'"
        );
        let out = err.render();
        assert!(out.contains("--> Dockerfile:2:1"), "{out}");
        assert!(out.contains("2 | COPY --chmod=999 a /b"), "{out}");
        assert!(out.contains("hint: use an octal mode"), "{out}");
    }

    #[test]
    fn step_failure_names_exit_code_and_output() {
        let err = Error::StepFailed {
            step: "[build 2/3] RUN make".into(),
            command: "/bin/sh -c make".into(),
            location: None,
            source: WorkerError {
                message: "exit status 2".into(),
                exit_code: Some(2),
                output_tail: vec!["make: *** [all] Error 1".into()],
            },
        };
        assert_eq!(
            err.to_string(),
            "[build 2/3] RUN make: process \"/bin/sh -c make\" did not complete successfully: exit code: 2"
        );
        assert!(err.render().contains("make: *** [all] Error 1"));
    }
}
