//! The MongoDB backend: the `mongo-wire` client over wasi:sockets TCP.
//!
//! One page view costs a connect and `hello`, then `insert` and `find` (three round trips).
//! With credentials, SCRAM adds one more (`saslContinue`: the `hello` carries `saslStart` as
//! `speculativeAuthenticate` on MongoDB >= 4.4; two more on older servers). The index the
//! query needs (`{date: -1, _id: -1}`) is not created on every request: the `find` names it
//! as a `hint`, and only when MongoDB answers that no such index exists does the store run
//! `createIndexes` (idempotent) and the `find` again (`Client::find_with_index`).

use mongo_wire::bson::{doc, Document};
use mongo_wire::{
    Client, ClientOptions, Credential, Error, FindOptions, Mechanism, ScramCache, WasiConnector,
};
use spin_sdk::wit::wasi::keyvalue::store;
use visits_core::config::{AuthMechanism, MongoSettings};
use visits_core::record::Listing;
use visits_core::Record;

use crate::Store;

/// The key pattern of the newest-first query, used as its sort, its hint and its index.
fn newest_first() -> Document {
    doc! { "date": -1, "_id": -1 }
}
const INDEX_NAME: &str = "date_-1__id_-1";

pub(crate) struct MongoStore {
    client: Client<WasiConnector>,
    database: String,
    collection: String,
}

fn short(e: Error) -> String {
    let mut s = format!("mongodb: {e}");
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl MongoStore {
    pub(crate) fn connect(settings: &MongoSettings) -> Result<Self, String> {
        let mut options = ClientOptions::new(settings.seeds.clone());
        options.timeout = settings.timeout;
        options.app_name = Some("wasm-visits recorder".into());
        options.credential = settings.credential.as_ref().map(|c| Credential {
            username: c.username.clone(),
            password: c.password.clone(),
            source: c.source.clone(),
            mechanism: match c.mechanism {
                AuthMechanism::ScramSha256 => Mechanism::ScramSha256,
                AuthMechanism::ScramSha1 => Mechanism::ScramSha1,
            },
        });
        let client = if options.credential.is_some() {
            Client::connect_with_scram_cache(WasiConnector, options, Box::new(KvScramCache))
        } else {
            Client::connect(WasiConnector, options)
        }
        .map_err(short)?;
        Ok(MongoStore {
            client,
            database: settings.database.clone(),
            collection: settings.collection.clone(),
        })
    }
}

/// SCRAM salted passwords in Spin's `default` key-value store. Nothing outlives an instance
/// in Spin, so without it every page view would redo PBKDF2 (15,000 HMAC-SHA-256 rounds by
/// MongoDB's default: about 8 ms of CPU in WebAssembly, ten times the rest of a page view).
/// The value authenticates as the MongoDB user, as the password in the component's variables
/// does: the store must be as private as those (see the README's note on Spin runtime config).
/// A store that fails only costs the derivation; it is reported, never fatal.
struct KvScramCache;

impl KvScramCache {
    fn bucket() -> Option<store::Bucket> {
        store::open("default")
            .map_err(|e| eprintln!("scram cache: cannot open key-value store: {e:?}"))
            .ok()
    }
}

impl ScramCache for KvScramCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        Self::bucket()?
            .get(key)
            .map_err(|e| eprintln!("scram cache: get failed: {e:?}"))
            .ok()
            .flatten()
    }

    fn put(&self, key: &str, salted_password: &[u8]) {
        if let Some(b) = Self::bucket() {
            if let Err(e) = b.set(key, salted_password) {
                eprintln!("scram cache: set failed: {e:?}");
            }
        }
    }

    fn remove(&self, key: &str) {
        if let Some(b) = Self::bucket() {
            if let Err(e) = b.delete(key) {
                eprintln!("scram cache: delete failed: {e:?}");
            }
        }
    }
}

impl Store for MongoStore {
    fn insert(&mut self, record: &Record) -> Result<(), String> {
        self.client
            .insert_one(&self.database, &self.collection, record.to_document())
            .map_err(short)
    }

    fn latest(&mut self, limit: usize) -> Result<Listing, String> {
        let options = FindOptions {
            sort: Some(newest_first()),
            limit: Some(limit as i64),
            ..FindOptions::default()
        };
        let docs = self
            .client
            .find_with_index(
                &self.database,
                &self.collection,
                &options,
                &newest_first(),
                INDEX_NAME,
            )
            .map_err(short)?;
        let (listing, messages) = Listing::from_documents(&docs, &crate::LOGGED);
        crate::log_skipped("mongodb", messages);
        Ok(listing)
    }
}
