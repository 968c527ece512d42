//! The SCRAM conversation over real sockets, against a fake server that implements the
//! server side of RFC 5802 independently of the client's state machine (it recovers the
//! client key from the proof and checks it against the stored key, as mongod does).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::fake::{
    binary, sasl_payload, standalone_hello, unauthorized, Action, Fake, ScramServer,
};
use mongo_wire::bson::doc;
use mongo_wire::scram::mongo_password;
use mongo_wire::{Client, ClientOptions, Credential, Error, Mechanism, ScramCache, StdConnector};

const SALT: &[u8] = b"0123456789abcdef";
const ITERATIONS: u32 = 4096;

/// A server with one user; `skip_empty_exchange` says whether it honours the option,
/// `speculative` whether it takes `speculativeAuthenticate` in `hello` (MongoDB >= 4.4).
fn scram_server(
    mechanism: Mechanism,
    user: &'static str,
    password: &'static str,
    skip_empty_exchange: bool,
    speculative: bool,
) -> Fake {
    let mut server = ScramServer::new(mechanism, user, password, SALT, ITERATIONS);
    server.skip_empty_exchange = skip_empty_exchange;
    server.speculative = speculative;
    let server = Mutex::new(server);
    Fake::start(move |name, body, _| {
        let mut server = server.lock().unwrap();
        // What the client must send, checked here rather than served.
        match name {
            "hello" if speculative => {
                if let Ok(spec) = body.get_document("speculativeAuthenticate") {
                    assert_eq!(spec.get_str("db").unwrap(), "admin");
                }
            }
            "saslStart" => assert_eq!(body.get_str("$db").unwrap(), "admin"),
            "saslContinue" if server.authenticated => assert!(sasl_payload(body).is_empty()),
            _ => {}
        }
        Action::Reply(match server.reply(name, body) {
            Some(reply) => reply,
            None if server.authenticated => doc! {"n": 1, "ok": 1.0},
            None => unauthorized(),
        })
    })
}

fn connect(
    fake: &Fake,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<Client<StdConnector>, Error> {
    let mut o = ClientOptions::new(vec![fake.addr]);
    o.timeout = Duration::from_secs(2);
    o.credential = Some(Credential {
        username: user.into(),
        password: password.into(),
        source: String::new(),
        mechanism,
    });
    Client::connect(StdConnector, o)
}

#[test]
fn scram_sha_256_speculative_conversation() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, true);
    let mut c = connect(&fake, Mechanism::ScramSha256, "app", "pencil").unwrap();
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    assert_eq!(fake.commands(), vec!["hello", "saslContinue", "insert"]);
}

#[test]
fn scram_sha_256_conversation_without_speculation() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, false);
    let mut c = connect(&fake, Mechanism::ScramSha256, "app", "pencil").unwrap();
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    assert_eq!(
        fake.commands(),
        vec!["hello", "saslStart", "saslContinue", "insert"]
    );
}

#[test]
fn speculative_wrong_password_is_an_auth_error() {
    let fake = scram_server(Mechanism::ScramSha1, "app", "pencil", true, true);
    assert!(matches!(
        connect(&fake, Mechanism::ScramSha1, "app", "x"),
        Err(Error::Auth(_))
    ));
}

#[test]
fn scram_sha_1_conversation_with_empty_final_round() {
    let fake = scram_server(Mechanism::ScramSha1, "app", "pencil", false, false);
    let mut c = connect(&fake, Mechanism::ScramSha1, "app", "pencil").unwrap();
    c.insert_one("d", "c", doc! {"x": 1}).unwrap();
    assert_eq!(
        fake.commands(),
        vec![
            "hello",
            "saslStart",
            "saslContinue",
            "saslContinue",
            "insert"
        ]
    );
}

