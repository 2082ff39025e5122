//! The Salesforce REST API at `/services/` (docs/salesforce.md), as the co-sell connector
//! uses it.
//!
//! Behaviours:
//! - OAuth at `POST /services/oauth2/token`: the JWT bearer grant (an RS256 assertion checked
//!   against the connected app's certificate; `iss`, `sub`, `aud`, `exp` checked; no refresh
//!   token) and the client-credentials grant (adds `signature` and `issued_at`). Access tokens
//!   expire on the sandbox clock; an expired or unknown one gets 401 `INVALID_SESSION_ID`.
//! - `/services/data/vNN.N/` for any version between [`Config::oldest_api_version`] and
//!   [`Config::latest_api_version`]; `GET /services/data/` lists them.
//! - sObject rows: create (201 `{id,success,errors}`), read with `?fields=`, update (204),
//!   delete (204), upsert by external id (201 `created:true`, 200 `created:false` from v46 and
//!   204 before, 300 with the matching records' URLs, 404 for a field that is not an external
//!   id, `?updateOnly=true`), describe, and sObject Collections (create, update, upsert,
//!   delete; up to 200 records; `allOrNone`).
//! - SOQL at `query?q=` (the subset in `soql.rs`) with paging through `nextRecordsUrl` (locators
//!   expire when unused); Get Updated and Get Deleted (30-day window, seconds truncated).
//! - Validation from schema data (`schema.rs`): unknown fields (`INVALID_FIELD`), read-only
//!   fields (`INVALID_FIELD_FOR_INSERT_UPDATE`), required fields (`REQUIRED_FIELD_MISSING` with
//!   `fields`), restricted picklists and stages (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`),
//!   lookups (`MALFORMED_ID`, `INVALID_CROSS_REFERENCE_KEY`), lengths, numbers, unique values.
//!   `CreatedDate`, `CreatedById`, `LastModifiedDate`, `LastModifiedById`, `SystemModstamp` are
//!   maintained; API writes are made by the token's user, control-API writes by a seller.
//! - A daily API budget over a rolling 24 hours, reported on every `/services/data` response in
//!   `Sforce-Limit-Info`; once spent, 403 `REQUEST_LIMIT_EXCEEDED` without `Retry-After`.
//! - The Tooling API under `/services/data/vNN.N/tooling/` (`tooling.rs`): custom fields and
//!   objects created from their `Metadata`, the `OpportunityStage` standard value set read and
//!   replaced, tooling queries over `StandardValueSet`, `CustomField` and `CustomObject`.
//! - Field-level security (`permissions.rs`): a field created through the Tooling API is
//!   granted to no one, so API users see it only through an assigned permission set's
//!   `FieldPermissions`; `PermissionSet`, `FieldPermissions`, `ObjectPermissions` and
//!   `PermissionSetAssignment` are ordinary records. [`Config::bare`] starts an org without the
//!   connector's fields, objects and hold stage, for `cosell crm setup` to create.
//!
//! Inferred choices (each is a [`Config`] field or control-API data, so a test can change it):
//! - the connector's API names end in `__c` (the public manual prints them with typos;
//!   docs/salesforce.md, "Connector fields");
//!   [`Config::connector_fields`] can leave them out and the control API can add others;
//!   they include the Services co-sell fields `Solution_Area__c`, `Solution_Play__c`,
//!   `Partner_Role__c` (text) and `Marketplace_Intent__c` (restricted picklist: Yes, No,
//!   Have not decided);
//! - `Referral_Identifier__c` is an external id but not unique, and external ids match
//!   case-insensitively ([`Config::external_id_case_sensitive`]), so an upsert can meet
//!   several matches; `Microsoft_Solution_Catalog__c.Solution_Id__c` is an external id too;
//! - required: `LastName` (Contact, Lead), `Company` (Lead), `Opportunity__c` (solution link);
//!   Contact and Lead have Salesforce's read-only compound `Name`; the visibility picklist
//!   values are `Private` and `Visible`; all schema flags can be changed through control;
//! - `CurrencyIsoCode` exists only with [`Config::multi_currency`] (default off), so writing it
//!   otherwise is `INVALID_FIELD`;
//! - access tokens live [`Config::session_lifetime`] (2 hours) from issue, not from last use;
//!   a JWT assertion may live at most [`Config::jwt_max_lifetime`] (3 minutes); query locators
//!   expire after [`Config::query_locator_lifetime`] (15 minutes) unused;
//! - deleting an opportunity deletes its contact roles and solution links; other lookups to a
//!   deleted record are cleared;
//! - Get Updated covers `[start, end)` after truncating both to the minute, and `end` no later
//!   than now; SOQL sorts nulls first unless `NULLS LAST`;
//! - the 401 body, the OAuth error descriptions, the 412 of `If-Unmodified-Since`, and
//!   `INVALID_REPLICATION_DATE` for a bad Get Updated window follow what clients report, not a
//!   spec; `User` and `OpportunityStage` are readable but refuse API writes
//!   (`INVALID_TYPE_FOR_OPERATION`);
//! - an injected fault answers before the handler runs, so it carries no `Sforce-Limit-Info`
//!   and does not count against the budget.

