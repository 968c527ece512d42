//! page: the public face. `GET /` counts the visit (counter) and records it (recorder) — both
//! calls in flight at once over Spin's local service chaining — then renders HTML or JSON.
//! `GET /healthz` is the readiness check: it asks both backends. Rendering and rules live in
//! visits-core; this file only moves data between Spin and it.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use visits_core::api::{self, BackendStatus, CountReply, ErrorBody, RecordsReply};
use visits_core::client_ip::{client_ip, Origin};
use visits_core::config::PageSettings;
use visits_core::health::HealthReport;
use visits_core::page::{wants_json, PageView, Section, DEGRADED_HEADER};
use visits_core::record::NewVisit;
use visits_core::UtcTime;

#[http_component]
async fn handle(req: Request) -> Response {
    let settings = match PageSettings::load(&spin_glue::settings()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("page: {e}");
            return spin_glue::error(500, e.to_string());
        }
    };
    match (req.method(), req.path()) {
        (Method::Get, "/") => index(&req, &settings).await,
        (Method::Get, "/healthz") => health(&settings).await,
        (_, "/" | "/healthz") => spin_glue::error(405, "only GET is allowed here"),
        (_, path) => spin_glue::error(404, format!("no page at {path}")),
    }
}

async fn index(req: &Request, settings: &PageSettings) -> Response {
    let header = |name| req.header(name).and_then(|v| v.as_str());
    let origin = Origin {
        peer: header("spin-client-addr"),
        x_forwarded_for: header("x-forwarded-for"),
        x_real_ip: header("x-real-ip"),
    };
    let ip = client_ip(origin, settings.trust_forwarded_for);
    let records = async {
        if settings.records_enabled {
            record_and_list(ip, settings.records_limit).await
        } else {
            (Section::Disabled, 0)
        }
    };
    let (visits, (records, skipped)) = futures::join!(count(&settings.counter_key), records);
    let view =
        PageView::new(settings, UtcTime::now(), visits, records).with_records_skipped(skipped);
    let (content_type, body) = if wants_json(header("accept")) {
        ("application/json", view.to_json())
    } else {
        ("text/html; charset=utf-8", view.to_html())
    };
    let mut builder = Response::builder();
    builder
        .status(200)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("vary", "accept");
    let degraded = view.degraded();
    if !degraded.is_empty() {
        builder.header(DEGRADED_HEADER, degraded.join(","));
    }
    builder.body(body).build()
}

async fn count(key: &str) -> Section<u64> {
    let url = format!("{}/count/{key}", api::COUNTER_ORIGIN);
    match call::<CountReply>(Request::post(url, Vec::new()).build()).await {
        Ok(reply) => Section::Ready(reply.count),
        Err(e) => unavailable("counter", e),
    }
}

/// Stores this visit and lists the newest records in one round trip. Without a usable client
/// address (the host gave none) the visit cannot be recorded, but the list is still shown.
async fn record_and_list(
    ip: Option<std::net::IpAddr>,
    limit: usize,
) -> (Section<Vec<visits_core::Record>>, usize) {
    let url = format!("{}/records?limit={limit}", api::RECORDER_ORIGIN);
    let request = match ip {
        Some(client_ip) => {
            let visit = NewVisit {
                client_ip,
                page: "/".into(),
            };
            let body = serde_json::to_vec(&visit).expect("a visit serialises");
            Request::post(url, body)
                .header("content-type", "application/json")
                .build()
        }
        None => {
            eprintln!("page: no client address on the request; listing records without storing");
            Request::get(url).build()
        }
    };
    match call::<RecordsReply>(request).await {
        Ok(reply) => (Section::Ready(reply.records), reply.skipped),
        Err(e) => (unavailable("recorder", e), 0),
    }
}

async fn health(settings: &PageSettings) -> Response {
    let counter = backend_status(format!("{}/health", api::COUNTER_ORIGIN));
    let recorder = async {
        if settings.records_enabled {
            Some(backend_status(format!("{}/health", api::RECORDER_ORIGIN)).await)
        } else {
            None
        }
    };
    let (counter, recorder) = futures::join!(counter, recorder);
    let mut report = HealthReport::new().check("counter", counter);
    if let Some(recorder) = recorder {
        report = report.check("recorder", recorder);
    }
    spin_glue::json(report.status_code(), report.to_json())
}

async fn backend_status(url: String) -> Result<(), String> {
    let status = call::<BackendStatus>(Request::get(url).build()).await?;
    match (status.ok, status.error) {
        (true, _) => Ok(()),
        (false, e) => Err(e.unwrap_or_else(|| format!("{}: not ready", status.backend))),
    }
}

/// One service-chaining call: a 2xx JSON body of type `T`, or a one-line reason.
async fn call<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, String> {
    let response: Response = spin_sdk::http::send(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = *response.status();
    let body = response.body();
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| format!("unexpected reply: {e}"));
    }
    // Backends answer errors (and 503 health) with a JSON body saying why.
    // (Their errors already name the backend: "redis: PING failed: ...".)
    if let Ok(status) = serde_json::from_slice::<BackendStatus>(body) {
        return Err(status
            .error
            .unwrap_or_else(|| format!("{}: not ready", status.backend)));
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => Err(e.error),
        Err(_) => Err(format!("HTTP {status}")),
    }
}

fn unavailable<T>(part: &str, reason: String) -> Section<T> {
    eprintln!("page: {part} unavailable: {reason}");
    Section::Unavailable(reason)
}
