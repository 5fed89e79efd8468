//! The local MCP endpoint: streamable HTTP at `http://127.0.0.1:PORT/mcp`,
//! relaying each HTTP exchange over its own tunnel stream.
//!
//! Only this machine may use it: it binds loopback, checks `Host` and
//! `Origin` (a web page cannot reach it through DNS rebinding), and by
//! default wants a per-run bearer secret that only the printed client
//! config knows.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use hoop_proto::{McpHeaders, OpenStream, ResponseBody, StreamKind};

use super::{error_response, request_id, TUNNEL_ERROR};
use crate::tunnel::{Exchange, TunnelClient, TunnelError};

/// The path MCP clients use.
pub const MCP_PATH: &str = "/mcp";
const MAX_BODY: usize = hoop_proto::limits::DEFAULT_MAX_FRAME_LEN;
/// An SSE comment this often on a quiet event stream, so the client and
/// anything between see the answer is alive.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

pub struct LocalHttp {
    pub tunnel: Arc<TunnelClient>,
    pub target: String,
    /// Per-run bearer secret; `None` with `--no-local-auth`.
    pub secret: Option<String>,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<LocalHttp>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // No body-limit layer: `handle` reads the body itself, with MAX_BODY.
    let app = Router::new().route(MCP_PATH, any(handle)).with_state(state);
    // Small SSE events must leave at once: without TCP_NODELAY, Nagle and
    // the client's delayed ACK add ~40 ms to streamed answers.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Binds the local listener; loopback only.
pub async fn bind(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e} (pick another port with --port)")
    })
}

async fn handle(State(s): State<Arc<LocalHttp>>, request: Request) -> Response {
    // The body is read only once the request has passed the checks, so an
    // unwanted caller cannot make this process buffer up to MAX_BODY bytes.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if let Err(why) = check_local(headers) {
        return plain(StatusCode::FORBIDDEN, why);
    }
    if let Some(secret) = &s.secret {
        if !authorized(headers, secret) {
            return plain(
                StatusCode::UNAUTHORIZED,
                "missing or wrong local bearer secret: use the config hoop connect printed, or restart it with --no-local-auth",
            );
        }
    }
    let kind = match parts.method {
        Method::POST => StreamKind::Post,
        Method::GET => StreamKind::Listen,
        Method::DELETE => StreamKind::EndSession,
        _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE"),
    };
    let body = if kind == StreamKind::Post {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => Some(b),
            Err(_) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is over {MAX_BODY} bytes or could not be read"),
                )
            }
        }
    } else {
        None
    };
    let open = OpenStream {
        target: s.target.clone(),
        kind,
        headers: mcp_headers(headers),
    };
    // A cheap handle on the request (Bytes is reference-counted), to find
    // its JSON-RPC id only if the CLI has to answer it itself.
    let request = body.clone();
    match s.tunnel.exchange(open, body).await {
        Ok(ex) => respond(ex, request).await,
        Err(e) => tunnel_failure(&e, request.as_ref()),
    }
}

