//! Per-request store state and the host side of the Spin interfaces a spin-sdk 5.2 component
//! imports: `fermyon:spin/{variables,redis,key-value,sqlite}@2.0.0` and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`. WASI 0.2 (cli, io, clocks, random,
//! sockets, http) comes from wasmtime-wasi / wasmtime-wasi-http.

use crate::allowed_hosts::AllowedHosts;
use crate::stdio::PrefixedOutput;
use rusqlite::OptionalExtension as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "visits:runner/runner-host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": RedisConn,
        "fermyon:spin/key-value.store": KvStore,
        "fermyon:spin/sqlite.connection": SqliteConn,
        "wasi:keyvalue/store.bucket": KvStore,
        "wasi:keyvalue/atomics.cas": KvCas,
    },
});

use fermyon::spin::{key_value, redis as spin_redis, sqlite, variables};
use wasi::keyvalue::{atomics, batch, store};

/// What one component may do, resolved at startup.
#[derive(Debug)]
pub struct ComponentCtx {
    pub id: String,
    pub variables: HashMap<String, String>,
    pub allowed_hosts: AllowedHosts,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub environment: Vec<(String, String)>,
}

/// Host-side state shared by every request: pooled Redis connections and the embedded stores.
pub struct Shared {
    pub redis: tokio::sync::Mutex<HashMap<String, ::redis::aio::MultiplexedConnection>>,
    pub kv: Option<Mutex<rusqlite::Connection>>,
    pub sqlite_path: PathBuf,
    /// Idle connections to the `default` SQLite database, reused across requests (opening one
    /// per request costs a file open and a schema parse, and closing the last connection of a
    /// WAL database checkpoints it with an fsync).
    sqlite_pool: Mutex<Vec<rusqlite::Connection>>,
}

impl Shared {
    /// Opens the key-value store (when a component declares one) and one connection to the
    /// `default` SQLite database (when a component declares it), so that neither file is
    /// created on the first request.
    pub fn new(state_dir: &Path, need_kv: bool, need_sqlite: bool) -> anyhow::Result<Self> {
        let kv = if need_kv {
            std::fs::create_dir_all(state_dir)?;
            let path = state_dir.join("sqlite_key_value.db");
            let conn = open_sqlite(&path).map_err(|e| {
                anyhow::anyhow!("cannot open key-value store {}: {e}", path.display())
            })?;
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spin_key_value (
                    store TEXT NOT NULL,
                    key   TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (store, key)
                )",
                [],
            )?;
            Some(Mutex::new(conn))
        } else {
            None
        };
        let sqlite_path = state_dir.join("sqlite_db.db");
        let mut sqlite_pool = Vec::new();
        if need_sqlite {
            sqlite_pool.push(open_sqlite(&sqlite_path).map_err(|e| {
                anyhow::anyhow!("cannot open SQLite database {}: {e}", sqlite_path.display())
            })?);
        }
        Ok(Self {
            redis: Default::default(),
            kv,
            sqlite_path,
            sqlite_pool: Mutex::new(sqlite_pool),
        })
    }

    fn kv(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, String> {
        match &self.kv {
            Some(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner())),
            None => Err("key-value store not configured".into()),
        }
    }
}

/// Opens (creating it and its directory if needed) a SQLite file the way both embedded stores
/// use it: WAL + synchronous=NORMAL, so no fsync per commit (a power loss may lose the last
/// transactions, never corrupt the file) and readers do not block the writer.
fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, String> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
    };
    setup().map_err(|e| e.to_string())?;
    Ok(conn)
}

pub struct RedisConn {
    addr: String,
    conn: ::redis::aio::MultiplexedConnection,
}

pub struct KvStore {
    name: String,
}

pub struct KvCas {
    store: String,
    key: String,
    current: Option<Vec<u8>>,
}

pub struct SqliteConn {
    conn: rusqlite::Connection,
}

/// The `T` of every `Store<T>`.
pub struct State {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: crate::runtime::Hooks,
    pub limits: StoreLimits,
    pub comp: Arc<ComponentCtx>,
    pub shared: Arc<Shared>,
    pub outputs: [PrefixedOutput; 2],
}

