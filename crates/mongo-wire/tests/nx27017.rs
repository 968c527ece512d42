//! Integration tests against `nx-27017` (PyPI): an independent MongoDB wire-protocol server
//! backed by SQLite, written by people who are not us. It is not MongoDB (no auth, no replica
//! sets, and some gaps listed in README.md), but it is a real peer.
//!
//! Skipped only when the `nx-27017` executable is missing *and* `CI` is unset.

mod common;

use std::time::Duration;

use common::{should_run, temp_db, NxServer};
use mongo_wire::bson::{doc, Bson, Document};
use mongo_wire::{Client, ClientOptions, CountingConnector, FindOptions, StdConnector};
use visits_core::{Record, UtcTime};

fn client(server: &NxServer) -> Client<StdConnector> {
    let mut o = ClientOptions::new(vec![server.addr]);
    o.timeout = Duration::from_secs(5);
    o.app_name = Some("mongo-wire tests".into());
    Client::connect(StdConnector, o).expect("connect to nx-27017")
}

fn record(i: i64, date_ms: i64) -> Record {
    Record {
        client_ip: format!("192.0.2.{}", i % 250).parse().unwrap(),
        date: UtcTime::from_unix_millis(date_ms),
        page: format!("/p{i}"),
    }
}

fn newest(limit: i64) -> FindOptions {
    FindOptions {
        sort: Some(doc! {"date": -1, "_id": -1}),
        limit: Some(limit),
        ..FindOptions::default()
    }
}

#[test]
fn hello_reports_a_writable_primary() {
    if !should_run("hello_reports_a_writable_primary") {
        return;
    }
    let server = NxServer::start(&temp_db("hello"));
    let mut c = client(&server);
    let h = c.server().unwrap().clone();
    assert!(h.is_writable_primary);
    assert!(h.max_wire_version >= 6, "{h:?}");
    assert!(h.max_message_size_bytes >= 1024);
    let again = c.hello().unwrap();
    assert!(again.is_writable_primary);
}

#[test]
fn insert_then_find_newest_first_with_limit() {
    if !should_run("insert_then_find_newest_first_with_limit") {
        return;
    }
    let server = NxServer::start(&temp_db("find"));
    let mut c = client(&server);
    let base = 1_795_308_400_000;
    // 15 visits; 5 and 6 share a date (the _id breaks the tie: later insert first).
    let mut inserted = Vec::new();
    for i in 0..15 {
        let date = if i == 6 { base + 5 } else { base + i };
        let r = record(i, date);
        c.insert_one("visits", "records", r.to_document()).unwrap();
        inserted.push(r);
    }
    let docs = c.find("visits", "records", &newest(10)).unwrap();
    assert_eq!(docs.len(), 10);
    let got: Vec<Record> = docs
        .iter()
        .map(|d| Record::from_document(d).unwrap())
        .collect();
    let pages: Vec<&str> = got.iter().map(|r| r.page.as_str()).collect();
    assert_eq!(
        pages,
        ["/p14", "/p13", "/p12", "/p11", "/p10", "/p9", "/p8", "/p7", "/p6", "/p5"]
    );
    // Stored with a BSON datetime, as the native driver would.
    assert!(matches!(docs[0].get("date"), Some(Bson::DateTime(_))));
    assert!(matches!(docs[0].get("_id"), Some(Bson::ObjectId(_))));
    // limit 1, and a filter.
    assert_eq!(c.find("visits", "records", &newest(1)).unwrap().len(), 1);
    let only = FindOptions {
        filter: doc! {"page": "/p3"},
        ..newest(10)
    };
    let docs = c.find("visits", "records", &only).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(Record::from_document(&docs[0]).unwrap(), inserted[3]);
    // An empty or missing collection is an empty list.
    assert!(c
        .find("visits", "nothing_here", &newest(10))
        .unwrap()
        .is_empty());
}

#[test]
fn more_than_one_batch_uses_get_more() {
    if !should_run("more_than_one_batch_uses_get_more") {
        return;
    }
    let server = NxServer::start(&temp_db("batches"));
    let mut c = client(&server);
    for i in 0..7 {
        c.insert_one("d", "c", doc! {"i": i}).unwrap();
    }
    let all = FindOptions {
        sort: Some(doc! {"i": 1}),
        batch_size: Some(2),
        ..FindOptions::default()
    };
    let docs = c.find("d", "c", &all).unwrap();
    let is: Vec<i32> = docs.iter().map(|d| d.get_i32("i").unwrap()).collect();
    assert_eq!(is, [0, 1, 2, 3, 4, 5, 6]);
    // Stop early: the rest of the cursor is killed.
    let some = FindOptions {
        limit: Some(3),
        ..all
    };
    assert_eq!(c.find("d", "c", &some).unwrap().len(), 3);
    // The connection is still in order afterwards.
    assert_eq!(c.find("d", "c", &newest(100)).unwrap().len(), 7);
}

