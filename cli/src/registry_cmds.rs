//! `rbuild pull`, `push`, `login`, `logout`: Docker's spelling and output.

mod progress;

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic as _, miette};
use rbuild_exporter::image::Platform;
use rbuild_exporter::images::Images;
use rbuild_exporter::reference::Reference;
use rbuild_exporter::registry::{self, Credentials, DockerConfig, Registry, RegistryOptions};
use rbuild_exporter::{Store, pull, push, root};

use progress::CliProgress;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to pull when the image is multi-platform [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to pull: NAME[:TAG|@DIGEST]
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to push (a name in the local store): NAME[:TAG]
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry server [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry server [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub fn run(cmd: RegistryCommand, global: &crate::GlobalOpts) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let opts = RegistryOptions {
        insecure_registries: global.insecure_registries.clone(),
        ..Default::default()
    };
    match cmd {
        RegistryCommand::Pull(a) => rt.block_on(run_pull(a, global, opts)),
        RegistryCommand::Push(a) => rt.block_on(run_push(a, global, opts)),
        RegistryCommand::Login(a) => rt.block_on(run_login(a, opts)),
        RegistryCommand::Logout(a) => run_logout(a),
    }
}

fn report(e: rbuild_exporter::Error) -> miette::Report {
    miette!("{e}")
}

fn open_store(global: &crate::GlobalOpts) -> miette::Result<Store> {
    let root = root::resolve_root(global.root.as_deref()).map_err(report)?;
    Store::open(root).map_err(report)
}

async fn run_pull(
    a: PullArgs,
    global: &crate::GlobalOpts,
    opts: RegistryOptions,
) -> miette::Result<ExitCode> {
    let reference = Reference::parse_docker(&a.reference).map_err(report)?;
    let platform = match &a.platform {
        Some(p) => Some(p.parse::<Platform>().map_err(report)?),
        None => None,
    };
    let store = open_store(global)?;
    let shown = pull::remote_reference(&reference);
    let progress = CliProgress::new("Downloading");
    if !a.quiet {
        progress.println(&format!("{shown}: Pulling from {}", reference.path()));
    }
    let quiet = rbuild_exporter::registry::NoProgress;
    let sink: &dyn registry::Progress = if a.quiet { &quiet } else { &progress };
    let rep = pull::pull(&store, &reference, platform.as_ref(), &opts, sink)
        .await
        .map_err(report)?;
    if !a.quiet {
        progress.println(&format!("Digest: {}", rep.digest));
        let status = if rep.up_to_date {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        progress.println(&format!("Status: {status} {}", reference.familiar_string()));
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

async fn run_push(
    a: PushArgs,
    global: &crate::GlobalOpts,
    opts: RegistryOptions,
) -> miette::Result<ExitCode> {
    let dest = Reference::parse_docker(&a.reference).map_err(report)?;
    let store = open_store(global)?;
    let record = Images::open(&store)
        .resolve(&dest.to_string())
        .map_err(|e| miette!("push {dest}: {e}"))?;
    let progress = CliProgress::new("Pushing");
    if !a.quiet {
        progress.println(&format!(
            "The push refers to repository [{}]",
            dest.repository()
        ));
    }
    let quiet = rbuild_exporter::registry::NoProgress;
    let sink: &dyn registry::Progress = if a.quiet { &quiet } else { &progress };
    let rep = push::push(&store, &record, &dest, &opts, sink)
        .await
        .map_err(report)?;
    if a.quiet {
        println!("{dest}");
    } else {
        progress.println(&format!(
            "{}: digest: {} size: {}",
            pull::remote_reference(&dest),
            rep.digest,
            rep.size
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `https://host:port/v1/` → `host:port`; nothing → Docker Hub.
fn server_domain(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io").trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn prompt(label: &str) -> miette::Result<String> {
    print!("{label}");
    std::io::stdout().flush().into_diagnostic()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .into_diagnostic()?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn run_login(a: LoginArgs, opts: RegistryOptions) -> miette::Result<ExitCode> {
    let domain = server_domain(a.server.as_deref());
    let key = registry::credential_key(&domain);
    let interactive = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if interactive && !a.password_stdin => prompt("Username: ")?,
        None => return Err(miette!("login {domain}: a username is required (-u USER)")),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).into_diagnostic()?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if interactive {
        rpassword::prompt_password("Password: ").into_diagnostic()?
    } else {
        return Err(miette!(
            "login {domain}: a password is required (--password-stdin or -p)"
        ));
    };
    if username.is_empty() || password.is_empty() {
        return Err(miette!(
            "login {domain}: username and password must not be empty"
        ));
    }
    let creds = Credentials {
        username,
        password,
        identity_token: None,
    };
    let client = Registry::new(
        &domain,
        RegistryOptions {
            credentials: Some(creds.clone()),
            ..opts
        },
    )
    .map_err(report)?;
    client.ping().await.map_err(report)?;
    let mut cfg = DockerConfig::load().map_err(report)?;
    cfg.store(&key, &creds).map_err(report)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

fn run_logout(a: LogoutArgs) -> miette::Result<ExitCode> {
    let domain = server_domain(a.server.as_deref());
    let key = registry::credential_key(&domain);
    let mut cfg = DockerConfig::load().map_err(report)?;
    if cfg.erase(&key).map_err(report)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        assert_eq!(server_domain(None), "docker.io");
        assert_eq!(
            server_domain(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(server_domain(Some("localhost:5000")), "localhost:5000");
        assert_eq!(
            server_domain(Some("http://localhost:5000/v2/")),
            "localhost:5000"
        );
    }
}
