//! HTTP/1.1 front end: Spin's routing and request headers, `/.well-known/spin/health`,
//! request logs; connection limits and graceful shutdown are http-front's.

use crate::allowed_hosts::service_chaining_target;
use crate::routes::{RouteMatch, Router};
use crate::runtime::{error_response, text_response, Runtime};
use anyhow::Result;
use http::{HeaderValue, Request};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub struct Server {
    pub rt: Arc<Runtime>,
    pub router: Router,
    pub quiet: bool,
    pub app_name: String,
    pub limits: http_front::Limits,
}

/// Add Spin's `spin-*` request headers (overwriting any the client sent) and make the URI
/// absolute, as Spin's HTTP trigger does.
pub fn set_spin_headers<B>(req: &mut Request<B>, m: &RouteMatch, client: SocketAddr, scheme: &str) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let abs_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let full_url = format!("{scheme}://{host}{abs_path}");
    let mut pairs: Vec<(String, String)> = vec![
        ("spin-path-info".into(), m.path_info.clone()),
        ("spin-full-url".into(), full_url.clone()),
        ("spin-matched-route".into(), m.based_route.clone()),
        ("spin-base-path".into(), "/".into()),
        ("spin-raw-component-route".into(), m.raw_route.clone()),
        (
            "spin-component-route".into(),
            m.raw_route_or_prefix().to_string(),
        ),
        ("spin-client-addr".into(), client.to_string()),
    ];
    for (name, value) in &m.named {
        pairs.push((
            format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value.clone(),
        ));
    }
    let headers = req.headers_mut();
    for (k, v) in pairs {
        if let (Ok(name), Ok(value)) = (k.parse::<http::HeaderName>(), HeaderValue::from_str(&v)) {
            headers.insert(name, value);
        }
    }
    if req.uri().authority().is_none() {
        if let Ok(uri) = full_url.parse::<http::Uri>() {
            *req.uri_mut() = uri;
        }
    }
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> http::Response<HyperOutgoingBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let served = self.rt.metrics.common.request(method.as_str(), &path);
        let mut component = String::new();
        let resp = if let Some(wk) = path.strip_prefix("/.well-known/spin/") {
            match wk {
                "health" => text_response(200, "OK").map(|b| b),
                "info" => text_response(
                    200,
                    &format!(
                        "{{\"name\":{:?},\"runner\":\"visits-runner {}\"}}",
                        self.app_name,
                        env!("CARGO_PKG_VERSION")
                    ),
                ),
                _ => text_response(404, "Not Found"),
            }
        } else {
            // Requests from outside must not pose as service-chaining requests.
            if let Some(h) = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
            {
                if service_chaining_target(h).is_some() {
                    req.headers_mut().remove(http::header::HOST);
                }
            }
            match self.router.route(&path) {
                None => text_response(404, "Not Found"),
                Some(m) => {
                    component = m.component.clone();
                    set_spin_headers(&mut req, &m, client, "http");
                    // The body is read before admission, under its own deadline: a client
                    // slow to send it holds a connection, never an execution slot.
                    let declared = http_front::content_length(&req);
                    let (parts, body) = req.into_parts();
                    match http_front::read_body(body, declared, &self.limits).await {
                        Err(e) => {
                            eprintln!("[{}] {method} {path}: {e}", m.component);
                            text_response(e.status(), &e.to_string())
                        }
                        Ok(bytes) => {
                            let body = http_body_util::Full::new(bytes)
                                .map_err(|never| -> hyper::Error { match never {} });
                            let req = Request::from_parts(parts, body);
                            let admitted = match self.rt.admit().await {
                                Ok(permit) => {
                                    self.rt.execute(&m.component, req, Some(permit)).await
                                }
                                Err(e) => Err(e),
                            };
                            match admitted {
                                Ok(r) => r,
                                Err(e) => {
                                    eprintln!("[{}] {method} {path}: {e}", m.component);
                                    error_response(&e)
                                }
                            }
                        }
                    }
                }
            }
        };
        if !self.quiet {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let via = if component.is_empty() {
                String::new()
            } else {
                format!(" [{component}]")
            };
            eprintln!("{method} {path} {} {ms:.2}ms{via}", resp.status().as_u16());
        }
        served.done(resp.status().as_u16());
        resp
    }

    /// Accept connections until SIGINT/SIGTERM, then finish in-flight requests and return.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, grace: Duration) -> Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => eprintln!("received SIGTERM, shutting down"),
                _ = int.recv() => eprintln!("received SIGINT, shutting down"),
            }
        };
        let limits = self.limits;
        let handler = move |req, client| self.clone().handle(req, client);
        http_front::serve(listener, limits, handler, shutdown, grace).await?;
        Ok(())
    }
}
