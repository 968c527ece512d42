//! Tests that need a real MongoDB (authentication, replica-set failover). They run when the
//! environment points at one and are skipped with a printed message otherwise:
//!
//! - `MONGO_TEST_ADDRESS=ip:port` — any mongod/mongos (no auth needed for the basic test).
//! - `MONGO_TEST_USERNAME`, `MONGO_TEST_PASSWORD` (and optional `MONGO_TEST_AUTH_SOURCE`,
//!   default `admin`) — a user on that server, for the SCRAM tests.
//! - `MONGO_TEST_RS_SEEDS=ip:port,ip:port,ip:port` — members of a replica set (with the
//!   credentials above if it has auth), for discovery and failover.
//!
//! See README.md for running them against `mongod` or a `mongo` container.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mongo_wire::bson::{doc, Bson};
use mongo_wire::{Client, ClientOptions, Credential, Error, FindOptions, Mechanism, StdConnector};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn address(test: &str) -> Option<SocketAddr> {
    match env("MONGO_TEST_ADDRESS") {
        Some(a) => Some(a.parse().expect("MONGO_TEST_ADDRESS must be ip:port")),
        None => {
            eprintln!(
                "SKIPPED {test}: set MONGO_TEST_ADDRESS=ip:port to run it against a real MongoDB"
            );
            None
        }
    }
}

fn credential(test: &str, mechanism: Mechanism) -> Option<Credential> {
    match (env("MONGO_TEST_USERNAME"), env("MONGO_TEST_PASSWORD")) {
        (Some(username), Some(password)) => Some(Credential {
            username,
            password,
            source: env("MONGO_TEST_AUTH_SOURCE").unwrap_or_else(|| "admin".into()),
            mechanism,
        }),
        _ => {
            eprintln!("SKIPPED {test}: set MONGO_TEST_USERNAME and MONGO_TEST_PASSWORD to run it");
            None
        }
    }
}

fn options(seeds: Vec<SocketAddr>, credential: Option<Credential>) -> ClientOptions {
    let mut o = ClientOptions::new(seeds);
    o.timeout = Duration::from_secs(5);
    o.credential = credential;
    o.app_name = Some("mongo-wire real_mongo tests".into());
    o
}

fn unique(name: &str) -> String {
    format!(
        "{name}_{}_{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

/// With credentials if they are set (a server with auth on needs them for everything).
fn any_credential() -> Option<Credential> {
    credential("(optional credentials)", Mechanism::ScramSha256)
}

#[test]
fn real_insert_find_and_hinted_index() {
    let Some(addr) = address("real_insert_find_and_hinted_index") else {
        return;
    };
    let mut c = Client::connect(StdConnector, options(vec![addr], any_credential())).unwrap();
    assert!(c.server().unwrap().is_writable_primary);
    let coll = unique("visits");
    for i in 0..3 {
        c.insert_one(
            "mongo_wire_test",
            &coll,
            doc! {"date": mongo_wire::bson::DateTime::from_millis(i), "page": "/"},
        )
        .unwrap();
    }
    let hinted = FindOptions {
        sort: Some(doc! {"date": -1, "_id": -1}),
        limit: Some(2),
        hint: Some(Bson::Document(doc! {"date": -1, "_id": -1})),
        ..FindOptions::default()
    };
    // No index yet: MongoDB refuses the hint, which is how the recorder knows to create it.
    let e = c.find("mongo_wire_test", &coll, &hinted).unwrap_err();
    assert!(e.is_missing_hint_index(), "{e:?}");
    c.create_index(
        "mongo_wire_test",
        &coll,
        doc! {"date": -1, "_id": -1},
        "date_-1__id_-1",
    )
    .unwrap();
    // Twice on purpose: createIndexes must be idempotent (every recorder instance may race to it).
    c.create_index(
        "mongo_wire_test",
        &coll,
        doc! {"date": -1, "_id": -1},
        "date_-1__id_-1",
    )
    .unwrap();
    let docs = c.find("mongo_wire_test", &coll, &hinted).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].get_datetime("date").unwrap().timestamp_millis(), 2);
    let _ = c.run_command("mongo_wire_test", doc! {"drop": coll});
}

