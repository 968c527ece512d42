//! `visits-native`: reads the settings, binds, serves until SIGTERM/SIGINT.

use std::process::ExitCode;

use tokio::net::TcpListener;
use visits_core::config::{CounterBackend, RecordsBackend};
use visits_native::settings::{variable_names, Settings};

const USAGE: &str = "usage: visits-native [--quiet]

Serves the wasm-visits page natively. Settings are environment variables (the Spin variables'
names, upper-cased); QUIET=1 or --quiet drops the per-request log line.";

fn main() -> ExitCode {
    let mut quiet_flag = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quiet" | "-q" => quiet_flag = true,
            "--help" | "-h" => {
                println!("{USAGE}\n\nvariables (default):");
                for (name, default) in variable_names() {
                    println!("  {name:<22} {default:?}");
                }
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("visits-native {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("visits-native: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(mut e) => {
            // Name the variable as the operator set it.
            e.variable = e.variable.to_ascii_uppercase();
            eprintln!("visits-native: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("visits-native: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Inside the runtime: the MongoDB client starts its server monitors as tasks.
        let app = match visits_native::app(&settings) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("visits-native: {e}");
                return ExitCode::from(78);
            }
        };
        let listener = match TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("visits-native: cannot listen on {}: {e}", settings.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().unwrap_or(settings.listen);
        // Not visits-core's backend names: natively, "embedded" means this process's memory,
        // not Spin's key-value store or SQLite database.
        let counter = match settings.counter {
            CounterBackend::Embedded => "in-memory",
            CounterBackend::Redis { .. } => "redis",
        };
        let records = match settings.records {
            RecordsBackend::Off => "off",
            RecordsBackend::Embedded => "in-memory",
            RecordsBackend::MongoDb(_) => "mongodb",
        };
        eprintln!("listening on http://{addr} (counter: {counter}, records: {records})");
        let log = !(settings.quiet || quiet_flag);
        match visits_native::serve(listener, app, log, settings.limits, shutdown_signal()).await {
            Ok(()) => {
                eprintln!("visits-native: stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("visits-native: server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM (Kubernetes, docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("visits-native: cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => eprintln!("visits-native: SIGTERM, finishing in-flight requests"),
        _ = tokio::signal::ctrl_c() => eprintln!("visits-native: SIGINT, finishing in-flight requests"),
    }
}
