//! The HTTP surface: what the page component answers (with the counter and recorder called
//! in-process instead of over Spin's service chaining), plus Spin's liveness route.
//!
//! - `GET /`: counts and records the visit at once, then HTML or JSON; always 200, with
//!   `x-visits-degraded` naming any part that failed.
//! - `GET /healthz`: readiness, 200 or 503 (visits-core's HealthReport).
//! - `GET /.well-known/spin/health`: liveness, 200 "OK" as Spin answers it.
//! - `GET /metrics`: Prometheus metrics (monitoring/README.md); itself not counted.
//! - Anything else: 404 (unknown path) or 405 (`/`, `/healthz` with another method), JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use visits_core::api::ErrorBody;
use visits_core::client_ip::{client_ip, Origin};
use visits_core::config::PageSettings;
use visits_core::health::HealthReport;
use visits_core::page::{wants_json, PageView, Section, DEGRADED_HEADER};
use visits_core::record::NewVisit;
use visits_core::UtcTime;
use visits_metrics::{Backend, Metrics};

use crate::counter::Counter;
use crate::recorder::Recorder;

/// What every request shares: settings read once at startup and the (pooled) backends.
pub struct App {
    pub metrics: Metrics,
    pub page: PageSettings,
    pub counter: Counter,
    /// `None` when `records_backend = "off"`.
    pub recorder: Option<Recorder>,
}

/// The routes; `log` adds one stderr line per request.
pub fn router(app: Arc<App>, log: bool) -> Router {
    let router = Router::new()
        // Explicit HEAD handlers: axum would otherwise run the GET handler for HEAD, counting
        // a visit nobody sees; the page component answers HEAD with 405 too.
        .route("/", get(index).head(not_allowed).fallback(not_allowed))
        .route(
            "/healthz",
            get(healthz).head(not_allowed).fallback(not_allowed),
        )
        .route("/.well-known/spin/health", any(liveness))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), measure))
        // Added after the layer: scrapes are not app traffic.
        .route(
            "/metrics",
            get(metrics).head(not_allowed).fallback(not_allowed),
        )
        .with_state(app);
    if log {
        router.layer(middleware::from_fn(log_request))
    } else {
        router
    }
}

async fn measure(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let served = app
        .metrics
        .request(request.method().as_str(), request.uri().path());
    let response = next.run(request).await;
    served.done(response.status().as_u16());
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, visits_metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        app.metrics.encode(),
    )
        .into_response()
}

async fn index(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let peer = peer.to_string();
    let origin = Origin {
        peer: Some(&peer),
        x_forwarded_for: header("x-forwarded-for"),
        x_real_ip: header("x-real-ip"),
    };
    let ip = client_ip(origin, app.page.trust_forwarded_for);
    let count = async {
        let result = app.counter.increment(&app.page.counter_key).await;
        app.metrics.backend_call(Backend::Counter, result.is_ok());
        match result {
            Ok(n) => Section::Ready(n),
            Err(e) => unavailable("counter", e),
        }
    };
    let records = async {
        let Some(recorder) = &app.recorder else {
            return (Section::Disabled, 0);
        };
        let visit = ip.map(|client_ip| NewVisit {
            client_ip,
            page: "/".into(),
        });
        let result = recorder
            .record_and_list(visit, app.page.records_limit)
            .await;
        app.metrics.backend_call(Backend::Recorder, result.is_ok());
        match result {
            Ok(listing) => (Section::Ready(listing.records), listing.skipped),
            Err(e) => (unavailable("recorder", e), 0),
        }
    };
    let (visits, (records, skipped)) = tokio::join!(count, records);
    let view =
        PageView::new(&app.page, UtcTime::now(), visits, records).with_records_skipped(skipped);
    let (content_type, body) = if wants_json(header("accept")) {
        ("application/json", view.to_json())
    } else {
        ("text/html; charset=utf-8", view.to_html())
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response();
    let degraded = view.degraded();
    if !degraded.is_empty() {
        let value = HeaderValue::from_str(&degraded.join(",")).expect("part names are ASCII");
        response.headers_mut().insert(DEGRADED_HEADER, value);
    }
    response
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let recorder = async {
        match &app.recorder {
            Some(r) => Some(r.health().await),
            None => None,
        }
    };
    let (counter, recorder) = tokio::join!(app.counter.health(), recorder);
    let mut report = HealthReport::new().check("counter", counter);
    if let Some(recorder) = recorder {
        report = report.check("recorder", recorder);
    }
    let status = StatusCode::from_u16(report.status_code()).expect("200 or 503");
    json(status, report.to_json())
}

async fn liveness() -> &'static str {
    "OK"
}

async fn not_allowed() -> Response {
    json(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorBody::json("only GET is allowed here"),
    )
}

async fn not_found(uri: Uri) -> Response {
    json(
        StatusCode::NOT_FOUND,
        ErrorBody::json(format!("no page at {}", uri.path())),
    )
}

/// A JSON reply that no cache keeps (spin-glue's `json`).
fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn unavailable<T>(part: &str, reason: String) -> Section<T> {
    eprintln!("page: {part} unavailable: {reason}");
    Section::Unavailable(reason)
}

/// `GET / 200 1.234ms`: method, path, status and time to the response head.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    eprintln!(
        "{method} {path} {} {:.3}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}
