//! Masking: removes protected data (card numbers, SSNs, IBANs, …) from what
//! flows back to the client. It sees every upstream message, parsed once
//! (`crate::mcp::server`), before delivery; for now it changes nothing.

use crate::mcp::server::ServerMessage;

#[derive(Debug, Default)]
pub struct Masking;

impl Masking {
    pub fn apply(&self, _msg: &mut ServerMessage) {}
}
