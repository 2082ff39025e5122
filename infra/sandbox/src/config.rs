//! Everything about the sandbox that a test or a user may want to change. Defaults follow the
//! documented behaviour of the real services; where the documentation is silent, the default is
//! the inference written down next to the field and the field exists so it can be changed.

use std::path::PathBuf;
use std::time::Duration;

/// Default identities. They are printed by `cosell-sandbox --help` and documented in docs/sandbox.md.
pub const CLIENT_ID: &str = "sandbox-client";
pub const CLIENT_SECRET: &str = "sandbox-secret";
pub const ADMIN_USER: &str = "referral-admin@sandbox.test";
pub const READER_USER: &str = "referral-user@sandbox.test";
pub const USER_PASSWORD: &str = "sandbox";

/// The token audience of the Referrals API.
pub const REFERRALS_AUDIENCE: &str = "https://api.partner.microsoft.com";
/// The token audience of the Webhooks API (and of the other Partner Center APIs).
pub const PARTNER_CENTER_AUDIENCE: &str = "https://api.partnercenter.microsoft.com";

/// Role of a Partner Center user for the Referrals API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReferralRole {
    /// Creates, updates and reads every referral.
    ReferralAdmin,
    /// Reads only the referrals whose `team` includes the user; every write is refused.
    ReferralUser,
}

#[derive(Debug, Clone)]
pub struct UserIdentity {
    pub username: String,
    pub password: String,
    pub role: ReferralRole,
}

#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    pub client_secret: String,
}

/// Which referral id a `related-referral-*` event carries in its `ResourceUri`. Not documented;
/// the default is the related (Microsoft-side) referral itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RelatedEventId {
    #[default]
    Related,
    Own,
}

/// Shape of the `ResourceUri` in webhook events. The documentation shows
/// `…/engagements/v1/referrals/{id}`; Microsoft's own sample flow GETs the URI directly, so the
/// default points at the Referrals API path that serves the referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResourceUriStyle {
    #[default]
    ReferralsApi,
    Documented,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub clients: Vec<ClientIdentity>,
    pub users: Vec<UserIdentity>,
    /// Lifetime of access tokens (Entra's default is about an hour).
    pub token_lifetime: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_lifetime: Duration,
    /// Largest page of a referral list (documented: 100).
    pub page_size: usize,
    /// Incoming referrals left `New` this long become `Closed/Expired` (documented: 14 days).
    pub referral_expiry: Duration,
    /// HTTP status of a successful create: the swagger says 200.
    pub create_status: u16,
    /// A partner's deal may not be closed as Won this soon after it was created; zero is off.
    /// Partner Center may refuse a deal registration marked Won within 72 hours of creation,
    /// so a connector should be tried against that too.
    pub won_min_age: Duration,
    /// Accept `Closed/Error` (the UI's "close as error"); API support is unknown.
    pub allow_error_substatus: bool,
    pub related_event_id: RelatedEventId,
    pub resource_uri_style: ResourceUriStyle,
    /// Delivery attempts per webhook event before it is given up (documented: 10).
    pub webhook_attempts: u32,
    /// Wait before the second attempt; it doubles for each later one, up to `webhook_retry_max`.
    pub webhook_retry_base: Duration,
    pub webhook_retry_max: Duration,
    /// How long a receiver may take to answer one delivery.
    pub webhook_timeout: Duration,
    /// Test events allowed per minute (documented: 2).
    pub validation_events_per_minute: usize,
    /// PEM files of the webhook signing key (PKCS#8) and certificate; generated when absent.
    pub signing_key_file: Option<PathBuf>,
    pub signing_cert_file: Option<PathBuf>,
    /// Organisation in the generated signing certificate's subject and issuer. The connector
    /// checks the organisation of Partner Center's certificate, so the sandbox uses the same one.
    pub signing_cert_organization: String,
    /// The Dataverse Web API simulator.
    pub dataverse: crate::dataverse::Config,
    /// The Salesforce REST API simulator.
    pub salesforce: crate::salesforce::Config,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            port: 0,
            clients: vec![ClientIdentity {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
            }],
            users: vec![
                UserIdentity {
                    username: ADMIN_USER.into(),
                    password: USER_PASSWORD.into(),
                    role: ReferralRole::ReferralAdmin,
                },
                UserIdentity {
                    username: READER_USER.into(),
                    password: USER_PASSWORD.into(),
                    role: ReferralRole::ReferralUser,
                },
            ],
            token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(90 * 24 * 3600),
            page_size: 100,
            referral_expiry: Duration::from_secs(14 * 24 * 3600),
            create_status: 200,
            won_min_age: Duration::ZERO,
            allow_error_substatus: false,
            related_event_id: RelatedEventId::default(),
            resource_uri_style: ResourceUriStyle::default(),
            webhook_attempts: 10,
            webhook_retry_base: Duration::from_secs(1),
            webhook_retry_max: Duration::from_secs(60),
            webhook_timeout: Duration::from_secs(10),
            validation_events_per_minute: 2,
            signing_key_file: None,
            signing_cert_file: None,
            signing_cert_organization: "Microsoft Corporation".into(),
            dataverse: Default::default(),
            salesforce: Default::default(),
        }
    }
}
