//! The metrics both editions expose (the contract is `monitoring/README.md`): one registry with
//! the common `visits_*` families, so the native server and the runner cannot drift. Each
//! edition records requests and backend calls where it sees them, and may register families of
//! its own (the runner's `runner_*`) before serving [`Metrics::encode`] on `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Metrics::encode`] writes: Prometheus text format 0.0.4, which
/// every scraper and `promtool check metrics` read.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Request duration buckets, seconds: 0.5 ms (a native page view) to 10 s (a stuck backend).
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Wasm,
    Native,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Wasm => "wasm",
            Edition::Native => "native",
        }
    }
}

/// The two parts of a page view that live behind their own store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Counter,
    Recorder,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Counter => "counter",
            Backend::Recorder => "recorder",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    edition: &'static str,
    version: String,
}

/// The route label: the app's routes by name, everything else `other`, so a scan of random
/// paths cannot blow up the number of series.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/healthz" => "/healthz",
        "/.well-known/spin/health" => "/.well-known/spin/health",
        _ => "other",
    }
}

/// The method label, bounded like the route.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    backend: Family<BackendLabels, Counter>,
}

impl Metrics {
    /// The registry with the common families; `version` is the app's `version` setting.
    pub fn new(edition: Edition, version: &str) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "visits_http_requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(DURATION_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "visits_http_request_duration_seconds",
            "Time to answer (to the response head), by route",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "visits_http_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        let backend = Family::<BackendLabels, Counter>::default();
        registry.register(
            "visits_backend_requests",
            "Calls to the counter and recorder parts of a page view, by outcome",
            backend.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                edition: edition.as_str(),
                version: version.to_string(),
            })
            .set(1);
        registry.register(
            "visits_build_info",
            "Which edition and app version answers (always 1)",
            build,
        );
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            backend,
        }
    }

    /// For an edition's own families; register them before sharing the metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Call when a request arrives; the returned guard records it when [`Request::done`] is
    /// called, and only leaves the in-flight gauge if it is dropped first (a client gone).
    pub fn request(&self, method: &str, path: &str) -> Request<'_> {
        self.in_flight.inc();
        Request {
            metrics: self,
            route: route_label(path),
            method: method_label(method),
            started: Instant::now(),
        }
    }

    pub fn backend_call(&self, backend: Backend, ok: bool) {
        self.backend
            .get_or_create(&BackendLabels {
                backend: backend.as_str(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// The text exposition of every registered family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One request being served; see [`Metrics::request`].
pub struct Request<'a> {
    metrics: &'a Metrics,
    route: &'static str,
    method: &'static str,
    started: Instant,
}

impl Request<'_> {
    pub fn done(self, status: u16) {
        let m = self.metrics;
        m.requests
            .get_or_create(&RequestLabels {
                route: self.route,
                method: self.method,
                status,
            })
            .inc();
        m.duration
            .get_or_create(&RouteLabels { route: self.route })
            .observe(self.started.elapsed().as_secs_f64());
        // Drop leaves the in-flight gauge.
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn families_follow_the_contract() {
        let m = Metrics::new(Edition::Native, "v7");
        let r = m.request("GET", "/");
        assert_eq!(
            sample(&m.encode(), "visits_http_requests_in_flight"),
            Some(1.0)
        );
        r.done(200);
        m.request("GET", "/wp-admin").done(404);
        drop(m.request("BREW", "/healthz"));
        m.backend_call(Backend::Counter, true);
        m.backend_call(Backend::Recorder, false);
        let text = m.encode();
        for (series, value) in [
            (
                r#"visits_http_requests_total{route="/",method="GET",status="200"}"#,
                1.0,
            ),
            (
                r#"visits_http_requests_total{route="other",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"visits_http_request_duration_seconds_count{route="/"}"#,
                1.0,
            ),
            (
                r#"visits_http_request_duration_seconds_bucket{route="/",le="10"}"#,
                1.0,
            ),
            ("visits_http_requests_in_flight", 0.0),
            (
                r#"visits_backend_requests_total{backend="counter",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"visits_backend_requests_total{backend="recorder",outcome="error"}"#,
                1.0,
            ),
            (r#"visits_build_info{edition="native",version="v7"}"#, 1.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        // A request dropped before it was answered is not counted.
        assert!(
            !text.contains("BREW") && !text.contains(r#"route="/healthz""#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE visits_http_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE visits_http_request_duration_seconds histogram"));
    }
}
