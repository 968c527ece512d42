//! HTTP/1.1 front end: Spin's routing and request headers, `/.well-known/spin/health`,
//! request logs; connection limits and graceful shutdown are http-front's.

use crate::runtime::{error_response, text_response, Runtime};
use anyhow::Result;
use http::Request;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use spin_manifest::allowed_hosts::service_chaining_target;
use spin_manifest::routes::{set_spin_headers, Router};
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
    /// Connection threads (http_front::Workers).
    pub threads: usize,
}

/// The first request header whose value is not UTF-8: the components read headers as strings.
fn non_utf8_header<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .iter()
        .find(|(_, v)| std::str::from_utf8(v.as_bytes()).is_err())
        .map(|(n, _)| n.to_string())
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
            match (self.router.route(&path), non_utf8_header(&req)) {
                (None, _) => text_response(404, "Not Found"),
                (Some(m), Some(name)) => {
                    // Spin 3.6.3 refuses these too (prepare_request_headers: 500, no body).
                    component = m.component.clone();
                    text_response(400, &format!("request header {name} is not valid UTF-8"))
                }
                (Some(m), None) => {
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
        let (limits, threads) = (self.limits, self.threads);
        let handler = move |req, client| self.clone().handle(req, client);
        let workers = http_front::Workers::start(threads, "conn")?;
        http_front::serve_on(listener, limits, handler, shutdown, grace, Some(&workers)).await?;
        // Joins the threads: every connection has ended (or outlived the grace period).
        drop(workers);
        Ok(())
    }
}
