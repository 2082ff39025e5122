//! `cosell`: run the co-sell connector on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cosell::local::{self, LocalOptions};
use cosell::register::{self, RegisterOptions};
use cosell::settings::Settings;
use cosell_shared::crm::CrmKind;
use cosell_shared::registrar::RegistrarOptions;

/// The co-sell referral connector: Microsoft Partner Center referrals and your CRM, in step.
#[derive(Parser, Debug)]
#[command(name = "cosell", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the connector in this process: the webhook receiver and the sync, with an embedded
    /// store and queue. Against the sandbox unless real services are configured.
    Local(LocalArgs),
    /// Point the Partner Center webhook registration at a URL, as the deployment's registrar
    /// does, then send a validation event and report its delivery. Exits non-zero on failure.
    Register(RegisterArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Crm {
    Dynamics,
    Salesforce,
}

#[derive(clap::Args, Debug)]
struct LocalArgs {
    /// Which CRM (or COSELL_CRM).
    #[arg(long, value_enum)]
    crm: Option<Crm>,
    /// Use the sandbox already running at this URL (`cosell-sandbox`) instead of starting one.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// Where the webhook receiver listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL Partner Center should deliver webhooks to, when it is not the listen address
    /// (behind a tunnel or a reverse proxy). Registered at start.
    #[arg(long)]
    public_url: Option<String>,
    /// Have Microsoft share a few referrals in the sandbox and show where each landed.
    #[arg(long)]
    demo: bool,
    /// Where the embedded store and queue keep their files.
    #[arg(long, env = "COSELL_DATA_DIR", default_value = ".cosell")]
    data_dir: PathBuf,
    /// Seconds between two runs of the CRM change poller and the reconciliation with Partner
    /// Center (COSELL_POLL_INTERVAL_SECS).
    #[arg(long, env = "COSELL_POLL_INTERVAL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    poll_interval: u64,
    /// A TOML file of settings (the environment variables' names and values); the environment
    /// wins over it.
    #[arg(long, env = "COSELL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct RegisterArgs {
    /// The URL Partner Center should deliver webhooks to (the ingress's public URL and path).
    #[arg(long)]
    url: String,
    /// Take the registration over when it points at another URL; without it, that is only
    /// reported.
    #[arg(long)]
    restore: bool,
    /// Use the sandbox running at this URL, with its default identities.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// A TOML file of settings, as for `cosell local`; the environment wins over it.
    #[arg(long, env = "COSELL_CONFIG")]
    config: Option<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COSELL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,cosell=info,cosell_shared::sync=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Register(args) => {
            let settings = match Settings::load(args.config.as_deref(), std::env::vars()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell register: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = RegisterOptions {
                url: args.url,
                restore: args.restore,
                sandbox_url: args.sandbox_url,
                registrar: RegistrarOptions::default(),
            };
            match register::run(options, settings, &mut std::io::stdout()).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cosell register: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Local(args) => {
            let settings = match Settings::load(args.config.as_deref(), std::env::vars()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell local: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = LocalOptions {
                crm: args.crm.map(|c| match c {
                    Crm::Dynamics => CrmKind::Dynamics,
                    Crm::Salesforce => CrmKind::Salesforce,
                }),
                sandbox_url: args.sandbox_url,
                listen: args.listen,
                public_url: args.public_url,
                demo: args.demo,
                data_dir: args.data_dir,
                poll_interval: std::time::Duration::from_secs(args.poll_interval),
            };
            match local::run(options, settings, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cosell local: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
