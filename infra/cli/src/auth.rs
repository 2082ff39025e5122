//! `cosell auth login` and `cosell auth status`: the Referral admin signs in once, interactively
//! (so with MFA), and the refresh token goes where the connector reads it — the deployed
//! stack's Secrets Manager secret (`COSELL_SECRET_ARN`) or `cosell local`'s data directory.
//! Tokens are never printed.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, Utc};
use cosell_shared::config::{self, Env};
use cosell_shared::partner_center::PartnerCenter;
use cosell_shared::partner_center::http::PartnerCenterClient;
use cosell_shared::partner_center::refresh_store::RefreshTokenStore;
use cosell_shared::partner_center::signin::{SignIn, SignInError, SignedIn};
use cosell_shared::partner_center::token::{Secret, UserCredential};
use cosell_shared::secrets::{self, SECRET_ARN_SETTING};
use cosell_shared::wiring;
use tokio::sync::mpsc;

use crate::local;
use crate::settings::Settings;

/// Entra lets a refresh token lapse after this long unused.
pub const REFRESH_TOKEN_LIFETIME_DAYS: i64 = 90;
/// The loopback port of the redirect when none is given.
pub const DEFAULT_PORT: u16 = 8400;

/// What `cosell auth login` was asked to do.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub sandbox_url: Option<String>,
    pub data_dir: PathBuf,
    /// The device authorization grant instead of a browser redirect.
    pub device_code: bool,
    /// Only print the sign-in URL.
    pub no_browser: bool,
    /// The loopback port of the redirect (`0`: any free one).
    pub port: u16,
    /// Fills in the user's name on the sign-in page.
    pub login_hint: Option<String>,
    /// How long to wait for the sign-in to be completed.
    pub timeout: Duration,
}

/// What `cosell auth status` was asked to do.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub sandbox_url: Option<String>,
    pub data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Setting(String),
    #[error("{0}")]
    SignIn(#[from] SignInError),
    #[error("no sign-in completed within {0:?}")]
    TimedOut(Duration),
    #[error("cannot listen on the redirect address {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Check(String),
}

impl AuthError {
    /// 2 for settings the command could not use, 1 for a sign-in or check that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            AuthError::Setting(_) | AuthError::Listen { .. } => 2,
            _ => 1,
        }
    }
}

/// The app, its authority and where the refresh token is kept, from the settings.
struct Context {
    settings: Settings,
    store: Arc<dyn RefreshTokenStore>,
    sign_in: SignIn,
}

async fn context(
    sandbox_url: Option<&str>,
    data_dir: &std::path::Path,
    mut settings: Settings,
) -> Result<Context, AuthError> {
    if let Some(base) = sandbox_url {
        local::check_sandbox_url(base).map_err(|e| AuthError::Setting(e.to_string()))?;
        local::sandbox_app_settings(&mut settings, base.trim_end_matches('/'));
    }
    let sdk = wiring::sdk_config_from(settings.values()).await;
    let arn = settings.get(SECRET_ARN_SETTING).map(str::to_string);
    if let Some(arn) = &arn {
        // The app's secret or certificate may be in the secret, as the functions read it.
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let values = secrets::load(&client, arn)
            .await
            .map_err(|e| AuthError::Setting(e.to_string()))?;
        for (k, v) in values {
            settings.set(&k, v);
        }
    }
    let values = settings.values().clone();
    let env = Env(&|name| values.get(name).cloned());
    let auth = config::partner_center_app(&env, UserCredential::RefreshToken(Secret::new("")))
        .map_err(|e| {
            AuthError::Setting(format!(
                "{e} (the settings are cosell local's: --config FILE and COSELL_* variables, or --sandbox-url)"
            ))
        })?;
    let store = wiring::token_store(arn.as_deref(), &sdk, Some(data_dir))
        .ok_or_else(|| AuthError::Setting("no place to keep the refresh token".into()))?;
    let http = cosell_shared::http::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| AuthError::Setting(e.to_string()))?;
    Ok(Context {
        settings,
        store,
        sign_in: SignIn::new(auth, http),
    })
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes (amr contains mfa)",
        Some(false) => "no: Partner Center refuses App+User calls without it",
        None => "unknown (the token does not say)",
    }
}

