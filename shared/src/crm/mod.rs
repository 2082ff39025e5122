//! The CRM port: what the sync needs from a partner's CRM, in the connector's own terms. Each
//! adapter (Dataverse, Salesforce) maps these to its API and to the field names the admin
//! configured, so the sync rules never see a CRM-specific name.

pub mod dataverse;
mod feed;
pub mod salesforce;
pub mod schema;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::accounts::AccountKey;

// The records' values belong to the domain (the sync rules read and build them); the port and
// its adapters take them from there.
pub use crate::domain::records::{
    Account, AccountFields, ClearField, Contact, ContactFields, CrmId, CrmKind, Lead, LeadFields,
    LeadState, Opportunity, OpportunityFields, OpportunityState, Visibility,
};

/// One page of the opportunity change feed ([`Crm::opportunity_changes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePage {
    /// Changed opportunities with Sync = yes, read in full (as `get_opportunity` reads them,
    /// including `modified_at` and `modified_by_connector`).
    pub opportunities: Vec<Opportunity>,
    /// The cursor after this page (opaque; the adapter's own format, a few hundred bytes at most,
    /// no secrets, stable across processes: it is stored in DynamoDB/SQLite).
    pub cursor: String,
    /// More pages are ready now.
    pub more: bool,
}

/// Why a CRM call failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrmError {
    /// Worth retrying later: throttled (429, Salesforce's daily limit), 5xx, timeout, network.
    #[error("the CRM is unavailable for now ({status:?}): {message}")]
    Transient {
        status: Option<u16>,
        /// Seconds the CRM asked us to wait.
        retry_after: Option<u64>,
        message: String,
    },
    /// The CRM refused the data; a person must fix it (shown in Audit and ✖, not retried).
    #[error("the CRM refused the change: {message}")]
    Rejected {
        message: String,
        field: Option<String>,
    },
    /// The record changed since it was read (stale etag).
    #[error("the record changed since it was read")]
    Conflict,
    #[error("{what} was not found in the CRM")]
    NotFound { what: String },
    /// Credentials or permissions: an operator must fix the configuration.
    #[error("the CRM did not accept the connector's credentials: {message}")]
    Auth { message: String },
}

impl CrmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CrmError::Transient { .. })
    }
}

pub type CrmResult<T> = Result<T, CrmError>;

/// A co-sell-ready solution of the partner, as its CRM's solution catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSolution {
    /// The Partner Center solution id (what deals link).
    pub solution_id: String,
    pub name: String,
    /// Dataverse: the catalog's description column; Salesforce: its solution area field.
    pub description: Option<String>,
}

/// A catalog row and its CRM record id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub crm_id: CrmId,
    pub solution: CatalogSolution,
}

/// Everything the sync asks of a CRM. Every method is one logical operation; adapters follow
/// their API's paging, honour 429/`Retry-After` and time out.
#[async_trait]
pub trait Crm: Send + Sync {
    fn kind(&self) -> CrmKind;

    /// Whether this CRM lets the field be emptied. A field the CRM requires keeps its value
    /// when the other side empties it; the sync then sends the CRM's value back instead.
    fn can_clear(&self, _field: ClearField) -> bool {
        true
    }

    async fn get_opportunity(&self, id: &str) -> CrmResult<Option<Opportunity>>;
    /// The opportunity whose referral-identifier field holds `referral_id`.
    async fn find_opportunity_by_referral(
        &self,
        referral_id: &str,
    ) -> CrmResult<Option<Opportunity>>;
    async fn create_opportunity(&self, fields: &OpportunityFields) -> CrmResult<CrmId>;
    /// Writes the fields that are `Some`; a state change closes or reopens as the CRM requires.
    async fn update_opportunity(&self, id: &str, fields: &OpportunityFields) -> CrmResult<()>;

    async fn get_lead(&self, id: &str) -> CrmResult<Option<Lead>>;
    async fn find_lead_by_referral(&self, referral_id: &str) -> CrmResult<Option<Lead>>;
    async fn create_lead(&self, fields: &LeadFields) -> CrmResult<CrmId>;
    async fn update_lead(&self, id: &str, fields: &LeadFields) -> CrmResult<()>;

    /// Active accounts whose postal code or name (as `key` says) is one of the key's
    /// [`AccountKey::spellings`], oldest first, at most the adapter's limit. The caller picks
    /// the match ([`crate::domain::accounts::same_account`]).
    async fn account_candidates(&self, key: &AccountKey) -> CrmResult<Vec<Account>>;
    async fn create_account(&self, fields: &AccountFields) -> CrmResult<CrmId>;

    async fn find_contact_by_email(&self, email: &str) -> CrmResult<Option<Contact>>;
    async fn create_contact(&self, fields: &ContactFields) -> CrmResult<CrmId>;
    /// Makes `contact_id` the opportunity's customer contact (Salesforce: a primary contact
    /// role; Dataverse: the contact lookup). Idempotent.
    async fn attach_contact(&self, opportunity_id: &str, contact_id: &str) -> CrmResult<()>;

    /// Partner Center solution ids linked to the opportunity.
    async fn solution_links(&self, opportunity_id: &str) -> CrmResult<Vec<String>>;
    async fn add_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()>;
    /// Links a solution to an opportunity this sync has just created, which has none yet: the
    /// adapter may skip the look-up [`Crm::add_solution_link`] makes first.
    async fn link_solution_to_new(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        self.add_solution_link(opportunity_id, solution_id).await
    }

    /// One page of opportunities changed since `cursor`, oldest change first where the API allows.
    /// `None` starts the feed: every opportunity with Sync with Partner Center = yes that exists now
    /// comes in the first pages (a seller may have set Sync before the connector was deployed).
    /// The caller stores `page.cursor` only after it has handled the page, and calls again at once
    /// while `page.more` is true; a crash between pages repeats a page, never skips one.
    async fn opportunity_changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage>;
    /// The account with this id; `None` when there is none.
    async fn get_account(&self, id: &str) -> CrmResult<Option<Account>>;
    /// The contact with this id; `None` when there is none.
    async fn get_contact(&self, id: &str) -> CrmResult<Option<Contact>>;

    /// Every row of the partner's solution catalog, across all pages.
    async fn catalog(&self) -> CrmResult<Vec<CatalogEntry>>;
    async fn create_catalog_solution(&self, solution: &CatalogSolution) -> CrmResult<CrmId>;
    /// Writes the row's name, description and solution id.
    async fn update_catalog_solution(
        &self,
        crm_id: &str,
        solution: &CatalogSolution,
    ) -> CrmResult<()>;
}
