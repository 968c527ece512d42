//! `allowed_outbound_hosts` with Spin 3.6.3's syntax and matching rules
//! (`crates/outbound-networking-config/src/allowed_hosts.rs`): `scheme://host[:port]`, `*` for
//! any scheme/host/port, `*.domain` subdomain wildcards, `*.spin.internal` (expanded to every
//! component of the app), CIDR blocks, port ranges `a..b` (end exclusive), the scheme's
//! well-known port when none is given, `{{ var }}` templates resolved at start.

use crate::variables::Template;
use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::IpNet;
use std::net::IpAddr;

pub const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemeCfg {
    Any,
    /// Compared as written: Spin does not lower-case it, so `HTTP://...` never matches.
    One(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCfg {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    AnySubdomain(String),
    Literal(url::Host),
    Cidr(IpNet),
    /// `self`: relative URLs (not used by wasi:http outbound here, kept for parsing).
    ToSelf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortCfg {
    Any,
    /// Inclusive start, exclusive end (a single port p is (p, p+1)).
    Range(u32, u32),
}

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: SchemeCfg,
    host: HostCfg,
    port: PortCfg,
}

pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn split_host_port(hostport: &str) -> (&str, &str) {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &rest[..end];
            let after = &rest[end + 1..];
            return (host, after.strip_prefix(':').unwrap_or(after));
        }
    }
    hostport.rsplit_once(':').unwrap_or((hostport, ""))
}

const LEARN_MORE: &str =
    "Learn more: https://spinframework.dev/v3/http-outbound#granting-http-permissions-to-components";

impl AllowedHost {
    /// Parse one entry the way Spin does: the port is what follows the *last* ':' (so an IPv6
    /// host needs a port: `http://[::1]:80`), then the scheme, then the host.
    pub fn parse(entry: &str) -> Result<Self> {
        let original = entry.to_string();
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            match url {
                "*" | ":" | "" | "?" => bail!("{url:?} is not an allowed outbound host format: hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each; '*://*:*' allows all outbound networking (and obviates all network sandboxing). {LEARN_MORE}"),
                _ => bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://'). {LEARN_MORE}"),
            }
        };
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match port.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                bail!("{url:?} has a path but is not allowed to")
            }
            Some((port, _)) => port,
            None => port,
        };
        let port = Self::parse_port(port, scheme)
            .with_context(|| format!("Invalid allowed host port {port:?}"))?;
        let scheme = Self::parse_scheme(scheme)
            .with_context(|| format!("Invalid allowed host scheme {scheme:?}"))?;
        let host =
            Self::parse_host(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
        Ok(Self {
            original,
            scheme,
            host,
            port,
        })
    }

    fn parse_scheme(scheme: &str) -> Result<SchemeCfg> {
        if scheme == "*" {
            return Ok(SchemeCfg::Any);
        }
        if scheme.starts_with('{') {
            bail!("scheme lists are not supported");
        }
        if scheme.chars().any(|c| !c.is_alphabetic()) {
            bail!("only alphabetic characters are allowed");
        }
        Ok(SchemeCfg::One(scheme.to_string()))
    }

    fn parse_port(port: &str, scheme: &str) -> Result<PortCfg> {
        if port.is_empty() {
            let p = well_known_port(scheme).ok_or_else(|| {
                anyhow!("no port was provided and the scheme {scheme:?} does not have a known default port number")
            })?;
            return Ok(PortCfg::Range(p.into(), u32::from(p) + 1));
        }
        if port == "*" {
            return Ok(PortCfg::Any);
        }
        if port.starts_with('{') {
            bail!("port lists are not yet supported");
        }
        if let Some((a, b)) = port.split_once("..") {
            let num = |s: &str| {
                s.parse::<u16>()
                    .with_context(|| format!("port range {port:?} contains non-number"))
            };
            return Ok(PortCfg::Range(num(a)?.into(), num(b)?.into()));
        }
        let p: u16 = port
            .parse()
            .with_context(|| format!("port {port:?} is not a number"))?;
        Ok(PortCfg::Range(p.into(), u32::from(p) + 1))
    }

    fn parse_host(host: &str) -> Result<HostCfg> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostCfg::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostCfg::ToSelf);
        }
        if host.starts_with('{') {
            if !host.ends_with('}') {
                bail!("unterminated host list");
            }
            bail!("host lists are not yet supported");
        }
        if let Ok(net) = host.parse::<IpNet>() {
            return Ok(HostCfg::Cidr(net.trunc()));
        }
        let host = host.trim_end_matches('/');
        if host.contains('/') {
            bail!("must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            return Ok(HostCfg::AnySubdomain(format!(".{domain}")));
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        Ok(HostCfg::Literal(url::Host::parse(host)?))
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = match &self.scheme {
            SchemeCfg::Any => true,
            SchemeCfg::One(s) => s == scheme,
        };
        // Spin parses the destination host as a URL host: IPv6 in brackets, domains lower-cased.
        let parsed = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => url::Host::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => url::Host::Ipv6(ip),
            Err(_) => match url::Host::parse(host) {
                Ok(h) => h,
                Err(_) => return false,
            },
        };
        let host_ok = match (&self.host, &parsed) {
            (HostCfg::Any, _) => true,
            (HostCfg::AnySubdomain(suffix), url::Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostCfg::Literal(l), h) => l == h,
            (HostCfg::Cidr(net), url::Host::Ipv4(ip)) => net.contains(&IpAddr::V4(*ip)),
            (HostCfg::Cidr(net), url::Host::Ipv6(ip)) => net.contains(&IpAddr::V6(*ip)),
            _ => false,
        };
        let port_ok = match &self.port {
            PortCfg::Any => true,
            PortCfg::Range(a, b) => match port.or_else(|| well_known_port(scheme)) {
                Some(p) => (*a..*b).contains(&u32::from(p)),
                None => false,
            },
        };
        scheme_ok && host_ok && port_ok
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

/// An `allowed_outbound_hosts` entry as written in the manifest: checked while the TOML is read
/// when it is literal, kept as a template (resolved at start) otherwise.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct HostEntry {
    pub template: Template,
}

