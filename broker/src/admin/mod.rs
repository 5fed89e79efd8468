//! The admin HTTP listener: what operators and orchestrators ask the broker
//! about itself, never MCP traffic. Loopback by default.
//!
//! - `GET /healthz`: `200 {"status":"ok",…}` while every part the broker
//!   needs to enforce and record works, `503 {"status":"degraded",…}` with
//!   the reason when one does not (the audit log cannot be written, so calls
//!   are being refused). Liveness: the process answers.
//! - `GET /readyz`: `200` while the broker takes new connections and can
//!   record them, `503` (with the reason) while it cannot, or drains before
//!   it stops: what a load balancer routes by.
//! - `GET /metrics`: Prometheus / OpenMetrics text (`crate::metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Reports the broker's health: whether it is fully working, and a JSON
/// description of each part.
pub trait HealthSource: Send + Sync + 'static {
    fn health(&self) -> (bool, Value);

    /// Whether new connections should come here; by default, healthy.
    fn ready(&self) -> (bool, Value) {
        self.health()
    }

    /// The `/metrics` text.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// Listens on `addr` and serves until the task is dropped; returns the
/// address actually bound (port 0 picks one).
pub async fn start(
    addr: SocketAddr,
    source: Arc<dyn HealthSource>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for admin HTTP on {addr}: {e} (set [admin] listen)")
    })?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Bounded by the listener: it ends when the task is aborted.
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, most likely: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let source = source.clone();
                    async move { Ok::<_, Infallible>(answer(&req, source.as_ref())) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

fn answer(req: &Request<Incoming>, source: &dyn HealthSource) -> Response<Full<Bytes>> {
    if (req.method().as_str(), req.uri().path()) == ("GET", "/metrics") {
        let mut r = Response::new(Full::new(Bytes::from(source.metrics())));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return r;
    }
    let (status, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") => {
            let (ok, parts) = source.health();
            let mut body = json!({"status": if ok { "ok" } else { "degraded" }});
            if let (Some(b), Some(p)) = (body.as_object_mut(), parts.as_object()) {
                b.extend(p.clone());
            }
            (if ok { 200 } else { 503 }, body)
        }
        ("GET", "/readyz") => {
            let (ok, parts) = source.ready();
            let mut body = json!({"status": if ok { "ready" } else { "not ready" }});
            if let (Some(b), Some(p)) = (body.as_object_mut(), parts.as_object()) {
                b.extend(p.clone());
            }
            (if ok { 200 } else { 503 }, body)
        }
        ("GET", _) => (
            404,
            json!({"error": "not found; this listener serves GET /healthz, /readyz and /metrics"}),
        ),
        _ => (405, json!({"error": "only GET"})),
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
