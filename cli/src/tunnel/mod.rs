//! The CLI's end of the QUIC tunnel: one connection to the broker, shared by
//! every local MCP exchange, re-established by itself when the broker
//! restarts or the network changes. Each connection's control stream stays
//! open with a task of its own that re-authenticates (`Reauth` with a fresh
//! token) shortly before the session's token expires, so a long-running
//! `hoop connect` outlives any one access token.

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

use crate::auth::refresh::LoginSession;

pub use tls::Trust;

/// Where the broker is and how to trust and authenticate to it.
#[derive(Clone)]
pub struct TunnelSettings {
    pub broker: SocketAddr,
    /// More addresses of the same broker service (replicas), tried in turn
    /// when one cannot be reached; the last that answered is tried first.
    pub fallbacks: Vec<SocketAddr>,
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
            .field("fallbacks", &self.fallbacks)
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .field("token", &self.token)
            .finish()
    }
}

/// Where the bearer token comes from. A file is read again on every
/// (re)connection and re-authentication, so a token refreshed on disk is
/// used from then on; a login session refreshes its access token itself.
#[derive(Clone)]
pub enum TokenSource {
    Static(String),
    File(PathBuf),
    /// The profile's `hoop login` tokens, refreshed silently.
    Login(Arc<LoginSession>),
    /// A GitHub Actions job's OIDC token, fetched from the runner.
    GithubActions {
        request_url: String,
        request_token: String,
        audience: String,
    },
}

impl TokenSource {
    /// The token as it is now (refreshed first, for a login about to expire).
    pub async fn read(&self) -> Result<String, TunnelError> {
        match self {
            Self::Static(t) => Ok(t.clone()),
            Self::Login(session) => session.access_token().await.map_err(TunnelError::Login),
            Self::GithubActions {
                request_url,
                request_token,
                audience,
            } => github_actions_token(request_url, request_token, audience).await,
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

/// Asks the Actions runner for an OIDC token for `audience`
/// (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` → `{"value": JWT}`).
async fn github_actions_token(
    request_url: &str,
    request_token: &str,
    audience: &str,
) -> Result<String, TunnelError> {
    let fail = |why: String| {
        TunnelError::Token(format!(
            "cannot get the GitHub Actions OIDC token: {why} (does the job have `permissions: id-token: write`?)"
        ))
    };
    let mut url = reqwest::Url::parse(request_url)
        .map_err(|e| fail(format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}")))?;
    url.query_pairs_mut().append_pair("audience", audience);
    hoop_broker::crypto::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(url)
        .bearer_auth(request_token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        value: String,
    }
    let a: Answer = resp
        .json()
        .await
        .map_err(|e| fail(format!("unexpected answer: {}", e.without_url())))?;
    if a.value.trim().is_empty() {
        return Err(fail("empty token".into()));
    }
    Ok(a.value.trim().to_owned())
}

// Redacts a literal token; a file's path is not a secret.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(_) => f.write_str("Static(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Login(session) => f.debug_tuple("Login").field(session).finish(),
            Self::GithubActions {
                request_url,
                audience,
                ..
            } => f
                .debug_struct("GithubActions")
                .field("request_url", request_url)
                .field("request_token", &"<redacted>")
                .field("audience", audience)
                .finish(),
        }
    }
}

/// Why a tunnel operation failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot reach the broker at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    /// The broker answered, but its certificate failed the trust check:
    /// retrying cannot help, fixing the trust settings (or the broker) can.
    #[error("the broker at {addr} is not trusted: {}", untrusted.why)]
    Untrusted {
        addr: SocketAddr,
        untrusted: tls::Untrusted,
    },
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
    /// The profile's `hoop login` cannot give a token now (refresh refused,
    /// identity provider down, keyring unreadable).
    #[error("{0}")]
    Login(crate::auth::AuthError),
}

