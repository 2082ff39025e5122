//! `cosell`: run the co-sell connector on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cosell::auth;
use cosell::crm_setup;
use cosell::doctor;
use cosell::local::{self, LocalOptions};
use cosell::ops;
use cosell::register::{self, RegisterOptions};
use cosell::resolve::Sources;
use cosell::settings::Settings;
use cosell::solutions;
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
    /// Sign the Partner Center Referral admin in (once, interactively, with MFA) and keep the
    /// refresh token where the connector reads it; or report on the stored sign-in.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The partner's co-sell-ready solutions in the CRM's solution catalog.
    #[command(subcommand)]
    Solutions(SolutionsCommand),
    /// The connector's columns, tables, stages and permissions in the CRM.
    #[command(subcommand)]
    Crm(CrmCommand),
    /// Check everything the connector relies on (settings, both sign-ins, the webhook
    /// registration, every CRM column and table, currencies, store and queue), each ✔ or ✖
    /// with its fix. Exits 0 only when every check passes.
    Doctor(DoctorArgs),
    /// What the connector is doing: links, failures, queued and dead-lettered commands, the last
    /// poll and the webhook registration; or, given a referral or CRM record id, its link, the
    /// last synced state, its journal (newest first) and its queued or dead-lettered commands.
    Status(StatusArgs),
    /// Put dead-lettered sync commands back on the queue, each in its own group (a referral's
    /// commands stay in order). Running it twice is harmless.
    Redrive(RedriveArgs),
    /// Read both sides as the poller and the processor would, decide, and print what would be
    /// written to the CRM and to Partner Center, writing nothing (no record, no claim, no cursor).
    DryRun(DryRunArgs),
    /// The go-live import: every referral already in Partner Center and every opportunity
    /// already set to Sync = yes, enqueued once each. Resumable; a second run adds nothing.
    Backfill(BackfillArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// A referral id or a CRM record id.
    id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct RedriveArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Referral or CRM record ids whose dead-lettered commands go back.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Every dead-lettered command.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Args, Debug)]
struct DryRunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Decide at most this many changes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct BackfillArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Only referrals changed on or after this day (YYYY-MM-DD, UTC); all of them otherwise.
    #[arg(long)]
    since: Option<chrono::NaiveDate>,
}

#[derive(Subcommand, Debug)]
enum CrmCommand {
    /// Create what the connector needs in the CRM, with the configured names, through its
    /// metadata API; what is there already is left as it is. Prints the plan, then what was
    /// created; exits 0 when everything is in place.
    Setup(SetupArgs),
}

/// The settings and flags of `cosell local` that say where the services are.
#[derive(clap::Args, Debug)]
struct TargetArgs {
    /// Which CRM (or COSELL_CRM).
    #[arg(long, value_enum)]
    crm: Option<Crm>,
    /// Use the sandbox running at this URL, with its default identities.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// A TOML file of settings, as for `cosell local`; the environment wins over it.
    #[arg(long, env = "COSELL_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory of `cosell local`: its embedded store and queue, and the sign-in
    /// `cosell auth login` keeps there when no COSELL_SECRET_ARN is set.
    #[arg(long, env = "COSELL_DATA_DIR", default_value = ".cosell")]
    data_dir: PathBuf,
}

impl TargetArgs {
    /// The settings, with `--crm` over COSELL_CRM.
    fn settings(&self) -> Result<Settings, cosell::settings::SettingsError> {
        let mut settings = Settings::load(self.config.as_deref(), std::env::vars())?;
        if let Some(kind) = self.crm {
            settings.set("COSELL_CRM", kind.setting());
        }
        Ok(settings)
    }

    fn sources(&self) -> Sources {
        Sources {
            sandbox_url: self.sandbox_url.clone(),
            data_dir: Some(self.data_dir.clone()),
        }
    }
}

#[derive(clap::Args, Debug)]
struct SetupArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct DoctorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The URL the webhook registration must point at (the ingress's public URL and path).
    #[arg(long, env = "COSELL_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Print the checks as JSON: {"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum SolutionsCommand {
    /// Load solutions from a CSV file or an Excel workbook (first sheet) into the catalog,
    /// upserted by solution id. The first row names the columns: solution id, name and
    /// (optional) description. Prints what was created, updated, unchanged and refused; exits
    /// non-zero when a row was refused.
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// The CSV (.csv) or Excel (.xlsx, .xls, .ods) file.
    file: PathBuf,
    /// Which CRM (or COSELL_CRM).
    #[arg(long, value_enum)]
    crm: Option<Crm>,
    /// Use the sandbox running at this URL, with its default identities.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// A TOML file of settings, as for `cosell local`; the environment wins over it.
    #[arg(long, env = "COSELL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Sign in with the authorization-code flow (a browser and a loopback redirect), or the
    /// device code flow, and store the refresh token: in the secret COSELL_SECRET_ARN names, or
    /// in the data directory for `cosell local`. The token is never printed.
    Login(LoginArgs),
    /// Who is signed in, the MFA claim, when the refresh token was last used and when it lapses,
    /// and whether a Partner Center call with it succeeds. Exits non-zero when it does not.
    Status(AuthArgs),
}