async fn respond(mut ex: Exchange, request: Option<Bytes>) -> Response {
    let status = StatusCode::from_u16(ex.head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = Response::builder().status(status);
    if let Some(sid) = ex
        .head
        .session_id
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        builder = builder.header("mcp-session-id", sid);
    }
    let result = match ex.head.body {
        ResponseBody::Empty => {
            // Drain the Close so the exchange ends cleanly.
            let _ = ex.next_message().await;
            builder.body(Body::empty())
        }
        ResponseBody::Json => match ex.next_message().await {
            Ok(Some(m)) => {
                let _ = ex.next_message().await;
                builder
                    .header("content-type", "application/json")
                    .body(Body::from(m.body))
            }
            Ok(None) => builder.body(Body::empty()),
            Err(e) => return tunnel_failure(&e, request.as_ref()),
        },
        ResponseBody::EventStream => {
            // Messages are read by a task of their own, so the response can
            // say it is alive (an SSE comment every KEEP_ALIVE) while the
            // broker holds a call for approval or a tool runs long, without
            // cutting a message read in half. The task ends with the
            // exchange, or at once when the client goes (the channel
            // closes): that drops the exchange, which resets its QUIC
            // stream and so cancels the work upstream.
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            tokio::spawn(async move {
                // Bounded by the exchange, which ends with a Close.
                loop {
                    tokio::select! {
                        () = tx.closed() => return,
                        m = ex.next_message() => {
                            let event = match m {
                                Ok(Some(m)) => sse_event(m.event_id.as_deref(), &m.body),
                                Ok(None) => return,
                                // Tell the client why its request ends, with its id.
                                Err(e) => {
                                    let id = request.as_deref().and_then(request_id);
                                    let body = error_response(id, TUNNEL_ERROR, &e.to_string());
                                    let _ = tx.send(sse_event(None, &body)).await;
                                    return;
                                }
                            };
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                    Ok(Some(event)) => Some((Ok::<_, std::io::Error>(event), rx)),
                    Ok(None) => None,
                    Err(_) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), rx)),
                }
            });
            builder
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
        }
    };
    result.unwrap_or_else(|_| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not build the response",
        )
    })
}

/// One SSE event; every line of the JSON gets its own `data:` prefix.
fn sse_event(id: Option<&str>, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 32);
    out.extend_from_slice(b"event: message\n");
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in json.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// The CLI's own answer when the tunnel fails; `request` is the POSTed
/// message, whose id the answer carries.
fn tunnel_failure(e: &TunnelError, request: Option<&Bytes>) -> Response {
    tracing::warn!("{e}");
    let status = match e {
        // Not 401: MCP clients take a 401 from a server as "start OAuth",
        // and the local endpoint has no OAuth to offer.
        TunnelError::Refused { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_GATEWAY,
    };
    let id = request.and_then(|b| request_id(b));
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(error_response(
            id,
            TUNNEL_ERROR,
            &format!("hoop: {e}"),
        )))
        .unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "tunnel failure"))
}

fn plain(status: StatusCode, msg: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(format!("hoop: {msg}\n")))
        .unwrap_or_default()
}

/// Refuses requests that did not come from this machine's own pages and
/// programs: a non-local `Host` (DNS rebinding) or `Origin`.
fn check_local(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(host) = headers.get("host") {
        let host = host.to_str().unwrap_or("");
        if !is_local_authority(host) {
            return Err("requests must be addressed to 127.0.0.1, localhost or [::1]");
        }
    }
    if let Some(origin) = headers.get("origin") {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !is_local_authority(authority) {
            return Err("cross-origin requests from non-local pages are refused");
        }
    }
    Ok(())
}

fn is_local_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "localhost" | "::1"
    )
}

fn authorized(headers: &HeaderMap, secret: &str) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(presented) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    subtle::ConstantTimeEq::ct_eq(presented.trim().as_bytes(), secret.as_bytes()).into()
}

/// The MCP headers of the request, as the client sent them; the broker
/// checks each against the body.
fn mcp_headers(h: &HeaderMap) -> McpHeaders {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let params = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("mcp-param-")?;
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    McpHeaders {
        protocol_version: get("mcp-protocol-version"),
        session_id: get("mcp-session-id"),
        method: get("mcp-method"),
        name: get("mcp-name"),
        params,
        last_event_id: get("last-event-id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_authorities_pass() {
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:9"] {
            assert!(is_local_authority(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.evil.example", "[::2]:1", ""] {
            assert!(!is_local_authority(bad), "{bad}");
        }
    }

    #[test]
    fn sse_events_split_multiline_json() {
        let e = sse_event(Some("7"), b"{\n\"a\":1\n}");
        assert_eq!(
            &e[..],
            b"event: message\nid: 7\ndata: {\ndata: \"a\":1\ndata: }\n\n"
        );
    }
}
