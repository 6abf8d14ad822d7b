//! Build checks: BuildKit's lint rules (`docker build --check`), with the same rule names
//! and messages, reported as compiler-style warnings with a hint and a precise location.
//!
//! What BuildKit decides while dispatching a build (undefined variables, relative WORKDIR,
//! JSON form for CMD, ...) is evaluated here on the parsed file with [`StageEnv`]. The one
//! thing a parser cannot know is a base image's environment: like BuildKit, which resolves
//! every base image before it checks, `UndefinedVar` is reported only where the whole
//! environment is known — stages built `FROM scratch`, directly or through earlier stages.
//! Rules that need a pulled image (`InvalidBaseImagePlatform`) or are experimental and
//! comment-based (`InvalidDefinitionDescription`) are not implemented.

use std::collections::{BTreeMap, BTreeSet};

use crate::args::{self, Platform, StageEnv};
use crate::ast::{Copy, Dockerfile, Instruction, InstructionKind, Stage};
use crate::dockerignore::PatternMatcher;
use crate::error::{Diagnostic, ErrorKind, Location, ParseError, Severity};
use crate::raw::go_quote;
use crate::shell::{Expansion, Lexer};
use crate::source::{Source, Span};

mod helpers;

use helpers::{
    context_path, expanded_words, is_abs, is_secret_name, json_hint, shell_quote, suggest,
    valid_reference,
};

/// Every rule this module reports, in BuildKit's order.
pub const RULES: &[&str] = &[
    "StageNameCasing",
    "FromAsCasing",
    "NoEmptyContinuation",
    "ConsistentInstructionCasing",
    "DuplicateStageName",
    "ReservedStageName",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "UndefinedArgInFrom",
    "WorkdirRelativePath",
    "UndefinedVar",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "RedundantTargetPlatform",
    "SecretsUsedInArgOrEnv",
    "InvalidDefaultArgInFrom",
    "FromPlatformFlagConstDisallowed",
    "CopyIgnoredFile",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
];

/// The documentation page of a rule: `https://docs.docker.com/go/dockerfile/rule/<rule>/`.
pub fn rule_url(rule: &str) -> Option<String> {
    let known = RULES.iter().find(|r| r.eq_ignore_ascii_case(rule))?;
    let mut kebab = String::new();
    let chars: Vec<char> = known.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        if i > 0 && c.is_ascii_uppercase() && (prev_lower || next_lower) {
            kebab.push('-');
        }
        kebab.push(c.to_ascii_lowercase());
    }
    Some(format!(
        "https://docs.docker.com/go/dockerfile/rule/{kebab}/"
    ))
}

/// What the checks may assume about the build.
#[derive(Debug, Clone, Default)]
pub struct LintOptions<'a> {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The build context's `.dockerignore`; `CopyIgnoredFile` runs only with one.
    pub ignore: Option<&'a PatternMatcher>,
    /// The target stage: build-time checks then cover only the stages it needs. None means
    /// every stage (as `docker build --check` without `--target`).
    pub target: Option<String>,
}

/// Runs every check. Warnings come sorted by position; rules named in `# check=skip=`
/// are left out.
pub fn lint(df: &Dockerfile, src: &Source, opts: &LintOptions<'_>) -> Vec<Diagnostic> {
    let mut l = Linter {
        df,
        src,
        opts,
        lexer: Lexer::new(df.directives.escape),
        out: Vec::new(),
    };
    l.empty_continuations();
    l.instruction_casing();
    l.stage_names();
    let meta = l.check_from_lines();
    l.dispatch(&meta);
    let mut out = l.out;
    out.sort_by_key(|d| d.location.as_ref().map_or(0, |l| l.span.start.offset));
    out
}

