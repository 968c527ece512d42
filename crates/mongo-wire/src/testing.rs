//! Test servers for code that talks to MongoDB (feature `testing`; not for production):
//!
//! - [`Fake`]: a scriptable server on a loopback port that decodes each OP_MSG request and lets
//!   a closure decide what goes back (a reply, raw bytes, silence, or a hang-up);
//! - [`ScramServer`]: the server side of SCRAM (RFC 5802), written apart from the client's
//!   state machine: it recovers the client key from the proof and checks it against the stored
//!   key, as mongod does.
//!
//! Used by this crate's tests and by the project's end-to-end tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use crate::scram::Mechanism;
use crate::wire;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub enum Action {
    /// An OP_MSG reply with this body.
    Reply(Document),
    /// Exactly these bytes (the closure gets the request id to build them).
    Raw(Vec<u8>),
    /// These bytes, one at a time, `Duration` apart.
    Drip(Vec<u8>, Duration),
    /// Say nothing, keep the connection open for a while.
    Silent,
    /// Close the connection.
    Close,
}

pub struct Fake {
    pub addr: SocketAddr,
    /// Every command name received, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    pub connections: Arc<AtomicUsize>,
}

pub fn reply_bytes(request_id: i32, body: &Document) -> Vec<u8> {
    let mut m = wire::encode_op_msg(9999, body).unwrap();
    m[8..12].copy_from_slice(&request_id.to_le_bytes());
    m
}

/// The `hello` reply of a standalone server.
pub fn standalone_hello() -> Document {
    doc! { "isWritablePrimary": true, "maxWireVersion": 21, "maxMessageSizeBytes": 48_000_000, "ok": 1.0 }
}

type Handler = dyn Fn(&str, &Document, i32) -> Action + Send + Sync;

impl Fake {
    /// `handler(command_name, body, request_id)` decides each answer.
    pub fn start(handler: impl Fn(&str, &Document, i32) -> Action + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, conns2) = (log.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                // Replies are one write each; do not let Nagle hold a reply back.
                let _ = stream.set_nodelay(true);
                conns2.fetch_add(1, Ordering::SeqCst);
                let (handler, log) = (handler.clone(), log2.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Fake {
            addr,
            log,
            connections,
        }
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) {
    loop {
        let mut header = [0u8; 16];
        if s.read_exact(&mut header).is_err() {
            return;
        }
        let len = i32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let id = i32::from_le_bytes(header[4..8].try_into().unwrap());
        let mut payload = vec![0u8; len - 16];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        let body = wire::decode_op_msg(&header, &payload).unwrap().body;
        let name = body.keys().next().cloned().unwrap_or_default();
        log.lock().unwrap().push(name.clone());
        let ok = match handler(&name, &body, id) {
            Action::Reply(d) => s.write_all(&reply_bytes(id, &d)).is_ok(),
            Action::Raw(bytes) => s.write_all(&bytes).is_ok(),
            Action::Drip(bytes, gap) => bytes.iter().all(|b| {
                std::thread::sleep(gap);
                s.write_all(&[*b]).is_ok()
            }),
            Action::Silent => {
                std::thread::sleep(Duration::from_secs(30));
                false
            }
            Action::Close => false,
        };
        if !ok {
            return;
        }
    }
}

/// One user's SCRAM credentials as a server stores them, and the conversation in progress.
/// A server answers one conversation at a time: a new `start` abandons the previous one.
pub struct ScramServer {
    mechanism: Mechanism,
    user: String,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    /// Whether the last conversation proved the password.
    pub authenticated: bool,
    /// Whether `hello` takes `speculativeAuthenticate` (MongoDB >= 4.4). Default: true.
    pub speculative: bool,
    /// Whether the server honours `skipEmptyExchange`, i.e. says `done` with its proof rather
    /// than after one more, empty, round. Default: true.
    pub skip_empty_exchange: bool,
}

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Mechanism::ScramSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key");
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

/// The `payload` of a SASL command, as text.
pub fn sasl_payload(d: &Document) -> String {
    match d.get("payload") {
        Some(Bson::Binary(b)) => String::from_utf8_lossy(&b.bytes).into_owned(),
        _ => String::new(),
    }
}

/// A BSON binary (generic subtype) holding `s`.
pub fn binary(s: String) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: s.into_bytes(),
    }
}

