//! What an admin configures for the Salesforce adapter: where to log in, how, and the API names
//! of every field and value the connector touches (docs/salesforce.md, "Connector fields":
//! every connector field's API name is configurable, and stage names are the admin's).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::retry::RetryPolicy;

pub use crate::secret::Secret as SecretString;

/// The login host of production orgs.
pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
/// The REST API version the adapter was written against (Winter '25).
pub const DEFAULT_API_VERSION: &str = "v62.0";

/// The default [`SalesforceConfig::change_overlap`]: ten minutes, the longest an API call may
/// run (docs/salesforce.md, "Limits"), so the longest a transaction can hold a stamped but
/// uncommitted record out of sight.
pub const DEFAULT_CHANGE_OVERLAP: Duration = Duration::from_secs(600);

/// How the connector signs in to Salesforce (docs/salesforce.md, "Sign-in").
#[derive(Debug, Clone, PartialEq)]
pub enum SalesforceAuth {
    /// OAuth 2.0 JWT bearer flow: a connected app with the certificate of `private_key_pem`
    /// and a pre-approved integration user. Salesforce issues no refresh token, so the adapter
    /// signs a new assertion whenever it needs a new access token.
    JwtBearer {
        /// The connected app's consumer key (`iss`).
        consumer_key: String,
        /// The integration user's username (`sub`).
        username: String,
        /// PEM RSA private key (PKCS#1 or PKCS#8) whose certificate the connected app holds.
        private_key_pem: SecretString,
        /// `aud`; `None` means the login URL (`https://login.salesforce.com`, or
        /// `https://test.salesforce.com` for sandboxes when that is the login URL).
        audience: Option<String>,
    },
    /// OAuth 2.0 client credentials flow: the connected app's run-as user makes the calls. The
    /// login URL must then be the org's My Domain host.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
}

/// The API names of the fields the connector reads and writes. Defaults are those of
/// docs/salesforce.md, "Connector fields"; a managed package or an admin's own naming changes
/// them here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SalesforceFieldNames {
    /// Opportunity checkbox: the seller shares this opportunity with Partner Center.
    pub sync_with_partner_center: String,
    /// Opportunity field holding the referral id. Must be an External ID field: creates are
    /// upserts on it, so a retried create never makes a second opportunity.
    pub referral_id: String,
    pub referral_link: String,
    /// Opportunity picklist "How can Microsoft help?".
    pub microsoft_help: String,
    pub visibility: String,
    pub microsoft_crm_id: String,
    pub microsoft_status: String,
    pub audit: String,
    /// The deal value (`Amount`, or a custom currency field).
    pub deal_value: String,
    /// The deal currency; only read and written when [`SalesforceConfig::multi_currency`].
    pub currency: String,
    /// Opportunity field for the Services co-sell solution area (text or picklist). `None`, the
    /// default, for an org without it: the adapter then neither reads nor writes it, since
    /// Salesforce refuses a query or a write that names a field it does not have.
    pub solution_area: Option<String>,
    /// Opportunity field for the Services co-sell solution play; `None` as for the solution area.
    pub solution_play: Option<String>,
    /// Opportunity field for the partner's role in a Services co-sell; `None` as for the
    /// solution area.
    pub partner_role: Option<String>,
    /// Opportunity picklist of the customer's marketplace intent (`Yes`, `No`, `Have not
    /// decided`). Only read, never written; `None` as for the solution area.
    pub marketplace_intent: Option<String>,
    /// Account field holding the ISO 3166 alpha-2 country.
    pub account_country: String,
    /// Lead field holding the referral id; like the opportunity's, it must be an External ID.
    pub lead_referral_id: String,
    pub lead_referral_link: String,
    pub lead_audit: String,
    /// Lead field for the referral's topic. Salesforce's Lead has none, so by default (`None`)
    /// the topic goes into the description.
    pub lead_topic: Option<String>,
    /// The solution-link object and its fields.
    pub solution_object: String,
    pub solution_id: String,
    /// The solution link's lookup to its opportunity.
    pub solution_opportunity: String,
    /// A text field of the solution link set to the solution id, so sellers see which solution
    /// a row is; `None` when the object's name is an auto-number.
    pub solution_name: Option<String>,
    /// The partner's solution catalog object and its fields.
    pub catalog_object: String,
    /// Solution catalog: the Partner Center solution id. Must be an External ID field: creates
    /// are upserts on it, so a retried create never makes a second row.
    pub catalog_solution_id: String,
    pub catalog_name: String,
    /// Solution catalog: the description (by default the solution area field); `None` for an
    /// object without one, which is then neither read nor written.
    pub catalog_description: Option<String>,
}

