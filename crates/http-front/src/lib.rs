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

/// Accepts connections until `shutdown` resolves, serving each with `handler(request, peer)`;
/// then stops accepting and lets in-flight requests finish for at most `grace`.
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
        let conn = graceful.watch(conn);
        let keepalive = limits.keepalive_timeout;
        tokio::spawn(async move {
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
