//! Failure modes over real sockets, against a scriptable fake server: dead, silent and
//! trickling servers, malformed replies, replica-set discovery and not-primary retries.
//! Nothing here may hang or panic; every failure is a typed error within the timeout.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::fake::{reply_bytes, standalone_hello, Action, Fake};
use mongo_wire::bson::{doc, Document};
use mongo_wire::{Client, ClientOptions, Error, FindOptions, StdConnector};

const TIMEOUT: Duration = Duration::from_millis(300);

fn options(seeds: Vec<SocketAddr>) -> ClientOptions {
    let mut o = ClientOptions::new(seeds);
    o.timeout = TIMEOUT;
    o
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn ok_for_everything(name: &str, _: &Document, _: i32) -> Action {
    match name {
        "hello" => Action::Reply(standalone_hello()),
        "insert" => Action::Reply(doc! {"n": 1, "ok": 1.0}),
        "find" => Action::Reply(
            doc! {"cursor": {"id": 0i64, "ns": "d.c", "firstBatch": [{"a": 1}]}, "ok": 1.0},
        ),
        _ => Action::Reply(doc! {"ok": 1.0}),
    }
}

/// Connecting through a server whose answers to everything after `hello` come from `then`.
fn after_hello(then: impl Fn(i32) -> Action + Send + Sync + 'static) -> Fake {
    Fake::start(move |name, _, id| match name {
        "hello" => Action::Reply(standalone_hello()),
        _ => then(id),
    })
}

fn protocol_error_on_find(fake: &Fake) -> String {
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    let started = Instant::now();
    let e = c.find("d", "c", &FindOptions::default()).unwrap_err();
    assert!(
        started.elapsed() < TIMEOUT * 3,
        "took {:?}",
        started.elapsed()
    );
    e.to_string()
}

#[test]
fn dead_seed_is_skipped() {
    let fake = Fake::start(ok_for_everything);
    let dead = dead_addr();
    let mut c = Client::connect(StdConnector, options(vec![dead, fake.addr])).unwrap();
    assert_eq!(c.address(), Some(fake.addr));
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
}

#[test]
fn all_seeds_dead_is_no_primary_with_reasons() {
    let (a, b) = (dead_addr(), dead_addr());
    let e = Client::connect(StdConnector, options(vec![a, b]))
        .err()
        .unwrap();
    match &e {
        Error::NoPrimary(reasons) => assert_eq!(reasons.len(), 2, "{reasons:?}"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains(&a.to_string()));
}

#[test]
fn silent_server_times_out() {
    let fake = Fake::start(|_, _, _| Action::Silent);
    let started = Instant::now();
    let e = Client::connect(StdConnector, options(vec![fake.addr]))
        .err()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT * 3, "took {took:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn trickling_server_is_bounded_by_the_command_deadline() {
    // Each byte arrives well within the timeout, but the whole reply would take ~5 s.
    let fake = Fake::start(|_, _, id| {
        Action::Drip(
            reply_bytes(id, &standalone_hello()),
            Duration::from_millis(50),
        )
    });
    let started = Instant::now();
    let e = Client::connect(StdConnector, options(vec![fake.addr]))
        .err()
        .unwrap();
    assert!(
        started.elapsed() < TIMEOUT * 3,
        "took {:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn server_hangs_up_mid_reply() {
    let fake = after_hello(|id| {
        Action::Raw(reply_bytes(id, &doc! {"ok": 1, "pad": "xxxxxxxx"})[..20].to_vec())
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    let e = c.find("d", "c", &FindOptions::default()).unwrap_err();
    assert!(e.is_network(), "{e:?}");
    // The broken connection is replaced on the next call.
    let _ = c.run_command("d", doc! {"ping": 1});
    assert!(fake.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn wrong_response_to() {
    let fake = after_hello(|id| Action::Raw(reply_bytes(id + 1, &doc! {"ok": 1})));
    assert!(protocol_error_on_find(&fake).contains("answers request"));
}

#[test]
fn huge_declared_length_is_refused_without_reading() {
    let fake = after_hello(|id| {
        let mut m = reply_bytes(id, &doc! {"ok": 1});
        m[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
        Action::Raw(m)
    });
    assert!(protocol_error_on_find(&fake).contains("exceeds the limit"));
}

#[test]
fn reply_over_the_servers_own_limit() {
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(
            doc! {"isWritablePrimary": true, "maxWireVersion": 21, "maxMessageSizeBytes": 2048, "ok": 1},
        ),
        _ => Action::Reply(doc! {"ok": 1, "pad": "x".repeat(4096)}),
    });
    assert!(protocol_error_on_find(&fake).contains("exceeds the limit of 2048"));
}

#[test]
fn request_over_the_servers_limit_is_not_sent() {
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(
            doc! {"isWritablePrimary": true, "maxWireVersion": 21, "maxMessageSizeBytes": 2048, "ok": 1},
        ),
        _ => Action::Reply(doc! {"ok": 1, "n": 1}),
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    let e = c
        .insert_one("d", "c", doc! {"pad": "x".repeat(4096)})
        .unwrap_err();
    assert!(matches!(e, Error::Encode(_)), "{e:?}");
    assert_eq!(fake.commands(), vec!["hello"]);
}

#[test]
fn garbage_replies_are_protocol_errors() {
    type MakeReply = fn(i32) -> Vec<u8>;
    let cases: Vec<(&str, MakeReply)> = vec![
        ("OP_REPLY", |id| {
            let mut m = reply_bytes(id, &doc! {"ok": 1});
            m[12..16].copy_from_slice(&1i32.to_le_bytes());
            m
        }),
        ("section kind", |id| {
            let mut m = reply_bytes(id, &doc! {"ok": 1});
            m[20] = 7;
            m
        }),
        ("claims", |id| {
            let mut m = reply_bytes(id, &doc! {"ok": 1});
            m[21..25].copy_from_slice(&1000i32.to_le_bytes());
            m
        }),
        ("smallest", |id| {
            let mut m = reply_bytes(id, &doc! {"ok": 1});
            m[0..4].copy_from_slice(&8i32.to_le_bytes());
            m
        }),
    ];
    for (want, make) in cases {
        let fake = after_hello(move |id| Action::Raw(make(id)));
        let msg = protocol_error_on_find(&fake);
        assert!(msg.contains(want), "{want}: {msg}");
    }
}

#[test]
fn malformed_cursor_is_a_protocol_error() {
    let fake = after_hello(|id| {
        Action::Raw(reply_bytes(
            id,
            &doc! {"ok": 1, "cursor": {"id": 0, "firstBatch": "nope"}},
        ))
    });
    assert!(protocol_error_on_find(&fake).contains("firstBatch"));
}

#[test]
fn command_and_write_errors_are_typed() {
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        "insert" => Action::Reply(
            doc! {"ok": 1, "n": 0, "writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}]},
        ),
        _ => Action::Reply(
            doc! {"ok": 0.0, "code": 13, "codeName": "Unauthorized", "errmsg": "command find requires authentication"},
        ),
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    match c.insert_one("d", "c", doc! {}).unwrap_err() {
        Error::Write(w) => assert_eq!(w[0].code, 11000),
        other => panic!("{other:?}"),
    }
    match c.find("d", "c", &FindOptions::default()).unwrap_err() {
        Error::Command {
            code: 13,
            code_name,
            ..
        } => assert_eq!(code_name, "Unauthorized"),
        other => panic!("{other:?}"),
    }
    // Command errors keep the connection.
    assert_eq!(
        fake.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn secondary_seed_leads_to_the_named_primary() {
    let primary = Fake::start(ok_for_everything);
    let p = primary.addr.to_string();
    let secondary = Fake::start(move |name, _, _| match name {
        "hello" => Action::Reply(doc! {
            "isWritablePrimary": false, "secondary": true, "setName": "rs0",
            "primary": p.clone(), "hosts": [p.clone()], "maxWireVersion": 21, "ok": 1,
        }),
        _ => Action::Reply(doc! {"ok": 0, "code": 10107, "errmsg": "not primary"}),
    });
    let mut c = Client::connect(StdConnector, options(vec![secondary.addr])).unwrap();
    assert_eq!(c.address(), Some(primary.addr));
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    assert_eq!(secondary.commands(), vec!["hello"]);
}

#[test]
fn not_primary_error_rediscovers_and_retries_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let b = Fake::start(ok_for_everything);
    let b_addr = b.addr.to_string();
    let stepped_down = Arc::new(AtomicBool::new(false));
    let sd = stepped_down.clone();
    // A is primary until its first insert, which it refuses: it stepped down.
    let a = Fake::start(move |name, _, _| match name {
        "hello" if !sd.load(Ordering::SeqCst) => Action::Reply(standalone_hello()),
        "hello" => Action::Reply(
            doc! {"secondary": true, "setName": "rs0", "primary": b_addr.clone(), "maxWireVersion": 21, "ok": 1},
        ),
        _ => {
            sd.store(true, Ordering::SeqCst);
            Action::Reply(
                doc! {"ok": 0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary"},
            )
        }
    });
    let mut c = Client::connect(StdConnector, options(vec![a.addr, b.addr])).unwrap();
    assert_eq!(c.address(), Some(a.addr));
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    assert_eq!(c.address(), Some(b.addr));
    assert_eq!(a.commands(), vec!["hello", "insert", "hello"]);
    assert_eq!(b.commands(), vec!["hello", "insert"]);
}

#[test]
fn not_primary_twice_gives_up() {
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        _ => Action::Reply(doc! {"ok": 0, "code": 189, "errmsg": "PrimarySteppedDown"}),
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    let e = c.insert_one("d", "c", doc! {}).unwrap_err();
    assert!(e.is_not_primary());
    assert_eq!(fake.commands(), vec!["hello", "insert", "hello", "insert"]);
}

#[test]
fn old_server_without_hello_falls_back_to_is_master() {
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(
            doc! {"ok": 0, "code": 59, "codeName": "CommandNotFound", "errmsg": "no such command: 'hello'"},
        ),
        "isMaster" => Action::Reply(doc! {"ismaster": true, "maxWireVersion": 7, "ok": 1}),
        _ => Action::Reply(doc! {"ok": 1}),
    });
    let c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    assert!(c.server().unwrap().is_writable_primary);
}

#[test]
fn pre_op_msg_server_is_refused() {
    let fake = Fake::start(|_, _, _| {
        Action::Reply(doc! {"isWritablePrimary": true, "maxWireVersion": 5, "ok": 1})
    });
    let e = Client::connect(StdConnector, options(vec![fake.addr]))
        .err()
        .unwrap();
    assert!(e.to_string().contains("too old"), "{e}");
}

#[test]
fn open_cursor_is_drained_then_killed() {
    let fake = Fake::start(|name, body, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        "find" => {
            assert_eq!(body.get_i64("limit").unwrap(), 3);
            Action::Reply(
                doc! {"cursor": {"id": 42i64, "ns": "d.c", "firstBatch": [{"i": 0}, {"i": 1}]}, "ok": 1},
            )
        }
        "getMore" => {
            assert_eq!(body.get_i64("getMore").unwrap(), 42);
            assert_eq!(body.get_i64("batchSize").unwrap(), 1);
            Action::Reply(
                doc! {"cursor": {"id": 42i64, "ns": "d.c", "nextBatch": [{"i": 2}, {"i": 3}]}, "ok": 1},
            )
        }
        _ => Action::Reply(doc! {"ok": 1}),
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    let docs = c
        .find(
            "d",
            "c",
            &FindOptions {
                limit: Some(3),
                batch_size: Some(2),
                ..FindOptions::default()
            },
        )
        .unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(
        fake.commands(),
        vec!["hello", "find", "getMore", "killCursors"]
    );
}

#[test]
fn find_with_index_creates_the_index_only_when_the_hint_is_refused() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let indexed = Arc::new(AtomicBool::new(false));
    let ix = indexed.clone();
    let fake = Fake::start(move |name, body, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        "find" if body.contains_key("hint") && !ix.load(Ordering::SeqCst) => Action::Reply(doc! {
            "ok": 0.0, "code": 2, "codeName": "BadValue",
            "errmsg": "error processing query: ns=d.c planner returned error :: caused by :: hint provided does not correspond to an existing index",
        }),
        "find" => Action::Reply(
            doc! {"cursor": {"id": 0i64, "ns": "d.c", "firstBatch": [{"a": 1}]}, "ok": 1.0},
        ),
        "createIndexes" => {
            let spec = body.get_array("indexes").unwrap()[0]
                .as_document()
                .unwrap()
                .clone();
            assert_eq!(
                spec.get_document("key").unwrap(),
                &doc! {"date": -1, "_id": -1}
            );
            assert_eq!(spec.get_str("name").unwrap(), "newest");
            ix.store(true, Ordering::SeqCst);
            Action::Reply(doc! {"ok": 1.0})
        }
        _ => Action::Reply(doc! {"ok": 1.0}),
    });
    let keys = doc! {"date": -1, "_id": -1};
    let opts = FindOptions {
        sort: Some(keys.clone()),
        limit: Some(10),
        ..FindOptions::default()
    };
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    assert_eq!(
        c.find_with_index("d", "c", &opts, &keys, "newest")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.find_with_index("d", "c", &opts, &keys, "newest")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        fake.commands(),
        vec!["hello", "find", "createIndexes", "find", "find"]
    );
    // Other errors are not papered over.
    let fake = Fake::start(|name, _, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        _ => Action::Reply(doc! {"ok": 0.0, "code": 13, "errmsg": "not authorized"}),
    });
    let mut c = Client::connect(StdConnector, options(vec![fake.addr])).unwrap();
    assert!(matches!(
        c.find_with_index("d", "c", &opts, &keys, "newest"),
        Err(Error::Command { code: 13, .. })
    ));
    assert_eq!(fake.commands(), vec!["hello", "find"]);
}

#[test]
fn large_replies_arrive_in_chunks() {
    let fake = after_hello(|id| {
        Action::Raw(reply_bytes(
            id,
            &doc! {"cursor": {"id": 0i64, "ns": "d.c", "firstBatch": [{"big": "y".repeat(3 << 20)}]}, "ok": 1},
        ))
    });
    let mut c = Client::connect(StdConnector, {
        let mut o = options(vec![fake.addr]);
        o.timeout = Duration::from_secs(5);
        o
    })
    .unwrap();
    let docs = c.find("d", "c", &FindOptions::default()).unwrap();
    assert_eq!(docs[0].get_str("big").unwrap().len(), 3 << 20);
}
