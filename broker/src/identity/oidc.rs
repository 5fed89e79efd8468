//! Verifying tokens from the issuers the broker trusts: OIDC access tokens
//! of people (`hoop login`) and workload tokens of CI jobs and services.
//!
//! The checks run cheapest first and each refusal says precisely why (for
//! the broker's log; the client only hears "authentication failed"):
//! size, shape, algorithm (asymmetric only: `none` and HMAC are refused
//! before any key is looked at, which closes the "HS256 signed with the
//! RSA public key" trick), issuer, signing key, signature, then audience,
//! expiry, not-before and issued-at with a small leeway.

use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{JwksCache, KeyFamily, KeyLookupError};
use super::{
    claims, now_unix, workload, AuthError, Identity, IdentityKind, TokenVerifier, VerifiedToken,
};
use crate::config::{IssuerConfig, IssuerKind};

/// Longer tokens are refused before any parsing. Real access tokens are
/// 1-4 KiB; a group-heavy one may reach 8.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const HINT_LOGIN: &str = "run `hoop login` again, or check the token you passed";

struct TrustedIssuer {
    config: IssuerConfig,
    algorithms: Vec<Algorithm>,
    keys: JwksCache,
}

/// Verifies tokens against every configured issuer.
pub struct OidcVerifier {
    issuers: Vec<TrustedIssuer>,
}

impl OidcVerifier {
    pub fn new(configs: &[IssuerConfig]) -> anyhow::Result<Self> {
        // reqwest's rustls needs the process-wide provider before a client exists.
        crate::crypto::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            // A redirect could lead from https to anywhere: keys come from
            // the configured (and checked) addresses only.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut issuers = Vec::new();
        for c in configs {
            let discovery = c.discovery_url.clone().unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    c.issuer.trim_end_matches('/')
                )
            });
            let algorithms = c
                .algorithms
                .iter()
                .map(|a| parse_algorithm(a))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow::anyhow!("issuer {}: unknown algorithm", c.issuer))?;
            issuers.push(TrustedIssuer {
                keys: JwksCache::new(&c.issuer, &discovery, http.clone()),
                algorithms,
                config: c.clone(),
            });
        }
        Ok(Self { issuers })
    }

    /// Fetches every issuer's keys now. An issuer that cannot be reached
    /// is logged, not fatal: its keys are fetched again on first use.
    pub async fn prefetch(&self) {
        for i in &self.issuers {
            if let Err(e) = i.keys.refresh(true).await {
                tracing::warn!(issuer = %i.config.issuer, "signing keys not available yet: {e}");
            }
        }
    }

    async fn verify_token(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refuse(format!(
                "token is {} bytes, over the {MAX_TOKEN_BYTES}-byte limit",
                token.len()
            )));
        }
        let (header, payload) = split(token)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("token header names no algorithm (alg)".into()))?;
        let Some(algorithm) = parse_algorithm(alg) else {
            return Err(refuse(format!(
                "algorithm {alg:?} is not accepted: only asymmetric signatures ({}) are",
                crate::config::ASYMMETRIC_ALGORITHMS.join(", ")
            )));
        };
        let iss = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("token has no issuer (iss)".into()))?;
        let Some(issuer) = self.issuers.iter().find(|i| i.config.issuer == iss) else {
            return Err(refuse(format!(
                "issuer {iss:?} is not trusted by this broker"
            )));
        };
        if !issuer.algorithms.contains(&algorithm) {
            return Err(refuse(format!(
                "algorithm {alg} is not accepted for issuer {iss} (configured: {})",
                issuer.config.algorithms.join(", ")
            )));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let key = issuer.keys.key(kid).await.map_err(|e| match e {
            KeyLookupError::Unknown(reason) => refuse(reason),
            KeyLookupError::Ambiguous => refuse(format!(
                "the token names no kid and {iss} publishes several keys"
            )),
        })?;
        let family = match algorithm {
            Algorithm::RS256 | Algorithm::PS256 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::Ec,
            _ => KeyFamily::Okp,
        };
        if key.family != family {
            return Err(refuse(format!(
                "the token says {alg} but key {} is {}",
                kid.unwrap_or("(no kid)"),
                key.family.name()
            )));
        }
        let mut v = Validation::new(algorithm);
        v.leeway = issuer.config.leeway_secs;
        v.validate_nbf = true;
        v.set_audience(&[issuer.config.audience.as_str()]);
        v.set_issuer(&[issuer.config.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &v)
            .map_err(|e| refuse(describe(&e, &payload, &issuer.config)))?;
        let claims = data.claims;
        let now = now_unix();
        if let Some(iat) = claims.get("iat").and_then(Value::as_u64) {
            if iat > now + issuer.config.leeway_secs {
                return Err(refuse(format!(
                    "token issued in the future (iat {iat}, now {now})"
                )));
            }
        }
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        // The leeway forgives clock skew on the way in, but a session whose
        // token has already lapsed on this broker's clock would be ended the
        // moment it began.
        if exp <= now {
            return Err(refuse(format!(
                "token expired at {exp} ({} s ago)",
                now - exp
            )));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refuse("token has an empty subject (sub)".into()))?;
        let identity = match issuer.config.kind {
            IssuerKind::Human => Identity {
                subject: sub.to_owned(),
                email: claims
                    .get("email")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                groups: claims::groups(&claims, &issuer.config.groups_claim),
                issuer: iss.to_owned(),
                kind: IdentityKind::Human,
            },
            IssuerKind::Workload => {
                let Some(rule) = workload::matching(&issuer.config.workloads, &claims) else {
                    return Err(refuse(format!(
                        "workload token for {sub:?} matches no [[issuers.workloads]] rule of {iss}"
                    )));
                };
                Identity {
                    subject: workload::subject(rule),
                    email: None,
                    groups: rule.groups.clone(),
                    issuer: iss.to_owned(),
                    kind: IdentityKind::Workload,
                }
            }
        };
        Ok(VerifiedToken {
            identity,
            expires_at: exp,
            token_id: super::token_id(claims.get("jti").and_then(Value::as_str), token),
        })
    }
}

