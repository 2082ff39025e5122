//! The Web API's error envelope, `{"error":{"code":"0x…","message":"…"}}` (docs/dataverse.md,
//! "Errors"), and the codes the simulator uses. Only the service-protection code is documented;
//! the others are the sandbox's choice (two come from third-party code), kept here so they are
//! easy to change once verified.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Number of requests over the window exceeded (documented: docs/dataverse.md, "Service
/// protection (429)").
pub const CODE_THROTTLED: &str = "0x80072322";
/// Stale `If-Match` (seen in third-party code as ConcurrencyVersionMismatch; docs/dataverse.md,
/// "Errors").
pub const CODE_VERSION_MISMATCH: &str = "0x80060882";
/// Row not found (seen in third-party code; docs/dataverse.md, "Errors").
pub const CODE_NOT_FOUND: &str = "0x80040217";
/// A row with the same key exists (inferred).
pub const CODE_DUPLICATE: &str = "0x80040237";
/// A value the table's rules refuse (inferred: the platform's InvalidArgument).
pub const CODE_INVALID_ARGUMENT: &str = "0x80040203";
/// A request OData cannot read: unknown property, bad query option, bad key (inferred).
pub const CODE_BAD_REQUEST: &str = "0x80060888";

/// The metadata API's refusals (docs/dataverse.md, "Metadata"): Dataverse's codes for them are
/// not documented, so these are the sandbox's, listed in docs/sandbox.md.
///
/// A name already in use: a table, entity set, column (the primary key's included),
/// relationship, navigation property, publisher or solution unique name, or status value.
pub const CODE_NAME_IN_USE: &str = "0x8004F001";
/// A `SchemaName` without the prefix of the solution's publisher (`cosell_…`), or not a name.
pub const CODE_SCHEMA_NAME: &str = "0x8004F002";
/// A publisher's customization prefix or option value prefix outside the documented rules.
pub const CODE_PUBLISHER_PREFIX: &str = "0x8004F003";
/// A `MaxLength` outside the range of its column type.
pub const CODE_LENGTH: &str = "0x8004F004";
/// `MSCRM.SolutionUniqueName` (or `SolutionUniqueName`) naming no solution, or a managed one.
pub const CODE_SOLUTION: &str = "0x8004F005";
/// A definition the metadata API cannot create: wrong `@odata.type`, a required property
/// missing, not exactly one primary name column.
pub const CODE_DEFINITION: &str = "0x8004F006";
/// A PUT changing what cannot change: a table's identity, or change tracking once on.
pub const CODE_IMMUTABLE: &str = "0x8004F007";

/// The documented 412 message for a stale `If-Match` (docs/dataverse.md, "Concurrency (ETag /
/// If-Match)").
pub const VERSION_MISMATCH_MESSAGE: &str =
    "The version of the existing record doesn't match the RowVersion property provided.";

/// An error answer of the Web API. It crosses the simulator's layers (parsing, the row store,
/// the handlers) and becomes the response at the edge.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct DvError {
    pub status: StatusCode,
    /// Empty when Dataverse sends none (docs/dataverse.md, "Errors": the code is often empty).
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Set on 401 so clients can discover the authority, as the real service does.
    pub authenticate: Option<String>,
}

impl DvError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> DvError {
        DvError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            authenticate: None,
        }
    }

    /// A request OData cannot read (syntax, unknown names).
    pub fn bad_request(message: impl Into<String>) -> DvError {
        DvError::new(StatusCode::BAD_REQUEST, CODE_BAD_REQUEST, message)
    }

    /// A well-formed write the table's rules refuse.
    pub fn invalid(message: impl Into<String>) -> DvError {
        DvError::new(StatusCode::BAD_REQUEST, CODE_INVALID_ARGUMENT, message)
    }

    /// `account With Id = … Does Not Exist` (docs/dataverse.md, "Create, update, delete").
    pub fn row_missing(logical_name: &str, id: impl std::fmt::Display) -> DvError {
        DvError::new(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("{logical_name} With Id = {id} Does Not Exist"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> DvError {
        DvError::new(StatusCode::NOT_FOUND, CODE_NOT_FOUND, message)
    }

    pub fn version_mismatch() -> DvError {
        DvError::new(
            StatusCode::PRECONDITION_FAILED,
            CODE_VERSION_MISMATCH,
            VERSION_MISMATCH_MESSAGE,
        )
    }

    /// `If-None-Match: *` on an existing row (docs/dataverse.md, "Create, update, delete").
    pub fn duplicate() -> DvError {
        DvError::new(
            StatusCode::PRECONDITION_FAILED,
            CODE_DUPLICATE,
            "A record with matching key values already exists.",
        )
    }

    /// Something the real service supports and the sandbox does not (501 is in the list of
    /// docs/dataverse.md, "Errors").
    pub fn not_implemented(what: &str) -> DvError {
        DvError::new(
            StatusCode::NOT_IMPLEMENTED,
            "",
            format!("{what} is not supported by the sandbox."),
        )
    }

    pub fn unauthorized(message: impl Into<String>, authenticate: String) -> DvError {
        DvError {
            authenticate: Some(authenticate),
            ..DvError::new(StatusCode::UNAUTHORIZED, "", message)
        }
    }

    /// 429 with the documented code and message (docs/dataverse.md, "Service protection (429)").
    pub fn throttled(limit: u32, window_secs: u64, retry_after: u64) -> DvError {
        DvError {
            retry_after: Some(retry_after),
            ..DvError::new(
                StatusCode::TOO_MANY_REQUESTS,
                CODE_THROTTLED,
                format!(
                    "Number of requests exceeded the limit of {limit} over time window of {window_secs} seconds."
                ),
            )
        }
    }
}

impl IntoResponse for DvError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        let headers = resp.headers_mut();
        headers.insert("OData-Version", HeaderValue::from_static("4.0"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(v) = self
            .authenticate
            .and_then(|a| HeaderValue::from_str(&a).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// The code an injected fault of `status` carries.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => CODE_BAD_REQUEST,
        404 => CODE_NOT_FOUND,
        412 => CODE_VERSION_MISMATCH,
        429 => CODE_THROTTLED,
        _ => "",
    }
}
