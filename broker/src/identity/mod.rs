//! Identity: turning the bearer token of a `Hello` into a verified
//! [`Identity`]. Every verifier (dev tokens now; OIDC and workload issuers
//! later) sits behind [`TokenVerifier`], so the tunnel never knows which one
//! it talks to.

pub mod dev;

pub use hoop_proto::{Identity, IdentityKind};

/// A verified identity plus the moment its token stops being valid.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub identity: Identity,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused. `reason` is precise and goes to the broker's
/// log; the client only learns that authentication failed, plus `hint`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("authentication failed: {reason}")]
pub struct AuthError {
    pub reason: String,
    pub hint: &'static str,
}

/// Verifies bearer tokens.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError>;
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
