//! One typed configuration, read from environment variables (the Lambda functions) and
//! validated at start: a bad value stops start-up with a message naming the variable.
//! Every variable, its meaning and its default is listed in docs/configuration.md.

use std::time::Duration;

use crate::crm::CrmKind;
use crate::crm::dataverse::{
    ConfigError as DataverseConfigError, DataverseConfig, DataverseFields,
};
use crate::crm::salesforce::{SalesforceAuth, SalesforceConfig};
use crate::entra::{ClientCertificate, ClientCredential, CredentialError};
use crate::partner_center::http::PartnerCenterConfig;
use crate::partner_center::signature::SignatureVerifierConfig;
use crate::partner_center::token::{PartnerCenterAuth, Secret, UserCredential};
use crate::sync::SyncOptions;
use crate::sync::poller::PollerOptions;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required{hint}")]
    Missing { name: String, hint: String },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

/// Which CRM, with its adapter's settings.
#[derive(Debug, Clone)]
pub enum CrmConfig {
    Dynamics(Box<DataverseConfig>),
    Salesforce(Box<SalesforceConfig>),
}

impl CrmConfig {
    pub fn kind(&self) -> CrmKind {
        match self {
            CrmConfig::Dynamics(_) => CrmKind::Dynamics,
            CrmConfig::Salesforce(_) => CrmKind::Salesforce,
        }
    }
}

/// Where the connector keeps its state and passes its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub table_name: Option<String>,
    pub queue_url: Option<String>,
    /// An endpoint for every AWS service (moto or another emulator); unset in AWS.
    pub endpoint_url: Option<String>,
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub crm: CrmConfig,
    pub partner_center: PartnerCenterConfig,
    pub partner_center_auth: PartnerCenterAuth,
    pub signature: SignatureVerifierConfig,
    pub sync: SyncOptions,
    pub poller: PollerOptions,
    pub aws: AwsConfig,
    /// How long journal entries and per-referral reconciliation cursors are kept
    /// (`COSELL_RETENTION_DAYS`): DynamoDB's TTL removes them; the embedded store deletes them.
    pub retention: Duration,
    /// `COSELL_DRY_RUN`: the processor and the poller log what they would write to the CRM and
    /// Partner Center instead of writing it.
    pub dry_run: bool,
    /// The Secrets Manager secret of the secret settings (`COSELL_SECRET_ARN`), where a rotated
    /// refresh token is kept too.
    pub secret_arn: Option<String>,
}

/// Journal entries and reconciliation cursors are kept this many days unless
/// `COSELL_RETENTION_DAYS` says otherwise.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
/// Ten years: beyond it a TTL would say "forever" in a roundabout way.
const MAX_RETENTION_DAYS: u64 = 3650;

/// Reads settings by name; `std::env::var` in the functions, a map in tests.
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str, hint: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.into(),
            hint: hint.into(),
        })
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "1" | "on") => Ok(true),
            Some("false" | "no" | "0" | "off") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name: name.into(),
                reason: format!("'{other}' is not true or false"),
            }),
        }
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: name.into(),
                reason: format!("'{v}' is not a whole number"),
            }),
        }
    }

    fn url(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let v = self.get(name).unwrap_or_else(|| default.to_string());
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(v.trim_end_matches('/').into()),
            _ => Err(ConfigError::Invalid {
                name: name.into(),
                reason: format!("'{v}' is not an http(s) URL"),
            }),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|v| {
                serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                    name: name.into(),
                    reason: format!("not the expected JSON: {e}"),
                })
            })
            .transpose()
    }
}

