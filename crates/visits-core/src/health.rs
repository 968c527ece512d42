//! The readiness report: 200 when every configured backend answers, 503 naming what failed.

use serde_json::{Map, Value};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HealthReport {
    checks: Vec<(String, Result<(), String>)>,
}

impl HealthReport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one check, e.g. `("counter", Err("redis: connection refused"))`.
    pub fn check(mut self, name: impl Into<String>, result: Result<(), String>) -> Self {
        self.checks.push((name.into(), result));
        self
    }

    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    pub fn status_code(&self) -> u16 {
        if self.is_ok() {
            200
        } else {
            503
        }
    }

    /// `{"status":"ok","checks":{"counter":"ok"}}` or
    /// `{"status":"unavailable","checks":{"counter":"ok","recorder":"<why>"},"failed":["recorder"]}`
    pub fn to_json(&self) -> String {
        let mut checks = Map::new();
        for (name, result) in &self.checks {
            let v = match result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            };
            checks.insert(name.clone(), Value::String(v));
        }
        let mut body = Map::new();
        body.insert(
            "status".into(),
            Value::from(if self.is_ok() { "ok" } else { "unavailable" }),
        );
        body.insert("checks".into(), Value::Object(checks));
        if !self.is_ok() {
            let failed = self
                .checks
                .iter()
                .filter(|(_, r)| r.is_err())
                .map(|(n, _)| Value::from(n.as_str()));
            body.insert("failed".into(), Value::Array(failed.collect()));
        }
        Value::Object(body).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_and_not() {
        let ok = HealthReport::new().check("counter", Ok(()));
        assert_eq!(ok.status_code(), 200);
        let v: Value = serde_json::from_str(&ok.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "ok", "checks": {"counter": "ok"}})
        );
        let bad = ok.check("recorder", Err("mongodb: timed out".into()));
        assert_eq!(bad.status_code(), 503);
        let v: Value = serde_json::from_str(&bad.to_json()).unwrap();
        assert_eq!(v["status"], "unavailable");
        assert_eq!(v["checks"]["recorder"], "mongodb: timed out");
        assert_eq!(v["failed"], serde_json::json!(["recorder"]));
    }
}
