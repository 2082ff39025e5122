//! The configuration a one-shot command (`cosell crm setup`, `cosell doctor`, `cosell solutions
//! import`, `cosell register`) runs with: `cosell local`'s settings and flags, so a command
//! checks or changes exactly what the connector would use. A running sandbox (`--sandbox-url`)
//! with its default identities; else the settings file and environment, with the secret
//! settings from the Secrets Manager secret `COSELL_SECRET_ARN` names, and the Referral admin's
//! sign-in from the data directory when `cosell auth login` kept it there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosell_shared::config::Config;
use cosell_shared::partner_center::refresh_store::{FileTokenStore, RefreshTokenStore};
use cosell_shared::secrets::SECRET_ARN_SETTING;
use cosell_shared::wiring;

use crate::local;
use crate::settings::Settings;

/// Where the settings come from besides the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A running sandbox, used with its default identities.
    pub sandbox_url: Option<String>,
    /// `cosell local`'s data directory, where `cosell auth login` may have kept the sign-in.
    pub data_dir: Option<PathBuf>,
}

/// The settings could not be turned into a configuration; the message names the setting.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{0} (the settings are cosell local's: --config FILE and COSELL_* variables, or --sandbox-url for a running sandbox)"
)]
pub struct ResolveError(pub String);

/// A validated configuration and what the command needs to act on it.
pub struct Resolved {
    /// The settings as used, the sandbox's or the stored sign-in included.
    pub settings: Settings,
    pub config: Config,
    /// Where a rotated refresh token goes: the secret, or the data directory the sign-in came
    /// from. `None` for a sandbox's or a configured token, which nothing else reads again.
    pub tokens: Option<Arc<dyn RefreshTokenStore>>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("crm", &self.config.crm.kind())
            .finish_non_exhaustive()
    }
}

pub async fn resolve(mut settings: Settings, sources: &Sources) -> Result<Resolved, ResolveError> {
    let fail = |e: &dyn std::fmt::Display| ResolveError(e.to_string());
    let mut stored_sign_in = None;
    if let Some(base) = &sources.sandbox_url {
        local::check_sandbox_url(base).map_err(|e| fail(&e))?;
        local::sandbox_settings(&mut settings, base.trim_end_matches('/'))
            .await
            .map_err(|e| fail(&e))?;
    } else if let Some(dir) = &sources.data_dir
        && settings.get(SECRET_ARN_SETTING).is_none()
        && settings.get("COSELL_PC_REFRESH_TOKEN").is_none()
        && settings.get("COSELL_PC_PASSWORD").is_none()
    {
        let store = FileTokenStore::in_dir(dir);
        if let Some(stored) = store.load().await.map_err(|e| fail(&e))? {
            settings.set("COSELL_PC_REFRESH_TOKEN", stored.token.expose());
            stored_sign_in = Some(dir.clone());
        }
    }
    let sdk = wiring::sdk_config_from(settings.values()).await;
    let config = if settings.get(SECRET_ARN_SETTING).is_some() {
        wiring::load(settings.values().clone(), &sdk)
            .await
            .map_err(|e| fail(&e))?
    } else {
        settings.config().map_err(|e| fail(&e))?
    };
    let tokens = wiring::token_store(
        config.secret_arn.as_deref(),
        &sdk,
        stored_sign_in.as_deref().map(Path::new),
    );
    Ok(Resolved {
        settings,
        config,
        tokens,
    })
}
