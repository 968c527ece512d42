//! # mongo-wire
//!
//! A small MongoDB client that speaks the wire protocol itself, for places the official
//! driver cannot go — above all WebAssembly components (wasm32-wasip1/wasip2), where it runs
//! over `wasi:sockets` TCP. It is built on the [`bson`] crate and keeps the protocol apart from
//! the I/O:
//!
//! - [`wire`]: OP_MSG framing (opcode 2013) with every length checked: a malformed, truncated
//!   or oversized reply is an [`Error::Protocol`], never a panic, a hang or an unbounded
//!   allocation (replies are capped at the server's `maxMessageSizeBytes`, 48 MB before
//!   `hello`); `responseTo` must match the request.
//! - [`scram`]: SCRAM-SHA-256 and SCRAM-SHA-1 as a state machine (RFC 7677 / RFC 5802 test
//!   vectors in its tests). SASLprep: ASCII passwords only, non-ASCII is refused explicitly.
//!   A [`ScramCache`] ([`Client::connect_with_scram_cache`]) keeps salted passwords between
//!   connections, so that a client that connects per request does not redo PBKDF2 each time.
//! - [`topology`]: `hello` replies and the choice of the next server while looking for the
//!   writable primary of a replica set (seeds are `IP:port`; no DNS).
//! - [`transport`]: the [`Connector`]/[`Stream`] seam, [`StdConnector`] (std TCP) and a
//!   byte-counting wrapper; `WasiConnector` (feature `wasi-sockets`, wasm32 WASI only).
//! - [`Client`]: connect + handshake + auth, `hello`, `insert_one`, `find`, `create_index`,
//!   `run_command`; command errors (`ok: 0`, `writeErrors`, `writeConcernError`) are typed
//!   ([`Error`]), and not-primary errors trigger one rediscovery and retry.
//!
//! Every connect and every command (request write + whole reply) is bounded by
//! [`ClientOptions::timeout`], so a dead or silent server costs at most that per step.
//!
//! ```no_run
//! use mongo_wire::{bson::doc, Client, ClientOptions, FindOptions, StdConnector};
//!
//! let options = ClientOptions::new(vec!["127.0.0.1:27017".parse().unwrap()]);
//! let mut client = Client::connect(StdConnector, options)?;
//! client.insert_one("app", "visits", doc! { "page": "/" })?;
//! let newest = client.find("app", "visits", &FindOptions {
//!     sort: Some(doc! { "_id": -1 }),
//!     limit: Some(10),
//!     ..FindOptions::default()
//! })?;
//! # Ok::<(), mongo_wire::Error>(())
//! ```
//!
//! Not supported (by design, to stay small): DNS/SRV seeds, TLS, compression, sessions and
//! transactions, retryable writes, exhaust cursors, mechanisms other than SCRAM, connection
//! pools and server monitoring (a client holds one connection; rediscovery happens on demand).

pub mod client;
pub mod error;
pub mod scram;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod transport;
pub mod wire;

#[cfg(all(feature = "wasi-sockets", target_arch = "wasm32", target_os = "wasi"))]
pub mod wasi_transport;

pub use bson;
pub use client::{Client, ClientOptions, Connection, Credential, FindOptions};
pub use error::{Error, WriteError};
pub use scram::{Mechanism, ScramCache};
pub use topology::HelloReply;
pub use transport::{Connector, CountingConnector, StdConnector, Stream};
#[cfg(all(feature = "wasi-sockets", target_arch = "wasm32", target_os = "wasi"))]
pub use wasi_transport::{WasiConnector, WasiStream};
