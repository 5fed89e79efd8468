//! Identity: turning the bearer token of a `Hello` into a verified
//! [`Identity`]. Every verifier (dev tokens for `hoop demo`, OIDC and
//! workload issuers for `serve`) sits behind [`TokenVerifier`], so the
//! tunnel never knows which one it talks to. [`revocation`] then cuts off
//! identities that must lose access before their tokens expire.

pub mod caller;
pub mod claims;
pub mod dev;
pub mod jwks;
pub mod oidc;
pub mod revocation;
pub mod workload;

use futures::future::BoxFuture;

pub use caller::Caller;
pub use hoop_proto::{Identity, IdentityKind};

/// A verified identity plus the moment its token stops being valid.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub identity: Identity,
    /// Unix seconds.
    pub expires_at: u64,
    /// Which token this was, for the audit record: its `jti`, or for a
    /// token without one `sha256:` and the first 16 hex digits of its
    /// digest (names the token without revealing it).
    pub token_id: String,
}

/// The id the audit record gives a token (see [`VerifiedToken::token_id`]).
pub fn token_id(jti: Option<&str>, token: &str) -> String {
    use sha2::Digest;
    match jti.filter(|j| !j.is_empty() && j.len() <= 256) {
        Some(j) => j.to_owned(),
        None => {
            let d = sha2::Sha256::digest(token.as_bytes());
            let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

/// Why a token was refused. `reason` is precise and goes to the broker's
/// log; the client only learns that authentication failed, plus `hint`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("authentication failed: {reason}")]
pub struct AuthError {
    pub reason: String,
    pub hint: &'static str,
}

/// Verifies bearer tokens. Asynchronous because a verifier may have to
/// fetch an issuer's signing keys.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<VerifiedToken, AuthError>>;
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