impl TunnelError {
    /// The next step for the person, where the message alone does not say it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unreachable { addr, .. } => Some(format!(
                "check that a broker runs at {addr} and that UDP to it is not blocked (QUIC); --broker or the profile's broker sets the address"
            )),
            Self::Untrusted { untrusted, .. } => Some(untrusted.hint.clone()),
            Self::Login(e) => e.hint(),
            Self::Refused { code, .. } if *code == ErrorCode::REVOKED => Some(
                "an administrator revoked this identity's access: a new token does not help; ask them (they list revocations with `hoop-broker revocations`)".into(),
            ),
            Self::Refused { .. } if self.is_auth() => Some(
                "get a new token: run `hoop login` again, or check the token file (--token-file) or HOOP_TOKEN".into(),
            ),
            _ => None,
        }
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Refused { code, .. }
            if [ErrorCode::UNAUTHENTICATED, ErrorCode::REVOKED, ErrorCode::SESSION_EXPIRED].contains(code))
    }
}

const MAX_FRAME: usize = hoop_proto::limits::DEFAULT_MAX_FRAME_LEN;
/// Attempts to (re)connect before one exchange gives up.
const CONNECT_ATTEMPTS: u32 = 6;

struct Live {
    conn: quinn::Connection,
    /// The frame protocol version the broker agreed to in `Welcome`.
    version: u16,
    /// Owns the control stream (the broker ends the connection when it
    /// closes) and re-authenticates on it; ends with the connection.
    control: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.control.abort();
    }
}

type WelcomeSlot = Arc<std::sync::Mutex<Option<Welcome>>>;

pub struct TunnelClient {
    endpoint: quinn::Endpoint,
    settings: TunnelSettings,
    /// Where the certificate check says why it refused the broker.
    trust_failure: tls::TrustFailure,
    /// Which of the broker's addresses answered last (an index into the
    /// broker and its fallbacks).
    preferred: std::sync::atomic::AtomicUsize,
    live: Mutex<Option<Live>>,
    welcome: WelcomeSlot,
    streams: Arc<StreamPool>,
}

/// Idle MCP streams could stay open at once; more are finished. Well under
/// the broker's limit of concurrent streams (256), which idle ones count
/// against.
const MAX_IDLE_STREAMS: usize = 32;
/// Exchanges one stream carries before the client retires it: the broker
/// bounds its loop too, far above this.
const MAX_STREAM_USES: u32 = 100_000;

/// The stream halves of one MCP stream.
struct StreamIo {
    writer: FrameWriter,
    reader: FrameReader,
}

/// Where a stream came from and how often it has served, so it can go back
/// to the right connection's pool after its exchange.
#[derive(Clone, Copy)]
struct Lease {
    conn: usize,
    version: u16,
    uses: u32,
}

/// Idle MCP streams of the live connection (frame version 2). Reusing one
/// for the next exchange saves opening a stream, its FIN, and the stream
/// credit the broker returns for it: two of the four datagrams a call
/// cost, one of them on the way to the upstream.
#[derive(Default)]
struct StreamPool {
    idle: std::sync::Mutex<Vec<(StreamIo, Lease)>>,
}

impl StreamPool {
    /// An idle stream of connection `conn`; streams of older connections
    /// are dropped on the way.
    fn take(&self, conn: usize) -> Option<(StreamIo, Lease)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, l)| l.conn == conn);
        idle.pop()
    }

    /// Takes back a stream whose exchange the broker closed with `code`, or
    /// finishes it when it may not serve again (after a framing error the
    /// broker ends the stream; version 1 brokers serve one exchange).
    fn put(&self, mut io: StreamIo, lease: Lease, code: CloseCode) {
        io.reader.reclaim();
        if lease.version >= hoop_proto::REUSABLE_STREAMS
            && lease.uses < MAX_STREAM_USES
            && code != CloseCode::MALFORMED
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_STREAMS {
                idle.push((io, lease));
                return;
            }
        }
        io.writer.finish();
    }
}

