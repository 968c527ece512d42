//! The record model: one visit, as stored by the recorder and shown on the page.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::time::UtcTime;

/// How many records the page shows unless `records_limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10;
/// The most records one request may ask for: keeps replies (and MongoDB cursors) small.
pub const MAX_LIMIT: usize = 100;
/// Longest page path stored with a record.
pub const MAX_PAGE_LEN: usize = 256;

/// One recorded visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub client_ip: IpAddr,
    pub date: UtcTime,
    pub page: String,
}

/// What the page asks the recorder to store: the date is the recorder's, not the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVisit {
    pub client_ip: IpAddr,
    pub page: String,
}

/// Records read back from a store, newest first, and how many stored ones did not decode.
///
/// The one rule for every store and both editions: a stored visit that does not decode is
/// skipped and counted, never allowed to hide the others (the page says how many it skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub records: Vec<Record>,
    pub skipped: usize,
}

impl Listing {
    /// Decodes each item with `decode`; an item that fails is counted, and reported through
    /// `log` the first time `log` sees its `id`.
    pub fn decode<T>(
        items: impl IntoIterator<Item = T>,
        decode: impl Fn(&T) -> Result<Record, RecordError>,
        id: impl Fn(&T) -> String,
        log: &LoggedOnce,
    ) -> (Listing, Vec<String>) {
        let mut listing = Listing::default();
        let mut messages = Vec::new();
        for item in items {
            match decode(&item) {
                Ok(r) => listing.records.push(r),
                Err(e) => {
                    listing.skipped += 1;
                    let id = id(&item);
                    if log.first_time(&id) {
                        messages.push(format!("skipping stored visit {id}: {e}"));
                    }
                }
            }
        }
        (listing, messages)
    }
}

/// Which bad stored items were already logged, so each is logged once per process, not once
/// per page view. Bounded: after [`LoggedOnce::CAP`] ids it forgets them all and starts over
/// (a flood of bad documents then logs at most once per `CAP` of them per round).
#[derive(Debug, Default)]
pub struct LoggedOnce {
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl LoggedOnce {
    pub const CAP: usize = 1024;

    pub const fn new() -> Self {
        LoggedOnce {
            seen: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// True the first time `id` is seen (since the set last filled up).
    pub fn first_time(&self, id: &str) -> bool {
        // Every critical section leaves the set valid: a poisoned lock is still usable.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(id) {
            return false;
        }
        if seen.len() >= Self::CAP {
            seen.clear();
        }
        seen.insert(id.to_string());
        true
    }
}

/// Input the record model refuses, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordError {}

impl NewVisit {
    /// Checks the page path: absolute, printable ASCII, at most [`MAX_PAGE_LEN`] bytes.
    pub fn validate(&self) -> Result<(), RecordError> {
        validate_page(&self.page)
    }

    pub fn into_record(self, date: UtcTime) -> Record {
        Record {
            client_ip: self.client_ip,
            date,
            page: self.page,
        }
    }
}

pub fn validate_page(page: &str) -> Result<(), RecordError> {
    if !page.starts_with('/') {
        return Err(RecordError(format!(
            "page must start with '/', got {:?}",
            truncate(page)
        )));
    }
    if page.len() > MAX_PAGE_LEN {
        return Err(RecordError(format!(
            "page is longer than {MAX_PAGE_LEN} bytes"
        )));
    }
    if !page.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RecordError(format!(
            "page must be printable ASCII without spaces, got {:?}",
            truncate(page)
        )));
    }
    Ok(())
}

/// Parses a `limit` query value: absent means [`DEFAULT_LIMIT`], otherwise 1..=[`MAX_LIMIT`].
pub fn parse_limit(value: Option<&str>) -> Result<usize, RecordError> {
    let Some(value) = value else {
        return Ok(DEFAULT_LIMIT);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(RecordError(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}, got {:?}",
            truncate(value)
        ))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(feature = "bson")]
mod bson_codec {
    //! The MongoDB document shape, shared by the Wasm recorder's own client and the native
    //! edition's official driver: `{client_ip: string, date: datetime, page: string}`.
    use super::*;
    use bson::{doc, Bson, Document};

    impl Record {
        pub fn to_document(&self) -> Document {
            doc! {
                "client_ip": self.client_ip.to_string(),
                "date": bson::DateTime::from_millis(self.date.unix_millis()),
                "page": self.page.as_str(),
            }
        }

