//! The CLI's end of the QUIC tunnel: one connection to the broker, shared by
//! every local MCP exchange, re-established by itself when the broker
//! restarts or the network changes.

pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hoop_broker::tunnel::framed::{FrameError, FrameReader, FrameWriter};
use hoop_proto::{
    CloseCode, ErrorCode, Frame, Hello, McpMessage, OpenStream, ResponseHead, Welcome,
    PROTOCOL_VERSION,
};
use tokio::sync::Mutex;

pub use tls::Trust;

/// Where the broker is and how to trust and authenticate to it.
#[derive(Clone)]
pub struct TunnelSettings {
    pub broker: SocketAddr,
    /// TLS server name to expect (the dev certificate is for `localhost`).
    pub server_name: String,
    pub trust: Trust,
    pub token: TokenSource,
}

// The bearer token must never reach a log line, so Debug is written by hand.
impl std::fmt::Debug for TunnelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSettings")
            .field("broker", &self.broker)
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .field("token", &self.token)
            .finish()
    }
}

/// Where the bearer token comes from. A file is read again on every
/// (re)connection, so a token refreshed on disk is used once the tunnel
/// reconnects.
#[derive(Clone)]
pub enum TokenSource {
    Static(String),
    File(PathBuf),
}

impl TokenSource {
    /// The token as it is now.
    pub fn read(&self) -> Result<String, TunnelError> {
        match self {
            Self::Static(t) => Ok(t.clone()),
            Self::File(path) => {
                let t = std::fs::read_to_string(path).map_err(|e| {
                    TunnelError::Token(format!("cannot read token file {}: {e}", path.display()))
                })?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(TunnelError::Token(format!(
                        "token file {} is empty",
                        path.display()
                    )));
                }
                Ok(t.to_owned())
            }
        }
    }
}

// Redacts a literal token; a file's path is not a secret.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(_) => f.write_str("Static(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Why a tunnel operation failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot reach the broker at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the broker refused the connection ({}): {message}", code.name())]
    Refused { code: ErrorCode, message: String },
    #[error("the tunnel to the broker was lost during the call: {0}; retry the call")]
    Lost(String),
    /// The broker stopped reading the request before it was sent whole,
    /// which is what it does with a message over its size limit; retrying
    /// the same message would fail the same way.
    #[error("the broker stopped reading the request: the message may exceed the broker's size limit (limits.max_message_bytes)")]
    Stopped,
    #[error("the broker ended the exchange ({}): {message}", code.name())]
    Closed { code: CloseCode, message: String },
    #[error("the broker sent something unexpected: {0}")]
    Protocol(String),
    /// The local settings are wrong (token, pin, CA file): fixing them,
    /// not retrying, is what helps.
    #[error("{0}")]
    Token(String),
}

impl TunnelError {
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if *code == ErrorCode::UNAUTHENTICATED)
    }
}

const MAX_FRAME: usize = hoop_proto::limits::DEFAULT_MAX_FRAME_LEN;
/// Attempts to (re)connect before one exchange gives up.
const CONNECT_ATTEMPTS: u32 = 6;

struct Live {
    conn: quinn::Connection,
    /// Keeps the control stream open; the broker ends the connection
    /// when it closes.
    _control: (FrameWriter, FrameReader),
}

pub struct TunnelClient {
    endpoint: quinn::Endpoint,
    settings: TunnelSettings,
    live: Mutex<Option<Live>>,
    welcome: std::sync::Mutex<Option<Welcome>>,
}

