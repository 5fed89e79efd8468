//! The caller: the verified identity behind one QUIC connection, as every
//! layer of the request path reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Identity, VerifiedToken};

/// Longest client `name/version` kept.
pub const MAX_CLIENT_BYTES: usize = 128;

/// A client's `name/version` from its `Hello`, cut to [`MAX_CLIENT_BYTES`]
/// (the client names itself; the record keeps a name, not a payload).
pub fn client_label(name: &str, version: &str) -> String {
    let mut label = format!("{name}/{version}");
    if label.len() > MAX_CLIENT_BYTES {
        let mut end = MAX_CLIENT_BYTES;
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        label.truncate(end);
    }
    label
}

/// Who is calling: the verified identity of one QUIC connection.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    /// When the caller's token expires (Unix seconds); moved on by a
    /// successful re-authentication on the control stream.
    pub expires_at: AtomicU64,
    pub remote: SocketAddr,
    /// Which token (`VerifiedToken::token_id`), for the record; replaced
    /// by a successful re-authentication, so events name the token in use.
    token_id: Mutex<Arc<str>>,
    /// The hoop client's software, from its `Hello` (`name/version`).
    pub client: String,
}

impl Caller {
    /// The caller a verified token makes of a connection from `remote`,
    /// whose `Hello` named its software `client`.
    /// `client`: from [`client_label`].
    pub fn new(token: VerifiedToken, remote: SocketAddr, client: String) -> Self {
        Self {
            identity: token.identity,
            expires_at: AtomicU64::new(token.expires_at),
            remote,
            token_id: Mutex::new(token.token_id.into()),
            client,
        }
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// The token the connection is using now.
    pub fn token_id(&self) -> Arc<str> {
        self.token_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A fresh token of the same identity took over the connection
    /// (re-authentication): its expiry and its id from now on.
    pub fn renewed(&self, token: &VerifiedToken) {
        self.expires_at.store(token.expires_at, Ordering::Relaxed);
        *self.token_id.lock().unwrap_or_else(PoisonError::into_inner) =
            token.token_id.as_str().into();
    }
}
