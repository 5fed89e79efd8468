//! Dev identities: a local signing key mints short-lived tokens for the
//! names in the config (`alice`, `bob`, …). For `hoop demo` and
//! `hoop-broker dev` only; the broker refuses to run it off loopback.
//!
//! Tokens are ordinary EdDSA JWTs, so the verification path is the same
//! shape as the OIDC one that replaces it in production.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{now_unix, AuthError, Identity, IdentityKind, TokenVerifier, VerifiedToken};
use crate::config::DevConfig;

/// Issuer and audience written into dev tokens.
pub const DEV_ISSUER: &str = "hoop-dev";
const DEV_AUDIENCE: &str = "hoop-broker";

#[derive(Debug, Serialize, Deserialize)]
struct DevClaims {
    iss: String,
    aud: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    iat: u64,
    exp: u64,
    /// Which token: the audit record names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// Mints and verifies dev tokens with one Ed25519 key.
pub struct DevIdentities {
    encoding: EncodingKey,
    decoding: DecodingKey,
    config: DevConfig,
}

impl DevIdentities {
    /// Loads the signing key from `key_path`, creating it (0600) on first use.
    pub fn load_or_create(key_path: &Path, config: DevConfig) -> anyhow::Result<Self> {
        let pem = if key_path.exists() {
            std::fs::read_to_string(key_path).map_err(|e| {
                anyhow::anyhow!("cannot read dev signing key {}: {e}", key_path.display())
            })?
        } else {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
            let pem = pair.serialize_pem();
            crate::tunnel::tls::write_private(key_path, pem.as_bytes())?;
            pem
        };
        Self::from_pem(&pem, config)
    }

    /// A key that lives only in memory (tests, throwaway demos).
    pub fn ephemeral(config: DevConfig) -> anyhow::Result<Self> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        Self::from_pem(&pair.serialize_pem(), config)
    }

    fn from_pem(pem: &str, config: DevConfig) -> anyhow::Result<Self> {
        let pair = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| anyhow::anyhow!("dev signing key is not a valid PEM key: {e}"))?;
        Ok(Self {
            encoding: EncodingKey::from_ed_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes())?,
            config,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.config.identities.iter().map(|i| i.name.as_str())
    }

    /// A fresh token for the dev identity `name`.
    pub fn mint(&self, name: &str) -> anyhow::Result<String> {
        let who = self
            .config
            .identities
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                let known: Vec<_> = self.names().collect();
                anyhow::anyhow!(
                    "no dev identity named {name:?}; configured: {}",
                    known.join(", ")
                )
            })?;
        let now = now_unix();
        let claims = DevClaims {
            iss: DEV_ISSUER.into(),
            aud: DEV_AUDIENCE.into(),
            sub: who.name.clone(),
            email: who.email.clone(),
            groups: who.groups.clone(),
            iat: now,
            exp: now + self.config.token_ttl_secs,
            jti: Some(random_jti()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &self.encoding,
        )?)
    }
}

impl TokenVerifier for DevIdentities {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<VerifiedToken, AuthError>> {
        Box::pin(std::future::ready(self.verify_now(token)))
    }
}

impl DevIdentities {
    fn verify_now(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[DEV_ISSUER]);
        v.set_audience(&[DEV_AUDIENCE]);
        v.leeway = 30;
        let data = jsonwebtoken::decode::<DevClaims>(token, &self.decoding, &v).map_err(|e| {
            AuthError {
                reason: format!("dev token rejected: {e}"),
                hint: "mint a fresh token with `hoop-broker dev --state-dir DIR token NAME`, DIR being the dev broker's state dir (the directory of the token files its banner lists)",
            }
        })?;
        let c = data.claims;
        Ok(VerifiedToken {
            identity: Identity {
                subject: c.sub,
                email: c.email,
                groups: c.groups,
                issuer: c.iss,
                kind: IdentityKind::Human,
            },
            expires_at: c.exp,
            token_id: super::token_id(c.jti.as_deref(), token),
        })
    }
}

fn random_jti() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 12];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_foreign_ones_do_not() {
        let a = DevIdentities::ephemeral(DevConfig::default()).expect("key");
        let b = DevIdentities::ephemeral(DevConfig::default()).expect("key");
        let t = a.mint("alice").expect("mint");
        let v = a.verify_now(&t).expect("valid");
        assert_eq!(v.identity.subject, "alice");
        assert_eq!(v.identity.groups, vec!["eng".to_string()]);
        assert!(b.verify_now(&t).is_err(), "another key's token must fail");
        assert!(a.verify_now("not-a-jwt").is_err());
        assert!(a.mint("mallory").is_err());
    }
}
