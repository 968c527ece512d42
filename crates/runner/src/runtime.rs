//! The wasmtime side: engine, component loading (wasip1 core module -> component), the
//! on-disk compile cache, one fresh instance per request, limits, and outbound HTTP
//! (allow-list, in-process service chaining).

use crate::host::{ComponentCtx, Shared, State};
use crate::metrics::RunnerMetrics;
use crate::stdio::PrefixedOutput;
use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use spin_manifest::allowed_hosts::{service_chaining_target, OutboundUrl};
use spin_manifest::routes::RouteMatch;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime::{StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpHooks, WasiHttpView as _};

/// Epoch tick: the granularity of the request deadline and of yielding a busy guest.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct Options {
    pub max_memory: usize,
    pub request_timeout: Duration,
    pub allow_dns: bool,
    /// Explicit bounds checks instead of guard pages (faster, no Spectre mitigation).
    pub no_guard_pages: bool,
    /// Client requests executed at once (chained requests ride on their caller's admission).
    pub max_concurrent_requests: u32,
}

/// Component instances one client request may hold at once: itself plus the components it
/// chains to (the page calls two). Sizes the pooling allocator from the admission limit.
const INSTANCES_PER_REQUEST: u32 = 4;

pub struct LoadedComponent {
    pub pre: ProxyPre<State>,
    pub ctx: Arc<ComponentCtx>,
}

pub struct Runtime {
    pub engine: Engine,
    pub components: HashMap<String, LoadedComponent>,
    pub opts: Options,
    pub shared: Arc<Shared>,
    pub metrics: Arc<RunnerMetrics>,
    /// One permit per client request in execution; see [`Runtime::admit`].
    admission: Arc<tokio::sync::Semaphore>,
}

/// Why a request did not produce a response.
#[derive(Debug)]
pub enum ExecError {
    /// No execution slot freed up within the request deadline (the limit is in the message).
    Overloaded(u32),
    Timeout,
    Trap(String),
    Internal(String),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Overloaded(n) => write!(
                f,
                "{n} requests already executing and none finished within the request deadline"
            ),
            ExecError::Timeout => write!(f, "request deadline exceeded"),
            ExecError::Trap(s) => write!(f, "guest trapped: {s}"),
            ExecError::Internal(s) => write!(f, "{s}"),
        }
    }
}

/// A failure after the response started: the client got the head, so it can only be logged.
fn report_late(id: &str, metrics: &RunnerMetrics, e: &ExecError) {
    metrics.failure(id, e);
    eprintln!("[{id}] error after the response started: {e}");
}

/// A wasmtime error as one line: the cause chain, without the captured backtrace.
pub fn fmt_err(e: wasmtime::Error) -> String {
    format!("{:#}", anyhow::Error::from(e)).replace('\n', " ")
}

fn classify(e: wasmtime::Error) -> ExecError {
    if let Some(t) = e.downcast_ref::<Trap>() {
        if *t == Trap::Interrupt {
            return ExecError::Timeout;
        }
    }
    if let Some(t) = e.downcast_ref::<Trap>() {
        // The trap itself; the wasm backtrace is long and the guest usually printed why.
        return ExecError::Trap(t.to_string());
    }
    ExecError::Internal(fmt_err(e))
}

pub fn build_engine(opts: &Options, pooling: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    if opts.no_guard_pages {
        // Explicit bounds checks instead of guard pages: a pooled memory slot then keeps its
        // accessible size across reuse, so an instance whose guest grows its memory costs no
        // mprotect (and no TLB shootdown on the other cores) per request; slots are still
        // reset and every access is still checked. Opt-in because wasmtime then compiles those
        // checks without its Spectre mitigation (it measured +13% req/s on `/` with wasip1
        // components; with today's components and wasmtime it is within noise: `make bench`).
        config.signals_based_traps(false);
        config.memory_guard_size(0);
        config.guard_before_linear_memory(false);
    }
    if pooling {
        // Sized from the admission limit rather than wasmtime's defaults (1000 of each): every
        // pooled stack costs an mprotect at startup, and the pool caps what may run at once
        // anyway, so it might as well match what the runner admits.
        let instances = opts
            .max_concurrent_requests
            .saturating_mul(INSTANCES_PER_REQUEST);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(2))
            .total_stacks(instances)
            .max_memories_per_component(16)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            .max_memory_size(opts.max_memory)
            // Reuse warm slots without madvise + page faults on every request: reset only the
            // dirty pages (PAGEMAP_SCAN on Linux >= 6.7) of the first few MiB, and batch the
            // remaining decommits (fewer TLB shootdowns).
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(16)
            .max_unused_warm_slots(64);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| anyhow!("cannot create the wasmtime engine: {e}"))
}

