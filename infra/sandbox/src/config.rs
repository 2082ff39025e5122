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
/// The directory every token names as `tid` (whatever tenant segment the request's path has).
pub const TENANT_ID: &str = "3f6c5c1e-6d1b-4c8a-9a57-5a1db0c5e11a";

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
    /// Certificates (DER) whose keys may sign the client's assertions (private_key_jwt), as
    /// uploaded under the app registration's "Certificates & secrets". More can be added at run
    /// time through the control API.
    pub certificates: Vec<Vec<u8>>,
    /// The app registration's "Allow public client flows": whether the device code flow may be
    /// finished without a client credential. Entra's default for a new registration is off, but
    /// a connector signed in on a headless machine needs it, so the sandbox's app has it on.
    pub public_client_flows: bool,
}

impl ClientIdentity {
    pub fn new(client_id: &str, client_secret: &str) -> ClientIdentity {
        ClientIdentity {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            certificates: Vec::new(),
            public_client_flows: true,
        }
    }
}

/// What happens to a refresh token once it has been redeemed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshRotation {
    /// Entra's documented behaviour: the redeemed token stays valid until its own expiry; each
    /// redemption also hands out a new one.
    #[default]
    Reuse,
    /// The redeemed token stops working: a client that keeps an old one finds out at once.
    SingleUse,
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
    /// A refresh token lapses this long after it was issued (Entra: 90 days of inactivity; every
    /// redemption issues a fresh token, so an unused one is the one that lapses).
    pub refresh_token_lifetime: Duration,
    /// Whether a redeemed refresh token keeps working.
    pub refresh_rotation: RefreshRotation,
    /// Conditional Access requires multifactor authentication to sign in to Partner Center, so a
    /// user's password grant is refused (AADSTS50076); interactive and device code sign-ins do
    /// the second factor and pass.
    pub sign_in_mfa: bool,
    /// Partner Center's own MFA enforcement: the Referrals and Webhooks APIs refuse an App+User
    /// token whose `amr` lacks `mfa`.
    pub partner_center_mfa: bool,
    /// How often a device code client may poll (Entra answers 5 seconds).
    pub device_code_interval: Duration,
    /// How long a device code waits for the user (Entra: 15 minutes).
    pub device_code_lifetime: Duration,
    /// How long an authorization code may wait to be redeemed (Entra: 10 minutes).
    pub authorization_code_lifetime: Duration,
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
            clients: vec![ClientIdentity::new(CLIENT_ID, CLIENT_SECRET)],
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
            refresh_rotation: RefreshRotation::default(),
            sign_in_mfa: true,
            partner_center_mfa: true,
            device_code_interval: Duration::from_secs(5),
            device_code_lifetime: Duration::from_secs(15 * 60),
            authorization_code_lifetime: Duration::from_secs(10 * 60),
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
