//! `visits-runner up`: run a Spin (manifest v2) HTTP application on wasmtime, the way
//! `spin up` does, for everything wasm-visits uses.

mod host;
mod metrics;
mod registry;
mod runtime;
mod server;
mod stdio;

use anyhow::{anyhow, bail, Context as _, Result};

// Every request allocates and frees a store, an instance's tables, headers and bodies on
// several threads: mimalloc's thread-local free lists beat glibc malloc's arenas there
// (+37 % req/s on `/` with Redis, -24 % CPU per request: bench/results/ab-mimalloc.csv).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use http_front::{parse_duration, parse_size};
use spin_manifest::{manifest, variables};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "visits-runner",
    version,
    about = "Run a Spin HTTP application on wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the application described by a spin.toml (manifest version 2).
    Up(UpArgs),
    /// Push or pull the application as a Spin OCI artifact (`spin registry`).
    Registry {
        #[command(subcommand)]
        cmd: registry::Cmd,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// Address to listen on (port 0 picks a free port; the actual address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Set an application variable (highest precedence), repeatable.
    #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = variables::parse_kv)]
    variables: Vec<(String, String)>,
    /// The application manifest, a directory containing spin.toml, or a registry reference
    /// (pulled into $XDG_CACHE_HOME/visits-runner/registry, reused by digest).
    #[arg(
        short = 'f',
        long = "from",
        visible_alias = "file",
        default_value = "spin.toml"
    )]
    file: String,
    /// Plain HTTP to the registry (a local one), as Spin's --insecure.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Directory for the key-value store and the SQLite database [default: .spin beside the
    /// manifest; for a registry app, a temporary directory removed on exit (Spin keeps a
    /// registry app's stores in memory)].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Compile cache directory, shared by every app and state directory, as Spin's (wasmtime's)
    /// is [default: $XDG_CACHE_HOME/visits-runner/compiled, else ~/.cache/visits-runner/compiled].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Do not log one line per request.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Linear-memory cap per instance (bytes, or with K/M/G/KiB/MiB/GiB suffix).
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    max_memory: usize,
    /// Per-request deadline (e.g. 30s, 500ms, 2m; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Allow wasi:sockets ip-name-lookup (DNS). Off by default, as in Spin.
    #[arg(long)]
    allow_dns: bool,
    /// Threads serving connections, each with its own event loop; a connection and the
    /// requests it carries stay on one [default: 0, one per CPU this process may use].
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    threads: u16,
    /// Use the on-demand allocator instead of the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    /// Explicit bounds checks instead of guard pages: faster instance reuse, but wasmtime then
    /// drops its Spectre mitigation for memory accesses. For benchmarks and trusted code.
    #[arg(long)]
    no_guard_pages: bool,
    /// Requests from clients executed at once; more wait (up to --request-timeout, then 503).
    /// Also sizes the instance pool: each request may chain to 3 more components.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_concurrent_requests: u32,
    /// Serve Prometheus metrics on GET /metrics at this address (e.g. 127.0.0.1:9101),
    /// apart from the app's routes. Off by default.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// A client must send a whole request head within this time, or its connection is closed
    /// (nginx's client_header_timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    client_header_timeout: Duration,
    /// A request body must arrive whole within this time (408), read before the request takes
    /// an execution slot. A deadline for the whole body, where nginx's is per read.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    client_body_timeout: Duration,
    /// Largest request body accepted (413 beyond, before reading it).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    client_max_body_size: usize,
    /// Close a connection idle (no request in flight) for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    keepalive_timeout: Duration,
    /// Open client connections at most; beyond, new ones are closed at once. Capped below the
    /// open-file limit, which the runner raises to its hard limit.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Benchmark: instantiate and drop each component N times, print the cost, exit.
    #[arg(long, hide = true, value_name = "N")]
    bench_instantiate: Option<u32>,
}

/// The user's cache directory for compiled components, where Spin (through wasmtime's cache)
/// keeps its own: entries are keyed by the Wasm's hash and the engine's settings, so every app
/// and every state directory can share them, and a fresh `--state-dir` does not recompile.
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("visits-runner").join("compiled"))
}

