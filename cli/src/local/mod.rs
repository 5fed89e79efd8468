//! The local side of `hoop connect`: what an unmodified MCP client talks to.
//! Streamable HTTP on a loopback port ([`http`]) or stdin/stdout ([`stdio`]).

pub mod http;
pub mod stdio;

use serde_json::Value;

/// The JSON-RPC id of a message, read leniently: the CLI only needs it to
/// answer a request itself when the tunnel fails (the broker does the real
/// parse).
pub fn request_id(body: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<Value>,
        method: Option<serde::de::IgnoredAny>,
    }
    let m: Id = serde_json::from_slice(body).ok()?;
    m.method?;
    m.id
}

/// A JSON-RPC error the CLI answers with when the broker cannot.
pub fn error_response(id: Option<Value>, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    }))
    .unwrap_or_default()
}

/// JSON-RPC code for "the tunnel failed" (hoop-specific, server error range).
pub const TUNNEL_ERROR: i64 = -32052;