mod api;
mod auth;
mod control;
mod errors;
mod ids;
mod permissions;
mod query;
mod schema;
mod soql;
mod store;
mod tooling;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::app::App;
use crate::config::{CLIENT_ID, CLIENT_SECRET};

use auth::ConnectedApp;
use schema::{SObject, Stage};

/// The integration user: pre-approved for the JWT grant and the client-credentials run-as user.
pub const INTEGRATION_USER: &str = "integration@sandbox.test";
/// The human seller whose edits come through the control API.
pub const SELLER_USER: &str = "seller@sandbox.test";
/// The login hosts a JWT's `aud` may name (docs/salesforce.md, "Sign-in").
pub const LOGIN_AUDIENCES: &[&str] = &[
    "https://login.salesforce.com",
    "https://test.salesforce.com",
];

/// Settings of this simulator; part of [`crate::SandboxConfig`]. Defaults follow
/// docs/salesforce.md; fields whose fact is inferred say so.
#[derive(Debug, Clone)]
pub struct Config {
    /// The connected app's consumer key (`iss` of a JWT, `client_id` of client credentials).
    pub consumer_key: String,
    pub consumer_secret: String,
    /// Users pre-approved for the JWT bearer grant (its `sub`); the first is also the
    /// client-credentials run-as user.
    pub jwt_users: Vec<String>,
    /// The user whose edits the control API makes.
    pub seller_user: String,
    /// Audiences a JWT may name besides the sandbox's own URL.
    pub jwt_audiences: Vec<String>,
    /// Accept the sandbox's base URL as `aud` too (a connector pointed at the sandbox uses it
    /// as its login URL).
    pub accept_base_url_audience: bool,
    /// Longest `exp` - now of an assertion. Inferred: Salesforce's help asks for "within
    /// 3 minutes"; the exact tolerance is not documented.
    pub jwt_max_lifetime: Duration,
    /// Offer the client-credentials grant (it needs a run-as user on the real service).
    pub client_credentials: bool,
    /// PEM certificate of the connected app; a key pair is generated when absent.
    pub certificate_file: Option<PathBuf>,
    /// PEM private key matching `certificate_file`, only so the control API can hand it out.
    pub private_key_file: Option<PathBuf>,
    /// Access token lifetime. Inferred: the org's session timeout, 2 hours by default; counted
    /// from issue rather than from last use.
    pub session_lifetime: Duration,
    /// API requests allowed per rolling 24 hours (real orgs have 100,000 and more;
    /// docs/salesforce.md, "Limits").
    pub daily_api_limit: u64,
    /// Records per query batch without `Sforce-Query-Options` (documented: 2,000).
    pub query_batch_size: usize,
    /// Multi-currency org: `CurrencyIsoCode` exists on the sales objects. Inferred: it does not
    /// exist otherwise (so writing it is `INVALID_FIELD`).
    pub multi_currency: bool,
    /// The currencies a multi-currency org has activated.
    pub currencies: Vec<String>,
    /// `CurrencyIsoCode` of records created without one.
    pub corporate_currency: String,
    /// Install the connector's custom fields and objects (docs/salesforce.md, "Connector
    /// fields") at start.
    pub connector_fields: bool,
    /// The stage the connector's admin adds for referrals not yet accepted ("On Hold"); part of
    /// the stage list at start unless `None`.
    pub hold_stage: Option<String>,
    /// External ids compare case-sensitively. Inferred default: no.
    pub external_id_case_sensitive: bool,
    /// How far back Get Updated / Get Deleted may start (documented: 30 days).
    pub replication_window: Duration,
    /// Most ids Get Updated returns (documented: 600,000).
    pub replication_max_ids: usize,
    /// Oldest API version served (31 for v31.0: older ones are retired).
    pub oldest_api_version: u32,
    /// Newest API version served (65 for v65.0, Winter '26).
    pub latest_api_version: u32,
    /// How long an unused query locator stays valid. Inferred: about 15 minutes of inactivity;
    /// a connector paging slowly must be ready to re-run its query.
    pub query_locator_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consumer_key: CLIENT_ID.into(),
            consumer_secret: CLIENT_SECRET.into(),
            jwt_users: vec![INTEGRATION_USER.into()],
            seller_user: SELLER_USER.into(),
            jwt_audiences: LOGIN_AUDIENCES.iter().map(|a| a.to_string()).collect(),
            accept_base_url_audience: true,
            jwt_max_lifetime: Duration::from_secs(180),
            client_credentials: true,
            certificate_file: None,
            private_key_file: None,
            session_lifetime: Duration::from_secs(2 * 3600),
            daily_api_limit: 15_000,
            query_batch_size: 2000,
            multi_currency: false,
            currencies: [
                "USD", "EUR", "GBP", "NOK", "SEK", "DKK", "JPY", "AUD", "CAD",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect(),
            corporate_currency: "USD".into(),
            connector_fields: true,
            hold_stage: Some("On Hold".into()),
            external_id_case_sensitive: false,
            replication_window: Duration::from_secs(30 * 24 * 3600),
            replication_max_ids: 600_000,
            oldest_api_version: 31,
            latest_api_version: 65,
            query_locator_lifetime: Duration::from_secs(15 * 60),
        }
    }
}

