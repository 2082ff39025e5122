//! The Dataverse Web API (Dynamics 365) at `/api/data/v9.2/` (v9.0 and v9.1 paths too), as the
//! co-sell connector uses it. The facts followed are in `docs/dataverse.md` (cited below by
//! section); where that page marks a fact inferred or not documented, the behaviour is a field
//! of [`Config`] and the default is written down there.
//!
//! The sandbox's base URL is the organisation URL: a client gets a token for
//! `{base_url}/.default` from the sandbox's Entra endpoint, as an application user.
//!
//! # Behaviours
//! - Auth ("Sign-in (client credentials)"): a bearer token for the org URL; missing, unknown,
//!   expired or for another audience → 401 with the error body and a `WWW-Authenticate` naming
//!   the authority.
//! - Tables: `opportunities`, `accounts`, `contacts`, `leads`, `transactioncurrencies` (seeded
//!   from [`Config::currencies`]), `cosell_solutionlinks`, `cosell_solutioncatalogs`. The schema is
//!   data ([`schema`]): columns have a type, a maximum length, a required flag; the control API
//!   adds columns, alternate keys and changes requirement levels. Besides the connector's
//!   columns, the opportunity has the Services co-sell text columns `cosell_solutionarea`,
//!   `cosell_solutionplay`, `cosell_partnerrole` and `cosell_marketplaceintent`.
//! - Every row has `@odata.etag` (`W/"<n>"`, one global row-version counter), `versionnumber`,
//!   `createdon`, `modifiedon`, `_createdby_value`, `_modifiedby_value`, `_ownerid_value`.
//! - Writes ("Create, update, delete", "Concurrency (ETag / If-Match)", "Upsert and alternate
//!   keys", "Lookups"): create 204 + `OData-EntityId`, or 201 + body with
//!   `Prefer: return=representation` (and `$select`); PATCH updates (204/200) or upserts;
//!   `If-Match: *` → 404 when missing, `If-None-Match: *` → 412 when present, a stale etag →
//!   412 with the documented message; DELETE 204/404 (a stale `If-Match` → 412). Unknown
//!   properties, wrong types, too-long text, missing required columns → 400 naming them.
//!   Lookups are bound with `<nav>@odata.bind` (relative or absolute URL, GUID or alternate
//!   key); a bind to a missing row → 400; `null` clears it.
//! - Reads ("Concurrency (ETag / If-Match)", "Queries and paging"): `GET set(id)` with
//!   `$select`, `If-None-Match: <etag>` → 304. Collections take `$select`, `$filter`,
//!   `$orderby`, `$top`, `$count`; `Prefer: odata.maxpagesize` pages with an opaque
//!   `$skiptoken` in `@odata.nextLink` and `Preference-Applied`; `$skip` → 400; `$top` is
//!   ignored with a maxpagesize; default and maximum page 5000. `$expand`, `$apply`, `$batch`,
//!   `$metadata`, property paths → 501 (not simulated).
//! - Change tracking ("Change tracking"): `Prefer: odata.track-changes` → `@odata.deltaLink`
//!   on the last page; the delta returns rows created or changed since, in full with the
//!   original `$select`, then `$deletedEntity` entries, and a new delta link.
//!   `$filter`/`$orderby`/`$top`/`$expand` with it → 400.
//! - Opportunity ("Opportunity and lead states"): statecode/statuscode pairs,
//!   `WinOpportunity`/`LoseOpportunity`, system-calculated revenue; lead states likewise.
//! - Service protection ("Service protection (429)"): a request budget per caller over a
//!   sliding window → 429 with `Retry-After` seconds and code `0x80072322`;
//!   `x-ms-ratelimit-burst-remaining-xrm-requests` on every answer.
//! - Metadata ("Metadata"): `EntityDefinitions`, their `Attributes` (with casts and
//!   `$expand=OptionSet`), `RelationshipDefinitions`, `InsertStatusValue`, `PublishXml`, and
//!   the `publishers`, `solutions` and `solutioncomponents` tables; tables, columns and
//!   lookups created through them are usable by the data API at once (`metadata.rs`).
//!   [`Config::bare`] starts an environment before the connector's setup.
//!
//! # Choices where the documentation is silent (all inferred)
//! - Delta responses are not paged; deletions come after changes ("Change tracking":
//!   documented for the SDK). A row created and deleted between two deltas appears as deleted.
//!   An expired delta token ([`Config::change_tracking_expiry`]) → 400.
//! - On a table with change tracking off, `Prefer: odata.track-changes` is ignored (no delta
//!   link) and a `$deltatoken` → 400.
//! - Default order (no `$orderby`) is by primary key; pages continue after the last row's sort
//!   key, so rows changed between pages are neither repeated nor skipped.
//! - Closed opportunities cannot be edited; `statecode: 0` alone reopens them
//!   ([`Config::allow_reopen`]). API clients close them with the actions, not with `statecode`
//!   ([`Config::allow_opportunity_close_by_patch`], one of the "Open questions"); a human
//!   (control API) closing by status gets the same effects as the actions.
//! - Win sets `actualvalue` (the close's `actualrevenue`, else `estimatedvalue`),
//!   `actualclosedate` (the close's `actualend`, else today) and `closeprobability` 100;
//!   Lose sets 0 and no actual value; reopening clears both.
//! - `isrevenuesystemcalculated: true` makes `estimatedvalue` the sum of the opportunity's
//!   product lines, which the sandbox does not model as rows: the total is 0 until the control
//!   API sets it (`…/opportunities({id})/productlines`). A written value is overwritten.
//! - Deleting a row clears the lookups pointing at it (relationship behaviour "remove link"),
//!   which counts as a change of those rows.
//! - Error codes other than `0x80072322` are the sandbox's (listed in `error.rs`).
//! - The solution-link table's logical name is `cosell_solutionlink` (primary key
//!   `cosell_solutionlinkid`), because `cosell_solutionid` is the Partner Center solution id
//!   column; its entity set is `cosell_solutionlinks` as the docs name it.

