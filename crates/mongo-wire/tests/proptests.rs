//! Property tests: the reply parser and the record decoder never panic, whatever the bytes.
//! Case counts are modest (CI has 2 cores); raise them with PROPTEST_CASES=N.

use std::net::IpAddr;

use mongo_wire::bson::{self, doc, Bson, Document};
use mongo_wire::wire::{decode_reply, encode_op_msg, DEFAULT_MAX_MESSAGE_SIZE};
use proptest::prelude::*;
use visits_core::{Record, UtcTime};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn leaf() -> impl Strategy<Value = Bson> {
    prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        ".{0,12}".prop_map(Bson::String),
        any::<i64>().prop_map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
        Just(Bson::Null),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|bytes| Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes
        })),
    ]
}

fn value() -> impl Strategy<Value = Bson> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            proptest::collection::vec(("[a-z_$.]{1,6}", inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Document> {
    proptest::collection::vec(("[a-zA-Z_]{1,8}", value()), 0..6)
        .prop_map(|kv| kv.into_iter().collect())
}

fn reply(to: i32, body: &Document) -> Vec<u8> {
    let mut m = encode_op_msg(1, body).unwrap();
    m[8..12].copy_from_slice(&to.to_le_bytes());
    m
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), to in any::<i32>()) {
        let _ = decode_reply(&bytes, to, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn round_trip(body in document(), to in any::<i32>()) {
        let m = reply(to, &body);
        let got = decode_reply(&m, to, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        // NaN != NaN: compare the encodings.
        prop_assert_eq!(bson::to_vec(&got.body).unwrap(), bson::to_vec(&body).unwrap());
    }

    /// Valid replies with a few bytes overwritten, and cut short or extended: errors or
    /// (when the change is harmless) a document, never a panic.
    #[test]
    fn mutated_replies_never_panic(
        body in document(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        mode in 0u8..3,
    ) {
        let mut m = reply(5, &body);
        for (at, b) in &edits {
            let i = at.index(m.len());
            m[i] = *b;
        }
        match mode {
            0 => {}
            1 => m.truncate(cut.index(m.len())),
            _ => {
                // Cut the body but fix up the header length so only the inner lengths lie.
                m.truncate(cut.index(m.len()).max(16));
                let len = m.len() as i32;
                m[0..4].copy_from_slice(&len.to_le_bytes());
            }
        }
        let _ = decode_reply(&m, 5, DEFAULT_MAX_MESSAGE_SIZE);
    }

    /// Length fields set to hostile values.
    #[test]
    fn hostile_lengths_never_panic(body in document(), len in any::<i32>(), doc_len in any::<i32>()) {
        let mut m = reply(5, &body);
        m[21..25].copy_from_slice(&doc_len.to_le_bytes());
        let _ = decode_reply(&m, 5, DEFAULT_MAX_MESSAGE_SIZE);
        m[0..4].copy_from_slice(&len.to_le_bytes());
        let _ = decode_reply(&m, 5, DEFAULT_MAX_MESSAGE_SIZE);
    }
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

/// Dates the record model can show (years 0..=9999).
fn date_ms() -> impl Strategy<Value = i64> {
    -62_167_219_200_000i64..=253_402_300_799_999i64
}

fn field_value() -> impl Strategy<Value = Bson> {
    prop_oneof![
        value(),
        ip().prop_map(|ip| Bson::String(ip.to_string())),
        "/[!-~]{0,20}".prop_map(Bson::String),
        date_ms().prop_map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn valid_records_round_trip(ip in ip(), ms in date_ms(), page in "/[!-~]{0,100}") {
        let r = Record { client_ip: ip, date: UtcTime::from_unix_millis(ms), page };
        prop_assert_eq!(Record::from_document(&r.to_document()), Ok(r));
    }

    /// Whatever a stored document holds, decoding is Ok or an error, never a panic; and an
    /// Ok decodes the fields it was given.
    #[test]
    fn stored_documents_never_panic(
        client_ip in proptest::option::of(field_value()),
        date in proptest::option::of(field_value()),
        page in proptest::option::of(field_value()),
        extra in document(),
    ) {
        let mut d = extra;
        for (k, v) in [("client_ip", client_ip), ("date", date), ("page", page)] {
            if let Some(v) = v {
                d.insert(k, v);
            }
        }
        if let Ok(r) = Record::from_document(&d) {
            prop_assert_eq!(Bson::String(r.client_ip.to_string()).as_str().map(|s| s.parse::<IpAddr>().ok()), Some(Some(r.client_ip)));
            prop_assert_eq!(d.get_str("page").ok(), Some(r.page.as_str()));
            prop_assert!(d.get_datetime("date").is_ok());
        }
    }

    /// The same, through the wire: a find reply whose documents are arbitrary.
    #[test]
    fn find_reply_with_arbitrary_documents(docs in proptest::collection::vec(document(), 0..5)) {
        let body = doc! {"cursor": {"id": 0i64, "ns": "d.c", "firstBatch": docs.clone()}, "ok": 1};
        let got = decode_reply(&reply(3, &body), 3, DEFAULT_MAX_MESSAGE_SIZE).unwrap().body;
        let (batch, id) = mongo_wire::client::parse_cursor(&got, "firstBatch").unwrap();
        prop_assert_eq!(id, 0);
        for d in &batch {
            let _ = Record::from_document(d);
        }
    }
}