impl TunnelClient {
    /// Connects and authenticates once; later failures reconnect lazily.
    pub async fn connect(settings: TunnelSettings) -> Result<Arc<Self>, TunnelError> {
        hoop_broker::run::install_crypto_provider();
        let unreachable = |reason: String| TunnelError::Unreachable {
            addr: settings.broker,
            reason,
        };
        let client_config = tls::client_config(&settings.trust)
            .map_err(|e| TunnelError::Token(format!("{e:#}")))?;
        let bind: SocketAddr = if settings.broker.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|_| unreachable("bad bind address".into()))?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| unreachable("bad bind address".into()))?
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| unreachable(e.to_string()))?;
        endpoint.set_default_client_config(client_config);
        let this = Arc::new(Self {
            endpoint,
            settings,
            live: Mutex::new(None),
            welcome: std::sync::Mutex::new(None),
        });
        let live = this.dial().await?;
        *this.live.lock().await = Some(live);
        Ok(this)
    }

    /// The identity and session facts of the current connection.
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn dial(&self) -> Result<Live, TunnelError> {
        let s = &self.settings;
        // Read before connecting: a bad token file fails without a round trip.
        let token = s.token.read()?;
        let unreachable = |reason: String| TunnelError::Unreachable {
            addr: s.broker,
            reason,
        };
        let connecting = self
            .endpoint
            .connect(s.broker, &s.server_name)
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| unreachable("no answer within 10 s (is the broker running?)".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv, 64 * 1024);
        writer
            .send(&Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                token,
                client_name: "hoop".into(),
                client_version: env!("CARGO_PKG_VERSION").into(),
            }))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
            Ok(Ok(Some(Frame::Welcome(w)))) => {
                tracing::debug!(subject = %w.identity.subject, "tunnel authenticated");
                *self.welcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
                Ok(Live {
                    conn,
                    _control: (writer, reader),
                })
            }
            Ok(Ok(Some(Frame::ControlError(e)))) => Err(TunnelError::Refused {
                code: e.code,
                message: e.message,
            }),
            Ok(Ok(Some(other))) => Err(TunnelError::Protocol(format!(
                "expected Welcome, got {}",
                other.kind()
            ))),
            Ok(Ok(None)) => Err(TunnelError::Protocol(
                "the broker closed the control stream without a Welcome".into(),
            )),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("no Welcome within 10 s".into())),
        }
    }

    /// A live connection, reconnecting (with a short bounded backoff) when
    /// the last one is gone.
    async fn connection(&self, force_new: bool) -> Result<quinn::Connection, TunnelError> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref() {
            if !force_new && l.conn.close_reason().is_none() {
                return Ok(l.conn.clone());
            }
        }
        *live = None;
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..CONNECT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            match self.dial().await {
                Ok(l) => {
                    tracing::info!("tunnel to {} re-established", self.settings.broker);
                    let conn = l.conn.clone();
                    *live = Some(l);
                    return Ok(conn);
                }
                // A refusal will not change by retrying.
                Err(e @ TunnelError::Refused { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TunnelError::Lost("could not reconnect".into())))
    }

    /// Opens an MCP stream, sends the request and waits for the head.
    pub async fn exchange(
        &self,
        open: OpenStream,
        body: Option<Bytes>,
    ) -> Result<Exchange, TunnelError> {
        let conn = self.connection(false).await?;
        // Opening a stream sends nothing yet, so a dead connection found
        // here can be replaced without losing the request.
        let (send, recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(_) => self
                .connection(true)
                .await?
                .open_bi()
                .await
                .map_err(|e| TunnelError::Lost(e.to_string()))?,
        };
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv, MAX_FRAME);
        // From here until the `Exchange` exists, dropping this future (the
        // local client went away) must reset the stream, not finish it.
        let guard = ResetOnDrop {
            writer: &mut writer,
            reader: &mut reader,
            armed: true,
        };
        // Open and the message leave in one write (usually one packet).
        guard.writer.queue(&Frame::Open(open));
        if let Some(body) = body {
            guard
                .writer
                .queue_message(&McpMessage {
                    event_id: None,
                    body,
                })
                .await
                .map_err(write_failed)?;
        }
        guard.writer.flush().await.map_err(write_failed)?;
        let lost = |e: FrameError| TunnelError::Lost(e.to_string());
        let head = match guard.reader.next().await.map_err(lost)? {
            Some(Frame::Head(h)) => h,
            Some(Frame::Close(c)) => {
                // The broker ended the exchange itself: end ours cleanly.
                guard.disarm();
                writer.finish();
                return Err(TunnelError::Closed {
                    code: c.code,
                    message: c.message,
                });
            }
            Some(other) => {
                return Err(TunnelError::Protocol(format!(
                    "expected Head, got {}",
                    other.kind()
                )))
            }
            None => {
                return Err(TunnelError::Lost(
                    "the broker closed the stream without answering".into(),
                ))
            }
        };
        // `Exchange`'s own Drop takes over the reset from here.
        guard.disarm();
        Ok(Exchange {
            head,
            reader,
            writer: Some(writer),
        })
    }
}

