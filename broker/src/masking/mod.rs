//! Masking: removes protected data (card numbers, SSNs, IBANs, …) from what
//! flows back to the client. It sees every upstream message before delivery;
//! for now it passes them unchanged.

use crate::upstream::UpstreamMessage;

#[derive(Debug, Default)]
pub struct Masking;

impl Masking {
    pub fn apply(&self, msg: UpstreamMessage) -> UpstreamMessage {
        msg
    }
}
