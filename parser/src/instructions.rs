//! From raw nodes to the typed [`Dockerfile`]: flags validated per instruction,
//! arguments counted and checked, stages formed (BuildKit's `instructions` package).

use std::time::Duration;

use crate::ast::{
    ArgDecl, CommandLine, Copy, Dockerfile, Healthcheck, Instruction, InstructionKind, KeyValue,
    Run, Stage,
};
use crate::directives::CheckConfig;
use crate::error::{Diagnostic, ErrorKind, Location, ParseError, Severity, did_you_mean};
use crate::flags::{FlagType, Flags};
use crate::mount::{Mount, NetworkMode, SecurityMode};
use crate::raw::{Node, ParsedFile};
use crate::source::{Source, Span};
pub use crate::values::{check_port, parse_go_duration, valid_stage_name};
use crate::values::{valid_checksum, valid_chmod};

/// Every instruction keyword, for suggestions.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Builds the typed Dockerfile from the raw parse.
pub fn build(src: &Source, parsed: ParsedFile) -> Result<Dockerfile, ParseError> {
    let check = match &parsed.directives.check {
        Some(value) => CheckConfig::parse(value).map_err(|e| e.at(src, 0, 0))?,
        None => CheckConfig::default(),
    };
    let warnings = parsed
        .warnings
        .iter()
        .map(|w| Diagnostic {
            severity: Severity::Warning,
            rule: Some(w.rule.clone()),
            message: w.message.clone(),
            hint: Some("remove the empty line or end the instruction before it".into()),
            location: src
                .line_start(w.line)
                .map(|off| Location::new(src, off, src.line_text(w.line).len())),
        })
        .collect();
    let mut file = Dockerfile {
        file: src.name().to_string(),
        directives: parsed.directives,
        check,
        meta_args: Vec::new(),
        stages: Vec::new(),
        warnings,
    };
    for node in &parsed.instructions {
        let cx = Cx { src, node };
        if node.cmd == "from" {
            let stage = cx.stage(file.stages.len())?;
            file.stages.push(stage);
            continue;
        }
        let inst = cx.instruction(node, false)?;
        match file.stages.last_mut() {
            Some(stage) => stage.instructions.push(inst),
            None if matches!(inst.kind, InstructionKind::Arg { .. }) => file.meta_args.push(inst),
            None => {
                return Err(cx.whole(
                    ErrorKind::NoStage,
                    "no build stage in current context".to_string(),
                    Some("start the Dockerfile with FROM; only ARG may come before it".into()),
                ));
            }
        }
    }
    Ok(file)
}

/// A FROM instruction, kept apart from [`InstructionKind`] because it opens a stage.
struct From {
    base: String,
    name: Option<String>,
    platform: Option<String>,
}

/// Context for one node: where errors point.
struct Cx<'a> {
    src: &'a Source,
    node: &'a Node,
}

/// An instruction being built: either a normal one or a FROM.
enum Built {
    Kind(InstructionKind),
    From(From),
}

