//! The server over real TCP with embedded backends (and an unreachable Redis for the degraded
//! page): routes, status codes, headers, counts under concurrency. HTTP/1.1 is written by hand
//! to keep the crate free of an HTTP client dependency.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use visits_native::settings::Settings;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

async fn start(env: &[(&str, &str)]) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = Settings::load(|n| env.get(n).cloned(), || None).unwrap();
    let app = visits_native::app(&settings).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(visits_native::serve(
        listener,
        app,
        false,
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

#[tokio::test]
async fn page_counts_records_and_negotiates() {
    let (addr, _stop) = start(&[("AUTHOR", "Ada"), ("HOSTNAME", "web-0")]).await;
    let html = request(addr, "GET", "/", "").await;
    assert_eq!(html.status, 200);
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(html.headers["cache-control"], "no-store");
    assert_eq!(html.headers["vary"], "accept");
    assert!(!html.headers.contains_key("x-visits-degraded"));
    assert!(html.body.contains(r#"<dd id="author">Ada</dd>"#));
    assert!(html.body.contains(r#"<dd id="hostname">web-0</dd>"#));
    assert!(html
        .body
        .contains(r#"<span id="visits" class="count">1</span>"#));
    assert!(html.body.contains("<td class=\"ip\">127.0.0.1</td>"));

    // 40 concurrent visits: none lost, none doubled.
    let visits: Vec<_> = (0..40)
        .map(|_| tokio::spawn(request(addr, "GET", "/", "")))
        .collect();
    for v in visits {
        assert_eq!(v.await.unwrap().status, 200);
    }
    let j = json(&request(addr, "GET", "/", "Accept: application/json\r\n").await);
    assert_eq!(j["visits"], 42);
    assert_eq!(j["author"], "Ada");
    assert_eq!(j["records_enabled"], true);
    assert_eq!(j["records"].as_array().unwrap().len(), 10);
    assert_eq!(j["records"][0]["client_ip"], "127.0.0.1");
    assert_eq!(j["errors"], serde_json::json!({}));
}

#[tokio::test]
async fn forwarded_for_only_when_trusted() {
    let xff = "X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nAccept: application/json\r\n";
    let (addr, _stop) = start(&[]).await;
    let j = json(&request(addr, "GET", "/", xff).await);
    assert_eq!(j["records"][0]["client_ip"], "127.0.0.1");
    let (addr, _stop) = start(&[("TRUST_FORWARDED_FOR", "true")]).await;
    let j = json(&request(addr, "GET", "/", xff).await);
    assert_eq!(j["records"][0]["client_ip"], "203.0.113.9");
}

#[tokio::test]
async fn errors_health_and_liveness() {
    let (addr, _stop) = start(&[("RECORDS_BACKEND", "off")]).await;
    let r = request(addr, "GET", "/nope?x=1", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(json(&r)["error"], "no page at /nope");
    for (method, path) in [("POST", "/"), ("HEAD", "/"), ("DELETE", "/healthz")] {
        let r = request(addr, method, path, "Content-Length: 0\r\n").await;
        assert_eq!(r.status, 405, "{method} {path}");
        if method != "HEAD" {
            assert_eq!(json(&r)["error"], "only GET is allowed here");
        }
    }
    let r = request(addr, "GET", "/healthz", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r),
        serde_json::json!({"status": "ok", "checks": {"counter": "ok"}})
    );
    let r = request(addr, "GET", "/.well-known/spin/health", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    // Records off: the classic page without a records section.
    let j = json(&request(addr, "GET", "/", "Accept: application/json\r\n").await);
    assert_eq!(j["records_enabled"], false);
    assert_eq!(j["records"], serde_json::Value::Null);
}

#[tokio::test]
async fn dead_redis_degrades_the_page_and_fails_readiness() {
    let (addr, _stop) = start(&[
        ("COUNTER_BACKEND", "redis"),
        ("REDIS_ADDRESS", "127.0.0.1:1"),
    ])
    .await;
    let r = request(addr, "GET", "/", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-visits-degraded"], "counter");
    assert!(r.body.contains("counter unavailable"));
    assert!(
        r.body.contains("<td class=\"ip\">127.0.0.1</td>"),
        "records still shown"
    );
    let r = request(addr, "GET", "/healthz", "").await;
    assert_eq!(r.status, 503);
    let j = json(&r);
    assert_eq!(j["failed"], serde_json::json!(["counter"]));
    assert_eq!(j["checks"]["recorder"], "ok");
    assert!(j["checks"]["counter"]
        .as_str()
        .unwrap()
        .starts_with("redis: PING failed"));
}

#[tokio::test]
async fn shutdown_lets_the_server_return() {
    let env: HashMap<String, String> = HashMap::new();
    let settings = Settings::load(|n| env.get(n).cloned(), || None).unwrap();
    let app = visits_native::app(&settings).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(visits_native::serve(
        listener,
        app,
        false,
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    assert_eq!(request(addr, "GET", "/", "").await.status, 200);
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
