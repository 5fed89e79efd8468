//! Frame types: what travels on the control stream and on MCP streams.
//!
//! Control stream (client opens it first): [`Hello`] from the CLI, answered by
//! [`Welcome`] or [`ControlError`]; later [`Reauth`] carries a refreshed token.
//!
//! MCP stream (one per HTTP exchange of the local MCP client): the CLI sends
//! [`OpenStream`] (target + the HTTP-level facts the broker must check) and,
//! for a POST, one [`McpMessage`] with the JSON-RPC message. The broker
//! answers with one [`ResponseHead`], zero or more [`McpMessage`]s and a
//! final [`CloseStream`] that says why the stream ended. The CLI keeps its
//! send side open until it has read the `CloseStream`, and resets it when its
//! own client goes away: that reset is how the broker learns to cancel.

use bytes::Bytes;

/// Wire identifiers of the frame types (the byte after the length prefix).
pub mod frame_type {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const CONTROL_ERROR: u8 = 0x03;
    pub const REAUTH: u8 = 0x04;
    pub const OPEN: u8 = 0x10;
    pub const MESSAGE: u8 = 0x11;
    pub const HEAD: u8 = 0x12;
    pub const CLOSE: u8 = 0x13;
}

/// Any frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    ControlError(ControlError),
    Reauth(Reauth),
    Open(OpenStream),
    Message(McpMessage),
    Head(ResponseHead),
    Close(CloseStream),
}

impl Frame {
    /// The frame's type name, for messages that must not print its contents.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Welcome(_) => "Welcome",
            Frame::ControlError(_) => "ControlError",
            Frame::Reauth(_) => "Reauth",
            Frame::Open(_) => "Open",
            Frame::Message(_) => "Message",
            Frame::Head(_) => "Head",
            Frame::Close(_) => "Close",
        }
    }
}

/// First frame of a connection: who the client is and the token it presents.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Highest frame protocol version the client speaks.
    pub version: u16,
    /// Bearer token (dev token, OIDC access token or workload token).
    pub token: String,
    /// Client software name, e.g. `hoop`.
    pub client_name: String,
    /// Client software version.
    pub client_version: String,
}

// The token must never reach a log line, so Debug is written by hand.
impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("token", &"<redacted>")
            .field("client_name", &self.client_name)
            .field("client_version", &self.client_version)
            .finish()
    }
}

/// A refreshed token for the same subject, sent on the control stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Reauth {
    pub token: String,
}

impl std::fmt::Debug for Reauth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reauth")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Whether an identity is a person or a machine (CI job, service account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Human = 1,
    Workload = 2,
}

/// The identity the broker resolved from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub issuer: String,
    pub kind: IdentityKind,
}

/// The broker's answer to a valid [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The negotiated frame protocol version.
    pub version: u16,
    pub identity: Identity,
    /// When the session ends unless the client re-authenticates (Unix seconds).
    pub session_expires_at: u64,
    /// Broker software version, for diagnostics.
    pub broker_version: String,
}

/// A stable, machine-readable error code. Unknown codes survive decoding so
/// an older client can still show a newer broker's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const UNAUTHENTICATED: Self = Self(1);
    pub const UNSUPPORTED_VERSION: Self = Self(2);
    pub const MALFORMED_FRAME: Self = Self(3);
    pub const UNEXPECTED_FRAME: Self = Self(4);
    pub const SESSION_EXPIRED: Self = Self(5);
    pub const REVOKED: Self = Self(6);
    pub const INTERNAL: Self = Self(7);
    /// The broker is stopping (draining): the connection ends once what it
    /// carries is done; reconnect at once (to another replica).
    pub const DRAINING: Self = Self(8);

    pub fn name(self) -> &'static str {
        match self {
            Self::UNAUTHENTICATED => "unauthenticated",
            Self::UNSUPPORTED_VERSION => "unsupported_version",
            Self::MALFORMED_FRAME => "malformed_frame",
            Self::UNEXPECTED_FRAME => "unexpected_frame",
            Self::SESSION_EXPIRED => "session_expired",
            Self::REVOKED => "revoked",
            Self::INTERNAL => "internal",
            Self::DRAINING => "draining",
            _ => "unknown",
        }
    }
}