/// Signs the Referral admin in and stores the refresh token.
pub async fn login(
    options: LoginOptions,
    settings: Settings,
    out: &mut (dyn Write + Send),
) -> Result<SignedIn, AuthError> {
    let ctx = context(options.sandbox_url.as_deref(), &options.data_dir, settings).await?;
    let signed_in = if options.device_code {
        let device = ctx.sign_in.start_device_code().await?;
        let message = device.message.clone().unwrap_or_else(|| {
            format!(
                "To sign in, open {} and enter the code {}.",
                device.verification_uri, device.user_code
            )
        });
        let _ = writeln!(out, "{message}");
        let _ = writeln!(
            out,
            "(The device code flow needs \"Allow public client flows\" on the app registration.)"
        );
        let _ = out.flush();
        tokio::time::timeout(options.timeout, ctx.sign_in.finish_device_code(&device))
            .await
            .map_err(|_| AuthError::TimedOut(options.timeout))??
    } else {
        browser_sign_in(&ctx, &options, out).await?
    };
    ctx.store
        .sign_in(&signed_in.refresh_token)
        .await
        .map_err(|e| AuthError::Store(e.to_string()))?;
    let _ = writeln!(
        out,
        "Signed in as {} (tenant {}).",
        signed_in.username().unwrap_or("(the token names no user)"),
        signed_in.tenant().unwrap_or("unknown")
    );
    let _ = writeln!(out, "  MFA claim:      {}", yes_no(signed_in.mfa()));
    let _ = writeln!(out, "  Refresh token:  stored in {}", ctx.store.place());
    Ok(signed_in)
}

#[derive(Clone)]
struct Callback {
    answers: mpsc::Sender<HashMap<String, String>>,
}

async fn callback(
    State(cb): State<Callback>,
    Query(query): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    let failed = query.contains_key("error");
    let _ = cb.answers.send(query).await;
    Html(if failed {
        "<!doctype html><title>cosell</title><p>The sign-in did not complete. The terminal says why.</p>"
    } else {
        "<!doctype html><title>cosell</title><p>Signed in. You can close this window and go back to the terminal.</p>"
    })
}

/// The authorization-code flow: a loopback listener takes the redirect.
async fn browser_sign_in(
    ctx: &Context,
    options: &LoginOptions,
    out: &mut (dyn Write + Send),
) -> Result<SignedIn, AuthError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AuthError::Listen { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| AuthError::Listen { addr, source })?
        .port();
    // Entra accepts any port on a registered `http://localhost` redirect URI.
    let redirect_uri = format!("http://localhost:{port}/");
    let request = ctx
        .sign_in
        .authorization_request(&redirect_uri, options.login_hint.as_deref())?;
    let (answers, mut received) = mpsc::channel(4);
    let router = axum::Router::new()
        .route("/", axum::routing::get(callback))
        .with_state(Callback { answers });
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let _ = writeln!(
        out,
        "Sign in as the Referral admin (with MFA) at this URL; it redirects to {redirect_uri}:"
    );
    let _ = writeln!(out, "  {}", request.url);
    let _ = out.flush();
    if !options.no_browser && webbrowser::open(request.url.as_str()).is_err() {
        let _ = writeln!(out, "(No browser could be opened: open the URL by hand.)");
    }
    let wait = async {
        // A stray request (a favicon, a page reload without the answer) is not the sign-in.
        while let Some(query) = received.recv().await {
            if query.contains_key("state") {
                return Some(query);
            }
        }
        None
    };
    let query = tokio::time::timeout(options.timeout, wait).await;
    server.abort();
    let query = query
        .map_err(|_| AuthError::TimedOut(options.timeout))?
        .ok_or(AuthError::TimedOut(options.timeout))?;
    Ok(ctx.sign_in.complete(&request, &query).await?)
}

