//! The QUIC listener: authenticates each connection on its control stream,
//! then runs every further stream through the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use hoop_proto::{
    CloseCode, CloseStream, ControlError, ErrorCode, Frame, McpMessage, StreamKind, Welcome,
};

use super::framed::{FrameReader, FrameWriter};
use crate::identity::TokenVerifier;
use crate::pipeline::{Caller, Pipeline};

/// How long a new connection may take to present its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TunnelServer {
    pub pipeline: Arc<Pipeline>,
    pub verifier: Arc<dyn TokenVerifier>,
    pub max_frame_len: usize,
}

impl TunnelServer {
    /// Accepts connections until the endpoint is closed.
    pub async fn run(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let this = self.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => this.connection(conn).await,
                    Err(e) => tracing::debug!(%remote, "QUIC handshake failed: {e}"),
                }
            });
        }
    }

    async fn connection(self: Arc<Self>, conn: quinn::Connection) {
        let remote = conn.remote_address();
        let Some(caller) = self.authenticate(&conn, remote).await else {
            return;
        };
        tracing::info!(%remote, subject = %caller.identity.subject, "client connected");
        let caller = Arc::new(caller);
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let this = self.clone();
                    let caller = caller.clone();
                    tokio::spawn(async move { this.stream(&caller, send, recv).await });
                }
                Err(e) => {
                    tracing::info!(%remote, subject = %caller.identity.subject, "client disconnected: {e}");
                    return;
                }
            }
        }
    }

    /// Reads `Hello` on the first stream and answers `Welcome` or an error.
    async fn authenticate(&self, conn: &quinn::Connection, remote: SocketAddr) -> Option<Caller> {
        let (send, recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
            Ok(Ok(s)) => s,
            _ => {
                conn.close(1u32.into(), b"no control stream");
                return None;
            }
        };
        let mut reader = FrameReader::new(recv, 64 * 1024);
        let mut writer = FrameWriter::new(send);
        let refuse =
            |code: ErrorCode, message: String| Frame::ControlError(ControlError { code, message });
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
            Ok(Ok(Some(Frame::Hello(h)))) => h,
            Ok(Ok(Some(_))) => {
                let _ = writer
                    .send(&refuse(
                        ErrorCode::UNEXPECTED_FRAME,
                        "the first frame must be Hello".into(),
                    ))
                    .await;
                return close(conn, writer).await;
            }
            Ok(Err(e)) => {
                let _ = writer
                    .send(&refuse(ErrorCode::MALFORMED_FRAME, format!("{e}")))
                    .await;
                return close(conn, writer).await;
            }
            _ => return close(conn, writer).await,
        };
        let Some(version) = hoop_proto::negotiate(hello.version) else {
            let _ = writer
                .send(&refuse(
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!(
                        "protocol version {} is too old for this broker; upgrade hoop",
                        hello.version
                    ),
                ))
                .await;
            return close(conn, writer).await;
        };
        let verified = match self.verifier.verify(&hello.token) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%remote, reason = %e.reason, "authentication failed");
                let _ = writer
                    .send(&refuse(
                        ErrorCode::UNAUTHENTICATED,
                        format!("authentication failed: {}", e.hint),
                    ))
                    .await;
                return close(conn, writer).await;
            }
        };
        let welcome = Frame::Welcome(Welcome {
            version,
            identity: verified.identity.clone(),
            session_expires_at: verified.expires_at,
            broker_version: env!("CARGO_PKG_VERSION").into(),
        });
        if writer.send(&welcome).await.is_err() {
            return None;
        }
        // The control stream stays open for the life of the connection; when
        // the client ends it, the connection ends. When the token expires,
        // the connection ends too, with a reason the client can show.
        let c = conn.clone();
        let expires_at = verified.expires_at;
        tokio::spawn(async move {
            let left = expires_at.saturating_sub(crate::identity::now_unix());
            let expiry = tokio::time::sleep(Duration::from_secs(left));
            tokio::pin!(expiry);
            // Bounded: ends with the stream, an error, or the expiry.
            loop {
                tokio::select! {
                    f = reader.next() => match f {
                        Ok(Some(Frame::Reauth(_))) => {
                            tracing::debug!("re-authentication is not supported yet; ignoring");
                        }
                        Ok(Some(other)) => tracing::debug!(frame = other.kind(), "unexpected control frame"),
                        Ok(None) | Err(_) => break,
                    },
                    _ = &mut expiry => {
                        let _ = writer
                            .send(&Frame::ControlError(ControlError {
                                code: ErrorCode::SESSION_EXPIRED,
                                message: "your token expired: get a fresh one and reconnect".into(),
                            }))
                            .await;
                        writer.finish();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        c.close(2u32.into(), b"token expired");
                        return;
                    }
                }
            }
            c.close(0u32.into(), b"control stream closed");
        });
        Some(Caller {
            identity: verified.identity,
            expires_at: verified.expires_at,
            remote,
        })
    }

    /// One MCP stream: Open (+ Message for a POST) in, Head + Messages + Close out.
    async fn stream(&self, caller: &Caller, send: quinn::SendStream, recv: quinn::RecvStream) {
        let mut reader = FrameReader::new(recv, self.max_frame_len);
        let mut writer = FrameWriter::new(send);
        let open = match reader.next().await {
            Ok(Some(Frame::Open(o))) => o,
            Ok(Some(_)) => {
                return fail(
                    &mut writer,
                    CloseCode::MALFORMED,
                    "an MCP stream must start with Open",
                )
                .await
            }
            Ok(None) => return,
            Err(e) => return fail(&mut writer, CloseCode::MALFORMED, &e.to_string()).await,
        };
        let body = if open.kind == StreamKind::Post {
            match reader.next().await {
                Ok(Some(Frame::Message(m))) => Some(m.body),
                Ok(_) => {
                    return fail(
                        &mut writer,
                        CloseCode::MALFORMED,
                        "a POST stream must carry one Message after Open",
                    )
                    .await
                }
                Err(e) => return fail(&mut writer, CloseCode::MALFORMED, &e.to_string()).await,
            }
        } else {
            None
        };
        // The client keeps its send side open until it has the whole reply
        // and resets it when its own client goes away. From here on that
        // reset drops the exchange, which cancels the upstream work, also
        // while the broker still waits for the upstream's first answer.
        let mut recv = reader.into_inner();
        let gone = async move {
            loop {
                match recv.read_chunk(64 * 1024, true).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => std::future::pending::<()>().await,
                    Err(_) => return,
                }
            }
        };
        tokio::pin!(gone);
        let reply = tokio::select! {
            r = self.pipeline.handle(caller, open, body) => r,
            _ = &mut gone => return,
        };
        writer.queue(&Frame::Head(reply.head));
        let mut messages = reply.messages;
        // Frames that are ready together go out in one write: a JSON answer
        // (head, message, close) leaves as one; a stream is flushed whenever
        // the next message is not there yet, so progress is never held back.
        let close = loop {
            let next = match messages.next().now_or_never() {
                Some(m) => m,
                None => {
                    if writer.flush().await.is_err() {
                        return;
                    }
                    tokio::select! {
                        m = messages.next() => m,
                        _ = &mut gone => return,
                    }
                }
            };
            match next {
                Some(Ok(body)) => {
                    if writer
                        .queue_message(&McpMessage {
                            event_id: None,
                            body,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Err(e)) => {
                    break CloseStream {
                        code: CloseCode::UPSTREAM_ERROR,
                        message: e.message,
                    }
                }
                None => {
                    break CloseStream {
                        code: CloseCode::DONE,
                        message: String::new(),
                    }
                }
            }
        };
        writer.queue(&Frame::Close(close));
        let _ = writer.flush().await;
        writer.finish();
    }
}

async fn fail(writer: &mut FrameWriter, code: CloseCode, message: &str) {
    let _ = writer
        .send(&Frame::Close(CloseStream {
            code,
            message: message.to_owned(),
        }))
        .await;
    writer.finish();
}

async fn close(conn: &quinn::Connection, mut writer: FrameWriter) -> Option<Caller> {
    writer.finish();
    // Give the error frame a moment to leave before the connection closes.
    let _ = tokio::time::timeout(Duration::from_millis(500), writer.into_inner().stopped()).await;
    conn.close(1u32.into(), b"refused");
    None
}
