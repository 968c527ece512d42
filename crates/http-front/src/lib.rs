//! The HTTP/1.1 front door both editions share (the runner's and visits-native's), so a client
//! that is slow or hostile meets the same limits everywhere:
//!
//! - `client_header_timeout`: the whole request head must arrive within it (hyper's
//!   `header_read_timeout`; hyper starts that timer whenever it waits for a head, so it also
//!   bounds the wait for the *first* request on a new connection).
//! - `keepalive_timeout`: a connection with no request in flight for this long is closed.
//! - `max_connections`: beyond it, new connections are accepted and closed at once (shed), so
//!   they neither queue in the kernel's backlog nor hold memory.
//! - `client_body_timeout` and `client_max_body_size` are for handlers that read a body:
//!   [`read_body`] buffers one with both limits.
//!
//! The names are nginx's (`client_header_timeout`, `keepalive_timeout`, ...).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Limits on what one client may hold; see the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub client_max_body_size: usize,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_header_timeout: Duration::from_secs(10),
            client_body_timeout: Duration::from_secs(10),
            client_max_body_size: 1 << 20,
            keepalive_timeout: Duration::from_secs(5),
            max_connections: 4096,
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (as nginx's
/// `worker_rlimit_nofile` would) and returns the resulting soft limit: the connection cap is
/// worthless if `accept` fails with EMFILE first.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// The connection cap actually usable: `wanted`, but leaving room under the open-file limit for
/// the process's own files and backend connections.
pub fn effective_max_connections(wanted: usize) -> usize {
    let nofile = raise_nofile_limit() as usize;
    wanted.min(nofile.saturating_sub(256).max(16))
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// `Content-Length` or the bytes received exceed `client_max_body_size` (413).
    TooLarge,
    /// Not all of it arrived within `client_body_timeout` (408).
    Timeout,
    /// The connection failed or the framing was invalid (400).
    Invalid(String),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::Timeout => 408,
            BodyError::Invalid(_) => 400,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body too large"),
            BodyError::Timeout => f.write_str("request body not received in time"),
            BodyError::Invalid(e) => write!(f, "invalid request body: {e}"),
        }
    }
}

/// Buffers a request body: a declared `Content-Length` over the limit is refused before a byte
/// is read, and the whole body must arrive within `client_body_timeout` (a deadline, not
/// nginx's per-read gap: a client trickling one byte a second cannot stretch it).
pub async fn read_body<B>(
    body: B,
    declared: Option<u64>,
    limits: &Limits,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = limits.client_max_body_size;
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(limits.client_body_timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Invalid(e.to_string())),
    }
}

