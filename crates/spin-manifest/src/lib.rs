//! What a Spin application manifest (`spin.toml`, version 2) says, checked exactly as strictly
//! as Spin 3.6.3 checks it: visits-runner must never accept an app that real Spin refuses.
//! No I/O beyond reading the manifest file, and no wasmtime: the fuzz targets (fuzz/) and the
//! conformance corpus (tests/spin-conformance/) exercise it on its own.

pub mod allowed_hosts;
pub mod ids;
pub mod manifest;
pub mod routes;
pub mod variables;
