//! The Dataverse Web API (Dynamics 365) at `/api/data/v9.2/`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;

/// Settings of this simulator; part of [`crate::SandboxConfig`].
#[derive(Debug, Clone, Default)]
pub struct Config {}

/// Everything this simulator keeps; reset by `POST /_sandbox/reset`.
#[derive(Debug, Default)]
pub struct State {}

impl State {
    pub fn new(_config: &Config) -> State {
        State::default()
    }
}

/// The API routes (counted and subject to faults).
pub fn routes() -> Router<App> {
    Router::new()
}

/// The control routes under `/_sandbox/dataverse/`.
pub fn control_routes() -> Router<App> {
    Router::new()
}

/// The per-route counter key for a request this API serves through a wildcard route, e.g.
/// with the id replaced by a placeholder; `None` when `path` is not this API's.
pub fn route_label(path: &str) -> Option<String> {
    path.starts_with("/api/data/").then(|| path.to_string())
}

/// The body of an injected fault, in this API's error shape.
pub fn fault_response(status: StatusCode, _retry_after: Option<u64>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": format!("Injected fault: {status}")}})),
    )
        .into_response()
}
