//! The caller: the verified identity behind one QUIC connection, as every
//! layer of the request path reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Identity;

/// Who is calling: the verified identity of one QUIC connection.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    /// When the caller's token expires (Unix seconds); moved on by a
    /// successful re-authentication on the control stream.
    pub expires_at: AtomicU64,
    pub remote: SocketAddr,
    /// The token's `jti`, when it has one: which token, for the record.
    pub token_id: Option<String>,
    /// The hoop client's software, from its `Hello` (`name/version`).
    pub client: String,
}

impl Caller {
    pub fn new(identity: Identity, expires_at: u64, remote: SocketAddr) -> Self {
        Self {
            identity,
            expires_at: AtomicU64::new(expires_at),
            remote,
            token_id: None,
            client: String::new(),
        }
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }
}