impl Default for SalesforceFieldNames {
    fn default() -> Self {
        let s = |v: &str| v.to_string();
        SalesforceFieldNames {
            sync_with_partner_center: s("Sync_with_Partner_Center__c"),
            referral_id: s("Referral_Identifier__c"),
            referral_link: s("Referral_Link__c"),
            microsoft_help: s("How_can_Microsoft_help__c"),
            visibility: s("Referral_Visibility__c"),
            microsoft_crm_id: s("Microsoft_CRM_Identifier__c"),
            microsoft_status: s("Microsoft_Status__c"),
            audit: s("Audit__c"),
            deal_value: s("Amount"),
            currency: s("CurrencyIsoCode"),
            solution_area: None,
            solution_play: None,
            partner_role: None,
            marketplace_intent: None,
            account_country: s("BillingCountry"),
            lead_referral_id: s("Referral_Identifier__c"),
            lead_referral_link: s("Referral_Link__c"),
            lead_audit: s("Audit__c"),
            lead_topic: None,
            solution_object: s("Microsoft_Solution__c"),
            solution_id: s("Solution_Id__c"),
            solution_opportunity: s("Opportunity__c"),
            solution_name: Some(s("Name")),
            catalog_object: s("Microsoft_Solution_Catalog__c"),
            catalog_solution_id: s("Solution_Id__c"),
            catalog_name: s("Name"),
            catalog_description: Some(s("Solution_Area__c")),
        }
    }
}

/// The opportunity stages that stand for the connector's states. Reading, a stage that is none
/// of these counts as active while open, and as won or lost by its `IsWon` once closed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StageNames {
    /// Where an accepted referral's opportunity goes (and where a new one starts).
    pub active: String,
    /// Where an incoming referral waits until it is accepted.
    pub on_hold: String,
    pub won: String,
    pub lost: String,
}

impl Default for StageNames {
    fn default() -> Self {
        StageNames {
            active: "Qualification".into(),
            on_hold: "On Hold".into(),
            won: "Closed Won".into(),
            lost: "Closed Lost".into(),
        }
    }
}

/// Lead `Status` values per lead state. The first value of each list is the one written; every
/// value listed is recognised when reading. A status in no list reads as no state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LeadStatuses {
    pub open: Vec<String>,
    /// Defaults to the standard converted status. Some orgs refuse a converted status outside
    /// lead conversion; their admin names another value here.
    pub qualified: Vec<String>,
    pub disqualified: Vec<String>,
}

impl Default for LeadStatuses {
    fn default() -> Self {
        LeadStatuses {
            open: vec!["Open - Not Contacted".into(), "Working - Contacted".into()],
            qualified: vec!["Closed - Converted".into()],
            disqualified: vec!["Closed - Not Converted".into()],
        }
    }
}

/// The visibility picklist's two values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VisibilityValues {
    pub private: String,
    pub visible: String,
}

impl Default for VisibilityValues {
    fn default() -> Self {
        VisibilityValues {
            private: "Private".into(),
            visible: "Visible".into(),
        }
    }
}