/// Why a request could not be written. The broker stops reading (rather
/// than losing the connection) when it refuses a frame, typically one over
/// its size limit; "retry the call" would be the wrong advice then.
fn write_failed(e: FrameError) -> TunnelError {
    match e {
        FrameError::Write(quinn::WriteError::Stopped(_)) => TunnelError::Stopped,
        e => TunnelError::Lost(e.to_string()),
    }
}

/// Resets a request stream (and stops reading it) when dropped while
/// armed. A plain drop of quinn's `SendStream` finishes it with a clean
/// FIN, which the broker takes for a complete request and never cancels;
/// a reset is what tells it the caller has gone.
struct ResetOnDrop<'a> {
    writer: &'a mut FrameWriter,
    reader: &'a mut FrameReader,
    armed: bool,
}

impl ResetOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.writer.reset();
            self.reader.stop();
        }
    }
}

/// One MCP exchange in progress. Dropping it before the end tells the
/// broker to stop (the upstream call is cancelled).
pub struct Exchange {
    pub head: ResponseHead,
    reader: FrameReader,
    writer: Option<FrameWriter>,
}

impl Exchange {
    /// The next message; `Ok(None)` when the broker closed the exchange cleanly.
    pub async fn next_message(&mut self) -> Result<Option<McpMessage>, TunnelError> {
        match self.reader.next().await {
            Ok(Some(Frame::Message(m))) => Ok(Some(m)),
            Ok(Some(Frame::Close(c))) => {
                if let Some(mut w) = self.writer.take() {
                    w.finish();
                }
                if c.code == CloseCode::DONE {
                    Ok(None)
                } else {
                    Err(TunnelError::Closed {
                        code: c.code,
                        message: c.message,
                    })
                }
            }
            Ok(Some(other)) => Err(TunnelError::Protocol(format!(
                "unexpected {} frame",
                other.kind()
            ))),
            Ok(None) => Err(TunnelError::Lost("the stream ended without a Close".into())),
            Err(e) => Err(TunnelError::Lost(e.to_string())),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.reset();
            self.reader.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: TokenSource) -> TunnelSettings {
        TunnelSettings {
            broker: ([127, 0, 0, 1], 4433).into(),
            server_name: "localhost".into(),
            trust: Trust::Pin("sha256:00".into()),
            token,
        }
    }

    #[test]
    fn debug_never_shows_a_literal_token() {
        let s = format!("{:?}", settings(TokenSource::Static("s3cret-token".into())));
        assert!(!s.contains("s3cret-token"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
        let s = format!(
            "{:?}",
            settings(TokenSource::File("/tmp/alice.token".into()))
        );
        assert!(s.contains("/tmp/alice.token"), "{s}");
    }

    #[test]
    fn a_token_file_is_read_afresh_each_time() {
        let dir = std::env::temp_dir().join(format!("hoop-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.token");
        let source = TokenSource::File(path.clone());
        assert!(matches!(source.read(), Err(TunnelError::Token(_))));
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read().unwrap(), "first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.read().unwrap(), "second");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(source.read(), Err(TunnelError::Token(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_frame_kind_not_its_body() {
        let frame = Frame::Message(McpMessage {
            event_id: None,
            body: Bytes::from(vec![b'x'; 1024]),
        });
        assert_eq!(frame.kind(), "Message");
    }
}