impl Config {
    /// An org as it is before `cosell crm setup`: the standard objects and fields and the
    /// standard stages only, without the connector's custom fields on Opportunity and Lead,
    /// its solution-link and catalog objects, and its hold stage.
    pub fn bare(&mut self) {
        self.connector_fields = false;
        self.hold_stage = None;
    }
}

/// A user of the org (the API users and the seller).
#[derive(Debug, Clone)]
struct User {
    id: String,
    username: String,
}

/// An issued access token.
#[derive(Debug, Clone)]
struct Session {
    user_id: String,
    expires_at: DateTime<Utc>,
}

/// The rolling 24-hour API request count.
#[derive(Debug, Default)]
struct Budget {
    /// Overrides [`Config::daily_api_limit`] (set through the control API).
    max: Option<u64>,
    /// (when, how many) calls, oldest first; buckets so a test can spend a large budget at once.
    calls: VecDeque<(DateTime<Utc>, u64)>,
}

impl Budget {
    fn used(&mut self, now: DateTime<Utc>) -> u64 {
        let horizon = now - chrono::Duration::hours(24);
        while self.calls.front().is_some_and(|(t, _)| *t <= horizon) {
            self.calls.pop_front();
        }
        self.calls.iter().map(|(_, n)| n).sum()
    }
}

/// An open query's remaining records, fetched through `nextRecordsUrl`.
#[derive(Debug)]
struct Cursor {
    records: Vec<serde_json::Value>,
    batch: usize,
    /// Last fetch; the locator expires [`Config::query_locator_lifetime`] after it.
    used_at: DateTime<Utc>,
}

/// Everything this simulator keeps; reset by `POST /_sandbox/reset`.
#[derive(Debug)]
pub struct State {
    config: Config,
    schema: Vec<SObject>,
    stages: Vec<Stage>,
    data: store::Data,
    users: Vec<User>,
    org_id: String,
    sessions: HashMap<String, Session>,
    cursors: HashMap<String, Cursor>,
    budget: Budget,
    /// The connected app's certificate (and key, when known), or why it could not be loaded.
    connected_app: Result<Arc<ConnectedApp>, String>,
    /// While the REST API serves one request: the schema as that request sees it (the caller's
    /// field-level security applied, or the Tooling API's objects for a tooling query).
    /// `None` otherwise, so the control API sees everything.
    view: Option<Vec<SObject>>,
    /// Ids of the Tooling API's `CustomField` and `CustomObject` rows, by lower-cased
    /// `Object.Field` or object name, allocated when first shown so they stay stable.
    tooling_ids: HashMap<String, String>,
    /// The `Metadata` a custom object was created with, by lower-cased name.
    object_metadata: HashMap<String, serde_json::Value>,
}

