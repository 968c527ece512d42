//! The transport seam: how the client gets a byte stream to a server.
//!
//! The client needs only [`Connector`] (open a stream to an `IP:port` within a timeout) and
//! [`Stream`] (blocking `Read + Write` whose individual calls honour a timeout). The client
//! sets that timeout before every read and write to what is left of the operation's deadline,
//! so a whole command — not just each syscall — is bounded, even against a server that
//! trickles one byte at a time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A blocking byte stream whose reads and writes fail with `ErrorKind::TimedOut` (or
/// `WouldBlock`) when one call takes longer than the last [`Stream::set_timeout`].
pub trait Stream: Read + Write {
    /// Bounds each following `read`/`write`/`flush` call. Never called with zero.
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

/// Opens streams to servers.
pub trait Connector {
    type Stream: Stream;
    /// Connects to `addr`, giving up after `timeout`.
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Self::Stream>;
}

/// `std::net` TCP: for native programs and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdConnector;

impl Stream for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

impl Connector for StdConnector {
    type Stream = TcpStream;
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Bytes sent and received through [`Counting`] streams (shared by all streams of one
/// [`CountingConnector`]).
#[derive(Debug, Default)]
pub struct ByteCounts {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub connects: AtomicU64,
}

impl ByteCounts {
    /// (sent, received, connects) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.connects.load(Ordering::Relaxed),
        )
    }
}

/// Wraps a connector and counts the bytes on the wire (for measurements).
#[derive(Debug, Clone, Default)]
pub struct CountingConnector<C> {
    pub inner: C,
    pub counts: Arc<ByteCounts>,
}

impl<C> CountingConnector<C> {
    pub fn new(inner: C) -> Self {
        CountingConnector {
            inner,
            counts: Arc::new(ByteCounts::default()),
        }
    }
}

/// A stream that counts bytes into a shared [`ByteCounts`].
#[derive(Debug)]
pub struct Counting<S> {
    inner: S,
    counts: Arc<ByteCounts>,
}

impl<S: Read> Read for Counting<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counts.received.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<S: Write> Write for Counting<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counts.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: Stream> Stream for Counting<S> {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.set_timeout(timeout)
    }
}

impl<C: Connector> Connector for CountingConnector<C> {
    type Stream = Counting<C::Stream>;
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Self::Stream> {
        let inner = self.inner.connect(addr, timeout)?;
        self.counts.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Counting {
            inner,
            counts: self.counts.clone(),
        })
    }
}
