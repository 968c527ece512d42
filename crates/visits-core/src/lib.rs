//! Shared logic of wasm-visits, used by the Spin components, the native (container) edition and
//! the tests, so that every edition renders, validates and serialises the same way.
//!
//! Nothing here does I/O: callers fetch the count and the records however their platform allows
//! (Spin APIs, Redis/MongoDB drivers) and hand the results to these functions.

pub mod api;
pub mod client_ip;
pub mod config;
pub mod health;
pub mod html;
pub mod page;
pub mod record;
pub mod time;

pub use record::Record;
pub use time::UtcTime;