impl TokenVerifier for OidcVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<VerifiedToken, AuthError>> {
        Box::pin(self.verify_token(token))
    }
}

fn refuse(reason: String) -> AuthError {
    AuthError {
        reason,
        hint: HINT_LOGIN,
    }
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The header and payload of a compact JWS, decoded but not yet trusted:
/// only used to pick the issuer and key, and to word refusals.
fn split(token: &str) -> Result<(Value, Value), AuthError> {
    let not_jwt = |why: &str| refuse(format!("not a JWT: {why}"));
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_jwt("expected three dot-separated parts"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, AuthError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| not_jwt(&format!("the {what} is not base64url")))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| not_jwt(&format!("the {what} is not JSON")))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(not_jwt(&format!("the {what} is not a JSON object")))
        }
    };
    Ok((decode(h, "header")?, decode(p, "payload")?))
}

/// Words a jsonwebtoken error for the broker's log.
fn describe(e: &jsonwebtoken::errors::Error, payload: &Value, issuer: &IssuerConfig) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    let now = now_unix();
    let num = |name: &str| payload.get(name).and_then(Value::as_u64).unwrap_or(0);
    match e.kind() {
        K::InvalidSignature => "signature does not verify against the issuer's key".into(),
        K::ExpiredSignature => {
            let exp = num("exp");
            format!("token expired at {exp} ({} s ago)", now.saturating_sub(exp))
        }
        K::ImmatureSignature => {
            let nbf = num("nbf");
            format!(
                "token not valid before {nbf} (in {} s)",
                nbf.saturating_sub(now)
            )
        }
        K::InvalidAudience => format!(
            "audience {} is not this broker's ({:?})",
            payload
                .get("aud")
                .map(Value::to_string)
                .unwrap_or_else(|| "(none)".into()),
            issuer.audience
        ),
        K::InvalidIssuer => "issuer does not match".into(),
        K::MissingRequiredClaim(c) => format!("token has no {c} claim"),
        K::InvalidAlgorithm => "algorithm does not match the key".into(),
        other => format!("token rejected: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_that_are_not_jwts_are_refused_with_a_reason() {
        for (t, want) in [
            ("abc", "three dot-separated parts"),
            ("a.b.c.d", "three dot-separated parts"),
            ("!!.e30.x", "header is not base64url"),
            ("bm90IGpzb24.e30.x", "header is not JSON"),
            ("WzFd.e30.x", "header is not a JSON object"),
        ] {
            let e = split(t).unwrap_err();
            assert!(e.reason.contains(want), "{t}: {}", e.reason);
        }
        let (h, p) = split("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.").unwrap();
        assert_eq!(h["alg"], "none");
        assert_eq!(p["iss"], "x");
    }

    #[test]
    fn only_asymmetric_algorithms_parse() {
        for a in ["RS256", "PS256", "ES256", "EdDSA"] {
            assert!(parse_algorithm(a).is_some(), "{a}");
        }
        for a in ["none", "HS256", "HS512", "RS384", "", "rs256"] {
            assert!(parse_algorithm(a).is_none(), "{a}");
        }
    }
}
