//! Build arguments and variable scope, as BuildKit's `dockerfile2llb` evaluates them.
//!
//! - The `ARG`s before the first `FROM` (meta args) are evaluated once, in order, over the
//!   predefined platform args ([`resolve_meta_args`]); they are visible in `FROM` lines only,
//!   unless a stage redeclares them (`ARG NAME` without a default re-imports the value).
//! - Inside a stage, [`StageEnv`] tracks what each instruction sees: `ENV` values, `ARG`
//!   values (a `--build-arg` beats the default), the base image's environment when it is
//!   known. The linter and the build's lowering share it.
//! - Which instructions expand variables at all: [`expands_variables`].
//!
//! Nothing here looks at the host: callers pass the build and target platforms.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::ast::{ArgDecl, Dockerfile, Instruction, InstructionKind, Stage};
use crate::error::{ErrorKind, Location, ParseError};
use crate::shell::{Env, Expansion, Lexer, ShellError};
use crate::source::{Position, Source, Span};

/// The proxy build args, predefined: `--build-arg HTTP_PROXY=...` works without an `ARG`
/// line. They reach `RUN` instructions (see [`proxy_env`]) but, unless the Dockerfile
/// declares them with `ARG`, they are neither expanded in other instructions nor recorded
/// in the image history, so credentials in proxy URLs do not leak into the image.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The names [`platform_args`] defines.
pub const PLATFORM_ARGS: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// The predefined arg naming the target stage (see [`default_args`]).
pub const TARGET_STAGE_ARG: &str = "TARGETSTAGE";

/// Args BuildKit reads itself: never put in a stage's environment, never reported undefined.
pub const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// The default `PATH` of a stage whose base image sets none (Docker's Unix default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An OCI platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]` and normalizes it as containerd's `platforms.Parse` does:
    /// lower case, `x86_64` → `amd64`, `aarch64` → `arm64` (whose `v8` variant is the
    /// default and dropped), `arm` gets `v7` unless a variant is given, `armhf`/`armel` →
    /// `arm` `v7`/`v6`, `i386` → `386`, `macos` → `darwin`. The host is never consulted, so
    /// a lone `linux` or `arm64` is an error.
    pub fn parse(spec: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = spec.split('/').collect();
        let bad = || format!("invalid platform {spec:?}: expected os/arch[/variant]");
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(bad());
        }
        let os = match parts[0].to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            os => os.to_string(),
        };
        let variant = parts.get(2).map(|v| v.to_ascii_lowercase());
        let (arch, variant) = normalize_arch(&parts[1].to_ascii_lowercase(), variant);
        Ok(Platform { os, arch, variant })
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let v = variant.as_deref();
    let (arch, variant) = match arch {
        "i386" | "386" => ("386", v.map(str::to_string)),
        "x86_64" | "x86-64" | "amd64" => ("amd64", v.filter(|v| *v != "v1").map(str::to_string)),
        "aarch64" | "arm64" => (
            "arm64",
            v.filter(|v| !matches!(*v, "8" | "v8" | "v8.0"))
                .map(str::to_string),
        ),
        "armhf" => ("arm", Some("v7".to_string())),
        "armel" => ("arm", Some("v6".to_string())),
        "arm" => (
            "arm",
            Some(match v {
                None | Some("" | "7") => "v7".to_string(),
                Some(n @ ("5" | "6" | "8")) => format!("v{n}"),
                Some(other) => other.to_string(),
            }),
        ),
        other => (other, v.map(str::to_string)),
    };
    (arch.to_string(), variant)
}