#[test]
fn create_index_is_idempotent() {
    if !should_run("create_index_is_idempotent") {
        return;
    }
    let server = NxServer::start(&temp_db("index"));
    let mut c = client(&server);
    c.insert_one("d", "c", record(1, 1).to_document()).unwrap();
    c.create_index("d", "c", doc! {"date": -1}, "date_-1")
        .unwrap();
    c.create_index("d", "c", doc! {"date": -1}, "date_-1")
        .unwrap();
    // The recorder's compound index: nx-27017 0.8.1 cannot index `_id` ("JSON path error
    // near '_id'"); MongoDB can. Accept either outcome, but it must be a typed command error.
    for _ in 0..2 {
        match c.create_index("d", "c", doc! {"date": -1, "_id": -1}, "date_-1__id_-1") {
            Ok(()) | Err(mongo_wire::Error::Command { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    let list = c.run_command("d", doc! {"listIndexes": "c"}).unwrap();
    let indexes = list
        .get_document("cursor")
        .and_then(|cur| cur.get_array("firstBatch"))
        .unwrap();
    // nx-27017 lists an index on `date` (it renames it and drops the direction: see README).
    assert!(
        indexes.iter().any(|i| i
            .as_document()
            .and_then(|d| d.get_document("key").ok())
            .is_some_and(|k| k.contains_key("date"))),
        "{indexes:?}"
    );
    // The find with the hint the recorder uses still works.
    let hinted = FindOptions {
        hint: Some(Bson::Document(doc! {"date": -1, "_id": -1})),
        ..newest(10)
    };
    assert_eq!(c.find("d", "c", &hinted).unwrap().len(), 1);
}

#[test]
fn command_errors_are_typed() {
    if !should_run("command_errors_are_typed") {
        return;
    }
    let server = NxServer::start(&temp_db("errors"));
    let mut c = client(&server);
    c.insert_one("d", "c", doc! {"_id": 1}).unwrap();
    // A duplicate _id: MongoDB answers with writeErrors (code 11000).
    let e = c.insert_one("d", "c", doc! {"_id": 1}).unwrap_err();
    assert!(
        matches!(&e, mongo_wire::Error::Write(w) if w[0].code == 11000)
            || matches!(&e, mongo_wire::Error::Command { .. }),
        "{e:?}"
    );
}

#[test]
fn data_survives_a_server_restart() {
    if !should_run("data_survives_a_server_restart") {
        return;
    }
    let db = temp_db("restart");
    let server = NxServer::start(&db);
    let mut c = client(&server);
    let r = record(7, 1_795_308_400_777);
    c.insert_one("visits", "records", r.to_document()).unwrap();
    server.stop();
    // The old connection is dead: a command fails fast rather than hanging.
    let e = c.find("visits", "records", &newest(10)).unwrap_err();
    assert!(
        e.is_network() || matches!(e, mongo_wire::Error::NoPrimary(_)),
        "{e:?}"
    );

    let server = NxServer::start(&db);
    let mut c = client(&server);
    let docs = c.find("visits", "records", &newest(10)).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(Record::from_document(&docs[0]).unwrap(), r);
}

#[test]
fn reconnects_after_the_server_comes_back_on_the_same_port() {
    if !should_run("reconnects_after_the_server_comes_back_on_the_same_port") {
        return;
    }
    let db = temp_db("comeback");
    let server = NxServer::start(&db);
    let port = server.port();
    let mut c = client(&server);
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    server.stop();
    assert!(c.insert_one("d", "c", doc! {"x": 2}).is_err());
    let _server = NxServer::start_on(&db, port);
    // The broken connection was dropped; this call rediscovers and succeeds.
    c.insert_one("d", "c", doc! {"x": 3}).unwrap();
    assert_eq!(c.find("d", "c", &FindOptions::default()).unwrap().len(), 2);
}

#[test]
fn a_page_view_is_three_commands() {
    if !should_run("a_page_view_is_three_commands") {
        return;
    }
    let server = NxServer::start(&temp_db("pageview"));
    let connector = CountingConnector::new(StdConnector);
    let counts = connector.counts.clone();
    let mut c = Client::connect(connector, ClientOptions::new(vec![server.addr])).unwrap();
    c.insert_one("visits", "records", record(1, 1).to_document())
        .unwrap();
    let docs: Vec<Document> = c.find("visits", "records", &newest(10)).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(c.commands_sent(), 3); // hello, insert, find
    let (sent, received, connects) = counts.snapshot();
    assert_eq!(connects, 1);
    assert!(sent > 0 && received > 0);
}
