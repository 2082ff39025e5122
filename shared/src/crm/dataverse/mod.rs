//! The [`Crm`] port on the Dataverse Web API (Dynamics 365), as an application user signed in
//! with client credentials. Facts followed: `docs/dataverse.md`.
//!
//! Choices the API leaves open:
//! - Rows are created with a GUID chosen here, by `PATCH set(<id>)` with `If-None-Match: *`
//!   (the create-only upsert of docs/dataverse.md, "Create, update, delete"). A create retried
//!   after its answer was lost then finds its own row (412) instead of making a second one.
//! - Updates send `If-Match: *`, so a deleted row is reported as not found rather than
//!   silently re-created by the upsert a bare PATCH would be.
//! - A state change reads the opportunity first: Win/Lose on an opportunity already in that
//!   state does nothing (a redelivered command must not fail), a closed opportunity is
//!   reopened by a PATCH of only `statecode`/`statuscode` before anything else is written,
//!   and fields are written before Win/Lose, since a closed opportunity is read-only.
//! - A clear ([`OpportunityFields::clear`]) goes in the same PATCH as the other fields: the
//!   column set to null, and for the currency and contact lookups the navigation property bound
//!   to null (`transactioncurrencyid@odata.bind: null`, `parentcontactid@odata.bind: null`),
//!   which the Web API documents as disassociating a single-valued navigation property. One
//!   request keeps the write all-or-nothing. Creates ignore clears.
//! - The opt-in columns (solution area, solution play, partner role, marketplace intent) are
//!   named in no request unless configured; the marketplace intent is only ever read.

mod config;
mod feed;
mod http;
mod mapping;
mod metadata;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::accounts::AccountKey;
use crate::http::odata_string;
pub use config::{
    ConfigError, DEFAULT_CHANGE_OVERLAP, DataverseConfig, DataverseFields, Secret,
    VisibilityEncoding,
};
use http::{Http, Request};
use mapping::{OpportunityRefs, guid, lookup_column, query};
pub use metadata::DataverseSchema;

use super::{
    Account, AccountFields, CatalogEntry, CatalogSolution, ChangePage, Contact, ContactFields, Crm,
    CrmError, CrmId, CrmKind, CrmResult, Lead, LeadFields, Opportunity, OpportunityFields,
    OpportunityState,
};

const OPPORTUNITIES: &str = "opportunities";
const LEADS: &str = "leads";
const ACCOUNTS: &str = "accounts";
const CONTACTS: &str = "contacts";
const CURRENCIES: &str = "transactioncurrencies";

/// Transaction currencies by ISO code and by id. They change rarely and every opportunity
/// read and write needs one, so they are kept for the adapter's life; a code not seen yet
/// is looked up again, so a currency an admin adds later is found.
#[derive(Default)]
struct Currencies {
    by_iso: HashMap<String, Uuid>,
    by_id: HashMap<Uuid, String>,
}

impl Currencies {
    fn remember(&mut self, iso: &str, id: Uuid) {
        self.by_iso.insert(iso.to_ascii_uppercase(), id);
        self.by_id.insert(id, iso.to_ascii_uppercase());
    }
}

/// A Dynamics 365 environment behind the [`Crm`] port.
pub struct DataverseCrm {
    http: Http,
    fields: DataverseFields,
    max_candidates: usize,
    /// [`DataverseConfig::change_overlap`].
    change_overlap: chrono::Duration,
    currencies: Mutex<Currencies>,
    /// The application user's `systemuserid` (`WhoAmI`), to tell the connector's own writes
    /// from sellers'.
    app_user: OnceCell<String>,
}

impl std::fmt::Debug for DataverseCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataverseCrm")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

fn invalid_id(id: &str, field: &str) -> CrmError {
    CrmError::Rejected {
        message: format!("'{id}' is not a Dataverse record id (a GUID)"),
        field: Some(field.to_string()),
    }
}