/// What `cosell auth status` found.
#[derive(Debug, Clone)]
pub struct Status {
    pub username: Option<String>,
    pub tenant: Option<String>,
    pub mfa: Option<bool>,
    /// When the stored token was stored (issued): the last use that rotated it.
    pub stored_at: Option<DateTime<Utc>>,
    pub signed_in_at: Option<DateTime<Utc>>,
    /// The Referrals API read: `Ok` or why it failed.
    pub partner_center: Result<(), String>,
}

/// Reports the stored sign-in and tries a Partner Center call with it. `Err` when there is
/// nothing stored or the call failed (after printing what was found).
pub async fn status(
    options: StatusOptions,
    settings: Settings,
    out: &mut (dyn Write + Send),
) -> Result<Status, AuthError> {
    let ctx = context(options.sandbox_url.as_deref(), &options.data_dir, settings).await?;
    let stored = ctx
        .store
        .load()
        .await
        .map_err(|e| AuthError::Store(e.to_string()))?
        .ok_or_else(|| {
            AuthError::Check(format!(
                "no refresh token in {}: sign the Referral admin in with `cosell auth login`",
                ctx.store.place()
            ))
        })?;
    let mut settings = ctx.settings.clone();
    settings.set("COSELL_PC_REFRESH_TOKEN", stored.token.expose());
    let values = settings.values().clone();
    let env = Env(&|name| values.get(name).cloned());
    let auth = config::partner_center_app(&env, UserCredential::RefreshToken(stored.token.clone()))
        .map_err(|e| AuthError::Setting(e.to_string()))?;
    let mut pc_config = cosell_shared::partner_center::http::PartnerCenterConfig::default();
    if let Some(url) = settings.get("COSELL_PC_API_URL") {
        pc_config.api_base_url = url.to_string();
    }
    if let Some(url) = settings.get("COSELL_PC_WEBHOOKS_URL") {
        pc_config.webhooks_base_url = url.to_string();
    }
    let client =
        PartnerCenterClient::with_token_store(pc_config, auth, Some(Arc::clone(&ctx.store)))
            .map_err(|e| AuthError::Setting(format!("COSELL_PC_*: {e}")))?;
    let claims = client.signed_in_user().await;
    let partner_center = match &claims {
        Err(e) => Err(e.to_string()),
        Ok(_) => client
            .list_changed_since(Utc::now())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    let claims = claims.ok().flatten();
    let status = Status {
        username: claims
            .as_ref()
            .and_then(|c| c.username().map(str::to_string)),
        tenant: claims.as_ref().and_then(|c| c.tid.clone()),
        mfa: claims.as_ref().and_then(|c| c.mfa()),
        stored_at: stored.stored_at,
        signed_in_at: stored.signed_in_at,
        partner_center,
    };
    let fmt_time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let _ = writeln!(
        out,
        "Referral admin:    {}",
        status.username.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "Tenant:            {}",
        status.tenant.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(out, "MFA claim:         {}", yes_no(status.mfa));
    let _ = writeln!(out, "Refresh token:     in {}", ctx.store.place());
    if let Some(at) = status.signed_in_at {
        let _ = writeln!(out, "Signed in:         {}", fmt_time(at));
    }
    if let Some(at) = status.stored_at {
        let age = (Utc::now() - at).num_days();
        let left = REFRESH_TOKEN_LIFETIME_DAYS - age;
        let _ = writeln!(out, "Last used/rotated: {} ({age} days ago)", fmt_time(at));
        let _ = writeln!(
            out,
            "Lapses if unused:  {} (in {left} days); this check has just used it, which starts another {REFRESH_TOKEN_LIFETIME_DAYS}",
            fmt_time(at + chrono::Duration::days(REFRESH_TOKEN_LIFETIME_DAYS))
        );
    }
    match &status.partner_center {
        Ok(()) => {
            let _ = writeln!(out, "Partner Center:    ✔ a Referrals API read succeeded");
        }
        Err(e) => {
            let _ = writeln!(out, "Partner Center:    ✖ {e}");
        }
    }
    match &status.partner_center {
        Ok(()) => Ok(status),
        Err(e) => Err(AuthError::Check(e.clone())),
    }
}
