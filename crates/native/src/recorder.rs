//! The visit recorder: stores one record per visit and lists the newest, in MongoDB through the
//! official driver or in this process's memory.
//!
//! Same contract as the recorder component: the record is dated here, stored, then the newest
//! `limit` records are returned newest first (ties: the later insert first); every failure is a
//! one-line reason naming the backend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{AuthMechanism, ClientOptions, Credential, ServerAddress};
use mongodb::{Client, Collection, Database, IndexModel};
use visits_core::config::{self, MongoSettings};
use visits_core::record::NewVisit;
use visits_core::record::{Listing, LoggedOnce};
use visits_core::{Record, UtcTime};

/// How many records the embedded backend keeps: far more than a page shows (at most
/// `visits_core::record::MAX_LIMIT`), and a fixed memory bound however long the process runs.
pub const EMBEDDED_CAPACITY: usize = 1000;

pub enum Recorder {
    Embedded(MemoryRecords),
    MongoDb(MongoRecords),
}

impl Recorder {
    /// `None` when records are switched off.
    pub fn new(backend: &config::RecordsBackend) -> Result<Option<Self>, String> {
        Ok(match backend {
            config::RecordsBackend::Off => None,
            config::RecordsBackend::Embedded => {
                Some(Recorder::Embedded(MemoryRecords::new(EMBEDDED_CAPACITY)))
            }
            config::RecordsBackend::MongoDb(settings) => {
                Some(Recorder::MongoDb(MongoRecords::new(settings)?))
            }
        })
    }

    /// Stores `visit` (when there is one), dated now, then returns the newest `limit` records.
    pub async fn record_and_list(
        &self,
        visit: Option<NewVisit>,
        limit: usize,
    ) -> Result<Listing, String> {
        let record = visit.map(|v| v.into_record(UtcTime::now()));
        match self {
            Recorder::Embedded(m) => {
                if let Some(record) = record {
                    m.insert(record);
                }
                Ok(Listing {
                    records: m.latest(limit),
                    skipped: 0,
                })
            }
            Recorder::MongoDb(m) => {
                if let Some(record) = &record {
                    m.insert(record).await?;
                }
                m.latest(limit).await
            }
        }
    }

    /// Whether the backend answers (readiness).
    pub async fn health(&self) -> Result<(), String> {
        match self {
            Recorder::Embedded(_) => Ok(()),
            Recorder::MongoDb(m) => m.ping().await,
        }
    }
}

/// Records in memory, newest first, the oldest dropped beyond the capacity. Per process, like
/// the embedded counter: they start empty on each start and replicas do not share them.
pub struct MemoryRecords {
    capacity: usize,
    records: Mutex<VecDeque<Record>>,
}

