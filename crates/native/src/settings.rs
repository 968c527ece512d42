//! Startup settings: the Spin variables' names, upper-cased, read from the environment through
//! visits-core's [`Source`], so defaults and validation are exactly the Wasm edition's.

use std::net::SocketAddr;

use visits_core::config::{
    ConfigError, CounterBackend, PageSettings, RecordsBackend, Source, VARIABLES,
};

/// Where the server listens unless `LISTEN_ADDRESS` says otherwise.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:8080";

/// Everything the server needs, validated once at startup.
#[derive(Debug, Clone)]
pub struct Settings {
    pub page: PageSettings,
    pub counter: CounterBackend,
    pub records: RecordsBackend,
    pub listen: SocketAddr,
    /// No per-request log line (`QUIET=1` or `--quiet`), for benchmarks.
    pub quiet: bool,
    /// Slow and hostile clients: `CLIENT_HEADER_TIMEOUT`, `CLIENT_BODY_TIMEOUT`,
    /// `CLIENT_MAX_BODY_SIZE`, `KEEPALIVE_TIMEOUT`, `MAX_CONNECTIONS` (the runner's flags).
    pub limits: http_front::Limits,
}

impl Settings {
    /// Reads the process environment; `hostname` falls back to the system's hostname because a
    /// container's `HOSTNAME` is usually set (Kubernetes: the pod name) but a bare shell may not
    /// export it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok(), system_hostname)
    }

    /// `env` maps an upper-cased name to its value; `system_hostname` is asked only when
    /// `HOSTNAME` is unset or empty.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        system_hostname: impl Fn() -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let src = Source::new(|name: &str| {
            let value = env(&name.to_ascii_uppercase());
            if value.is_some() && name != "hostname" {
                return value;
            }
            match name {
                "hostname" if value.as_deref().is_none_or(|v| v.trim().is_empty()) => {
                    system_hostname()
                }
                _ => value,
            }
        });
        let listen_raw = src.get("listen_address");
        let listen_raw = if listen_raw.is_empty() {
            DEFAULT_LISTEN_ADDRESS.to_string()
        } else {
            listen_raw
        };
        let listen = listen_raw.parse().map_err(|_| ConfigError {
            variable: "listen_address".into(),
            message: format!("expected an IP:port such as 0.0.0.0:8080, got {listen_raw:?}"),
        })?;
        Ok(Settings {
            page: PageSettings::load(&src)?,
            counter: CounterBackend::load(&src)?,
            records: RecordsBackend::load(&src)?,
            listen,
            quiet: src.bool("quiet")?,
            limits: limits(&env)?,
        })
    }
}

/// The connection limits, each defaulting to http-front's (the runner's defaults).
fn limits(env: &impl Fn(&str) -> Option<String>) -> Result<http_front::Limits, ConfigError> {
    let mut limits = http_front::Limits::default();
    let bad = |variable: &str, message: String| ConfigError {
        variable: variable.to_ascii_lowercase(),
        message,
    };
    for (name, slot) in [
        ("CLIENT_HEADER_TIMEOUT", &mut limits.client_header_timeout),
        ("CLIENT_BODY_TIMEOUT", &mut limits.client_body_timeout),
        ("KEEPALIVE_TIMEOUT", &mut limits.keepalive_timeout),
    ] {
        if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
            *slot = http_front::parse_duration(&v).map_err(|m| bad(name, m))?;
        }
    }
    if let Some(v) = env("CLIENT_MAX_BODY_SIZE").filter(|v| !v.trim().is_empty()) {
        limits.client_max_body_size =
            http_front::parse_size(&v).map_err(|m| bad("CLIENT_MAX_BODY_SIZE", m))?;
    }
    if let Some(v) = env("MAX_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
        limits.max_connections = match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(bad(
                    "MAX_CONNECTIONS",
                    format!("expected a number >= 1, got {v:?}"),
                ))
            }
        };
    }
    Ok(limits)
}

