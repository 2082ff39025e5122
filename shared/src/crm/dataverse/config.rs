//! What the Dataverse adapter needs to know: where the environment is, how to sign in, and the
//! name of every column the connector reads or writes (docs/dataverse.md, "Connector columns"),
//! because each partner's environment is customised differently.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::retry::RetryPolicy;

pub use crate::entra::ClientCredential;
pub use crate::secret::Secret;

/// The default [`DataverseConfig::change_overlap`]: two minutes, the time limit Dataverse puts
/// on one synchronous operation (plug-ins included), so the longest a row's `modifiedon` can
/// lag behind the moment its change becomes readable. Inferred from the platform's plug-in
/// timeout (docs/dataverse.md, "Polling by modifiedon").
pub const DEFAULT_CHANGE_OVERLAP: Duration = Duration::from_secs(120);

/// The default [`DataverseConfig::solution`].
pub const DEFAULT_SOLUTION: &str = "CoSellConnector";

/// The default [`DataverseConfig::publisher_prefix`], the prefix of the default column names.
pub const DEFAULT_PUBLISHER_PREFIX: &str = "cosell";

/// A longer overlap would re-read a day of changes on every poll.
const MAX_CHANGE_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// How the referral-visibility column stores private / visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum VisibilityEncoding {
    /// A Yes/No column: yes = visible to Microsoft sellers (the sandbox's `cosell_visibility`).
    Boolean,
    /// A choice column with one option value for each.
    Choice { private: i64, visible: i64 },
}

/// Column, table and navigation names in the partner's environment. Defaults are those of
/// docs/dataverse.md ("Connector columns", "Standard columns").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DataverseFields {
    /// Opportunity: Sync with Partner Center (Yes/No).
    pub sync_with_partner_center: String,
    /// Opportunity: the referral id.
    pub referral_id: String,
    /// Opportunity: the link to the referral in Partner Center.
    pub referral_link: String,
    /// Opportunity: How can Microsoft help.
    pub microsoft_help: String,
    /// Opportunity: referral visibility.
    pub visibility: String,
    pub visibility_encoding: VisibilityEncoding,
    /// Opportunity: Microsoft's CRM identifier (MSX id).
    pub microsoft_crm_id: String,
    /// Opportunity: the related (Microsoft-side) referral's status.
    pub microsoft_status: String,
    /// Opportunity: the Audit trail.
    pub audit: String,
    /// Opportunity: the deal value (Money).
    pub deal_value: String,
    /// Opportunity: the currency lookup (to `transactioncurrencies`), also its navigation.
    pub currency: String,
    /// Opportunity: the Services co-sell solution area (text). `None`, the default, for an
    /// environment without the column: the adapter then neither reads nor writes it, since
    /// Dataverse refuses a `$select` that names a column it does not have.
    pub solution_area: Option<String>,
    /// Opportunity: the Services co-sell solution play (text); `None` as for the solution area.
    pub solution_play: Option<String>,
    /// Opportunity: the partner's role in a Services co-sell (text); `None` as for the solution
    /// area.
    pub partner_role: Option<String>,
    /// Opportunity: the customer's marketplace intent (text: `Yes`, `No`, `Have not decided`).
    /// Only read, never written; `None` as for the solution area.
    pub marketplace_intent: Option<String>,

    /// Lead: the referral id.
    pub lead_referral_id: String,
    /// Lead: the link to the referral in Partner Center.
    pub lead_referral_link: String,
    /// Lead: the Audit trail.
    pub lead_audit: String,
    /// Lead: the country (ISO 3166 alpha-2).
    pub lead_country: String,

    /// Account: the customer's country (ISO 3166 alpha-2).
    pub account_country: String,
    /// Account: state or province; `None` when the environment has no such column.
    pub account_state: Option<String>,

    /// Entity set of the solution-link table.
    pub solution_link_set: String,
    /// Solution link: the Partner Center solution id.
    pub solution_id: String,
    /// Solution link: the lookup to the opportunity (column and navigation name).
    pub solution_link_opportunity: String,
    /// Solution link: the primary name column, filled with the solution id so sellers see
    /// something in lists; `None` to leave it empty.
    pub solution_link_name: Option<String>,

    /// Entity set of the partner's solution catalog.
    pub catalog_set: String,
    /// Solution catalog: its primary key column (`<logical name>id`). The entity set name does
    /// not always tell the logical name, so it is a setting of its own.
    pub catalog_key: String,
    /// Solution catalog: the Partner Center solution id.
    pub catalog_solution_id: String,
    /// Solution catalog: the solution's name (the table's primary name column).
    pub catalog_name: String,
    /// Solution catalog: the description; `None` for a table without one, which is then
    /// neither read nor written.
    pub catalog_description: Option<String>,

    /// Values for columns the partner made mandatory, merged into every opportunity create
    /// (the connector's own values win). Keys may be `nav@odata.bind`.
    pub opportunity_create_defaults: Map<String, Value>,
    /// The same for leads.
    pub lead_create_defaults: Map<String, Value>,
}

