//! Latency floors for tests/bench/run.sh, on 127.0.0.1 only.
//!
//! `hoop-bench-floor PORT`: one loopback HTTP/1.1 round trip to a server
//! that does no work. It reads the whole request body and answers a fixed
//! JSON-RPC result of the same shape as the demo server's echo.
//!
//! `hoop-bench-floor PORT --forward URL`: a proxy that does nothing but
//! relay: each request (method, headers, body) goes to URL over a pooled
//! keep-alive connection, and the answer comes back as it is. Two of them
//! in a row in front of a server are the floor of any design with two
//! process hops, such as `hoop connect` + `hoop-broker`, on this machine.
//! It runs on one thread, as both hoop processes do in the benchmark.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the body like a real server would; a broken body still gets the answer.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

struct Forward {
    client: Client<HttpConnector, Full<Bytes>>,
    to: Uri,
}

async fn forward(
    fwd: Arc<Forward>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let failed = |why: String| {
        let mut r = Response::new(Full::new(Bytes::from(why)));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(failed(e.to_string())),
    };
    parts.uri = fwd.to.clone();
    parts.headers.remove(hyper::header::HOST);
    let resp = match fwd
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(failed(e.to_string())),
    };
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(b) => Ok(Response::from_parts(parts, Full::new(b.to_bytes()))),
        Err(e) => Ok(failed(e.to_string())),
    }
}

fn main() -> std::io::Result<()> {
    let usage = || std::io::Error::other("usage: hoop-bench-floor PORT [--forward URL]");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or_else(usage)?;
    let forward_to = match args.get(1).map(String::as_str) {
        None => None,
        Some("--forward") => {
            let uri: Uri = args.get(2).and_then(|u| u.parse().ok()).ok_or_else(usage)?;
            let host = uri.host().unwrap_or_default();
            if host != "127.0.0.1" && host != "[::1]" && host != "localhost" {
                return Err(std::io::Error::other(
                    "--forward must point at 127.0.0.1 or [::1]",
                ));
            }
            Some(uri)
        }
        Some(_) => return Err(usage()),
    };
    let runtime = if forward_to.is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(port, forward_to))
}

async fn serve(port: u16, forward_to: Option<Uri>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let fwd = forward_to.map(|to| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new(Forward {
            client: Client::builder(TokioExecutor::new()).build(connector),
            to,
        })
    });
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let fwd = fwd.clone();
        tokio::spawn(async move {
            let mut conn = http1::Builder::new();
            conn.keep_alive(true);
            let io = TokioIo::new(tcp);
            let _ = match fwd {
                Some(f) => {
                    conn.serve_connection(io, service_fn(move |r| forward(f.clone(), r)))
                        .await
                }
                None => conn.serve_connection(io, service_fn(answer)).await,
            };
        });
    }
}
