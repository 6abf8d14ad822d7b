//! `rbuild check` and `rbuild debug parse`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr};
use rbuild_parser::dockerignore::{PatternMatcher, load_for_build};
use rbuild_parser::lint::{self, LintOptions};
use rbuild_parser::{ParseError, Source, raw};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable, as `docker build --build-arg` (`K` alone takes it from the environment)
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// Check only what building this stage needs
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

/// `--build-arg` values: `K=V`, or `K` alone taking V from the environment (skipped when unset).
pub fn build_args(values: &[String]) -> BTreeMap<String, String> {
    values
        .iter()
        .filter_map(|v| match v.split_once('=') {
            Some((k, val)) => Some((k.to_string(), val.to_string())),
            None => std::env::var(v).ok().map(|val| (v.clone(), val)),
        })
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the raw instruction list of a Dockerfile (as BuildKit's parser holds it)
    Parse {
        /// Print JSON
        #[arg(long, conflicts_with = "dump")]
        json: bool,
        /// Print BuildKit's `Node.Dump()` format instead
        #[arg(long)]
        dump: bool,
        /// The Dockerfile (`-` reads stdin)
        file: PathBuf,
    },
}

/// A Dockerfile read from disk or stdin, with the name diagnostics use.
pub struct DockerfileText {
    pub name: String,
    pub text: String,
}

/// Reads a Dockerfile: `-` is stdin. Bad UTF-8 is a located parse error.
pub fn read_dockerfile(path: &Path) -> miette::Result<Result<DockerfileText, ParseError>> {
    let (name, bytes) = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .into_diagnostic()
            .wrap_err("reading the Dockerfile from stdin")?;
        ("<stdin>".to_string(), buf)
    } else {
        let bytes = std::fs::read(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading {}", path.display()))?;
        (path.display().to_string(), bytes)
    };
    Ok(rbuild_parser::decode(&name, &bytes).map(|text| DockerfileText { name, text }))
}

pub fn run_check(args: &CheckArgs) -> miette::Result<ExitCode> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let file = match read_dockerfile(&path)? {
        Ok(f) => f,
        Err(e) => return Ok(report(&e)),
    };
    let src = Source::new(file.name, file.text);
    let df = match rbuild_parser::parse_source(&src) {
        Ok(df) => df,
        Err(e) => return Ok(report(&e)),
    };
    let (_, patterns) = load_for_build(&args.context, &path)
        .into_diagnostic()
        .wrap_err("reading the .dockerignore file")?;
    let ignore = PatternMatcher::new(&patterns)
        .into_diagnostic()
        .wrap_err("in the .dockerignore file")?;
    let opts = LintOptions {
        build_args: build_args(&args.build_args),
        ignore: Some(&ignore),
        target: args.target.clone(),
    };
    if let Some(target) = &args.target
        && df.stage(target).is_none()
    {
        return Err(miette::miette!(
            "target stage {target:?} could not be found in {}",
            src.name()
        ));
    }
    let warnings = lint::lint(&df, &src, &opts);
    for w in &warnings {
        eprint!("{}", w.render());
    }
    match warnings.len() {
        0 => eprintln!("Check complete, no warnings found."),
        1 => eprintln!("Check complete, 1 warning has been found!"),
        n => eprintln!("Check complete, {n} warnings have been found!"),
    }
    if let Err(e) = lint::enforce(&df, &warnings) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_debug(cmd: &DebugCommand) -> miette::Result<ExitCode> {
    let DebugCommand::Parse {
        json: _,
        dump,
        file,
    } = cmd;
    let text = match read_dockerfile(file)? {
        Ok(t) => t,
        Err(e) => return Ok(report(&e)),
    };
    let parsed = match raw::parse(&Source::new(text.name, text.text)) {
        Ok(p) => p,
        Err(e) => return Ok(report(&e)),
    };
    if *dump {
        print!("{}", parsed.dump());
    } else {
        let json = serde_json::to_string_pretty(&parsed).into_diagnostic()?;
        println!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a Dockerfile error the compiler way; exit status 1.
fn report(e: &ParseError) -> ExitCode {
    eprint!("{}", e.render());
    ExitCode::from(1)
}
