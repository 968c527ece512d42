//! counter: `POST /count/{key}` increments and returns a visit count, atomically.
//!
//! - `counter_backend = "redis"`: Redis `INCR` through Spin's Redis API, so every replica
//!   shares one count.
//! - `counter_backend = "embedded"`: `wasi:keyvalue/atomics.increment` on Spin's default
//!   key-value store — one atomic host operation, never a get-then-set that loses increments
//!   under concurrency. Counts live in that one host's store (`spin up`, or one replica).
//!
//! `GET /health` says whether the backend answers.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use visits_core::api::{validate_counter_key, CountReply};
use visits_core::config::CounterBackend;

#[http_component]
fn handle(req: Request) -> Response {
    let backend = match CounterBackend::load(&spin_glue::settings()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("counter: {e}");
            return spin_glue::error(500, e.to_string());
        }
    };
    match (req.method(), req.path()) {
        (Method::Get, "/health") => health(&backend),
        (Method::Post, path) if path.starts_with("/count/") => {
            let key = &path["/count/".len()..];
            if let Err(e) = validate_counter_key(key) {
                return spin_glue::error(400, e);
            }
            match increment(&backend, key) {
                Ok(count) => {
                    let reply = CountReply {
                        key: key.to_string(),
                        count,
                    };
                    spin_glue::json(200, serde_json::to_string(&reply).expect("serialises"))
                }
                Err(e) => {
                    eprintln!("counter: {e}");
                    spin_glue::error(503, e)
                }
            }
        }
        (_, path) if path == "/health" || path.starts_with("/count/") => {
            spin_glue::error(405, "method not allowed")
        }
        (_, path) => spin_glue::error(404, format!("no counter route {path}")),
    }
}

fn increment(backend: &CounterBackend, key: &str) -> Result<u64, String> {
    let value = match backend {
        CounterBackend::Redis { address } => redis(address)?
            .incr(key)
            .map_err(|e| format!("redis: INCR failed: {e}"))?,
        CounterBackend::Embedded => {
            let bucket =
                store::open("default").map_err(|e| format!("key-value: open failed: {e:?}"))?;
            atomics::increment(&bucket, key, 1)
                .map_err(|e| format!("key-value: increment failed: {e:?}"))?
        }
    };
    u64::try_from(value).map_err(|_| format!("{}: count {value} is negative", backend.name()))
}

fn redis(address: &str) -> Result<spin_sdk::redis::Connection, String> {
    spin_sdk::redis::Connection::open(&format!("redis://{address}"))
        .map_err(|e| format!("redis: cannot connect to {address}: {e}"))
}

fn health(backend: &CounterBackend) -> Response {
    let result = match backend {
        CounterBackend::Redis { address } => redis(address).and_then(|c| {
            c.execute("PING", &[])
                .map(|_| ())
                .map_err(|e| format!("redis: PING failed: {e}"))
        }),
        CounterBackend::Embedded => store::open("default")
            .map(|_| ())
            .map_err(|e| format!("key-value: open failed: {e:?}")),
    };
    spin_glue::backend_status(backend.name(), result)
}
