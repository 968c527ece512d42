//! Which address a visit is recorded under.
//!
//! The peer address (Spin's `spin-client-addr`, or the socket peer natively) is the truth unless
//! the operator says a trusted proxy sits in front (`trust_forwarded_for`): only then do the
//! first `X-Forwarded-For` entry, or else `X-Real-IP`, count — and only if they parse as an IP
//! address. Anything else would let any client write arbitrary strings into the records.

use std::net::{IpAddr, SocketAddr};

/// The headers (or socket facts) a request carries about its origin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Origin<'a> {
    /// `ip:port`, `[v6]:port` or a bare IP: what the host saw as the TCP peer.
    pub peer: Option<&'a str>,
    pub x_forwarded_for: Option<&'a str>,
    pub x_real_ip: Option<&'a str>,
}

/// The client IP under the rules above, or `None` when not even the peer address parses.
pub fn client_ip(origin: Origin<'_>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = origin
            .x_forwarded_for
            .and_then(|v| v.split(',').next())
            .and_then(parse_addr);
        if let Some(ip) = forwarded.or_else(|| origin.x_real_ip.and_then(parse_addr)) {
            return Some(ip);
        }
    }
    origin.peer.and_then(parse_addr)
}

/// Accepts `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` (surrounding spaces ignored), and folds
/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) to IPv4 so one client is one record key.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            // `[::1]` without a port.
            text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn peer_forms() {
        for (text, want) in [
            ("10.1.2.3:5000", "10.1.2.3"),
            ("10.1.2.3", "10.1.2.3"),
            ("[::1]:80", "::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("[::ffff:192.0.2.7]:80", "192.0.2.7"),
        ] {
            assert_eq!(parse_addr(text), ip(want), "{text}");
        }
        for bad in [
            "",
            "localhost",
            "1.2.3",
            "1.2.3.4.5",
            "<script>",
            "[::1",
            "1.2.3.4:99999",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_only_when_trusted() {
        let origin = Origin {
            peer: Some("10.0.0.9:41000"),
            x_forwarded_for: Some("203.0.113.5, 10.0.0.1"),
            x_real_ip: Some("198.51.100.2"),
        };
        assert_eq!(client_ip(origin, false), ip("10.0.0.9"));
        assert_eq!(client_ip(origin, true), ip("203.0.113.5"));
    }

    #[test]
    fn falls_back_in_order_when_headers_do_not_parse() {
        let mut origin = Origin {
            peer: Some("10.0.0.9:41000"),
            x_forwarded_for: Some("not-an-ip, 203.0.113.5"),
            x_real_ip: Some("198.51.100.2"),
        };
        assert_eq!(client_ip(origin, true), ip("198.51.100.2"));
        origin.x_real_ip = Some("evil<b>");
        assert_eq!(client_ip(origin, true), ip("10.0.0.9"));
        origin.peer = Some("garbage");
        assert_eq!(client_ip(origin, true), None);
        assert_eq!(client_ip(Origin::default(), true), None);
    }
}