/// Once a component has to be compiled, and until this guard drops (the components loaded),
/// mimalloc returns freed memory to the OS at once; on drop the default delay is back and this
/// thread's free lists are collected. mimalloc keeps freed pages for reuse and purges them only
/// when the freeing thread allocates again; compiling frees tens of MiB on threads that then sit
/// idle (rayon's). After a start that compiled all three components and 3 s of load: 32 vs 42
/// MiB anonymous (a warm compile cache: 6). What remains sits in those idle threads' heaps.
/// A start that only deserializes leaves the delay alone (purging cost it ~0.3 ms of madvise),
/// and serving keeps the default delay: purging on every free cost 12 % req/s.
struct PurgeWhileCompiling {
    #[cfg(feature = "mimalloc")]
    delay_before: std::sync::OnceLock<std::os::raw::c_long>,
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3); the Rust bindings do not
/// name it.
#[cfg(feature = "mimalloc")]
const MI_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

impl PurgeWhileCompiling {
    fn new() -> Self {
        PurgeWhileCompiling {
            #[cfg(feature = "mimalloc")]
            delay_before: std::sync::OnceLock::new(),
        }
    }

    /// A component is about to be compiled (on any loader thread).
    fn compiling(&self) {
        #[cfg(feature = "mimalloc")]
        self.delay_before.get_or_init(|| {
            // SAFETY: mimalloc's options are plain integers it reads atomically; any value is
            // valid.
            let before = unsafe { libmimalloc_sys::mi_option_get(MI_PURGE_DELAY) };
            unsafe { libmimalloc_sys::mi_option_set(MI_PURGE_DELAY, 0) };
            before
        });
    }
}

impl Drop for PurgeWhileCompiling {
    fn drop(&mut self) {
        #[cfg(feature = "mimalloc")]
        if let Some(&before) = self.delay_before.get() {
            // SAFETY: as in compiling(); mi_collect only walks this thread's free lists.
            unsafe {
                libmimalloc_sys::mi_option_set(MI_PURGE_DELAY, before);
                libmimalloc_sys::mi_collect(true);
            }
        }
    }
}

/// The engine (with its instance pools) and the linker, built on a thread of their own from the
/// command line alone while the manifest is read and the components' files are read and hashed.
/// Building the engine is the largest single step of a warm start (~1.8 ms, most of it one
/// mprotect per pooled stack's guard page). The loaders need only the engine, published as soon
/// as it exists; the linker comes back when the thread ends.
struct EngineJob {
    engine: Arc<std::sync::OnceLock<Result<wasmtime::Engine>>>,
    linker: std::thread::JoinHandle<Result<wasmtime::component::Linker<host::State>>>,
}

impl EngineJob {
    fn start(opts: runtime::Options, no_pooling: bool) -> Result<Self> {
        let engine = Arc::new(std::sync::OnceLock::new());
        let cell = engine.clone();
        let linker = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let build = || {
                    if no_pooling {
                        return runtime::build_engine(&opts, false);
                    }
                    runtime::build_engine(&opts, true).or_else(|e| {
                        eprintln!(
                            "warning: pooling allocator unavailable ({e:#}); using on-demand allocation"
                        );
                        runtime::build_engine(&opts, false)
                    })
                };
                // Whatever happens, waiters must not wait forever.
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
                    .unwrap_or_else(|_| Err(anyhow!("setting up the wasmtime engine panicked")));
                let engine = cell.get_or_init(|| built).as_ref().map_err(|e| anyhow!("{e:#}"))?;
                runtime::make_linker(engine)
            })?;
        Ok(EngineJob { engine, linker })
    }

    /// Blocks until the engine is built.
    fn engine(&self) -> Result<&wasmtime::Engine> {
        self.engine.wait().as_ref().map_err(|e| anyhow!("{e:#}"))
    }

    /// Blocks until the linker is built too.
    fn finish(self) -> Result<(wasmtime::Engine, wasmtime::component::Linker<host::State>)> {
        let engine = self.engine()?.clone();
        let linker = self
            .linker
            .join()
            .map_err(|_| anyhow!("building the linker panicked"))??;
        Ok((engine, linker))
    }
}