/// "How can Microsoft help?" picklist values per `assistanceRequestCode` (docs/salesforce.md,
/// "Connector fields").
pub fn default_microsoft_help_values() -> Vec<(String, String)> {
    [
        (
            "WorkloadSpecificValueProposition",
            "Workload specific value proposition",
        ),
        (
            "CustomerTechnicalArchitecture",
            "Customer technical architecture",
        ),
        ("ProofOfConceptOrDemo", "Proof of concept or demo"),
        ("QuotesOrLicensing", "Quotes or licensing"),
        ("PostSalesCustomerSuccess", "Post sales customer success"),
        ("GeneralOrOther", "General or other"),
    ]
    .into_iter()
    .map(|(c, v)| (c.to_string(), v.to_string()))
    .collect()
}

/// Everything the Salesforce adapter needs. Build with [`SalesforceConfig::new`] and change
/// what differs from the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceConfig {
    /// Where tokens come from: `{login_url}/services/oauth2/token`. API calls go to the
    /// `instance_url` the token response names.
    pub login_url: String,
    /// The REST API version, `vNN.N`.
    pub api_version: String,
    pub auth: SalesforceAuth,
    /// Longest wait for one HTTP response; a timeout is transient and retried.
    pub timeout: Duration,
    /// Retries of transient failures (5xx, 429, timeouts) within one call.
    pub retry: RetryPolicy,
    pub fields: SalesforceFieldNames,
    pub stages: StageNames,
    pub lead_statuses: LeadStatuses,
    /// The values of the visibility picklist.
    pub visibility: VisibilityValues,
    /// (`assistanceRequestCode`, picklist value) pairs. A code not listed is written as is.
    pub microsoft_help: Vec<(String, String)>,
    /// The org has multi-currency on, so the currency field exists and is written.
    pub multi_currency: bool,
    /// The org's currency (ISO 4217). Without multi-currency every amount is in it, and a deal
    /// in another currency is refused rather than stored with the wrong unit.
    pub corporate_currency: String,
    /// Values for fields the org requires on create (the admin's "mandatory CRM fields"),
    /// merged under what the connector writes.
    pub opportunity_create_values: Map<String, Value>,
    pub lead_create_values: Map<String, Value>,
    /// `Role` of the customer contact's opportunity contact role; `None` leaves it empty.
    pub contact_role: Option<String>,
    /// `Sforce-Query-Options: batchSize=N` (Salesforce allows 200–2,000); `None` keeps the
    /// server's default.
    pub query_batch_size: Option<u32>,
    /// The change feed reads again this far back before the newest `SystemModstamp` it has
    /// covered, so a record whose stamp lands behind records already read (a transaction that
    /// committed late) is still found; records handed out before are not repeated.
    pub change_overlap: Duration,
    /// The permission set `cosell crm setup` grants the connector's fields and objects with,
    /// assigned to the integration user (its API name); created when missing.
    pub permission_set: String,
}

/// The default [`SalesforceConfig::permission_set`].
pub const DEFAULT_PERMISSION_SET: &str = "CoSell_Connector";

impl SalesforceConfig {
    /// The defaults of docs/salesforce.md, signing in with `auth` at
    /// `https://login.salesforce.com`.
    pub fn new(auth: SalesforceAuth) -> SalesforceConfig {
        SalesforceConfig {
            login_url: DEFAULT_LOGIN_URL.into(),
            api_version: DEFAULT_API_VERSION.into(),
            auth,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            fields: SalesforceFieldNames::default(),
            stages: StageNames::default(),
            lead_statuses: LeadStatuses::default(),
            visibility: VisibilityValues::default(),
            microsoft_help: default_microsoft_help_values(),
            multi_currency: false,
            corporate_currency: "USD".into(),
            opportunity_create_values: Map::new(),
            lead_create_values: Map::new(),
            contact_role: None,
            query_batch_size: None,
            change_overlap: DEFAULT_CHANGE_OVERLAP,
            permission_set: DEFAULT_PERMISSION_SET.into(),
        }
    }

