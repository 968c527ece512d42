//! The visit counter: Redis `INCR` over one reused connection, or an in-process counter.
//!
//! Errors are one-line strings naming the backend, worded like the counter component's, because
//! they end up on the page ("counter unavailable", with the reason as its title) and in logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use visits_core::config::CounterBackend;

/// The most one Redis call (connecting included) may take before the page gives up on it.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

pub enum Counter {
    Embedded(EmbeddedCounter),
    Redis(RedisCounter),
}

impl Counter {
    pub fn new(backend: &CounterBackend) -> Result<Self, String> {
        Ok(match backend {
            CounterBackend::Embedded => Counter::Embedded(EmbeddedCounter::default()),
            CounterBackend::Redis { address } => Counter::Redis(RedisCounter::new(address)?),
        })
    }

    /// Adds one visit under `key` and returns the new count.
    pub async fn increment(&self, key: &str) -> Result<u64, String> {
        match self {
            Counter::Embedded(c) => Ok(c.increment(key)),
            Counter::Redis(c) => c.increment(key).await,
        }
    }

    /// Whether the backend answers (readiness).
    pub async fn health(&self) -> Result<(), String> {
        match self {
            Counter::Embedded(_) => Ok(()),
            Counter::Redis(c) => c.ping().await,
        }
    }
}

/// Counts in this process's memory, one atomic per key. Like Spin's embedded key-value store,
/// which is per host, the count is per process: it starts at 0 on each start and replicas do not
/// share it. Use Redis for one count across replicas and restarts.
#[derive(Default)]
pub struct EmbeddedCounter {
    counts: RwLock<HashMap<String, AtomicU64>>,
}

impl EmbeddedCounter {
    pub fn increment(&self, key: &str) -> u64 {
        // Fast path: the key exists (every request after the first), a shared lock suffices and
        // the increment itself is one atomic add, so concurrent visits are never lost.
        if let Some(n) = self.read().get(key) {
            return n.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let mut counts = self.counts.write().unwrap_or_else(|e| e.into_inner());
        counts
            .entry(key.to_string())
            .or_default()
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, AtomicU64>> {
        // A panic elsewhere cannot leave a counter half-updated (updates are atomics): keep going.
        self.counts.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Redis through a [`ConnectionManager`]: one multiplexed connection shared by all requests,
/// re-established by the manager after a failure. It is opened on first use rather than at
/// startup so the server starts (and shows a degraded page) while Redis is still coming up.
pub struct RedisCounter {
    address: String,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

impl RedisCounter {
    pub fn new(address: &str) -> Result<Self, String> {
        let client = redis::Client::open(format!("redis://{address}"))
            .map_err(|e| format!("redis: bad address {address}: {e}"))?;
        Ok(RedisCounter {
            address: address.to_string(),
            client,
            connection: OnceCell::new(),
        })
    }

    async fn increment(&self, key: &str) -> Result<u64, String> {
        let value: i64 = self
            .call(redis::cmd("INCR").arg(key))
            .await
            .map_err(|e| format!("redis: INCR failed: {e}"))?;
        u64::try_from(value).map_err(|_| format!("redis: count {value} is negative"))
    }

    async fn ping(&self) -> Result<(), String> {
        self.call::<String>(&redis::cmd("PING"))
            .await
            .map(|_| ())
            .map_err(|e| format!("redis: PING failed: {e}"))
    }

    /// One command, connecting first if need be, all within [`REDIS_TIMEOUT`].
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let attempt = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(REDIS_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer from {} within {} ms",
                    self.address,
                    REDIS_TIMEOUT.as_millis()
                ))
            })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        // A failed first connection leaves the cell empty, so the next request tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            // One attempt, no backoff: requests wait on a reconnection in progress, and a
            // refused connection should fail the page part at once, not after a backoff delay.
            // The next request tries again, so recovery is as quick as Redis's return.
            .set_number_of_retries(0);
        self.connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn embedded_counts_per_key_without_losing_increments() {
        let counter = Arc::new(EmbeddedCounter::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&counter);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.increment("visits");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.increment("visits"), 8001);
        assert_eq!(counter.increment("other"), 1);
    }

    #[tokio::test]
    async fn unreachable_redis_fails_within_the_bound() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let counter = Counter::new(&CounterBackend::Redis {
            address: "127.0.0.1:1".into(),
        })
        .unwrap();
        let started = std::time::Instant::now();
        let err = counter.increment("visits").await.unwrap_err();
        assert!(err.starts_with("redis: INCR failed: "), "{err}");
        assert!(counter.health().await.is_err());
        assert!(started.elapsed() < 3 * REDIS_TIMEOUT);
    }
}