impl Config {
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(&Env(&|name| std::env::var(name).ok()))
    }

    pub fn from_env(env: &Env<'_>) -> Result<Config, ConfigError> {
        let crm_kind = env.required("COSELL_CRM", " (dynamics or salesforce)")?;
        let crm = match crm_kind.to_ascii_lowercase().as_str() {
            "dynamics" | "dataverse" => CrmConfig::Dynamics(Box::new(dataverse(env)?)),
            "salesforce" => CrmConfig::Salesforce(Box::new(salesforce(env)?)),
            other => {
                return Err(ConfigError::Invalid {
                    name: "COSELL_CRM".into(),
                    reason: format!("'{other}' is neither dynamics nor salesforce"),
                });
            }
        };
        let auth = partner_center_app(env, partner_center_user(env)?)?;
        let partner_center = PartnerCenterConfig {
            api_base_url: env.url(
                "COSELL_PC_API_URL",
                &PartnerCenterConfig::default().api_base_url,
            )?,
            webhooks_base_url: env.url(
                "COSELL_PC_WEBHOOKS_URL",
                &PartnerCenterConfig::default().webhooks_base_url,
            )?,
            ..PartnerCenterConfig::default()
        };
        let mut signature = SignatureVerifierConfig::default();
        for prefix in env
            .get("COSELL_WEBHOOK_CERT_PREFIXES")
            .into_iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty())
        {
            if url::Url::parse(&prefix).is_err() {
                return Err(ConfigError::Invalid {
                    name: "COSELL_WEBHOOK_CERT_PREFIXES".into(),
                    reason: format!("'{prefix}' is not a URL prefix"),
                });
            }
            signature.allowed_certificate_prefixes.push(prefix);
        }
        if let Some(org) = env.get("COSELL_WEBHOOK_CERT_ORGANIZATION") {
            signature.expected_organization = org;
        }
        let defaults = SyncOptions::default();
        let sync = SyncOptions {
            marker: env.bool("COSELL_MARKER", defaults.marker)?,
            co_sell_only: env.bool("COSELL_SYNC_CO_SELL_ONLY", defaults.co_sell_only)?,
            referral_link_template: env
                .get("COSELL_REFERRAL_LINK_TEMPLATE")
                .unwrap_or(defaults.referral_link_template),
            audit_max_chars: env
                .number("COSELL_AUDIT_MAX_CHARS", defaults.audit_max_chars as u64)?
                as usize,
            idempotency_ttl: Duration::from_secs(env.number(
                "COSELL_IDEMPOTENCY_TTL_SECS",
                defaults.idempotency_ttl.as_secs(),
            )?),
            in_progress_ttl: Duration::from_secs(env.number(
                "COSELL_IN_PROGRESS_TTL_SECS",
                defaults.in_progress_ttl.as_secs(),
            )?),
            won_hold: Duration::from_secs(
                env.number("COSELL_WON_HOLD_HOURS", defaults.won_hold.as_secs() / 3600)?
                    .saturating_mul(3600),
            ),
            services: crate::domain::outbound::ServicesRules {
                solution_areas: list(env, "COSELL_SOLUTION_AREAS"),
                solution_plays: list(env, "COSELL_SOLUTION_PLAYS"),
                partner_roles: list(env, "COSELL_PARTNER_ROLES"),
                every_co_sell_deal: env.bool("COSELL_SERVICES_EVERY_CO_SELL_DEAL", false)?,
            },
            auth_retry: Duration::from_secs(
                env.number("COSELL_AUTH_RETRY_SECS", defaults.auth_retry.as_secs())?,
            ),
            clock: defaults.clock,
        };
        let poller_defaults = PollerOptions::default();
        let poller = PollerOptions {
            reconciliation_overlap: Duration::from_secs(env.number(
                "COSELL_RECONCILIATION_OVERLAP_SECS",
                poller_defaults.reconciliation_overlap.as_secs(),
            )?),
            reconciliation_first_window: Duration::from_secs(env.number(
                "COSELL_RECONCILIATION_FIRST_WINDOW_SECS",
                poller_defaults.reconciliation_first_window.as_secs(),
            )?),
            reconciliation_grace: Duration::from_secs(env.number(
                "COSELL_RECONCILIATION_GRACE_SECS",
                poller_defaults.reconciliation_grace.as_secs(),
            )?),
            max_pages: env.number("COSELL_POLL_MAX_PAGES", poller_defaults.max_pages as u64)?
                as usize,
            cursor_retention: poller_defaults.cursor_retention,
        };
        let aws = AwsConfig {
            table_name: env.get("COSELL_TABLE_NAME"),
            queue_url: env.get("COSELL_QUEUE_URL"),
            endpoint_url: env.get("AWS_ENDPOINT_URL"),
            region: env
                .get("AWS_REGION")
                .unwrap_or_else(|| "us-east-1".to_string()),
        };
        let retention_days = env.number("COSELL_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)?;
        if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
            return Err(ConfigError::Invalid {
                name: "COSELL_RETENTION_DAYS".into(),
                reason: format!("{retention_days} is not between 1 and {MAX_RETENTION_DAYS} days"),
            });
        }
        let retention = Duration::from_secs(retention_days * 24 * 3600);
        let poller = PollerOptions {
            cursor_retention: retention,
            ..poller
        };
        Ok(Config {
            crm,
            partner_center,
            partner_center_auth: auth,
            signature,
            sync,
            poller,
            aws,
            retention,
            dry_run: env.bool("COSELL_DRY_RUN", false)?,
            secret_arn: env.get(crate::secrets::SECRET_ARN_SETTING),
        })
    }
}

