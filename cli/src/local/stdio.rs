//! `hoop connect --stdio`: MCP over this process's stdin/stdout, for
//! clients that launch their servers as commands.
//!
//! Each line from stdin becomes one tunnel exchange (so slow calls do not
//! hold up others); every message that comes back is written to stdout as
//! one line. After a handshake-era `initialize`, a listen stream carries
//! the server's own requests and notifications.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use hoop_proto::{McpHeaders, OpenStream, StreamKind};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{error_response, request_id, TUNNEL_ERROR};
use crate::tunnel::TunnelClient;

#[derive(Default)]
struct SessionState {
    session_id: Option<String>,
    protocol_version: Option<String>,
    listening: bool,
}

/// Runs until stdin ends; then ends the MCP session, if one was opened.
pub async fn serve(tunnel: Arc<TunnelClient>, target: String) -> anyhow::Result<()> {
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = out_rx.recv().await {
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let state = Arc::new(Mutex::new(SessionState::default()));
    let mut lines = FramedRead::new(
        tokio::io::stdin(),
        LinesCodec::new_with_max_length(hoop_proto::limits::DEFAULT_MAX_FRAME_LEN),
    );
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = out_tx
                    .send(error_response(
                        None,
                        -32700,
                        &format!("hoop: unreadable input line: {e}"),
                    ))
                    .await;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let tunnel = tunnel.clone();
        let target = target.clone();
        let state = state.clone();
        let out = out_tx.clone();
        tokio::spawn(async move { relay(tunnel, target, state, out, line.into_bytes()).await });
    }
    let sid = lock(&state).session_id.clone();
    if let Some(sid) = sid {
        let open = OpenStream {
            target,
            kind: StreamKind::EndSession,
            headers: McpHeaders {
                session_id: Some(sid),
                ..Default::default()
            },
        };
        if let Ok(mut ex) = tunnel.exchange(open, None).await {
            let _ = ex.next_message().await;
        }
    }
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

fn lock(s: &Mutex<SessionState>) -> std::sync::MutexGuard<'_, SessionState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn relay(
    tunnel: Arc<TunnelClient>,
    target: String,
    state: Arc<Mutex<SessionState>>,
    out: mpsc::Sender<Vec<u8>>,
    body: Vec<u8>,
) {
    let id = request_id(&body);
    let is_initialize = is_method(&body, "initialize");
    let is_initialized = is_method(&body, "notifications/initialized");
    let headers = {
        let s = lock(&state);
        McpHeaders {
            session_id: s.session_id.clone(),
            protocol_version: s.protocol_version.clone(),
            ..Default::default()
        }
    };
    let open = OpenStream {
        target: target.clone(),
        kind: StreamKind::Post,
        headers,
    };
    let mut ex = match tunnel.exchange(open, Some(body.into())).await {
        Ok(ex) => ex,
        Err(e) => {
            if id.is_some() {
                let _ = out
                    .send(error_response(id, TUNNEL_ERROR, &format!("hoop: {e}")))
                    .await;
            }
            return;
        }
    };
    if let Some(sid) = &ex.head.session_id {
        lock(&state).session_id = Some(sid.clone());
    }
    loop {
        match ex.next_message().await {
            Ok(Some(m)) => {
                if is_initialize {
                    if let Some(v) = negotiated_version(&m.body) {
                        lock(&state).protocol_version = Some(v);
                    }
                }
                if out.send(m.body.to_vec()).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                if id.is_some() {
                    let _ = out
                        .send(error_response(id, TUNNEL_ERROR, &format!("hoop: {e}")))
                        .await;
                }
                return;
            }
        }
    }
    // Once the handshake is done, open the stream for server-initiated
    // messages (sampling, elicitation, list_changed, …).
    if is_initialized {
        let start = {
            let mut s = lock(&state);
            let go = s.session_id.is_some() && !s.listening;
            s.listening |= go;
            go
        };
        if start {
            tokio::spawn(listen(tunnel, target, state, out));
        }
    }
}

async fn listen(
    tunnel: Arc<TunnelClient>,
    target: String,
    state: Arc<Mutex<SessionState>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let headers = {
        let s = lock(&state);
        McpHeaders {
            session_id: s.session_id.clone(),
            protocol_version: s.protocol_version.clone(),
            ..Default::default()
        }
    };
    let open = OpenStream {
        target,
        kind: StreamKind::Listen,
        headers,
    };
    let result = tunnel.exchange(open, None).await;
    if let Ok(mut ex) = result {
        if ex.head.status < 300 {
            while let Ok(Some(m)) = ex.next_message().await {
                if out.send(m.body.to_vec()).await.is_err() {
                    break;
                }
            }
        }
    }
    lock(&state).listening = false;
}

fn is_method(body: &[u8], method: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct M {
        method: Option<String>,
    }
    serde_json::from_slice::<M>(body)
        .ok()
        .and_then(|m| m.method)
        .as_deref()
        == Some(method)
}

fn negotiated_version(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/result/protocolVersion")?
        .as_str()
        .map(str::to_owned)
}