fn malformed(what: &str) -> CrmError {
    CrmError::Transient {
        status: None,
        retry_after: None,
        message: format!("Dataverse answered without {what}"),
    }
}

impl DataverseCrm {
    /// Checks the configuration and prepares the HTTP client; nothing is sent yet.
    pub fn new(config: DataverseConfig) -> Result<DataverseCrm, ConfigError> {
        config.validate()?;
        Ok(DataverseCrm {
            http: Http::new(&config)?,
            fields: config.fields,
            max_candidates: config.max_account_candidates,
            // Validated to at most a day, so it always converts.
            change_overlap: chrono::Duration::from_std(config.change_overlap)
                .unwrap_or(chrono::Duration::minutes(2)),
            currencies: Mutex::new(Currencies::default()),
            app_user: OnceCell::new(),
        })
    }

    /// The `systemuserid` the connector's writes are recorded as (`GET /WhoAmI`, asked once).
    pub async fn application_user_id(&self) -> CrmResult<String> {
        self.app_user
            .get_or_try_init(|| async {
                let reply = self
                    .http
                    .call(&Request::get(self.http.url("WhoAmI")))
                    .await?;
                reply
                    .body
                    .get("UserId")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| malformed("the UserId of WhoAmI"))
            })
            .await
            .cloned()
    }

    /// The `transactioncurrencyid` of an ISO 4217 code.
    async fn currency_id(&self, iso: &str) -> CrmResult<Uuid> {
        let code = iso.trim().to_ascii_uppercase();
        let field = Some(self.fields.currency.clone());
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(CrmError::Rejected {
                message: format!("'{iso}' is not an ISO 4217 currency code"),
                field,
            });
        }
        if let Some(id) = self.cached_currencies().by_iso.get(&code) {
            return Ok(*id);
        }
        let url = self.http.url(&query(
            CURRENCIES,
            &[
                ("$select", "transactioncurrencyid,isocurrencycode".into()),
                (
                    "$filter",
                    format!("isocurrencycode eq {}", odata_string(&code)),
                ),
                ("$top", "1".into()),
            ],
        ));
        let rows = self.http.first_page(url).await?;
        let id = rows
            .first()
            .and_then(|r| r.get("transactioncurrencyid"))
            .and_then(Value::as_str)
            .and_then(guid)
            .ok_or_else(|| CrmError::Rejected {
                message: format!(
                    "the currency {code} is not set up in this Dynamics 365 environment \
                     (no transaction currency has ISO code {code}); add it under Currencies \
                     or correct the deal's currency"
                ),
                field,
            })?;
        self.cached_currencies().remember(&code, id);
        Ok(id)
    }

    /// The ISO code of a `transactioncurrencyid`; `None` when the currency row is gone.
    async fn currency_iso(&self, id: &str) -> CrmResult<Option<String>> {
        let Some(id) = guid(id) else {
            return Ok(None);
        };
        if let Some(iso) = self.cached_currencies().by_id.get(&id) {
            return Ok(Some(iso.clone()));
        }
        let Some(row) = self.get_row(CURRENCIES, id, "isocurrencycode").await? else {
            return Ok(None);
        };
        let Some(iso) = row.get("isocurrencycode").and_then(Value::as_str) else {
            return Ok(None);
        };
        self.cached_currencies().remember(iso, id);
        Ok(Some(iso.to_ascii_uppercase()))
    }

    fn cached_currencies(&self) -> std::sync::MutexGuard<'_, Currencies> {
        // The map holds no invariant a panicking holder could break: keep using it.
        self.currencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One row, or `None` when it does not exist.
    async fn get_row(&self, set: &str, id: Uuid, select: &str) -> CrmResult<Option<Value>> {
        let url = self.http.url(&query(
            &format!("{set}({id})"),
            &[("$select", select.into())],
        ));
        match self.http.call(&Request::get(url)).await {
            Ok(reply) => Ok(Some(reply.body)),
            Err(CrmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a row under a new id (see the module docs for why the id is chosen here).
    async fn create_row(&self, set: &str, body: Map<String, Value>) -> CrmResult<Uuid> {
        let id = Uuid::new_v4();
        let body = Value::Object(body);
        let url = self.http.url(&format!("{set}({id})"));
        match self.http.call(&Request::create(url, &body)).await {
            Ok(_) => Ok(id),
            // Nobody else knows `id`: the row is there because an attempt whose answer was
            // lost created it. Checked, since 412 also means a duplicate-detection hit.
            Err(CrmError::Conflict) => match self.get_row(set, id, "createdon").await? {
                Some(_) => Ok(id),
                None => Err(CrmError::Rejected {
                    message: format!("Dataverse refused the new {set} row as a duplicate"),
                    field: None,
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes `body` to an existing row; nothing is sent when it is empty.
    async fn update_row(
        &self,
        set: &str,
        id: Uuid,
        body: Map<String, Value>,
        what: &str,
    ) -> CrmResult<()> {
        if body.is_empty() {
            return Ok(());
        }
        let body = Value::Object(body);
        let url = self.http.url(&format!("{set}({id})"));
        match self.http.call(&Request::update(url, &body)).await {
            Ok(_) => Ok(()),
            Err(CrmError::NotFound { .. }) => Err(CrmError::NotFound {
                what: what.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The ids an opportunity write binds, each checked, the currency resolved.
    async fn opportunity_refs(&self, fields: &OpportunityFields) -> CrmResult<OpportunityRefs> {
        let account = match &fields.account_id {
            Some(a) => Some(guid(a).ok_or_else(|| invalid_id(a, "parentaccountid"))?),
            None => None,
        };
        let contact = match &fields.contact_id {
            Some(c) => Some(guid(c).ok_or_else(|| invalid_id(c, "parentcontactid"))?),
            None => None,
        };
        let currency = match &fields.currency {
            Some(iso) => Some(self.currency_id(iso).await?),
            None => None,
        };
        Ok(OpportunityRefs {
            account,
            contact,
            currency,
        })
    }

    /// A row of the solution-link table for the opportunity, without looking for one first.
    async fn insert_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        let solution_id = solution_id.trim();
        let f = &self.fields;
        if solution_id.is_empty() {
            return Err(CrmError::Rejected {
                message: "a solution link needs a Partner Center solution id".into(),
                field: Some(f.solution_id.clone()),
            });
        }
        let opportunity = guid(opportunity_id).ok_or_else(|| CrmError::NotFound {
            what: format!("opportunity {opportunity_id}"),
        })?;
        let mut body = Map::new();
        body.insert(f.solution_id.clone(), Value::String(solution_id.into()));
        if let Some(name) = &f.solution_link_name {
            body.insert(name.clone(), Value::String(solution_id.into()));
        }
        body.insert(
            format!("{}@odata.bind", f.solution_link_opportunity),
            mapping::bind(OPPORTUNITIES, opportunity),
        );
        self.create_row(&f.solution_link_set, body).await?;
        Ok(())
    }

    async fn to_opportunity(&self, row: &Value) -> CrmResult<Opportunity> {
        let id = row
            .get("opportunityid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the opportunityid"))?
            .to_string();
        let currency = match row
            .get(lookup_column(&self.fields.currency))
            .and_then(Value::as_str)
        {
            Some(c) => self.currency_iso(c).await?,
            None => None,
        };
        let user = self.application_user_id().await?;
        Ok(Opportunity {
            id,
            fields: mapping::opportunity_fields(row, &self.fields, currency),
            modified_at: mapping::modified_at(row),
            modified_by_connector: mapping::modified_by(row, &user),
        })
    }

    fn to_lead(&self, row: &Value) -> CrmResult<Lead> {
        let id = row
            .get("leadid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the leadid"))?;
        Ok(Lead {
            id: id.to_string(),
            fields: mapping::lead_fields(row, &self.fields),
        })
    }

    /// Closes an open opportunity with `WinOpportunity` (status Won) or `LoseOpportunity`
    /// (status Canceled).
    async fn close_opportunity(&self, id: Uuid, target: OpportunityState) -> CrmResult<()> {
        let won = target == OpportunityState::Won;
        let (action, status, subject) = if won {
            (
                "WinOpportunity",
                mapping::OPPORTUNITY_STATUS_WON,
                "Won (synced from Partner Center)",
            )
        } else {
            (
                "LoseOpportunity",
                mapping::OPPORTUNITY_STATUS_LOST,
                "Lost (synced from Partner Center)",
            )
        };
        let body = json!({
            "Status": status,
            "OpportunityClose": {
                "subject": subject,
                "opportunityid@odata.bind": format!("/{OPPORTUNITIES}({id})"),
            },
        });
        match self
            .http
            .call(&Request::post(self.http.url(action), &body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ CrmError::Rejected { .. }) => {
                // A retry whose first attempt closed it (answer lost) is refused as "already
                // closed": that is the outcome we wanted.
                let row = self
                    .get_row(OPPORTUNITIES, id, "statecode,statuscode")
                    .await?;
                if row.as_ref().and_then(mapping::opportunity_state) == Some(target) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Rows of `set` matching `filter`, oldest first, at most `top`.
    async fn find(
        &self,
        set: &str,
        select: &str,
        filter: String,
        top: usize,
    ) -> CrmResult<Vec<Value>> {
        let url = self.http.url(&query(
            set,
            &[
                ("$select", select.to_string()),
                ("$filter", filter),
                ("$orderby", "createdon asc".into()),
                ("$top", top.to_string()),
            ],
        ));
        self.http.first_page(url).await
    }
}

fn state_codes(state: i64, status: i64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("statecode".into(), Value::from(state));
    m.insert("statuscode".into(), Value::from(status));
    m
}

#[async_trait]
impl Crm for DataverseCrm {
    fn kind(&self) -> CrmKind {
        CrmKind::Dynamics
    }

    fn can_clear(&self, field: crate::crm::ClearField) -> bool {
        // Dataverse requires a currency on an opportunity (`transactioncurrencyid`).
        field != crate::crm::ClearField::Currency
    }

    async fn get_opportunity(&self, id: &str) -> CrmResult<Option<Opportunity>> {
        let Some(id) = guid(id) else {
            return Ok(None);
        };
        let select = mapping::opportunity_select(&self.fields);
        match self.get_row(OPPORTUNITIES, id, &select).await? {
            Some(row) => Ok(Some(self.to_opportunity(&row).await?)),
            None => Ok(None),
        }
    }

    async fn find_opportunity_by_referral(
        &self,
        referral_id: &str,
    ) -> CrmResult<Option<Opportunity>> {
        if referral_id.trim().is_empty() {
            return Ok(None);
        }
        let filter = format!(
            "{} eq {}",
            self.fields.referral_id,
            odata_string(referral_id)
        );
        let select = mapping::opportunity_select(&self.fields);
        let rows = self.find(OPPORTUNITIES, &select, filter, 2).await?;
        if rows.len() > 1 {
            tracing::warn!(
                referral_id,
                "more than one Dynamics 365 opportunity carries this referral id; using the oldest"
            );
        }
        match rows.first() {
            Some(row) => Ok(Some(self.to_opportunity(row).await?)),
            None => Ok(None),
        }
    }

    async fn create_opportunity(&self, fields: &OpportunityFields) -> CrmResult<CrmId> {
        let refs = self.opportunity_refs(fields).await?;
        let mut body = self.fields.opportunity_create_defaults.clone();
        body.extend(mapping::opportunity_body(fields, refs, &self.fields, true));
        if let Some((state, status)) = fields.state.and_then(mapping::open_opportunity_codes) {
            body.extend(state_codes(state, status));
        }
        let id = self.create_row(OPPORTUNITIES, body).await?;
        if let Some(target) = fields.state.filter(|s| s.is_closed()) {
            self.close_opportunity(id, target).await?;
        }
        Ok(id.to_string())
    }

    async fn update_opportunity(&self, id: &str, fields: &OpportunityFields) -> CrmResult<()> {
        let what = format!("opportunity {id}");
        let uuid = guid(id).ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let both = mapping::set_and_cleared(fields);
        if !both.is_empty() {
            tracing::warn!(
                opportunity = id,
                fields = ?both,
                "an update both sets and clears these fields; the values are written, the clears ignored"
            );
        }
        let refs = self.opportunity_refs(fields).await?;
        let mut body = mapping::opportunity_body(fields, refs, &self.fields, false);
        let Some(target) = fields.state else {
            return self.update_row(OPPORTUNITIES, uuid, body, &what).await;
        };
        let current = self
            .get_opportunity(id)
            .await?
            .ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let now = current.fields.state;
        let closed_now = now.is_some_and(OpportunityState::is_closed);
        match mapping::open_opportunity_codes(target) {
            Some((state, status)) => {
                if closed_now {
                    // Dataverse reopens only on a write of nothing but the state.
                    self.update_row(OPPORTUNITIES, uuid, state_codes(state, status), &what)
                        .await?;
                } else if now != Some(target) {
                    body.extend(state_codes(state, status));
                }
                self.update_row(OPPORTUNITIES, uuid, body, &what).await
            }
            None if now == Some(target) => {
                // Already closed this way (a redelivered command): only a real difference is
                // sent, which Dataverse refuses on a closed opportunity.
                if mapping::opportunity_differs(&current.fields, fields, &self.fields) {
                    self.update_row(OPPORTUNITIES, uuid, body, &what).await?;
                }
                Ok(())
            }
            None => {
                if closed_now {
                    self.update_row(
                        OPPORTUNITIES,
                        uuid,
                        state_codes(0, mapping::OPPORTUNITY_STATUS_IN_PROGRESS),
                        &what,
                    )
                    .await?;
                }
                self.update_row(OPPORTUNITIES, uuid, body, &what).await?;
                self.close_opportunity(uuid, target).await
            }
        }
    }

    async fn get_lead(&self, id: &str) -> CrmResult<Option<Lead>> {
        let Some(id) = guid(id) else {
            return Ok(None);
        };
        match self
            .get_row(LEADS, id, &mapping::lead_select(&self.fields))
            .await?
        {
            Some(row) => Ok(Some(self.to_lead(&row)?)),
            None => Ok(None),
        }
    }

    async fn find_lead_by_referral(&self, referral_id: &str) -> CrmResult<Option<Lead>> {
        if referral_id.trim().is_empty() {
            return Ok(None);
        }
        let filter = format!(
            "{} eq {}",
            self.fields.lead_referral_id,
            odata_string(referral_id)
        );
        let rows = self
            .find(LEADS, &mapping::lead_select(&self.fields), filter, 1)
            .await?;
        rows.first().map(|r| self.to_lead(r)).transpose()
    }

    async fn create_lead(&self, fields: &LeadFields) -> CrmResult<CrmId> {
        let mut body = self.fields.lead_create_defaults.clone();
        body.extend(mapping::lead_body(fields, &self.fields));
        let id = self.create_row(LEADS, body).await?;
        // A lead is born open; qualifying or disqualifying it is a change of state.
        if let Some(state) = fields.state.filter(|s| *s != super::LeadState::Open) {
            let (state, status) = mapping::lead_codes(state);
            self.update_row(LEADS, id, state_codes(state, status), &format!("lead {id}"))
                .await?;
        }
        Ok(id.to_string())
    }

    async fn update_lead(&self, id: &str, fields: &LeadFields) -> CrmResult<()> {
        let what = format!("lead {id}");
        let uuid = guid(id).ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let mut body = mapping::lead_body(fields, &self.fields);
        if let Some(target) = fields.state {
            // Only a real change of state is written, so a seller's status reason
            // (Contacted, Cannot Contact…) survives a redelivered command.
            let row = self
                .get_row(LEADS, uuid, "statecode,statuscode")
                .await?
                .ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
            if mapping::lead_state(&row) != Some(target) {
                let (state, status) = mapping::lead_codes(target);
                body.extend(state_codes(state, status));
            }
        }
        self.update_row(LEADS, uuid, body, &what).await
    }

    /// Active accounts only; Dataverse's `eq` ignores case (the default collation) but not
    /// spaces. Oldest first, so a duplicate made later never wins over the original.
    async fn account_candidates(&self, key: &AccountKey) -> CrmResult<Vec<Account>> {
        let column = match key {
            AccountKey::PostalCode(_) => "address1_postalcode",
            AccountKey::Name(_) => "name",
        };
        let spellings = key.spellings();
        if spellings.is_empty() {
            return Ok(Vec::new());
        }
        let matching = spellings
            .iter()
            .map(|v| format!("{column} eq {}", odata_string(v)))
            .collect::<Vec<_>>()
            .join(" or ");
        let rows = self
            .find(
                ACCOUNTS,
                &mapping::account_select(&self.fields),
                format!("statecode eq 0 and ({matching})"),
                self.max_candidates,
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id = row
                    .get("accountid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed("the accountid"))?;
                Ok(Account {
                    id: id.to_string(),
                    fields: mapping::account_fields(row, &self.fields),
                })
            })
            .collect()
    }

    async fn create_account(&self, fields: &AccountFields) -> CrmResult<CrmId> {
        let body = mapping::account_body(fields, &self.fields);
        Ok(self.create_row(ACCOUNTS, body).await?.to_string())
    }

    async fn find_contact_by_email(&self, email: &str) -> CrmResult<Option<Contact>> {
        let email = email.trim();
        if email.is_empty() {
            return Ok(None);
        }
        let filter = format!(
            "statecode eq 0 and emailaddress1 eq {}",
            odata_string(email)
        );
        let rows = self
            .find(CONTACTS, mapping::CONTACT_SELECT, filter, 1)
            .await?;
        rows.first()
            .map(|row| {
                let id = row
                    .get("contactid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed("the contactid"))?;
                Ok(Contact {
                    id: id.to_string(),
                    fields: mapping::contact_fields(row),
                })
            })
            .transpose()
    }

    async fn create_contact(&self, fields: &ContactFields) -> CrmResult<CrmId> {
        let account = match &fields.account_id {
            Some(a) => Some(guid(a).ok_or_else(|| invalid_id(a, "parentcustomerid"))?),
            None => None,
        };
        let body = mapping::contact_body(fields, account);
        Ok(self.create_row(CONTACTS, body).await?.to_string())
    }

    async fn attach_contact(&self, opportunity_id: &str, contact_id: &str) -> CrmResult<()> {
        let what = format!("opportunity {opportunity_id}");
        let opportunity =
            guid(opportunity_id).ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let contact = guid(contact_id).ok_or_else(|| invalid_id(contact_id, "parentcontactid"))?;
        let column = lookup_column("parentcontactid");
        let row = self
            .get_row(OPPORTUNITIES, opportunity, &column)
            .await?
            .ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let attached = row
            .get(&column)
            .and_then(Value::as_str)
            .and_then(guid)
            .is_some_and(|c| c == contact);
        if attached {
            return Ok(());
        }
        let mut body = Map::new();
        body.insert(
            "parentcontactid@odata.bind".into(),
            mapping::bind(CONTACTS, contact),
        );
        self.update_row(OPPORTUNITIES, opportunity, body, &what)
            .await
    }

    async fn solution_links(&self, opportunity_id: &str) -> CrmResult<Vec<String>> {
        let opportunity = guid(opportunity_id).ok_or_else(|| CrmError::NotFound {
            what: format!("opportunity {opportunity_id}"),
        })?;
        let f = &self.fields;
        let url = self.http.url(&query(
            &f.solution_link_set,
            &[
                ("$select", f.solution_id.clone()),
                (
                    "$filter",
                    format!(
                        "{} eq {opportunity} and statecode eq 0",
                        lookup_column(&f.solution_link_opportunity)
                    ),
                ),
            ],
        ));
        let rows = self.http.list(url).await?;
        // Sorted, so two reads of the same links compare equal whatever order the server
        // chose (rows created in the same second have no order of their own).
        let ids: BTreeSet<String> = rows
            .iter()
            .filter_map(|row| row.get(&f.solution_id).and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        Ok(ids.into_iter().collect())
    }

    async fn add_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        if self
            .solution_links(opportunity_id)
            .await?
            .iter()
            // The sync compares solution ids without regard to case; so does Salesforce's link.
            .any(|s| s.eq_ignore_ascii_case(solution_id.trim()))
        {
            return Ok(());
        }
        self.insert_solution_link(opportunity_id, solution_id).await
    }

    async fn link_solution_to_new(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        self.insert_solution_link(opportunity_id, solution_id).await
    }

    /// Change tracking on `opportunities`, or `modifiedon` when the table has none; see the
    /// `feed` module for how each keeps its place.
    async fn opportunity_changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        self.changes(cursor).await
    }

    async fn get_account(&self, id: &str) -> CrmResult<Option<Account>> {
        let Some(uuid) = guid(id) else {
            return Ok(None);
        };
        let Some(row) = self
            .get_row(ACCOUNTS, uuid, &mapping::account_select(&self.fields))
            .await?
        else {
            return Ok(None);
        };
        let id = row
            .get("accountid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the accountid"))?;
        Ok(Some(Account {
            id: id.to_string(),
            fields: mapping::account_fields(&row, &self.fields),
        }))
    }

    async fn get_contact(&self, id: &str) -> CrmResult<Option<Contact>> {
        let Some(uuid) = guid(id) else {
            return Ok(None);
        };
        let Some(row) = self
            .get_row(CONTACTS, uuid, mapping::CONTACT_SELECT)
            .await?
        else {
            return Ok(None);
        };
        let id = row
            .get("contactid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the contactid"))?;
        Ok(Some(Contact {
            id: id.to_string(),
            fields: mapping::contact_fields(&row),
        }))
    }

    /// Every row, active or not, page by page; oldest first, so two reads list the catalog in
    /// the same order.
    async fn catalog(&self) -> CrmResult<Vec<CatalogEntry>> {
        let f = &self.fields;
        let url = self.http.url(&query(
            &f.catalog_set,
            &[
                ("$select", mapping::catalog_select(f)),
                ("$orderby", "createdon asc".into()),
            ],
        ));
        self.http
            .list(url)
            .await?
            .iter()
            .map(|row| {
                let id = row
                    .get(&f.catalog_key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed(&format!("the {}", f.catalog_key)))?;
                Ok(CatalogEntry {
                    crm_id: id.to_string(),
                    solution: mapping::catalog_solution(row, f),
                })
            })
            .collect()
    }

    async fn create_catalog_solution(&self, solution: &CatalogSolution) -> CrmResult<CrmId> {
        let body = mapping::catalog_body(solution, &self.fields, true)?;
        Ok(self
            .create_row(&self.fields.catalog_set, body)
            .await
            .map_err(http::missing_table)?
            .to_string())
    }

    async fn update_catalog_solution(
        &self,
        crm_id: &str,
        solution: &CatalogSolution,
    ) -> CrmResult<()> {
        let what = format!("catalog solution {crm_id}");
        let id = guid(crm_id).ok_or_else(|| CrmError::NotFound { what: what.clone() })?;
        let body = mapping::catalog_body(solution, &self.fields, false)?;
        self.update_row(&self.fields.catalog_set, id, body, &what)
            .await
    }
}
