//! What a server says about itself (`hello`), and which server to try next.
//!
//! There is no DNS here (wasi:sockets in Spin has name lookup disabled), so seeds are
//! `IP:port`. A replica-set member's `hello` names the primary and the members as
//! `host:port` strings; those are followed only when they are IP literals too — give every
//! member as a seed when the set is configured with host names.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bson::{Bson, Document};

use crate::error::as_i64;
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// The oldest wire version that speaks OP_MSG (MongoDB 3.6).
pub const MIN_WIRE_VERSION: i64 = 6;

/// The parts of a `hello` (or legacy `isMaster`) reply this client uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HelloReply {
    /// `isWritablePrimary` (or legacy `ismaster`): writes may go here.
    pub is_writable_primary: bool,
    pub secondary: bool,
    /// Replica set name, if this is a member of one.
    pub set_name: Option<String>,
    /// The primary, as the member reports it (`host:port`).
    pub primary: Option<String>,
    /// Members (`hosts` + `passives`), as reported.
    pub hosts: Vec<String>,
    pub max_message_size_bytes: usize,
    pub max_bson_object_size: usize,
    pub max_wire_version: i64,
    /// `msg: "isdbgrid"`: a mongos router.
    pub is_mongos: bool,
    /// The mechanisms the server offers for the user named in `saslSupportedMechs`.
    pub sasl_supported_mechs: Option<Vec<String>>,
}