impl Drop for State {
    fn drop(&mut self) {
        for o in &self.outputs {
            o.flush_partial();
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    RunnerHost::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

fn log(comp: &str, msg: impl std::fmt::Display) {
    eprintln!("[{comp}] {msg}");
}

// ---------------------------------------------------------------- variables

impl variables::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if crate::variables::validate_name(&name).is_err() {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(match self.comp.variables.get(&name) {
            Some(v) => Ok(v.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.comp.id
            ))),
        })
    }
}

// ---------------------------------------------------------------- redis

fn redis_err(e: ::redis::RedisError) -> spin_redis::Error {
    if e.kind() == ::redis::ErrorKind::TypeError {
        spin_redis::Error::TypeError
    } else {
        spin_redis::Error::Other(e.to_string())
    }
}

impl State {
    async fn redis_query<T: ::redis::FromRedisValue>(
        &mut self,
        conn: &Resource<RedisConn>,
        cmd: ::redis::Cmd,
    ) -> wasmtime::Result<Result<T, spin_redis::Error>> {
        let c = self.table.get(conn)?;
        let mut mc = c.conn.clone();
        let addr = c.addr.clone();
        match cmd.query_async::<T>(&mut mc).await {
            Ok(v) => Ok(Ok(v)),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    // Forget the broken connection: the next open() reconnects.
                    self.shared.redis.lock().await.remove(&addr);
                }
                Ok(Err(redis_err(e)))
            }
        }
    }
}

fn flatten_redis(v: ::redis::Value, out: &mut Vec<spin_redis::RedisResult>) {
    use ::redis::Value as V;
    use spin_redis::RedisResult as R;
    match v {
        V::Nil => out.push(R::Nil),
        V::Int(i) => out.push(R::Int64(i)),
        V::BulkString(b) => out.push(R::Binary(b)),
        V::SimpleString(s) => out.push(R::Status(s)),
        V::Okay => out.push(R::Status("OK".into())),
        V::Array(items) | V::Set(items) | V::Push { data: items, .. } => {
            for i in items {
                flatten_redis(i, out)
            }
        }
        V::Map(pairs) => {
            for (k, v) in pairs {
                flatten_redis(k, out);
                flatten_redis(v, out);
            }
        }
        V::Boolean(b) => out.push(R::Int64(b as i64)),
        V::Double(d) => out.push(R::Binary(d.to_string().into_bytes())),
        V::VerbatimString { text, .. } => out.push(R::Binary(text.into_bytes())),
        other => out.push(R::Status(format!("{other:?}"))),
    }
}

impl spin_redis::Host for State {}

impl spin_redis::HostConnection for State {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConn>, spin_redis::Error>> {
        if !self.comp.allowed_hosts.allows_url(&address, "redis") {
            log(
                &self.comp.id,
                format!("Redis connection to {address:?} denied: not in allowed_outbound_hosts"),
            );
            return Ok(Err(spin_redis::Error::InvalidAddress));
        }
        let conn = {
            let mut pool = self.shared.redis.lock().await;
            match pool.get(&address) {
                Some(c) => c.clone(),
                None => {
                    let client = match ::redis::Client::open(address.as_str()) {
                        Ok(c) => c,
                        Err(_) => return Ok(Err(spin_redis::Error::InvalidAddress)),
                    };
                    let c = match client.get_multiplexed_async_connection().await {
                        Ok(c) => c,
                        Err(e) => return Ok(Err(spin_redis::Error::Other(e.to_string()))),
                    };
                    pool.insert(address.clone(), c.clone());
                    c
                }
            }
        };
        Ok(Ok(self.table.push(RedisConn {
            addr: address,
            conn,
        })?))
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConn>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin_redis::Error>> {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.redis_query::<::redis::Value>(&c, cmd)
            .await
            .map(|r| r.map(drop))
    }

    async fn get(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(key);
        self.redis_query(&c, cmd).await
    }