mod api;
mod control;
mod error;
mod limits;
mod metadata;
mod path;
mod query;
pub mod schema;
mod store;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};

use crate::app::App;
pub use schema::{
    Currency, Field, FieldType, LocalizedLabel, LookupTarget, OptionLabel, Publisher, Solution,
    TableDef, TableMeta,
};
pub use store::{APP_USER_ID, BUSINESS_UNIT_ID, ORGANIZATION_ID, SELLER_USER_ID, State};

/// Settings of this simulator; part of [`crate::SandboxConfig`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables at start and after a reset: the standard and connector columns. Each table's
    /// `change_tracking` flag (default on) is the per-table change-tracking switch.
    pub tables: Vec<TableDef>,
    /// Rows of `transactioncurrencies` at start. Leave one out to play a missing currency.
    pub currencies: Vec<Currency>,
    /// Rows of `publishers` at start: the default publisher (prefix `new`) and, with the
    /// connector installed, the connector's (`cosell`).
    pub publishers: Vec<Publisher>,
    /// Rows of `solutions` at start: the default solution and, with the connector
    /// installed, `CoSellConnector`. Metadata creates go into one of them
    /// (docs/dataverse.md, "Metadata").
    pub solutions: Vec<Solution>,
    /// ISO code of the currency a new row gets when it binds none (inferred: Dataverse fills
    /// in the organisation's base currency). `None` leaves it empty, so a required
    /// `transactioncurrencyid` must be bound.
    pub default_currency: Option<String>,
    /// Requests per caller per [`Config::request_window`] (docs/dataverse.md, "Service
    /// protection (429)": 6000 per 300 s).
    pub request_limit: u32,
    /// The sliding window the budget is counted over (docs/dataverse.md, "Service protection
    /// (429)": 300 s).
    pub request_window: Duration,
    /// Default and largest page (docs/dataverse.md, "Queries and paging": 5000).
    pub max_page_size: usize,
    /// Refuse writes that leave an ApplicationRequired column empty (on create, or when an
    /// update clears it). Inferred (docs/dataverse.md, "Open questions"); the real API may
    /// leave this level to forms and accept such writes; set false to play that.
    pub enforce_required: bool,
    /// Refuse (400) writes to system-maintained columns (`createdon`, `ownerid`, …) rather
    /// than dropping them silently. Unknown which the service does; default: drop.
    pub reject_read_only_writes: bool,
    /// Let API clients close an opportunity by PATCHing `statecode` 1/2 (docs/dataverse.md,
    /// "Open questions").
    /// Default false: they must use `WinOpportunity`/`LoseOpportunity`.
    pub allow_opportunity_close_by_patch: bool,
    /// Let a PATCH of only `statecode: 0` (and an open `statuscode`) reopen a closed
    /// opportunity, as the UI's "Reopen Opportunity" does. Inferred; default true.
    pub allow_reopen: bool,
    /// Life of a delta token (docs/dataverse.md, "Change tracking":
    /// `ExpireChangeTrackingInDays`, default 7).
    pub change_tracking_expiry: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            tables: schema::standard_tables(),
            currencies: schema::standard_currencies(),
            publishers: vec![schema::default_publisher(), schema::connector_publisher()],
            solutions: vec![schema::default_solution(), schema::connector_solution()],
            default_currency: Some("USD".into()),
            request_limit: 6000,
            request_window: Duration::from_secs(300),
            max_page_size: 5000,
            enforce_required: true,
            reject_read_only_writes: false,
            allow_opportunity_close_by_patch: false,
            allow_reopen: true,
            change_tracking_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Config {
    /// A table of [`Config::tables`] by entity set, to adjust it before start.
    pub fn table_mut(&mut self, entity_set: &str) -> Option<&mut TableDef> {
        self.tables.iter_mut().find(|t| t.entity_set == entity_set)
    }

    /// An environment before the connector's setup (`--bare-schema`): the standard tables
    /// without the connector's columns on opportunity and lead, without its solution-link and
    /// catalog tables, change tracking off on the opportunity, and only the default publisher
    /// and solution. The opportunity keeps its standard On Hold status reason (2, in Open), as
    /// Dynamics 365 Sales ships it. `cosell crm setup` then creates the rest through the
    /// metadata API.
    pub fn bare(&mut self) {
        self.tables = schema::bare_tables();
        self.publishers = vec![schema::default_publisher()];
        self.solutions = vec![schema::default_solution()];
    }
}

