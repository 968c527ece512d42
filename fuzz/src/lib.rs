//! What the fuzz targets check, in a library so that tests/replay.rs runs every saved input
//! (corpus/ and the regressions) through the very same checks on stable Rust, in CI.
//!
//! - `manifest`: any bytes as a spin.toml. Never a panic; every refusal names the file; an
//!   accepted app routes each of its routes to a component it declares.
//! - `request`: any routes, base, request target and client headers, through the runner's
//!   routing and Spin's `spin-*` headers. Never a panic; the match is one of the routes; a
//!   client can never set a `spin-*` header the host sets (e.g. spoof `spin-client-addr`).

use spin_manifest::manifest;
use spin_manifest::routes::{set_spin_headers, Router};
use std::net::SocketAddr;

pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The components' `source` files are looked up beside the manifest: an empty directory
    // makes every app that names one fail the same, clear way.
    let dir = std::path::Path::new("/nonexistent-fuzz-dir");
    let env = |name: &str| (name == "SPIN_VARIABLE_FROM_ENV").then(|| "env-value".to_string());
    let cli = [("from_cli".to_string(), "cli-value".to_string())];
    match manifest::parse(text, dir, "fuzz.toml", &cli, &env) {
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("fuzz.toml"),
                "an error that does not name the file: {msg}"
            );
        }
        Ok(app) => {
            for route in app.router.routes() {
                assert!(
                    app.components.contains_key(&route.component),
                    "route {} names undeclared component {}",
                    route.based,
                    route.component
                );
            }
        }
    }
}

/// One request against one route table, as the fuzzer builds it (arbitrary's derive).
#[derive(Debug, arbitrary::Arbitrary)]
pub struct RequestCase {
    pub base: String,
    pub routes: Vec<(String, String)>,
    /// The request target as sent: origin form (`/a?b`) or absolute form (`http://h/a`).
    pub target: String,
    pub host: Option<Vec<u8>>,
    /// Headers the client sends, `spin-*` ones included.
    pub headers: Vec<(String, Vec<u8>)>,
    pub client: ([u8; 4], u16),
}

pub fn request(case: &RequestCase) {
    let pairs = case.routes.iter().map(|(r, c)| (r.as_str(), c.as_str()));
    let Ok((router, _replaced)) = Router::build(&case.base, pairs) else {
        return;
    };
    // hyper hands the runner only requests whose target parsed as a URI.
    let Ok(uri) = case.target.parse::<http::Uri>() else {
        return;
    };
    let path = uri.path().to_string();
    // What the host puts at the end of spin-full-url.
    let abs = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let Some(m) = router.route(&path) else {
        return;
    };
    let route = router
        .routes()
        .iter()
        .find(|r| r.based == m.based_route && r.raw == m.raw_route)
        .unwrap_or_else(|| panic!("matched route {} is not in the table", m.based_route));
    assert_eq!(route.component, m.component);
    // spin-path-info holds the path's trailing segments, those the wildcard matched (empty
    // segments collapse, as in the routing itself).
    let segs = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert!(
        segs(&path).ends_with(&segs(&m.path_info)),
        "path-info {:?} is not the end of {path:?}",
        m.path_info
    );

    let mut builder = http::Request::builder().uri(uri);
    if let Some(host) = &case.host {
        builder = builder.header(http::header::HOST, host.as_slice());
    }
    for (name, value) in &case.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    // Names or values hyper would have refused at the parser never reach the runner.
    let Ok(mut req) = builder.body(()) else {
        return;
    };
    let client = SocketAddr::from(case.client);
    set_spin_headers(&mut req, &m, client, "http");

    let headers = req.headers();
    let expected = [
        ("spin-path-info", m.path_info.clone()),
        ("spin-matched-route", m.based_route.clone()),
        ("spin-base-path", "/".to_string()),
        ("spin-raw-component-route", m.raw_route.clone()),
        ("spin-component-route", m.raw_route_or_prefix().to_string()),
        ("spin-client-addr", client.to_string()),
    ];
    for (name, want) in expected {
        let got: Vec<_> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        // The host's value, or nothing when it is not a valid header value: never the
        // client's (a component trusts these as the host's).
        let ok = match got.as_slice() {
            [] => http::HeaderValue::from_str(&want).is_err(),
            [one] => *one == want.as_bytes(),
            _ => false,
        };
        assert!(ok, "{name}: host value {want:?}, request has {got:?}");
    }
    let full: Vec<_> = headers.get_all("spin-full-url").iter().collect();
    assert!(full.len() <= 1, "spin-full-url set {} times", full.len());
    if let Some(full) = full.first() {
        // Bytes: a request target may carry UTF-8 (httparse lets it through), and so may
        // the URL the host builds from it.
        let full = String::from_utf8_lossy(full.as_bytes());
        assert!(
            full.starts_with("http://") && full.ends_with(abs.as_str()),
            "spin-full-url {full:?} for target {abs:?}"
        );
    }
    for (name, value) in &m.named {
        let header = format!("spin-path-match-{}", name.to_ascii_lowercase());
        let got: Vec<_> = headers.get_all(header.as_str()).iter().collect();
        let ok = match got.as_slice() {
            [] => {
                http::HeaderValue::from_str(value).is_err()
                    || header.parse::<http::HeaderName>().is_err()
            }
            [one] => {
                one.as_bytes() == value.as_bytes()
                    || m.named
                        .iter()
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                        .count()
                        > 1
            }
            _ => false,
        };
        assert!(ok, "{header}: host value {value:?}, request has {got:?}");
    }
}
