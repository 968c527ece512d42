//! The host side of the Spin interfaces a spin-sdk 5.2 component imports, one module per
//! interface (as Spin keeps one crate per "factor"):
//!
//! - `variables`: `fermyon:spin/variables@2.0.0`
//! - `redis`: `fermyon:spin/redis@2.0.0`
//! - `key_value`: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`
//! - `sqlite`: `fermyon:spin/sqlite@2.0.0`
//!
//! plus the per-request [`State`] every `Store<T>` holds. WASI 0.2 (cli, io, clocks, random,
//! sockets, http) comes from wasmtime-wasi / wasmtime-wasi-http. This module depends on no other
//! part of the runner but the component's permissions: the runtime builds on it, not the reverse.

mod key_value;
mod redis;
mod sqlite;
mod variables;

use crate::stdio::PrefixedOutput;
use spin_manifest::allowed_hosts::AllowedHosts;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub use key_value::{KvCas, KvStore};
pub use redis::RedisConn;
pub use sqlite::SqliteConn;

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
    redis: redis::Pool,
    kv: Option<key_value::Db>,
    sqlite: sqlite::Pool,
}

impl Shared {
    /// Opens the key-value store (when a component declares one) and one connection to the
    /// `default` SQLite database (when a component declares it), so that neither file is
    /// created on the first request.
    pub fn new(state_dir: &Path, need_kv: bool, need_sqlite: bool) -> anyhow::Result<Self> {
        let kv = if need_kv {
            Some(key_value::Db::open(&state_dir.join("sqlite_key_value.db"))?)
        } else {
            None
        };
        Ok(Self {
            redis: Default::default(),
            kv,
            sqlite: sqlite::Pool::new(state_dir.join("sqlite_db.db"), need_sqlite)?,
        })
    }
}

/// The `T` of every `Store<T>`.
pub struct State {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// Where this instance's outbound HTTP goes (the runtime's service chaining and sandbox).
    pub hooks: Box<dyn WasiHttpHooks + Send>,
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
            hooks: &mut *self.hooks,
        }
    }
}

pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    RunnerHost::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

/// A line on stderr on behalf of a component (denied access, broken store).
fn log(comp: &str, msg: impl std::fmt::Display) {
    eprintln!("[{comp}] {msg}");
}
