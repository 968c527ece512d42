//! A scriptable fake MongoDB server for failure-mode tests: it decodes each OP_MSG request
//! and lets a closure decide what goes back (a reply, raw bytes, silence, or a hang-up).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongo_wire::bson::{doc, Document};
use mongo_wire::wire;

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
