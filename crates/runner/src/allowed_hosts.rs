//! `allowed_outbound_hosts` with Spin 3.6's syntax and matching rules:
//! `scheme://host[:port]`, `*` for any scheme/host/port, `*.domain` subdomain wildcards,
//! `*.spin.internal` (expanded to every component of the app), CIDR blocks, port ranges
//! `a..b` (end exclusive), and the scheme's well-known port when none is given.

use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::IpNet;
use std::net::IpAddr;

pub const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemeCfg {
    Any,
    One(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCfg {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    AnySubdomain(String),
    Domain(String),
    Ip(IpAddr),
    Cidr(IpNet),
    /// `self`: relative URLs (not used by wasi:http outbound here, kept for parsing).
    ToSelf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortCfg {
    Any,
    List(Vec<(u16, u16)>), // inclusive start, exclusive end (a single port p is (p, p+1))
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

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<Self> {
        let original = entry.to_string();
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            match url {
                "*" | ":" | "" | "?" => bail!("{url:?} is not an allowed outbound host format: hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each ('*://*:*' allows everything)"),
                _ => bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')"),
            }
        };
        // A path is not allowed (a lone trailing '/' is).
        let (hostport, path) = match rest.find('/') {
            // CIDR blocks contain a '/': only treat it as a path when what follows is not digits.
            Some(i)
                if !rest[i + 1..]
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .all(|c| c.is_ascii_digit())
                    || rest[i + 1..].is_empty() =>
            {
                (&rest[..i], &rest[i + 1..])
            }
            _ => (rest, ""),
        };
        if !path.is_empty() {
            bail!("{url:?} has a path but is not allowed to");
        }
        let (host, port) = split_host_port(hostport);
        let port = Self::parse_port(port, scheme)
            .with_context(|| format!("invalid allowed host port {port:?} in {url:?}"))?;
        let scheme = if scheme == "*" {
            SchemeCfg::Any
        } else if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic()) {
            bail!("invalid allowed host scheme {scheme:?} in {url:?}: only alphabetic characters are allowed");
        } else {
            SchemeCfg::One(scheme.to_ascii_lowercase())
        };
        let host = Self::parse_host(host)
            .with_context(|| format!("invalid allowed host {host:?} in {url:?}"))?;
        Ok(Self {
            original,
            scheme,
            host,
            port,
        })
    }

    fn parse_port(port: &str, scheme: &str) -> Result<PortCfg> {
        if port.is_empty() {
            let p = well_known_port(scheme).ok_or_else(|| {
                anyhow!("no port was provided and the scheme {scheme:?} does not have a known default port number")
            })?;
            return Ok(PortCfg::List(vec![(p, p.saturating_add(1))]));
        }
        if port == "*" {
            return Ok(PortCfg::Any);
        }
        if port.starts_with('{') {
            bail!("port lists are not yet supported");
        }
        if let Some((a, b)) = port.split_once("..") {
            let a: u16 = a
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            let b: u16 = b
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            return Ok(PortCfg::List(vec![(a, b)]));
        }
        let p: u16 = port
            .parse()
            .with_context(|| format!("port {port:?} is not a number"))?;
        Ok(PortCfg::List(vec![(p, p.saturating_add(1))]))
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
            bail!("host lists are not yet supported");
        }
        if let Ok(net) = host.parse::<IpNet>() {
            return Ok(HostCfg::Cidr(net.trunc()));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(HostCfg::Ip(ip));
        }
        let host = host.trim_end_matches('/');
        if host.contains('/') {
            bail!("must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            return Ok(HostCfg::AnySubdomain(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            bail!("not a valid host name");
        }
        Ok(HostCfg::Domain(host.to_ascii_lowercase()))
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = match &self.scheme {
            SchemeCfg::Any => true,
            SchemeCfg::One(s) => s == scheme,
        };
        let ip = host.parse::<IpAddr>().ok();
        let host_l = host.to_ascii_lowercase();
        let host_ok = match (&self.host, ip) {
            (HostCfg::Any, _) => true,
            (HostCfg::AnySubdomain(suffix), None) => host_l.ends_with(suffix.as_str()),
            (HostCfg::Domain(d), None) => *d == host_l,
            (HostCfg::Ip(a), Some(b)) => *a == b,
            (HostCfg::Cidr(net), Some(b)) => net.contains(&b),
            _ => false,
        };
        let port_ok = match &self.port {
            PortCfg::Any => true,
            PortCfg::List(l) => match port.or_else(|| well_known_port(scheme)) {
                Some(p) => l.iter().any(|(a, b)| p >= *a && p < *b),
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
                        hh.host = HostCfg::Domain(format!("{c}{SERVICE_CHAINING_SUFFIX}"));
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
    fn empty_denies_everything() {
        let h = hosts(&[]);
        assert!(!h.allows_url("http://example.com", "http"));
    }
}
