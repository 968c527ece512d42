//! recorder: stores one record per visit and returns the newest ones.
//!
//! - `POST /records?limit=N` with `{"client_ip": "...", "page": "/"}`: stores the visit (dated
//!   now, by this component) and returns the newest N records in the same reply.
//! - `GET /records?limit=N`: the newest N records. `GET /health`: can the backend be reached.
//!
//! `records_backend = "embedded"` uses Spin's default SQLite database; `"mongodb"` uses our own
//! MongoDB wire client over wasi:sockets ([`mongo`]). Bad input gets a 400 naming the problem;
//! a backend failure gets a 503 with the reason, and nothing is half-stored.

mod mongo;
mod sqlite;

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use visits_core::api::RecordsReply;
use visits_core::config::RecordsBackend;
use visits_core::record::{parse_limit, Listing, LoggedOnce, NewVisit};
use visits_core::{Record, UtcTime};

/// What a records backend does; one implementation per `records_backend`.
pub(crate) trait Store {
    fn insert(&mut self, record: &Record) -> Result<(), String>;
    /// The newest `limit` records, newest first.
    /// Stored visits that do not decode are skipped and counted ([`Listing`]).
    fn latest(&mut self, limit: usize) -> Result<Listing, String>;
}

/// Bad stored visits already logged. Spin gives each request a fresh instance, so in the Wasm
/// edition "once" means once per request; visits-native logs each once per process.
pub(crate) static LOGGED: LoggedOnce = LoggedOnce::new();

/// Logs what [`Listing::decode`] reported.
pub(crate) fn log_skipped(backend: &str, messages: Vec<String>) {
    for m in messages {
        eprintln!("recorder: {backend}: {m}");
    }
}

#[http_component]
fn handle(req: Request) -> Response {
    let backend = match RecordsBackend::load(&spin_glue::settings()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("recorder: {e}");
            return spin_glue::error(500, e.to_string());
        }
    };
    match (req.method(), req.path()) {
        (Method::Get, "/health") => {
            spin_glue::backend_status(backend.name(), open(&backend).map(|_| ()))
        }
        (Method::Get, "/records") => records(&req, &backend, None),
        (Method::Post, "/records") => {
            let visit = match serde_json::from_slice::<NewVisit>(req.body()) {
                Ok(v) => v,
                Err(e) => return spin_glue::error(400, format!("invalid visit: {e}")),
            };
            if let Err(e) = visit.validate() {
                return spin_glue::error(400, format!("invalid visit: {e}"));
            }
            records(&req, &backend, Some(visit.into_record(UtcTime::now())))
        }
        (_, "/health" | "/records") => spin_glue::error(405, "method not allowed"),
        (_, path) => spin_glue::error(404, format!("no recorder route {path}")),
    }
}

fn records(req: &Request, backend: &RecordsBackend, new: Option<Record>) -> Response {
    let limit = query_param(req.query(), "limit");
    let limit = match parse_limit(limit.as_deref()) {
        Ok(n) => n,
        Err(e) => return spin_glue::error(400, e.to_string()),
    };
    let result = open(backend).and_then(|mut store| {
        if let Some(record) = &new {
            store.insert(record)?;
        }
        store.latest(limit)
    });
    match result {
        Ok(Listing { records, skipped }) => spin_glue::json(
            if new.is_some() { 201 } else { 200 },
            serde_json::to_string(&RecordsReply { records, skipped }).expect("records serialise"),
        ),
        Err(e) => {
            eprintln!("recorder: {e}");
            spin_glue::error(503, e)
        }
    }
}

fn open(backend: &RecordsBackend) -> Result<Box<dyn Store>, String> {
    match backend {
        RecordsBackend::Embedded => Ok(Box::new(sqlite::SqliteStore::open()?)),
        RecordsBackend::MongoDb(settings) => Ok(Box::new(mongo::MongoStore::connect(settings)?)),
        RecordsBackend::Off => Err("records are switched off (records_backend = \"off\")".into()),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}
