//! The SCRAM conversation over real sockets, against a fake server that implements the
//! server side of RFC 5802 independently of the client's state machine (it recovers the
//! client key from the proof and checks it against the stored key, as mongod does).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::fake::{standalone_hello, Action, Fake};
use hmac::{Hmac, Mac};
use mongo_wire::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use mongo_wire::scram::mongo_password;
use mongo_wire::{Client, ClientOptions, Credential, Error, Mechanism, StdConnector};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const SALT: &[u8] = b"0123456789abcdef";
const ITERATIONS: u32 = 4096;

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Mechanism::ScramSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha1 => Sha1::digest(data).to_vec(),
        Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
    }
}

fn payload(d: &Document) -> String {
    match d.get("payload") {
        Some(Bson::Binary(b)) => String::from_utf8(b.bytes.clone()).unwrap(),
        other => panic!("payload: {other:?}"),
    }
}

fn bin(s: String) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: s.into_bytes(),
    }
}

#[derive(Default)]
struct Conversation {
    client_first_bare: String,
    server_first: String,
    finished: bool,
}

/// A server with one user; `skip_empty_exchange` says whether it honours the option,
/// `speculative` whether it takes `speculativeAuthenticate` in `hello` (MongoDB >= 4.4).
fn scram_server(
    mechanism: Mechanism,
    user: &'static str,
    password: &'static str,
    skip_empty_exchange: bool,
    speculative: bool,
) -> Fake {
    let salted = mechanism.salted_password(
        &mongo_password(mechanism, user, password).unwrap(),
        SALT,
        ITERATIONS,
    );
    let state = Arc::new(Mutex::new(Conversation::default()));
    let sasl_start = move |st: &mut Conversation, body: &Document| -> Option<Document> {
        assert_eq!(body.get_str("mechanism").unwrap(), mechanism.name());
        let first = payload(body);
        let bare = first.strip_prefix("n,,").expect("gs2 header").to_string();
        let (n, r) = bare.split_once(',').unwrap();
        if n != format!("n={user}") {
            return None;
        }
        let nonce = format!("{}SERVERNONCE", r.strip_prefix("r=").unwrap());
        st.client_first_bare = bare.clone();
        st.server_first = format!("r={nonce},s={},i={ITERATIONS}", B64.encode(SALT));
        Some(doc! {"conversationId": 1, "done": false, "payload": bin(st.server_first.clone())})
    };
    Fake::start(move |name, body, _| {
        let fail = || {
            Action::Reply(
                doc! {"ok": 0.0, "code": 18, "codeName": "AuthenticationFailed", "errmsg": "Authentication failed."},
            )
        };
        let mut st = state.lock().unwrap();
        match name {
            "hello" => {
                let mut reply = standalone_hello();
                if let (true, Ok(spec)) =
                    (speculative, body.get_document("speculativeAuthenticate"))
                {
                    assert_eq!(spec.get_str("db").unwrap(), "admin");
                    match sasl_start(&mut st, spec) {
                        Some(first) => {
                            reply.insert("speculativeAuthenticate", first);
                        }
                        None => return fail(),
                    }
                }
                Action::Reply(reply)
            }
            "saslStart" => {
                assert_eq!(body.get_str("$db").unwrap(), "admin");
                match sasl_start(&mut st, body) {
                    Some(mut first) => {
                        first.insert("ok", 1.0);
                        Action::Reply(first)
                    }
                    None => fail(),
                }
            }
            "saslContinue" if st.finished => {
                assert!(payload(body).is_empty());
                Action::Reply(
                    doc! {"conversationId": 1, "done": true, "payload": bin(String::new()), "ok": 1.0},
                )
            }
            "saslContinue" => {
                let fin = payload(body);
                let (without_proof, proof) = fin.rsplit_once(",p=").unwrap();
                let auth_message = format!(
                    "{},{},{}",
                    st.client_first_bare, st.server_first, without_proof
                );
                let client_key = hmac(mechanism, &salted, b"Client Key");
                let stored_key = hash(mechanism, &client_key);
                let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
                let proof = B64.decode(proof).unwrap();
                let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                if hash(mechanism, &recovered) != stored_key {
                    return fail();
                }
                let server_key = hmac(mechanism, &salted, b"Server Key");
                let v = format!(
                    "v={}",
                    B64.encode(hmac(mechanism, &server_key, auth_message.as_bytes()))
                );
                st.finished = true;
                Action::Reply(
                    doc! {"conversationId": 1, "done": skip_empty_exchange, "payload": bin(v), "ok": 1.0},
                )
            }
            _ if st.finished => Action::Reply(doc! {"n": 1, "ok": 1.0}),
            _ => Action::Reply(
                doc! {"ok": 0.0, "code": 13, "codeName": "Unauthorized", "errmsg": "requires authentication"},
            ),
        }
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
            let first = payload(body);
            let r = first.split(",r=").nth(1).unwrap().to_string();
            Action::Reply(doc! {"conversationId": 1, "done": false,
            "payload": bin(format!("r={r}X,s={},i=4096", B64.encode(SALT))), "ok": 1})
        }
        _ => Action::Reply(
            doc! {"conversationId": 1, "done": true, "payload": bin("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()), "ok": 1},
        ),
    });
    match connect(&fake, Mechanism::ScramSha1, "app", "pencil") {
        Err(Error::Auth(m)) => assert!(m.contains("signature"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
}