impl Default for DataverseFields {
    fn default() -> DataverseFields {
        DataverseFields {
            sync_with_partner_center: "cosell_syncwithpartnercenter".into(),
            referral_id: "cosell_referralid".into(),
            referral_link: "cosell_referrallink".into(),
            microsoft_help: "cosell_microsofthelp".into(),
            visibility: "cosell_visibility".into(),
            visibility_encoding: VisibilityEncoding::Boolean,
            microsoft_crm_id: "cosell_microsoftcrmid".into(),
            microsoft_status: "cosell_microsoftstatus".into(),
            audit: "cosell_audit".into(),
            deal_value: "estimatedvalue".into(),
            currency: "transactioncurrencyid".into(),
            solution_area: None,
            solution_play: None,
            partner_role: None,
            marketplace_intent: None,
            lead_referral_id: "cosell_referralid".into(),
            lead_referral_link: "cosell_referrallink".into(),
            lead_audit: "cosell_audit".into(),
            lead_country: "address1_country".into(),
            account_country: "address1_country".into(),
            account_state: Some("address1_stateorprovince".into()),
            solution_link_set: "cosell_solutionlinks".into(),
            solution_id: "cosell_solutionid".into(),
            solution_link_opportunity: "cosell_opportunityid".into(),
            solution_link_name: Some("cosell_name".into()),
            catalog_set: "cosell_solutioncatalogs".into(),
            catalog_key: "cosell_solutioncatalogid".into(),
            catalog_solution_id: "cosell_solutionid".into(),
            catalog_name: "cosell_name".into(),
            catalog_description: Some("cosell_description".into()),
            opportunity_create_defaults: Map::new(),
            lead_create_defaults: Map::new(),
        }
    }
}

/// Everything needed to talk to one Dataverse environment.
#[derive(Debug, Clone)]
pub struct DataverseConfig {
    /// The environment URL, e.g. `https://contoso.crm4.dynamics.com` (the sandbox's base URL in
    /// tests). The token scope is `{org_url}/.default`.
    pub org_url: String,
    /// The Entra ID authority; tokens come from `{authority_url}/{tenant}/oauth2/v2.0/token`.
    pub authority_url: String,
    pub tenant: String,
    /// The app registration behind the environment's application user.
    pub client_id: String,
    /// Its client secret or certificate.
    pub client_credential: ClientCredential,
    /// Web API version in URLs (`v9.2`).
    pub api_version: String,
    /// Per HTTP request, token requests included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Rows per page (`Prefer: odata.maxpagesize`) when following `@odata.nextLink`.
    pub page_size: usize,
    /// How many accounts [`crate::crm::Crm::account_candidates`] returns at most.
    pub max_account_candidates: usize,
    /// When the change feed falls back to `modifiedon` (change tracking off for
    /// `opportunities`), each round reads again this far back before the newest change it has
    /// seen, so a row whose `modifiedon` lands behind rows already read (a transaction that
    /// committed late) is still found; rows handed out before are not repeated.
    pub change_overlap: Duration,
    pub fields: DataverseFields,
    /// The unmanaged solution `cosell crm setup` puts the connector's tables and columns in
    /// (its unique name); created when missing.
    pub solution: String,
    /// The customization prefix of that solution's publisher. Every name setup creates must
    /// start with it and `_`.
    pub publisher_prefix: String,
}

