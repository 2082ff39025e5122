//! Salesforce's error shapes: the REST API answers with an array of
//! `{"message","errorCode","fields"?}` (docs/salesforce.md, "Errors"), the OAuth endpoint with
//! `{"error","error_description"}` ("Sign-in"), and sObject Collections report per-record
//! errors as `{"statusCode","message","fields"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One entry of an error array. Kept apart from the status so that sObject Collections can put
/// it into a per-record result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorItem {
    pub code: &'static str,
    pub message: String,
    /// The fields the error is about; only sent when the error names fields.
    pub fields: Option<Vec<String>>,
}

impl ErrorItem {
    pub fn new(code: &'static str, message: impl Into<String>) -> ErrorItem {
        ErrorItem {
            code,
            message: message.into(),
            fields: None,
        }
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> ErrorItem {
        self.fields = Some(fields);
        self
    }

    /// The REST API's shape.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"message": self.message, "errorCode": self.code});
        if let (Some(f), Some(o)) = (&self.fields, v.as_object_mut()) {
            o.insert("fields".into(), json!(f));
        }
        v
    }

    /// The shape inside sObject Collections results, which always carries `fields`.
    pub fn to_collection_json(&self) -> Value {
        json!({
            "statusCode": self.code,
            "message": self.message,
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }
}

/// A refused REST API request: a status and an error array.
#[derive(Debug, Clone)]
pub struct SfError {
    pub status: StatusCode,
    pub items: Vec<ErrorItem>,
}

impl SfError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> SfError {
        SfError {
            status,
            items: vec![ErrorItem::new(code, message)],
        }
    }

    pub fn bad_request(item: ErrorItem) -> SfError {
        SfError {
            status: StatusCode::BAD_REQUEST,
            items: vec![item],
        }
    }

    pub fn not_found() -> SfError {
        SfError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    /// The 401 for a missing, unknown or expired token (docs/salesforce.md, "Sign-in": the code
    /// is documented, the message inferred).
    pub fn invalid_session() -> SfError {
        SfError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        )
    }

    pub fn malformed_id(what: &str, id: &str) -> SfError {
        SfError::bad_request(ErrorItem::new(
            "MALFORMED_ID",
            format!("{what} ID: id value of incorrect type: {id}"),
        ))
    }

    pub fn json_parser(message: impl Into<String>) -> SfError {
        SfError::bad_request(ErrorItem::new("JSON_PARSER_ERROR", message))
    }
}

impl From<ErrorItem> for SfError {
    fn from(item: ErrorItem) -> SfError {
        SfError::bad_request(item)
    }
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        let body: Vec<Value> = self.items.iter().map(ErrorItem::to_json).collect();
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // What Salesforce's REST endpoints challenge with.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        resp
    }
}

/// A refused token request, in the OAuth endpoint's shape.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: description.into(),
        }
    }

    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}

/// The body of an injected fault: the REST API's error array, with a code that names the
/// status family the way Salesforce's own codes do.
pub fn fault_response(status: StatusCode, retry_after: Option<u64>) -> Response {
    let code = match status.as_u16() {
        401 => "INVALID_SESSION_ID",
        403 => "REQUEST_LIMIT_EXCEEDED",
        404 => "NOT_FOUND",
        409 | 412 => "PRECONDITION_FAILED",
        s if s >= 500 => "SERVER_UNAVAILABLE",
        _ => "UNKNOWN_EXCEPTION",
    };
    let mut resp = SfError::new(status, code, format!("Injected fault: {status}")).into_response();
    // Salesforce itself never sends Retry-After (docs/salesforce.md, "Limits"); a fault rule
    // that asks for one gets it so that a client's handling of the header can still be
    // exercised.
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
