//! `cosell register`: what the webhook-registrar function does, from a shell. Points the
//! Partner Center webhook registration at a URL (with `--restore`, even when it points at
//! another one), sends a validation event and reports how its delivery went.
//!
//! The settings are `cosell local`'s: a TOML file and `COSELL_*` variables, or a running
//! sandbox's default identities with `--sandbox-url`.

use std::io::Write;

use cosell_shared::registrar::{
    Action, Mode, NoMetrics, Registered, Registrar, RegistrarError, RegistrarOptions, Report,
    Validation,
};
use cosell_shared::wiring;

use crate::resolve::{Sources, resolve};
use crate::settings::Settings;

/// What `cosell register` was asked to do.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// The URL Partner Center should deliver to.
    pub url: String,
    /// Take the registration over when it points at another URL; without it, that is only
    /// reported (and is a failure), as the daily check does by default.
    pub restore: bool,
    /// A running sandbox whose default identities to use.
    pub sandbox_url: Option<String>,
    /// How long to wait for the validation event.
    pub registrar: RegistrarOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Registrar(#[from] RegistrarError),
}

impl RegisterError {
    /// 2 for a configuration the command could not use, 1 for a registration that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            RegisterError::Setting(_) => 2,
            RegisterError::Registrar(_) => 1,
        }
    }
}

/// Ensures the registration, writing what it found and did to `out`.
pub async fn run(
    options: RegisterOptions,
    mut settings: Settings,
    out: &mut dyn Write,
) -> Result<Report, RegisterError> {
    // The configuration names a CRM even though registering never calls it; the sandbox
    // serves both.
    if options.sandbox_url.is_some() && settings.get("COSELL_CRM").is_none() {
        settings.set("COSELL_CRM", "dynamics");
    }
    let sources = Sources {
        sandbox_url: options.sandbox_url.clone(),
        data_dir: None,
    };
    let resolved = resolve(settings, &sources)
        .await
        .map_err(|e| RegisterError::Setting(e.to_string()))?;
    let config = &resolved.config;
    let client = wiring::partner_center_client(config, resolved.tokens.clone())
        .map_err(|e| RegisterError::Setting(e.to_string()))?;
    let mode = if options.restore {
        Mode::Deploy
    } else {
        Mode::Check { restore: false }
    };
    let _ = writeln!(
        out,
        "Registering {} with Partner Center ({})…",
        options.url, config.partner_center.webhooks_base_url
    );
    let registrar = Registrar {
        registry: &client,
        metrics: &NoMetrics,
        options: options.registrar,
    };
    let registered = match registrar.register(&options.url, mode).await {
        Ok(r) => r,
        Err(e) => {
            if let RegistrarError::PointsElsewhere { current, .. } = &e {
                let _ = writeln!(out, "  Found:      {current} (another URL)");
                let _ = writeln!(
                    out,
                    "  Did:        nothing; run again with --restore to point it at {}",
                    options.url
                );
            }
            return Err(e.into());
        }
    };
    for line in describe_registration(&options.url, &registered) {
        let _ = writeln!(out, "{line}");
    }
    let validation = registrar.validate(&options.url).await?;
    let _ = writeln!(out, "{}", describe_validation(&validation));
    Ok(Report {
        webhook_url: options.url,
        found: registered.found,
        action: registered.action,
        validation,
    })
}

/// What the registration was and what was done, a line each.
pub fn describe_registration(url: &str, registered: &Registered) -> Vec<String> {
    let found = match &registered.found {
        None => "no registration".to_string(),
        Some(f) => format!("{} ({})", f.webhook_url, f.webhook_events.join(", ")),
    };
    let did = match registered.action {
        Action::Created => "registered it".to_string(),
        Action::Unchanged => "nothing; it was already in place".to_string(),
        Action::Updated => "corrected the events it delivers".to_string(),
        Action::Restored => format!("pointed it at {url} instead"),
    };
    vec![
        format!("  Found:      {found}"),
        format!("  Did:        {did}"),
    ]
}

/// How the validation event went.
pub fn describe_validation(v: &Validation) -> String {
    format!(
        "  Validation: event {} delivered ({}, {} attempt{})",
        v.correlation_id,
        v.response_code,
        v.attempts,
        if v.attempts == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use cosell_sandbox::{Sandbox, SandboxConfig};

    use super::*;

    async fn receiver() -> String {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(|| async { StatusCode::OK }))
            .route(
                "/failing",
                axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn options(url: &str, restore: bool, sandbox: &Sandbox) -> RegisterOptions {
        RegisterOptions {
            url: url.to_string(),
            restore,
            sandbox_url: Some(sandbox.base_url().to_string()),
            registrar: RegistrarOptions {
                validation_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_millis(50),
            },
        }
    }

    async fn register(options: RegisterOptions) -> (Result<Report, RegisterError>, String) {
        let mut out = Vec::new();
        let result = run(options, Settings::default(), &mut out).await;
        (result, String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn a_sandbox_registration_is_made_then_found_in_place() {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .expect("sandbox");
        let hook = receiver().await;

        let (result, out) = register(options(&hook, false, &sandbox)).await;
        let report = result.expect("registered");
        assert_eq!(report.action, Action::Created);
        assert!(out.contains("no registration"), "{out}");
        assert!(out.contains("registered it"), "{out}");
        assert!(out.contains("delivered (OK, 1 attempt)"), "{out}");

        let (result, out) = register(options(&hook, false, &sandbox)).await;
        assert_eq!(result.expect("in place").action, Action::Unchanged);
        assert!(out.contains("already in place"), "{out}");
    }

    #[tokio::test]
    async fn another_url_is_taken_over_only_with_restore() {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .expect("sandbox");
        let hook = receiver().await;
        let other = receiver().await;
        register(options(&other, false, &sandbox))
            .await
            .0
            .expect("the other environment registered");

        let (result, out) = register(options(&hook, false, &sandbox)).await;
        let err = result.expect_err("points elsewhere");
        assert_eq!(err.exit_code(), 1);
        assert!(out.contains(&other), "{out}");
        assert!(out.contains("--restore"), "{out}");

        let (result, out) = register(options(&hook, true, &sandbox)).await;
        assert_eq!(result.expect("taken over").action, Action::Restored);
        assert!(out.contains(&other), "{out}");
        assert!(out.contains(&format!("pointed it at {hook}")), "{out}");
    }

    #[tokio::test]
    async fn a_failed_validation_still_says_what_was_registered() {
        let sandbox = Sandbox::start(SandboxConfig {
            webhook_attempts: 2,
            webhook_retry_base: Duration::from_millis(50),
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox");
        let failing = receiver().await.replace("/hook", "/failing");

        let (result, out) = register(options(&failing, false, &sandbox)).await;
        let err = result.expect_err("not delivered");
        assert_eq!(err.exit_code(), 1);
        assert!(out.contains("registered it"), "{out}");
        assert!(
            err.to_string().contains("500 Internal Server Error"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_configuration_is_a_setting_error() {
        let mut out = Vec::new();
        let err = run(
            RegisterOptions {
                url: "https://ingress.example/hook".into(),
                restore: false,
                sandbox_url: None,
                registrar: RegistrarOptions::default(),
            },
            Settings::default(),
            &mut out,
        )
        .await
        .expect_err("no settings");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("COSELL_CRM"), "{err}");
    }
}
