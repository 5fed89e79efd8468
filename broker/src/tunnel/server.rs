//! The QUIC listener: authenticates each connection on its control stream,
//! then runs every further stream through the pipeline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use hoop_proto::{
    frame_type, CloseCode, CloseStream, ControlError, DecodeError, ErrorCode, Frame, McpMessage,
    StreamKind, Welcome,
};

use super::framed::{FrameError, FrameReader, FrameWriter};
use crate::audit::event::EventKind;
use crate::identity::revocation::RevocationList;
use crate::identity::Caller;
use crate::identity::{TokenVerifier, VerifiedToken};
use crate::pipeline::Pipeline;

/// How long a new connection may take to present its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Control frames carry tokens, not MCP messages: a small limit keeps
/// unauthenticated peers from making the broker buffer much.
const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// Exchanges one MCP stream may carry under frame version 2. Only a bound
/// on the loop: the CLI retires a stream long before (`MAX_STREAM_USES`).
const MAX_EXCHANGES_PER_STREAM: u32 = 1 << 20;

/// How an exchange left its stream.
enum AfterExchange {
    /// Clean after the `Close`: the next `Open` may follow (version 2).
    Reusable,
    /// Ended: the client finished or reset it, or it broke the protocol.
    Ended,
}

fn refuse(code: ErrorCode, message: String) -> Frame {
    Frame::ControlError(ControlError { code, message })
}

/// Time left until a Unix-seconds instant (zero when past).
fn until(unix: u64) -> Duration {
    Duration::from_secs(unix.saturating_sub(crate::identity::now_unix()))
}

pub struct TunnelServer {
    pub pipeline: Arc<Pipeline>,
    pub verifier: Arc<dyn TokenVerifier>,
    pub max_frame_len: usize,
    /// Authenticated connections, so a revocation can end them.
    pub live: LiveConnections,
    /// Exchanges between their Open and their Close, for draining (listen
    /// streams, which last as long as their client, are not counted).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Set when the broker stops: no new connections, `/readyz` says so.
    pub draining: std::sync::atomic::AtomicBool,
}

/// Counts an exchange as in flight for as long as it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The authenticated connections of this broker, by connection id.
#[derive(Default)]
pub struct LiveConnections {
    inner: std::sync::Mutex<HashMap<usize, (Arc<Caller>, quinn::Connection)>>,
}

