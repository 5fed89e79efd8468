//! JSON-RPC errors the broker itself answers with, and their codes.

use serde_json::{json, Value};

/// JSON-RPC and MCP error codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP 2026-07-28: an HTTP header disagrees with the body it mirrors.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: the requested protocol version is not supported.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
    /// hoop: the upstream MCP server could not be reached or failed.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32050;
    /// hoop: the MCP session is unknown, expired or not the caller's.
    pub const SESSION_NOT_FOUND: i64 = -32051;
    /// hoop: the caller's token expired; a fresh one is needed.
    pub const TOKEN_EXPIRED: i64 = -32053;
    /// hoop: the caller's access was revoked by an administrator.
    pub const REVOKED: i64 = -32054;
    /// hoop: a task id or request state presented by an identity it was
    /// not issued to (or one the broker never saw issued).
    pub const HANDLE_NOT_YOURS: i64 = -32055;
    /// hoop: the broker has no target of the name the client asked for.
    pub const UNKNOWN_TARGET: i64 = -32056;
    /// hoop: the call needs an approver's decision.
    pub const APPROVAL_REQUIRED: i64 = -32040;
    /// hoop: a policy rule denied the call.
    pub const DENIED: i64 = -32041;
    /// hoop: an approver denied the held call (the message names them
    /// and gives their reason).
    pub const APPROVAL_DENIED: i64 = -32042;
    /// hoop: nobody decided the held call in time.
    pub const APPROVAL_EXPIRED: i64 = -32043;
    /// hoop: the audit log cannot record the call, so it is not passed on.
    pub const AUDIT_UNAVAILABLE: i64 = -32060;
    /// hoop: an upstream message could not be masked, so it was withheld.
    pub const MASKING_FAILED: i64 = -32061;
}

/// An error the broker answers in the client's place.
#[derive(Debug, Clone, PartialEq)]
pub struct McpError {
    pub code: i64,
    pub message: String,
    /// HTTP status the local listener should use.
    pub http_status: u16,
}

impl McpError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        let http_status = match code {
            codes::PARSE_ERROR
            | codes::INVALID_REQUEST
            | codes::INVALID_PARAMS
            | codes::HEADER_MISMATCH
            | codes::UNSUPPORTED_VERSION => 400,
            codes::SESSION_NOT_FOUND => 404,
            codes::TOKEN_EXPIRED | codes::REVOKED => 403,
            // A refusal of one call is an answer, not a transport failure:
            // clients show the JSON-RPC error instead of an HTTP error.
            codes::DENIED
            | codes::APPROVAL_REQUIRED
            | codes::APPROVAL_DENIED
            | codes::APPROVAL_EXPIRED
            | codes::HANDLE_NOT_YOURS => 200,
            codes::UPSTREAM_UNAVAILABLE | codes::MASKING_FAILED => 502,
            codes::AUDIT_UNAVAILABLE => 503,
            _ => 500,
        };
        Self {
            code,
            message: message.into(),
            http_status,
        }
    }

    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, m)
    }

    pub fn invalid_params(m: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, m)
    }

    pub fn header_mismatch(m: impl Into<String>) -> Self {
        Self::new(codes::HEADER_MISMATCH, m)
    }

    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL_ERROR, m)
    }

    pub fn upstream(m: impl Into<String>) -> Self {
        Self::new(codes::UPSTREAM_UNAVAILABLE, m)
    }

    /// The JSON-RPC error response for request `id` (null when unknown).
    pub fn to_response(&self, id: Option<&Value>) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(Value::Null),
            "error": { "code": self.code, "message": self.message },
        })
    }
}
