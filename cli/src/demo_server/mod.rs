//! The built-in demo MCP server: a fictional bank to put behind hoop.
//!
//! It is a real MCP server (built on rmcp) with bank-flavoured tools (`echo`,
//! `get_customer`, `deploy_model`, `delete_model`, `export_transactions`,
//! `slow_count`, `big_payload`), one resource
//! ([`RETENTION_POLICY_URI`]) and one prompt (`summarize_customer`). All of
//! its data is fake but well-formed, so data-loss-prevention rules fire on it.
//!
//! It serves
//! - streamable HTTP at `/mcp` ([`serve_http`]) speaking both MCP eras on the
//!   one endpoint: the handshake era (`initialize`, `Mcp-Session-Id`, e.g.
//!   protocol 2025-11-25) and the stateless 2026-07-28 revision
//!   (`server/discover`, no session, protocol version and client info in each
//!   request's `_meta`). rmcp routes each POST by what it carries: an
//!   `initialize`, or a request with no protocol version in its `_meta`, goes
//!   to the session manager (and needs `Mcp-Session-Id`); a `server/discover`
//!   or a request whose `_meta` names 2026-07-28 is answered statelessly,
//!   whatever session header it has (one missing `clientCapabilities` is
//!   refused with 400);
//! - stdio ([`serve_stdio`], [`serve_io`]), where rmcp likewise accepts either
//!   an `initialize` handshake or `server/discover` plus per-request `_meta`.
//!
//! With [`DemoServerConfig::record`] set, every message received is appended
//! to that file as one JSON line, flushed per line (see `record.rs`), so a
//! test can prove what did, and did not, reach the server.

mod fake_bank;
mod record;
mod server;

use std::{future::Future, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use rmcp::{
    service::ServerInitializeError,
    transport::{
        async_rw::AsyncRwTransport,
        streamable_http_server::{
            session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
        },
    },
    ServiceExt as _,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use fake_bank::{
    aba_valid, iban_valid, luhn_valid, ssn_well_formed, Customer, ACCOUNT_NUMBER, CARD_NUMBER,
    IBAN, ROUTING_NUMBER, SSN,
};
pub use server::{DemoServer, MAX_BIG_PAYLOAD_BYTES, RETENTION_POLICY_URI};

use record::{HttpRecording, Recorder, RecordingTransport};

/// Path of the MCP endpoint served by [`serve_http`].
pub const MCP_PATH: &str = "/mcp";

/// Largest HTTP request body accepted (the same limit rmcp applies).
const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How the demo server runs.
#[derive(Debug, Clone, Default)]
pub struct DemoServerConfig {
    /// When set, every message the server receives is appended to this file
    /// (created if missing) as one JSON line, flushed per line.
    pub record: Option<PathBuf>,
}

impl DemoServerConfig {
    fn open_recorder(&self) -> anyhow::Result<Option<Arc<Recorder>>> {
        self.record
            .as_deref()
            .map(|path| Recorder::open(path).map(Arc::new))
            .transpose()
    }
}

/// Serves MCP streamable HTTP at `http://<listener addr>/mcp` until
/// `shutdown` resolves.
///
/// Both MCP eras share the endpoint: `initialize` opens a session
/// (`Mcp-Session-Id`), and 2026-07-28 requests that carry their protocol
/// version, client info and capabilities in `_meta` are served without one.
/// When the listener is bound to a loopback address only loopback `Host`
/// headers are accepted (DNS-rebinding protection); bound elsewhere, any
/// `Host` is.
///
/// On shutdown open SSE streams and sessions are ended, then in-flight HTTP
/// requests are allowed to finish.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    config: DemoServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let recorder = config.open_recorder()?;
    let local_addr = listener
        .local_addr()
        .context("demo server: reading the listener address")?;
    let cancel = CancellationToken::new();
    let mut http_config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_max_request_body_bytes(MAX_REQUEST_BODY_BYTES)
        .with_cancellation_token(cancel.clone());
    if !local_addr.ip().is_loopback() {
        http_config = http_config.disable_allowed_hosts();
    }
    let template = DemoServer::new();
    let service = StreamableHttpService::new(
        move || Ok(template.clone()),
        Arc::new(LocalSessionManager::default()),
        http_config,
    );
    let mut router = axum::Router::new().route_service(MCP_PATH, service);
    if let Some(recorder) = recorder {
        router = router.route_layer(axum::middleware::from_fn_with_state(
            HttpRecording {
                recorder,
                max_body_bytes: MAX_REQUEST_BODY_BYTES,
            },
            record::record_http,
        ));
    }
    tracing::info!(%local_addr, "demo MCP server listening on http://{local_addr}{MCP_PATH}");
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // End sessions and SSE streams so graceful shutdown is not held
            // open by long-lived GET streams.
            cancel.cancel();
        })
        .await
        .context("demo server: serving HTTP")
}

/// Serves MCP on stdin/stdout until EOF.
pub async fn serve_stdio(config: DemoServerConfig) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio();
    serve_io(stdin, stdout, config).await
}

/// Serves MCP over any byte stream pair (newline-delimited JSON-RPC, as on
/// stdio) until `read` reaches EOF. [`serve_stdio`] is this on stdin/stdout;
/// tests can use `tokio::io::duplex`.
pub async fn serve_io<R, W>(read: R, write: W, config: DemoServerConfig) -> anyhow::Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let recorder = config.open_recorder()?;
    let transport =
        RecordingTransport::new(AsyncRwTransport::new_server(read, write), recorder, "stdio");
    let running = match DemoServer::new().serve(transport).await {
        Ok(running) => running,
        // The peer went away before opening a session: nothing to serve.
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(error) => return Err(error).context("demo server: starting the stdio session"),
    };
    running
        .waiting()
        .await
        .context("demo server: stdio session task failed")?;
    Ok(())
}