impl LiveConnections {
    fn add(&self, caller: Arc<Caller>, conn: quinn::Connection) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(conn.stable_id(), (caller, conn));
        }
    }

    fn remove(&self, conn: &quinn::Connection) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(&conn.stable_id());
        }
    }

    /// Ends every connection whose caller is now revoked.
    /// Ends the connections of revoked identities; how many it ended.
    pub fn enforce(&self, revocations: &RevocationList) -> usize {
        let Ok(m) = self.inner.lock() else { return 0 };
        let mut ended = 0;
        for (caller, conn) in m.values() {
            let who = &caller.identity;
            if let Some(r) = revocations.find(&who.subject, &who.issuer) {
                tracing::warn!(subject = %who.subject, issuer = %who.issuer, revocation = r.id, "access revoked: closing the connection");
                let reason = format!("access revoked: {}", r.reason);
                conn.close(u32::from(ErrorCode::REVOKED.0).into(), reason.as_bytes());
                ended += 1;
            }
        }
        ended
    }

    /// Ends every connection with `code` and `reason`.
    pub fn close_all(&self, code: ErrorCode, reason: &str) {
        if let Ok(m) = self.inner.lock() {
            for (_, conn) in m.values() {
                conn.close(u32::from(code.0).into(), reason.as_bytes());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends a connection because its caller was revoked (QUIC close code 6).
fn close_revoked(conn: &quinn::Connection, reason: &str) {
    let reason = format!("access revoked: {reason}");
    conn.close(u32::from(ErrorCode::REVOKED.0).into(), reason.as_bytes());
}

impl TunnelServer {
    /// Stops the broker gently: refuses new connections, lets the
    /// exchanges in flight finish (for `grace` at most), then ends every
    /// connection with [`ErrorCode::DRAINING`], which tells a client to
    /// reconnect at once (to another replica).
    pub async fn drain(&self, grace: Duration) {
        use std::sync::atomic::Ordering;
        self.draining.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        // Bounded by the deadline.
        while self.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.in_flight.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                left,
                "drain: exchanges still in flight at the deadline are cut"
            );
        }
        self.live.close_all(
            ErrorCode::DRAINING,
            "the broker is stopping: reconnect (to another replica)",
        );
    }

    /// Accepts connections until the endpoint is closed.
    pub async fn run(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            // Draining: turned away at once (CONNECTION_REFUSED), so the
            // client tries elsewhere rather than waiting out a timeout.
            if self.draining.load(std::sync::atomic::Ordering::Acquire) {
                incoming.refuse();
                continue;
            }
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
        let Some((caller, version)) = self.clone().authenticate(&conn, remote).await else {
            return;
        };
        tracing::info!(%remote, subject = %caller.identity.subject, "client connected");
        let audit = self.pipeline.audit().clone();
        audit
            .connection(
                EventKind::ConnectionOpen,
                &caller,
                serde_json::json!({"frame_version": version}),
            )
            .await;
        self.live.add(caller.clone(), conn.clone());
        // A revocation that landed between the check in `admit` and the line
        // above would otherwise miss this connection.
        let who = &caller.identity;
        if let Some(r) = self.pipeline.revocations().find(&who.subject, &who.issuer) {
            close_revoked(&conn, &r.reason);
        }
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let this = self.clone();
                    let caller = caller.clone();
                    tokio::spawn(async move { this.stream(&caller, version, send, recv).await });
                }
                Err(e) => {
                    tracing::info!(%remote, subject = %caller.identity.subject, "client disconnected: {e}");
                    audit
                        .connection(
                            EventKind::ConnectionClose,
                            &caller,
                            serde_json::json!({"why": e.to_string()}),
                        )
                        .await;
                    self.live.remove(&conn);
                    return;
                }
            }
        }
    }

    /// Reads `Hello` on the first stream and answers `Welcome` or an error.
    async fn authenticate(
        self: Arc<Self>,
        conn: &quinn::Connection,
        remote: SocketAddr,
    ) -> Option<(Arc<Caller>, u16)> {
        let (send, recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
            Ok(Ok(s)) => s,
            _ => {
                conn.close(1u32.into(), b"no control stream");
                return None;
            }
        };
        let mut reader = FrameReader::new(recv, MAX_CONTROL_FRAME);
        let mut writer = FrameWriter::new(send);
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
                // Most often a token far over any real size: say so in the
                // log as an authentication failure, which is what it is.
                tracing::warn!(%remote, reason = %e, "authentication failed: unreadable Hello");
                self.pipeline
                    .audit()
                    .auth_failure(remote, "", None, &format!("unreadable Hello: {e}"))
                    .await;
                let refusal = match &e {
                    // A Hello over the limit: the token is what is too big,
                    // and the client is told so (it is its own token).
                    FrameError::Decode(DecodeError::FrameTooLarge { len, max })
                        if reader.buffered_frame_type() == Some(frame_type::HELLO) =>
                    {
                        refuse(
                            ErrorCode::UNAUTHENTICATED,
                            format!("authentication failed: the token is too large (the Hello frame that carries it is {len} bytes; this broker reads at most {max})"),
                        )
                    }
                    _ => refuse(ErrorCode::MALFORMED_FRAME, format!("{e}")),
                };
                let _ = writer.send(&refusal).await;
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
        let client =
            crate::identity::caller::client_label(&hello.client_name, &hello.client_version);
        let verified = match self.admit(&hello.token, remote, &client).await {
            Ok(v) => v,
            Err(frame) => {
                let _ = writer.send(&frame).await;
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
        let caller = Arc::new(Caller::new(verified, remote, client));
        // The control stream stays open for the life of the connection; when
        // the client ends it, the connection ends. It carries re-authentication
        // with fresh tokens; when the token expires without one, the
        // connection ends with a reason the client can show.
        let c = conn.clone();
        let who = caller.clone();
        tokio::spawn(async move {
            let expiry = tokio::time::sleep(until(who.expires_at()));
            tokio::pin!(expiry);
            // Bounded: ends with the stream, an error, or the expiry.
            loop {
                tokio::select! {
                    f = reader.next() => match f {
                        Ok(Some(Frame::Reauth(r))) => {
                            match self.reauthenticate(&who, &r.token).await {
                                Ok(fresh) => {
                                    let expires_at = fresh.expires_at;
                                    who.renewed(&fresh);
                                    expiry.as_mut().reset(tokio::time::Instant::now() + until(expires_at));
                                    let welcome = Frame::Welcome(Welcome {
                                        version,
                                        identity: who.identity.clone(),
                                        session_expires_at: expires_at,
                                        broker_version: env!("CARGO_PKG_VERSION").into(),
                                    });
                                    if writer.send(&welcome).await.is_err() {
                                        break;
                                    }
                                }
                                Err(frame) => {
                                    let _ = writer.send(&frame).await;
                                    writer.finish();
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    c.close(1u32.into(), b"re-authentication failed");
                                    return;
                                }
                            }
                        }
                        Ok(Some(other)) => tracing::debug!(frame = other.kind(), "unexpected control frame"),
                        Ok(None) | Err(_) => break,
                    },
                    _ = &mut expiry => {
                        let _ = writer
                            .send(&refuse(
                                ErrorCode::SESSION_EXPIRED,
                                "your token expired: get a fresh one (`hoop login`) and reconnect".into(),
                            ))
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
        Some((caller, version))
    }

    /// Verifies a token and checks its subject is not revoked; the refusal
    /// the client gets is general, the log says precisely why.
    async fn admit(
        &self,
        token: &str,
        remote: SocketAddr,
        client: &str,
    ) -> Result<VerifiedToken, Frame> {
        let audit = self.pipeline.audit();
        let verified = match self.verifier.verify(token).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%remote, reason = %e.reason, "authentication failed");
                audit.auth_failure(remote, client, None, &e.reason).await;
                return Err(refuse(
                    ErrorCode::UNAUTHENTICATED,
                    format!("authentication failed: {}", e.hint),
                ));
            }
        };
        let who = &verified.identity;
        if let Some(r) = self.pipeline.revocations().find(&who.subject, &who.issuer) {
            tracing::warn!(%remote, subject = %who.subject, issuer = %who.issuer, revocation = r.id, "authentication failed: access revoked");
            let why = format!("access revoked (revocation {}): {}", r.id, r.reason);
            audit.auth_failure(remote, client, Some(who), &why).await;
            return Err(refuse(
                ErrorCode::REVOKED,
                format!("access revoked for {}: {}", who.subject, r.reason),
            ));
        }
        Ok(verified)
    }

    /// A fresh token for a live connection: it must verify and name the
    /// same subject from the same issuer (a connection never changes hands).
    async fn reauthenticate(&self, caller: &Caller, token: &str) -> Result<VerifiedToken, Frame> {
        let verified = self.admit(token, caller.remote, &caller.client).await?;
        let (old, new) = (&caller.identity, &verified.identity);
        if old.subject != new.subject || old.issuer != new.issuer {
            tracing::warn!(remote = %caller.remote, subject = %old.subject, new_subject = %new.subject, "re-authentication refused: another identity");
            let why = format!(
                "re-authentication as another identity ({} from {})",
                new.subject, new.issuer
            );
            self.pipeline
                .audit()
                .auth_failure(caller.remote, &caller.client, Some(old), &why)
                .await;
            return Err(refuse(
                ErrorCode::UNAUTHENTICATED,
                "re-authentication must be for the same identity; reconnect to switch".into(),
            ));
        }
        // Groups (and email) decide what a caller may do: when the IdP has
        // changed them, the connection must not keep the old ones. Ending
        // it makes the client reconnect as who it is now.
        if old != new {
            tracing::info!(remote = %caller.remote, subject = %old.subject, "re-authentication: groups or email changed; ending the connection so it reconnects");
            self.pipeline
                .audit()
                .auth_failure(
                    caller.remote,
                    &caller.client,
                    Some(old),
                    "re-authentication with other groups or email: the connection ends so it reconnects as who the caller is now",
                )
                .await;
            return Err(refuse(
                ErrorCode::UNAUTHENTICATED,
                "your groups changed at the identity provider; reconnecting picks them up".into(),
            ));
        }
        tracing::debug!(subject = %old.subject, expires_at = verified.expires_at, "re-authenticated");
        Ok(verified)
    }

    /// One MCP stream: under frame version 1 a single exchange; under
    /// version 2 exchange after exchange, each starting with the next
    /// `Open` once the previous `Close` is out, until the client ends it.
    async fn stream(
        &self,
        caller: &Arc<Caller>,
        version: u16,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let mut reader = FrameReader::new(recv, self.max_frame_len);
        let mut writer = FrameWriter::new(send);
        let exchanges = if version >= hoop_proto::REUSABLE_STREAMS {
            MAX_EXCHANGES_PER_STREAM
        } else {
            1
        };
        for _ in 0..exchanges {
            match self.exchange(caller, &mut reader, &mut writer).await {
                AfterExchange::Reusable => reader.reclaim(),
                AfterExchange::Ended => return,
            }
        }
        writer.finish();
    }

    /// One exchange: Open (+ Message for a POST) in, Head + Messages +
    /// Close out.
    async fn exchange(
        &self,
        caller: &Arc<Caller>,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
    ) -> AfterExchange {
        let open = match reader.next().await {
            Ok(Some(Frame::Open(o))) => o,
            Ok(Some(_)) => {
                return fail(
                    writer,
                    CloseCode::MALFORMED,
                    "an MCP stream must start with Open",
                )
                .await
            }
            // The client is done with the stream: end ours too.
            Ok(None) => {
                writer.finish();
                return AfterExchange::Ended;
            }
            Err(e) => return fail(writer, CloseCode::MALFORMED, &e.to_string()).await,
        };
        let body = if matches!(
            open.kind,
            StreamKind::Post | StreamKind::Audit | StreamKind::Approvals
        ) {
            match reader.next().await {
                Ok(Some(Frame::Message(m))) => Some(m.body),
                Ok(_) => {
                    return fail(
                        writer,
                        CloseCode::MALFORMED,
                        "a POST stream must carry one Message after Open",
                    )
                    .await
                }
                Err(e) => return fail(writer, CloseCode::MALFORMED, &e.to_string()).await,
            }
        } else {
            None
        };
        // A listen (GET) stream lasts as long as its client listens: it is
        // ended by the drain's close, not waited for.
        let _in_flight = (open.kind != StreamKind::Listen).then(|| InFlight::new(&self.in_flight));
        // The client sends nothing more until it has the whole reply, and
        // resets the stream when its own client goes away. From here on that
        // reset drops the exchange, which cancels the upstream work, also
        // while the broker still waits for the upstream's first answer. A
        // finished send side (version 1 clients finish after the Close)
        // changes nothing; a frame before the Close breaks the protocol.
        let gone = async {
            match reader.next().await {
                Ok(None) => std::future::pending::<()>().await,
                Ok(Some(f)) => {
                    tracing::debug!(
                        frame = f.kind(),
                        "frame before the Close: ending the stream"
                    );
                }
                Err(FrameError::Decode(e)) => {
                    tracing::debug!("undecodable bytes before the Close: ending the stream: {e}");
                }
                Err(_) => {}
            }
        };
        tokio::pin!(gone);
        // An exchange cut short ends with a reset, never a clean finish:
        // the client must not take a partial answer for a whole one.
        let reply = tokio::select! {
            r = self.pipeline.handle(caller, open, body) => r,
            _ = &mut gone => {
                writer.reset();
                return AfterExchange::Ended;
            }
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
                        return AfterExchange::Ended;
                    }
                    tokio::select! {
                        m = messages.next() => m,
                        _ = &mut gone => {
                            writer.reset();
                            return AfterExchange::Ended;
                        }
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
                        return AfterExchange::Ended;
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
        if writer.flush().await.is_err() {
            return AfterExchange::Ended;
        }
        AfterExchange::Reusable
    }
}

/// Refuses a broken stream with a `MALFORMED` close and ends it: after a
/// framing error nothing more on it can be trusted.
async fn fail(writer: &mut FrameWriter, code: CloseCode, message: &str) -> AfterExchange {
    let _ = writer
        .send(&Frame::Close(CloseStream {
            code,
            message: message.to_owned(),
        }))
        .await;
    writer.finish();
    AfterExchange::Ended
}

async fn close(conn: &quinn::Connection, mut writer: FrameWriter) -> Option<(Arc<Caller>, u16)> {
    writer.finish();
    // Give the error frame a moment to leave before the connection closes.
    let _ = tokio::time::timeout(Duration::from_millis(500), writer.into_inner().stopped()).await;
    conn.close(1u32.into(), b"refused");
    None
}