/// The kernel's hostname (what `hostname` prints); `None` off Linux or when unreadable.
fn system_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The environment variables this binary reads, for `--help`.
pub fn variable_names() -> impl Iterator<Item = (String, &'static str)> {
    VARIABLES
        .iter()
        .map(|(name, default)| (name.to_ascii_uppercase(), *default))
        .chain([
            ("LISTEN_ADDRESS".to_string(), DEFAULT_LISTEN_ADDRESS),
            ("QUIET".to_string(), "false"),
            ("CLIENT_HEADER_TIMEOUT".to_string(), "10s"),
            ("CLIENT_BODY_TIMEOUT".to_string(), "10s"),
            ("CLIENT_MAX_BODY_SIZE".to_string(), "1MiB"),
            ("KEEPALIVE_TIMEOUT".to_string(), "5s"),
            ("MAX_CONNECTIONS".to_string(), "4096"),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)], system: Option<&str>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(
            move |name| env.get(name).cloned(),
            || system.map(str::to_string),
        )
    }

    #[test]
    fn defaults_are_visits_core_defaults() {
        let s = load(&[], None).unwrap();
        assert_eq!(s.page, PageSettings::default());
        assert_eq!(s.counter, CounterBackend::Embedded);
        assert_eq!(s.records, RecordsBackend::Embedded);
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(!s.quiet);
        assert_eq!(s.limits, http_front::Limits::default());
    }

    #[test]
    fn names_are_upper_cased_spin_variables() {
        let s = load(
            &[
                ("AUTHOR", "Ada"),
                ("COUNTER_BACKEND", "redis"),
                ("REDIS_ADDRESS", "10.0.0.5:6379"),
                ("RECORDS_BACKEND", "mongodb"),
                ("MONGO_ADDRESS", "10.0.0.6:27017"),
                ("RECORDS_LIMIT", "5"),
                ("LISTEN_ADDRESS", "127.0.0.1:0"),
                ("QUIET", "1"),
                // Lower-case names are not ours: ignored.
                ("author", "ignored"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.page.author, "Ada");
        assert_eq!(s.page.records_limit, 5);
        assert_eq!(
            s.counter,
            CounterBackend::Redis {
                address: "10.0.0.5:6379".into()
            }
        );
        // MONGO_ADDRESS alone: one seed (a direct connection), not 127.0.0.1 as well.
        assert!(matches!(s.records, RecordsBackend::MongoDb(ref m) if m.seeds.len() == 1));
        assert_eq!(s.listen.port(), 0);
        assert!(s.quiet);
    }

    #[test]
    fn hostname_prefers_env_then_system_then_default() {
        let s = load(&[("HOSTNAME", "web-7f9c")], Some("kernel")).unwrap();
        assert_eq!(s.page.hostname, "web-7f9c");
        let s = load(&[("HOSTNAME", " ")], Some("kernel")).unwrap();
        assert_eq!(s.page.hostname, "kernel");
        let s = load(&[], None).unwrap();
        assert_eq!(s.page.hostname, "localhost");
    }

    #[test]
    fn replica_set_seeds() {
        let s = load(
            &[
                ("RECORDS_BACKEND", "mongodb"),
                ("MONGO_ADDRESS", "10.0.0.1:27017"),
                ("MONGO_ADDRESS2", "10.0.0.2:27017"),
                ("MONGO_ADDRESS3", "10.0.0.3:27017"),
            ],
            None,
        )
        .unwrap();
        let RecordsBackend::MongoDb(m) = s.records else {
            panic!("mongodb expected")
        };
        assert_eq!(m.seeds.len(), 3);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (name, value, variable) in [
            ("COUNTER_BACKEND", "memcached", "counter_backend"),
            ("RECORDS_LIMIT", "0", "records_limit"),
            ("LISTEN_ADDRESS", "localhost:80", "listen_address"),
            ("QUIET", "maybe", "quiet"),
            ("CLIENT_HEADER_TIMEOUT", "soon", "client_header_timeout"),
            ("MAX_CONNECTIONS", "0", "max_connections"),
        ] {
            let e = load(&[(name, value)], None).unwrap_err();
            assert_eq!(e.variable, variable, "{name}={value}: {e}");
        }
        let e = load(
            &[
                ("RECORDS_BACKEND", "mongodb"),
                ("MONGO_ADDRESS", "mongo:27017"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(e.variable, "mongo_address");
    }
}