/// The Referral admin's credential: a refresh token from `cosell auth login`, or (where no MFA
/// is asked for) a user name and password.
pub fn partner_center_user(env: &Env<'_>) -> Result<UserCredential, ConfigError> {
    match (
        env.get("COSELL_PC_USERNAME"),
        env.get("COSELL_PC_PASSWORD"),
        env.get("COSELL_PC_REFRESH_TOKEN"),
    ) {
        (_, _, Some(token)) => Ok(UserCredential::RefreshToken(Secret::new(token))),
        (Some(username), Some(password), None) => Ok(UserCredential::Password {
            username,
            password: Secret::new(password),
        }),
        _ => Err(ConfigError::Missing {
            name: "COSELL_PC_REFRESH_TOKEN".into(),
            hint: " (sign the Referral admin in with `cosell auth login`)".into(),
        }),
    }
}

/// The Partner Center app registration and its Entra authority, signing in with `credential`.
pub fn partner_center_app(
    env: &Env<'_>,
    credential: UserCredential,
) -> Result<PartnerCenterAuth, ConfigError> {
    let mut auth = PartnerCenterAuth::new(
        env.required("COSELL_PC_CLIENT_ID", " (the Entra app registration)")?,
        client_credential(env, "COSELL_PC")?,
        credential,
    );
    auth.authority_url = env.url("COSELL_PC_AUTHORITY_URL", &auth.authority_url)?;
    if let Some(tenant) = env.get("COSELL_PC_TENANT") {
        auth.tenant = tenant;
    }
    Ok(auth)
}

/// An app registration's client secret (`{app}_CLIENT_SECRET`) or certificate
/// (`{app}_CLIENT_CERTIFICATE` with its `{app}_CLIENT_PRIVATE_KEY`, both PEM).
fn client_credential(env: &Env<'_>, app: &str) -> Result<ClientCredential, ConfigError> {
    let secret_name = format!("{app}_CLIENT_SECRET");
    let cert_name = format!("{app}_CLIENT_CERTIFICATE");
    let key_name = format!("{app}_CLIENT_PRIVATE_KEY");
    match (env.get(&cert_name), env.get(&key_name)) {
        (Some(cert), Some(key)) => ClientCertificate::from_pem(&cert, &Secret::new(key))
            .map(ClientCredential::Certificate)
            .map_err(|e| ConfigError::Invalid {
                name: match e {
                    CredentialError::PrivateKey(_) => key_name,
                    _ => cert_name,
                },
                reason: e.to_string(),
            }),
        (Some(_), None) => Err(ConfigError::Missing {
            name: key_name,
            hint: format!(" (the private key of {cert_name}, PEM)"),
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            name: cert_name,
            hint: format!(" (the certificate of {key_name}, PEM)"),
        }),
        (None, None) => env
            .required(
                &secret_name,
                &format!(" (or {cert_name} and {key_name}: a certificate, which Entra recommends)"),
            )
            .map(|s| ClientCredential::Secret(Secret::new(s))),
    }
}

