//! `hoop audit`: the `Audit` stream kind. A member of the log's reader
//! groups asks for a search, a replay, an export, a verification or the
//! key; the read is itself recorded (and refused if it cannot be), then
//! the answer streams back as JSON lines (`crate::audit::reader`).

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use hoop_proto::{ResponseBody, ResponseHead};

use super::{Pipeline, Reply};
use crate::audit::reader::{self, AuditRequest};
use crate::audit::Exchange;
use crate::identity::Caller;
use crate::mcp::error::McpError;

/// Lines buffered between the reading thread and the tunnel.
const LINES_IN_FLIGHT: usize = 64;

impl Pipeline {
    pub(super) async fn audit_view(
        &self,
        caller: &Arc<Caller>,
        exchange: &Exchange,
        body: Option<Bytes>,
    ) -> Reply {
        if let Err(e) = self.audit.may_read(&caller.identity) {
            self.audit
                .refused(caller, "", exchange, None, None, body.as_deref(), &e)
                .await;
            return Reply::error(&e, None);
        }
        let req = match body.as_deref().map(serde_json::from_slice::<AuditRequest>) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let e = McpError::invalid_params(format!("not an audit request: {e}"));
                self.audit
                    .refused(caller, "", exchange, None, None, body.as_deref(), &e)
                    .await;
                return Reply::error(&e, None);
            }
            None => {
                let e = McpError::invalid_request("an audit request needs a message");
                self.audit
                    .refused(caller, "", exchange, None, None, None, &e)
                    .await;
                return Reply::error(&e, None);
            }
        };
        if let Err(e) = self.audit.read_recorded(caller, exchange, &req).await {
            return Reply::error(&e, None);
        }
        if matches!(req, AuditRequest::Export { .. }) {
            // A checkpoint over everything recorded so far, the read
            // included: the export then ends with the latest event.
            if let Err(e) = self.audit.log().checkpoint_now().await {
                return Reply::error(&crate::audit::unavailable(&e.to_string()), None);
            }
        } else if let Err(e) = self.audit.log().flush().await {
            // The reader opens the file: what the journal holds goes in
            // first, so a search finds the call made a moment ago.
            return Reply::error(&crate::audit::unavailable(&e.to_string()), None);
        }
        let location = self.audit.location().clone();
        let key = self.audit.log().verifier_key().to_owned();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, McpError>>(LINES_IN_FLIGHT);
        tokio::task::spawn_blocking(move || {
            let mut out = LineSender {
                tx: tx.clone(),
                line: Vec::new(),
            };
            let result = location
                .open_read_only()
                .map_err(anyhow::Error::from)
                .and_then(|store| reader::run(store.as_ref(), &req, None, &[key], &mut out))
                .and_then(|()| out.flush().map_err(anyhow::Error::from));
            if let Err(e) = result {
                let line = serde_json::json!({"error": format!("{e:#}")}).to_string();
                let _ = tx.blocking_send(Ok(Bytes::from(line)));
            }
        });
        Reply {
            head: ResponseHead {
                status: 200,
                body: ResponseBody::EventStream,
                session_id: None,
            },
            messages: Box::pin(tokio_stream_of(rx)),
        }
    }
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, McpError>>,
) -> impl futures::Stream<Item = Result<Bytes, McpError>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Sends each complete line written to it as one message.
struct LineSender {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, McpError>>,
    line: Vec<u8>,
}

impl LineSender {
    fn send(&mut self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.line);
        self.tx
            .blocking_send(Ok(Bytes::from(line)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader left"))
    }
}

impl Write for LineSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        // Bounded by the buffer's length.
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..i]);
            self.send()?;
            rest = &rest[i + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        self.send()
    }
}