    /// Checks every value, so a bad one is reported at start with its name rather than as a
    /// refused request later.
    pub fn validate(&self) -> Result<(), SalesforceConfigError> {
        let url = url::Url::parse(&self.login_url).map_err(|e| {
            bad(
                "login_url",
                format!("is not a URL ({e}): {}", self.login_url),
            )
        })?;
        if !is_api_name(&self.permission_set) || self.permission_set.ends_with("__c") {
            return Err(bad(
                "permission_set",
                format!(
                    "must be an API name (letters, digits and single underscores, starting with a letter): {}",
                    self.permission_set
                ),
            ));
        }
        if !matches!(url.scheme(), "https" | "http") {
            return Err(bad(
                "login_url",
                format!("must be http(s): {}", self.login_url),
            ));
        }
        let version_ok = self
            .api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && minor.bytes().all(|b| b.is_ascii_digit())
                    && !minor.is_empty()
            });
        if !version_ok {
            return Err(bad(
                "api_version",
                format!("must look like v62.0: {}", self.api_version),
            ));
        }
        match &self.auth {
            SalesforceAuth::JwtBearer {
                consumer_key,
                username,
                private_key_pem,
                ..
            } => {
                if consumer_key.trim().is_empty() || username.trim().is_empty() {
                    return Err(bad(
                        "auth",
                        "JWT bearer auth needs a consumer key and a username",
                    ));
                }
                if private_key_pem.is_empty() {
                    return Err(bad(
                        "auth",
                        "JWT bearer auth needs the connected app's private key",
                    ));
                }
            }
            SalesforceAuth::ClientCredentials {
                client_id,
                client_secret,
            } => {
                if client_id.trim().is_empty() || client_secret.is_empty() {
                    return Err(bad(
                        "auth",
                        "client credentials auth needs a client id and a secret",
                    ));
                }
            }
        }
        let f = &self.fields;
        let names = [
            (
                "sync_with_partner_center",
                Some(&f.sync_with_partner_center),
            ),
            ("referral_id", Some(&f.referral_id)),
            ("referral_link", Some(&f.referral_link)),
            ("microsoft_help", Some(&f.microsoft_help)),
            ("visibility", Some(&f.visibility)),
            ("microsoft_crm_id", Some(&f.microsoft_crm_id)),
            ("microsoft_status", Some(&f.microsoft_status)),
            ("audit", Some(&f.audit)),
            ("deal_value", Some(&f.deal_value)),
            ("currency", Some(&f.currency)),
            ("account_country", Some(&f.account_country)),
            ("lead_referral_id", Some(&f.lead_referral_id)),
            ("lead_referral_link", Some(&f.lead_referral_link)),
            ("lead_audit", Some(&f.lead_audit)),
            ("lead_topic", f.lead_topic.as_ref()),
            ("solution_object", Some(&f.solution_object)),
            ("solution_id", Some(&f.solution_id)),
            ("solution_opportunity", Some(&f.solution_opportunity)),
            ("solution_name", f.solution_name.as_ref()),
            ("catalog_object", Some(&f.catalog_object)),
            ("catalog_solution_id", Some(&f.catalog_solution_id)),
            ("catalog_name", Some(&f.catalog_name)),
            ("catalog_description", f.catalog_description.as_ref()),
            ("solution_area", f.solution_area.as_ref()),
            ("solution_play", f.solution_play.as_ref()),
            ("partner_role", f.partner_role.as_ref()),
            ("marketplace_intent", f.marketplace_intent.as_ref()),
        ];
        for (what, name) in names {
            if let Some(name) = name
                && !is_api_name(name)
            {
                return Err(bad(
                    "fields",
                    format!("{what} is not an API name: {name:?}"),
                ));
            }
        }
        check_optional_fields(f).map_err(|reason| bad("fields", reason))?;
        check_catalog_fields(f).map_err(|reason| bad("fields", reason))?;
        for key in self
            .opportunity_create_values
            .keys()
            .chain(self.lead_create_values.keys())
        {
            if !is_api_name(key) {
                return Err(bad(
                    "create_values",
                    format!("a mandatory-field value names no API field: {key:?}"),
                ));
            }
        }
        let s = &self.stages;
        let stages = [&s.active, &s.on_hold, &s.won, &s.lost];
        if stages.iter().any(|n| n.trim().is_empty()) {
            return Err(bad(
                "stages",
                "every stage name (active, on hold, won, lost) must be set",
            ));
        }
        for (i, a) in stages.iter().enumerate() {
            if stages[..i].contains(a) {
                return Err(bad("stages", format!("{a:?} stands for two states")));
            }
        }
        let l = &self.lead_statuses;
        if l.open.is_empty() || l.qualified.is_empty() || l.disqualified.is_empty() {
            return Err(bad(
                "lead_statuses",
                "need a value for open, qualified and disqualified",
            ));
        }
        if self.visibility.private == self.visibility.visible {
            return Err(bad("visibility", "the two values must differ"));
        }
        let currency = &self.corporate_currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad(
                "corporate_currency",
                format!("must be an ISO 4217 code: {currency:?}"),
            ));
        }
        if self.change_overlap > Duration::from_secs(24 * 3600) {
            return Err(bad(
                "change_overlap",
                format!(
                    "must be at most a day (86400 seconds): {}",
                    self.change_overlap.as_secs()
                ),
            ));
        }
        if let Some(n) = self.query_batch_size
            && !(200..=2000).contains(&n)
        {
            return Err(bad(
                "query_batch_size",
                format!("must be between 200 and 2000: {n}"),
            ));
        }
        Ok(())
    }
}

