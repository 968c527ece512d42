//! [`WasiConnector`]: TCP over `wasi:sockets@0.2.0` (the `wasi` crate 0.13.1, as pinned by
//! spin-sdk 5.2), for WebAssembly components. Compiled only for wasm32 WASI targets with the
//! `wasi-sockets` feature.
//!
//! All wasi:sockets calls are non-blocking; every wait is a `poll` on the socket's or
//! stream's pollable together with a `wasi:clocks/monotonic-clock` timer, so connect, read
//! and write each give up after their timeout. Name lookup is not used (Spin disables it):
//! addresses are IP literals.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use wasi::clocks::monotonic_clock;
use wasi::io::poll::{poll, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp::{ShutdownType, TcpSocket};
use wasi::sockets::tcp_create_socket::create_tcp_socket;

use crate::transport::{Connector, Stream};

/// Opens TCP connections through the component's `wasi:sockets` imports.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasiConnector;

/// A connected wasi:sockets TCP stream. Field order matters: the streams are children of the
/// socket and must be dropped first.
pub struct WasiStream {
    input: InputStream,
    output: OutputStream,
    socket: TcpSocket,
    timeout: Duration,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Waits until `ready` fires or `timeout` passes; true if ready.
fn wait(ready: &Pollable, timeout: Duration) -> bool {
    let timer = monotonic_clock::subscribe_duration(nanos(timeout));
    let fired = poll(&[ready, &timer]);
    fired.contains(&0)
}

fn sock_err(e: ErrorCode) -> io::Error {
    let kind = match e {
        ErrorCode::AccessDenied | ErrorCode::NotSupported => ErrorKind::PermissionDenied,
        ErrorCode::ConnectionRefused => ErrorKind::ConnectionRefused,
        ErrorCode::ConnectionReset => ErrorKind::ConnectionReset,
        ErrorCode::ConnectionAborted => ErrorKind::ConnectionAborted,
        ErrorCode::Timeout => ErrorKind::TimedOut,
        ErrorCode::InvalidArgument => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    io::Error::new(kind, e.name())
}

fn stream_err(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(ErrorKind::BrokenPipe, "connection closed"),
        StreamError::LastOperationFailed(e) => io::Error::new(
            ErrorKind::ConnectionReset,
            format!("stream failed: {}", e.to_debug_string()),
        ),
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Connector for WasiConnector {
    type Stream = WasiStream;

    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<WasiStream> {
        let (family, remote) = match addr.ip() {
            IpAddr::V4(ip) => {
                let o = ip.octets();
                (
                    IpAddressFamily::Ipv4,
                    IpSocketAddress::Ipv4(Ipv4SocketAddress {
                        port: addr.port(),
                        address: (o[0], o[1], o[2], o[3]),
                    }),
                )
            }
            IpAddr::V6(ip) => {
                let s = ip.segments();
                let scope_id = match addr {
                    SocketAddr::V6(v6) => v6.scope_id(),
                    SocketAddr::V4(_) => 0,
                };
                (
                    IpAddressFamily::Ipv6,
                    IpSocketAddress::Ipv6(Ipv6SocketAddress {
                        port: addr.port(),
                        flow_info: 0,
                        address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                        scope_id,
                    }),
                )
            }
        };
        let network = instance_network();
        let socket = create_tcp_socket(family).map_err(sock_err)?;
        socket.start_connect(&network, remote).map_err(sock_err)?;
        let ready = socket.subscribe();
        let started = std::time::Instant::now();
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    if left.is_zero() || !wait(&ready, left) {
                        drop(ready);
                        return Err(timed_out("connect"));
                    }
                }
                Err(e) => return Err(sock_err(e)),
            }
        };
        drop(ready);
        Ok(WasiStream {
            input,
            output,
            socket,
            timeout,
        })
    }
}

impl Stream for WasiStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}

impl Read for WasiStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        loop {
            match self.input.read(buf.len() as u64) {
                Ok(bytes) if !bytes.is_empty() => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    return Ok(n);
                }
                Ok(_) => {
                    let left = self.timeout.saturating_sub(started.elapsed());
                    let ready = self.input.subscribe();
                    if left.is_zero() || !wait(&ready, left) {
                        return Err(timed_out("read"));
                    }
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(e) => return Err(stream_err(e)),
            }
        }
    }
}

impl WasiStream {
    /// Waits until the output stream accepts bytes; returns how many.
    fn writable(&mut self, started: std::time::Instant) -> io::Result<usize> {
        loop {
            let n = self.output.check_write().map_err(stream_err)?;
            if n > 0 {
                return Ok(usize::try_from(n).unwrap_or(usize::MAX));
            }
            let left = self.timeout.saturating_sub(started.elapsed());
            let ready = self.output.subscribe();
            if left.is_zero() || !wait(&ready, left) {
                return Err(timed_out("write"));
            }
        }
    }
}

impl Write for WasiStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.writable(std::time::Instant::now())?.min(buf.len());
        self.output.write(&buf[..n]).map_err(stream_err)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush().map_err(stream_err)?;
        // The flush is complete when the stream accepts writes again.
        self.writable(std::time::Instant::now()).map(|_| ())
    }
}

impl Drop for WasiStream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(ShutdownType::Both);
    }
}
