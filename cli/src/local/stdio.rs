//! `hoop connect --stdio`: MCP over this process's stdin/stdout, for
//! clients that launch their servers as commands.
//!
//! Each line from stdin becomes one tunnel exchange. Requests run
//! concurrently (so slow calls do not hold up others); notifications and
//! responses are relayed in order. Every message that comes back is written
//! to stdout as one line. After the handshake's `notifications/initialized`,
//! a listen stream carries the server's own requests and notifications.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use hoop_proto::{McpHeaders, OpenStream, StreamKind};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{error_response, TUNNEL_ERROR};
use crate::tunnel::{TunnelClient, TunnelError};

#[derive(Default)]
struct SessionState {
    session_id: Option<String>,
    protocol_version: Option<String>,
    /// The listen task, once started.
    listen: Option<AbortHandle>,
}

impl SessionState {
    fn headers(&self) -> McpHeaders {
        McpHeaders {
            session_id: self.session_id.clone(),
            protocol_version: self.protocol_version.clone(),
            ..Default::default()
        }
    }
}

/// What the CLI needs to know of one input line, from one lenient parse
/// (the broker does the real one).
#[derive(Debug, Default, PartialEq)]
struct Envelope {
    id: Option<Value>,
    method: Option<String>,
    /// Carries a `result` or an `error`: the client answering the server.
    is_response: bool,
}

impl Envelope {
    fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            id: Option<Value>,
            #[serde(default)]
            method: Option<String>,
            #[serde(default)]
            result: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            error: Option<serde::de::IgnoredAny>,
        }
        match serde_json::from_slice::<Raw>(body) {
            Ok(r) => Self {
                is_response: r.method.is_none() && (r.result.is_some() || r.error.is_some()),
                id: r.id,
                method: r.method,
            },
            Err(_) => Self::default(),
        }
    }

    /// A request (method and id): it will get a response of its own.
    fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// The id the CLI answers with when the tunnel fails: requests only.
    fn request_id(&self) -> Option<Value> {
        self.method.as_ref().and(self.id.clone())
    }

    fn is_method(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// Runs until stdin ends; then ends the MCP session, if one was opened.
pub async fn serve(tunnel: Arc<TunnelClient>, target: String) -> anyhow::Result<()> {
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            let written = async {
                stdout.write_all(&line).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await
            };
            if written.await.is_err() {
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
                    .send(Bytes::from(error_response(
                        None,
                        -32700,
                        &format!("hoop: unreadable input line: {e}"),
                    )))
                    .await;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let body = Bytes::from(line.into_bytes());
        let envelope = Envelope::parse(&body);
        let concurrent = envelope.is_request();
        let relay = relay(
            tunnel.clone(),
            target.clone(),
            state.clone(),
            out_tx.clone(),
            envelope,
            body,
        );
        // Requests run concurrently. Everything else (notifications,
        // responses to the server, unparseable lines) is relayed to its end
        // before the next line is read: `notifications/initialized` must
        // reach the server before the requests that follow it, and a
        // client's message must not be overtaken by its later ones.
        if concurrent {
            tokio::spawn(relay);
        } else {
            relay.await;
        }
    }
    // The listen task holds an output sender, and the upstream may never
    // end its GET stream: stop it first, or the writer below would wait
    // for it forever.
    let listen = lock(&state).listen.take();
    if let Some(listen) = listen {
        listen.abort();
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
    out: mpsc::Sender<Bytes>,
    envelope: Envelope,
    body: Bytes,
) {
    let is_initialize = envelope.is_method("initialize");
    let open = OpenStream {
        target: target.clone(),
        kind: StreamKind::Post,
        headers: lock(&state).headers(),
    };
    let mut ex = match tunnel.exchange(open, Some(body)).await {
        Ok(ex) => ex,
        Err(e) => return report_failure(&out, &envelope, e).await,
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
                if out.send(m.body).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => return report_failure(&out, &envelope, e).await,
        }
    }
    // Once the handshake is done, open the stream for server-initiated
    // messages (sampling, elicitation, list_changed, …).
    if envelope.is_method("notifications/initialized") {
        let mut s = lock(&state);
        if s.session_id.is_some() && s.listen.is_none() {
            let task = tokio::spawn(listen(tunnel, target, s.headers(), out));
            // Stored under the same lock, so EOF always finds it to abort.
            s.listen = Some(task.abort_handle());
        }
    }
}

/// Answers a failed request with a JSON-RPC error; anything else has no
/// one to answer, so the failure is only logged.
async fn report_failure(out: &mpsc::Sender<Bytes>, envelope: &Envelope, e: TunnelError) {
    match envelope.request_id() {
        Some(id) => {
            let body = error_response(Some(id), TUNNEL_ERROR, &format!("hoop: {e}"));
            let _ = out.send(Bytes::from(body)).await;
        }
        None => {
            let what = match &envelope.method {
                Some(m) => m.as_str(),
                None if envelope.is_response => "a response",
                None => "a message",
            };
            tracing::warn!("could not relay {what}: {e}");
        }
    }
}

async fn listen(
    tunnel: Arc<TunnelClient>,
    target: String,
    headers: McpHeaders,
    out: mpsc::Sender<Bytes>,
) {
    let open = OpenStream {
        target,
        kind: StreamKind::Listen,
        headers,
    };
    let result = tunnel.exchange(open, None).await;
    if let Ok(mut ex) = result {
        if ex.head.status < 300 {
            while let Ok(Some(m)) = ex.next_message().await {
                if out.send(m.body).await.is_err() {
                    break;
                }
            }
        }
    }
}

fn negotiated_version(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/result/protocolVersion")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Envelope {
        Envelope::parse(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn envelopes_tell_requests_from_the_rest() {
        let req = parse(json!({"jsonrpc":"2.0","id":7,"method":"tools/list"}));
        assert!(req.is_request());
        assert_eq!(req.request_id(), Some(json!(7)));

        let note = parse(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert!(!note.is_request() && !note.is_response);
        assert!(note.is_method("notifications/initialized"));
        assert_eq!(note.request_id(), None);

        let cancel = parse(
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}),
        );
        assert!(!cancel.is_request());

        let answer = parse(json!({"jsonrpc":"2.0","id":"s1","result":{}}));
        assert!(answer.is_response && !answer.is_request());
        assert_eq!(answer.request_id(), None);

        let error = parse(json!({"jsonrpc":"2.0","id":"s2","error":{"code":1,"message":"x"}}));
        assert!(error.is_response && !error.is_request());

        let junk = Envelope::parse(b"{not json");
        assert_eq!(junk, Envelope::default());
        assert!(!junk.is_request());
    }
}
