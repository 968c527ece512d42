//! The JSON the components exchange over Spin's local service chaining (and that the native
//! edition produces in-process): one definition, so page, counter and recorder cannot drift.
//!
//! - counter:  `POST /count/{key}` -> [`CountReply`]; `GET /health` -> [`BackendStatus`]
//! - recorder: `POST /records?limit=N` with a [`crate::record::NewVisit`] -> [`RecordsReply`]
//!   (stores, then lists, in one round trip); `GET /records?limit=N` -> [`RecordsReply`];
//!   `GET /health` -> [`BackendStatus`]
//! - any error: a 4xx/5xx status with an [`ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::record::Record;

pub const COUNTER_ORIGIN: &str = "http://counter.spin.internal";
pub const RECORDER_ORIGIN: &str = "http://recorder.spin.internal";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountReply {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsReply {
    pub records: Vec<Record>,
    /// Stored visits that did not decode and are left out (see [`crate::record::Listing`]).
    #[serde(default)]
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `redis`, `key-value`, `mongodb`, `sqlite`.
    pub backend: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn json(message: impl Into<String>) -> String {
        serde_json::to_string(&ErrorBody {
            error: message.into(),
        })
        .expect("a string serialises")
    }
}

/// Counter keys: what may follow `/count/`. Short and plain, so they are safe as Redis keys.
pub fn validate_counter_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "counter key must be 1-64 characters of A-Z a-z 0-9 - _ . :, got {:?}",
            key.chars().take(64).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_keys() {
        assert!(validate_counter_key("visits").is_ok());
        assert!(validate_counter_key("wasm-visits:page.v1_x").is_ok());
        for bad in ["", "a b", "a/b", "é", &"k".repeat(65)] {
            assert!(validate_counter_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_body() {
        assert_eq!(ErrorBody::json("no \"x\""), r#"{"error":"no \"x\""}"#);
    }
}