impl DataverseConfig {
    /// A config with the documented defaults for everything but the environment and the app.
    pub fn new(
        org_url: impl Into<String>,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_credential: impl Into<ClientCredential>,
    ) -> DataverseConfig {
        DataverseConfig {
            org_url: org_url.into(),
            authority_url: "https://login.microsoftonline.com".into(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_credential: client_credential.into(),
            api_version: "v9.2".into(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            page_size: 500,
            max_account_candidates: 50,
            change_overlap: DEFAULT_CHANGE_OVERLAP,
            fields: DataverseFields::default(),
            solution: DEFAULT_SOLUTION.into(),
            publisher_prefix: DEFAULT_PUBLISHER_PREFIX.into(),
        }
    }

    /// Checks every value before the first request, so a typo fails at start with its name
    /// rather than as a refused request later. Names go into URLs and query options
    /// unescaped, so only OData identifiers are accepted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("org_url", &self.org_url),
            ("authority_url", &self.authority_url),
        ] {
            let ok = url::Url::parse(value)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError::invalid(name, "must be an http(s) URL"));
            }
        }
        if self.tenant.is_empty()
            || !self
                .tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(ConfigError::invalid(
                "tenant",
                "must be a tenant id or domain name",
            ));
        }
        if self.client_id.is_empty() {
            return Err(ConfigError::invalid("client_id", "must not be empty"));
        }
        if let Err(reason) = check_publisher_prefix(&self.publisher_prefix) {
            return Err(ConfigError::invalid("publisher_prefix", &reason));
        }
        let mut solution = self.solution.chars();
        if !solution.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !solution.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid(
                "solution",
                "must be a solution unique name: letters, digits and _, starting with a letter",
            ));
        }
        if self.client_credential.is_empty() {
            return Err(ConfigError::invalid("client_secret", "must not be empty"));
        }
        let version_ok = self
            .api_version
            .strip_prefix('v')
            .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
        if !version_ok {
            return Err(ConfigError::invalid("api_version", "must look like v9.2"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be positive"));
        }
        if self.page_size == 0 || self.page_size > 5000 {
            return Err(ConfigError::invalid("page_size", "must be 1 to 5000"));
        }
        if self.change_overlap > MAX_CHANGE_OVERLAP {
            return Err(ConfigError::invalid(
                "change_overlap",
                "must be at most a day (86400 seconds)",
            ));
        }
        if self.max_account_candidates == 0 || self.max_account_candidates > 5000 {
            return Err(ConfigError::invalid(
                "max_account_candidates",
                "must be 1 to 5000",
            ));
        }
        self.fields.validate()
    }
}

impl DataverseFields {
    fn validate(&self) -> Result<(), ConfigError> {
        let names: &[(&'static str, &str)] = &[
            ("sync_with_partner_center", &self.sync_with_partner_center),
            ("referral_id", &self.referral_id),
            ("referral_link", &self.referral_link),
            ("microsoft_help", &self.microsoft_help),
            ("visibility", &self.visibility),
            ("microsoft_crm_id", &self.microsoft_crm_id),
            ("microsoft_status", &self.microsoft_status),
            ("audit", &self.audit),
            ("deal_value", &self.deal_value),
            ("currency", &self.currency),
            ("lead_referral_id", &self.lead_referral_id),
            ("lead_referral_link", &self.lead_referral_link),
            ("lead_audit", &self.lead_audit),
            ("lead_country", &self.lead_country),
            ("account_country", &self.account_country),
            (
                "account_state",
                self.account_state.as_deref().unwrap_or("x"),
            ),
            ("solution_link_set", &self.solution_link_set),
            ("solution_id", &self.solution_id),
            ("solution_link_opportunity", &self.solution_link_opportunity),
            (
                "solution_link_name",
                self.solution_link_name.as_deref().unwrap_or("x"),
            ),
            ("catalog_set", &self.catalog_set),
            ("catalog_key", &self.catalog_key),
            ("catalog_solution_id", &self.catalog_solution_id),
            ("catalog_name", &self.catalog_name),
            (
                "catalog_description",
                self.catalog_description.as_deref().unwrap_or("x"),
            ),
        ];
        if let Some((name, _)) = names.iter().find(|(_, v)| !is_identifier(v)) {
            return Err(ConfigError::invalid(
                name,
                "must be a column or table name (letters, digits, '_')",
            ));
        }
        self.validate_optional_columns()?;
        self.validate_catalog_columns()?;
        for (name, map) in [
            (
                "opportunity_create_defaults",
                &self.opportunity_create_defaults,
            ),
            ("lead_create_defaults", &self.lead_create_defaults),
        ] {
            if let Some(key) = map
                .keys()
                .find(|k| !is_identifier(k.strip_suffix("@odata.bind").unwrap_or(k.as_str())))
            {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("'{key}' is not a column name or 'navigation@odata.bind'"),
                });
            }
        }
        Ok(())
    }
}

