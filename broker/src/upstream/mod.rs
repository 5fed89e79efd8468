//! Upstream connectors: how the broker talks to the MCP servers behind it,
//! over streamable HTTP ([`http`]) or a child's stdin/stdout ([`stdio`]).
//!
//! Both present the same shape to the pipeline: a POST, a listen (GET)
//! stream and an end-of-session, each answered by an [`UpstreamReply`]
//! whose messages arrive as a stream, so SSE, progress and server-initiated
//! requests flow through as they happen.

pub mod http;
pub mod sse;
pub mod stdio;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use hoop_proto::ResponseBody;

use crate::config::{TargetConfig, TransportKind};
use crate::mcp::message::McpMessage;

/// One message from the upstream, as bytes (the pipeline parses it only
/// when a layer needs to look inside).
#[derive(Debug, Clone)]
pub struct UpstreamMessage {
    pub event_id: Option<String>,
    pub body: Bytes,
}

pub type MessageStream = Pin<Box<dyn Stream<Item = Result<UpstreamMessage, UpstreamError>> + Send>>;

/// What the upstream answered to one exchange.
pub struct UpstreamReply {
    pub status: u16,
    pub body: ResponseBody,
    pub messages: MessageStream,
    /// Set when this exchange opened an upstream session (initialize).
    pub session: Option<UpstreamSession>,
}

impl UpstreamReply {
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: ResponseBody::Empty,
            messages: Box::pin(futures::stream::empty()),
            session: None,
        }
    }
}

/// The upstream side of one MCP session (handshake era).
#[derive(Clone)]
pub enum UpstreamSession {
    /// The upstream's own `Mcp-Session-Id`; clients never see it.
    Http(Arc<str>),
    /// A child process that belongs to this session alone.
    Stdio(Arc<stdio::StdioChild>),
}

/// What to send upstream: the canonical bytes and the derived headers.
pub struct Outbound<'a> {
    pub message: &'a McpMessage,
    pub body: Bytes,
    /// MCP headers derived by the broker (lowercase names).
    pub headers: Vec<(String, String)>,
    pub session: Option<&'a UpstreamSession>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream MCP server is unreachable: {0}")]
    Unavailable(String),
    #[error("the upstream MCP server answered something that is not MCP: {0}")]
    Protocol(String),
    #[error("the upstream MCP server did not answer within {0} s")]
    Timeout(u64),
}

/// A configured upstream.
pub enum Upstream {
    /// Boxed: the hyper client is several times the size of a stdio pool.
    Http(Box<http::HttpUpstream>),
    Stdio(stdio::StdioUpstream),
}

impl Upstream {
    pub fn from_config(name: &str, config: &TargetConfig) -> anyhow::Result<Self> {
        let credential = config
            .credential
            .as_ref()
            .map(|c| c.read(name))
            .transpose()?;
        Ok(match config.transport {
            TransportKind::Http => Self::Http(Box::new(http::HttpUpstream::new(
                config.url.as_deref().unwrap_or_default(),
                credential,
                config.timeout_secs,
            )?)),
            TransportKind::Stdio => Self::Stdio(stdio::StdioUpstream::new(
                name,
                config.command.clone().unwrap_or_default(),
                config.args.clone(),
                config.env.clone(),
                credential,
                config.pool_size,
                config.timeout_secs,
            )),
        })
    }

    pub async fn post(&self, out: Outbound<'_>) -> Result<UpstreamReply, UpstreamError> {
        match self {
            Self::Http(h) => h.post(out).await,
            Self::Stdio(s) => s.post(out).await,
        }
    }

    pub async fn listen(
        &self,
        session: &UpstreamSession,
        version: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<UpstreamReply, UpstreamError> {
        match (self, session) {
            (Self::Http(h), UpstreamSession::Http(id)) => {
                h.listen(id, version, last_event_id).await
            }
            (Self::Stdio(_), UpstreamSession::Stdio(child)) => Ok(child.listen()),
            _ => Err(UpstreamError::Protocol(
                "session does not belong to this upstream".into(),
            )),
        }
    }

    pub async fn end_session(&self, session: &UpstreamSession, version: Option<&str>) {
        match (self, session) {
            (Self::Http(h), UpstreamSession::Http(id)) => h.end_session(id, version).await,
            (Self::Stdio(_), UpstreamSession::Stdio(child)) => child.terminate(),
            _ => {}
        }
    }
}