/// The opt-in opportunity fields must each name a field no other setting (nor a standard field
/// the adapter writes) already uses: a write body holds each field once, so one of the two
/// values would silently be lost.
fn check_optional_fields(f: &SalesforceFieldNames) -> Result<(), String> {
    let optional = [
        ("solution_area", f.solution_area.as_deref()),
        ("solution_play", f.solution_play.as_deref()),
        ("partner_role", f.partner_role.as_deref()),
        ("marketplace_intent", f.marketplace_intent.as_deref()),
    ];
    let configured = [
        &f.sync_with_partner_center,
        &f.referral_id,
        &f.referral_link,
        &f.microsoft_help,
        &f.visibility,
        &f.microsoft_crm_id,
        &f.microsoft_status,
        &f.audit,
        &f.deal_value,
        &f.currency,
    ];
    let taken: Vec<&str> = [
        "Id",
        "Name",
        "CloseDate",
        "Description",
        "StageName",
        "AccountId",
        "IsClosed",
        "IsWon",
    ]
    .into_iter()
    .chain(configured.into_iter().map(String::as_str))
    .collect();
    for (i, (what, name)) in optional.iter().enumerate() {
        let Some(name) = name else {
            continue;
        };
        // Salesforce matches API names without regard to case.
        let clash = taken
            .iter()
            .chain(optional[..i].iter().filter_map(|(_, n)| n.as_ref()))
            .any(|t| t.eq_ignore_ascii_case(name));
        if clash {
            return Err(format!(
                "field name {what} names {name:?}, a field another setting already uses"
            ));
        }
    }
    Ok(())
}

/// The catalog's fields must differ from each other (and from `Id`, which every read selects):
/// a write body holds each field once, so one of two values sharing a field would be lost.
fn check_catalog_fields(f: &SalesforceFieldNames) -> Result<(), String> {
    let fields = [
        ("catalog_solution_id", Some(f.catalog_solution_id.as_str())),
        ("catalog_name", Some(f.catalog_name.as_str())),
        ("catalog_description", f.catalog_description.as_deref()),
    ];
    for (i, (what, name)) in fields.iter().enumerate() {
        let Some(name) = name else {
            continue;
        };
        // Salesforce matches API names without regard to case.
        let clash = std::iter::once("Id")
            .chain(fields[..i].iter().filter_map(|(_, n)| *n))
            .any(|t| t.eq_ignore_ascii_case(name));
        if clash {
            return Err(format!(
                "field name {what} names {name:?}, a catalog field another setting already uses"
            ));
        }
    }
    Ok(())
}