#[test]
fn wrong_password_is_an_auth_error() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, false);
    match connect(&fake, Mechanism::ScramSha256, "app", "pen") {
        Err(Error::Auth(m)) => assert!(m.contains("Authentication failed"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn unknown_user_is_an_auth_error() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, false);
    assert!(matches!(
        connect(&fake, Mechanism::ScramSha256, "nobody", "pencil"),
        Err(Error::Auth(_))
    ));
}

#[test]
fn non_ascii_password_is_refused_before_sending() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, false);
    match connect(&fake, Mechanism::ScramSha256, "app", "pénc") {
        Err(Error::Auth(m)) => assert!(m.contains("non-ASCII"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    assert!(fake.commands().is_empty());
}

#[test]
fn a_server_that_cannot_prove_the_key_is_refused() {
    // The server answers the client-final with a signature made from the wrong password.
    let fake = Fake::start(|name, body, _| match name {
        "hello" => Action::Reply(standalone_hello()),
        "saslStart" => {
            let first = sasl_payload(body);
            let r = first.split(",r=").nth(1).unwrap().to_string();
            Action::Reply(doc! {"conversationId": 1, "done": false,
            "payload": binary(format!("r={r}X,s={},i=4096", B64.encode(SALT))), "ok": 1})
        }
        _ => Action::Reply(
            doc! {"conversationId": 1, "done": true, "payload": binary("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()), "ok": 1},
        ),
    });
    match connect(&fake, Mechanism::ScramSha1, "app", "pencil") {
        Err(Error::Auth(m)) => assert!(m.contains("signature"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
}

/// A [`ScramCache`] in memory that counts what the client asks of it.
#[derive(Clone, Default)]
struct MemCache {
    entries: Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<u32>>,
}

impl ScramCache for MemCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let v = self.entries.lock().unwrap().get(key).cloned();
        if v.is_some() {
            *self.hits.lock().unwrap() += 1;
        }
        v
    }
    fn put(&self, key: &str, salted_password: &[u8]) {
        self.entries
            .lock()
            .unwrap()
            .insert(key.into(), salted_password.to_vec());
    }
    fn remove(&self, key: &str) {
        self.entries.lock().unwrap().remove(key);
    }
}

fn connect_cached(fake: &Fake, password: &str, cache: &MemCache) -> Result<(), Error> {
    let mut o = ClientOptions::new(vec![fake.addr]);
    o.timeout = Duration::from_secs(2);
    o.credential = Some(Credential {
        username: "app".into(),
        password: password.into(),
        source: String::new(),
        mechanism: Mechanism::ScramSha256,
    });
    let mut c = Client::connect_with_scram_cache(StdConnector, o, Box::new(cache.clone()))?;
    c.insert_one("d", "c", doc! {"x": 1}).map(|_| ())
}

fn the_salted_password(password: &str) -> Vec<u8> {
    let m = Mechanism::ScramSha256;
    m.salted_password(
        &mongo_password(m, "app", password).unwrap(),
        SALT,
        ITERATIONS,
    )
}

#[test]
fn the_scram_cache_keeps_the_salted_password_for_the_next_connection() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, true);
    let cache = MemCache::default();
    connect_cached(&fake, "pencil", &cache).unwrap();
    let key =
        mongo_wire::scram::cache_key(Mechanism::ScramSha256, "admin", "app", SALT, ITERATIONS);
    let stored = cache.entries.lock().unwrap().clone();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[&key], the_salted_password("pencil"));
    assert_eq!(*cache.hits.lock().unwrap(), 0);
    // The next connection takes it from the cache and the server accepts it.
    connect_cached(&fake, "pencil", &cache).unwrap();
    assert_eq!(*cache.hits.lock().unwrap(), 1);
    assert_eq!(
        fake.commands(),
        vec![
            "hello",
            "saslContinue",
            "insert",
            "hello",
            "saslContinue",
            "insert"
        ]
    );
}

#[test]
fn a_cached_salted_password_the_server_refuses_is_replaced() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, true);
    let cache = MemCache::default();
    let key =
        mongo_wire::scram::cache_key(Mechanism::ScramSha256, "admin", "app", SALT, ITERATIONS);
    cache.put(&key, &the_salted_password("an old password"));
    connect_cached(&fake, "pencil", &cache).unwrap();
    // Refused once, then derived afresh in a second conversation on the same connection.
    assert_eq!(
        fake.commands(),
        vec![
            "hello",
            "saslContinue",
            "saslStart",
            "saslContinue",
            "insert"
        ]
    );
    assert_eq!(
        cache.entries.lock().unwrap()[&key],
        the_salted_password("pencil")
    );
}

#[test]
fn a_wrong_password_is_an_auth_error_and_is_not_cached() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, true);
    let cache = MemCache::default();
    let err = connect_cached(&fake, "crayon", &cache).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert!(cache.entries.lock().unwrap().is_empty());
}

#[test]
fn a_cached_value_of_the_wrong_length_is_ignored() {
    let fake = scram_server(Mechanism::ScramSha256, "app", "pencil", true, true);
    let cache = MemCache::default();
    let key =
        mongo_wire::scram::cache_key(Mechanism::ScramSha256, "admin", "app", SALT, ITERATIONS);
    cache.put(&key, b"short");
    connect_cached(&fake, "pencil", &cache).unwrap();
    assert_eq!(fake.commands(), vec!["hello", "saslContinue", "insert"]);
    assert_eq!(
        cache.entries.lock().unwrap()[&key],
        the_salted_password("pencil")
    );
}
