//! The hoop wire protocol between `hoop` (the CLI) and `hoop-broker`, sans-IO.
//!
//! Like `quinn-proto` under `quinn`, this crate holds only types and pure
//! functions: frame definitions, their byte codec, limits and version
//! negotiation. No sockets, no async runtime: both ends and the fuzzers use
//! the same code, and every decoding failure is an error value, never a panic.
//!
//! A QUIC connection carries one *control stream* (the first bidirectional
//! stream the client opens: [`Hello`] → [`Welcome`] or [`ControlError`]) and
//! any number of *MCP streams*, one per HTTP exchange of the local MCP
//! client ([`OpenStream`] → [`McpMessage`] → [`ResponseHead`], [`McpMessage`]*,
//! [`CloseStream`]). The byte layout is documented in `docs/protocol.md`.

pub mod codec;
pub mod frame;
pub mod limits;
pub mod version;

pub use codec::{decode, encode, DecodeError, Decoder};
pub use frame::*;
pub use version::{negotiate, ALPN, PROTOCOL_VERSION, REUSABLE_STREAMS};