/// `Content-Length` as a number, if present and valid.
pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `128MiB`, `64m`, `1024`: bytes, with an optional K/M/G (binary) suffix.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        u => return Err(format!("unknown size unit {u:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| "size too large".into())
}

/// `30s`, `500ms`, `2m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("invalid duration {s:?} (examples: 30s, 500ms, 2m)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Requests in flight on one connection and when the last one ended (ms since `epoch`).
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_end_ms: AtomicU64,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_end_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connection threads: each runs a single-threaded tokio runtime, so a connection's requests,
/// and every task they spawn, stay on one thread. A work-stealing runtime wakes an idle worker
/// for each task it spawns, and the runner spawns several per request: measured on the page,
/// 5.9 context switches per request at one client instead of 2, and +29 % req/s at 16 clients
/// (README.md, Benchmarks). A new connection goes to the thread with the fewest open
/// connections, so keep-alive clients spread evenly.
pub struct Workers {
    threads: Vec<Worker>,
}

struct Worker {
    handle: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` threads (at least one) named `{name}-{i}`.
    pub fn start(n: usize, name: &str) -> std::io::Result<Workers> {
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })?;
            threads.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Workers { threads })
    }

    /// The number of threads: the CPUs this process may use (cgroup quota included).
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn least_busy(&self) -> &Worker {
        self.threads
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .expect("at least one worker")
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.threads {
            drop(w.stop.take());
        }
        for w in &mut self.threads {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Counts a connection as open on its worker until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until `shutdown` resolves, serving each with `handler(request, peer)`;
/// then stops accepting and lets in-flight requests finish for at most `grace`. Connections
/// run on the calling runtime.
pub async fn serve<H, F, R>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<R>> + Send + 'static,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(listener, limits, handler, shutdown, grace, None).await
}

/// [`serve`], with each connection on one of `workers`' threads when given.
pub async fn serve_on<H, F, R>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    workers: Option<&Workers>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<R>> + Send + 'static,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shed_logged = Instant::now() - Duration::from_secs(60);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    eprintln!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Shed: closing now tells the client at once, where leaving it in the backlog
            // would let it wait for a connect that may never be served.
            if shed_logged.elapsed() >= Duration::from_secs(10) {
                eprintln!(
                    "max connections ({}) reached: closing new connections",
                    limits.max_connections
                );
                shed_logged = Instant::now();
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Some(workers) = workers else {
            tokio::spawn(serve_connection(
                stream,
                peer,
                limits,
                handler.clone(),
                graceful.watcher(),
                slot,
            ));
            continue;
        };
        // The socket moves to the worker's own I/O driver: its readiness then wakes that
        // thread only.
        let worker = workers.least_busy();
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot hand over a connection from {peer}: {e}");
                continue;
            }
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(worker.open.clone());
        let (h, watcher) = (handler.clone(), graceful.watcher());
        worker.handle.spawn(async move {
            let _open = open;
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve_connection(stream, peer, limits, h, watcher, slot).await,
                Err(e) => eprintln!("cannot register a connection from {peer}: {e}"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("shutdown: in-flight requests did not finish within {grace:?}");
    }
    Ok(())
}

/// Serves one connection with hyper until the client closes it, it idles past the keep-alive
/// timeout, or a graceful shutdown ends it.
fn serve_connection<H, F, R>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: Limits,
    handler: Arc<H>,
    watcher: hyper_util::server::graceful::Watcher,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<R>> + Send + 'static,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Before its first request a connection is hyper's header timer's to close; the
    // keep-alive clock starts as if a request had ended then.
    let first_wait = limits
        .client_header_timeout
        .saturating_sub(limits.keepalive_timeout);
    let activity = Arc::new(Activity {
        epoch: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_end_ms: AtomicU64::new(first_wait.as_millis() as u64),
    });
    let (h, act) = (handler.clone(), activity.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        act.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(act.clone());
        let fut = h(req, peer);
        async move {
            let resp = fut.await;
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    let conn = watcher.watch(conn);
    let keepalive = limits.keepalive_timeout;
    async move {
        let _slot = slot;
        tokio::pin!(conn);
        let idle = idle_for(&activity, keepalive);
        tokio::select! {
            _ = &mut conn => {}
            _ = idle => {
                // hyper's header timer also runs while idle, but may be longer than the
                // keep-alive timeout: close the idle connection now.
            }
        }
    }
}

/// Resolves once the connection has had no request in flight for `keepalive`.
async fn idle_for(activity: &Activity, keepalive: Duration) {
    let keepalive_ms = keepalive.as_millis() as u64;
    loop {
        let now = activity.now_ms();
        let idle_since = activity.last_end_ms.load(Ordering::Relaxed);
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        if !busy && now >= idle_since + keepalive_ms {
            return;
        }
        let wait = if busy {
            keepalive_ms
        } else {
            idle_since + keepalive_ms - now
        };
        tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("12parsecs").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("fast").is_err());
    }
}

#[cfg(test)]
mod worker_tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// One request on an open keep-alive connection; the reply body is the serving thread's name.
    fn get(conn: &mut std::net::TcpStream) -> String {
        conn.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        while !got.ends_with(b"</>") {
            let n = conn.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "connection closed early: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        body.trim_end_matches("</>").to_string()
    }

    #[test]
    fn connections_spread_over_the_worker_threads_and_stay_on_theirs() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let workers = Workers::start(2, "wtest").unwrap();
                let handler = |_req: Request<Incoming>, _peer: SocketAddr| async {
                    let name = std::thread::current().name().unwrap_or("?").to_string();
                    Response::new(http_body_util::Full::new(Bytes::from(name + "</>")))
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                serve_on(
                    listener,
                    Limits::default(),
                    handler,
                    shutdown,
                    Duration::from_secs(2),
                    Some(&workers),
                )
                .await
                .unwrap();
            })
        });
        let mut conns: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // Each connection's first request, one at a time: the acceptor has counted the earlier
        // connections by then, so the four alternate between the two threads.
        let first: Vec<String> = conns.iter_mut().map(get).collect();
        for name in &first {
            assert!(name.starts_with("wtest-"), "served on {name}, not a worker");
        }
        for t in ["wtest-0", "wtest-1"] {
            assert_eq!(first.iter().filter(|n| *n == t).count(), 2, "{first:?}");
        }
        for (conn, name) in conns.iter_mut().zip(&first) {
            for _ in 0..3 {
                assert_eq!(&get(conn), name, "a connection moved to another thread");
            }
        }
        drop(conns);
        stop.send(()).unwrap();
        server.join().unwrap();
    }
}