/// The settings `cosell auth` uses: those of `cosell local`.
#[derive(clap::Args, Debug)]
struct AuthArgs {
    /// Sign in to the sandbox running at this URL, with its default app.
    #[arg(long)]
    sandbox_url: Option<String>,
    /// The data directory of `cosell local`, where the refresh token is kept when no
    /// COSELL_SECRET_ARN is set.
    #[arg(long, env = "COSELL_DATA_DIR", default_value = ".cosell")]
    data_dir: PathBuf,
    /// A TOML file of settings, as for `cosell local`; the environment wins over it.
    #[arg(long, env = "COSELL_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct LoginArgs {
    #[command(flatten)]
    common: AuthArgs,
    /// Use the device code flow, for a machine without a browser (the app registration must
    /// allow public client flows).
    #[arg(long)]
    device_code: bool,
    /// Only print the sign-in URL; do not open a browser.
    #[arg(long)]
    no_browser: bool,
    /// The loopback port of the redirect URI http://localhost:PORT/ (register
    /// http://localhost as a redirect URI of the app; Entra accepts any port on it).
    #[arg(long, default_value_t = cosell::auth::DEFAULT_PORT)]
    port: u16,
    /// The Referral admin's user name, filled in on the sign-in page.
    #[arg(long)]
    user: Option<String>,
    /// Seconds to wait for the sign-in to be completed.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Crm {
    Dynamics,
    Salesforce,
}

impl Crm {
    fn setting(self) -> &'static str {
        match self {
            Crm::Dynamics => "dynamics",
            Crm::Salesforce => "salesforce",
        }
    }
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

/// The command's exit: 0, or the error on stderr after the command's name, with its code.
fn exit<T, E: std::fmt::Display>(
    command: &str,
    result: Result<T, E>,
    code: impl FnOnce(&E) -> u8,
) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::from(code(&e))
        }
    }
}

/// The settings of `target`, or `None` after saying on stderr which one is wrong.
fn target_settings(command: &str, target: &TargetArgs) -> Option<Settings> {
    match target.settings() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("{command}: {e}");
            None
        }
    }
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
        Command::Status(args) => {
            let Some(settings) = target_settings("cosell status", &args.target) else {
                return ExitCode::from(2);
            };
            let options = ops::StatusOptions {
                sources: args.target.sources(),
                id: args.id,
                json: args.json,
            };
            exit(
                "cosell status",
                ops::status(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::Redrive(args) => {
            let Some(settings) = target_settings("cosell redrive", &args.target) else {
                return ExitCode::from(2);
            };
            let options = ops::RedriveOptions {
                sources: args.target.sources(),
                ids: args.ids,
                all: args.all,
            };
            exit(
                "cosell redrive",
                ops::redrive(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::DryRun(args) => {
            let Some(settings) = target_settings("cosell dry-run", &args.target) else {
                return ExitCode::from(2);
            };
            let options = ops::DryRunOptions {
                sources: args.target.sources(),
                limit: args.limit.map(|n| n as usize),
                json: args.json,
            };
            exit(
                "cosell dry-run",
                ops::dry_run(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::Backfill(args) => {
            let Some(settings) = target_settings("cosell backfill", &args.target) else {
                return ExitCode::from(2);
            };
            let options = ops::BackfillOptions {
                sources: args.target.sources(),
                since: args.since,
            };
            exit(
                "cosell backfill",
                ops::backfill(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::Crm(CrmCommand::Setup(args)) => {
            let settings = match args.target.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell crm setup: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = crm_setup::SetupOptions {
                dry_run: args.dry_run,
                sources: args.target.sources(),
            };
            exit(
                "cosell crm setup",
                crm_setup::run(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::Doctor(args) => {
            let settings = match args.target.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell doctor: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = doctor::DoctorOptions {
                sources: args.target.sources(),
                data_dir: args.target.data_dir.clone(),
                webhook_url: args.webhook_url,
            };
            let report = doctor::run(options, settings).await;
            let mut out = std::io::stdout();
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => {
                        use std::io::Write;
                        let _ = writeln!(out, "{json}");
                    }
                    Err(e) => {
                        eprintln!("cosell doctor: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                report.write_text(&mut out);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Solutions(SolutionsCommand::Import(args)) => {
            let mut settings = match Settings::load(args.config.as_deref(), std::env::vars()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell solutions import: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(kind) = args.crm {
                settings.set("COSELL_CRM", kind.setting());
            }
            let options = solutions::ImportOptions {
                file: args.file,
                sandbox_url: args.sandbox_url,
            };
            exit(
                "cosell solutions import",
                solutions::import(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
        }
        Command::Auth(command) => {
            let common = match &command {
                AuthCommand::Login(a) => &a.common,
                AuthCommand::Status(a) => a,
            };
            let settings = match Settings::load(common.config.as_deref(), std::env::vars()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cosell auth: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut out = std::io::stdout();
            let result = match command {
                AuthCommand::Login(a) => auth::login(
                    auth::LoginOptions {
                        sandbox_url: a.common.sandbox_url,
                        data_dir: a.common.data_dir,
                        device_code: a.device_code,
                        no_browser: a.no_browser,
                        port: a.port,
                        login_hint: a.user,
                        timeout: std::time::Duration::from_secs(a.timeout),
                    },
                    settings,
                    &mut out,
                )
                .await
                .map(|_| ()),
                AuthCommand::Status(a) => auth::status(
                    auth::StatusOptions {
                        sandbox_url: a.sandbox_url,
                        data_dir: a.data_dir,
                    },
                    settings,
                    &mut out,
                )
                .await
                .map(|_| ()),
            };
            exit("cosell auth", result, |e| e.exit_code())
        }
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
            exit(
                "cosell register",
                register::run(options, settings, &mut std::io::stdout()).await,
                |e| e.exit_code(),
            )
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
