//! The QUIC side of the broker: TLS, the listener, the control stream that
//! authenticates a connection, and one task per MCP stream.

pub mod framed;
pub mod runtime;
pub mod server;
pub mod tls;
