//! `rbuild check` and `rbuild debug parse`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the raw instruction list of a Dockerfile
    Parse {
        /// Print JSON (the only format for now)
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
}

pub fn run_check(_args: &CheckArgs) -> miette::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

pub fn run_debug(_cmd: &DebugCommand) -> miette::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
