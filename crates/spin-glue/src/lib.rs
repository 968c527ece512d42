//! The few lines every component would otherwise repeat: reading settings from Spin variables
//! and answering JSON.

use spin_sdk::http::Response;
use visits_core::config::Source;

/// Settings come from the component's Spin variables; a variable the component does not
/// declare reads as unset, so visits-core's default applies.
pub fn settings() -> Source<impl Fn(&str) -> Option<String>> {
    Source::new(|name| spin_sdk::variables::get(name).ok())
}

/// A JSON reply that no cache keeps.
pub fn json(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body)
        .build()
}

/// A JSON error reply: `{"error": message}`.
pub fn error(status: u16, message: impl Into<String>) -> Response {
    json(status, visits_core::api::ErrorBody::json(message))
}

/// A backend's `GET /health` reply: 200 with `ok: true`, or 503 saying why.
pub fn backend_status(backend: &str, result: Result<(), String>) -> Response {
    let status = visits_core::api::BackendStatus {
        backend: backend.to_string(),
        ok: result.is_ok(),
        error: result.err(),
    };
    let code = if status.ok { 200 } else { 503 };
    json(
        code,
        serde_json::to_string(&status).expect("a status serialises"),
    )
}