fn is_component(bytes: &[u8]) -> Result<bool> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        bail!("not a WebAssembly file");
    }
    Ok(bytes[4..8] != [1, 0, 0, 0])
}

/// Turn a wasip1 core module into a component with the reactor preview1 adapter.
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>> {
    if is_component(bytes)? {
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// The compile cache's key: the SHA-256 of the `.wasm` (its [`ComponentFile`] digest) with the
/// runner's and wasmtime's versions and the engine's compatibility hash.
fn cache_key(engine: &Engine, wasm_digest: &[u8; 32]) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = Sha256::new();
    h.update(wasm_digest);
    h.update(b"\0wasmtime-");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(wasmtime_version().as_bytes());
    let mut dh = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut dh);
    h.update(dh.finish().to_le_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn wasmtime_version() -> &'static str {
    // The wasmtime crate is pinned (=48.0.8) in the workspace.
    "48.0.8"
}

/// How long a `.wasm` must have been left alone before its file identity may stand in for its
/// hash (see [`ComponentFile::read`]): file timestamps advance by the kernel's clock tick, so a
/// file rewritten within the tick of the `stat` would keep the same identity.
const SETTLED: Duration = Duration::from_secs(2);

/// A component's `.wasm`, identified by the SHA-256 of its bytes: the half of loading that
/// needs no engine, so it runs while the engine is still being built (main.rs's `EngineJob`).
pub struct ComponentFile {
    id: String,
    path: std::path::PathBuf,
    digest: [u8; 32],
    /// The bytes, unless the digest came from the cache's index.
    wasm: Option<Vec<u8>>,
    /// The file's identity, when the index may record it after a successful load.
    identity: Option<String>,
}

impl ComponentFile {
    /// Reads and hashes the file, unless the compile cache's index already knows the digest for
    /// this exact file: same path, device, inode, size, modification and change times (what git's
    /// index and Bazel's digest cache trust; a change time cannot be set back). Reading and
    /// hashing the app's three components is ~1.8 ms of CPU on every start otherwise.
    pub fn read(id: &str, path: &Path, cache: Option<&Path>) -> Result<Self> {
        let cannot_read = |e| cannot_read(id, path, e);
        let meta = std::fs::metadata(path).map_err(cannot_read)?;
        let identity = cache.map(|_| file_identity(path, &meta));
        if let (Some(dir), Some(identity)) = (cache, &identity) {
            if let Some(digest) = read_index(&dir.join(format!("{identity}.src"))) {
                return Ok(ComponentFile {
                    id: id.to_string(),
                    path: path.to_path_buf(),
                    digest,
                    wasm: None,
                    identity: None,
                });
            }
        }
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= SETTLED)
            && std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .is_ok_and(|now| {
                    use std::os::unix::fs::MetadataExt as _;
                    let ctime = Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
                    now.saturating_sub(ctime) >= SETTLED
                });
        let wasm = std::fs::read(path).map_err(cannot_read)?;
        Ok(ComponentFile {
            id: id.to_string(),
            path: path.to_path_buf(),
            digest: Sha256::digest(&wasm).into(),
            wasm: Some(wasm),
            identity: identity.filter(|_| settled),
        })
    }

    /// Deserializes the compiled component from the cache, or compiles it (and fills the cache).
    /// `compiling` runs first on a cache miss.
    pub fn load(
        self,
        engine: &Engine,
        cache: Option<&Path>,
        compiling: impl FnOnce(),
    ) -> Result<Component> {
        let t0 = Instant::now();
        let ComponentFile {
            id,
            path,
            mut digest,
            wasm,
            identity,
        } = self;
        let mut key = cache_key(engine, &digest);
        if let Some(dir) = cache {
            let file = dir.join(format!("{key}.cwasm"));
            if file.exists() {
                // SAFETY: the file was written by `Component::serialize` of this same engine
                // configuration and wasmtime version (both are part of the key), in a cache
                // directory owned by this runner.
                match unsafe { Component::deserialize_file(engine, &file) } {
                    Ok(c) => {
                        eprintln!(
                            "component {id}: compile cache hit ({:.1} ms)",
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                        if let Some(identity) = identity {
                            write_index(dir, &identity, &digest);
                        }
                        return Ok(c);
                    }
                    Err(e) => eprintln!("component {id}: ignoring unusable cache entry: {e}"),
                }
            }
        }
        compiling();
        // The digest came from the index but the compiled entry is gone: read the file now.
        let wasm = match wasm {
            Some(w) => w,
            None => {
                let w = std::fs::read(&path).map_err(|e| cannot_read(&id, &path, e))?;
                digest = Sha256::digest(&w).into();
                key = cache_key(engine, &digest);
                w
            }
        };
        let comp_bytes = componentize(&wasm).with_context(|| {
            format!(
                "component {id:?}: cannot turn {} into a component",
                path.display()
            )
        })?;
        let component = Component::new(engine, &comp_bytes).map_err(|e| {
            anyhow!(
                "component {id:?}: cannot compile {}: {}",
                path.display(),
                fmt_err(e)
            )
        })?;
        eprintln!(
            "component {id}: compiled ({:.1} ms)",
            t0.elapsed().as_secs_f64() * 1e3
        );
        if let Some(dir) = cache {
            let write = || -> Result<()> {
                std::fs::create_dir_all(dir)?;
                let bytes = component.serialize()?;
                let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, dir.join(format!("{key}.cwasm")))?;
                Ok(())
            };
            match write() {
                Ok(()) => {
                    if let Some(identity) = identity {
                        write_index(dir, &identity, &digest);
                    }
                }
                Err(e) => eprintln!(
                    "warning: cannot write compile cache in {}: {e}",
                    dir.display()
                ),
            }
        }
        Ok(component)
    }
}

