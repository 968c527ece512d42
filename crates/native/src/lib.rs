//! visits-native: the container edition of wasm-visits. One native HTTP server does what the
//! three Spin components do together, with the same settings, page, JSON and health semantics
//! (all from visits-core), and real drivers: the `redis` crate for the counter and the official
//! `mongodb` driver for the recorder. The two editions differ only in how they run.

pub mod counter;
pub mod recorder;
pub mod routes;
pub mod settings;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
/// most [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    log: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = routes::router(app, log).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    let mut server = tokio::spawn(server.into_future());
    tokio::select! {
        result = &mut server => return result.map_err(std::io::Error::other)?,
        _ = stop_rx => {}
    }
    // Signalled: axum now drains the open connections; wait for it, but not forever.
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(result) => result.map_err(std::io::Error::other)?,
        Err(_) => {
            eprintln!(
                "visits-native: requests still running after {} s; stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
            server.abort();
            Ok(())
        }
    }
}