    async fn set(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), spin_redis::Error>> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value);
        self.redis_query::<::redis::Value>(&c, cmd)
            .await
            .map(|r| r.map(drop))
    }

    async fn incr(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
    ) -> wasmtime::Result<Result<i64, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("INCR");
        cmd.arg(key);
        self.redis_query(&c, cmd).await
    }

    async fn del(
        &mut self,
        c: Resource<RedisConn>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(keys);
        self.redis_query(&c, cmd).await
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("SADD");
        cmd.arg(key).arg(values);
        self.redis_query(&c, cmd).await
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(key);
        self.redis_query(&c, cmd).await
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConn>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, spin_redis::Error>> {
        let mut cmd = ::redis::cmd("SREM");
        cmd.arg(key).arg(values);
        self.redis_query(&c, cmd).await
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConn>,
        command: String,
        arguments: Vec<spin_redis::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<spin_redis::RedisResult>, spin_redis::Error>> {
        let mut cmd = ::redis::cmd(&command);
        for a in arguments {
            match a {
                spin_redis::RedisParameter::Int64(i) => cmd.arg(i),
                spin_redis::RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        Ok(self.redis_query::<::redis::Value>(&c, cmd).await?.map(|v| {
            let mut out = Vec::new();
            flatten_redis(v, &mut out);
            out
        }))
    }

    async fn drop(&mut self, c: Resource<RedisConn>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- key-value (shared helpers)

enum KvErr {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl State {
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
        let db = self.shared.kv().map_err(KvErr::Other)?;
        db.prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| {
                s.query_row(rusqlite::params![store, key], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), KvErr> {
        let db = self.shared.kv().map_err(KvErr::Other)?;
        db.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(store, key) DO UPDATE SET value=excluded.value",
        )
        .and_then(|mut s| s.execute(rusqlite::params![store, key, value]))
        .map(drop)
        .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_delete(&self, store: &str, key: &str) -> Result<(), KvErr> {
        let db = self.shared.kv().map_err(KvErr::Other)?;
        db.prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")
            .and_then(|mut s| s.execute(rusqlite::params![store, key]))
            .map(drop)
            .map_err(|e| KvErr::Other(e.to_string()))
    }

    fn kv_keys(&self, store: &str) -> Result<Vec<String>, KvErr> {
        let db = self.shared.kv().map_err(KvErr::Other)?;
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
        let mut db = self.shared.kv().map_err(KvErr::Other)?;
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
        let mut db = self.shared.kv().map_err(KvErr::Other)?;
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

// ---------------------------------------------------------------- fermyon:spin/key-value

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

// ---------------------------------------------------------------- wasi:keyvalue

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

fn to_sql(v: sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        sqlite::Value::Integer(i) => S::Integer(i),
        sqlite::Value::Real(f) => S::Real(f),
        sqlite::Value::Text(t) => S::Text(t),
        sqlite::Value::Blob(b) => S::Blob(b),
        sqlite::Value::Null => S::Null,
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> sqlite::Value {
    use rusqlite::types::ValueRef as S;
    match v {
        S::Null => sqlite::Value::Null,
        S::Integer(i) => sqlite::Value::Integer(i),
        S::Real(f) => sqlite::Value::Real(f),
        S::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        S::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

fn run_sql(
    conn: &rusqlite::Connection,
    statement: &str,
    params: Vec<sqlite::Value>,
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let params: Vec<rusqlite::types::Value> = params.into_iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(from_sql(row.get_ref(i)?));
        }
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

impl sqlite::Host for State {}

impl sqlite::HostConnection for State {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConn>, sqlite::Error>> {
        if !self.comp.sqlite_databases.iter().any(|d| d == &database) {
            return Ok(Err(if database == "default" {
                sqlite::Error::AccessDenied
            } else {
                sqlite::Error::NoSuchDatabase
            }));
        }
        let pooled = self
            .shared
            .sqlite_pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => match open_sqlite(&self.shared.sqlite_path) {
                Ok(c) => c,
                Err(e) => return Ok(Err(sqlite::Error::Io(e))),
            },
        };
        Ok(Ok(self.table.push(SqliteConn { conn })?))
    }

    async fn execute(
        &mut self,
        c: Resource<SqliteConn>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = &self.table.get(&c)?.conn;
        Ok(run_sql(conn, &statement, parameters).map_err(|e| sqlite::Error::Io(e.to_string())))
    }

    async fn drop(&mut self, c: Resource<SqliteConn>) -> wasmtime::Result<()> {
        let SqliteConn { conn } = self.table.delete(c)?;
        // Only a connection outside any transaction the guest left open goes back to the pool.
        if conn.is_autocommit() {
            let mut pool = self
                .shared
                .sqlite_pool
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if pool.len() < 32 {
                pool.push(conn);
            }
        }
        Ok(())
    }
}