/// Applies `# check=error=true`: Err with [`ErrorKind::Check`] and the first warning's
/// location when any remain.
pub fn enforce(df: &Dockerfile, warnings: &[Diagnostic]) -> Result<(), ParseError> {
    let Some(first) = warnings.first() else {
        return Ok(());
    };
    if !df.check.error {
        return Ok(());
    }
    let rules: BTreeSet<&str> = warnings.iter().filter_map(|w| w.rule.as_deref()).collect();
    let mut err = ParseError::new(
        ErrorKind::Check,
        format!(
            "lint violation found for rules: {}",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
    .with_hint("fix the warnings, or drop `error=true` from the `# check=` directive");
    err.diagnostic.location = first.location.clone();
    Err(err)
}

struct Linter<'a> {
    df: &'a Dockerfile,
    src: &'a Source,
    opts: &'a LintOptions<'a>,
    lexer: Lexer,
    out: Vec<Diagnostic>,
}

/// The words of a FROM line with their source offsets.
#[derive(Default)]
struct FromWords<'t> {
    keyword: Option<(usize, &'t str)>,
    platform_flag: Option<(usize, &'t str)>,
    base: Option<(usize, &'t str)>,
    as_kw: Option<(usize, &'t str)>,
    name: Option<(usize, &'t str)>,
}

impl<'a> Linter<'a> {
    fn warn(&mut self, rule: &str, message: String, hint: String, offset: usize, len: usize) {
        if self.df.check.skips(rule) {
            return;
        }
        self.out.push(Diagnostic {
            severity: Severity::Warning,
            rule: Some(rule.to_string()),
            message,
            hint: Some(hint),
            location: Some(Location::new(self.src, offset, len)),
        });
    }

    /// The source text of a span.
    fn text(&self, span: &Span) -> &'a str {
        let text = self.src.text();
        text.get(span.start.offset..span.end.offset.min(text.len()))
            .unwrap_or("")
    }

    /// `needle` in an instruction's source after its keyword: (offset, len), or the
    /// keyword's place when it is not there.
    fn find(&self, span: &Span, needle: &str) -> (usize, usize) {
        let text = self.text(span);
        let skip = text.find(char::is_whitespace).unwrap_or(text.len());
        let found = (!needle.is_empty())
            .then(|| text.get(skip..).and_then(|t| t.find(needle)))
            .flatten();
        match found {
            Some(i) => (span.start.offset + skip + i, needle.len()),
            None => (span.start.offset, skip),
        }
    }

    /// A `$NAME` / `${NAME…` reference in an instruction, or its keyword.
    fn find_var(&self, span: &Span, name: &str) -> (usize, usize) {
        let text = self.text(span);
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        for (i, _) in text.match_indices('$') {
            let rest = &text[i + 1..];
            if let Some(inner) = rest.strip_prefix('{')
                && inner.starts_with(name)
                && !inner[name.len()..].starts_with(ident)
            {
                let len = 2 + name.len() + usize::from(inner[name.len()..].starts_with('}'));
                return (span.start.offset + i, len);
            }
            if rest.starts_with(name) && !rest[name.len()..].starts_with(ident) {
                return (span.start.offset + i, 1 + name.len());
            }
        }
        self.find(span, "")
    }

    /// The instruction's first line from the keyword on.
    fn first_line(&self, span: &Span) -> (usize, usize) {
        let text = self.text(span);
        let len = text.find(['\n', '\r']).unwrap_or(text.len());
        (span.start.offset, len.max(1))
    }

    fn words_of_from(&self, stage: &Stage) -> FromWords<'a> {
        let text = self.text(&stage.span);
        let escape = self.df.directives.escape.to_string();
        let mut words = FromWords::default();
        let mut positional = 0;
        for word in text.split(char::is_whitespace) {
            // `word` is a slice of `text`: its distance from the start is its offset.
            let offset =
                stage.span.start.offset + (word.as_ptr() as usize - text.as_ptr() as usize);
            if word.is_empty() || word == escape {
                continue;
            }
            if words.keyword.is_none() {
                words.keyword = Some((offset, word));
            } else if positional == 0 && word.starts_with("--") {
                if word.to_ascii_lowercase().starts_with("--platform") {
                    words.platform_flag = Some((offset, word));
                }
            } else {
                let slot = match positional {
                    0 => &mut words.base,
                    1 => &mut words.as_kw,
                    2 => &mut words.name,
                    _ => break,
                };
                *slot = Some((offset, word));
                positional += 1;
            }
        }
        words
    }

    fn empty_continuations(&mut self) {
        for w in &self.df.warnings {
            if w.rule.as_deref() != Some("NoEmptyContinuation")
                || self.df.check.skips("NoEmptyContinuation")
            {
                continue;
            }
            self.out.push(Diagnostic {
                message: "Empty continuation line".into(),
                ..w.clone()
            });
        }
    }

    /// ConsistentInstructionCasing (stages only: meta ARGs are not counted, as in BuildKit).
    fn instruction_casing(&mut self) {
        let mut words: Vec<(usize, &str)> = Vec::new();
        for stage in &self.df.stages {
            if let Some(k) = self.words_of_from(stage).keyword {
                words.push(k);
            }
            for inst in &stage.instructions {
                words.push((inst.span.start.offset, inst.keyword.as_str()));
            }
        }
        let consistent = |w: &str| w == w.to_lowercase() || w == w.to_uppercase();
        let lower = words
            .iter()
            .filter(|(_, w)| consistent(w) && *w == w.to_lowercase())
            .count();
        let upper = words.iter().filter(|(_, w)| consistent(w)).count() - lower;
        let majority_lower = lower > upper;
        for (offset, word) in words {
            let (casing, fixed) = if majority_lower {
                ("lowercase", word.to_lowercase())
            } else {
                ("uppercase", word.to_uppercase())
            };
            if word != fixed {
                self.warn(
                    "ConsistentInstructionCasing",
                    format!(
                        "Command '{word}' should match the case of the command majority ({casing})"
                    ),
                    format!("write `{fixed}`"),
                    offset,
                    word.len(),
                );
            }
        }
    }

    /// StageNameCasing, FromAsCasing, ReservedStageName, DuplicateStageName.
    fn stage_names(&mut self) {
        let mut seen = BTreeSet::new();
        for stage in &self.df.stages {
            let words = self.words_of_from(stage);
            let (name_off, name_len) = words
                .name
                .map_or((stage.span.start.offset, 4), |(o, w)| (o, w.len()));
            if let Some(written) = &stage.name_as_written
                && *written != written.to_lowercase()
            {
                self.warn(
                    "StageNameCasing",
                    format!("Stage name '{written}' should be lowercase"),
                    format!("write `{}`", written.to_lowercase()),
                    name_off,
                    name_len,
                );
            }
            if let (Some((_, from)), Some((as_off, as_kw))) = (words.keyword, words.as_kw) {
                let from_lower = from == from.to_lowercase();
                let from_upper = from == from.to_uppercase();
                let fixed = if from_lower {
                    as_kw.to_lowercase()
                } else {
                    as_kw.to_uppercase()
                };
                if (from_lower || from_upper) && as_kw != fixed {
                    self.warn(
                        "FromAsCasing",
                        format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                        format!("write `{fixed}` to match `{from}`"),
                        as_off,
                        as_kw.len(),
                    );
                }
            }
            let Some(name) = &stage.name else { continue };
            if matches!(name.as_str(), "context" | "scratch") {
                self.warn(
                    "ReservedStageName",
                    format!(
                        "Stage name should not use the same name as reserved stage {}",
                        go_quote(name)
                    ),
                    format!(
                        "`{name}` has a meaning of its own in FROM and --from; rename the stage"
                    ),
                    name_off,
                    name_len,
                );
            }
            if !seen.insert(name.clone()) {
                self.warn(
                    "DuplicateStageName",
                    format!(
                        "Duplicate stage name {}, stage names should be unique",
                        go_quote(name)
                    ),
                    "give each stage its own name".into(),
                    name_off,
                    name_len,
                );
            }
        }
    }

    /// Predefined args with placeholder platforms (values never matter to the checks)
    /// overridden by build args, as BuildKit's `defaultArgs`.
    fn global_args(&self) -> BTreeMap<String, String> {
        let p = Platform::new("linux", "amd64", None);
        let target = self
            .opts
            .target
            .clone()
            .or_else(|| self.df.stages.last().and_then(|s| s.name.clone()))
            .unwrap_or_default();
        let mut global = args::default_args(&p, &p, &target);
        for (k, v) in global.iter_mut() {
            if let Some(o) = self.opts.build_args.get(k) {
                v.clone_from(o);
            }
        }
        global
    }

    /// UndefinedArgInFrom, RedundantTargetPlatform, FromPlatformFlagConstDisallowed,
    /// InvalidDefaultArgInFrom. Returns the meta scope for the stages.
    fn check_from_lines(&mut self) -> BTreeMap<String, String> {
        let global = self.global_args();
        let meta = args::resolve_meta_args(self.df, &self.opts.build_args, &global)
            .unwrap_or_else(|_| global.clone());
        let mut known: BTreeSet<String> = meta.keys().cloned().collect();
        for inst in &self.df.meta_args {
            if let InstructionKind::Arg { args } = &inst.kind {
                known.extend(args.iter().map(|a| a.name.clone()));
            }
        }
        let options: Vec<&str> = known.iter().map(String::as_str).collect();
        let defaults = args::resolve_meta_args(self.df, &BTreeMap::new(), &global).ok();
        let mut defaults_ok = defaults.is_some();
        for stage in &self.df.stages {
            let words = self.words_of_from(stage);
            let (base_off, base_len) = words
                .base
                .map_or((stage.span.start.offset, 4), |(o, w)| (o, w.len()));
            if let Ok(e) = self.lexer.process_word_with_matches(&stage.base, &meta) {
                self.undefined_in_from(stage, &e, &known, &options);
            }
            if let Some(p) = &stage.platform {
                let (flag_off, flag_len) = words
                    .platform_flag
                    .map_or((stage.span.start.offset, 4), |(o, w)| (o, w.len()));
                if let Ok(e) = self.lexer.process_word_with_matches(p, &meta) {
                    self.undefined_in_from(stage, &e, &known, &options);
                    if e.matched.len() == 1
                        && e.unmatched.is_empty()
                        && e.matched.contains("TARGETPLATFORM")
                        && meta.get("TARGETPLATFORM") == Some(&e.result)
                    {
                        self.warn(
                            "RedundantTargetPlatform",
                            format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"),
                            format!("remove `--platform={p}`"),
                            flag_off,
                            flag_len,
                        );
                    }
                    if e.matched.is_empty() && e.unmatched.is_empty() {
                        self.const_platform(stage, &e.result, flag_off, flag_len);
                    }
                }
            }
            if let (true, Some(d)) = (defaults_ok, &defaults) {
                match self.lexer.process_word_with_matches(&stage.base, d) {
                    Err(_) => defaults_ok = false,
                    Ok(e) if !valid_reference(&e.result) => {
                        let hint = match e.unmatched.iter().chain(&e.matched).next() {
                            Some(n) => format!(
                                "give the ARG a default that makes a valid image name, e.g. `ARG {n}=latest`"
                            ),
                            None => "FROM needs a valid image reference, e.g. `alpine:3.20`".into(),
                        };
                        self.warn(
                            "InvalidDefaultArgInFrom",
                            format!("Default value for ARG {} results in empty or invalid base image name", stage.base),
                            hint,
                            base_off,
                            base_len,
                        );
                    }
                    Ok(_) => {}
                }
            }
        }
        meta
    }

    fn undefined_in_from(
        &mut self,
        stage: &Stage,
        e: &Expansion,
        known: &BTreeSet<String>,
        options: &[&str],
    ) {
        for name in e.unmatched.iter().filter(|n| !known.contains(*n)) {
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(s) = suggest(name, options, true) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            let (off, len) = self.find_var(&stage.span, name);
            self.warn(
                "UndefinedArgInFrom",
                message,
                format!("declare it before the first FROM: `ARG {name}=<default>`"),
                off,
                len,
            );
        }
    }

    fn const_platform(&mut self, stage: &Stage, value: &str, off: usize, len: usize) {
        let mut parts = value.split('/');
        let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
            return;
        };
        let Ok(p) = Platform::parse(&format!("{os}/{arch}")) else {
            return;
        };
        let name = stage.name.as_deref().unwrap_or("");
        if name.contains(&p.os) || name.contains(&p.arch) {
            return;
        }
        self.warn(
            "FromPlatformFlagConstDisallowed",
            format!("FROM --platform flag should not use constant value {}", go_quote(value)),
            "use `--platform=$BUILDPLATFORM` (or `$TARGETPLATFORM`), or name the stage after the platform".into(),
            off,
            len,
        );
    }

    /// The stages the target needs (all without a target or when it is not found).
    fn reachable(&self, parents: &[Option<usize>]) -> Vec<bool> {
        let n = self.df.stages.len();
        let target = self.opts.target.as_deref().and_then(|t| {
            let t = t.to_ascii_lowercase();
            self.df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
        });
        let Some(target) = target else {
            return vec![true; n];
        };
        let mut seen = vec![false; n];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            todo.extend(parents[i]);
            for inst in &self.df.stages[i].instructions {
                let refs: Vec<String> = match &inst.kind {
                    InstructionKind::Copy(c) => c.from.iter().cloned().collect(),
                    InstructionKind::Run(r) => r
                        .mounts
                        .iter()
                        .flat_map(|m| m.split(','))
                        .filter_map(|kv| kv.strip_prefix("from="))
                        .map(str::to_string)
                        .collect(),
                    _ => Vec::new(),
                };
                for r in refs {
                    let r = r.to_ascii_lowercase();
                    let found = self
                        .df
                        .stages
                        .iter()
                        .position(|s| s.name.as_deref() == Some(r.as_str()));
                    todo.extend(found.or_else(|| r.parse::<usize>().ok().filter(|&i| i < n)));
                }
            }
        }
        seen
    }

    /// The checks BuildKit runs while dispatching each stage.
    fn dispatch(&mut self, meta: &BTreeMap<String, String>) {
        let escape = self.df.directives.escape;
        let (mut parents, mut scratch) = (Vec::new(), Vec::new());
        for (i, stage) in self.df.stages.iter().enumerate() {
            let base = args::expand_from_with(stage, meta, escape)
                .map(|(b, _)| b)
                .ok();
            scratch.push(base.as_deref() == Some("scratch"));
            parents.push(base.as_deref().and_then(|b| {
                self.df.stages[..i]
                    .iter()
                    .rposition(|s| s.name.as_deref() == Some(b))
            }));
        }
        let reachable = self.reachable(&parents);
        let mut finals: Vec<StageEnv> = Vec::new();
        for (i, stage) in self.df.stages.iter().enumerate() {
            let fresh = StageEnv::new(escape, meta, &self.opts.build_args);
            let mut env = match parents[i].and_then(|p| finals.get(p)) {
                Some(parent) => StageEnv::from_parent(parent),
                None if scratch[i] => fresh.scratch(),
                None => fresh,
            };
            let mut last: BTreeMap<&str, &Instruction> = BTreeMap::new();
            for inst in &stage.instructions {
                if reachable[i] {
                    self.check_instruction(inst, &env, &mut last);
                }
                if let InstructionKind::Arg { args } = &inst.kind {
                    for decl in args {
                        if reachable[i] {
                            self.secret(inst, "ARG", &decl.name);
                        }
                        // Reported against the scope before the ARG, as BuildKit does.
                        let before = (reachable[i] && env.env_known()).then(|| env.clone());
                        if let (Ok(Some(e)), Some(before)) = (env.declare_arg(decl), before) {
                            self.undefined_vars(inst, &before, std::slice::from_ref(&e));
                        }
                    }
                } else {
                    let _ = env.apply(&inst.kind);
                }
            }
            finals.push(env);
        }
    }

    fn check_instruction<'i>(
        &mut self,
        inst: &'i Instruction,
        env: &StageEnv,
        last: &mut BTreeMap<&'static str, &'i Instruction>,
    ) {
        let expansions: Vec<Expansion> = expanded_words(inst, env);
        self.undefined_vars(inst, env, &expansions);
        let kw = inst.keyword.as_str();
        match &inst.kind {
            InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c) => {
                self.once(inst, last);
                if c.shell_form && !env.shell_set() {
                    let (off, len) = self.first_line(&inst.span);
                    self.warn(
                        "JSONArgsRecommended",
                        format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals"),
                        json_hint(kw, &c.args.join(" ")),
                        off,
                        len,
                    );
                }
            }
            InstructionKind::Healthcheck(_) => self.once(inst, last),
            InstructionKind::Maintainer { name } => self.warn(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label".into(),
                format!(
                    "write `LABEL org.opencontainers.image.authors={}`",
                    go_quote(name)
                ),
                inst.span.start.offset,
                kw.len(),
            ),
            InstructionKind::Env { vars } | InstructionKind::Label { labels: vars } => {
                let is_env = matches!(inst.kind, InstructionKind::Env { .. });
                for kv in vars {
                    if kv.legacy {
                        let (off, len) = self.find(&inst.span, &kv.key);
                        self.warn(
                            "LegacyKeyValueFormat",
                            format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                            format!("write `{kw} {}={}`", kv.key, shell_quote(&kv.value)),
                            off,
                            len,
                        );
                    }
                    if is_env {
                        let key = env.expand(&kv.key).map_or(kv.key.clone(), |e| e.result);
                        self.secret(inst, "ENV", &key);
                    }
                }
            }
            InstructionKind::Workdir { path } if !env.workdir_set() => {
                let Ok(e) = env.expand(path) else { return };
                if (env.env_known() || env.undefined(&e).is_empty()) && !is_abs(&e.result) {
                    let (off, len) = self.find(&inst.span, path);
                    self.warn(
                        "WorkdirRelativePath",
                        format!("Relative workdir {} can have unexpected results if the base image changes", go_quote(&e.result)),
                        format!("use an absolute path, e.g. `WORKDIR /{}`", e.result.trim_start_matches("./")),
                        off,
                        len,
                    );
                }
            }
            InstructionKind::Copy(c) if c.from.is_none() => self.ignored(inst, c, "Copy", env),
            InstructionKind::Add(c) => self.ignored(inst, c, "Add", env),
            InstructionKind::Expose { ports } => self.expose(inst, ports, env),
            _ => {}
        }
    }

    /// MultipleInstructionsDisallowed: reported at the earlier instruction, which is ignored.
    fn once<'i>(
        &mut self,
        inst: &'i Instruction,
        last: &mut BTreeMap<&'static str, &'i Instruction>,
    ) {
        let name = inst.kind.name();
        if let Some(prev) = last.insert(name, inst) {
            let kw = &inst.keyword;
            self.warn(
                "MultipleInstructionsDisallowed",
                format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"),
                format!("remove this {}: the one on line {} replaces it", prev.keyword, inst.span.start.line),
                prev.span.start.offset,
                prev.keyword.len(),
            );
        }
    }

    fn undefined_vars(&mut self, inst: &Instruction, env: &StageEnv, expansions: &[Expansion]) {
        if !env.env_known() {
            return;
        }
        let mut names = BTreeSet::new();
        for e in expansions {
            names.extend(env.undefined(e));
        }
        let keys: Vec<&str> = env.vars().keys().map(String::as_str).collect();
        for name in names {
            let mut message = format!("Usage of undefined variable '${name}'");
            let hint = match suggest(&name, &keys, true) {
                Some(s) => {
                    message.push_str(&format!(" (did you mean ${s}?)"));
                    format!(
                        "write `${s}`, or declare `ARG {name}` or `ENV {name}=...` before this line"
                    )
                }
                None => format!("declare `ARG {name}` or `ENV {name}=...` before this line"),
            };
            let (off, len) = self.find_var(&inst.span, &name);
            self.warn("UndefinedVar", message, hint, off, len);
        }
    }

    fn secret(&mut self, inst: &Instruction, what: &str, key: &str) {
        if !is_secret_name(key) {
            return;
        }
        let (off, len) = self.find(&inst.span, key);
        self.warn(
            "SecretsUsedInArgOrEnv",
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({what} {})",
                go_quote(key)
            ),
            "ARG and ENV values persist in the image; use `RUN --mount=type=secret,id=...` instead"
                .into(),
            off,
            len,
        );
    }

    /// CopyIgnoredFile (only with a .dockerignore).
    fn ignored(&mut self, inst: &Instruction, c: &Copy, cmd: &str, env: &StageEnv) {
        let Some(matcher) = self.opts.ignore else {
            return;
        };
        for source in &c.sources {
            if source.starts_with("<<") || source.contains("://") || source.starts_with("git@") {
                continue;
            }
            let Ok(e) = env.expand(source) else { continue };
            if !env.env_known() && !env.undefined(&e).is_empty() {
                continue;
            }
            let Some(path) = context_path(&e.result) else {
                continue;
            };
            if matcher.matches(&path) {
                let (off, len) = self.find(&inst.span, source);
                self.warn(
                    "CopyIgnoredFile",
                    format!(
                        "Attempting to {cmd} file {} that is excluded by .dockerignore",
                        go_quote(&e.result)
                    ),
                    format!(
                        "remove `{path}` from .dockerignore (or add `!{path}`), or stop copying it"
                    ),
                    off,
                    len,
                );
            }
        }
    }

    /// ExposeProtoCasing and ExposeInvalidFormat, on the expanded ports.
    fn expose(&mut self, inst: &Instruction, ports: &[String], env: &StageEnv) {
        for word in ports {
            let Ok(e) = env.expand(word) else { continue };
            if !env.env_known() && !env.undefined(&e).is_empty() {
                continue;
            }
            let Ok(expanded) = env.expand_words(word) else {
                continue;
            };
            let (off, len) = self.find(&inst.span, word);
            for port in expanded {
                let parts: Vec<&str> = port.split(':').collect();
                let container = parts.last().copied().unwrap_or("");
                let (number, proto) = container.split_once('/').unwrap_or((container, ""));
                if proto != proto.to_lowercase() {
                    self.warn(
                        "ExposeProtoCasing",
                        format!(
                            "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                        ),
                        format!("write `{number}/{}`", proto.to_lowercase()),
                        off,
                        len,
                    );
                }
                if parts.len() > 1 {
                    self.warn(
                        "ExposeInvalidFormat",
                        format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"),
                        format!("write `EXPOSE {container}`; map host ports when running (`docker run -p`)"),
                        off,
                        len,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
