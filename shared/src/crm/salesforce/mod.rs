//! The [`Crm`] port on the Salesforce REST API (docs/salesforce.md).
//!
//! - Sign-in: OAuth JWT bearer (an RS256 assertion per sign-in, as Salesforce gives no refresh
//!   token) or client credentials, at `{login_url}/services/oauth2/token`; API calls go to the
//!   `instance_url` of the token response. The access token is kept until a call answers 401,
//!   then the adapter signs in once more and repeats the call.
//! - Every call runs through [`RetryPolicy::run`](crate::retry::RetryPolicy::run): 5xx,
//!   timeouts and 429 are retried. The org's daily request limit (403 `REQUEST_LIMIT_EXCEEDED`)
//!   is a [`CrmError::Transient`] without `retry_after` and is **not** retried in-process: the
//!   allocation rolls over 24 hours, so the message goes back to the queue and is redelivered
//!   later. Usage from `Sforce-Limit-Info` is logged at debug level (warn past 90 %).
//! - Opportunities carry the connector's fields under the configured names; the customer contact
//!   is the primary `OpportunityContactRole`; the state is the configured stage names (any other
//!   stage reads as active while open, then won or lost by `IsWon`). Creates with a referral id
//!   are upserts on the referral-id external id, so a repeated create finds the first one; a
//!   300 (several records share the id) is refused with a message saying so. Catalog creates are
//!   upserts on the catalog's solution-id External ID for the same reason.
//! - Reads follow `nextRecordsUrl` until `done`; the change feed returns one batch per page
//!   (see the `feed` module).
//! - A clear ([`OpportunityFields::clear`]) writes `"Field": null` in the update's PATCH; the
//!   contact is cleared by deleting the opportunity's primary `OpportunityContactRole`. Creates
//!   ignore clears. The opt-in fields (solution area, solution play, partner role, marketplace
//!   intent) are named in no request unless configured; the marketplace intent is only read.

mod config;
mod feed;
mod http;
mod mapping;
mod metadata;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::domain::accounts::AccountKey;

pub use config::{
    DEFAULT_API_VERSION, DEFAULT_CHANGE_OVERLAP, DEFAULT_LOGIN_URL, LeadStatuses, SalesforceAuth,
    SalesforceConfig, SalesforceConfigError, SalesforceFieldNames, SecretString, StageNames,
    VisibilityValues, default_microsoft_help_values,
};
pub use http::SalesforceSetupError;
pub use mapping::{DEFAULT_CLOSE_IN_DAYS, Record, UNKNOWN, soql_quote};
pub use metadata::SalesforceSchema;

use super::{
    Account, AccountFields, CatalogEntry, CatalogSolution, ChangePage, ClearField, Contact,
    ContactFields, Crm, CrmError, CrmId, CrmKind, CrmResult, Lead, LeadFields, Opportunity,
    OpportunityFields,
};
use http::{Http, Target};
use mapping::Write;

/// Most account candidates one lookup returns.
const CANDIDATE_LIMIT: usize = 50;

/// The Salesforce adapter. Cheap to share behind an `Arc`; it keeps one access token for all
/// callers.
pub struct SalesforceCrm {
    config: Arc<SalesforceConfig>,
    http: Http,
}

impl std::fmt::Debug for SalesforceCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceCrm")
            .field("login_url", &self.config.login_url)
            .field("api_version", &self.config.api_version)
            .finish_non_exhaustive()
    }
}