impl TryFrom<String> for HostEntry {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "insecure:allow-all" {
            return Err("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic".into());
        }
        let template = Template::parse(&s).map_err(|e| e.to_string())?;
        if template.is_literal() {
            AllowedHost::parse(&s).map_err(|e| format!("{e:#}"))?;
        }
        Ok(Self { template })
    }
}

/// A component's whole outbound allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

/// A destination, parsed the way Spin parses outbound URLs for the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl OutboundUrl {
    /// Parse `scheme://[user@]host[:port][/path]`, or `host:port` with `default_scheme`.
    pub fn parse(url: &str, default_scheme: &str) -> Result<Self> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r))
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.') =>
            {
                (s.to_ascii_lowercase(), r)
            }
            _ => (default_scheme.to_string(), url),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let hostport = authority
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(authority);
        let (host, port) = split_host_port(hostport);
        if host.is_empty() {
            bail!("{url:?} does not have a host component");
        }
        let port = if port.is_empty() {
            None
        } else {
            Some(
                port.parse::<u16>()
                    .with_context(|| format!("invalid port in {url:?}"))?,
            )
        };
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl AllowedHosts {
    /// Parse resolved entries; `*.spin.internal` is expanded to the app's component ids.
    pub fn parse(entries: &[String], component_ids: &[String]) -> Result<Self> {
        if entries.len() == 1 && entries[0] == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
        }
        let mut hosts = Vec::new();
        for e in entries {
            let h = AllowedHost::parse(e)?;
            match &h.host {
                HostCfg::AnySubdomain(s) if s == SERVICE_CHAINING_SUFFIX => {
                    for c in component_ids {
                        let mut hh = h.clone();
                        hh.host = HostCfg::Literal(url::Host::Domain(format!(
                            "{c}{SERVICE_CHAINING_SUFFIX}"
                        )));
                        hosts.push(hh);
                    }
                }
                _ => hosts.push(h),
            }
        }
        Ok(Self { hosts })
    }

    pub fn allows(&self, url: &OutboundUrl) -> bool {
        self.hosts
            .iter()
            .any(|h| h.allows(&url.scheme, &url.host, url.port))
    }

    /// Check a URL string; unparseable URLs are denied.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        OutboundUrl::parse(url, default_scheme)
            .map(|u| self.allows(&u))
            .unwrap_or(false)
    }
}

