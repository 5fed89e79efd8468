//! An issuer's signing keys: found through OIDC discovery, fetched as a
//! JWKS, cached, and fetched again when a token names a key the cache does
//! not hold (the IdP rotated its keys) or the cache is old. Fetches are
//! rate-limited, so a flood of tokens with made-up `kid`s cannot turn the
//! broker into a load generator against the IdP, and a failed fetch keeps
//! the keys already known: the broker survives the IdP being briefly down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// Fetch again when a key is unknown, at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// After a failed fetch (the IdP down), try again sooner: still bounded,
/// but an IdP that comes back is used within seconds.
const MIN_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Fetch again on use when the keys are older than this.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// A discovery document or JWKS larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// One verification key and the family of algorithms it can check.
#[derive(Clone)]
pub struct SigningKey {
    pub key: DecodingKey,
    pub family: KeyFamily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Okp,
}

impl KeyFamily {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Ec => "EC",
            Self::Okp => "OKP (Ed25519)",
        }
    }
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, SigningKey>,
    /// Keys published without a `kid`; used only when a token has none.
    unnamed: Vec<SigningKey>,
    /// When these keys were fetched; read without the fetch lock, so a
    /// slow or failing fetch never holds up tokens whose key is known.
    fetched_at: Option<Instant>,
}

#[derive(Default)]
struct FetchState {
    jwks_uri: Option<reqwest::Url>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone)]
pub enum KeyLookupError {
    /// The keys were fetched (or could not be, see the text) and none has this kid.
    Unknown(String),
    /// The token has no `kid` and the issuer publishes more than one key.
    Ambiguous,
}

pub struct JwksCache {
    issuer: String,
    discovery_url: String,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl JwksCache {
    pub fn new(issuer: &str, discovery_url: &str, http: reqwest::Client) -> Self {
        Self {
            issuer: issuer.to_owned(),
            discovery_url: discovery_url.to_owned(),
            http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key a token names (`kid`), fetching the issuer's keys again when
    /// it is unknown or the cache is stale (both rate-limited).
    pub async fn key(&self, kid: Option<&str>) -> Result<SigningKey, KeyLookupError> {
        if let Some(k) = self.lookup(kid) {
            if !self.stale() {
                return Ok(k);
            }
            // Stale but known: fetch unless a fetch is already under way,
            // and keep using the old key if it fails.
            if let Ok(mut state) = self.fetch.try_lock() {
                let _ = self.refresh_locked(&mut state, false).await;
            }
            return Ok(self.lookup(kid).unwrap_or(k));
        }
        let fetched = self.refresh(false).await;
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let keys = self.snapshot();
        if kid.is_none() && keys.unnamed.len() + keys.by_kid.len() > 1 {
            return Err(KeyLookupError::Ambiguous);
        }
        let why = match fetched {
            Err(e) => format!("; fetching the issuer's keys failed: {e}"),
            Ok(false) => " (keys fetched less than 10 s ago; not fetched again)".into(),
            Ok(true) => String::new(),
        };
        Err(KeyLookupError::Unknown(match kid {
            Some(kid) => format!("no signing key with kid {kid:?} at {}{why}", self.issuer),
            None => format!(
                "the token names no kid and {} publishes no usable key{why}",
                self.issuer
            ),
        }))
    }

    fn lookup(&self, kid: Option<&str>) -> Option<SigningKey> {
        let keys = self.snapshot();
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            // Without a kid, a single published key is unambiguous.
            None => match (keys.by_kid.len(), keys.unnamed.len()) {
                (0, 1) => keys.unnamed.first().cloned(),
                (1, 0) => keys.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }

    fn stale(&self) -> bool {
        self.snapshot()
            .fetched_at
            .is_none_or(|t| t.elapsed() > MAX_AGE)
    }

    /// Fetches discovery (once) and the JWKS. `Ok(false)`: skipped, too
    /// soon after the last attempt (unless `force`).
    pub async fn refresh(&self, force: bool) -> Result<bool, String> {
        let mut state = self.fetch.lock().await;
        self.refresh_locked(&mut state, force).await
    }

    async fn refresh_locked(&self, state: &mut FetchState, force: bool) -> Result<bool, String> {
        let gap = if state.last_error.is_some() {
            MIN_RETRY_AFTER_FAILURE
        } else {
            MIN_REFETCH
        };
        if !force && state.last_attempt.is_some_and(|t| t.elapsed() < gap) {
            return match &state.last_error {
                Some(e) => Err(e.clone()),
                None => Ok(false),
            };
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch_keys(state).await {
            Ok(mut set) => {
                set.fetched_at = Some(Instant::now());
                let count = set.by_kid.len() + set.unnamed.len();
                match self.keys.write() {
                    Ok(mut k) => *k = Arc::new(set),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
                }
                state.last_error = None;
                tracing::debug!(issuer = %self.issuer, keys = count, "fetched signing keys");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, "cannot fetch signing keys: {e}");
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<KeySet, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let d: Discovery = self.get_json(&self.discovery_url).await?;
                if d.issuer != self.issuer {
                    return Err(format!(
                        "the discovery document at {} names issuer {:?}, not {:?}",
                        self.discovery_url, d.issuer, self.issuer
                    ));
                }
                let u =
                    crate::config::secure_url(&d.jwks_uri).map_err(|e| format!("jwks_uri {e}"))?;
                state.jwks_uri = Some(u.clone());
                u
            }
        };
        let set: JwkSet = self.get_json(jwks_uri.as_str()).await?;
        Ok(key_set(&set))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
    }
}

/// The usable keys of a JWKS. Symmetric (`oct`) keys are never used: a
/// token "signed" with a shared secret proves nothing about the IdP.
fn key_set(set: &JwkSet) -> KeySet {
    let mut out = KeySet::default();
    for jwk in &set.keys {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Okp,
            AlgorithmParameters::OctetKey(_) => continue,
        };
        // Keys marked for encryption only are not for checking signatures.
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let k = SigningKey { key, family };
        match &jwk.common.key_id {
            Some(kid) => {
                out.by_kid.insert(kid.clone(), k);
            }
            None => out.unnamed.push(k),
        }
    }
    out
}
