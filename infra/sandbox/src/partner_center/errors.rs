//! Partner Center's error envelope: `{"error":{"code","message","target","innerError"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct PcError {
    pub status: StatusCode,
    pub body: Value,
}

impl PcError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> PcError {
        PcError {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
        }
    }

    pub fn with_target(mut self, target: &str) -> PcError {
        if let Some(err) = self.body.get_mut("error").and_then(Value::as_object_mut) {
            err.insert("target".into(), Value::String(target.into()));
        }
        self
    }

    pub fn invalid(message: impl Into<String>) -> PcError {
        PcError::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }

    pub fn invalid_field(target: &str, message: impl Into<String>) -> PcError {
        PcError::invalid(message).with_target(target)
    }

    pub fn not_found(what: &str) -> PcError {
        PcError::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            format!("{what} was not found."),
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> PcError {
        PcError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn access_denied(message: impl Into<String>) -> PcError {
        PcError::new(StatusCode::FORBIDDEN, "accessDenied", message)
    }

    /// The body documented for a stale `If-Match`.
    pub fn precondition_failed() -> PcError {
        PcError {
            status: StatusCode::PRECONDITION_FAILED,
            body: json!({"error": {
                "code": "preconditionFailed",
                "message": "A precondition provided in the request (such as an if-match header) does not match the resource's current state.",
                "target": "ETag",
                "innerError": {
                    "code": "99918",
                    "message": "One of the specified pre-condition is not met. Etag value did not Match",
                    "details": null
                }
            }}),
        }
    }
}

impl IntoResponse for PcError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"partner-center\""),
            );
        }
        resp
    }
}

/// Throttled Partner Center responses are plain JSON, not the error envelope.
pub fn throttled(retry_after_secs: u64) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "statusCode": 429,
            "message": format!("Rate limit is exceeded. Try again in {retry_after_secs} seconds.")
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

/// The code Partner Center uses for a given HTTP status, for injected faults.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalidRequest",
        401 => "unauthenticated",
        403 => "accessDenied",
        404 => "itemNotFound",
        409 => "resourceModified",
        412 => "preconditionFailed",
        503 => "serviceNotAvailable",
        _ => "generalException",
    }
}