/// A list setting: values separated by `;` or new lines (values such as solution plays may
/// hold commas), blanks dropped.
fn list(env: &Env<'_>, name: &str) -> Vec<String> {
    env.get(name)
        .map(|v| {
            v.split([';', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn dataverse(env: &Env<'_>) -> Result<DataverseConfig, ConfigError> {
    let org_url = env.required(
        "COSELL_DATAVERSE_URL",
        " (the environment's URL, such as https://contoso.crm.dynamics.com)",
    )?;
    let mut c = DataverseConfig::new(
        env.url("COSELL_DATAVERSE_URL", &org_url)?,
        env.required(
            "COSELL_DATAVERSE_TENANT",
            " (the Entra tenant of the environment)",
        )?,
        env.required("COSELL_DATAVERSE_CLIENT_ID", "")?,
        client_credential(env, "COSELL_DATAVERSE")?,
    );
    c.authority_url = env.url("COSELL_DATAVERSE_AUTHORITY_URL", &c.authority_url)?;
    c.change_overlap = Duration::from_secs(env.number(
        "COSELL_DATAVERSE_CHANGE_OVERLAP_SECS",
        c.change_overlap.as_secs(),
    )?);
    if let Some(solution) = env.get("COSELL_DATAVERSE_SOLUTION") {
        c.solution = solution;
    }
    if let Some(prefix) = env.get("COSELL_DATAVERSE_PUBLISHER_PREFIX") {
        c.publisher_prefix = prefix;
    }
    if let Some(fields) = env.json::<DataverseFields>("COSELL_DATAVERSE_FIELDS")? {
        c.fields = fields;
    }
    if let Some(values) = env.json("COSELL_OPPORTUNITY_CREATE_VALUES")? {
        c.fields.opportunity_create_defaults = values;
    }
    if let Some(values) = env.json("COSELL_LEAD_CREATE_VALUES")? {
        c.fields.lead_create_defaults = values;
    }
    c.validate().map_err(|e| ConfigError::Invalid {
        name: match &e {
            DataverseConfigError::Invalid { name, .. } => dataverse_setting(name),
            DataverseConfigError::Http(_) => "COSELL_DATAVERSE_*",
        }
        .into(),
        reason: e.to_string(),
    })?;
    Ok(c)
}

fn salesforce(env: &Env<'_>) -> Result<SalesforceConfig, ConfigError> {
    let auth = match (
        env.get("COSELL_SALESFORCE_PRIVATE_KEY"),
        env.get("COSELL_SALESFORCE_CLIENT_SECRET"),
    ) {
        (Some(key), _) => SalesforceAuth::JwtBearer {
            consumer_key: env.required(
                "COSELL_SALESFORCE_CLIENT_ID",
                " (the connected app's consumer key)",
            )?,
            username: env.required(
                "COSELL_SALESFORCE_USERNAME",
                " (the pre-approved integration user)",
            )?,
            private_key_pem: key.into(),
            audience: env.get("COSELL_SALESFORCE_AUDIENCE"),
        },
        (None, Some(secret)) => SalesforceAuth::ClientCredentials {
            client_id: env.required("COSELL_SALESFORCE_CLIENT_ID", "")?,
            client_secret: secret.into(),
        },
        (None, None) => {
            return Err(ConfigError::Missing {
                name: "COSELL_SALESFORCE_PRIVATE_KEY".into(),
                hint: " (JWT bearer) or COSELL_SALESFORCE_CLIENT_SECRET (client credentials)"
                    .into(),
            });
        }
    };
    let mut c = SalesforceConfig::new(auth);
    c.login_url = env.url("COSELL_SALESFORCE_LOGIN_URL", &c.login_url)?;
    c.multi_currency = env.bool("COSELL_SALESFORCE_MULTI_CURRENCY", c.multi_currency)?;
    c.change_overlap = Duration::from_secs(env.number(
        "COSELL_SALESFORCE_CHANGE_OVERLAP_SECS",
        c.change_overlap.as_secs(),
    )?);
    if let Some(fields) = env.json("COSELL_SALESFORCE_FIELDS")? {
        c.fields = fields;
    }
    if let Some(set) = env.get("COSELL_SALESFORCE_PERMISSION_SET") {
        c.permission_set = set;
    }
    if let Some(stages) = env.json("COSELL_SALESFORCE_STAGES")? {
        c.stages = stages;
    }
    if let Some(values) = env.json("COSELL_OPPORTUNITY_CREATE_VALUES")? {
        c.opportunity_create_values = values;
    }
    if let Some(values) = env.json("COSELL_LEAD_CREATE_VALUES")? {
        c.lead_create_values = values;
    }
    c.validate().map_err(|e| ConfigError::Invalid {
        name: salesforce_setting(e.setting).into(),
        reason: e.to_string(),
    })?;
    Ok(c)
}

/// The environment variable that carries a Dataverse setting: the connection's own, or else one
/// of the column and table names (and the values for new records) given as JSON.
fn dataverse_setting(setting: &str) -> &'static str {
    match setting {
        "org_url" => "COSELL_DATAVERSE_URL",
        "authority_url" => "COSELL_DATAVERSE_AUTHORITY_URL",
        "tenant" => "COSELL_DATAVERSE_TENANT",
        "client_id" => "COSELL_DATAVERSE_CLIENT_ID",
        "client_secret" => "COSELL_DATAVERSE_CLIENT_SECRET",
        "change_overlap" => "COSELL_DATAVERSE_CHANGE_OVERLAP_SECS",
        "solution" => "COSELL_DATAVERSE_SOLUTION",
        "publisher_prefix" => "COSELL_DATAVERSE_PUBLISHER_PREFIX",
        "opportunity_create_defaults" => "COSELL_OPPORTUNITY_CREATE_VALUES",
        "lead_create_defaults" => "COSELL_LEAD_CREATE_VALUES",
        "api_version" | "timeout" | "page_size" | "max_account_candidates" => "COSELL_DATAVERSE_*",
        _ => "COSELL_DATAVERSE_FIELDS",
    }
}

/// The environment variable that carries a Salesforce setting; the ones with no variable of
/// their own come from the connector's defaults or its configuration file.
fn salesforce_setting(setting: &str) -> &'static str {
    match setting {
        "login_url" => "COSELL_SALESFORCE_LOGIN_URL",
        "auth" => "COSELL_SALESFORCE_CLIENT_ID",
        "fields" => "COSELL_SALESFORCE_FIELDS",
        "stages" => "COSELL_SALESFORCE_STAGES",
        "permission_set" => "COSELL_SALESFORCE_PERMISSION_SET",
        "create_values" => "COSELL_OPPORTUNITY_CREATE_VALUES or COSELL_LEAD_CREATE_VALUES",
        "change_overlap" => "COSELL_SALESFORCE_CHANGE_OVERLAP_SECS",
        _ => "COSELL_SALESFORCE_*",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&Env(&|name| map.get(name).cloned()))
    }

    const PC: &[(&str, &str)] = &[
        ("COSELL_PC_CLIENT_ID", "app"),
        ("COSELL_PC_CLIENT_SECRET", "s3cret"),
        ("COSELL_PC_USERNAME", "admin@partner.example"),
        ("COSELL_PC_PASSWORD", "pw"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        PC.iter().chain(extra).copied().collect()
    }

    #[test]
    fn a_dynamics_deployment_loads_with_defaults() {
        let c = load(&with(&[
            ("COSELL_CRM", "dynamics"),
            ("COSELL_DATAVERSE_URL", "https://contoso.crm4.dynamics.com/"),
            ("COSELL_DATAVERSE_TENANT", "contoso.onmicrosoft.com"),
            ("COSELL_DATAVERSE_CLIENT_ID", "dv-app"),
            ("COSELL_DATAVERSE_CLIENT_SECRET", "dv-secret"),
            ("COSELL_SYNC_CO_SELL_ONLY", "no"),
        ]))
        .expect("valid");
        assert_eq!(c.crm.kind(), CrmKind::Dynamics);
        assert!(!c.sync.co_sell_only);
        assert!(c.sync.marker);
        assert_eq!(
            c.partner_center.api_base_url,
            "https://api.partner.microsoft.com"
        );
        let CrmConfig::Dynamics(dv) = &c.crm else {
            panic!("dynamics")
        };
        assert_eq!(dv.org_url, "https://contoso.crm4.dynamics.com");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets never printed"
        );
        assert!(!format!("{c:?}").contains("dv-secret"));
    }

    /// Salesforce by client credentials, and the Partner Center app without its credential.
    const SALESFORCE_APP: &[(&str, &str)] = &[
        ("COSELL_CRM", "salesforce"),
        ("COSELL_SALESFORCE_CLIENT_SECRET", "x"),
        ("COSELL_SALESFORCE_CLIENT_ID", "y"),
        ("COSELL_PC_CLIENT_ID", "app"),
        ("COSELL_PC_REFRESH_TOKEN", "rt"),
    ];

    #[test]
    fn a_certificate_replaces_the_client_secret_and_half_of_one_is_named() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
        let cert = rcgen::CertificateParams::new(vec!["connector".into()])
            .and_then(|p| p.self_signed(&key))
            .expect("a certificate");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let mut both: Vec<(&str, &str)> = SALESFORCE_APP.to_vec();
        both.extend([
            ("COSELL_PC_CLIENT_CERTIFICATE", cert_pem.as_str()),
            ("COSELL_PC_CLIENT_PRIVATE_KEY", key_pem.as_str()),
        ]);
        let c = load(&both).expect("a certificate instead of a secret");
        assert!(matches!(
            c.partner_center_auth.client_credential,
            ClientCredential::Certificate(_)
        ));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"), "never printed");

        let mut cert_only: Vec<(&str, &str)> = SALESFORCE_APP.to_vec();
        cert_only.push(("COSELL_PC_CLIENT_CERTIFICATE", cert_pem.as_str()));
        assert!(matches!(
            load(&cert_only),
            Err(ConfigError::Missing { name, .. }) if name == "COSELL_PC_CLIENT_PRIVATE_KEY"
        ));
        let mut bad_key: Vec<(&str, &str)> = SALESFORCE_APP.to_vec();
        bad_key.extend([
            ("COSELL_PC_CLIENT_CERTIFICATE", cert_pem.as_str()),
            ("COSELL_PC_CLIENT_PRIVATE_KEY", "not a key"),
        ]);
        assert!(matches!(
            load(&bad_key),
            Err(ConfigError::Invalid { name, .. }) if name == "COSELL_PC_CLIENT_PRIVATE_KEY"
        ));
        let neither = load(SALESFORCE_APP).expect_err("no credential for the app");
        assert!(
            neither.to_string().contains("COSELL_PC_CLIENT_SECRET")
                && neither.to_string().contains("COSELL_PC_CLIENT_CERTIFICATE"),
            "{neither}"
        );
    }

    #[test]
    fn bad_values_stop_start_up_naming_the_setting() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (PC.to_vec(), "COSELL_CRM"),
            (with(&[("COSELL_CRM", "hubspot")]), "COSELL_CRM"),
            (
                with(&[("COSELL_CRM", "salesforce")]),
                "COSELL_SALESFORCE_PRIVATE_KEY",
            ),
            (
                with(&[
                    ("COSELL_CRM", "salesforce"),
                    ("COSELL_SALESFORCE_CLIENT_SECRET", "x"),
                    ("COSELL_SALESFORCE_CLIENT_ID", "y"),
                    ("COSELL_MARKER", "maybe"),
                ]),
                "COSELL_MARKER",
            ),
            (
                with(&[
                    ("COSELL_CRM", "salesforce"),
                    ("COSELL_SALESFORCE_CLIENT_SECRET", "x"),
                    ("COSELL_SALESFORCE_CLIENT_ID", "y"),
                    ("COSELL_PC_API_URL", "not a url"),
                ]),
                "COSELL_PC_API_URL",
            ),
            (
                vec![
                    ("COSELL_CRM", "salesforce"),
                    ("COSELL_PC_CLIENT_ID", "a"),
                    ("COSELL_PC_CLIENT_SECRET", "b"),
                    ("COSELL_SALESFORCE_CLIENT_ID", "y"),
                    ("COSELL_SALESFORCE_CLIENT_SECRET", "x"),
                ],
                "COSELL_PC_REFRESH_TOKEN",
            ),
            (
                with(&[
                    ("COSELL_CRM", "salesforce"),
                    ("COSELL_SALESFORCE_CLIENT_SECRET", "x"),
                    ("COSELL_SALESFORCE_CLIENT_ID", "y"),
                    (
                        "COSELL_SALESFORCE_STAGES",
                        r#"{"active":"Open","onHold":"Open","won":"Won","lost":"Lost"}"#,
                    ),
                ]),
                "COSELL_SALESFORCE_STAGES",
            ),
            (
                with(&[
                    ("COSELL_CRM", "dynamics"),
                    ("COSELL_DATAVERSE_TENANT", "t"),
                    ("COSELL_DATAVERSE_CLIENT_ID", "c"),
                    ("COSELL_DATAVERSE_CLIENT_SECRET", "s"),
                ]),
                "COSELL_DATAVERSE_URL",
            ),
            (
                with(&[
                    ("COSELL_CRM", "dynamics"),
                    ("COSELL_DATAVERSE_URL", "https://contoso.crm.dynamics.com"),
                    ("COSELL_DATAVERSE_TENANT", "t"),
                    ("COSELL_DATAVERSE_CLIENT_ID", "c"),
                    ("COSELL_DATAVERSE_CLIENT_SECRET", "s"),
                    ("COSELL_DATAVERSE_CHANGE_OVERLAP_SECS", "90000"),
                ]),
                "COSELL_DATAVERSE_CHANGE_OVERLAP_SECS",
            ),
        ];
        for (env, name) in cases {
            let err = load(&env).expect_err(name);
            assert!(
                err.to_string().starts_with(name),
                "{err} should name {name}"
            );
        }
        // A missing URL is missing, not "an invalid URL ''".
        let no_url = with(&[
            ("COSELL_CRM", "dynamics"),
            ("COSELL_DATAVERSE_TENANT", "t"),
            ("COSELL_DATAVERSE_CLIENT_ID", "c"),
            ("COSELL_DATAVERSE_CLIENT_SECRET", "s"),
        ]);
        assert!(matches!(
            load(&no_url),
            Err(ConfigError::Missing { name, .. }) if name == "COSELL_DATAVERSE_URL"
        ));
    }

    #[test]
    fn salesforce_client_credentials_and_field_overrides() {
        let c = load(&with(&[
            ("COSELL_CRM", "salesforce"),
            ("COSELL_SALESFORCE_CLIENT_ID", "ck"),
            ("COSELL_SALESFORCE_CLIENT_SECRET", "cs"),
            (
                "COSELL_SALESFORCE_LOGIN_URL",
                "https://contoso.my.salesforce.com",
            ),
        ]))
        .expect("valid");
        let CrmConfig::Salesforce(sf) = &c.crm else {
            panic!("salesforce")
        };
        assert_eq!(sf.login_url, "https://contoso.my.salesforce.com");
        assert!(matches!(sf.auth, SalesforceAuth::ClientCredentials { .. }));
        let with_values = load(&with(&[
            ("COSELL_CRM", "salesforce"),
            ("COSELL_SALESFORCE_CLIENT_ID", "ck"),
            ("COSELL_SALESFORCE_CLIENT_SECRET", "cs"),
            (
                "COSELL_SALESFORCE_FIELDS",
                r#"{"referralId": "PC_Referral__c"}"#,
            ),
            (
                "COSELL_OPPORTUNITY_CREATE_VALUES",
                r#"{"Type": "New Business"}"#,
            ),
        ]))
        .expect("valid");
        let CrmConfig::Salesforce(sf) = &with_values.crm else {
            panic!("salesforce")
        };
        assert_eq!(sf.fields.referral_id, "PC_Referral__c");
        assert_eq!(
            sf.fields.audit, "Audit__c",
            "unnamed fields keep their defaults"
        );
        assert_eq!(sf.opportunity_create_values["Type"], "New Business");
        let bad = load(&with(&[
            ("COSELL_CRM", "salesforce"),
            ("COSELL_SALESFORCE_CLIENT_ID", "ck"),
            ("COSELL_SALESFORCE_CLIENT_SECRET", "cs"),
            ("COSELL_OPPORTUNITY_CREATE_VALUES", "[1,2]"),
        ]));
        assert!(
            bad.expect_err("not an object")
                .to_string()
                .starts_with("COSELL_OPPORTUNITY_CREATE_VALUES")
        );
    }
}
