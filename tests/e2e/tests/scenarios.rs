//! The scenarios every edition must pass. Each `scenario!` runs one function against the Wasm
//! edition (components under visits-runner) and the native edition, so the two cannot drift.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use visits_e2e::{free_port, App, Edition, Mongo, Redis, TempDir, Value};

macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[test]
            fn wasm() {
                super::$name(visits_e2e::Edition::Wasm)
            }
            #[test]
            fn native() {
                super::$name(visits_e2e::Edition::Native)
            }
        }
    };
}

fn start(edition: Edition, settings: &[(&str, &str)]) -> (App, TempDir) {
    let state = TempDir::new("state");
    (App::start(edition, settings, &state.0), state)
}

fn ips(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {page}"))
        .iter()
        .map(|r| r["client_ip"].as_str().unwrap().to_string())
        .collect()
}

/// Fires `n` requests from `threads` threads and returns every count the page reported.
fn concurrent_counts(app: &App, n: usize, threads: usize) -> Vec<u64> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|_| app.page_json(&[])["visits"].as_u64().expect("a count"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

scenario!(page_shows_every_field);
fn page_shows_every_field(edition: Edition) {
    let (app, _state) = start(
        edition,
        &[
            ("author", "Ada <Lovelace>"),
            ("version", "v7"),
            ("hostname", "web-0"),
            ("project", "visits & co"),
        ],
    );
    let html = app.get("/");
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    for needle in [
        r#"<dd id="author">Ada &lt;Lovelace&gt;</dd>"#,
        r#"<h1 id="project">visits &amp; co</h1>"#,
        r#"<dd id="version">v7</dd>"#,
        r#"<dd id="hostname">web-0</dd>"#,
        r#"<span id="visits" class="count">1</span>"#,
        r#"<table id="records">"#,
        r#"<td class="ip">127.0.0.1</td>"#,
    ] {
        assert!(
            html.body.contains(needle),
            "{edition:?}: missing {needle} in\n{}",
            html.body
        );
    }
    let page = app.page_json(&[]);
    assert_eq!(page["author"], "Ada <Lovelace>");
    assert_eq!(page["version"], "v7");
    assert_eq!(page["hostname"], "web-0");
    assert_eq!(page["visits"], 2);
    assert_eq!(page["errors"], serde_json::json!({}));
    // The date is now, in UTC.
    let date = page["date"].as_str().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let shown = visits_core_time(date);
    assert!((now - shown).abs() < 60_000, "date {date} is not now");
    assert_eq!(
        ips(&page),
        ["127.0.0.1", "127.0.0.1"],
        "newest first, both visits recorded"
    );
}

/// Parses the page's RFC 3339 date without depending on the app's own code.
fn visits_core_time(text: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", text, "+%s%3N"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

scenario!(embedded_counter_loses_no_increment);
fn embedded_counter_loses_no_increment(edition: Edition) {
    let (app, _state) = start(edition, &[("records_backend", "off")]);
    let counts: BTreeSet<u64> = concurrent_counts(&app, 64, 8).into_iter().collect();
    assert_eq!(
        counts,
        (1..=64).collect(),
        "{edition:?}: every visit gets its own count"
    );
}

scenario!(redis_counter_is_shared_and_exact);
fn redis_counter_is_shared_and_exact(edition: Edition) {
    let redis = Redis::start();
    let settings = [
        ("counter_backend", "redis"),
        ("redis_address", &redis.address()),
        ("counter_key", "e2e"),
        ("records_backend", "off"),
    ];
    // Two replicas against one Redis: the count is one count.
    let (a, _sa) = start(edition, &settings);
    let (b, _sb) = start(edition, &settings);
    let mut counts = concurrent_counts(&a, 40, 4);
    counts.extend(concurrent_counts(&b, 40, 4));
    let counts: BTreeSet<u64> = counts.into_iter().collect();
    assert_eq!(counts, (1..=80).collect());
    assert_eq!(redis.cli(&["GET", "e2e"]), "80");
}

scenario!(records_are_newest_first_and_only_the_last_ten);
fn records_are_newest_first_and_only_the_last_ten(edition: Edition) {
    let (app, _state) = start(edition, &[("trust_forwarded_for", "true")]);
    for i in 1..=15 {
        app.page_json(&[("x-forwarded-for", &format!("192.0.2.{i}, 10.0.0.1"))]);
    }
    let page = app.page_json(&[("x-real-ip", "2001:db8::16")]);
    let want: Vec<String> = std::iter::once("2001:db8::16".to_string())
        .chain((7..=15).rev().map(|i| format!("192.0.2.{i}")))
        .collect();
    assert_eq!(ips(&page), want);
}

scenario!(forwarded_headers_need_trust_and_must_parse);
fn forwarded_headers_need_trust_and_must_parse(edition: Edition) {
    let (untrusting, _s1) = start(edition, &[]);
    let page = untrusting.page_json(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(
        ips(&page)[0],
        "127.0.0.1",
        "not trusted: the peer address counts"
    );
    let (trusting, _s2) = start(edition, &[("trust_forwarded_for", "true")]);
    let page = trusting.page_json(&[("x-forwarded-for", "<script>, 203.0.113.9")]);
    assert_eq!(
        ips(&page)[0],
        "127.0.0.1",
        "an unparsable forwarded address falls back to the peer"
    );
}

scenario!(records_off_is_the_webnodb_page);
fn records_off_is_the_webnodb_page(edition: Edition) {
    let (app, _state) = start(edition, &[("records_backend", "off")]);
    let page = app.page_json(&[]);
    assert_eq!(page["records_enabled"], false);
    assert_eq!(page["records"], Value::Null);
    assert!(!app.get("/").body.contains("Recent visits"));
    let health = app.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        health.json()["checks"],
        serde_json::json!({"counter": "ok"})
    );
}

scenario!(mongodb_records_survive_restarts);
fn mongodb_records_survive_restarts(edition: Edition) {
    let dir = TempDir::new("mongo");
    let db = dir.0.join("nx.db");
    let collection = format!("e2e_{edition:?}").to_lowercase();
    let settings = |mongo: &Mongo| -> Vec<(&'static str, String)> {
        vec![
            ("records_backend", "mongodb".into()),
            ("mongo_address", mongo.address()),
            ("mongo_collection", collection.clone()),
            ("trust_forwarded_for", "true".into()),
        ]
    };
    let start_with = |mongo: &Mongo| {
        let owned = settings(mongo);
        let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        start(edition, &borrowed)
    };
    {
        let mongo = Mongo::start(&db, free_port());
        let (app, _state) = start_with(&mongo);
        for i in 1..=12 {
            let page = app.page_json(&[("x-forwarded-for", &format!("198.51.100.{i}"))]);
            assert_eq!(page["errors"], serde_json::json!({}), "{page}");
        }
        assert_eq!(app.get("/healthz").status, 200);
    }
    // Both the app and the database restart (on a new port: the old one may linger in
    // TIME_WAIT); the records are still there.
    let mongo = Mongo::start(&db, free_port());
    let (app, _state) = start_with(&mongo);
    let page = app.page_json(&[("x-forwarded-for", "198.51.100.13")]);
    let want: Vec<String> = (4..=13).rev().map(|i| format!("198.51.100.{i}")).collect();
    assert_eq!(ips(&page), want);
}

scenario!(a_dead_backend_degrades_the_page_and_fails_readiness);
fn a_dead_backend_degrades_the_page_and_fails_readiness(edition: Edition) {
    // Nothing listens on these ports: connection refused.
    let redis = format!("127.0.0.1:{}", free_port());
    let mongo = format!("127.0.0.1:{}", free_port());
    let (app, _state) = start(
        edition,
        &[
            ("counter_backend", "redis"),
            ("redis_address", &redis),
            ("records_backend", "mongodb"),
            ("mongo_address", &mongo),
            ("mongo_address2", &mongo),
            ("mongo_address3", &mongo),
        ],
    );
    let started = Instant::now();
    let html = app.get("/");
    assert_eq!(html.status, 200, "the page still renders");
    assert!(html.body.contains("counter unavailable"), "{}", html.body);
    assert!(html.body.contains("records unavailable"), "{}", html.body);
    assert_eq!(html.header("x-visits-degraded"), Some("counter,records"));
    let health = app.get("/healthz");
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["failed"], serde_json::json!(["counter", "recorder"]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failing backends must fail fast"
    );
}

scenario!(a_silent_mongodb_times_out);
fn a_silent_mongodb_times_out(edition: Edition) {
    // Accepts connections, never answers: only a read timeout saves the request.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (app, _state) = start(
        edition,
        &[
            ("records_backend", "mongodb"),
            ("mongo_address", &addr),
            ("mongo_address2", &addr),
            ("mongo_address3", &addr),
            ("mongo_timeout_ms", "300"),
        ],
    );
    let started = Instant::now();
    let page = app.page_json(&[]);
    assert!(page["errors"]["records"].is_string(), "{page}");
    assert!(page["visits"].is_u64(), "the counter still works: {page}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

scenario!(bad_requests_get_clear_errors);
fn bad_requests_get_clear_errors(edition: Edition) {
    let (app, _state) = start(edition, &[]);
    let missing = app.get("/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("/nope"));
    let post = app.request("POST", "/", &[]);
    assert_eq!(post.status, 405);
    assert!(post.json()["error"].is_string());
    // Neither counted a visit.
    assert_eq!(app.page_json(&[])["visits"], 1);
    assert_eq!(app.get("/.well-known/spin/health").status, 200);
}

scenario!(bad_settings_are_reported);
fn bad_settings_are_reported(edition: Edition) {
    match edition {
        // Spin reads variables per request: the page answers 500 naming the setting.
        Edition::Wasm => {
            let (app, _state) = start(edition, &[("records_limit", "1000")]);
            let reply = app.get("/");
            assert_eq!(reply.status, 500);
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("records_limit"),
                "{}",
                reply.body
            );
        }
        // A native server reads its settings once and refuses to start.
        Edition::Native => {
            let out = std::process::Command::new(
                visits_e2e::repo_root().join("target/release/visits-native"),
            )
            .env("RECORDS_LIMIT", "1000")
            .env("LISTEN_ADDRESS", "127.0.0.1:0")
            .output()
            .expect("visits-native runs");
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
            assert!(stderr.contains("records_limit"), "{stderr}");
        }
    }
}

/// The `(key, value)` pairs of the SCRAM cache in the runner's key-value store file.
fn scram_cache_entries(state: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let db = rusqlite::Connection::open(state.join("sqlite_key_value.db")).unwrap();
    let mut q = db
        .prepare("SELECT key, value FROM spin_key_value WHERE key LIKE 'mongo-wire/scram/%' ORDER BY key")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Wasm only: nothing outlives a request in Spin, so the recorder keeps the SCRAM salted
/// password (15,000 HMAC rounds to derive) in Spin's key-value store; the native edition's
/// driver keeps it in its own memory. MongoDB here is nx-27017 behind `AuthProxy`, which does
/// the server side of SCRAM-SHA-256.
#[test]
fn mongodb_credentials_are_derived_once_and_cached_wasm() {
    let dir = TempDir::new("auth");
    let mongo = Mongo::start(&dir.0.join("nx.db"), free_port());
    let proxy = visits_e2e::AuthProxy::start(&mongo, "recorder", "s3cret-pw");
    let address = proxy.address();
    let with_password = |password: &'static str| {
        vec![
            ("records_backend", "mongodb"),
            ("mongo_address", address.as_str()),
            ("mongo_username", "recorder"),
            ("mongo_password", password),
            ("trust_forwarded_for", "true"),
        ]
    };
    let state = TempDir::new("state");
    let app = App::start(Edition::Wasm, &with_password("s3cret-pw"), &state.0);

    // First view: derived, accepted, then cached (32 bytes of SCRAM-SHA-256).
    let page = app.page_json(&[("x-forwarded-for", "198.51.100.1")]);
    assert_eq!(page["errors"], serde_json::json!({}), "{page}");
    let cached = scram_cache_entries(&state.0);
    assert_eq!(cached.len(), 1, "{cached:?}");
    let (key, salted) = cached[0].clone();
    assert!(key.starts_with("mongo-wire/scram/SCRAM-SHA-256/"), "{key}");
    assert_eq!(salted.len(), 32);

    // Second view reads the cache: damage the entry and the server refuses it, so the recorder
    // forgets it, derives afresh (a second conversation: saslStart) and caches the good value.
    let db = rusqlite::Connection::open(state.0.join("sqlite_key_value.db")).unwrap();
    db.execute(
        "UPDATE spin_key_value SET value = ?1 WHERE key = ?2",
        rusqlite::params![vec![0u8; 32], key],
    )
    .unwrap();
    let before = proxy.commands().len();
    let page = app.page_json(&[("x-forwarded-for", "198.51.100.2")]);
    assert_eq!(page["errors"], serde_json::json!({}), "{page}");
    assert_eq!(ips(&page), ["198.51.100.2", "198.51.100.1"]);
    let second: Vec<String> = proxy.commands()[before..].to_vec();
    assert_eq!(
        second.iter().filter(|c| *c == "saslStart").count(),
        1,
        "{second:?}"
    );
    assert_eq!(scram_cache_entries(&state.0), vec![(key, salted)]);

    // Third view: the restored entry is used as is (speculative auth, no saslStart).
    let before = proxy.commands().len();
    let page = app.page_json(&[("x-forwarded-for", "198.51.100.3")]);
    assert_eq!(page["errors"], serde_json::json!({}), "{page}");
    assert!(!proxy.commands()[before..].contains(&"saslStart".to_string()));
    drop(app);

    // A wrong password: records unavailable with the reason, and nothing cached.
    let state = TempDir::new("state");
    let app = App::start(Edition::Wasm, &with_password("wrong"), &state.0);
    let page = app.page_json(&[]);
    let error = page["errors"]["records"].as_str().unwrap_or_default();
    assert!(error.contains("uthentication"), "{page}");
    assert!(scram_cache_entries(&state.0).is_empty());
}

scenario!(metrics_count_requests_and_backend_calls);
fn metrics_count_requests_and_backend_calls(edition: Edition) {
    let redis = Redis::start();
    // A counter that works and a recorder whose MongoDB is not there: both outcomes move.
    let dead = format!("127.0.0.1:{}", free_port());
    let state = TempDir::new("state");
    let app = App::start_with_metrics(
        edition,
        &[
            ("counter_backend", "redis"),
            ("redis_address", &redis.address()),
            ("records_backend", "mongodb"),
            ("mongo_address", &dead),
            ("mongo_address2", &dead),
            ("mongo_address3", &dead),
            ("version", "v9"),
        ],
        &state.0,
    );
    let before = app.metrics();
    for _ in 0..3 {
        assert_eq!(app.get("/").status, 200);
    }
    assert_eq!(app.get("/healthz").status, 503);
    assert_eq!(app.get("/no/such/page").status, 404);
    let after = app.metrics();
    let delta = |series: &str| after.value(series) - before.value(series);
    let views = r#"visits_http_requests_total{route="/",method="GET",status="200"}"#;
    assert_eq!(delta(views), 3.0, "{}", after.0);
    let health = r#"visits_http_requests_total{route="/healthz",method="GET",status="503"}"#;
    assert_eq!(delta(health), 1.0, "{}", after.0);
    let other = r#"visits_http_requests_total{route="other",method="GET",status="404"}"#;
    assert_eq!(delta(other), 1.0, "{}", after.0);
    assert_eq!(
        delta(r#"visits_http_request_duration_seconds_count{route="/"}"#),
        3.0
    );
    // Only page views call the backends; the readiness check is not counted as one.
    let backend = |b: &str, o: &str| {
        delta(&format!(
            r#"visits_backend_requests_total{{backend="{b}",outcome="{o}"}}"#
        ))
    };
    assert_eq!(backend("counter", "ok"), 3.0, "{}", after.0);
    assert_eq!(backend("counter", "error"), 0.0, "{}", after.0);
    assert_eq!(backend("recorder", "error"), 3.0, "{}", after.0);
    assert_eq!(backend("recorder", "ok"), 0.0, "{}", after.0);
    assert_eq!(after.value("visits_http_requests_in_flight"), 0.0);
    let build = match edition {
        Edition::Wasm => r#"visits_build_info{edition="wasm",version="v9"}"#,
        Edition::Native => r#"visits_build_info{edition="native",version="v9"}"#,
    };
    assert_eq!(after.value(build), 1.0, "{}", after.0);
    // Scrapes are not app traffic.
    assert!(!after.0.contains("/metrics"), "{}", after.0);
    if edition == Edition::Wasm {
        // Every page view runs a fresh page, counter and recorder instance; so does /healthz,
        // and the 404 is the page's.
        let instances = |c: &str| delta(&format!(r#"runner_instances_total{{component="{c}"}}"#));
        assert_eq!(instances("page"), 5.0, "{}", after.0);
        assert_eq!(instances("counter"), 4.0, "{}", after.0);
        assert_eq!(instances("recorder"), 4.0, "{}", after.0);
        assert_eq!(after.value("runner_admission_waiting"), 0.0);
    }
}

/// The listening TCP sockets a process holds (its fds against /proc/net/tcp{,6}).
fn listening_sockets(pid: u32) -> usize {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(3) == Some(&"0A") && cols.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

#[test]
fn runner_admin_listener_is_off_by_default_wasm() {
    let (app, _state) = start(Edition::Wasm, &[]);
    assert_eq!(app.get("/").status, 200);
    assert_eq!(listening_sockets(app.pid()), 1, "only the app's listener");
    assert!(!app.log().contains("metrics on"), "{}", app.log());
    // The app's routes stay the manifest's: /metrics is the page's 404.
    assert_eq!(app.get("/metrics").status, 404);
    drop(app);
    let state = TempDir::new("state");
    let app = App::start_with_metrics(Edition::Wasm, &[], &state.0);
    assert_eq!(
        listening_sockets(app.pid()),
        2,
        "the app's and the admin listener"
    );
    assert!(app.metrics().value("visits_http_requests_in_flight") == 0.0);
}

scenario!(a_bad_stored_document_hides_only_itself);
/// One MongoDB document of the wrong shape (`client_ip` a number, written by another program)
/// is skipped and counted; the nine good records around it are still shown.
fn a_bad_stored_document_hides_only_itself(edition: Edition) {
    let dir = TempDir::new("mongo-bad");
    let mongo = Mongo::start(&dir.0.join("nx.db"), free_port());
    let collection = format!("bad_{edition:?}").to_lowercase();
    let (app, _state) = start(
        edition,
        &[
            ("records_backend", "mongodb"),
            ("mongo_address", &mongo.address()),
            ("mongo_collection", &collection),
            ("trust_forwarded_for", "true"),
        ],
    );
    for i in 1..=10 {
        app.page_json(&[("x-forwarded-for", &format!("198.51.100.{i}"))]);
    }
    // Written with pymongo (nx-27017's own dependency), as any other program would.
    let port = mongo.address().rsplit(':').next().unwrap().to_string();
    let script = format!(
        "import datetime, pymongo\n\
         c = pymongo.MongoClient('127.0.0.1', {port}, directConnection=True)\n\
         c['visits']['{collection}'].insert_one({{'client_ip': 42, 'page': '/', \
         'date': datetime.datetime.now(datetime.timezone.utc)}})\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pymongo insert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // This visit is the newest; the bad document the second newest: 9 good of the last 10.
    let page = app.page_json(&[("x-forwarded-for", "198.51.100.11")]);
    assert_eq!(page["errors"], serde_json::json!({}), "{page}");
    assert_eq!(page["records_skipped"], 1, "{page}");
    let want: Vec<String> = (3..=11).rev().map(|i| format!("198.51.100.{i}")).collect();
    assert_eq!(ips(&page), want, "{page}");
    let html = app.get("/").body;
    assert!(html.contains("1 stored visit could not be read"), "{html}");
    assert!(!html.contains("records unavailable"), "{html}");
}