impl DataverseFields {
    /// The opt-in opportunity columns: each must be a column name, and one no other setting
    /// (nor a standard column the adapter writes) already uses, since a write body holds each
    /// column once and the later value would silently win.
    fn validate_optional_columns(&self) -> Result<(), ConfigError> {
        let optional: [(&'static str, Option<&str>); 4] = [
            ("solution_area", self.solution_area.as_deref()),
            ("solution_play", self.solution_play.as_deref()),
            ("partner_role", self.partner_role.as_deref()),
            ("marketplace_intent", self.marketplace_intent.as_deref()),
        ];
        let configured = [
            &self.sync_with_partner_center,
            &self.referral_id,
            &self.referral_link,
            &self.microsoft_help,
            &self.visibility,
            &self.microsoft_crm_id,
            &self.microsoft_status,
            &self.audit,
            &self.deal_value,
            &self.currency,
        ];
        let taken: Vec<&str> = [
            "name",
            "description",
            "estimatedclosedate",
            "statecode",
            "statuscode",
            "parentaccountid",
            "parentcontactid",
            "customerid",
            "modifiedon",
        ]
        .into_iter()
        .chain(configured.into_iter().map(String::as_str))
        .collect();
        for (i, (name, column)) in optional.iter().enumerate() {
            let Some(column) = column else {
                continue;
            };
            if !is_identifier(column) {
                return Err(ConfigError::invalid(
                    name,
                    "must be a column name (letters, digits, '_')",
                ));
            }
            // Logical names are lowercase; compare as Dataverse would.
            let clash = taken
                .iter()
                .chain(optional[..i].iter().filter_map(|(_, c)| c.as_ref()))
                .any(|t| t.eq_ignore_ascii_case(column));
            if clash {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("names '{column}', a column another setting already uses"),
                });
            }
        }
        Ok(())
    }
}

impl DataverseFields {
    /// The catalog's columns must differ from each other: a write body holds each column once,
    /// so one of two values sharing a column would silently be lost.
    fn validate_catalog_columns(&self) -> Result<(), ConfigError> {
        let columns: [(&'static str, Option<&str>); 4] = [
            ("catalog_key", Some(self.catalog_key.as_str())),
            (
                "catalog_solution_id",
                Some(self.catalog_solution_id.as_str()),
            ),
            ("catalog_name", Some(self.catalog_name.as_str())),
            ("catalog_description", self.catalog_description.as_deref()),
        ];
        for (i, (name, column)) in columns.iter().enumerate() {
            let Some(column) = column else {
                continue;
            };
            // Logical names are lowercase; compare as Dataverse would.
            let clash = columns[..i]
                .iter()
                .filter_map(|(_, c)| *c)
                .any(|c| c.eq_ignore_ascii_case(column));
            if clash {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!(
                        "names '{column}', a catalog column another setting already uses"
                    ),
                });
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The documented rules for a publisher's customization prefix (docs/dataverse.md,
/// "Metadata"): 2 to 8 letters or digits, starting with a letter, not starting with `mscrm`.
pub fn check_publisher_prefix(prefix: &str) -> Result<(), String> {
    let mut chars = prefix.chars();
    let ok = (2..=8).contains(&prefix.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && !prefix.to_ascii_lowercase().starts_with("mscrm");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 2 to 8 letters or digits, start with a letter and not start with mscrm (found {prefix:?})"
        ))
    }
}

/// A configuration value the adapter cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A setting, by its field name, and what is wrong with it.
    #[error("Dataverse setting {name} {reason}")]
    Invalid { name: &'static str, reason: String },
    /// The TLS/HTTP stack could not be set up.
    #[error("cannot build the HTTP client for Dataverse: {0}")]
    Http(String),
}

impl ConfigError {
    fn invalid(name: &'static str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            name,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DataverseConfig {
        DataverseConfig::new(
            "https://contoso.crm4.dynamics.com",
            "contoso.onmicrosoft.com",
            "app",
            Secret::new("s3cr3t-value"),
        )
    }