/// Letters, digits and underscores, starting with a letter (`ns__Field__c` included).
fn is_api_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Salesforce setting the adapter cannot work with: which one (the setting's name in
/// [`SalesforceConfig`]) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Salesforce setting {setting} {reason}")]
pub struct SalesforceConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> SalesforceConfigError {
    SalesforceConfigError {
        setting,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SalesforceConfig {
        SalesforceConfig::new(SalesforceAuth::ClientCredentials {
            client_id: "id".into(),
            client_secret: "hunter2".into(),
        })
    }

    #[test]
    fn defaults_are_valid_and_name_the_documented_fields() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fields.referral_id, "Referral_Identifier__c");
        assert_eq!(c.fields.solution_object, "Microsoft_Solution__c");
        assert_eq!(c.login_url, "https://login.salesforce.com");
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = config();
        c.fields.audit = "Audit c".into();
        assert!(c.validate().unwrap_err().to_string().contains("audit"));
        let mut c = config();
        c.stages.won = c.stages.lost.clone();
        let err = c.validate().unwrap_err();
        assert_eq!(err.setting, "stages");
        assert!(err.to_string().contains("two states"), "{err}");
        let mut c = config();
        c.api_version = "62".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("api_version")
        );
        let mut c = config();
        c.query_batch_size = Some(10);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("query_batch_size")
        );
    }

    #[test]
    fn services_fields_are_off_by_default_and_checked_when_set() {
        let c = config();
        assert_eq!(c.fields.solution_area, None);
        assert_eq!(c.fields.marketplace_intent, None);
        let fields: SalesforceFieldNames = serde_json::from_value(serde_json::json!({
            "solutionArea": "Solution_Area__c",
            "solutionPlay": "Solution_Play__c",
            "partnerRole": "Partner_Role__c",
            "marketplaceIntent": "Marketplace_Intent__c"
        }))
        .unwrap_or_default();
        assert_eq!(fields.partner_role.as_deref(), Some("Partner_Role__c"));
        assert_eq!(
            fields.audit, "Audit__c",
            "unnamed fields keep their defaults"
        );
        let mut c = config();
        c.fields = fields;
        assert_eq!(c.validate(), Ok(()));

        let mut c = config();
        c.fields.solution_play = Some("Solution Play".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("solution_play")
        );
        let mut c = config();
        c.fields.partner_role = Some("audit__c".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("partner_role") && err.contains("another setting"),
            "{err}"
        );
        let mut c = config();
        c.fields.solution_area = Some("Area__c".into());
        c.fields.marketplace_intent = Some("Area__c".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("marketplace_intent")
        );
    }

    #[test]
    fn catalog_fields_default_to_the_documented_object_and_must_differ() {
        let c = config();
        assert_eq!(c.fields.catalog_object, "Microsoft_Solution_Catalog__c");
        assert_eq!(
            c.fields.catalog_description.as_deref(),
            Some("Solution_Area__c")
        );
        let fields: SalesforceFieldNames =
            serde_json::from_value(serde_json::json!({"catalogDescription": null}))
                .unwrap_or_default();
        assert_eq!(fields.catalog_description, None);
        assert_eq!(
            fields.catalog_name, "Name",
            "unnamed fields keep their defaults"
        );

        let mut c = config();
        c.fields.catalog_object = "Catalog c".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("catalog_object")
        );
        let mut c = config();
        c.fields.catalog_description = Some("name".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("catalog_description") && err.contains("another setting"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = config();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }
}
