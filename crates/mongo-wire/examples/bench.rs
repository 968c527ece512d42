//! Measures what one recorder page view costs: commands, bytes on the wire and latency.
//!
//! ```text
//! cargo run --release -p mongo-wire --example bench               # starts nx-27017 itself
//! cargo run --release -p mongo-wire --example bench -- 127.0.0.1:27017 [iterations]
//! ```
//!
//! A page view is what the recorder does per request (a Spin instance lives for one request,
//! so it connects every time): connect + `hello`, `insert` one visit, `find` the newest 10.
//! It is timed three ways: against the server as a new connection per view (the recorder's
//! case), on one kept connection (insert + find only), and against an in-process server that
//! answers from memory (what the client itself plus loopback TCP cost). Then the pure
//! encode/decode cost of the messages is timed without any I/O.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongo_wire::bson::{doc, Bson, Document};
use mongo_wire::testing::{standalone_hello, Action, Fake};
use mongo_wire::wire::{decode_reply, encode_op_msg, DEFAULT_MAX_MESSAGE_SIZE};
use mongo_wire::{
    Client, ClientOptions, Connector, CountingConnector, FindOptions, Mechanism, StdConnector,
};

fn visit(i: u64) -> Document {
    doc! {
        "client_ip": format!("192.0.2.{}", i % 250),
        "date": mongo_wire::bson::DateTime::now(),
        "page": "/",
    }
}

fn newest() -> FindOptions {
    FindOptions {
        sort: Some(doc! {"date": -1, "_id": -1}),
        limit: Some(10),
        hint: Some(Bson::Document(doc! {"date": -1, "_id": -1})),
        ..FindOptions::default()
    }
}

fn options(addr: SocketAddr) -> ClientOptions {
    let mut o = ClientOptions::new(vec![addr]);
    o.timeout = Duration::from_secs(5);
    o.app_name = Some("wasm-visits recorder".into());
    o
}

fn page_view<C: Connector + Clone>(connector: &C, addr: SocketAddr, i: u64) {
    let mut c = Client::connect(connector.clone(), options(addr)).expect("connect");
    c.insert_one("visits", "records", visit(i)).expect("insert");
    let docs = c.find("visits", "records", &newest()).expect("find");
    assert!(!docs.is_empty());
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<44} n={:<5} p50={:>8.3} ms  p99={:>8.3} ms  mean={:>8.3} ms  max={:>8.3} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn time(n: u64, mut f: impl FnMut(u64)) -> Vec<Duration> {
    for i in 0..20 {
        f(i); // warm-up
    }
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect()
}

/// A server that answers hello/insert/find from canned replies: the floor for client + TCP.
/// Answers from memory: `hello` as a standalone, `insert` with n=1, anything else with a
/// cursor of ten stored visits.
fn canned_server() -> SocketAddr {
    let ten: Vec<Document> = (0..10)
        .map(|i| {
            let mut d = visit(i);
            d.insert("_id", mongo_wire::bson::oid::ObjectId::new());
            d
        })
        .collect();
    let server = Fake::start(move |name, _, _| {
        Action::Reply(match name {
            "hello" => standalone_hello(),
            "insert" => doc! {"n": 1, "ok": 1.0},
            _ => {
                doc! {"cursor": {"id": 0i64, "ns": "visits.records", "firstBatch": ten.clone()}, "ok": 1.0}
            }
        })
    });
    server.addr
}