    #[test]
    fn the_secret_never_prints() {
        let c = config();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn defaults_validate_and_bad_names_are_named() {
        assert_eq!(config().validate(), Ok(()));
        let mut c = config();
        c.fields.referral_id = "cosell_referralid eq 'x' or name".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                name: "referral_id",
                ..
            })
        ));
        let mut c = config();
        c.fields.opportunity_create_defaults.insert(
            "new_region@odata.bind".into(),
            Value::from("/territories(1)"),
        );
        assert_eq!(c.validate(), Ok(()));
        c.fields
            .lead_create_defaults
            .insert("bad key".into(), Value::Null);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                name: "lead_create_defaults",
                ..
            })
        ));
        let mut c = config();
        c.org_url = "contoso".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                name: "org_url",
                ..
            })
        ));
    }

    #[test]
    fn services_columns_are_off_by_default_and_checked_when_set() {
        let f = DataverseFields::default();
        assert_eq!(
            (
                &f.solution_area,
                &f.solution_play,
                &f.partner_role,
                &f.marketplace_intent
            ),
            (&None, &None, &None, &None)
        );
        let mut c = config();
        c.fields = serde_json::from_value(serde_json::json!({
            "solutionArea": "cosell_solutionarea",
            "solutionPlay": "cosell_solutionplay",
            "partnerRole": "cosell_partnerrole",
            "marketplaceIntent": "cosell_marketplaceintent"
        }))
        .expect("parses");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fields.audit, "cosell_audit", "unnamed ones keep defaults");

        let refused = |change: fn(&mut DataverseFields)| {
            let mut c = config();
            change(&mut c.fields);
            match c.validate() {
                Err(ConfigError::Invalid { name, .. }) => name,
                other => panic!("expected a refusal, got {other:?}"),
            }
        };
        assert_eq!(
            refused(|f| f.solution_play = Some("cosell_solution play".into())),
            "solution_play"
        );
        assert_eq!(
            refused(|f| f.partner_role = Some("COSELL_AUDIT".into())),
            "partner_role"
        );
        assert_eq!(
            refused(|f| f.solution_area = Some("description".into())),
            "solution_area"
        );
        assert_eq!(
            refused(|f| {
                f.solution_area = Some("new_x".into());
                f.marketplace_intent = Some("new_x".into());
            }),
            "marketplace_intent"
        );
    }

    #[test]
    fn catalog_names_default_to_the_sandbox_table_and_must_differ() {
        let f = DataverseFields::default();
        assert_eq!(f.catalog_set, "cosell_solutioncatalogs");
        assert_eq!(f.catalog_key, "cosell_solutioncatalogid");
        assert_eq!(f.catalog_description.as_deref(), Some("cosell_description"));
        let refused = |change: fn(&mut DataverseFields)| {
            let mut c = config();
            change(&mut c.fields);
            match c.validate() {
                Err(ConfigError::Invalid { name, .. }) => name,
                other => panic!("expected a refusal, got {other:?}"),
            }
        };
        assert_eq!(
            refused(|f| f.catalog_set = "cosell_solutioncatalogs?$top=1".into()),
            "catalog_set"
        );
        assert_eq!(
            refused(|f| f.catalog_description = Some("cosell desc".into())),
            "catalog_description"
        );
        assert_eq!(
            refused(|f| f.catalog_name = "COSELL_SOLUTIONID".into()),
            "catalog_name"
        );
        let mut c = config();
        c.fields.catalog_description = None;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn field_names_load_from_partial_json() {
        let f: DataverseFields = serde_json::from_value(serde_json::json!({
            "referralId": "new_pcreferral",
            "visibilityEncoding": {"type": "choice", "private": 1, "visible": 2},
            "accountState": null
        }))
        .expect("parses");
        assert_eq!(f.referral_id, "new_pcreferral");
        assert_eq!(f.audit, "cosell_audit");
        assert_eq!(
            f.visibility_encoding,
            VisibilityEncoding::Choice {
                private: 1,
                visible: 2
            }
        );
        assert_eq!(f.account_state, None);
        assert_eq!(
            f.catalog_name, "cosell_name",
            "settings written before the catalog load"
        );
        let f: DataverseFields = serde_json::from_value(serde_json::json!({
            "catalogSet": "new_catalogues",
            "catalogDescription": null
        }))
        .expect("parses");
        assert_eq!(f.catalog_set, "new_catalogues");
        assert_eq!(f.catalog_description, None);
    }
}
