//! Settings, read by name from Spin variables (components) or environment variables (native
//! edition, upper-cased names). [`VARIABLES`] lists every name with its default; `spin.toml`'s
//! `[variables]` must agree (a test checks it).
//!
//! Backends are chosen by explicit switches (`counter_backend`, `records_backend`) rather than by
//! leaving an address empty: Spin 3.6 rejects an `allowed_outbound_hosts` template that resolves
//! to an empty host, so address variables must always hold a valid value.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::record::MAX_LIMIT;

/// Every setting's name and default. Secrets default to empty (no authentication).
pub const VARIABLES: &[(&str, &str)] = &[
    ("author", "Unknown author"),
    ("project", "wasm-visits"),
    ("version", "v1"),
    ("hostname", "localhost"),
    ("counter_backend", "embedded"),
    ("counter_key", "visits"),
    ("redis_address", "127.0.0.1:6379"),
    ("records_backend", "embedded"),
    ("records_limit", "10"),
    ("trust_forwarded_for", "false"),
    ("mongo_address", "127.0.0.1:27017"),
    ("mongo_address2", "127.0.0.1:27017"),
    ("mongo_address3", "127.0.0.1:27017"),
    ("mongo_database", "visits"),
    ("mongo_collection", "records"),
    ("mongo_username", ""),
    ("mongo_password", ""),
    ("mongo_auth_source", "admin"),
    ("mongo_auth_mechanism", "SCRAM-SHA-256"),
    ("mongo_timeout_ms", "1000"),
];

/// The default of a known setting.
pub fn default_of(name: &str) -> Option<&'static str> {
    VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// A setting with a value the app cannot use; says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads settings through `lookup` (name -> value; `None` = unset, use the default).
pub struct Source<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Source<F> {
    pub fn new(lookup: F) -> Self {
        Source { lookup }
    }

    /// The raw value, trimmed, or the default.
    pub fn get(&self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(v) => v.trim().to_string(),
            None => default_of(name).unwrap_or_default().to_string(),
        }
    }

    fn err(&self, name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: name.to_string(),
            message: message.into(),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            other => Err(self.err(name, format!("expected true or false, got {other:?}"))),
        }
    }

    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let raw = self.get(name);
        match raw.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.err(
                name,
                format!(
                    "expected a whole number from {} to {}, got {raw:?}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn one_of<'a>(&self, name: &str, allowed: &[&'a str]) -> Result<&'a str, ConfigError> {
        let raw = self.get(name).to_ascii_lowercase();
        allowed.iter().find(|a| **a == raw).copied().ok_or_else(|| {
            self.err(
                name,
                format!("expected one of {}, got {raw:?}", allowed.join(", ")),
            )
        })
    }

    /// `host:port` with a non-empty host and a port; no scheme (the manifest adds `redis://`).
    fn host_port(&self, name: &str) -> Result<String, ConfigError> {
        let raw = self.get(name);
        if raw.contains("://") {
            return Err(self.err(
                name,
                format!("give host:port without a scheme, got {raw:?}"),
            ));
        }
        let valid = raw.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p != 0)
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        });
        if valid {
            Ok(raw)
        } else {
            Err(self.err(
                name,
                format!("expected host:port, e.g. 127.0.0.1:6379, got {raw:?}"),
            ))
        }
    }

    fn socket_addr(&self, name: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.get(name);
        raw.parse().map_err(|_| {
            self.err(
                name,
                format!(
                    "expected an IP:port such as 10.96.0.12:27017 (Wasm components have no DNS; on \
                     Kubernetes use $(MONGODB_SERVICE_HOST):27017), got {raw:?}"
                ),
            )
        })
    }
}

/// What the page component (or the native edition's page handler) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSettings {
    pub author: String,
    pub project: String,
    pub version: String,
    pub hostname: String,
    pub counter_key: String,
    pub records_enabled: bool,
    pub records_limit: usize,
    pub trust_forwarded_for: bool,
}

impl PageSettings {
    pub fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Self, ConfigError> {
        let counter_key = src.get("counter_key");
        crate::api::validate_counter_key(&counter_key).map_err(|m| src.err("counter_key", m))?;
        Ok(PageSettings {
            author: src.get("author"),
            project: src.get("project"),
            version: src.get("version"),
            hostname: src.get("hostname"),
            counter_key,
            records_enabled: RecordsBackendKind::load(src)? != RecordsBackendKind::Off,
            records_limit: src.number("records_limit", 1..=MAX_LIMIT as u64)? as usize,
            trust_forwarded_for: src.bool("trust_forwarded_for")?,
        })
    }
}

impl Default for PageSettings {
    fn default() -> Self {
        PageSettings::load(&Source::new(|_| None)).expect("defaults are valid")
    }
}