        /// Decodes a stored document, rejecting (never panicking on) anything malformed:
        /// missing fields, wrong types, an IP that does not parse, an invalid page.
        pub fn from_document(doc: &Document) -> Result<Record, RecordError> {
            let field = |name: &str| {
                doc.get(name)
                    .ok_or_else(|| RecordError(format!("record has no {name:?} field")))
            };
            let client_ip = match field("client_ip")? {
                Bson::String(s) => s.parse::<IpAddr>().map_err(|_| {
                    RecordError(format!("client_ip {:?} is not an IP address", truncate(s)))
                })?,
                other => return Err(type_error("client_ip", "string", other)),
            };
            let date = match field("date")? {
                Bson::DateTime(d) => UtcTime::from_unix_millis(d.timestamp_millis()),
                other => return Err(type_error("date", "datetime", other)),
            };
            let page = match field("page")? {
                Bson::String(s) => s.clone(),
                other => return Err(type_error("page", "string", other)),
            };
            validate_page(&page)?;
            Ok(Record {
                client_ip,
                date,
                page,
            })
        }
    }

    impl Listing {
        /// Decodes documents as read from a collection (newest first): the rule both editions'
        /// MongoDB recorders use. Documents are named by their `_id` in the log lines returned.
        pub fn from_documents(docs: &[Document], log: &LoggedOnce) -> (Listing, Vec<String>) {
            Listing::decode(
                docs,
                |d| Record::from_document(d),
                |d| {
                    d.get("_id")
                        .map_or_else(|| "without _id".into(), |v| v.to_string())
                },
                log,
            )
        }
    }

    fn type_error(name: &str, want: &str, got: &Bson) -> RecordError {
        RecordError(format!(
            "record field {name:?} should be a {want}, got {:?}",
            got.element_type()
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_rejections() {
            let r = Record {
                client_ip: "2001:db8::7".parse().unwrap(),
                date: UtcTime::from_unix_millis(1_795_308_400_123),
                page: "/".into(),
            };
            assert_eq!(Record::from_document(&r.to_document()), Ok(r.clone()));
            let mut d = r.to_document();
            d.insert("client_ip", "nope");
            assert!(Record::from_document(&d).is_err());
            let mut d = r.to_document();
            d.insert("date", "2026-01-01");
            assert!(Record::from_document(&d).is_err());
            let mut d = r.to_document();
            d.remove("page");
            assert!(Record::from_document(&d).is_err());
            let mut d = r.to_document();
            d.insert("page", "no-slash");
            assert!(Record::from_document(&d).is_err());
        }

        #[test]
        fn a_bad_document_is_skipped_counted_and_logged_once() {
            let good = |i: i64| {
                let mut d = Record {
                    client_ip: "192.0.2.1".parse().unwrap(),
                    date: UtcTime::from_unix_millis(1_795_308_400_000 + i),
                    page: "/".into(),
                }
                .to_document();
                d.insert("_id", i);
                d
            };
            let mut docs: Vec<Document> = (0..10).map(good).collect();
            docs[3].insert("client_ip", 42_i32);
            let log = LoggedOnce::new();
            let (listing, messages) = Listing::from_documents(&docs, &log);
            assert_eq!(listing.records.len(), 9);
            assert_eq!(listing.skipped, 1);
            assert_eq!(messages.len(), 1);
            assert!(messages[0].contains("3") && messages[0].contains("client_ip"));
            // Same bad document on the next page view: counted again, not logged again.
            let (listing, messages) = Listing::from_documents(&docs, &log);
            assert_eq!((listing.records.len(), listing.skipped), (9, 1));
            assert!(messages.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_once_is_bounded() {
        let log = LoggedOnce::new();
        assert!(log.first_time("a"));
        assert!(!log.first_time("a"));
        for i in 0..LoggedOnce::CAP {
            log.first_time(&i.to_string());
        }
        assert!(log.seen.lock().unwrap().len() <= LoggedOnce::CAP);
        // The set was cleared on the way: "a" is new again.
        assert!(log.first_time("a"));
    }

    #[test]
    fn pages() {
        assert!(validate_page("/").is_ok());
        assert!(validate_page("/a/b?c=d").is_ok());
        assert!(validate_page("").is_err());
        assert!(validate_page("x").is_err());
        assert!(validate_page("/a b").is_err());
        assert!(validate_page("/é").is_err());
        assert!(validate_page(&format!("/{}", "a".repeat(MAX_PAGE_LEN))).is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("100")), Ok(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_visit_json_is_strict() {
        let v: NewVisit = serde_json::from_str(r#"{"client_ip":"192.0.2.1","page":"/"}"#).unwrap();
        assert_eq!(v.client_ip.to_string(), "192.0.2.1");
        assert!(serde_json::from_str::<NewVisit>(r#"{"client_ip":"x","page":"/"}"#).is_err());
        assert!(serde_json::from_str::<NewVisit>(
            r#"{"client_ip":"192.0.2.1","page":"/","date":1}"#
        )
        .is_err());
    }

    #[test]
    fn record_json_shape() {
        let r = Record {
            client_ip: "192.0.2.1".parse().unwrap(),
            date: UtcTime::from_unix_millis(0),
            page: "/".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"client_ip":"192.0.2.1","date":"1970-01-01T00:00:00.000Z","page":"/"}"#
        );
    }
}