impl TunnelClient {
    /// Connects and authenticates once; later failures reconnect lazily.
    pub async fn connect(settings: TunnelSettings) -> Result<Arc<Self>, TunnelError> {
        hoop_broker::crypto::install_crypto_provider();
        let unreachable = |reason: String| TunnelError::Unreachable {
            addr: settings.broker,
            reason,
        };
        let (client_config, trust_failure) = tls::client_config(&settings.trust)
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
        let socket = std::net::UdpSocket::bind(bind).map_err(|e| unreachable(e.to_string()))?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            hoop_broker::tunnel::runtime::QuicRuntime::shared(),
        )
        .map_err(|e| unreachable(e.to_string()))?;
        endpoint.set_default_client_config(client_config);
        let this = Arc::new(Self {
            endpoint,
            settings,
            trust_failure,
            preferred: Default::default(),
            live: Mutex::new(None),
            welcome: Arc::new(std::sync::Mutex::new(None)),
            streams: Arc::new(StreamPool::default()),
        });
        let live = this.dial().await?;
        *this.live.lock().await = Some(live);
        Ok(this)
    }

    /// Ends the connection with a reason, so the broker sees the client
    /// leave now rather than at the idle timeout, and waits (briefly) for
    /// the close to be sent.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
            .await;
    }

    /// The identity and session facts of the current connection.
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connects to the broker, or with replicas to the first of them that
    /// answers, starting from the one that answered last.
    async fn dial(&self) -> Result<Live, TunnelError> {
        let s = &self.settings;
        // Read before connecting: a bad token file fails without a round trip.
        let token = s.token.read().await?;
        let all: Vec<SocketAddr> = std::iter::once(s.broker)
            .chain(s.fallbacks.iter().copied())
            .collect();
        // With replicas to turn to, a silent one is given up on sooner.
        let wait = if all.len() > 1 {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(10)
        };
        let start = self.preferred.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for i in 0..all.len() {
            let at = (start + i) % all.len();
            match self.dial_one(all[at], &token, wait).await {
                Ok(live) => {
                    self.preferred
                        .store(at, std::sync::atomic::Ordering::Relaxed);
                    return Ok(live);
                }
                // Another replica may answer; a refusal or a distrusted
                // certificate would be the same everywhere.
                Err(e @ TunnelError::Unreachable { .. }) => last = Some(e),
                Err(e @ TunnelError::Refused { code, .. }) if code == ErrorCode::DRAINING => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| TunnelError::Lost("no broker address to try".into())))
    }

    async fn dial_one(
        &self,
        addr: SocketAddr,
        token: &str,
        wait: Duration,
    ) -> Result<Live, TunnelError> {
        let s = &self.settings;
        let token = token.to_owned();
        let unreachable = |reason: String| TunnelError::Unreachable { addr, reason };
        let connecting = self
            .endpoint
            .connect(addr, &s.server_name)
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::time::timeout(wait, connecting)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {} s (is the broker running?)",
                    wait.as_secs()
                ))
            })?
            .map_err(|e| match self.trust_failure.take() {
                Some(untrusted) => TunnelError::Untrusted { addr, untrusted },
                None => unreachable(e.to_string()),
            })?;
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
                let expires_at = w.session_expires_at;
                let version = w.version;
                *self.welcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
                let control = tokio::spawn(control_loop(
                    Control { writer, reader },
                    conn.clone(),
                    s.token.clone(),
                    self.welcome.clone(),
                    expires_at,
                ));
                Ok(Live {
                    conn,
                    version,
                    control,
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
    async fn connection(&self, force_new: bool) -> Result<(quinn::Connection, u16), TunnelError> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref() {
            if !force_new && l.conn.close_reason().is_none() {
                return Ok((l.conn.clone(), l.version));
            }
            // The broker that answered last is gone (or going): another
            // replica, if there is one, is asked first.
            if l.conn.close_reason().is_some() && !self.settings.fallbacks.is_empty() {
                self.preferred
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                    let conn = (l.conn.clone(), l.version);
                    *live = Some(l);
                    return Ok(conn);
                }
                // A refusal or a distrusted certificate will not change by
                // retrying.
                Err(e @ (TunnelError::Refused { .. } | TunnelError::Untrusted { .. })) => {
                    return Err(e)
                }
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
        let (conn, version) = self.connection(false).await?;
        let (mut io, lease) = match self.streams.take(conn.stable_id()) {
            Some(idle) => idle,
            None => self.open_stream(conn, version).await?,
        };
        // From here until the `Exchange` exists, dropping this future (the
        // local client went away) must reset the stream, not finish it.
        let guard = ResetOnDrop {
            io: &mut io,
            armed: true,
        };
        // Open and the message leave in one write (usually one packet).
        guard.io.writer.queue(&Frame::Open(open));
        if let Some(body) = body {
            guard
                .io
                .writer
                .queue_message(&McpMessage {
                    event_id: None,
                    body,
                })
                .await
                .map_err(write_failed)?;
        }
        guard.io.writer.flush().await.map_err(write_failed)?;
        let head = match guard.io.reader.next().await.map_err(lost)? {
            Some(Frame::Head(h)) => h,
            Some(Frame::Close(c)) => {
                // The broker ended the exchange itself, cleanly.
                guard.disarm();
                self.streams.put(io, lease.used(), c.code);
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
            io: Some(io),
            lease: lease.used(),
            pool: self.streams.clone(),
        })
    }

    /// A new MCP stream. Opening one sends nothing yet, so a dead
    /// connection found here can be replaced without losing the request.
    async fn open_stream(
        &self,
        conn: quinn::Connection,
        version: u16,
    ) -> Result<(StreamIo, Lease), TunnelError> {
        let (conn, version, (send, recv)) = match conn.open_bi().await {
            Ok(s) => (conn, version, s),
            Err(_) => {
                let (conn, version) = self.connection(true).await?;
                let s = conn
                    .open_bi()
                    .await
                    .map_err(|e| TunnelError::Lost(e.to_string()))?;
                (conn, version, s)
            }
        };
        let io = StreamIo {
            writer: FrameWriter::new(send),
            reader: FrameReader::new(recv, MAX_FRAME),
        };
        let lease = Lease {
            conn: conn.stable_id(),
            version,
            uses: 0,
        };
        Ok((io, lease))
    }
}

impl Lease {
    fn used(self) -> Self {
        Self {
            uses: self.uses.saturating_add(1),
            ..self
        }
    }
}

/// The control stream of one connection.
struct Control {
    writer: FrameWriter,
    reader: FrameReader,
}

/// Re-authenticate this long before the session expires…
const REAUTH_LEAD: Duration = Duration::from_secs(60);
/// …or a fifth of the session's life before, when that is sooner.
const REAUTH_LEAD_FRACTION: u32 = 5;
/// How long the broker has to answer a `Reauth`.
const REAUTH_ANSWER: Duration = Duration::from_secs(10);
/// An upper bound on re-authentications per connection (a year of
/// 5-minute tokens), so the loop is bounded even if the broker kept
/// granting sessions that end at once.
const MAX_REAUTHS: u32 = 120_000;

/// When to re-authenticate a session that ends at `expires_at` and began
/// (or was last extended) at `since`, all Unix seconds: REAUTH_LEAD before
/// the end, or a fifth of its life when that is shorter. `None` when the
/// session carries no expiry.
fn reauth_at(expires_at: u64, since: u64) -> Option<u64> {
    if expires_at == 0 || expires_at == u64::MAX {
        return None;
    }
    let life = expires_at.saturating_sub(since);
    let lead = REAUTH_LEAD
        .as_secs()
        .min(life / u64::from(REAUTH_LEAD_FRACTION));
    Some(expires_at.saturating_sub(lead))
}

/// The control stream's life after `Welcome`: sends `Reauth` with a fresh
/// token before the session expires and takes the broker's new `Welcome`
/// (or its refusal), one at a time; shows what the broker says unasked
/// (e.g. that the session expired). Holds the stream until the connection
/// ends, since dropping it would end the connection.
async fn control_loop(
    mut ctl: Control,
    conn: quinn::Connection,
    token: TokenSource,
    welcome: WelcomeSlot,
    mut expires_at: u64,
) {
    let mut since = crate::auth::now_unix();
    let mut reauth = matches!(
        token,
        TokenSource::File(_) | TokenSource::Login(_) | TokenSource::GithubActions { .. }
    );
    // After a failed attempt to get a fresh token (the IdP briefly down),
    // try again sooner, backing off, until the session's end.
    let mut retry: Option<Duration> = None;
    for _ in 0..MAX_REAUTHS {
        let wake = reauth.then(|| reauth_at(expires_at, since)).flatten();
        // At least a second apart, whatever the broker granted last.
        let delay = match retry {
            Some(d) => Some(d),
            None => wake
                .map(|at| Duration::from_secs(at.saturating_sub(crate::auth::now_unix()).max(1))),
        };
        tokio::select! {
            _ = conn.closed() => return,
            frame = ctl.reader.next() => match frame {
                Ok(Some(Frame::ControlError(e))) => {
                    tracing::warn!("the broker ended the session ({}): {}", e.code.name(), e.message);
                    reauth = false;
                }
                Ok(Some(other)) => {
                    tracing::debug!(frame = other.kind(), "unexpected frame on the control stream");
                }
                Ok(None) | Err(_) => break,
            },
            _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => {
                match reauthenticate(&mut ctl, &token, expires_at).await {
                    Reauthed::Extended(w) => {
                        retry = None;
                        since = crate::auth::now_unix();
                        expires_at = w.session_expires_at;
                        tracing::info!(session_expires_at = expires_at, "re-authenticated with the broker");
                        *welcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
                    }
                    Reauthed::GiveUp => reauth = false,
                    Reauthed::Retry => {
                        let left = expires_at.saturating_sub(crate::auth::now_unix());
                        if left == 0 {
                            reauth = false;
                            retry = None;
                        } else {
                            let next = retry.map_or(Duration::from_secs(2), |d| d * 2);
                            retry = Some(next.min(Duration::from_secs(60)).min(Duration::from_secs(left)));
                        }
                    }
                    Reauthed::StreamGone => break,
                }
            }
        }
    }
    // Keep the stream (and so the connection) until the connection ends.
    conn.closed().await;
}

enum Reauthed {
    Extended(Welcome),
    /// No further attempt on this connection; it ends at its expiry and
    /// the next exchange reconnects with whatever token there is then.
    GiveUp,
    /// No fresh token now (the IdP or the runner unreachable): try again.
    Retry,
    StreamGone,
}

async fn reauthenticate(ctl: &mut Control, token: &TokenSource, expires_at: u64) -> Reauthed {
    let token = match token.read().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "cannot get a fresh token to re-authenticate ({e}); trying again, the broker session ends at {expires_at} (Unix time)"
            );
            return Reauthed::Retry;
        }
    };
    if ctl
        .writer
        .send(&Frame::Reauth(hoop_proto::Reauth { token }))
        .await
        .is_err()
    {
        return Reauthed::StreamGone;
    }
    match tokio::time::timeout(REAUTH_ANSWER, ctl.reader.next()).await {
        Ok(Ok(Some(Frame::Welcome(w)))) if w.session_expires_at > expires_at => {
            Reauthed::Extended(w)
        }
        Ok(Ok(Some(Frame::Welcome(_)))) => {
            // The same token again (a token file nobody renewed): asking
            // again would only repeat this.
            tracing::warn!(
                "re-authentication did not extend the session (is the token file being renewed?); it ends at {expires_at} (Unix time)"
            );
            Reauthed::GiveUp
        }
        Ok(Ok(Some(Frame::ControlError(e)))) => {
            tracing::warn!(
                "the broker refused the refreshed token ({}): {}; run `hoop login` (or renew the token) and the next call reconnects",
                e.code.name(),
                e.message
            );
            Reauthed::GiveUp
        }
        Ok(Ok(Some(other))) => {
            tracing::warn!(
                "the broker answered a re-authentication with {}",
                other.kind()
            );
            Reauthed::GiveUp
        }
        Ok(Ok(None)) | Ok(Err(_)) => Reauthed::StreamGone,
        Err(_) => {
            tracing::warn!(
                "the broker did not answer the re-authentication within {}s (an older broker?); the session ends at {expires_at} (Unix time) and the next call reconnects",
                REAUTH_ANSWER.as_secs()
            );
            Reauthed::GiveUp
        }
    }
}