impl Cx<'_> {
    /// The span of the whole instruction.
    fn span(&self) -> Span {
        let start = self.node.line_map.to_source(0).unwrap_or(0);
        let end_line = self.node.end_line;
        let end = self
            .src
            .line_start(end_line)
            .map_or(self.src.text().len(), |s| {
                s + self.src.line_text(end_line).len()
            });
        self.src.span(start, end.saturating_sub(start))
    }

    /// An error pointing at the instruction's first line.
    fn whole(&self, kind: ErrorKind, message: String, hint: Option<String>) -> ParseError {
        let start = self.node.line_map.to_source(0).unwrap_or(0);
        let len = self.node.original.trim_end().len().min(
            self.src
                .line_text(self.src.position(start).line)
                .len()
                .saturating_sub(self.src.position(start).column - 1),
        );
        with_hint(ParseError::new(kind, message), hint).at(self.src, start, len)
    }

    /// An error pointing at the first occurrence of `needle` in the logical line
    /// (after the keyword), or at the whole instruction when it is not found.
    fn at_text(
        &self,
        needle: &str,
        kind: ErrorKind,
        message: String,
        hint: Option<String>,
    ) -> ParseError {
        let original = &self.node.original;
        let skip = original.len() - original.trim_start().len() + self.node.cmd.len();
        let found = original
            .get(skip..)
            .and_then(|rest| rest.find(needle))
            .map(|i| skip + i)
            .filter(|_| !needle.is_empty());
        match found.and_then(|i| self.node.line_map.to_source(i)) {
            Some(off) => {
                with_hint(ParseError::new(kind, message), hint).at(self.src, off, needle.len())
            }
            None => self.whole(kind, message, hint),
        }
    }

    fn flags(&self, node: &Node, spec: &[(&'static str, FlagType)]) -> Result<Flags, ParseError> {
        Flags::parse(&node.cmd.to_uppercase(), &node.flags, spec).map_err(|e| {
            let flag_name = e.word.split('=').next().unwrap_or(&e.word).to_string();
            let kind = e.error.kind;
            let d = e.error.diagnostic;
            self.at_text(&flag_name, kind, d.message, d.hint)
        })
    }

    fn instruction(&self, node: &Node, in_onbuild: bool) -> Result<Instruction, ParseError> {
        let keyword = node
            .original
            .split_whitespace()
            .nth(usize::from(in_onbuild))
            .unwrap_or(&node.cmd)
            .to_string();
        let kind = match self.kind(node, in_onbuild)? {
            Built::Kind(k) => k,
            // The caller turns top-level FROMs into stages; ONBUILD rejects them.
            Built::From(_) => {
                return Err(self.whole(ErrorKind::Syntax, "unexpected FROM".into(), None));
            }
        };
        Ok(Instruction {
            span: self.span(),
            keyword,
            original: node.original.clone(),
            kind,
        })
    }

    fn stage(&self, index: usize) -> Result<Stage, ParseError> {
        let Built::From(from) = self.kind(self.node, false)? else {
            return Err(self.whole(ErrorKind::Syntax, "expected FROM".into(), None));
        };
        let name_as_written = from.name.clone();
        Ok(Stage {
            index,
            name: from.name.map(|n| n.to_ascii_lowercase()),
            name_as_written,
            base: from.base,
            platform: from.platform,
            span: self.span(),
            instructions: Vec::new(),
        })
    }

    fn kind(&self, node: &Node, in_onbuild: bool) -> Result<Built, ParseError> {
        let upper = node.cmd.to_uppercase();
        let args = &node.args;
        let arg_err = |message: String, hint: &str| {
            self.whole(ErrorKind::Arguments, message, Some(hint.to_string()))
        };
        let no_flags = |n: &Node| self.flags(n, &[]).map(|_| ());
        let kind = match node.cmd.as_str() {
            "from" => {
                let flags = self.flags(node, &[("platform", FlagType::String)])?;
                let (base, name) = match args.as_slice() {
                    [base] => (base.clone(), None),
                    [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                        (base.clone(), Some(name.clone()))
                    }
                    _ => {
                        return Err(arg_err(
                            "FROM requires either one or three arguments".into(),
                            "write `FROM image[:tag] [AS name]`",
                        ));
                    }
                };
                if let Some(n) = &name
                    && !valid_stage_name(n)
                {
                    return Err(self.at_text(
                        n,
                        ErrorKind::Arguments,
                        format!(
                            "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                        ),
                        Some("stage names match [a-z][a-z0-9-_.]*".into()),
                    ));
                }
                return Ok(Built::From(From {
                    base,
                    name,
                    platform: flags.string("platform"),
                }));
            }
            "run" => {
                let flags = self.flags(
                    node,
                    &[
                        ("mount", FlagType::List),
                        ("network", FlagType::String),
                        ("security", FlagType::String),
                    ],
                )?;
                if args.is_empty() && node.heredocs.is_empty() {
                    return Err(arg_err(
                        "RUN requires at least one argument".into(),
                        "write `RUN command` or `RUN [\"executable\", \"arg\"]`",
                    ));
                }
                let mounts = flags.list("mount");
                for m in &mounts {
                    Mount::parse(m, None).map_err(|e| {
                        self.at_text(
                            m,
                            ErrorKind::InvalidFlag,
                            format!("invalid --mount: {e}"),
                            Some(
                                "see `--mount=type=bind|cache|tmpfs|secret|ssh,target=...`".into(),
                            ),
                        )
                    })?;
                }
                let mode = |name: &str, parse: &dyn Fn(&str) -> Result<(), String>| match flags
                    .string(name)
                {
                    Some(v) => parse(&v).map_err(|e| {
                        self.at_text(&format!("--{name}"), ErrorKind::InvalidFlag, e, None)
                    }),
                    None => Ok(()),
                };
                mode("network", &|v| NetworkMode::parse(v).map(|_| ()))?;
                mode("security", &|v| SecurityMode::parse(v).map(|_| ()))?;
                InstructionKind::Run(Run {
                    command: command_line(node),
                    mounts,
                    network: flags
                        .string("network")
                        .and_then(|v| NetworkMode::parse(&v).ok()),
                    security: flags
                        .string("security")
                        .and_then(|v| SecurityMode::parse(&v).ok()),
                })
            }
            "cmd" => {
                no_flags(node)?;
                InstructionKind::Cmd(command_line(node))
            }
            "entrypoint" => {
                no_flags(node)?;
                InstructionKind::Entrypoint(command_line(node))
            }
            "shell" => {
                no_flags(node)?;
                if !node.json {
                    return Err(arg_err(
                        "SHELL requires the arguments to be in JSON form".into(),
                        "write `SHELL [\"/bin/sh\", \"-c\"]`",
                    ));
                }
                if args.is_empty() {
                    return Err(arg_err(
                        "SHELL requires at least one argument".into(),
                        "write `SHELL [\"/bin/sh\", \"-c\"]`",
                    ));
                }
                InstructionKind::Shell {
                    shell: args.clone(),
                }
            }
            "env" | "label" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(arg_err(
                        format!("{upper} requires at least one argument"),
                        "write `KEY=value`",
                    ));
                }
                let pairs = args
                    .chunks(3)
                    .map(|c| KeyValue {
                        key: c.first().cloned().unwrap_or_default(),
                        value: c.get(1).cloned().unwrap_or_default(),
                        legacy: c.get(2).is_some_and(|s| s.is_empty()),
                    })
                    .collect::<Vec<_>>();
                if let Some(kv) = pairs.iter().find(|kv| kv.key.is_empty()) {
                    return Err(self.at_text(
                        &format!("={}", kv.value),
                        ErrorKind::Arguments,
                        format!("{upper} names can not be blank"),
                        Some("write `KEY=value`".into()),
                    ));
                }
                if node.cmd == "env" {
                    InstructionKind::Env { vars: pairs }
                } else {
                    InstructionKind::Label { labels: pairs }
                }
            }
            "maintainer" => {
                no_flags(node)?;
                let [name] = args.as_slice() else {
                    return Err(arg_err(
                        "MAINTAINER requires exactly one argument".into(),
                        "better: LABEL org.opencontainers.image.authors=\"name\"",
                    ));
                };
                InstructionKind::Maintainer { name: name.clone() }
            }
            "expose" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(arg_err(
                        "EXPOSE requires at least one argument".into(),
                        "write `EXPOSE 80/tcp`",
                    ));
                }
                for port in args.iter().filter(|p| !p.contains('$')) {
                    if let Err(e) = check_port(port) {
                        return Err(self.at_text(
                            port,
                            ErrorKind::Arguments,
                            e,
                            Some("write PORT[-PORT][/tcp|/udp|/sctp]".into()),
                        ));
                    }
                }
                InstructionKind::Expose {
                    ports: args.clone(),
                }
            }
            "add" | "copy" => InstructionKind::from_copy(&node.cmd, self.copy(node)?),
            "volume" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(arg_err(
                        "VOLUME requires at least one argument".into(),
                        "write `VOLUME /data`",
                    ));
                }
                if args.iter().any(|a| a.trim().is_empty()) {
                    return Err(arg_err(
                        "VOLUME specified can not be an empty string".into(),
                        "remove the empty path",
                    ));
                }
                InstructionKind::Volume {
                    paths: args.clone(),
                }
            }
            "user" | "workdir" | "stopsignal" => {
                no_flags(node)?;
                let [value] = args.as_slice() else {
                    return Err(arg_err(
                        format!("{upper} requires exactly one argument"),
                        match node.cmd.as_str() {
                            "user" => "write `USER name[:group]` or `USER uid[:gid]`",
                            "workdir" => "write `WORKDIR /path`",
                            _ => "write `STOPSIGNAL SIGTERM`",
                        },
                    ));
                };
                match node.cmd.as_str() {
                    "user" => InstructionKind::User {
                        user: value.clone(),
                    },
                    "workdir" => InstructionKind::Workdir {
                        path: value.clone(),
                    },
                    _ => InstructionKind::Stopsignal {
                        signal: value.clone(),
                    },
                }
            }
            "arg" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(arg_err(
                        "ARG requires at least one argument".into(),
                        "write `ARG NAME` or `ARG NAME=default`",
                    ));
                }
                let mut decls = Vec::new();
                for word in args {
                    let (name, default) = match word.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (word.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(self.at_text(
                            word,
                            ErrorKind::Arguments,
                            "ARG names can not be blank".into(),
                            Some("write `ARG NAME=default`".into()),
                        ));
                    }
                    decls.push(ArgDecl { name, default });
                }
                InstructionKind::Arg { args: decls }
            }
            "healthcheck" => self.healthcheck(node)?,
            "onbuild" => {
                no_flags(node)?;
                let Some(trigger) = node.onbuild.as_deref() else {
                    return Err(arg_err(
                        "ONBUILD requires at least one argument".into(),
                        "write `ONBUILD RUN command`",
                    ));
                };
                match trigger.cmd.as_str() {
                    "onbuild" => {
                        return Err(arg_err(
                            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                            "give ONBUILD one trigger instruction",
                        ));
                    }
                    "from" | "maintainer" => {
                        return Err(arg_err(
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                trigger.cmd.to_uppercase()
                            ),
                            "triggers run in the child's stage; FROM and MAINTAINER can't",
                        ));
                    }
                    _ => {}
                }
                let inner = self.instruction(trigger, true)?;
                let expression = node
                    .original
                    .trim_start()
                    .get(node.cmd.len()..)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                InstructionKind::Onbuild {
                    expression,
                    trigger: Box::new(inner),
                }
            }
            _ => {
                let word = node
                    .original
                    .split_whitespace()
                    .nth(usize::from(in_onbuild))
                    .unwrap_or(&node.cmd)
                    .to_string();
                let hint = match did_you_mean(&word, KEYWORDS) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => "instructions are FROM, RUN, COPY, ADD, CMD, ENTRYPOINT, ENV, ARG, ..."
                        .into(),
                };
                let start = node
                    .line_map
                    .to_source(node.original.find(&word).unwrap_or(0));
                let err = ParseError::new(
                    ErrorKind::UnknownInstruction,
                    format!("unknown instruction: {}", word.to_uppercase()),
                )
                .with_hint(hint);
                return Err(match start {
                    Some(off) => err.at(self.src, off, word.len()),
                    None => err,
                });
            }
        };
        Ok(Built::Kind(kind))
    }

    fn copy(&self, node: &Node) -> Result<Copy, ParseError> {
        let is_add = node.cmd == "add";
        let spec: &[(&'static str, FlagType)] = if is_add {
            &[
                ("chown", FlagType::String),
                ("chmod", FlagType::String),
                ("link", FlagType::Bool),
                ("parents", FlagType::Bool),
                ("exclude", FlagType::List),
                ("keep-git-dir", FlagType::Bool),
                ("checksum", FlagType::String),
                ("unpack", FlagType::Bool),
            ]
        } else {
            &[
                ("from", FlagType::String),
                ("chown", FlagType::String),
                ("chmod", FlagType::String),
                ("link", FlagType::Bool),
                ("parents", FlagType::Bool),
                ("exclude", FlagType::List),
            ]
        };
        let flags = self.flags(node, spec)?;
        let upper = node.cmd.to_uppercase();
        let Some((dest, sources)) = node.args.split_last() else {
            return Err(self.whole(
                ErrorKind::Arguments,
                format!("{upper} requires at least two arguments"),
                Some(format!("write `{upper} <src>... <dest>`")),
            ));
        };
        if sources.is_empty() {
            return Err(self.whole(
                ErrorKind::Arguments,
                format!(
                    "{upper} requires at least two arguments, but only one was provided. Destination could not be determined."
                ),
                Some(format!("write `{upper} <src>... <dest>`")),
            ));
        }
        let chmod = flags.string("chmod");
        if let Some(mode) = chmod.as_deref().filter(|m| !m.contains('$'))
            && !valid_chmod(mode)
        {
            return Err(self.at_text(
                "--chmod",
                ErrorKind::InvalidFlag,
                format!("invalid chmod parameter: {mode:?}"),
                Some("use an octal mode such as --chmod=0755, or a symbolic one such as --chmod=u=rwx,go=rx".into()),
            ));
        }
        if let Some(sum) = flags.string("checksum")
            && !sum.contains('$')
            && !valid_checksum(&sum)
        {
            return Err(self.at_text(
                "--checksum",
                ErrorKind::InvalidFlag,
                format!("invalid checksum digest format: {sum:?}"),
                Some("write --checksum=sha256:<64 hex digits>".into()),
            ));
        }
        Ok(Copy {
            sources: sources.to_vec(),
            dest: dest.clone(),
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod,
            link: flags.bool("link"),
            parents: flags.bool("parents"),
            exclude: flags.list("exclude"),
            keep_git_dir: flags.opt_bool("keep-git-dir"),
            checksum: flags.string("checksum"),
            unpack: flags.opt_bool("unpack"),
            heredocs: node.heredocs.clone(),
            json: node.json,
        })
    }

    fn healthcheck(&self, node: &Node) -> Result<InstructionKind, ParseError> {
        let flags = self.flags(
            node,
            &[
                ("interval", FlagType::String),
                ("timeout", FlagType::String),
                ("start-period", FlagType::String),
                ("start-interval", FlagType::String),
                ("retries", FlagType::String),
            ],
        )?;
        let Some((typ, rest)) = node.args.split_first() else {
            return Err(self.whole(
                ErrorKind::Arguments,
                "HEALTHCHECK requires an argument".into(),
                Some("write `HEALTHCHECK CMD command` or `HEALTHCHECK NONE`".into()),
            ));
        };
        match typ.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() || !node.flags.is_empty() {
                    return Err(self.whole(
                        ErrorKind::Arguments,
                        "HEALTHCHECK NONE takes no arguments".into(),
                        Some("remove the flags and arguments after NONE".into()),
                    ));
                }
                Ok(InstructionKind::Healthcheck(Healthcheck::None))
            }
            "CMD" => {
                if rest.is_empty() {
                    return Err(self.whole(
                        ErrorKind::Arguments,
                        "Missing command after HEALTHCHECK CMD".into(),
                        Some("write `HEALTHCHECK CMD curl -f http://localhost/`".into()),
                    ));
                }
                let duration = |name: &str| -> Result<Option<Duration>, ParseError> {
                    let Some(v) = flags.string(name) else {
                        return Ok(None);
                    };
                    let flag = format!("--{name}");
                    let d = parse_go_duration(&v).map_err(|e| {
                        self.at_text(
                            &flag,
                            ErrorKind::InvalidFlag,
                            format!("{flag}: {e}"),
                            Some("durations look like 30s, 1m30s, 500ms".into()),
                        )
                    })?;
                    if d != Duration::ZERO && d < Duration::from_millis(1) {
                        return Err(self.at_text(
                            &flag,
                            ErrorKind::InvalidFlag,
                            format!("Interval {flag:?} cannot be less than 1ms"),
                            None,
                        ));
                    }
                    Ok((d != Duration::ZERO).then_some(d))
                };
                let retries = match flags.string("retries") {
                    Some(v) => Some(v.parse::<u32>().map_err(|_| {
                        self.at_text(
                            "--retries",
                            ErrorKind::InvalidFlag,
                            format!("invalid --retries value {v:?}"),
                            Some("retries is a whole number, 0 or more".into()),
                        )
                    })?),
                    None => None,
                };
                let mut test = command_line(node);
                test.args.remove(0);
                Ok(InstructionKind::Healthcheck(Healthcheck::Cmd {
                    test,
                    interval: duration("interval")?,
                    timeout: duration("timeout")?,
                    start_period: duration("start-period")?,
                    start_interval: duration("start-interval")?,
                    retries,
                }))
            }
            other => Err(self.at_text(
                typ,
                ErrorKind::Arguments,
                format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
                Some("write `HEALTHCHECK CMD command` or `HEALTHCHECK NONE`".into()),
            )),
        }
    }
}

impl InstructionKind {
    fn from_copy(cmd: &str, copy: Copy) -> InstructionKind {
        if cmd == "add" {
            InstructionKind::Add(copy)
        } else {
            InstructionKind::Copy(copy)
        }
    }
}

fn with_hint(err: ParseError, hint: Option<String>) -> ParseError {
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

fn command_line(node: &Node) -> CommandLine {
    CommandLine {
        args: node.args.clone(),
        shell_form: !node.json,
        heredocs: node.heredocs.clone(),
    }
}