impl MemoryRecords {
    pub fn new(capacity: usize) -> Self {
        MemoryRecords {
            capacity,
            records: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    /// Inserts in date order, newest first; among equal dates the later insert comes first
    /// (MongoDB's `{date: -1, _id: -1}`, SQLite's `date_ms DESC, id DESC`). Records are dated
    /// just before they get here, so this is nearly always the front.
    pub fn insert(&self, record: Record) {
        let mut records = self.lock();
        let at = records
            .iter()
            .position(|r| r.date <= record.date)
            .unwrap_or(records.len());
        records.insert(at, record);
        records.truncate(self.capacity);
    }

    pub fn latest(&self, limit: usize) -> Vec<Record> {
        self.lock().iter().take(limit).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Record>> {
        // Every critical section leaves the list valid, so a poisoned lock is still usable.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bad documents already logged (each once per process).
static LOGGED: LoggedOnce = LoggedOnce::new();

/// MongoDB through the official driver. The client holds a connection pool and monitors the
/// servers; creating it does no I/O, so the server starts while MongoDB is still coming up.
pub struct MongoRecords {
    database: Database,
    collection: Collection<Document>,
    timeout: Duration,
    /// The `{date: -1}` index: [`INDEX_MISSING`], [`INDEX_CREATING`] or [`INDEX_DONE`].
    index: Arc<AtomicU8>,
}

const INDEX_MISSING: u8 = 0;
const INDEX_CREATING: u8 = 1;
/// Created, or refused for good by the server.
const INDEX_DONE: u8 = 2;

impl MongoRecords {
    pub fn new(settings: &MongoSettings) -> Result<Self, String> {
        let client = Client::with_options(client_options(settings))
            .map_err(|e| format!("mongodb: bad settings: {e}"))?;
        let database = client.database(&settings.database);
        let collection = database.collection::<Document>(&settings.collection);
        Ok(MongoRecords {
            database,
            collection,
            timeout: settings.timeout,
            index: Arc::new(AtomicU8::new(INDEX_MISSING)),
        })
    }

    async fn insert(&self, record: &Record) -> Result<(), String> {
        self.ensure_index();
        self.bounded("insert", self.collection.insert_one(record.to_document()))
            .await
            .map(|_| ())
    }

    async fn latest(&self, limit: usize) -> Result<Listing, String> {
        let find = async {
            let mut cursor = self
                .collection
                .find(doc! {})
                .sort(doc! { "date": -1, "_id": -1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await?;
            let mut docs = Vec::with_capacity(limit);
            while cursor.advance().await? {
                docs.push(cursor.deserialize_current()?);
            }
            Ok::<_, mongodb::error::Error>(docs)
        };
        let docs = self.bounded("find", find).await?;
        // A document we did not write is skipped and counted, as in the Wasm edition.
        let (listing, messages) = Listing::from_documents(&docs, &LOGGED);
        for m in messages {
            eprintln!("recorder: mongodb: {m}");
        }
        Ok(listing)
    }

    async fn ping(&self) -> Result<(), String> {
        self.bounded("ping", self.database.run_command(doc! { "ping": 1 }))
            .await
            .map(|_| ())
    }

    /// Creates the index that serves "newest first", once per process, in the background: no
    /// visit waits for it (with MongoDB down it would add a whole timeout to the page). A
    /// network failure is retried on a later visit; a server that refuses the command (an old
    /// or partial MongoDB-compatible server) is logged once and not asked again: listing works
    /// without the index, only slower on a large collection.
    fn ensure_index(&self) {
        if self
            .index
            .compare_exchange(
                INDEX_MISSING,
                INDEX_CREATING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let (collection, state, timeout) = (
            self.collection.clone(),
            Arc::clone(&self.index),
            self.timeout,
        );
        tokio::spawn(async move {
            let index = IndexModel::builder().keys(doc! { "date": -1 }).build();
            let next = match tokio::time::timeout(timeout, collection.create_index(index)).await {
                Ok(Ok(_)) => INDEX_DONE,
                Ok(Err(e)) if matches!(*e.kind, ErrorKind::Command(_)) => {
                    eprintln!("recorder: mongodb refused to create the {{date: -1}} index: {e}");
                    INDEX_DONE
                }
                // Unreachable or timed out: the visits report that themselves; try again later.
                Ok(Err(_)) | Err(_) => INDEX_MISSING,
            };
            state.store(next, Ordering::Release);
        });
    }

    /// One driver call within the configured timeout, its error worded for the page.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            // The driver's wording lists the whole topology; what matters on a page is that
            // no server could be reached in time (the log line of a health check says where).
            Ok(Err(e)) if matches!(*e.kind, ErrorKind::ServerSelection { .. }) => Err(format!(
                "mongodb: {what} failed: no server reachable within {} ms ({})",
                self.timeout.as_millis(),
                one_line(&e)
            )),
            Ok(Err(e)) => Err(format!("mongodb: {what} failed: {}", one_line(&e))),
            Err(_) => Err(format!(
                "mongodb: {what} timed out after {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}

/// The driver's options from the shared settings: IP seeds (the Wasm edition has no DNS, so
/// neither does this one), a direct connection to a single seed and replica-set discovery from
/// several, and every wait bounded by the configured timeout.
pub fn client_options(settings: &MongoSettings) -> ClientOptions {
    let hosts = settings
        .seeds
        .iter()
        .map(|addr| ServerAddress::Tcp {
            host: addr.ip().to_string(),
            port: Some(addr.port()),
        })
        .collect::<Vec<_>>();
    let credential = settings.credential.as_ref().map(|c| {
        Credential::builder()
            .username(c.username.clone())
            .password(c.password.clone())
            .source(c.source.clone())
            .mechanism(match c.mechanism {
                config::AuthMechanism::ScramSha256 => AuthMechanism::ScramSha256,
                config::AuthMechanism::ScramSha1 => AuthMechanism::ScramSha1,
            })
            .build()
    });
    let mut options = ClientOptions::default();
    options.direct_connection = Some(hosts.len() == 1);
    options.hosts = hosts;
    options.credential = credential;
    options.app_name = Some("visits-native".into());
    options.server_selection_timeout = Some(settings.timeout);
    options.connect_timeout = Some(settings.timeout);
    // The driver has no socket (read) timeout option: each call is wrapped in a
    // tokio::time::timeout of the same length instead (see `MongoRecords::bounded`).
    options
}

/// Driver errors can span lines (server selection lists the whole topology); a page title and
/// a log line want one.
fn one_line(e: &mongodb::error::Error) -> String {
    let text = e.to_string();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use visits_core::config::{MongoCredential, Source};

    fn record(ip: &str, millis: i64) -> Record {
        Record {
            client_ip: ip.parse().unwrap(),
            date: UtcTime::from_unix_millis(millis),
            page: "/".into(),
        }
    }

    #[test]
    fn memory_records_are_newest_first_and_bounded() {
        let m = MemoryRecords::new(3);
        m.insert(record("192.0.2.1", 1000));
        m.insert(record("192.0.2.2", 3000));
        // Out of order (dated before the previous one): goes behind it.
        m.insert(record("192.0.2.3", 2000));
        // Same date as the newest: the later insert first.
        m.insert(record("192.0.2.4", 3000));
        let ips: Vec<String> = m
            .latest(10)
            .iter()
            .map(|r| r.client_ip.to_string())
            .collect();
        assert_eq!(
            ips,
            ["192.0.2.4", "192.0.2.2", "192.0.2.3"],
            "oldest dropped"
        );
        assert_eq!(m.latest(1)[0].client_ip.to_string(), "192.0.2.4");
        // Older than everything kept, at capacity: stored nowhere.
        m.insert(record("192.0.2.5", 10));
        assert_eq!(m.latest(10).len(), 3);
        assert!(m.latest(10).iter().all(|r| r.date.unix_millis() >= 2000));
    }

    #[tokio::test]
    async fn recorder_dates_and_lists() {
        let r = Recorder::new(&config::RecordsBackend::Embedded)
            .unwrap()
            .unwrap();
        for i in 1..=12u8 {
            let visit = NewVisit {
                client_ip: format!("192.0.2.{i}").parse().unwrap(),
                page: "/".into(),
            };
            r.record_and_list(Some(visit), 10).await.unwrap();
        }
        let list = r.record_and_list(None, 10).await.unwrap().records;
        assert_eq!(list.len(), 10);
        assert_eq!(list[0].client_ip.to_string(), "192.0.2.12");
        assert_eq!(list[9].client_ip.to_string(), "192.0.2.3");
        assert!(list.windows(2).all(|w| w[0].date >= w[1].date));
        assert!(Recorder::new(&config::RecordsBackend::Off)
            .unwrap()
            .is_none());
    }

    fn mongo_settings(pairs: &[(&str, &str)]) -> MongoSettings {
        let src = Source::new(|name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        });
        MongoSettings::load(&src).unwrap()
    }

    #[test]
    fn options_from_settings() {
        let one = client_options(&mongo_settings(&[("mongo_timeout_ms", "250")]));
        assert_eq!(one.direct_connection, Some(true));
        assert_eq!(
            one.hosts,
            [ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: Some(27017)
            }]
        );
        assert_eq!(
            one.server_selection_timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(one.connect_timeout, Some(Duration::from_millis(250)));
        assert!(one.credential.is_none());

        let mut set = mongo_settings(&[
            ("mongo_address", "10.0.0.1:27017"),
            ("mongo_address2", "[2001:db8::2]:27018"),
            ("mongo_address3", "10.0.0.1:27017"),
        ]);
        set.credential = Some(MongoCredential {
            username: "app".into(),
            password: "pw".into(),
            source: "admin".into(),
            mechanism: config::AuthMechanism::ScramSha1,
        });
        let set_opts = client_options(&set);
        assert_eq!(set_opts.direct_connection, Some(false));
        assert_eq!(set_opts.hosts.len(), 2);
        assert_eq!(
            set_opts.hosts[1],
            ServerAddress::Tcp {
                host: "2001:db8::2".into(),
                port: Some(27018)
            }
        );
        let cred = set_opts.credential.unwrap();
        assert_eq!(cred.mechanism, Some(AuthMechanism::ScramSha1));
        assert_eq!(cred.source.as_deref(), Some("admin"));
        let _: SocketAddr = set.seeds[1];
    }

    #[tokio::test]
    async fn unreachable_mongodb_fails_within_the_bound() {
        let r = Recorder::new(&config::RecordsBackend::MongoDb(mongo_settings(&[
            ("mongo_address", "127.0.0.1:1"),
            ("mongo_address2", "127.0.0.1:1"),
            ("mongo_address3", "127.0.0.1:1"),
            ("mongo_timeout_ms", "300"),
        ])))
        .unwrap()
        .unwrap();
        let started = std::time::Instant::now();
        let err = r.record_and_list(None, 10).await.unwrap_err();
        assert!(err.starts_with("mongodb: find "), "{err}");
        assert!(r.health().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
