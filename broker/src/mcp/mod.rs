//! MCP messages as every layer reads them: the one canonical parse of a
//! client's JSON-RPC message ([`message`]), the parse of each message an
//! upstream sends back ([`server`]), and the JSON-RPC errors the broker
//! answers with ([`error`]).
//!
//! These types sit below every layer of the request path (pipeline, policy,
//! audit, masking, upstream), so no layer has to import another to read a
//! message.

pub mod canonical;
pub mod error;
pub mod message;
pub mod server;
