//! The embedded key-value store, behind both `fermyon:spin/key-value@2.0.0` and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`: one SQLite table shaped like Spin's.

use super::fermyon::spin::key_value;
use super::wasi::keyvalue::{atomics, batch, store};
use super::State;
use rusqlite::OptionalExtension as _;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use wasmtime::component::Resource;

/// The store's one connection. Every operation holds it for one statement or one IMMEDIATE
/// transaction, which is what makes `increment` atomic across concurrent instances.
pub(super) struct Db(Mutex<rusqlite::Connection>);

impl Db {
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = super::sqlite::open(
            path,
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
        )
        .map_err(|e| anyhow::anyhow!("cannot open key-value store {}: {e}", path.display()))?;
        Ok(Self(Mutex::new(conn)))
    }
}

pub struct KvStore {
    name: String,
}

pub struct KvCas {
    store: String,
    key: String,
    current: Option<Vec<u8>>,
}

enum KvErr {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl State {
    fn kv(&self) -> Result<MutexGuard<'_, rusqlite::Connection>, String> {
        match &self.shared.kv {
            Some(Db(m)) => Ok(m.lock().unwrap_or_else(|p| p.into_inner())),
            None => Err("key-value store not configured".into()),
        }
    }

    fn kv_open(&mut self, name: &str) -> Result<KvStore, KvErr> {
        if !self.comp.key_value_stores.iter().any(|s| s == name) {
            return Err(if name == "default" {
                KvErr::AccessDenied
            } else {
                KvErr::NoSuchStore
            });
        }
        if self.shared.kv.is_none() {
            return Err(KvErr::NoSuchStore);
        }
        Ok(KvStore { name: name.into() })
    }

    fn kv_name(&self, r: &Resource<KvStore>) -> wasmtime::Result<String> {
        Ok(self.table.get(r)?.name.clone())
    }

    fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, KvErr> {
        let db = self.kv().map_err(KvErr::Other)?;
        db.prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| {
                s.query_row(rusqlite::params![store, key], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), KvErr> {
        let db = self.kv().map_err(KvErr::Other)?;
        db.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
        )
        .and_then(|mut s| s.execute(rusqlite::params![store, key, value]))
        .map(drop)
        .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_delete(&self, store: &str, key: &str) -> Result<(), KvErr> {
        let db = self.kv().map_err(KvErr::Other)?;
        db.prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| s.execute(rusqlite::params![store, key]))
            .map(drop)
            .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_keys(&self, store: &str) -> Result<Vec<String>, KvErr> {
        let db = self.kv().map_err(KvErr::Other)?;
        let mut s = db
            .prepare_cached("SELECT key FROM spin_key_value WHERE store=?1 ORDER BY key")
            .map_err(|e| KvErr::Other(e.to_string()))?;
        let rows = s
            .query_map([store], |r| r.get::<_, String>(0))
            .map_err(|e| KvErr::Other(e.to_string()))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| KvErr::Other(e.to_string()))
    }

    /// Atomic increment: one IMMEDIATE transaction under the store mutex. Values are
    /// little-endian i64 bytes, as in Spin's SQLite key-value store.
    fn kv_increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, KvErr> {
        let mut db = self.kv().map_err(KvErr::Other)?;
        let oe = |e: rusqlite::Error| KvErr::Other(e.to_string());
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(oe)?;
        let cur: Option<Vec<u8>> = tx
            .prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| {
                s.query_row(rusqlite::params![store, key], |r| r.get(0))
                    .optional()
            })
            .map_err(oe)?;
        let n = match cur {
            None => 0i64,
            Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                KvErr::Other(format!(
                    "value of {key:?} is not a 64-bit integer (length {})",
                    v.len()
                ))
            })?),
        };
        let new = n
            .checked_add(delta)
            .ok_or_else(|| KvErr::Other("integer overflow".into()))?;
        tx.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
        )
        .and_then(|mut s| s.execute(rusqlite::params![store, key, new.to_le_bytes()]))
        .map_err(oe)?;
        tx.commit().map_err(oe)?;
        Ok(new)
    }

    fn kv_swap(&self, cas: &KvCas, value: &[u8]) -> Result<bool, KvErr> {
        let mut db = self.kv().map_err(KvErr::Other)?;
        let oe = |e: rusqlite::Error| KvErr::Other(e.to_string());
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(oe)?;
        let cur: Option<Vec<u8>> = tx
            .prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| {
                s.query_row(rusqlite::params![cas.store, cas.key], |r| r.get(0))
                    .optional()
            })
            .map_err(oe)?;
        if cur != cas.current {
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
        )
        .and_then(|mut s| s.execute(rusqlite::params![cas.store, cas.key, value]))
        .map_err(oe)?;
        tx.commit().map_err(oe)?;
        Ok(true)
    }
}

