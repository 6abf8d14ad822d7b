//! The typed Dockerfile: stages of validated instructions, each with its source span.
//!
//! Values are kept as written (before variable expansion): which words expand, and
//! with which ARG/ENV values, is decided when a stage is lowered for a build.

use std::time::Duration;

use serde::Serialize;

use crate::directives::{CheckConfig, Directives};
use crate::error::Diagnostic;
use crate::heredoc::Heredoc;
use crate::mount::{NetworkMode, SecurityMode};
use crate::source::Span;

/// A parsed and validated Dockerfile.
#[derive(Debug, Clone, Serialize)]
pub struct Dockerfile {
    /// The file name used in diagnostics.
    pub file: String,
    pub directives: Directives,
    pub check: CheckConfig,
    /// `ARG`s before the first `FROM`: visible only in `FROM` lines unless redeclared.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Warnings of the parser itself (e.g. empty continuation lines); see [`crate::lint`]
    /// for the build checks.
    pub warnings: Vec<Diagnostic>,
}

impl Dockerfile {
    /// The stage a `FROM`/`--from` name refers to (names are case-insensitive), or a
    /// stage index written as a number.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The name as written, for casing checks.
    #[serde(skip)]
    pub name_as_written: Option<String>,
    /// The base: an image reference, `scratch`, or an earlier stage's name (unexpanded).
    pub base: String,
    /// `--platform=` as written.
    pub platform: Option<String>,
    /// The span of the `FROM` instruction.
    pub span: Span,
    pub instructions: Vec<Instruction>,
}

/// An instruction with its place in the source.
#[derive(Debug, Clone, Serialize)]
pub struct Instruction {
    pub span: Span,
    /// The keyword as written (for casing checks and messages).
    pub keyword: String,
    /// The logical line as written (continuations joined).
    pub original: String,
    #[serde(flatten)]
    pub kind: InstructionKind,
}

/// Every instruction of the Dockerfile reference, typed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum InstructionKind {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell {
        shell: Vec<String>,
    },
    Env {
        vars: Vec<KeyValue>,
    },
    Label {
        labels: Vec<KeyValue>,
    },
    Maintainer {
        name: String,
    },
    Expose {
        ports: Vec<String>,
    },
    Add(Copy),
    Copy(Copy),
    Volume {
        paths: Vec<String>,
    },
    User {
        user: String,
    },
    Workdir {
        path: String,
    },
    Arg {
        args: Vec<ArgDecl>,
    },
    Stopsignal {
        signal: String,
    },
    Healthcheck(Healthcheck),
    Onbuild {
        /// The trigger as written, run when a later build uses this image as its base.
        expression: String,
        trigger: Box<Instruction>,
    },
}

impl InstructionKind {
    /// The keyword in upper case (`RUN`, `COPY`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell { .. } => "SHELL",
            InstructionKind::Env { .. } => "ENV",
            InstructionKind::Label { .. } => "LABEL",
            InstructionKind::Maintainer { .. } => "MAINTAINER",
            InstructionKind::Expose { .. } => "EXPOSE",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume { .. } => "VOLUME",
            InstructionKind::User { .. } => "USER",
            InstructionKind::Workdir { .. } => "WORKDIR",
            InstructionKind::Arg { .. } => "ARG",
            InstructionKind::Stopsignal { .. } => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild { .. } => "ONBUILD",
        }
    }
}

/// A command in shell form (one string run by the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// Shell form: `args` holds one string for the stage's SHELL.
    pub shell_form: bool,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub command: CommandLine,
    /// `--mount` values as written; [`crate::mount::Mount::parse`] types them once
    /// their variables are expanded (they were validated as far as possible already).
    pub mounts: Vec<String>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Copy {
    /// Sources as written; a heredoc source is written `<<NAME`.
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub keep_git_dir: Option<bool>,
    /// ADD only: `--checksum=sha256:...` of a remote source.
    pub checksum: Option<String>,
    /// ADD only: `--unpack` (true/false forces, absent means "archives from the context").
    pub unpack: Option<bool>,
    pub heredocs: Vec<Heredoc>,
    /// Written as a JSON array.
    pub json: bool,
}

/// `KEY=value` of ENV or LABEL (value as written, quotes and escapes kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an `ARG` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written (quotes kept), if any.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Cmd {
        test: CommandLine,
        #[serde(serialize_with = "ser_opt_duration")]
        interval: Option<Duration>,
        #[serde(serialize_with = "ser_opt_duration")]
        timeout: Option<Duration>,
        #[serde(serialize_with = "ser_opt_duration")]
        start_period: Option<Duration>,
        #[serde(serialize_with = "ser_opt_duration")]
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}