impl SalesforceCrm {
    /// A solution-link record for the opportunity, without looking for one first.
    async fn insert_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        let f = &self.config.fields;
        let mut body = Record::new();
        body.insert(f.solution_opportunity.clone(), json!(opportunity_id));
        body.insert(f.solution_id.clone(), json!(solution_id));
        if let Some(name) = &f.solution_name {
            // Salesforce's Name fields hold 80 characters.
            let short: String = solution_id.chars().take(80).collect();
            body.insert(name.clone(), json!(short));
        }
        self.create_record(&f.solution_object, body)
            .await
            .map(|_| ())
    }

    /// Checks the configuration (and that the private key is a usable RSA key) without calling
    /// Salesforce; the first call signs in.
    pub fn new(config: SalesforceConfig) -> Result<SalesforceCrm, SalesforceSetupError> {
        let config = Arc::new(config);
        let http = Http::new(config.clone())?;
        Ok(SalesforceCrm { config, http })
    }

    /// The configuration the adapter runs with.
    pub fn config(&self) -> &SalesforceConfig {
        &self.config
    }

    /// The id of the user the connector signs in as: records it last modified carry it in
    /// `LastModifiedById`.
    pub async fn integration_user_id(&self) -> CrmResult<String> {
        self.http.user_id().await
    }

    /// Runs a SOQL query and returns every record, following `nextRecordsUrl` until `done`.
    /// Quote values with [`soql_quote`].
    pub async fn query(&self, soql: &str) -> CrmResult<Vec<Record>> {
        let mut reply = self
            .http
            .call(
                Method::GET,
                Target::Api {
                    segments: &["query"],
                    query: &[("q", soql)],
                },
                None,
                "query",
            )
            .await?;
        let mut records = Vec::new();
        loop {
            let body = std::mem::take(&mut reply.body);
            let done = body.get("done").and_then(Value::as_bool).unwrap_or(true);
            let next = body
                .get("nextRecordsUrl")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(Value::Array(batch)) = body.get("records").cloned() {
                records.extend(batch.into_iter().filter_map(|r| match r {
                    Value::Object(m) => Some(m),
                    _ => None,
                }));
            }
            let Some(next) = next.filter(|_| !done) else {
                return Ok(records);
            };
            reply = self
                .http
                .call(Method::GET, Target::Relative(&next), None, "query batch")
                .await?;
        }
    }

    async fn get_record(
        &self,
        object: &str,
        id: &str,
        fields: &[String],
    ) -> CrmResult<Option<Record>> {
        let list = fields.join(",");
        let what = format!("{object} {id}");
        match self
            .http
            .call(
                Method::GET,
                Target::Api {
                    segments: &["sobjects", object, id],
                    query: &[("fields", &list)],
                },
                None,
                &what,
            )
            .await
        {
            Ok(reply) => Ok(match reply.body {
                Value::Object(m) => Some(m),
                _ => None,
            }),
            Err(CrmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_record(&self, object: &str, body: Record) -> CrmResult<CrmId> {
        let what = format!("{object} (new)");
        let reply = self
            .http
            .call(
                Method::POST,
                Target::Api {
                    segments: &["sobjects", object],
                    query: &[],
                },
                Some(&Value::Object(body)),
                &what,
            )
            .await?;
        new_id(&reply.body, object)
    }

    async fn update_record(&self, object: &str, id: &str, body: Record) -> CrmResult<()> {
        let what = format!("{object} {id}");
        self.http
            .call(
                Method::PATCH,
                Target::Api {
                    segments: &["sobjects", object, id],
                    query: &[],
                },
                Some(&Value::Object(body)),
                &what,
            )
            .await
            .map(|_| ())
    }

    /// Creates the record whose external id `field` is `key`, or updates the one that has it.
    /// `label` names the key for a person ("referral id") when several records share it.
    async fn upsert(
        &self,
        object: &str,
        field: &str,
        label: &str,
        key: &str,
        mut body: Record,
    ) -> CrmResult<CrmId> {
        // The key travels in the URL; Salesforce refuses a body that names it differently.
        body.retain(|k, _| !k.eq_ignore_ascii_case(field));
        let what = format!("{object} with {field} {key}");
        let reply = self
            .http
            .call(
                Method::PATCH,
                Target::Api {
                    segments: &["sobjects", object, field, key],
                    query: &[],
                },
                Some(&Value::Object(body)),
                &what,
            )
            .await
            .map_err(|e| match e {
                // The upsert URL 404s when the field is missing or not an External ID.
                CrmError::NotFound { .. } => CrmError::Rejected {
                    message: format!(
                        "{object}.{field} does not exist or is not an External ID field; the connector needs it marked External ID to find its records"
                    ),
                    field: Some(field.to_string()),
                },
                e => e,
            })?;
        match reply.status {
            StatusCode::MULTIPLE_CHOICES => Err(several(object, field, label, key, &reply.body)),
            // Before v46 an update answers 204 without the id.
            StatusCode::NO_CONTENT => {
                let soql = format!(
                    "SELECT Id FROM {object} WHERE {field} = {} LIMIT 2",
                    soql_quote(key)
                );
                let hits = self.query(&soql).await?;
                match hits.as_slice() {
                    [one] => mapping::id_of(one).ok_or_else(|| missing_id(object)),
                    [] => Err(CrmError::NotFound { what }),
                    _ => Err(several(object, field, label, key, &Value::Null)),
                }
            }
            _ => new_id(&reply.body, object),
        }
    }

    /// The one record of `object` whose `field` is `key`; several is an error a person must
    /// resolve, as writing to either could be wrong.
    async fn find_one(
        &self,
        object: &str,
        fields: &[String],
        field: &str,
        key: &str,
    ) -> CrmResult<Option<Record>> {
        let soql = format!(
            "SELECT {} FROM {object} WHERE {field} = {} ORDER BY CreatedDate ASC LIMIT 2",
            fields.join(", "),
            soql_quote(key)
        );
        let mut hits = self.query(&soql).await?;
        if hits.len() > 1 {
            let ids: Vec<Value> = hits
                .iter()
                .filter_map(mapping::id_of)
                .map(Value::String)
                .collect();
            return Err(several(
                object,
                field,
                "referral id",
                key,
                &Value::Array(ids),
            ));
        }
        Ok(hits.pop())
    }

    async fn primary_contact(&self, opportunity_id: &str) -> CrmResult<Option<String>> {
        let soql = format!(
            "SELECT ContactId FROM OpportunityContactRole WHERE OpportunityId = {} AND IsPrimary = true ORDER BY CreatedDate ASC LIMIT 1",
            soql_quote(opportunity_id)
        );
        Ok(self
            .query(&soql)
            .await?
            .first()
            .and_then(|r| r.get("ContactId"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Removes the opportunity's customer contact: every primary contact role is deleted (a
    /// real org keeps one; the loop also covers orgs and stand-ins that let several through).
    /// Other roles stay: they are the seller's, not the co-sell customer contact. Nothing is
    /// sent when there is no primary role, so repeating it changes nothing.
    async fn detach_contact(&self, opportunity_id: &str) -> CrmResult<()> {
        let soql = format!(
            "SELECT Id FROM OpportunityContactRole WHERE OpportunityId = {} AND IsPrimary = true",
            soql_quote(opportunity_id)
        );
        for role in self.query(&soql).await? {
            let Some(role_id) = mapping::id_of(&role) else {
                continue;
            };
            let what = format!("OpportunityContactRole {role_id}");
            match self
                .http
                .call(
                    Method::DELETE,
                    Target::Api {
                        segments: &["sobjects", "OpportunityContactRole", &role_id],
                        query: &[],
                    },
                    None,
                    &what,
                )
                .await
            {
                // Gone already: a retry whose first attempt deleted it, or a seller was faster.
                Ok(_) | Err(CrmError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn opportunity(&self, rec: Record) -> CrmResult<Opportunity> {
        let id = mapping::id_of(&rec).ok_or_else(|| missing_id("Opportunity"))?;
        let contact = match mapping::nested_primary_contact(&rec) {
            Some(contact) => contact,
            None => self.primary_contact(&id).await?,
        };
        let me = self.http.user_id().await?;
        Ok(self.opportunity_from(id, &rec, contact, &me))
    }

    /// An opportunity from its record, its primary contact, and the integration user's id
    /// (`me`), to tell the connector's own writes from sellers'.
    fn opportunity_from(
        &self,
        id: String,
        rec: &Record,
        contact: Option<String>,
        me: &str,
    ) -> Opportunity {
        let modified_by_connector = rec
            .get("LastModifiedById")
            .and_then(Value::as_str)
            .is_some_and(|by| mapping::same_id(by, me));
        Opportunity {
            fields: mapping::opportunity_fields(&self.config, rec, contact),
            modified_at: mapping::datetime(rec, "LastModifiedDate"),
            modified_by_connector,
            id,
        }
    }

    fn lead(&self, rec: &Record) -> CrmResult<Lead> {
        Ok(Lead {
            id: mapping::id_of(rec).ok_or_else(|| missing_id("Lead"))?,
            fields: mapping::lead_fields(&self.config, rec),
        })
    }
}

fn new_id(body: &Value, object: &str) -> CrmResult<CrmId> {
    body.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| missing_id(object))
}

fn missing_id(object: &str) -> CrmError {
    CrmError::Transient {
        status: None,
        retry_after: None,
        message: format!("Salesforce answered a {object} request without a record id"),
    }
}

/// Several records share what should identify one (`label`, the key in a person's words): a
/// person must merge them or clear the field on all but one.
fn several(object: &str, field: &str, label: &str, key: &str, matches: &Value) -> CrmError {
    let ids: Vec<&str> = matches
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.rsplit('/').next().unwrap_or(s))
                .collect()
        })
        .unwrap_or_default();
    let listed = if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", ids.join(", "))
    };
    CrmError::Rejected {
        message: format!(
            "several {object} records share {label} {key}{listed}; keep {field} on one of them only"
        ),
        field: Some(field.to_string()),
    }
}

#[async_trait]
impl Crm for SalesforceCrm {
    fn kind(&self) -> CrmKind {
        CrmKind::Salesforce
    }

    fn can_clear(&self, field: crate::crm::ClearField) -> bool {
        // Salesforce requires a close date on every opportunity.
        field != crate::crm::ClearField::CloseDate
    }

    /// One query: the record with its primary contact role nested (a parent-to-child
    /// relationship query), where a read by id would need a second query for the role.
    async fn get_opportunity(&self, id: &str) -> CrmResult<Option<Opportunity>> {
        if !mapping::is_record_id(id) {
            return Ok(None);
        }
        let fields = mapping::opportunity_query_select(&self.config);
        match self.find_one("Opportunity", &fields, "Id", id).await? {
            Some(rec) => self.opportunity(rec).await.map(Some),
            None => Ok(None),
        }
    }

    async fn find_opportunity_by_referral(
        &self,
        referral_id: &str,
    ) -> CrmResult<Option<Opportunity>> {
        let fields = mapping::opportunity_query_select(&self.config);
        let field = &self.config.fields.referral_id;
        match self
            .find_one("Opportunity", &fields, field, referral_id)
            .await?
        {
            Some(rec) => self.opportunity(rec).await.map(Some),
            None => Ok(None),
        }
    }

    /// Salesforce requires a close date: without one in `fields` the opportunity closes
    /// [`DEFAULT_CLOSE_IN_DAYS`] days from today (UTC) until the sync writes the referral's own.
    /// Without a state it starts in the active stage. With a referral id it is an upsert on the
    /// referral-id field, so creating twice yields one opportunity.
    async fn create_opportunity(&self, fields: &OpportunityFields) -> CrmResult<CrmId> {
        let today = chrono::Utc::now().date_naive();
        let body = mapping::opportunity_body(&self.config, fields, Write::Create { today })?;
        let id = match fields.referral_id.as_deref().filter(|r| !r.is_empty()) {
            Some(referral) => {
                let field = &self.config.fields.referral_id;
                self.upsert("Opportunity", field, "referral id", referral, body)
                    .await?
            }
            None => self.create_record("Opportunity", body).await?,
        };
        if let Some(contact) = &fields.contact_id {
            self.attach_contact(&id, contact).await?;
        }
        Ok(id)
    }

    /// A state change writes the configured stage only when the opportunity is not already in
    /// that state: an opportunity a seller moved to, say, "Negotiation/Review" is active and
    /// stays where the seller put it.
    async fn update_opportunity(&self, id: &str, fields: &OpportunityFields) -> CrmResult<()> {
        let both = mapping::set_and_cleared(fields);
        if !both.is_empty() {
            tracing::warn!(
                opportunity = id,
                fields = ?both,
                "an update both sets and clears these fields; the values are written, the clears ignored"
            );
        }
        let mut body = mapping::opportunity_body(&self.config, fields, Write::Update)?;
        if let Some(state) = fields.state {
            let stage_fields = ["StageName".to_string(), "IsClosed".into(), "IsWon".into()];
            let current = self
                .get_record("Opportunity", id, &stage_fields)
                .await?
                .ok_or_else(|| CrmError::NotFound {
                    what: format!("Opportunity {id}"),
                })?;
            if mapping::state_of(&self.config, &current) != state {
                body.insert(
                    "StageName".into(),
                    json!(mapping::stage_for(&self.config, state)),
                );
            }
        }
        if !body.is_empty() {
            self.update_record("Opportunity", id, body).await?;
        }
        if let Some(contact) = &fields.contact_id {
            self.attach_contact(id, contact).await?;
        } else if mapping::clears(fields, ClearField::Contact) {
            self.detach_contact(id).await?;
        }
        Ok(())
    }

    async fn get_lead(&self, id: &str) -> CrmResult<Option<Lead>> {
        let fields = mapping::lead_select(&self.config);
        match self.get_record("Lead", id, &fields).await? {
            Some(rec) => self.lead(&rec).map(Some),
            None => Ok(None),
        }
    }

    async fn find_lead_by_referral(&self, referral_id: &str) -> CrmResult<Option<Lead>> {
        let fields = mapping::lead_select(&self.config);
        let field = &self.config.fields.lead_referral_id;
        match self.find_one("Lead", &fields, field, referral_id).await? {
            Some(rec) => self.lead(&rec).map(Some),
            None => Ok(None),
        }
    }

    /// `LastName` and `Company` are required by Salesforce: a lead without a last name gets the
    /// company (or [`UNKNOWN`]), one without a company [`UNKNOWN`]. With a referral id it is an
    /// upsert on the lead's referral-id field (which must be an External ID).
    async fn create_lead(&self, fields: &LeadFields) -> CrmResult<CrmId> {
        let today = chrono::Utc::now().date_naive();
        let body = mapping::lead_body(&self.config, fields, Write::Create { today });
        match fields.referral_id.as_deref().filter(|r| !r.is_empty()) {
            Some(referral) => {
                let field = &self.config.fields.lead_referral_id;
                self.upsert("Lead", field, "referral id", referral, body)
                    .await
            }
            None => self.create_record("Lead", body).await,
        }
    }

    async fn update_lead(&self, id: &str, fields: &LeadFields) -> CrmResult<()> {
        let body = mapping::lead_body(&self.config, fields, Write::Update);
        if body.is_empty() {
            return Ok(());
        }
        self.update_record("Lead", id, body).await
    }

    /// SOQL's `=` (and `IN`) ignores case but not spaces; oldest first, at most 50.
    async fn account_candidates(&self, key: &AccountKey) -> CrmResult<Vec<Account>> {
        let field = match key {
            AccountKey::PostalCode(_) => "BillingPostalCode",
            AccountKey::Name(_) => "Name",
        };
        let keys: Vec<String> = key.spellings().iter().map(|k| soql_quote(k)).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let soql = format!(
            "SELECT {} FROM Account WHERE {field} IN ({}) ORDER BY CreatedDate ASC LIMIT {CANDIDATE_LIMIT}",
            mapping::account_select(&self.config).join(", "),
            keys.join(", ")
        );
        self.query(&soql)
            .await?
            .iter()
            .map(|rec| {
                Ok(Account {
                    id: mapping::id_of(rec).ok_or_else(|| missing_id("Account"))?,
                    fields: mapping::account_fields(&self.config, rec),
                })
            })
            .collect()
    }

    async fn create_account(&self, fields: &AccountFields) -> CrmResult<CrmId> {
        self.create_record("Account", mapping::account_body(&self.config, fields))
            .await
    }

    /// The oldest contact with this email (SOQL compares it case-insensitively).
    async fn find_contact_by_email(&self, email: &str) -> CrmResult<Option<Contact>> {
        let email = email.trim();
        if email.is_empty() {
            return Ok(None);
        }
        let soql = format!(
            "SELECT {} FROM Contact WHERE Email = {} ORDER BY CreatedDate ASC LIMIT 1",
            mapping::CONTACT_SELECT.join(", "),
            soql_quote(email)
        );
        match self.query(&soql).await?.first() {
            Some(rec) => Ok(Some(Contact {
                id: mapping::id_of(rec).ok_or_else(|| missing_id("Contact"))?,
                fields: mapping::contact_fields(rec),
            })),
            None => Ok(None),
        }
    }

    async fn create_contact(&self, fields: &ContactFields) -> CrmResult<CrmId> {
        self.create_record("Contact", mapping::contact_body(fields))
            .await
    }

    /// Reads the opportunity's contact roles first: the contact's role is made primary (created
    /// when missing) and any other primary role is cleared, so repeating it changes nothing.
    async fn attach_contact(&self, opportunity_id: &str, contact_id: &str) -> CrmResult<()> {
        let soql = format!(
            "SELECT Id, ContactId, IsPrimary FROM OpportunityContactRole WHERE OpportunityId = {} ORDER BY CreatedDate ASC",
            soql_quote(opportunity_id)
        );
        let roles = self.query(&soql).await?;
        let role_of = |r: &Record| {
            (
                mapping::id_of(r).unwrap_or_default(),
                r.get("ContactId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                r.get("IsPrimary").and_then(Value::as_bool).unwrap_or(false),
            )
        };
        let roles: Vec<(String, String, bool)> = roles.iter().map(role_of).collect();
        match roles
            .iter()
            .find(|(_, c, _)| mapping::same_id(c, contact_id))
        {
            Some((_, _, true)) => {}
            Some((role, _, false)) => {
                let mut body = Record::new();
                body.insert("IsPrimary".into(), json!(true));
                self.update_record("OpportunityContactRole", role, body)
                    .await?;
            }
            None => {
                let mut body = Record::new();
                body.insert("OpportunityId".into(), json!(opportunity_id));
                body.insert("ContactId".into(), json!(contact_id));
                body.insert("IsPrimary".into(), json!(true));
                if let Some(role) = &self.config.contact_role {
                    body.insert("Role".into(), json!(role));
                }
                self.create_record("OpportunityContactRole", body).await?;
            }
        }
        // Salesforce itself demotes the previous primary; orgs and stand-ins that do not get
        // the same result from this.
        for (role, contact, primary) in &roles {
            if *primary && !mapping::same_id(contact, contact_id) {
                let mut body = Record::new();
                body.insert("IsPrimary".into(), json!(false));
                self.update_record("OpportunityContactRole", role, body)
                    .await?;
            }
        }
        Ok(())
    }

    async fn solution_links(&self, opportunity_id: &str) -> CrmResult<Vec<String>> {
        let f = &self.config.fields;
        let soql = format!(
            "SELECT Id, {} FROM {} WHERE {} = {} ORDER BY CreatedDate ASC",
            f.solution_id,
            f.solution_object,
            f.solution_opportunity,
            soql_quote(opportunity_id)
        );
        let mut out: Vec<String> = Vec::new();
        for rec in self.query(&soql).await? {
            if let Some(id) = rec
                .get(&f.solution_id)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && !out.iter().any(|o| o.eq_ignore_ascii_case(id))
            {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// Nothing happens when the opportunity already links the solution (compared ignoring
    /// case).
    async fn add_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        let existing = self.solution_links(opportunity_id).await?;
        if existing.iter().any(|s| s.eq_ignore_ascii_case(solution_id)) {
            return Ok(());
        }
        self.insert_solution_link(opportunity_id, solution_id).await
    }

    async fn link_solution_to_new(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        self.insert_solution_link(opportunity_id, solution_id).await
    }

    /// SOQL on `SystemModstamp` with an overlap window; see the `feed` module.
    async fn opportunity_changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        self.changes(cursor).await
    }

    async fn get_account(&self, id: &str) -> CrmResult<Option<Account>> {
        let fields = mapping::account_select(&self.config);
        let Some(rec) = self.get_record("Account", id, &fields).await? else {
            return Ok(None);
        };
        Ok(Some(Account {
            id: mapping::id_of(&rec).ok_or_else(|| missing_id("Account"))?,
            fields: mapping::account_fields(&self.config, &rec),
        }))
    }

    async fn get_contact(&self, id: &str) -> CrmResult<Option<Contact>> {
        let fields: Vec<String> = mapping::CONTACT_SELECT
            .iter()
            .map(|f| f.to_string())
            .collect();
        let Some(rec) = self.get_record("Contact", id, &fields).await? else {
            return Ok(None);
        };
        Ok(Some(Contact {
            id: mapping::id_of(&rec).ok_or_else(|| missing_id("Contact"))?,
            fields: mapping::contact_fields(&rec),
        }))
    }

    /// One SOQL query, followed through `nextRecordsUrl`; oldest first, so two reads list the
    /// catalog in the same order.
    async fn catalog(&self) -> CrmResult<Vec<CatalogEntry>> {
        let f = &self.config.fields;
        let soql = format!(
            "SELECT {} FROM {} ORDER BY CreatedDate ASC",
            mapping::catalog_select(&self.config).join(", "),
            f.catalog_object
        );
        self.query(&soql)
            .await?
            .iter()
            .map(|rec| {
                Ok(CatalogEntry {
                    crm_id: mapping::id_of(rec).ok_or_else(|| missing_id(&f.catalog_object))?,
                    solution: mapping::catalog_solution(&self.config, rec),
                })
            })
            .collect()
    }

    /// An upsert on the solution-id External ID, so a create retried after its answer was lost
    /// finds the row it made instead of making a second one.
    async fn create_catalog_solution(&self, solution: &CatalogSolution) -> CrmResult<CrmId> {
        let f = &self.config.fields;
        let body = mapping::catalog_body(&self.config, solution, true)?;
        self.upsert(
            &f.catalog_object,
            &f.catalog_solution_id,
            "solution id",
            &solution.solution_id,
            body,
        )
        .await
    }

    async fn update_catalog_solution(
        &self,
        crm_id: &str,
        solution: &CatalogSolution,
    ) -> CrmResult<()> {
        let body = mapping::catalog_body(&self.config, solution, false)?;
        self.update_record(&self.config.fields.catalog_object, crm_id, body)
            .await
    }
}