/// `counter.spin.internal[:port]` -> `Some("counter")`.
pub fn service_chaining_target(host: &str) -> Option<&str> {
    let (host, _) = split_host_port(host);
    let (first, rest) = host.split_once('.')?;
    (rest.eq_ignore_ascii_case("spin.internal")).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(e: &[&str]) -> AllowedHosts {
        let e: Vec<String> = e.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&e, &["counter".into(), "recorder".into()]).unwrap()
    }

    #[test]
    fn exact_and_default_ports() {
        let h = hosts(&["http://example.com", "redis://127.0.0.1:6379"]);
        assert!(h.allows_url("http://example.com/path", "http"));
        assert!(h.allows_url("http://example.com:80/", "http"));
        assert!(!h.allows_url("http://example.com:8080/", "http"));
        assert!(!h.allows_url("https://example.com/", "https"));
        assert!(!h.allows_url("http://other.com/", "http"));
        assert!(h.allows_url("redis://127.0.0.1:6379", "redis"));
        assert!(h.allows_url("redis://127.0.0.1", "redis"));
        assert!(!h.allows_url("redis://127.0.0.2:6379", "redis"));
    }

    #[test]
    fn wildcards() {
        let h = hosts(&["*://*.example.com:*", "http://*:8080"]);
        assert!(h.allows_url("https://api.example.com:9999", "https"));
        assert!(!h.allows_url("https://example.com", "https"));
        assert!(h.allows_url("http://anything:8080", "http"));
        assert!(!h.allows_url("http://anything:8081", "http"));
        let all = hosts(&["*://*:*"]);
        assert!(all.allows_url("tcp://10.1.2.3:1", "tcp"));
    }

    #[test]
    fn cidr_ranges_and_tcp() {
        let h = hosts(&["tcp://10.0.0.0/8:27017", "tcp://127.0.0.1:5000..5010"]);
        assert!(h.allows_url("10.9.8.7:27017", "tcp"));
        assert!(!h.allows_url("11.0.0.1:27017", "tcp"));
        assert!(!h.allows_url("10.0.0.1:27018", "tcp"));
        assert!(h.allows_url("127.0.0.1:5000", "tcp"));
        assert!(h.allows_url("127.0.0.1:5009", "tcp"));
        assert!(!h.allows_url("127.0.0.1:5010", "tcp"));
        assert!(!h.allows_url("[::1]:5000", "tcp"));
        let v6 = hosts(&["tcp://[::1]:80"]);
        assert!(v6.allows_url("[::1]:80", "tcp"));
    }

    #[test]
    fn service_chaining() {
        let h = hosts(&["http://*.spin.internal"]);
        assert!(h.allows_url("http://counter.spin.internal/x", "http"));
        assert!(h.allows_url("http://recorder.spin.internal", "http"));
        assert!(!h.allows_url("http://nope.spin.internal", "http"));
        let one = hosts(&["http://counter.spin.internal"]);
        assert!(one.allows_url("http://counter.spin.internal/", "http"));
        assert!(!one.allows_url("http://recorder.spin.internal/", "http"));
        assert_eq!(
            service_chaining_target("counter.spin.internal"),
            Some("counter")
        );
        assert_eq!(
            service_chaining_target("counter.spin.internal:80"),
            Some("counter")
        );
        assert_eq!(service_chaining_target("example.com"), None);
    }

    #[test]
    fn invalid_entries() {
        for bad in [
            "*",
            "example.com",
            "http://example.com/path",
            "ht1p://x",
            "http://a*b.com",
            "tcp://10.0.0.1",
            "http://x:notaport",
            "insecure:allow-all",
        ] {
            assert!(
                AllowedHosts::parse(&[bad.to_string()], &[]).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(AllowedHost::parse("http://example.com/").is_ok());
    }

    #[test]
    fn spins_own_parse_cases() {
        // crates/outbound-networking-config/src/allowed_hosts.rs tests
        for ok in [
            "http://spin.fermyon.dev",
            "http://spin.fermyon.dev/",
            "http://spin.fermyon.dev:4444/",
            "http://spin.fermyon.dev:4444..5555",
            "*://spin.fermyon.dev:7777",
            "http://self",
            "http://localhost:3001",
            "http://*.example.com",
            "http://192.168.1.1:3002",
            "http://[::1]:8001",
            "*://127.0.0.0/24:80",
            "*://ff00::/8:80",
            "*://*:*",
        ] {
            AllowedHost::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        for bad in [
            "spin.fermyon.dev",
            "spin.fermyon.dev:80",
            "localhost",
            "http://[::1]",
            "*://127.0.0.0/24",
            "http://spin.fermyon.dev/a",
            "http://spin.fermyon.dev:6666/a/b",
            "http://*.fermyon.dev/a",
            "HTTP://example.com",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad} should be rejected");
        }
        let h = hosts(&["*://127.0.0.1/24:63551"]);
        assert!(h.allows_url("tcp://127.0.0.1:63551", "tcp"));
        // the scheme is compared as written
        let upper = hosts(&["HTTP://example.com:80"]);
        assert!(!upper.allows_url("http://example.com/", "http"));
    }

    #[test]
    fn empty_denies_everything() {
        let h = hosts(&[]);
        assert!(!h.allows_url("http://example.com", "http"));
    }
}