fn start_nx() -> (Child, SocketAddr, std::path::PathBuf) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = std::env::temp_dir().join(format!("mongo-wire-bench-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let child = Command::new("nx-27017")
        .arg("--db")
        .arg(&db)
        .args(["--host", "127.0.0.1", "-p", &port.to_string()])
        .arg("--log-file")
        .arg(db.with_extension("log"))
        .arg("--pid-file")
        .arg(db.with_extension("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nx-27017 not found: pip install nx-27017, or pass an address");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nx-27017 did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr, db)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let given: Option<SocketAddr> = args.next().map(|a| a.parse().expect("ip:port"));
    let n: u64 = args
        .next()
        .map(|a| a.parse().expect("iterations"))
        .unwrap_or(1000);
    let mut nx = None;
    let addr = given.unwrap_or_else(|| {
        let (child, addr, db) = start_nx();
        nx = Some((child, db));
        addr
    });

    // One page view, counted.
    let counting = CountingConnector::new(StdConnector);
    let mut c = Client::connect(counting.clone(), options(addr)).unwrap();
    // Seed ten records so the find returns a full page.
    for i in 0..10 {
        c.insert_one("visits", "records", visit(i)).unwrap();
    }
    // nx-27017 cannot index `_id` (see README); MongoDB can. Either way the find works.
    if let Err(e) = c.create_index(
        "visits",
        "records",
        doc! {"date": -1, "_id": -1},
        "date_-1__id_-1",
    ) {
        println!("(createIndexes {{date: -1, _id: -1}} failed: {e}; continuing without it)");
    }
    drop(c);
    let before = counting.counts.snapshot();
    let mut c = Client::connect(counting.clone(), options(addr)).unwrap();
    let after_hello = counting.counts.snapshot();
    c.insert_one("visits", "records", visit(1)).unwrap();
    let after_insert = counting.counts.snapshot();
    let docs = c.find("visits", "records", &newest()).unwrap();
    let after_find = counting.counts.snapshot();
    println!(
        "server: {addr}  (records returned by the find: {})",
        docs.len()
    );
    println!(
        "one page view = {} commands: hello, insert, find; {} TCP connect",
        c.commands_sent(),
        after_find.2 - before.2
    );
    for (name, a, b) in [
        ("hello", before, after_hello),
        ("insert", after_hello, after_insert),
        ("find (10 records)", after_insert, after_find),
    ] {
        println!(
            "  {name:<18} sent {:>5} B  received {:>5} B",
            b.0 - a.0,
            b.1 - a.1
        );
    }
    println!(
        "  {:<18} sent {:>5} B  received {:>5} B  (total {} B)",
        "page view",
        after_find.0 - before.0,
        after_find.1 - before.1,
        after_find.0 - before.0 + after_find.1 - before.1
    );
    drop(c);

    println!("\nlatency, {n} iterations each (after 20 warm-up):");
    report(
        "page view, new connection (recorder case)",
        time(n, |i| page_view(&StdConnector, addr, i)),
    );
    let mut kept = Client::connect(StdConnector, options(addr)).unwrap();
    report(
        "insert + find on one kept connection",
        time(n, |i| {
            kept.insert_one("visits", "records", visit(i)).unwrap();
            kept.find("visits", "records", &newest()).unwrap();
        }),
    );
    let canned = canned_server();
    report(
        "page view vs in-memory canned server",
        time(n, |i| page_view(&StdConnector, canned, i)),
    );
    let mut kept = Client::connect(StdConnector, options(canned)).unwrap();
    report(
        "insert + find vs canned server, kept conn",
        time(n, |i| {
            kept.insert_one("visits", "records", visit(i)).unwrap();
            kept.find("visits", "records", &newest()).unwrap();
        }),
    );

    // Pure protocol cost: encode the three requests, decode the three replies.
    let hello_reply = encode_op_msg(
        1,
        &doc! {"isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0},
    )
    .unwrap();
    let find_reply = encode_op_msg(
        1,
        &doc! {"cursor": {"id": 0i64, "ns": "visits.records", "firstBatch": docs}, "ok": 1.0},
    )
    .unwrap();
    let insert_reply = encode_op_msg(1, &doc! {"n": 1, "ok": 1.0}).unwrap();
    let m = 20 * n;
    let samples = time(m, |i| {
        let _ = encode_op_msg(1, &doc! {"hello": 1, "client": {"driver": {"name": "mongo-wire", "version": "0.1.0"}}, "$db": "admin"}).unwrap();
        let _ = encode_op_msg(
            2,
            &doc! {"insert": "records", "documents": [visit(i)], "ordered": true, "$db": "visits"},
        )
        .unwrap();
        let _ = encode_op_msg(3, &doc! {"find": "records", "filter": {}, "sort": {"date": -1, "_id": -1}, "limit": 10i64, "$db": "visits"}).unwrap();
        for r in [&hello_reply, &insert_reply, &find_reply] {
            let _ = decode_reply(r, 0, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        }
    });
    report("encode 3 requests + decode 3 replies (no I/O)", samples);

    // SCRAM's PBKDF2 at MongoDB's default iteration counts: paid once per connection (so once
    // per page view in a Spin component, where nothing outlives the request).
    for (m, iterations) in [
        (Mechanism::ScramSha256, 15_000),
        (Mechanism::ScramSha1, 10_000),
    ] {
        let samples = time(50, |_| {
            let _ = m.salted_password(b"pencil", b"0123456789abcdef", iterations);
        });
        report(
            &format!("{} salted password, i={iterations}", m.name()),
            samples,
        );
    }

    if let Some((mut child, db)) = nx {
        let _ = child.kill();
        let _ = child.wait();
        for ext in ["db", "log", "pid", "db-wal", "db-shm"] {
            let _ = std::fs::remove_file(db.with_extension(ext));
        }
    }
}