fn cannot_read(id: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow!(
        "component {id:?}: cannot read {}: {e}{}",
        path.display(),
        if e.kind() == std::io::ErrorKind::NotFound {
            " (build it first, e.g. `bash scripts/build-wasm.sh`)"
        } else {
            ""
        }
    )
}

/// The name of a file's index entry: its canonical path and `stat` identity, hashed.
fn file_identity(path: &Path, meta: &std::fs::Metadata) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h = Sha256::new();
    h.update(canonical.as_os_str().as_bytes());
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    hex(&h.finalize())
}

/// An index entry: the 64 hex digits of the file's SHA-256. Anything else is no entry.
fn read_index(entry: &Path) -> Option<[u8; 32]> {
    let text = std::fs::read_to_string(entry).ok()?;
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// Records a file's digest under its identity (atomically: a reader sees all or nothing). A
/// failure only costs the next start a read and a hash, so it is not reported.
fn write_index(dir: &Path, identity: &str, digest: &[u8; 32]) {
    let tmp = dir.join(format!("{identity}.tmp{}", std::process::id()));
    if std::fs::write(&tmp, hex(digest)).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(format!("{identity}.src")));
    }
}

pub fn make_linker(engine: &Engine) -> Result<Linker<State>> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::host::add_to_linker(&mut linker)?;
    Ok(linker)
}

pub fn prepare(linker: &Linker<State>, component: &Component, id: &str) -> Result<ProxyPre<State>> {
    // An import we do not implement (llm, mqtt, postgres, ...) is a startup error naming it.
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| anyhow!("component {id:?}: cannot link: {}", fmt_err(e)))?;
    ProxyPre::new(pre).map_err(|e| {
        anyhow!("component {id:?}: does not export wasi:http/incoming-handler@0.2.0: {e}")
    })
}

/// Hooks into wasmtime-wasi-http: every outbound request goes through `Runtime::outbound`.
struct Hooks {
    rt: Arc<Runtime>,
    comp: Arc<ComponentCtx>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        let rt = self.rt.clone();
        let comp = self.comp.clone();
        Box::new(async move { rt.outbound(&comp, request, options).await })
    }
}