#[test]
fn real_scram_sha_256() {
    let Some(addr) = address("real_scram_sha_256") else {
        return;
    };
    let Some(cred) = credential("real_scram_sha_256", Mechanism::ScramSha256) else {
        return;
    };
    let mut c = Client::connect(StdConnector, options(vec![addr], Some(cred))).unwrap();
    let status = c
        .run_command("admin", doc! {"connectionStatus": 1})
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    assert!(!users.is_empty(), "{status}");
}

#[test]
fn real_scram_sha_1() {
    let Some(addr) = address("real_scram_sha_1") else {
        return;
    };
    let Some(cred) = credential("real_scram_sha_1", Mechanism::ScramSha1) else {
        return;
    };
    // Users created by MongoDB >= 4.0 have both SHA-1 and SHA-256 credentials by default.
    Client::connect(StdConnector, options(vec![addr], Some(cred))).unwrap();
}

#[test]
fn real_wrong_password_is_an_auth_error() {
    let Some(addr) = address("real_wrong_password_is_an_auth_error") else {
        return;
    };
    let Some(mut cred) = credential(
        "real_wrong_password_is_an_auth_error",
        Mechanism::ScramSha256,
    ) else {
        return;
    };
    cred.password.push_str("-wrong");
    match Client::connect(StdConnector, options(vec![addr], Some(cred))) {
        Err(Error::Auth(m)) => assert!(
            m.contains("Authentication failed") || m.contains("18"),
            "{m}"
        ),
        Err(other) => panic!("expected an auth error, got {other:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
}

fn rs_seeds(test: &str) -> Option<Vec<SocketAddr>> {
    match env("MONGO_TEST_RS_SEEDS") {
        Some(s) => Some(
            s.split(',')
                .map(|a| a.trim().parse().expect("MONGO_TEST_RS_SEEDS: ip:port,..."))
                .collect(),
        ),
        None => {
            eprintln!("SKIPPED {test}: set MONGO_TEST_RS_SEEDS=ip:port,ip:port,... (a replica set) to run it");
            None
        }
    }
}

#[test]
fn real_replica_set_primary_is_found_from_any_seed_order() {
    let Some(seeds) = rs_seeds("real_replica_set_primary_is_found_from_any_seed_order") else {
        return;
    };
    let mut primary = None;
    for rotation in 0..seeds.len() {
        let mut s = seeds.clone();
        s.rotate_left(rotation);
        let c = Client::connect(StdConnector, options(s, any_credential())).unwrap();
        let h = c.server().unwrap();
        assert!(h.is_writable_primary && h.set_name.is_some(), "{h:?}");
        let addr = c.address().unwrap();
        assert_eq!(*primary.get_or_insert(addr), addr);
    }
}

#[test]
fn real_replica_set_failover() {
    let Some(seeds) = rs_seeds("real_replica_set_failover") else {
        return;
    };
    let mut c = Client::connect(StdConnector, options(seeds.clone(), any_credential())).unwrap();
    let old = c.address().unwrap();
    let coll = unique("failover");
    c.insert_one("mongo_wire_test", &coll, doc! {"n": 1})
        .unwrap();
    // The primary steps down (and closes connections): expect an error or a dropped connection.
    let _ = c.run_command("admin", doc! {"replSetStepDown": 30, "force": true});
    let started = Instant::now();
    loop {
        match c.insert_one("mongo_wire_test", &coll, doc! {"n": 2}) {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no new primary after 60 s: {e}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    assert_ne!(c.address(), Some(old), "the insert went to the old primary");
    let n = c
        .find("mongo_wire_test", &coll, &FindOptions::default())
        .unwrap()
        .len();
    assert_eq!(n, 2);
    let _ = c.run_command("mongo_wire_test", doc! {"drop": coll});
}