impl State {
    /// A fresh org: the seeded schema and stages, the users, no records, no sessions. The
    /// connected app's generated key is the process's, so it survives a reset.
    pub fn new(config: &Config) -> State {
        let mut state = State {
            config: config.clone(),
            schema: schema::seed(config),
            stages: schema::default_stages(config),
            data: store::Data::default(),
            users: Vec::new(),
            org_id: ids::make_id("00D", 1),
            sessions: HashMap::new(),
            cursors: HashMap::new(),
            budget: Budget::default(),
            connected_app: auth::connected_app(config),
            view: None,
            tooling_ids: HashMap::new(),
            object_metadata: HashMap::new(),
        };
        let mut usernames = config.jwt_users.clone();
        usernames.push(config.seller_user.clone());
        for username in usernames {
            state.add_user(&username);
        }
        state.sync_stage_records();
        state
    }

    fn add_user(&mut self, username: &str) {
        if self.user_by_name(username).is_some() {
            return;
        }
        let id = self.data.next_id("005");
        let now = store::sf_datetime(Utc::now());
        let name = username.split('@').next().unwrap_or(username).to_string();
        let mut rec = store::Record::new();
        for (k, v) in [
            ("Id", json!(id)),
            ("Username", json!(username)),
            ("Name", json!(name)),
            ("Email", json!(username)),
            ("IsActive", json!(true)),
            ("CreatedDate", json!(now)),
            ("CreatedById", json!(id)),
            ("LastModifiedDate", json!(now)),
            ("LastModifiedById", json!(id)),
            ("SystemModstamp", json!(now)),
        ] {
            rec.insert(k.into(), v);
        }
        self.data
            .tables
            .entry("User".into())
            .or_default()
            .insert(id.clone(), rec);
        self.users.push(User {
            id,
            username: username.to_string(),
        });
    }

    fn user_by_name(&self, username: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    /// The seller's id: `LastModifiedById` of control-API edits.
    fn seller_id(&self) -> String {
        self.user_by_name(&self.config.seller_user)
            .map(|u| u.id.clone())
            .unwrap_or_default()
    }

    /// `OpportunityStage` rows mirror the configured stages, so SOQL can read them.
    fn sync_stage_records(&mut self) {
        let now = store::sf_datetime(Utc::now());
        let admin = self.users.first().map(|u| u.id.clone()).unwrap_or_default();
        let table = self
            .data
            .tables
            .entry("OpportunityStage".into())
            .or_default();
        table.clear();
        for (i, s) in self.stages.iter().enumerate() {
            let id = ids::make_id("01J", i as u64 + 1);
            let mut rec = store::Record::new();
            for (k, v) in [
                ("Id", json!(id)),
                ("ApiName", json!(s.name)),
                ("MasterLabel", json!(s.name)),
                ("IsActive", json!(s.is_active)),
                ("IsClosed", json!(s.is_closed)),
                ("IsWon", json!(s.is_won)),
                ("DefaultProbability", json!(s.default_probability)),
                ("SortOrder", json!(i + 1)),
                ("CreatedDate", json!(now)),
                ("CreatedById", json!(admin)),
                ("LastModifiedDate", json!(now)),
                ("LastModifiedById", json!(admin)),
                ("SystemModstamp", json!(now)),
            ] {
                rec.insert(k.into(), v);
            }
            table.insert(id, rec);
        }
    }
}

/// The API routes (counted and subject to faults).
pub fn routes() -> Router<App> {
    api::routes()
}

/// The control routes under `/_sandbox/salesforce/`.
pub fn control_routes() -> Router<App> {
    control::routes()
}

/// The per-route counter key for a request this API serves through a wildcard route: the
/// version becomes `v{version}`, record ids `{id}`, upsert keys `{value}` and query locators
/// `{locator}`, so counts are per object and operation.
pub fn route_label(path: &str) -> Option<String> {
    api::route_label(path)
}

/// The body of an injected fault, in this API's error shape.
pub fn fault_response(status: StatusCode, retry_after: Option<u64>) -> Response {
    errors::fault_response(status, retry_after)
}