/// A refusal on the control stream; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    pub code: ErrorCode,
    /// A sentence a person can act on. Never contains secrets.
    pub message: String,
}

/// The HTTP exchange an MCP stream stands for (streamable HTTP semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// HTTP POST: one JSON-RPC message follows in an [`McpMessage`].
    Post = 1,
    /// HTTP GET: a stream for server-initiated messages of a session.
    Listen = 2,
    /// HTTP DELETE: the client ends its MCP session.
    EndSession = 3,
    /// `hoop targets`: the broker answers one message listing the targets
    /// and the tools the caller may use (the Open's target is empty).
    Catalog = 4,
    /// `hoop audit`: one Message with the request (JSON: `op` and its
    /// arguments); the broker answers with JSON lines (docs/audit.md). Only
    /// for identities in the audit log's reader groups.
    Audit = 5,
    /// `hoop approve`: one Message with the request (JSON: `op` and its
    /// arguments: `list`, `get`, `grant`, `deny`); the broker answers with
    /// JSON lines, one approval request each (docs/approvals.md).
    Approvals = 6,
}

/// The MCP-related HTTP headers of the local request, as the client sent them.
///
/// The broker never trusts these: it checks each one against the body and
/// derives the upstream's headers afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpHeaders {
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// `Mcp-Session-Id` (the broker-issued id, handshake era).
    pub session_id: Option<String>,
    /// `Mcp-Method` (2026-07-28).
    pub method: Option<String>,
    /// `Mcp-Name` (2026-07-28), still in its wire form (maybe `=?base64?…?=`).
    pub name: Option<String>,
    /// `Mcp-Param-<Name>` headers: (`<Name>`, value) in arrival order.
    pub params: Vec<(String, String)>,
    /// `Last-Event-ID` on a resumed stream.
    pub last_event_id: Option<String>,
}

/// First frame of an MCP stream: which target, which exchange, which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenStream {
    pub target: String,
    pub kind: StreamKind,
    pub headers: McpHeaders,
}

/// How the broker's answer is to be delivered to the local client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body (HTTP 202 for notifications and responses, 200 for DELETE).
    Empty = 0,
    /// Exactly one JSON-RPC message as `application/json`.
    Json = 1,
    /// Any number of messages as `text/event-stream`.
    EventStream = 2,
}

/// The broker's first frame on an MCP stream: the HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub body: ResponseBody,
    /// `Mcp-Session-Id` to hand to the client (the broker's own id).
    pub session_id: Option<String>,
}

/// One JSON-RPC message (request, notification, response or error), with the
/// SSE event id when it came from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpMessage {
    pub event_id: Option<String>,
    /// The JSON text, untouched by this crate.
    pub body: Bytes,
}

/// Why an MCP stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const DONE: Self = Self(0);
    pub const REFUSED: Self = Self(1);
    pub const UPSTREAM_UNAVAILABLE: Self = Self(2);
    pub const MALFORMED: Self = Self(3);
    pub const INTERNAL: Self = Self(4);
    pub const CANCELLED: Self = Self(5);
    pub const UNKNOWN_TARGET: Self = Self(6);
    pub const UPSTREAM_ERROR: Self = Self(7);

    pub fn name(self) -> &'static str {
        match self {
            Self::DONE => "done",
            Self::REFUSED => "refused",
            Self::UPSTREAM_UNAVAILABLE => "upstream_unavailable",
            Self::MALFORMED => "malformed",
            Self::INTERNAL => "internal",
            Self::CANCELLED => "cancelled",
            Self::UNKNOWN_TARGET => "unknown_target",
            Self::UPSTREAM_ERROR => "upstream_error",
            _ => "unknown",
        }
    }
}

/// Last frame the broker sends on an MCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseStream {
    pub code: CloseCode,
    /// A sentence a person can act on; empty when `code` is `DONE`.
    pub message: String,
}