/// The reply MongoDB gives to a command that needs authentication, before it.
pub fn unauthorized() -> Document {
    doc! {"ok": 0.0, "code": 13, "codeName": "Unauthorized", "errmsg": "requires authentication"}
}

/// The reply MongoDB gives to a failed SASL step.
pub fn auth_failed() -> Document {
    doc! {"ok": 0.0, "code": 18, "codeName": "AuthenticationFailed", "errmsg": "Authentication failed."}
}

impl ScramServer {
    pub fn new(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramServer {
        let scram_password =
            crate::scram::mongo_password(mechanism, user, password).expect("an ASCII password");
        let salted = mechanism.salted_password(&scram_password, salt, iterations);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        ScramServer {
            mechanism,
            user: user.into(),
            salt: salt.to_vec(),
            iterations,
            stored_key: hash(mechanism, &client_key),
            server_key: hmac(mechanism, &salted, b"Server Key"),
            client_first_bare: String::new(),
            server_first: String::new(),
            authenticated: false,
            speculative: true,
            skip_empty_exchange: true,
        }
    }

    /// The server's answer to the commands of the handshake and of authentication: `hello` /
    /// `isMaster` (a standalone, plus the server-first message when it takes speculative
    /// authentication), `saslStart` and `saslContinue`. `None` for any other command: the
    /// caller serves it once [`ScramServer::authenticated`], and answers [`unauthorized`]
    /// before.
    pub fn reply(&mut self, name: &str, body: &Document) -> Option<Document> {
        Some(match name {
            "hello" | "isMaster" => {
                let mut reply = standalone_hello();
                let spec = body.get_document("speculativeAuthenticate");
                if let (true, Ok(spec)) = (self.speculative, spec) {
                    // An unknown user gets no server-first message; the client's saslStart
                    // then fails.
                    if let Some(first) = self.start(spec) {
                        reply.insert("speculativeAuthenticate", first);
                    }
                }
                reply
            }
            "saslStart" => match self.start(body) {
                Some(mut first) => {
                    first.insert("ok", 1.0);
                    first
                }
                None => auth_failed(),
            },
            // The empty round after the proof, from a server that ignores skipEmptyExchange.
            "saslContinue" if self.authenticated => {
                doc! {"conversationId": 1, "done": true, "payload": binary(String::new()), "ok": 1.0}
            }
            "saslContinue" => match self.finish(body) {
                Some(v) => {
                    doc! {"conversationId": 1, "done": self.skip_empty_exchange, "payload": binary(v), "ok": 1.0}
                }
                None => auth_failed(),
            },
            _ => return None,
        })
    }

    /// Answers a `saslStart` (or a `speculativeAuthenticate` document): the server-first
    /// message, or `None` for an unknown user or mechanism.
    pub fn start(&mut self, sasl_start: &Document) -> Option<Document> {
        self.authenticated = false;
        if sasl_start.get_str("mechanism").ok()? != self.mechanism.name() {
            return None;
        }
        let first = sasl_payload(sasl_start);
        let bare = first.strip_prefix("n,,")?.to_string();
        let (n, r) = bare.split_once(',')?;
        if n != format!("n={}", self.user) {
            return None;
        }
        let nonce = format!("{}SERVERNONCE", r.strip_prefix("r=")?);
        self.client_first_bare = bare.clone();
        self.server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.salt),
            self.iterations
        );
        Some(
            doc! {"conversationId": 1, "done": false, "payload": binary(self.server_first.clone())},
        )
    }

    /// Checks the client-final message of a `saslContinue`; on success returns the
    /// server-final message (`v=...`) and marks the conversation authenticated.
    pub fn finish(&mut self, sasl_continue: &Document) -> Option<String> {
        let fin = sasl_payload(sasl_continue);
        let (without_proof, proof) = fin.rsplit_once(",p=")?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let m = self.mechanism;
        let signature = hmac(m, &self.stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).ok()?;
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if hash(m, &recovered) != self.stored_key {
            return None;
        }
        self.authenticated = true;
        Some(format!(
            "v={}",
            B64.encode(hmac(m, &self.server_key, auth_message.as_bytes()))
        ))
    }
}
