//! The caller: the verified identity behind one QUIC connection, as every
//! layer of the request path reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::value::RawValue;

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
    token: Mutex<TokenInUse>,
    /// The hoop client's software, from its `Hello` (`name/version`).
    pub client: String,
}

#[derive(Debug)]
struct TokenInUse {
    id: Arc<str>,
    /// The caller as the audit record writes it while this token is in
    /// use: made on the first event, not serialized again for every one.
    record: Option<Arc<RawValue>>,
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
            token: Mutex::new(TokenInUse {
                id: token.token_id.into(),
                record: None,
            }),
            client,
        }
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// The token the connection is using now.
    pub fn token_id(&self) -> Arc<str> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id
            .clone()
    }

    /// The caller as the audit record writes it for the token in use:
    /// `make` (given that token's id) runs once per token, and its JSON
    /// is kept until a re-authentication brings another token. `None`
    /// from `make` is not kept.
    pub fn record_json(
        &self,
        make: impl FnOnce(&Arc<str>) -> Option<Box<RawValue>>,
    ) -> Option<Arc<RawValue>> {
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if token.record.is_none() {
            token.record = make(&token.id).map(Arc::from);
        }
        token.record.clone()
    }

    /// A fresh token of the same identity took over the connection
    /// (re-authentication): its expiry and its id from now on.
    pub fn renewed(&self, token: &VerifiedToken) {
        self.expires_at.store(token.expires_at, Ordering::Relaxed);
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = TokenInUse {
            id: token.token_id.as_str().into(),
            record: None,
        };
    }
}
