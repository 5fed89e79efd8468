//! The caller: the verified identity behind one QUIC connection, as every
//! layer of the request path reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Identity, VerifiedToken};

/// Who is calling: the verified identity of one QUIC connection.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    /// When the caller's token expires (Unix seconds); moved on by a
    /// successful re-authentication on the control stream.
    pub expires_at: AtomicU64,
    pub remote: SocketAddr,
    /// Which token (`VerifiedToken::token_id`), for the record.
    pub token_id: String,
    /// The hoop client's software, from its `Hello` (`name/version`).
    pub client: String,
}

impl Caller {
    /// The caller a verified token makes of a connection from `remote`,
    /// whose `Hello` named its software `client`.
    pub fn new(token: VerifiedToken, remote: SocketAddr, client: String) -> Self {
        Self {
            identity: token.identity,
            expires_at: AtomicU64::new(token.expires_at),
            remote,
            token_id: token.token_id,
            client,
        }
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }
}