impl HelloReply {
    /// Reads a `hello` reply; absent fields take MongoDB's defaults. Size limits are clamped to
    /// `1 KiB..=48 MB` so that a lying server cannot make us accept huge replies.
    pub fn from_document(d: &Document) -> HelloReply {
        let flag = |name: &str| matches!(d.get(name), Some(Bson::Boolean(true)));
        let string = |name: &str| match d.get(name) {
            Some(Bson::String(s)) => Some(s.clone()),
            _ => None,
        };
        let strings = |name: &str| -> Vec<String> {
            match d.get(name) {
                Some(Bson::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let size = |name: &str, default: usize| {
            as_i64(d.get(name))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default)
                .clamp(1024, DEFAULT_MAX_MESSAGE_SIZE)
        };
        let mut hosts = strings("hosts");
        hosts.extend(strings("passives"));
        HelloReply {
            is_writable_primary: flag("isWritablePrimary") || flag("ismaster"),
            secondary: flag("secondary"),
            set_name: string("setName"),
            primary: string("primary"),
            hosts,
            max_message_size_bytes: size("maxMessageSizeBytes", DEFAULT_MAX_MESSAGE_SIZE),
            max_bson_object_size: size("maxBsonObjectSize", 16 * 1024 * 1024),
            max_wire_version: as_i64(d.get("maxWireVersion")).unwrap_or(0),
            is_mongos: string("msg").as_deref() == Some("isdbgrid"),
            sasl_supported_mechs: d
                .contains_key("saslSupportedMechs")
                .then(|| strings("saslSupportedMechs")),
        }
    }

    /// The oldest MongoDB release with this `maxWireVersion` (`hello` does not report the
    /// version itself; `buildInfo` does).
    pub fn server_version_at_least(&self) -> &'static str {
        match self.max_wire_version {
            v if v >= 25 => "8.0",
            v if v >= 21 => "7.0",
            v if v >= 17 => "6.0",
            v if v >= 13 => "5.0",
            9..=12 => "4.4",
            8 => "4.2",
            7 => "4.0",
            6 => "3.6",
            _ => "3.4 or older",
        }
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match (&self.set_name, self.secondary) {
            (Some(set), true) => format!("secondary of replica set {set:?}"),
            (Some(set), false) => format!("non-writable member of replica set {set:?}"),
            _ => "not a writable primary".into(),
        }
    }
}

/// Picks which server to try next while looking for the writable primary: the seeds in order,
/// but a primary named by a member (as an IP literal) jumps the queue. Each address is tried
/// at most once per discovery round.
#[derive(Debug, Clone)]
pub struct Selector {
    queue: VecDeque<SocketAddr>,
    tried: Vec<SocketAddr>,
    /// Why each tried server was not used.
    pub reasons: Vec<String>,
}

impl Selector {
    /// Starts a round over `seeds`; `prefer` (e.g. the last known primary) goes first.
    pub fn new(seeds: &[SocketAddr], prefer: Option<SocketAddr>) -> Selector {
        let mut queue: VecDeque<SocketAddr> = VecDeque::new();
        for a in prefer.iter().chain(seeds) {
            if !queue.contains(a) {
                queue.push_back(*a);
            }
        }
        Selector {
            queue,
            tried: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// The next server to try, or `None` when every candidate has been tried.
    pub fn next_candidate(&mut self) -> Option<SocketAddr> {
        let a = self.queue.pop_front()?;
        self.tried.push(a);
        Some(a)
    }

    /// `addr` could not be reached or failed.
    pub fn failed(&mut self, addr: SocketAddr, reason: impl std::fmt::Display) {
        self.reasons.push(format!("{addr}: {reason}"));
    }

    /// `addr` answered `hello` but is not the writable primary: follow the primary it names,
    /// and queue the members it lists, when they are IP literals not yet tried.
    pub fn not_primary(&mut self, addr: SocketAddr, hello: &HelloReply) {
        self.reasons.push(format!("{addr}: {}", hello.describe()));
        if let Some(p) = hello
            .primary
            .as_deref()
            .and_then(|p| p.parse::<SocketAddr>().ok())
        {
            if !self.tried.contains(&p) {
                self.queue.retain(|a| *a != p);
                self.queue.push_front(p);
            }
        }
        for h in &hello.hosts {
            if let Ok(a) = h.parse::<SocketAddr>() {
                if !self.tried.contains(&a) && !self.queue.contains(&a) {
                    self.queue.push_back(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hello_fields() {
        let h = HelloReply::from_document(&doc! {
            "isWritablePrimary": false, "secondary": true, "setName": "rs0",
            "primary": "10.0.0.2:27017", "hosts": ["10.0.0.1:27017", "10.0.0.2:27017"],
            "passives": ["10.0.0.9:27017"], "maxMessageSizeBytes": 48000000,
            "maxBsonObjectSize": 16777216i64, "maxWireVersion": 21, "ok": 1.0,
        });
        assert!(!h.is_writable_primary && h.secondary);
        assert_eq!(h.set_name.as_deref(), Some("rs0"));
        assert_eq!(h.hosts.len(), 3);
        assert_eq!(h.max_message_size_bytes, 48_000_000);
        assert_eq!(h.max_bson_object_size, 16_777_216);
        assert_eq!(h.max_wire_version, 21);
        assert_eq!(h.describe(), "secondary of replica set \"rs0\"");
        assert_eq!(h.server_version_at_least(), "7.0");
        // Legacy isMaster and defaults.
        let h = HelloReply::from_document(&doc! {"ismaster": true, "msg": "isdbgrid"});
        assert!(h.is_writable_primary && h.is_mongos);
        assert_eq!(h.max_message_size_bytes, DEFAULT_MAX_MESSAGE_SIZE);
        // Lies are clamped.
        let h = HelloReply::from_document(
            &doc! {"maxMessageSizeBytes": i64::MAX, "maxBsonObjectSize": -1},
        );
        assert_eq!(h.max_message_size_bytes, DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(h.max_bson_object_size, 16 * 1024 * 1024);
        let h = HelloReply::from_document(&doc! {"maxMessageSizeBytes": 10});
        assert_eq!(h.max_message_size_bytes, 1024);
        let h = HelloReply::from_document(&doc! {"isWritablePrimary": "yes"});
        assert!(!h.is_writable_primary);
    }

    #[test]
    fn seeds_in_order_without_duplicates() {
        let mut s = Selector::new(&[a("10.0.0.1:1"), a("10.0.0.2:1"), a("10.0.0.1:1")], None);
        assert_eq!(s.next_candidate(), Some(a("10.0.0.1:1")));
        s.failed(a("10.0.0.1:1"), "refused");
        assert_eq!(s.next_candidate(), Some(a("10.0.0.2:1")));
        assert_eq!(s.next_candidate(), None);
        assert_eq!(s.reasons, vec!["10.0.0.1:1: refused"]);
    }

    #[test]
    fn preferred_goes_first() {
        let mut s = Selector::new(&[a("10.0.0.1:1"), a("10.0.0.2:1")], Some(a("10.0.0.2:1")));
        assert_eq!(s.next_candidate(), Some(a("10.0.0.2:1")));
        assert_eq!(s.next_candidate(), Some(a("10.0.0.1:1")));
        assert_eq!(s.next_candidate(), None);
    }

    #[test]
    fn named_primary_jumps_the_queue() {
        let seeds = [a("10.0.0.1:1"), a("10.0.0.2:1"), a("10.0.0.3:1")];
        let mut s = Selector::new(&seeds, None);
        let first = s.next_candidate().unwrap();
        let hello = HelloReply::from_document(&doc! {
            "secondary": true, "setName": "rs0", "primary": "10.0.0.3:1",
            "hosts": ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "mongo-0.mongo:27017"],
        });
        s.not_primary(first, &hello);
        assert_eq!(s.next_candidate(), Some(a("10.0.0.3:1")));
        assert_eq!(s.next_candidate(), Some(a("10.0.0.2:1")));
        // A member we were not given as a seed, learned from `hosts`; host names are skipped.
        assert_eq!(s.next_candidate(), Some(a("10.0.0.4:1")));
        assert_eq!(s.next_candidate(), None);
    }

    #[test]
    fn already_tried_primary_is_not_retried() {
        let mut s = Selector::new(&[a("10.0.0.1:1"), a("10.0.0.2:1")], None);
        let first = s.next_candidate().unwrap();
        // A stale member claims the one we just tried is primary: no loop.
        let hello = HelloReply::from_document(&doc! {"setName": "rs0", "primary": "10.0.0.1:1"});
        s.not_primary(first, &hello);
        assert_eq!(s.next_candidate(), Some(a("10.0.0.2:1")));
        let hello = HelloReply::from_document(&doc! {"setName": "rs0", "primary": "10.0.0.1:1"});
        s.not_primary(a("10.0.0.2:1"), &hello);
        assert_eq!(s.next_candidate(), None);
        assert_eq!(s.reasons.len(), 2);
    }
}