/// Where visits are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterBackend {
    /// Spin's embedded key-value store (`wasi:keyvalue` atomic increment) / an in-process counter.
    Embedded,
    /// Redis `INCR` at `host:port`.
    Redis { address: String },
}

impl CounterBackend {
    pub fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Self, ConfigError> {
        Ok(
            match src.one_of("counter_backend", &["embedded", "redis"])? {
                "redis" => CounterBackend::Redis {
                    address: src.host_port("redis_address")?,
                },
                _ => CounterBackend::Embedded,
            },
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            CounterBackend::Embedded => "key-value",
            CounterBackend::Redis { .. } => "redis",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordsBackendKind {
    Off,
    Embedded,
    MongoDb,
}

impl RecordsBackendKind {
    fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Self, ConfigError> {
        Ok(
            match src.one_of("records_backend", &["embedded", "mongodb", "off"])? {
                "off" => RecordsBackendKind::Off,
                "mongodb" => RecordsBackendKind::MongoDb,
                _ => RecordsBackendKind::Embedded,
            },
        )
    }
}

/// Where visits are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsBackend {
    /// No recorder: the classic "webnodb" page.
    Off,
    /// Spin's embedded SQLite database / the native edition's in-memory list.
    Embedded,
    MongoDb(MongoSettings),
}

impl RecordsBackend {
    pub fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Self, ConfigError> {
        Ok(match RecordsBackendKind::load(src)? {
            RecordsBackendKind::Off => RecordsBackend::Off,
            RecordsBackendKind::Embedded => RecordsBackend::Embedded,
            RecordsBackendKind::MongoDb => RecordsBackend::MongoDb(MongoSettings::load(src)?),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            RecordsBackend::Off => "off",
            RecordsBackend::Embedded => "sqlite",
            RecordsBackend::MongoDb(_) => "mongodb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    ScramSha256,
    ScramSha1,
}

/// MongoDB credentials; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoCredential {
    pub username: String,
    pub password: String,
    pub source: String,
    pub mechanism: AuthMechanism,
}

impl fmt::Debug for MongoCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoSettings {
    /// Seed addresses, deduplicated, in the order given. One is enough for a standalone server;
    /// give every member of a replica set so the primary can be found without DNS.
    pub seeds: Vec<SocketAddr>,
    pub database: String,
    pub collection: String,
    pub credential: Option<MongoCredential>,
    /// Bounds connect, each read and each write.
    pub timeout: Duration,
}

impl MongoSettings {
    pub fn load<F: Fn(&str) -> Option<String>>(src: &Source<F>) -> Result<Self, ConfigError> {
        // Every seed variable always holds an address (it doubles as a sandbox permission in
        // spin.toml), so an extra seed left at its default means "unused".
        let mut seeds = vec![src.socket_addr("mongo_address")?];
        for name in ["mongo_address2", "mongo_address3"] {
            let addr = src.socket_addr(name)?;
            let unused = default_of(name).is_some_and(|d| d.parse() == Ok(addr));
            if !unused && !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let database = src.get("mongo_database");
        if database.is_empty()
            || database.len() > 63
            || database
                .chars()
                .any(|c| "/\\. \"$*<>:|?".contains(c) || c.is_control())
        {
            return Err(src.err(
                "mongo_database",
                format!("not a valid MongoDB database name: {database:?}"),
            ));
        }
        let collection = src.get("mongo_collection");
        if collection.is_empty()
            || collection.len() > 120
            || collection.contains('$')
            || collection.starts_with("system.")
            || collection.chars().any(char::is_control)
        {
            return Err(src.err(
                "mongo_collection",
                format!("not a valid MongoDB collection name: {collection:?}"),
            ));
        }
        let username = src.get("mongo_username");
        let password = (src.lookup)("mongo_password").unwrap_or_default();
        let credential = if username.is_empty() {
            if !password.is_empty() {
                return Err(src.err("mongo_username", "a password is set but no username"));
            }
            None
        } else {
            let mechanism =
                match src.one_of("mongo_auth_mechanism", &["scram-sha-256", "scram-sha-1"])? {
                    "scram-sha-1" => AuthMechanism::ScramSha1,
                    _ => AuthMechanism::ScramSha256,
                };
            Some(MongoCredential {
                username,
                password,
                source: src.get("mongo_auth_source"),
                mechanism,
            })
        };
        Ok(MongoSettings {
            seeds,
            database,
            collection,
            credential,
            timeout: Duration::from_millis(src.number("mongo_timeout_ms", 1..=60_000)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn src(pairs: &[(&str, &str)]) -> Source<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Source::new(move |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_infrastructure() {
        let s = src(&[]);
        assert_eq!(CounterBackend::load(&s), Ok(CounterBackend::Embedded));
        assert_eq!(RecordsBackend::load(&s), Ok(RecordsBackend::Embedded));
        let page = PageSettings::default();
        assert!(page.records_enabled);
        assert_eq!(page.records_limit, 10);
        assert!(!page.trust_forwarded_for);
    }

    #[test]
    fn redis_backend_needs_host_port() {
        let s = src(&[
            ("counter_backend", "redis"),
            ("redis_address", "redis.default.svc:6379"),
        ]);
        assert_eq!(
            CounterBackend::load(&s),
            Ok(CounterBackend::Redis {
                address: "redis.default.svc:6379".into()
            })
        );
        for bad in ["redis://x:6379", "x", ":6379", "x:0", "x:notaport", ""] {
            let s = src(&[("counter_backend", "Redis"), ("redis_address", bad)]);
            let e = CounterBackend::load(&s).unwrap_err();
            assert_eq!(e.variable, "redis_address", "{bad}");
        }
        let e = CounterBackend::load(&src(&[("counter_backend", "memcached")])).unwrap_err();
        assert!(
            e.to_string().contains("expected one of embedded, redis"),
            "{e}"
        );
    }

    #[test]
    fn mongo_settings() {
        let s = src(&[
            ("records_backend", "mongodb"),
            ("mongo_address", "10.0.0.1:27017"),
            ("mongo_address2", "10.0.0.2:27017"),
            ("mongo_address3", "10.0.0.1:27017"),
            ("mongo_username", "app"),
            ("mongo_password", "s3cret "),
        ]);
        let RecordsBackend::MongoDb(m) = RecordsBackend::load(&s).unwrap() else {
            panic!("mongodb expected")
        };
        assert_eq!(m.seeds.len(), 2, "duplicates are dropped");
        let only = |extra: &str| {
            let s = src(&[
                ("records_backend", "mongodb"),
                ("mongo_address", "10.0.0.9:27017"),
                ("mongo_address2", extra),
            ]);
            match RecordsBackend::load(&s).unwrap() {
                RecordsBackend::MongoDb(m) => m.seeds,
                _ => unreachable!(),
            }
        };
        let seed = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            only("127.0.0.1:27017"),
            [seed("10.0.0.9:27017")],
            "a seed left at its default is unused"
        );
        assert_eq!(
            only("10.0.0.8:27017"),
            [seed("10.0.0.9:27017"), seed("10.0.0.8:27017")]
        );
        let cred = m.credential.unwrap();
        assert_eq!(cred.password, "s3cret ", "passwords are not trimmed");
        assert_eq!(cred.mechanism, AuthMechanism::ScramSha256);
        assert!(!format!("{cred:?}").contains("s3cret"));
        assert_eq!(m.timeout, Duration::from_secs(1));

        let e = RecordsBackend::load(&src(&[
            ("records_backend", "mongodb"),
            ("mongo_address", "mongodb:27017"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("no DNS"), "{e}");
        let e = RecordsBackend::load(&src(&[
            ("records_backend", "mongodb"),
            ("mongo_database", "a.b"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "mongo_database");
        let e = RecordsBackend::load(&src(&[
            ("records_backend", "mongodb"),
            ("mongo_password", "x"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "mongo_username");
        let e = RecordsBackend::load(&src(&[
            ("records_backend", "mongodb"),
            ("mongo_timeout_ms", "0"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "mongo_timeout_ms");
    }

    #[test]
    fn page_settings_validation() {
        let s = src(&[
            ("records_backend", "off"),
            ("trust_forwarded_for", "TRUE"),
            ("records_limit", "5"),
        ]);
        let p = PageSettings::load(&s).unwrap();
        assert!(!p.records_enabled && p.trust_forwarded_for && p.records_limit == 5);
        for (k, v) in [
            ("records_limit", "0"),
            ("records_limit", "101"),
            ("trust_forwarded_for", "maybe"),
            ("counter_key", "a b"),
        ] {
            assert_eq!(PageSettings::load(&src(&[(k, v)])).unwrap_err().variable, k);
        }
    }

    /// spin.toml is where Spin users see the defaults: it must say what this table says.
    #[test]
    fn spin_toml_declares_every_variable_with_these_defaults() {
        let manifest =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spin.toml"))
                .expect("spin.toml at the repository root");
        let manifest: toml::Table = manifest.parse().expect("spin.toml parses");
        let vars = manifest["variables"].as_table().expect("[variables]");
        for (name, default) in VARIABLES {
            let decl = vars
                .get(*name)
                .unwrap_or_else(|| panic!("spin.toml lacks variable {name}"));
            let got = decl.get("default").and_then(|d| d.as_str());
            assert_eq!(got, Some(*default), "default of {name} in spin.toml");
        }
        for name in vars.keys() {
            assert!(
                default_of(name).is_some(),
                "spin.toml variable {name} is unknown to visits-core"
            );
        }
    }
}