/// Why a request could not be written. The broker stops reading (rather
/// than losing the connection) when it refuses a frame, typically one over
/// its size limit; "retry the call" would be the wrong advice then.
fn write_failed(e: FrameError) -> TunnelError {
    match e {
        FrameError::Write(quinn::WriteError::Stopped(_)) => TunnelError::Stopped,
        e => lost(e),
    }
}

/// Why an exchange's stream failed. When the broker closed the whole
/// connection, its close code and reason say why (quinn's own message is
/// only "connection lost"): a revocation is a refusal, not a glitch that a
/// retry would mend.
fn lost(e: FrameError) -> TunnelError {
    let closed = match &e {
        FrameError::Read(quinn::ReadError::ConnectionLost(c))
        | FrameError::Write(quinn::WriteError::ConnectionLost(c)) => Some(c),
        _ => None,
    };
    if let Some(quinn::ConnectionError::ApplicationClosed(close)) = closed {
        let reason = String::from_utf8_lossy(&close.reason).into_owned();
        if u64::from(close.error_code) == u64::from(ErrorCode::REVOKED.0) {
            return TunnelError::Refused {
                code: ErrorCode::REVOKED,
                message: reason,
            };
        }
        return TunnelError::Lost(format!("the broker closed the connection: {reason}"));
    }
    TunnelError::Lost(e.to_string())
}