impl fmt::Display for Platform {
    /// containerd's `platforms.Format`: `os/arch[/variant]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// The predefined platform args, as BuildKit's `defaultArgs` sets them: `BUILDPLATFORM`
/// (`os/arch[/variant]`), `BUILDOS`, `BUILDARCH`, `BUILDVARIANT` (empty when none),
/// `BUILDOSVERSION` (always empty here) and the same six for `TARGET…`. BuildKit also
/// defines `TARGETSTAGE`; see [`default_args`].
pub fn platform_args(build: &Platform, target: &Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        let mut set = |k: &str, v: String| args.insert(format!("{prefix}{k}"), v);
        set("PLATFORM", p.to_string());
        set("OS", p.os.clone());
        set("OSVERSION", String::new());
        set("ARCH", p.arch.clone());
        set("VARIANT", p.variant.clone().unwrap_or_default());
    }
    args
}

/// [`platform_args`] plus `TARGETSTAGE` (the target stage's name, empty when unnamed).
pub fn default_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
) -> BTreeMap<String, String> {
    let mut args = platform_args(build, target);
    args.insert(TARGET_STAGE_ARG.to_string(), target_stage.to_string());
    args
}

/// The proxy variables among the build args (names matched case-insensitively, as
/// BuildKit's `proxyEnvFromBuildArgs`): what `RUN` instructions get even without `ARG`.
pub fn proxy_env(build_args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    build_args
        .iter()
        .filter(|(k, _)| PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether an instruction's arguments go through variable expansion (the Dockerfile
/// reference's list: ADD, COPY, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, and
/// FROM, which is a stage, not an [`InstructionKind`]). `ARG` defaults expand too (BuildKit
/// evaluates them), `ONBUILD` does not (its trigger expands when it runs in a child build),
/// and RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK are left to the shell. `RUN --mount` values do
/// expand (see [`StageEnv::expand`]).
pub fn expands_variables(kind: &InstructionKind) -> bool {
    matches!(
        kind,
        InstructionKind::Add(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Env { .. }
            | InstructionKind::Expose { .. }
            | InstructionKind::Label { .. }
            | InstructionKind::Stopsignal { .. }
            | InstructionKind::User { .. }
            | InstructionKind::Volume { .. }
            | InstructionKind::Workdir { .. }
            | InstructionKind::Arg { .. }
    )
}

/// Evaluates the ARGs before the first FROM, in order, as BuildKit's `buildMetaArgs`: the
/// scope starts with `platform_args` (each overridable by a build arg of the same name);
/// a build arg beats an ARG's default; a default is expanded over the scope so far; an ARG
/// with neither stays undefined. The result holds the platform args and the meta args that
/// got a value: the scope of `FROM` lines, and what a stage's `ARG NAME` re-imports.
pub fn resolve_meta_args(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    platform_args: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ParseError> {
    let lexer = Lexer::new(df.directives.escape);
    let mut scope: BTreeMap<String, String> = platform_args
        .iter()
        .map(|(k, v)| (k.clone(), build_args.get(k).unwrap_or(v).clone()))
        .collect();
    for inst in &df.meta_args {
        let InstructionKind::Arg { args } = &inst.kind else {
            continue;
        };
        for decl in args {
            let value = match (build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    Some(lexer.process_word(default, &scope).map_err(|e| {
                        expansion_error(&e, default, instruction_location(df, inst))
                    })?)
                }
                (None, None) => None,
            };
            if let Some(value) = value {
                scope.insert(decl.name.clone(), value);
            }
        }
    }
    Ok(scope)
}

/// Expands a stage's base and `--platform` over the meta args (as returned by
/// [`resolve_meta_args`]), with the default escape character; see [`expand_from_with`].
pub fn expand_from(
    stage: &Stage,
    meta: &BTreeMap<String, String>,
) -> Result<(String, Option<String>), ParseError> {
    expand_from_with(stage, meta, '\\')
}

/// Expands a stage's base image and `--platform` flag. Errors point at the FROM span
/// (file name and source line are left empty: pass them through [`with_source`]).
pub fn expand_from_with(
    stage: &Stage,
    meta: &BTreeMap<String, String>,
    escape: char,
) -> Result<(String, Option<String>), ParseError> {
    let lexer = Lexer::new(escape);
    let location = Location {
        file: String::new(),
        span: stage.span,
        line_text: String::new(),
    };
    let base = lexer
        .process_word(&stage.base, meta)
        .map_err(|e| expansion_error(&e, &stage.base, location.clone()))?;
    if base.is_empty() {
        return Err(located(
            ParseError::new(
                ErrorKind::Expansion,
                format!("base name ({}) should not be blank", stage.base),
            )
            .with_hint("declare the ARG with a default before the first FROM, or pass --build-arg"),
            location,
        ));
    }
    let platform = match &stage.platform {
        None => None,
        Some(p) => {
            let value = lexer
                .process_word(p, meta)
                .map_err(|e| expansion_error(&e, p, location.clone()))?;
            if value.is_empty() {
                return Err(located(
                    ParseError::new(
                        ErrorKind::Expansion,
                        format!("empty platform value from expression {p}"),
                    )
                    .with_hint("the variable in --platform is unset: declare it or drop the flag"),
                    location,
                ));
            }
            Some(value)
        }
    };
    Ok((base, platform))
}

/// Fills in the file name and source line of an error located by span only (as
/// [`expand_from`] returns them).
pub fn with_source(mut err: ParseError, src: &Source) -> ParseError {
    if let Some(loc) = err.diagnostic.location.as_mut() {
        let first_line_len = src.line_text(loc.span.start.line).len();
        let line_start = src.line_start(loc.span.start.line).unwrap_or(0);
        let len = if loc.span.end.line == loc.span.start.line {
            loc.span.end.offset.saturating_sub(loc.span.start.offset)
        } else {
            (line_start + first_line_len).saturating_sub(loc.span.start.offset)
        };
        *loc = Location::new(src, loc.span.start.offset, len);
    }
    err
}

fn located(mut err: ParseError, location: Location) -> ParseError {
    err.diagnostic.location = Some(location);
    err
}

fn expansion_error(e: &ShellError, word: &str, location: Location) -> ParseError {
    located(
        ParseError::new(ErrorKind::Expansion, e.buildkit_message(word))
            .with_hint("check the `${...}` syntax and that the variables are declared"),
        location,
    )
}

/// The first line of an instruction, located without the source text at hand.
fn instruction_location(df: &Dockerfile, inst: &Instruction) -> Location {
    let first = inst.original.lines().next().unwrap_or("").trim_start();
    let start = inst.span.start;
    let line_text = format!("{}{first}", " ".repeat(start.column.saturating_sub(1)));
    let end = Position {
        line: start.line,
        column: start.column + first.chars().count(),
        offset: start.offset + first.len(),
    };
    Location {
        file: df.file.clone(),
        span: Span { start, end },
        line_text,
    }
}

/// The variables in scope while a stage's instructions are walked in order: BuildKit's
/// dispatch state, reduced to what expansion and the lint need.
///
/// - `ENV` sets a variable (all pairs of one `ENV` are expanded first, then applied).
/// - `ARG NAME[=default]` declares NAME; its value is the build arg if given, else the
///   expanded default, else the meta arg's value (re-import), else none. Declared names are
///   never "undefined", even without a value.
/// - The base image's environment is known only when the caller says so
///   ([`StageEnv::with_base_env`], [`StageEnv::scratch`], or a parent stage's scope).
#[derive(Debug, Clone)]
pub struct StageEnv {
    lexer: Lexer,
    meta: BTreeMap<String, String>,
    build_args: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    declared: BTreeSet<String>,
    base_known: bool,
    shell_set: bool,
    workdir_set: bool,
}

impl StageEnv {
    /// A stage over an image whose environment is unknown. `meta` is the resolved meta
    /// scope ([`resolve_meta_args`]), `build_args` the `--build-arg` values.
    pub fn new(
        escape: char,
        meta: &BTreeMap<String, String>,
        build_args: &BTreeMap<String, String>,
    ) -> StageEnv {
        StageEnv {
            lexer: Lexer::new(escape),
            meta: meta.clone(),
            build_args: build_args.clone(),
            vars: BTreeMap::new(),
            declared: BTreeSet::new(),
            base_known: false,
            shell_set: false,
            workdir_set: false,
        }
    }

    /// The base image's environment is `env` (`KEY=VALUE` pairs of its config); `PATH` is
    /// added when missing, as BuildKit does.
    pub fn with_base_env<I, K, V>(mut self, env: I) -> StageEnv
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in env {
            self.vars.insert(k.into(), v.into());
        }
        self.vars
            .entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        self.base_known = true;
        self
    }

    /// A `FROM scratch` stage: only `PATH` is set.
    pub fn scratch(self) -> StageEnv {
        self.with_base_env(std::iter::empty::<(String, String)>())
    }

    /// A stage built on an earlier stage: its scope carries over (BuildKit copies the
    /// parent's state, declared args, SHELL and WORKDIR-was-set flag).
    pub fn from_parent(parent: &StageEnv) -> StageEnv {
        parent.clone()
    }

    /// Whether every variable in scope is known (the base env was given).
    pub fn env_known(&self) -> bool {
        self.base_known
    }

    /// The environment an instruction sees (ENV and ARG values, base env when known).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// ARG names declared in this stage (or its parent stages).
    pub fn declared_args(&self) -> &BTreeSet<String> {
        &self.declared
    }

    /// Whether `name` is defined: set, or declared with ARG.
    pub fn is_defined(&self, name: &str) -> bool {
        self.vars.contains_key(name) || self.declared.contains(name)
    }

    /// Whether a SHELL instruction has run in this stage or a parent stage.
    pub fn shell_set(&self) -> bool {
        self.shell_set
    }

    /// Whether a WORKDIR has run in this stage or a parent stage.
    pub fn workdir_set(&self) -> bool {
        self.workdir_set
    }

    /// Expands one word in the current scope, reporting the names used.
    pub fn expand(&self, word: &str) -> Result<Expansion, ShellError> {
        self.lexer.process_word_with_matches(word, &self.vars)
    }

    /// Expands a heredoc body as BuildKit's `ExpandRaw` does: quotes are plain characters
    /// and the escape character is `\\`.
    pub fn expand_heredoc(&self, body: &str) -> Result<Expansion, ShellError> {
        let mut lexer = Lexer::new('\\');
        lexer.skip_process_quotes = true;
        lexer.process_word_with_matches(body, &self.vars)
    }

    /// Expands and splits on whitespace (EXPOSE's `ProcessWords`).
    pub fn expand_words(&self, word: &str) -> Result<Vec<String>, ShellError> {
        self.lexer.process_words(word, &self.vars)
    }

    /// The names an expansion used that are neither set nor declared (BuildKit's
    /// `reportUnmatchedVariables`), sorted. Meaningful only when [`env_known`](Self::env_known).
    pub fn undefined(&self, expansion: &Expansion) -> Vec<String> {
        expansion
            .unmatched
            .iter()
            .filter(|n| !self.declared.contains(*n) && !NON_ENV_ARGS.contains(&n.as_str()))
            .cloned()
            .collect()
    }

    /// Declares one ARG. Returns the expansion of its default when the default was used
    /// (so a caller can report its undefined variables).
    pub fn declare_arg(&mut self, decl: &ArgDecl) -> Result<Option<Expansion>, ShellError> {
        let mut used = None;
        let value = if let Some(v) = self.build_args.get(&decl.name) {
            Some(v.clone())
        } else if let Some(default) = &decl.default {
            let e = self.expand(default)?;
            let v = e.result.clone();
            used = Some(e);
            Some(v)
        } else {
            self.meta.get(&decl.name).cloned()
        };
        if let Some(v) = value
            && !NON_ENV_ARGS.contains(&decl.name.as_str())
        {
            self.vars.insert(decl.name.clone(), v);
        }
        self.declared.insert(decl.name.clone());
        Ok(used)
    }

    /// Sets a variable as ENV does (value already expanded).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.vars.insert(key.to_string(), value.to_string());
    }

    /// Applies an instruction's effect on the scope: ENV, ARG, SHELL, WORKDIR.
    pub fn apply(&mut self, kind: &InstructionKind) -> Result<(), ShellError> {
        match kind {
            InstructionKind::Env { vars } => {
                let mut expanded = Vec::with_capacity(vars.len());
                for kv in vars {
                    expanded.push((self.expand(&kv.key)?.result, self.expand(&kv.value)?.result));
                }
                for (k, v) in expanded {
                    self.set_env(&k, &v);
                }
            }
            InstructionKind::Arg { args } => {
                for decl in args {
                    self.declare_arg(decl)?;
                }
            }
            InstructionKind::Shell { .. } => self.shell_set = true,
            InstructionKind::Workdir { .. } => self.workdir_set = true,
            _ => {}
        }
        Ok(())
    }
}

impl Env for StageEnv {
    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn keys(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    fn parse(text: &str) -> Dockerfile {
        crate::parse("Dockerfile", text).unwrap()
    }

    fn meta(text: &str, build_args: &[(&str, &str)]) -> BTreeMap<String, String> {
        let df = parse(text);
        resolve_meta_args(&df, &map(build_args), &platform_args(&amd64(), &amd64())).unwrap()
    }

    /// Walks a stage and returns its scope.
    fn walk(df: &Dockerfile, stage: usize, build_args: &[(&str, &str)]) -> StageEnv {
        let build_args = map(build_args);
        let meta = resolve_meta_args(df, &build_args, &platform_args(&amd64(), &amd64())).unwrap();
        let mut env = StageEnv::new('\\', &meta, &build_args).scratch();
        for inst in &df.stages[stage].instructions {
            env.apply(&inst.kind).unwrap();
        }
        env
    }

    #[test]
    fn platform_parse_and_display() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p, Platform::new("linux", "arm64", None));
        assert_eq!(p.to_string(), "linux/arm64");
        let p = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v6");
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("Linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::parse("linux/riscv64").unwrap().variant, None);
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn platform_args_like_buildkit() {
        let args = platform_args(
            &Platform::parse("linux/amd64").unwrap(),
            &Platform::parse("linux/arm/v7").unwrap(),
        );
        assert_eq!(args["BUILDPLATFORM"], "linux/amd64");
        assert_eq!(args["BUILDOS"], "linux");
        assert_eq!(args["BUILDARCH"], "amd64");
        assert_eq!(args["BUILDVARIANT"], "");
        assert_eq!(args["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(args["TARGETARCH"], "arm");
        assert_eq!(args["TARGETVARIANT"], "v7");
        assert_eq!(args["TARGETOSVERSION"], "");
        assert_eq!(args.len(), PLATFORM_ARGS.len());
        assert!(PLATFORM_ARGS.iter().all(|k| args.contains_key(*k)));
        let d = default_args(&amd64(), &amd64(), "build");
        assert_eq!(d[TARGET_STAGE_ARG], "build");
    }

    #[test]
    fn meta_args_in_order_with_defaults_expanded() {
        let m = meta("ARG A=1\nARG B=${A}2\nARG C\nFROM x\n", &[]);
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "12");
        assert!(
            !m.contains_key("C"),
            "declared without value stays undefined"
        );
        assert_eq!(m["TARGETARCH"], "amd64");
    }

    #[test]
    fn build_arg_overrides_default_and_only_declared_names_visible() {
        let m = meta(
            "ARG A=1\nARG B=$A\nFROM x\n",
            &[("A", "9"), ("UNDECLARED", "u")],
        );
        assert_eq!(m["A"], "9");
        assert_eq!(m["B"], "9", "later defaults see the override");
        assert!(!m.contains_key("UNDECLARED"));
        let m = meta("ARG C\nFROM x\n", &[("C", "c")]);
        assert_eq!(m["C"], "c");
    }

    #[test]
    fn build_arg_overrides_platform_arg() {
        let m = meta("FROM x\n", &[("TARGETARCH", "s390x")]);
        assert_eq!(m["TARGETARCH"], "s390x");
    }

    #[test]
    fn meta_arg_default_can_use_platform_args() {
        let m = meta("ARG IMG=base-${TARGETARCH}\nFROM $IMG\n", &[]);
        assert_eq!(m["IMG"], "base-amd64");
    }

    #[test]
    fn meta_arg_expansion_error_is_located() {
        let df = parse("FROM x\n");
        let mut df2 = parse("ARG A=${B:?nob}\nFROM x\n");
        let err = resolve_meta_args(&df2, &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Expansion);
        assert!(err.message().contains("nob"), "{}", err.message());
        let loc = err.location().unwrap();
        assert_eq!((loc.span.start.line, loc.span.start.column), (1, 1));
        assert_eq!(loc.file, "Dockerfile");
        assert!(
            err.render().contains("1 | ARG A=${B:?nob}"),
            "{}",
            err.render()
        );
        df2.meta_args.clear();
        assert!(resolve_meta_args(&df2, &BTreeMap::new(), &BTreeMap::new()).is_ok());
        assert!(resolve_meta_args(&df, &BTreeMap::new(), &BTreeMap::new()).is_ok());
    }

    #[test]
    fn from_expansion_with_default_operator() {
        let df = parse("ARG V\nFROM alpine:${V:-3.19} AS a\nFROM --platform=$BUILDPLATFORM b\n");
        let m =
            resolve_meta_args(&df, &BTreeMap::new(), &platform_args(&amd64(), &amd64())).unwrap();
        let (base, platform) = expand_from(&df.stages[0], &m).unwrap();
        assert_eq!((base.as_str(), platform), ("alpine:3.19", None));
        let (_, platform) = expand_from(&df.stages[1], &m).unwrap();
        assert_eq!(platform.as_deref(), Some("linux/amd64"));
        let m = resolve_meta_args(&df, &map(&[("V", "edge")]), &BTreeMap::new()).unwrap();
        assert_eq!(expand_from(&df.stages[0], &m).unwrap().0, "alpine:edge");
    }

    #[test]
    fn blank_base_and_platform_are_errors_at_from() {
        let text = "ARG IMG\nFROM $IMG\nFROM --platform=$P x\n";
        let df = parse(text);
        let m = resolve_meta_args(&df, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let err = expand_from(&df.stages[0], &m).unwrap_err();
        assert_eq!(err.message(), "base name ($IMG) should not be blank");
        assert_eq!(err.location().unwrap().span.start.line, 2);
        let err = with_source(err, &Source::new("Dockerfile", text));
        assert!(
            err.render().contains("2 | FROM $IMG\n  | ^^^^^^^^^"),
            "{}",
            err.render()
        );
        let err = expand_from(&df.stages[1], &m).unwrap_err();
        assert_eq!(err.message(), "empty platform value from expression $P");
    }

    #[test]
    fn meta_arg_visible_in_from_only_unless_redeclared() {
        let df = parse("ARG V=1\nFROM scratch\nENV A=$V\n");
        let env = walk(&df, 0, &[]);
        assert_eq!(env.lookup("A").as_deref(), Some(""));
        assert!(!env.is_defined("V"));
    }

    #[test]
    fn redeclared_arg_without_default_inherits_meta_value() {
        let df = parse("ARG V=1\nFROM scratch\nARG V\nENV A=$V\n");
        let env = walk(&df, 0, &[]);
        assert_eq!(env.lookup("V").as_deref(), Some("1"));
        assert_eq!(env.lookup("A").as_deref(), Some("1"));
        let env = walk(&df, 0, &[("V", "2")]);
        assert_eq!(env.lookup("A").as_deref(), Some("2"));
    }

    #[test]
    fn stage_arg_default_and_build_arg_override() {
        let df = parse("FROM scratch\nARG V=def\nARG W=${V}-x\n");
        let env = walk(&df, 0, &[]);
        assert_eq!(env.lookup("W").as_deref(), Some("def-x"));
        let env = walk(&df, 0, &[("V", "cli")]);
        assert_eq!(env.lookup("V").as_deref(), Some("cli"));
        assert_eq!(env.lookup("W").as_deref(), Some("cli-x"));
    }

    #[test]
    fn declared_arg_without_value_is_defined_but_unset() {
        let df = parse("FROM scratch\nARG NOVAL\n");
        let env = walk(&df, 0, &[]);
        assert!(env.is_defined("NOVAL"));
        assert_eq!(env.lookup("NOVAL"), None);
        let e = env.expand("$NOVAL$OTHER").unwrap();
        assert_eq!(env.undefined(&e), vec!["OTHER".to_string()]);
    }

    #[test]
    fn env_overrides_arg_and_pairs_expand_before_applying() {
        let df = parse("FROM scratch\nARG V=arg\nENV V=env\nENV A=1 B=$A C=$V\n");
        let env = walk(&df, 0, &[("V", "cli")]);
        assert_eq!(env.lookup("V").as_deref(), Some("env"));
        assert_eq!(
            env.lookup("B").as_deref(),
            Some(""),
            "same-line ENV is not visible yet"
        );
        assert_eq!(env.lookup("C").as_deref(), Some("env"));
    }

    #[test]
    fn parent_stage_scope_carries_over() {
        let df = parse("FROM scratch AS a\nENV X=1\nARG Y\nSHELL [\"/bin/bash\",\"-c\"]\n");
        let parent = walk(&df, 0, &[]);
        let child = StageEnv::from_parent(&parent);
        assert!(child.env_known() && child.shell_set() && child.is_defined("Y"));
        assert_eq!(child.lookup("X").as_deref(), Some("1"));
        assert_eq!(child.lookup("PATH").as_deref(), Some(DEFAULT_PATH));
    }

    #[test]
    fn base_env_unknown_unless_given() {
        let env = StageEnv::new('\\', &BTreeMap::new(), &BTreeMap::new());
        assert!(!env.env_known());
        let env = env.with_base_env([("PATH", "/x"), ("HOME", "/root")]);
        assert!(env.env_known());
        assert_eq!(env.lookup("PATH").as_deref(), Some("/x"));
        assert_eq!(env.keys(), vec!["HOME".to_string(), "PATH".to_string()]);
    }

    #[test]
    fn sbom_args_never_enter_env() {
        let df = parse("FROM scratch\nARG BUILDKIT_SBOM_SCAN_STAGE=true\n");
        let env = walk(&df, 0, &[]);
        assert_eq!(env.lookup("BUILDKIT_SBOM_SCAN_STAGE"), None);
        let e = env.expand("$BUILDKIT_SBOM_SCAN_CONTEXT").unwrap();
        assert!(env.undefined(&e).is_empty());
    }

    #[test]
    fn proxy_args_are_predefined_for_run_only() {
        let ba = map(&[("http_proxy", "p"), ("HTTPS_PROXY", "q"), ("OTHER", "o")]);
        let proxies = proxy_env(&ba);
        assert_eq!(proxies.len(), 2);
        assert!(proxies.contains_key("http_proxy") && !proxies.contains_key("OTHER"));
        // Not expanded elsewhere unless declared.
        let df = parse("FROM scratch\nENV A=$http_proxy\n");
        let env = walk(&df, 0, &[("http_proxy", "p")]);
        assert_eq!(env.lookup("A").as_deref(), Some(""));
    }

    #[test]
    fn which_instructions_expand() {
        let df = parse(
            "FROM scratch\nRUN echo $A\nCMD $A\nCOPY $A /b\nENV A=b\nWORKDIR $A\nONBUILD COPY $A /\nEXPOSE $P\nARG X=$A\n",
        );
        let got: Vec<bool> = df.stages[0]
            .instructions
            .iter()
            .map(|i| expands_variables(&i.kind))
            .collect();
        assert_eq!(got, [false, false, true, true, true, false, true, true]);
    }
}
