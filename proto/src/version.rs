//! Protocol versioning: the ALPN token that QUIC negotiates, and the
//! frame-level version the control stream agrees on.
//!
//! ALPN pins the major generation (`hoop/1`); the `u16` version in
//! `Hello`/`Welcome` lets a newer broker keep serving older CLIs within it.

/// ALPN protocol identifier for every hoop QUIC connection.
pub const ALPN: &[u8] = b"hoop/1";

/// The highest frame protocol version this build speaks.
///
/// - 1: one exchange per MCP stream; the client finishes its send side
///   after the broker's `Close`.
/// - 2: MCP streams are reusable: after a `Close` other than `malformed`
///   the client may send the next `Open` on the same stream. It saves the
///   stream's opening, its FIN and the stream credit the broker would
///   return for it: two of the four datagrams a call cost.
pub const PROTOCOL_VERSION: u16 = 2;

/// The first frame protocol version with reusable MCP streams.
pub const REUSABLE_STREAMS: u16 = 2;

/// The lowest frame protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Picks the version both sides speak: the highest version not above either
/// side's maximum, or `None` when the peer is older than we support.
pub fn negotiate(peer_max: u16) -> Option<u16> {
    let v = peer_max.min(PROTOCOL_VERSION);
    (v >= MIN_PROTOCOL_VERSION).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_down_to_ours_and_refuses_too_old() {
        assert_eq!(negotiate(PROTOCOL_VERSION + 5), Some(PROTOCOL_VERSION));
        assert_eq!(negotiate(1), Some(1));
        assert_eq!(negotiate(2), Some(2));
        assert_eq!(negotiate(0), None);
    }
}
