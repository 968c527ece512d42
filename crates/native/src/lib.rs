//! visits-native: the container edition of wasm-visits. One native HTTP server does what the
//! three Spin components do together, with the same settings, page, JSON and health semantics
//! (all from visits-core), and real drivers: the `redis` crate for the counter and the official
//! `mongodb` driver for the recorder. The two editions differ only in how they run.

pub mod counter;
pub mod recorder;
pub mod routes;
pub mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::counter::Counter;
use crate::recorder::Recorder;
use crate::routes::App;
use crate::settings::Settings;

/// How long in-flight requests may take to finish after a shutdown signal. Backend calls are
/// bounded (1 s Redis, `MONGO_TIMEOUT_MS` ≤ 60 s MongoDB per call), so this is a last resort.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The shared state from validated settings. Call it inside a Tokio runtime (the MongoDB client
/// spawns its monitors). Does not wait on I/O: backends connect in the background or on first
/// use, so a backend that is down at startup degrades the page instead of stopping the server.
pub fn app(settings: &Settings) -> Result<Arc<App>, String> {
    Ok(Arc::new(App {
        metrics: visits_metrics::Metrics::new(
            visits_metrics::Edition::Native,
            &settings.page.version,
        ),
        page: settings.page.clone(),
        counter: Counter::new(&settings.counter)?,
        recorder: Recorder::new(&settings.records)?,
    }))
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (at
/// most [`SHUTDOWN_GRACE`]) and returns. Connections are http-front's, with the runner's limits.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    log: bool,
    limits: http_front::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes::router(app, log);
    let limits = http_front::Limits {
        max_connections: http_front::effective_max_connections(limits.max_connections),
        ..limits
    };
    let handler = move |req: Request<Incoming>, peer: SocketAddr| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        // A Router is always ready: no poll_ready needed before call.
        let fut = tower_service::Service::call(&mut router.clone(), req);
        async move {
            match fut.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    http_front::serve(listener, limits, handler, shutdown, SHUTDOWN_GRACE).await
}