/// Resets a request stream (and stops reading it) when dropped while
/// armed. A plain drop of quinn's `SendStream` finishes it with a clean
/// FIN, which the broker takes for a complete request and never cancels;
/// a reset is what tells it the caller has gone.
struct ResetOnDrop<'a> {
    io: &'a mut StreamIo,
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
            self.io.writer.reset();
            self.io.reader.stop();
        }
    }
}

/// One MCP exchange in progress. Dropping it before the end tells the
/// broker to stop (the upstream call is cancelled); at its end the stream
/// goes back to the pool for the next exchange.
pub struct Exchange {
    pub head: ResponseHead,
    /// `None` once the broker's `Close` was read.
    io: Option<StreamIo>,
    lease: Lease,
    pool: Arc<StreamPool>,
}

impl Exchange {
    /// The next message; `Ok(None)` when the broker closed the exchange cleanly.
    pub async fn next_message(&mut self) -> Result<Option<McpMessage>, TunnelError> {
        let Some(io) = self.io.as_mut() else {
            return Ok(None);
        };
        match io.reader.next().await {
            Ok(Some(Frame::Message(m))) => Ok(Some(m)),
            Ok(Some(Frame::Close(c))) => {
                if let Some(io) = self.io.take() {
                    self.pool.put(io, self.lease, c.code);
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
            Err(e) => Err(lost(e)),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            io.writer.reset();
            io.reader.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: TokenSource) -> TunnelSettings {
        TunnelSettings {
            broker: ([127, 0, 0, 1], 4433).into(),
            fallbacks: Vec::new(),
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
    fn reauth_comes_a_minute_early_or_a_fifth_of_a_short_life_early() {
        // One-hour session: a minute before the end.
        assert_eq!(reauth_at(10_000 + 3600, 10_000), Some(10_000 + 3540));
        // 100-second session: 20 s before the end.
        assert_eq!(reauth_at(10_100, 10_000), Some(10_080));
        // Already past: at once.
        assert_eq!(reauth_at(9_000, 10_000), Some(9_000));
        // No expiry: never.
        assert_eq!(reauth_at(0, 10_000), None);
        assert_eq!(reauth_at(u64::MAX, 10_000), None);
    }

    /// A QUIC server on loopback with a fresh self-signed certificate: its
    /// endpoint, address and pin.
    fn stand_in_broker() -> (quinn::Endpoint, SocketAddr, String) {
        use hoop_broker::tunnel::tls as server_tls;
        hoop_broker::crypto::install_crypto_provider();
        let material = server_tls::self_signed().unwrap();
        let pin = server_tls::fingerprint(&material.chain[0]);
        let server = quinn::Endpoint::server(
            server_tls::quic_server_config(material).unwrap(),
            ([127, 0, 0, 1], 0).into(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        (server, addr, pin)
    }

    /// The Welcome a stand-in broker gives alice.
    fn welcome_alice(expires_at: u64) -> Frame {
        use hoop_proto::{Identity, IdentityKind};
        Frame::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity: Identity {
                subject: "alice".into(),
                email: None,
                groups: vec![],
                issuer: "test".into(),
                kind: IdentityKind::Human,
            },
            session_expires_at: expires_at,
            broker_version: "test".into(),
        })
    }

    /// A stand-in broker on loopback: Welcome with a 5-second session,
    /// then, for the Reauth that must come before it ends, a Welcome that
    /// extends it. Reports each token it was shown.
    #[tokio::test]
    async fn the_control_stream_reauthenticates_before_the_session_expires() {
        let (server, addr, pin) = stand_in_broker();
        let welcome = welcome_alice;
        let start = crate::auth::now_unix();
        let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<String>(4);
        let broker = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (send, recv) = conn.accept_bi().await.unwrap();
            let mut w = FrameWriter::new(send);
            let mut r = FrameReader::new(recv, 1 << 16);
            let Ok(Some(Frame::Hello(h))) = r.next().await else {
                panic!("expected Hello")
            };
            seen_tx.send(h.token).await.unwrap();
            w.send(&welcome(start + 5)).await.unwrap();
            let Ok(Some(Frame::Reauth(ra))) = r.next().await else {
                panic!("expected Reauth")
            };
            seen_tx.send(ra.token).await.unwrap();
            w.send(&welcome(start + 1000)).await.unwrap();
            conn.closed().await;
        });

        let dir = std::env::temp_dir().join(format!("hoop-reauth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.token");
        std::fs::write(&path, "first\n").unwrap();
        let client = TunnelClient::connect(TunnelSettings {
            broker: addr,
            fallbacks: Vec::new(),
            server_name: "localhost".into(),
            trust: Trust::Pin(pin),
            token: TokenSource::File(path.clone()),
        })
        .await
        .unwrap();
        assert_eq!(seen.recv().await.unwrap(), "first");
        // The token file is renewed by something else; the reauth reads it.
        std::fs::write(&path, "second\n").unwrap();
        let t = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("no Reauth within 10 s of a 5-second session")
            .unwrap();
        assert_eq!(t, "second");
        // Bounded wait for the new Welcome to be taken.
        for _ in 0..100 {
            if client.welcome().map(|w| w.session_expires_at) == Some(start + 1000) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            client.welcome().map(|w| w.session_expires_at),
            Some(start + 1000)
        );
        broker.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stand-in broker that speaks frame version 2: it answers every
    /// Open on a stream with Head, one Message and Close(DONE), for as
    /// long as the stream lasts, and reports each MCP stream it accepts.
    #[tokio::test]
    async fn exchanges_reuse_idle_streams_and_a_dropped_one_is_not_reused() {
        use hoop_proto::{McpHeaders, ResponseBody, StreamKind};
        let (server, addr, pin) = stand_in_broker();
        let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<()>();
        let broker = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (send, recv) = conn.accept_bi().await.unwrap();
            let mut w = FrameWriter::new(send);
            let mut r = FrameReader::new(recv, 1 << 16);
            let Ok(Some(Frame::Hello(_))) = r.next().await else {
                panic!("expected Hello")
            };
            w.send(&welcome_alice(crate::auth::now_unix() + 3600))
                .await
                .unwrap();
            let _control = (w, r);
            while let Ok((send, recv)) = conn.accept_bi().await {
                let _ = opened_tx.send(());
                tokio::spawn(async move {
                    let mut w = FrameWriter::new(send);
                    let mut r = FrameReader::new(recv, 1 << 16);
                    // Bounded like the real broker's loop.
                    for _ in 0..100 {
                        let Ok(Some(Frame::Open(_))) = r.next().await else {
                            return;
                        };
                        let Ok(Some(Frame::Message(m))) = r.next().await else {
                            return;
                        };
                        if m.body.as_ref() == b"hang" {
                            // Never answers; the client gives up on it.
                            let _ = r.next().await;
                            return;
                        }
                        w.queue(&Frame::Head(ResponseHead {
                            status: 200,
                            body: ResponseBody::Json,
                            session_id: None,
                        }));
                        w.queue(&Frame::Message(m));
                        w.queue(&Frame::Close(hoop_proto::CloseStream {
                            code: CloseCode::DONE,
                            message: String::new(),
                        }));
                        if w.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let client = TunnelClient::connect(TunnelSettings {
            broker: addr,
            fallbacks: Vec::new(),
            server_name: "localhost".into(),
            trust: Trust::Pin(pin),
            token: TokenSource::Static("t".into()),
        })
        .await
        .unwrap();
        let open = || OpenStream {
            target: "demo".into(),
            kind: StreamKind::Post,
            headers: McpHeaders::default(),
        };
        let call = |body: &'static str| {
            let client = client.clone();
            async move {
                let mut ex = client.exchange(open(), Some(Bytes::from(body))).await?;
                let m = ex.next_message().await?.expect("a message");
                assert!(ex.next_message().await?.is_none(), "then the Close");
                Ok::<Bytes, TunnelError>(m.body)
            }
        };
        for i in 0..3 {
            assert_eq!(call("{}").await.unwrap().as_ref(), b"{}", "call {i}");
        }
        assert!(opened.try_recv().is_ok(), "the first call opens a stream");
        assert!(
            opened.try_recv().is_err(),
            "calls after the first reuse its stream"
        );
        // A call abandoned before its answer resets its stream, which must
        // not serve again: the next call opens a new one.
        let hung = tokio::time::timeout(
            Duration::from_millis(300),
            client.exchange(open(), Some(Bytes::from_static(b"hang"))),
        )
        .await;
        assert!(hung.is_err(), "the stand-in never answers this one");
        assert_eq!(call("{}").await.unwrap().as_ref(), b"{}");
        assert!(
            opened.try_recv().is_ok(),
            "the call after an abandoned one opens a new stream"
        );
        broker.abort();
    }

    #[tokio::test]
    async fn a_token_file_is_read_afresh_each_time() {
        let dir = std::env::temp_dir().join(format!("hoop-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.token");
        let source = TokenSource::File(path.clone());
        assert!(matches!(source.read().await, Err(TunnelError::Token(_))));
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "second");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(source.read().await, Err(TunnelError::Token(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_connection_the_broker_closed_for_a_revocation_is_a_refusal() {
        let closed = |code: u32, reason: &'static str| {
            FrameError::Read(quinn::ReadError::ConnectionLost(
                quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                    error_code: code.into(),
                    reason: Bytes::from_static(reason.as_bytes()),
                }),
            ))
        };
        let e = lost(closed(6, "access revoked: contract ended"));
        assert!(e.is_auth(), "{e}");
        assert!(
            e.to_string().contains("access revoked: contract ended"),
            "{e}"
        );
        let e = lost(closed(2, "token expired"));
        assert!(matches!(e, TunnelError::Lost(_)), "{e}");
        assert!(e.to_string().contains("token expired"), "{e}");
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
