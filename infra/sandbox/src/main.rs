use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use cosell_sandbox::config::{
    ADMIN_USER, CLIENT_ID, CLIENT_SECRET, READER_USER, RefreshRotation, RelatedEventId,
    ResourceUriStyle, TENANT_ID, USER_PASSWORD,
};
use cosell_sandbox::salesforce::INTEGRATION_USER;
use cosell_sandbox::{Sandbox, SandboxConfig};

fn identities() -> String {
    format!(
        "Default identities:\n  \
         app (client id / secret):      {CLIENT_ID} / {CLIENT_SECRET}\n  \
         Referral Admin (user / pass):  {ADMIN_USER} / {USER_PASSWORD}\n  \
         Referral User  (user / pass):  {READER_USER} / {USER_PASSWORD}\n    \
         (reads only referrals whose team includes it; every write is refused)\n\
         Dataverse: client credentials of the app, scope=<sandbox URL>/.default.\n\
         Salesforce: consumer key {CLIENT_ID} / {CLIENT_SECRET}; JWT user {INTEGRATION_USER},\n  \
         key pair from GET /_sandbox/salesforce/connected-app.\n\
         Entra ID (tenant {TENANT_ID}, any tenant segment accepted):\n  \
         GET /{{tenant}}/oauth2/v2.0/authorize (and /oauth2/authorize, v1) signs the user of\n  \
         login_hint in (password and MFA) and redirects to a loopback redirect_uri with a code;\n  \
         POST /{{tenant}}/oauth2/v2.0/devicecode starts a device code sign-in, approved with\n  \
         POST /_sandbox/entra/device/approve; POST /{{tenant}}/oauth2/token (v1) and\n  \
         /{{tenant}}/oauth2/v2.0/token (v2) take a client secret or a certificate assertion.\n  \
         The password grant for a user needs --no-sign-in-mfa (Conditional Access requires MFA),\n  \
         and Partner Center refuses its token unless --no-partner-center-mfa.\n\
         Salesforce token endpoint: POST /services/oauth2/token.\n\
         Control API: /_sandbox/... (see docs/sandbox.md)."
    )
}

/// A local stand-in for Partner Center (Referrals and Webhooks APIs, signed webhook delivery),
/// its Entra ID token endpoint, the Dataverse Web API and the Salesforce REST API, for trying
/// the co-sell connector without credentials.
#[derive(Parser, Debug)]
#[command(name = "cosell-sandbox", version)]
struct Cli {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0, env = "COSELL_SANDBOX_PORT")]
    port: u16,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    token_lifetime_secs: u64,
    /// Days after which an unused refresh token lapses.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    refresh_token_lifetime_days: u64,
    /// Whether a redeemed refresh token keeps working (Entra: reuse) or stops (single-use).
    #[arg(long, value_enum, default_value_t = RefreshRotation::Reuse)]
    refresh_rotation: RefreshRotation,
    /// Let users sign in with the password grant: no Conditional Access MFA requirement.
    #[arg(long)]
    no_sign_in_mfa: bool,
    /// Let Partner Center accept App+User tokens without the MFA claim.
    #[arg(long)]
    no_partner_center_mfa: bool,
    /// Seconds a device code client is told to wait between polls.
    #[arg(long, default_value_t = 5)]
    device_code_interval: u64,
    /// Largest page of a referral list.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    page_size: u64,
    /// Days an incoming referral may stay New before it expires.
    #[arg(long, default_value_t = 14)]
    referral_expiry_days: u64,
    /// HTTP status of a successful referral create.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=201))]
    create_status: u16,
    /// Refuse Closed/Won on a partner's deal during its first N hours (0 = off; Partner Center
    /// may refuse within 72).
    #[arg(long, default_value_t = 0)]
    won_min_age_hours: u64,
    /// Accept Closed/Error as a referral state.
    #[arg(long)]
    allow_error_substatus: bool,
    /// Which referral id related-referral events carry.
    #[arg(long, value_enum, default_value_t = RelatedEventId::Related)]
    related_event_id: RelatedEventId,
    /// Shape of ResourceUri in webhook events.
    #[arg(long, value_enum, default_value_t = ResourceUriStyle::ReferralsApi)]
    resource_uri_style: ResourceUriStyle,
    /// Delivery attempts per webhook event.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    webhook_attempts: u32,
    /// Milliseconds before the second delivery attempt (doubling after).
    #[arg(long, default_value_t = 1000)]
    webhook_retry_base_ms: u64,
    /// Signing key (PEM PKCS#8); with --signing-cert. Generated when absent.
    #[arg(long, requires = "signing_cert")]
    signing_key: Option<PathBuf>,
    /// Signing certificate (PEM); with --signing-key.
    #[arg(long, requires = "signing_key")]
    signing_cert: Option<PathBuf>,
    /// Write the signing key and certificate used to this directory (key.pem, cert.pem).
    #[arg(long)]
    write_signing_files: Option<PathBuf>,
    /// Start both CRMs as before `cosell crm setup`: Dataverse without the connector's
    /// columns, tables, publisher and solution, change tracking off on the opportunity;
    /// Salesforce without the connector's fields, objects and On Hold stage.
    #[arg(long)]
    bare_schema: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let matches = Cli::command().after_help(identities()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut config = SandboxConfig {
        port: cli.port,
        token_lifetime: Duration::from_secs(cli.token_lifetime_secs),
        refresh_token_lifetime: Duration::from_secs(
            cli.refresh_token_lifetime_days.saturating_mul(24 * 3600),
        ),
        refresh_rotation: cli.refresh_rotation,
        sign_in_mfa: !cli.no_sign_in_mfa,
        partner_center_mfa: !cli.no_partner_center_mfa,
        device_code_interval: Duration::from_secs(cli.device_code_interval),
        page_size: cli.page_size as usize,
        referral_expiry: Duration::from_secs(cli.referral_expiry_days * 24 * 3600),
        create_status: cli.create_status,
        won_min_age: Duration::from_secs(cli.won_min_age_hours.saturating_mul(3600)),
        allow_error_substatus: cli.allow_error_substatus,
        related_event_id: cli.related_event_id,
        resource_uri_style: cli.resource_uri_style,
        webhook_attempts: cli.webhook_attempts,
        webhook_retry_base: Duration::from_millis(cli.webhook_retry_base_ms),
        signing_key_file: cli.signing_key,
        signing_cert_file: cli.signing_cert,
        ..SandboxConfig::default()
    };
    if cli.bare_schema {
        config.dataverse.bare();
        config.salesforce.bare();
    }
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cosell-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = cli.write_signing_files {
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("key.pem"), sandbox.signing_key_pem()))
            .and_then(|()| std::fs::write(dir.join("cert.pem"), sandbox.certificate_pem()));
        if let Err(e) = written {
            eprintln!(
                "cosell-sandbox: cannot write signing files to {}: {e}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    println!("listening on {}", sandbox.base_url());
    let _ = tokio::signal::ctrl_c().await;
    sandbox.stop().await;
    ExitCode::SUCCESS
}