impl From<KvErr> for key_value::Error {
    fn from(e: KvErr) -> Self {
        match e {
            KvErr::NoSuchStore => Self::NoSuchStore,
            KvErr::AccessDenied => Self::AccessDenied,
            KvErr::Other(s) => Self::Other(s),
        }
    }
}

impl From<KvErr> for store::Error {
    fn from(e: KvErr) -> Self {
        match e {
            KvErr::NoSuchStore => Self::NoSuchStore,
            KvErr::AccessDenied => Self::AccessDenied,
            KvErr::Other(s) => Self::Other(s),
        }
    }
}

impl key_value::Host for State {}

impl key_value::HostStore for State {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        match self.kv_open(&label) {
            Ok(s) => Ok(Ok(self.table.push(s)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn get(
        &mut self,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let name = self.kv_name(&s)?;
        Ok(self.kv_get(&name, &key).map_err(Into::into))
    }

    async fn set(
        &mut self,
        s: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let name = self.kv_name(&s)?;
        Ok(self.kv_set(&name, &key, &value).map_err(Into::into))
    }

    async fn delete(
        &mut self,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let name = self.kv_name(&s)?;
        Ok(self.kv_delete(&name, &key).map_err(Into::into))
    }

    async fn exists(
        &mut self,
        s: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let name = self.kv_name(&s)?;
        Ok(self
            .kv_get(&name, &key)
            .map(|v| v.is_some())
            .map_err(Into::into))
    }

    async fn get_keys(
        &mut self,
        s: Resource<KvStore>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let name = self.kv_name(&s)?;
        Ok(self.kv_keys(&name).map_err(Into::into))
    }

    async fn drop(&mut self, s: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl store::Host for State {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, store::Error>> {
        match self.kv_open(&identifier) {
            Ok(s) => Ok(Ok(self.table.push(s)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl store::HostBucket for State {
    async fn get(
        &mut self,
        b: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self.kv_get(&name, &key).map_err(Into::into))
    }

    async fn set(
        &mut self,
        b: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self.kv_set(&name, &key, &value).map_err(Into::into))
    }

    async fn delete(
        &mut self,
        b: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self.kv_delete(&name, &key).map_err(Into::into))
    }

    async fn exists(
        &mut self,
        b: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self
            .kv_get(&name, &key)
            .map(|v| v.is_some())
            .map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        b: Resource<KvStore>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self
            .kv_keys(&name)
            .map(|keys| store::KeyResponse { keys, cursor: None })
            .map_err(Into::into))
    }

    async fn drop(&mut self, b: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for State {
    async fn increment(
        &mut self,
        b: Resource<KvStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let name = self.kv_name(&b)?;
        Ok(self.kv_increment(&name, &key, delta).map_err(Into::into))
    }

    async fn swap(
        &mut self,
        cas: Resource<KvCas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let swapped = {
            let c = self.table.get(&cas)?;
            self.kv_swap(c, &value)
        };
        Ok(match swapped {
            Ok(true) => {
                self.table.delete(cas)?;
                Ok(())
            }
            Ok(false) => Err(atomics::CasError::CasFailed(cas)),
            Err(e) => {
                self.table.delete(cas)?;
                Err(atomics::CasError::StoreError(e.into()))
            }
        })
    }
}

impl atomics::HostCas for State {
    async fn new(
        &mut self,
        b: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<KvCas>, store::Error>> {
        let name = self.kv_name(&b)?;
        let current = match self.kv_get(&name, &key) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(self.table.push(KvCas {
            store: name,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<KvCas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<KvCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for State {
    async fn get_many(
        &mut self,
        b: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let name = self.kv_name(&b)?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match self.kv_get(&name, &k) {
                Ok(v) => out.push((k, v)),
                Err(e) => return Ok(Err(e.into())),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        b: Resource<KvStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.kv_name(&b)?;
        for (k, v) in key_values {
            if let Err(e) = self.kv_set(&name, &k, &v) {
                return Ok(Err(e.into()));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        b: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.kv_name(&b)?;
        for k in keys {
            if let Err(e) = self.kv_delete(&name, &k) {
                return Ok(Err(e.into()));
            }
        }
        Ok(Ok(()))
    }
}

// ---------------------------------------------------------------- fermyon:spin/sqlite