fn internal_response(status: u16, body: &str) -> http::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from(format!("{body}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = http::Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

pub fn error_response(e: &ExecError) -> http::Response<HyperOutgoingBody> {
    match e {
        ExecError::Timeout => internal_response(504, "Gateway Timeout"),
        ExecError::Overloaded(_) => {
            internal_response(503, "Service Unavailable: too many concurrent requests")
        }
        _ => internal_response(500, "Internal Server Error"),
    }
}

pub fn text_response(status: u16, body: &str) -> http::Response<HyperOutgoingBody> {
    internal_response(status, body)
}

impl Runtime {
    pub fn new(
        engine: Engine,
        components: HashMap<String, LoadedComponent>,
        opts: Options,
        shared: Arc<Shared>,
        metrics: Arc<RunnerMetrics>,
    ) -> Runtime {
        let admission = Arc::new(tokio::sync::Semaphore::new(
            opts.max_concurrent_requests as usize,
        ));
        Runtime {
            engine,
            components,
            opts,
            shared,
            metrics,
            admission,
        }
    }

    /// Waits (first come, first served) for an execution slot for one client request, at most
    /// the request deadline. Past the limit, requests queue instead of failing on an exhausted
    /// instance pool; a request that cannot start in time gets a 503.
    pub async fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ExecError> {
        if let Ok(permit) = self.admission.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let wait = self.admission.clone().acquire_owned();
        self.metrics.admission_waiting.inc();
        let waited = tokio::time::timeout(self.opts.request_timeout, wait).await;
        self.metrics.admission_waiting.dec();
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ExecError::Overloaded(self.opts.max_concurrent_requests)),
        }
    }

    fn new_store(self: &Arc<Self>, comp: &LoadedComponent) -> Store<State> {
        let ctx = comp.ctx.clone();
        let out = PrefixedOutput::new(&ctx.id, false);
        let err = PrefixedOutput::new(&ctx.id, true);
        let mut b = WasiCtxBuilder::new();
        b.stdout(out.clone()).stderr(err.clone());
        b.envs(&ctx.environment);
        b.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(self.opts.allow_dns);
        let hosts = ctx.clone();
        b.socket_addr_check(move |addr, usage| {
            let allowed = match usage {
                SocketAddrUse::TcpConnect => {
                    hosts.allowed_hosts.allows_url(&addr.to_string(), "tcp")
                }
                // Only the implicit bind of an outgoing connect (wildcard address, port 0).
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            if !allowed && matches!(usage, SocketAddrUse::TcpConnect) {
                eprintln!(
                    "[{}] TCP connection to {addr} denied: not in allowed_outbound_hosts",
                    hosts.id
                );
            }
            Box::pin(async move { allowed })
        });
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.opts.max_memory)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        let state = State {
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Box::new(Hooks {
                rt: self.clone(),
                comp: ctx.clone(),
            }),
            limits,
            comp: ctx,
            shared: self.shared.clone(),
            outputs: [out, err],
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = Instant::now() + self.opts.request_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other requests run on this worker thread, then keep going.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    fn component(&self, id: &str) -> Result<&LoadedComponent, ExecError> {
        self.components
            .get(id)
            .ok_or_else(|| ExecError::Internal(format!("unknown component {id:?}")))
    }

    /// A fresh store and instance of `component`, dropped at once: the fixed cost every
    /// request pays before the guest runs (bench/layers.py, layer "instantiate").
    pub async fn instantiate_and_drop(self: &Arc<Self>, component: &str) -> Result<(), ExecError> {
        let comp = self.component(component)?;
        let mut store = self.new_store(comp);
        comp.pre
            .instantiate_async(&mut store)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Run one request through a fresh instance of `component`. The request's headers must
    /// already carry Spin's `spin-*` headers. `permit` (a client request's admission) is held
    /// until the guest has finished, body included.
    pub async fn execute<B>(
        self: &Arc<Self>,
        component: &str,
        req: http::Request<B>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<http::Response<HyperOutgoingBody>, ExecError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let comp = self.component(component)?;
        let started = Instant::now();
        let timeout = self.opts.request_timeout;
        self.metrics.instance(component);
        let mut store = self.new_store(comp);
        let fut = async {
            let proxy = comp
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(classify)?;
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| ExecError::Internal(fmt_err(e)))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let out = store
                .data_mut()
                .http()
                .new_response_outparam(tx)
                .map_err(|e| ExecError::Internal(fmt_err(e)))?;
            Ok::<_, ExecError>((proxy, req, out, rx))
        };
        let (proxy, req_res, out, rx) = fut
            .await
            .inspect_err(|e| self.metrics.failure(component, e))?;
        // One task per instance runs the guest to the end, body included, under the request
        // deadline; the caller only waits for the response head. The outcome goes back on
        // `done` while the caller listens (no response yet); once the caller has its response
        // and has stopped listening, a failure is the task's to report.
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Result<(), ExecError>>();
        let deadline = tokio::time::Instant::from_std(started + timeout + EPOCH_TICK * 5);
        let (id, metrics) = (component.to_string(), self.metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handle = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req_res, out);
            let outcome = match tokio::time::timeout_at(deadline, handle).await {
                Err(_) => Err(ExecError::Timeout),
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(classify(e)),
            };
            // Let the task waiting for this response (hyper's connection, or the caller of a
            // chained request) run before the instance is torn down: on a connection thread
            // both share one core, and the teardown need not delay the answer.
            tokio::task::yield_now().await;
            if let Err(Err(e)) = done_tx.send(outcome) {
                report_late(&id, &metrics, &e);
            }
        });
        let result = match rx.await {
            Ok(Ok(resp)) => {
                // Stop listening; an outcome sent before that is still ours to report.
                done_rx.close();
                if let Ok(Err(e)) = done_rx.try_recv() {
                    report_late(component, &self.metrics, &e);
                }
                Ok(resp)
            }
            Ok(Err(code)) => {
                let _ = done_rx.await;
                Err(ExecError::Internal(format!(
                    "guest returned an error code: {code:?}"
                )))
            }
            // No response: the task's outcome says why.
            Err(_) => match done_rx.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(ExecError::Internal(
                    "guest failed to produce a response prior to returning".into(),
                )),
                Err(_) => Err(ExecError::Internal("guest task failed".into())),
            },
        };
        if let Err(e) = &result {
            self.metrics.failure(component, e);
        }
        result
    }

    /// Outbound HTTP from a component: allow-list check, then service chaining or the network.
    async fn outbound(
        self: Arc<Self>,
        comp: &ComponentCtx,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> SendResult {
        use wasmtime_wasi_http::Error as HErr;
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let Some(authority) = uri.authority() else {
            return Err(HErr::HttpRequestUriInvalid);
        };
        let url = OutboundUrl {
            scheme: scheme.clone(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: authority.port_u16(),
        };
        if !comp.allowed_hosts.allows(&url) {
            eprintln!(
                "[{}] outbound HTTP request to {scheme}://{authority} denied: not in allowed_outbound_hosts",
                comp.id
            );
            return Err(HErr::HttpRequestDenied);
        }
        if let Some(target) = service_chaining_target(authority.as_str()) {
            if !self.components.contains_key(target) {
                return Err(HErr::DestinationNotFound);
            }
            let target = target.to_string();
            let path = uri.path().to_string();
            let m = RouteMatch::synthetic(&target, &path);
            let mut req = request;
            let chained_client: SocketAddr = "0.0.0.0:0".parse().unwrap();
            spin_manifest::routes::set_spin_headers(&mut req, &m, chained_client, "http");
            let result = self.execute(&target, req, None).await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            self.metrics.chained_call(&target, &path, status);
            return match result {
                Ok(resp) => Ok((resp, Box::new(async { Ok(()) }))),
                Err(e) => {
                    eprintln!("[{target}] chained request from {} failed: {e}", comp.id);
                    let resp = error_response(&e);
                    Ok((resp, Box::new(async { Ok(()) })))
                }
            };
        }
        let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        Ok((
            resp.map(|b| b.boxed_unsync()),
            Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
        ))
    }
}
