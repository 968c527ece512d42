//! Prometheus metrics (monitoring/README.md): the common `visits_*` families from
//! visits-metrics plus the runner's own (`runner_*`), served on a separate admin listener
//! (`--admin-listen`), so the app's routes stay exactly the manifest's.
//!
//! Backend outcomes (`visits_backend_requests_total`) come from the service-chaining calls the
//! page makes to the counter and recorder, judged by their status: the runner sees each call
//! and its result itself, so there is one count per call actually made, for any component.
//! The page's `x-visits-degraded` header could not say whether the recorder was called at all
//! (no header both when it answered and when `records_backend = "off"`), and would tie the host
//! to the page's wording ("records", not "recorder").

use crate::runtime::{text_response, ExecError};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use visits_metrics::{Backend, Edition, Metrics};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    component: String,
    kind: &'static str,
}

pub struct RunnerMetrics {
    pub common: Metrics,
    instances: Family<ComponentLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    pub admission_waiting: Gauge,
}

impl RunnerMetrics {
    /// `version`: the app's `version` variable, for `visits_build_info`.
    pub fn new(version: &str) -> RunnerMetrics {
        let mut common = Metrics::new(Edition::Wasm, version);
        let registry = common.registry_mut();
        let instances = Family::<ComponentLabels, Counter>::default();
        registry.register(
            "runner_instances",
            "Fresh component instances, by component",
            instances.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "runner_instance_failures",
            "Instances that failed (trap, timeout), by component",
            failures.clone(),
        );
        let admission_waiting = Gauge::default();
        registry.register(
            "runner_admission_waiting",
            "Requests waiting for an execution slot (--max-concurrent-requests)",
            admission_waiting.clone(),
        );
        RunnerMetrics {
            common,
            instances,
            failures,
            admission_waiting,
        }
    }

    pub fn instance(&self, component: &str) {
        self.instances
            .get_or_create(&ComponentLabels {
                component: component.to_string(),
            })
            .inc();
    }

    /// An instance that failed; errors that are not the guest's (overload, host) are not counted.
    /// `memory` (the contract's third kind) needs the store limiter to report a refused
    /// `memory.grow`; the guest then traps, which counts as `trap` for now.
    pub fn failure(&self, component: &str, error: &ExecError) {
        let kind = match error {
            ExecError::Trap(_) => "trap",
            ExecError::Timeout => "timeout",
            ExecError::Overloaded(_) | ExecError::Internal(_) => return,
        };
        self.failures
            .get_or_create(&FailureLabels {
                component: component.to_string(),
                kind,
            })
            .inc();
    }

    /// A finished service-chaining call to `target` at `path`; `status` is `None` when the call
    /// produced no response. Only the page view's calls count: readiness checks (`GET /health`,
    /// what `/healthz` asks each backend) are not page views.
    pub fn chained_call(&self, target: &str, path: &str, status: Option<u16>) {
        let backend = match target {
            "counter" => Backend::Counter,
            "recorder" => Backend::Recorder,
            _ => return,
        };
        if path == "/health" {
            return;
        }
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        self.common.backend_call(backend, ok);
    }
}

/// Serves `GET /metrics` on the admin listener until the process ends.
pub async fn serve_admin(listener: TcpListener, metrics: Arc<RunnerMetrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("admin listener: accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let metrics = metrics.clone();
            async move { Ok::<_, Infallible>(answer(&metrics, &req)) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(
    metrics: &RunnerMetrics,
    req: &http::Request<Incoming>,
) -> http::Response<HyperOutgoingBody> {
    match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => {
            let mut resp = text_response(200, metrics.common.encode().trim_end());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(visits_metrics::CONTENT_TYPE),
            );
            resp
        }
        (_, "/metrics") => text_response(405, "Method Not Allowed"),
        _ => text_response(404, "Not Found: the admin listener serves /metrics"),
    }
}
