//! The `rbuild` command: docker-compatible spelling, daemonless.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

mod build;
mod builder;
mod check;
mod container;
mod images;
mod import;
mod registry_cmds;

/// Build, run and ship OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Root of rbuild's store [default: /var/lib/rbuild as root, else $XDG_DATA_HOME/rbuild]
    #[arg(long, global = true, env = "RBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (localhost and 127.0.0.0/8 always may)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (also the bare form: `rbuild -t app:1.0 .`)
    Build(Box<build::args::BuildArgs>),
    /// Parse and lint a Dockerfile; exit 1 on errors
    Check(check::CheckArgs),
    /// Tools for developers and conformance tests
    #[command(subcommand)]
    Debug(check::DebugCommand),
    /// Create an image from a filesystem tarball (as `docker import`)
    Import(import::ImportArgs),
    /// Manage the build cache (`builder prune`)
    #[command(subcommand)]
    Builder(builder::BuilderCommand),
    /// Explain the build cache's misses of recorded builds (`cache explain`, `cache ls`)
    #[command(subcommand)]
    Cache(builder::CacheCommand),
    // Subcommand groups of other modules are flattened in below this line.
    #[command(flatten)]
    Registry(registry_cmds::RegistryCommand),
    #[command(flatten)]
    Image(images::ImageCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
}

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its single-threaded init: nothing may run first.
    if let Some(code) = rbuild_executor::sandbox_init_entry() {
        return code;
    }
    let args = implicit_build_args();
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| container::usage_error(&args, e));
    let result = match cli.command {
        Command::Build(args) => build::run(*args, &cli.global),
        Command::Check(args) => check::run_check(&args),
        Command::Debug(cmd) => check::run_debug(&cmd),
        Command::Registry(cmd) => registry_cmds::run(cmd, &cli.global),
        Command::Image(cmd) => images::run(cmd, &cli.global),
        Command::Import(args) => import::run(&args, &cli.global),
        Command::Container(cmd) => container::run(cmd, &cli.global),
        Command::Builder(cmd) => builder::run_builder(cmd, &cli.global),
        Command::Cache(cmd) => builder::run_cache(cmd, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{}", error_text(&report));
            ExitCode::from(1)
        }
    }
}

/// The process arguments, with `build` inserted for the bare form `rbuild [OPTIONS] PATH`.
fn implicit_build_args() -> Vec<std::ffi::OsString> {
    let mut names = vec!["help".to_string()];
    for sub in Cli::command().get_subcommands() {
        names.push(sub.get_name().to_string());
        names.extend(sub.get_all_aliases().map(str::to_string));
    }
    build::implicit_build(std::env::args_os().collect(), &names)
}

/// Docker's one-line style, `Error: what: why`, with the cause chain folded in
/// (a cause already quoted by its parent is not repeated).
fn error_text(report: &miette::Report) -> String {
    let mut text = format!("Error: {report}");
    let mut source = report.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