/// The API routes (counted and subject to faults).
pub fn routes() -> Router<App> {
    Router::new().route("/api/data/{version}/{*path}", any(api::handle))
}

/// The control routes under `/_sandbox/dataverse/`.
pub fn control_routes() -> Router<App> {
    Router::new()
        .route("/_sandbox/dataverse/schema", get(control::schema))
        .route(
            "/_sandbox/dataverse/schema/{set}",
            get(control::table).patch(control::change_table),
        )
        .route(
            "/_sandbox/dataverse/schema/{set}/fields",
            post(control::add_field),
        )
        .route(
            "/_sandbox/dataverse/schema/{set}/fields/{name}",
            patch(control::change_field),
        )
        .route(
            "/_sandbox/dataverse/schema/{set}/keys",
            post(control::add_key),
        )
        .route(
            "/_sandbox/dataverse/limits",
            get(control::limits).patch(control::change_limits),
        )
        .route(
            "/_sandbox/dataverse/limits/usage",
            axum::routing::delete(control::clear_usage),
        )
        .route("/_sandbox/dataverse/users", get(control::users))
        .route(
            "/_sandbox/dataverse/opportunitycloses",
            get(control::closes),
        )
        .route("/_sandbox/dataverse/{*path}", any(control::rows))
}

/// The per-route counter key for a request this API serves through a wildcard route, e.g.
/// with the id replaced by a placeholder; `None` when `path` is not this API's.
pub fn route_label(path: &str) -> Option<String> {
    path::label(path)
}

/// The body of an injected fault, in this API's error shape. A 429 carries the documented
/// service-protection code and message (with the documented default limits, since the fault
/// is not tied to a budget).
pub fn fault_response(status: StatusCode, retry_after: Option<u64>) -> Response {
    let err = if status == StatusCode::TOO_MANY_REQUESTS {
        error::DvError::throttled(6000, 300, retry_after.unwrap_or(1))
    } else {
        error::DvError {
            retry_after,
            ..error::DvError::new(
                status,
                error::code_for_status(status),
                format!("Injected fault: {status}"),
            )
        }
    };
    let mut resp = err.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; odata.metadata=minimal"),
    );
    resp
}