fn main() {
    // wasmtime errors capture a backtrace whenever RUST_BACKTRACE is set; guest I/O creates such
    // errors on every request (e.g. end of a body stream), which costs ~30% of throughput.
    // Keep panics' backtraces as configured, but not error backtraces, unless asked for.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    // One thread: connections are served on http_front's connection threads, each with a
    // runtime of its own; this one only runs startup, the accept loop and the admin endpoint.
    // Worker threads here would only cost a start (~0.2 ms of CPU for two threads) and sit idle.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.cmd {
        Cmd::Up(args) => rt.block_on(up(args)),
        Cmd::Registry { cmd } => rt.block_on(registry::run(cmd)),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}

async fn bind(addr: &str, flag: &str) -> Result<tokio::net::TcpListener> {
    let listen: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("invalid {flag} address {addr:?}"))?
        .next()
        .ok_or_else(|| anyhow!("invalid {flag} address {addr:?}"))?;
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
    std_listener.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(std_listener)?)
}

async fn up(mut args: UpArgs) -> Result<()> {
    let t0 = Instant::now();
    let opts = runtime::Options {
        max_memory: args.max_memory,
        request_timeout: args.request_timeout,
        allow_dns: args.allow_dns,
        no_guard_pages: args.no_guard_pages,
        max_concurrent_requests: args.max_concurrent_requests,
    };
    let engine_job = EngineJob::start(opts.clone(), args.no_pooling)?;
    let env = |k: &str| std::env::var(k).ok();
    // A registry app: its stores live in a temporary directory.
    let mut temp_state = None;
    let app = if registry::is_reference(&args.file) {
        let app = registry::load_app(&args.file, args.insecure, &args.variables, &env).await?;
        if args.state_dir.is_none() {
            let dir = std::env::temp_dir().join(format!("visits-runner-{}", std::process::id()));
            temp_state = Some(dir.clone());
            args.state_dir = Some(dir);
        }
        app
    } else {
        let file = PathBuf::from(&args.file);
        let manifest_path = if file.is_dir() {
            file.join("spin.toml")
        } else {
            file
        };
        if !manifest_path.exists() {
            bail!("manifest {} not found", manifest_path.display());
        }
        manifest::load(&manifest_path, &args.variables, &env)?
    };
    for c in app.components.values() {
        if !c.source.exists() {
            bail!(
                "component {:?}: source {} not found (build it first, e.g. `bash scripts/build-wasm.sh`)",
                c.id,
                c.source.display()
            );
        }
    }
    let listener = bind(&args.listen, "--listen").await?;
    let local = listener.local_addr()?;
    let admin = match &args.admin_listen {
        Some(addr) => Some(bind(addr, "--admin-listen").await?),
        None => None,
    };

    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| app.dir.join(".spin"));
    let cache_dir = if args.no_cache {
        None
    } else {
        Some(
            args.cache_dir
                .clone()
                .or_else(user_cache_dir)
                .unwrap_or_else(|| state_dir.join("cache")),
        )
    };
    let need_kv = app
        .components
        .values()
        .any(|c| !c.key_value_stores.is_empty());
    let need_sqlite = app
        .components
        .values()
        .any(|c| c.sqlite_databases.iter().any(|d| d == "default"));
    // Cold start is the sum of independent steps, so overlap them (2 cores are enough): the
    // engine is being built since up() began; the embedded stores' files open (on a first start:
    // are created, with fsyncs) on one thread, and each distinct .wasm is read and hashed on its
    // own thread, which then waits for the engine to deserialize (or compile) it.
    let purge = PurgeWhileCompiling::new();
    let (loaded, shared) = std::thread::scope(|s| -> Result<_> {
        let shared = s.spawn(|| host::Shared::new(&state_dir, need_kv, need_sqlite));
        // Two components may share a .wasm file: load each source once.
        let mut sources: Vec<(&PathBuf, &str)> = Vec::new();
        for c in app.components.values() {
            if !sources.iter().any(|(p, _)| *p == &c.source) {
                sources.push((&c.source, &c.id));
            }
        }
        let (job, cache, purge) = (&engine_job, cache_dir.as_deref(), &purge);
        let loaders: Vec<_> = sources
            .iter()
            .map(|&(path, id)| {
                s.spawn(move || {
                    let file = runtime::ComponentFile::read(id, path, cache)?;
                    let engine = job.engine()?;
                    file.load(engine, cache, || purge.compiling())
                })
            })
            .collect();
        // The engine's own error first: the loaders only know that there is none.
        job.engine()?;
        let mut loaded = HashMap::new();
        for ((path, _), loader) in sources.iter().zip(loaders) {
            let component = loader.join().expect("component loader panicked")?;
            loaded.insert((*path).clone(), component);
        }
        let shared = shared.join().expect("store opener panicked")?;
        Ok((loaded, shared))
    })?;
    drop(purge);
    let (engine, linker) = engine_job.finish()?;
    let mut components = HashMap::new();
    for c in app.components.values() {
        let pre = runtime::prepare(&linker, &loaded[&c.source], &c.id)?;
        let ctx = Arc::new(host::ComponentCtx {
            id: c.id.clone(),
            variables: c.variables.clone(),
            allowed_hosts: c.allowed_hosts.clone(),
            key_value_stores: c.key_value_stores.clone(),
            sqlite_databases: c.sqlite_databases.clone(),
            environment: c.environment.clone(),
        });
        components.insert(c.id.clone(), runtime::LoadedComponent { pre, ctx });
    }
    // visits_build_info's version: the app's `version` variable, as the page shows it.
    let version = app
        .components
        .values()
        .find_map(|c| c.variables.get("version"))
        .map_or("", String::as_str);
    let metrics = Arc::new(metrics::RunnerMetrics::new(version));
    let rt = Arc::new(runtime::Runtime::new(
        engine.clone(),
        components,
        opts,
        Arc::new(shared),
        metrics.clone(),
    ));

    if let Some(n) = args.bench_instantiate {
        return bench_instantiate(&rt, n).await;
    }

    // Epoch ticker: drives request deadlines and lets busy guests yield.
    let ticker_engine = engine.clone();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(runtime::EPOCH_TICK);
            ticker_engine.increment_epoch();
        })?;

    if !args.quiet {
        eprintln!("Serving http://{local}");
        eprintln!("Available Routes:");
        for r in app.router.routes() {
            eprintln!("  {}: http://{local}{}", r.component, r.based);
        }
    }
    eprintln!("ready in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    eprintln!("listening on http://{local}");
    if let Some(admin) = admin {
        eprintln!("metrics on http://{}/metrics", admin.local_addr()?);
        tokio::spawn(metrics::serve_admin(admin, metrics));
    }
    let server = Arc::new(server::Server {
        rt,
        router: app.router,
        quiet: args.quiet,
        app_name: app.name,
        threads: match args.threads {
            0 => http_front::Workers::default_count(),
            n => usize::from(n),
        },
        limits: http_front::Limits {
            client_header_timeout: args.client_header_timeout,
            client_body_timeout: args.client_body_timeout,
            client_max_body_size: args.client_max_body_size,
            keepalive_timeout: args.keepalive_timeout,
            max_connections: http_front::effective_max_connections(args.max_connections as usize),
        },
    });
    server
        .serve(listener, args.request_timeout + Duration::from_secs(1))
        .await?;
    if let Some(dir) = temp_state {
        let _ = std::fs::remove_dir_all(dir);
    }
    eprintln!("stopped");
    Ok(())
}

/// `--bench-instantiate N`: per component, the wall time and this thread's CPU time of one
/// instantiate + drop (pooling allocator, as when serving), after N/10 warm-up rounds. One line
/// per component, `instantiate <id> wall_us=<f> cpu_us=<f>`, for bench/layers.py.
async fn bench_instantiate(rt: &Arc<runtime::Runtime>, n: u32) -> Result<()> {
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    let mut ids: Vec<String> = rt.components.keys().cloned().collect();
    ids.sort();
    for id in ids {
        for _ in 0..n.div_ceil(10) {
            rt.instantiate_and_drop(&id)
                .await
                .map_err(|e| anyhow!("instantiating {id}: {e}"))?;
        }
        let (wall, cpu) = (Instant::now(), thread_cpu());
        for _ in 0..n {
            rt.instantiate_and_drop(&id)
                .await
                .map_err(|e| anyhow!("instantiating {id}: {e}"))?;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n.max(1));
        println!(
            "instantiate {id} wall_us={:.1} cpu_us={:.1}",
            per(wall.elapsed()),
            per(thread_cpu() - cpu)
        );
    }
    Ok(())
}
