//! A logged-in profile as a source of access tokens: [`LoginSession`] hands
//! out the stored access token while it has time left and otherwise
//! refreshes it silently with the refresh token (the `refresh_token` grant),
//! saving the new tokens at once — providers that rotate refresh tokens
//! (the test provider does, on every use) invalidate the old one, so losing
//! the new one would end the login at the next refresh.
//!
//! Several hoop processes may share one login (two `hoop connect`s, a
//! `whoami`). A refresh runs under the profile's cross-process lock
//! ([`TokenStore::lock`]) from reloading the store to saving the new tokens,
//! so no two processes ever spend the same refresh token: oidc-provider,
//! Keycloak and Okta take a replayed refresh token for a stolen one and
//! revoke the whole grant.

use std::path::Path;
use std::time::Duration;

use oauth2::{RefreshToken, RequestTokenError};

use super::claims::decode_unverified;
use super::http::{error_chain, oauth_client};
use super::oauth::{self, describe_refusal};
use super::store::{Location, StoreLock, StoredTokens, TokenStore};
use super::{now_unix, AuthError};

/// How long a refresh waits for another process's refresh of the same
/// profile to finish (one takes at most the HTTP client's 30 s timeout).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Refresh when the access token has less than this left…
pub const REFRESH_MARGIN_SECS: u64 = 60;

/// …or less than a fifth of its lifetime, if that is shorter: a 5-minute
/// token is refreshed with a minute left, a 10-second one with 2 s left
/// (rather than on every use).
pub fn refresh_margin(lifetime: Option<u64>) -> u64 {
    match lifetime {
        Some(l) => REFRESH_MARGIN_SECS.min(l / 5),
        None => REFRESH_MARGIN_SECS,
    }
}

/// Whether a token expiring at `expires_at` (lifetime `lifetime`, both in
/// seconds when known) should be refreshed at `now`. A token of unknown
/// expiry is used as it is; the broker says when it is no longer good.
pub fn needs_refresh(expires_at: Option<u64>, lifetime: Option<u64>, now: u64) -> bool {
    match expires_at {
        Some(exp) => exp <= now.saturating_add(refresh_margin(lifetime)),
        None => false,
    }
}

fn lifetime_of(t: &StoredTokens) -> Option<u64> {
    let c = decode_unverified(&t.access_token)?;
    Some(c.exp?.saturating_sub(c.iat?))
}

/// One profile's login, shared by everything in the process that needs a
/// token (the tunnel's reconnects and re-authentications).
pub struct LoginSession {
    store: TokenStore,
    http: reqwest::Client,
    /// Held across a refresh, so one refresh runs at a time in this
    /// process (the store's lock file does the same between processes):
    /// two at once would replay a rotated refresh token.
    tokens: tokio::sync::Mutex<StoredTokens>,
    location: std::sync::Mutex<Location>,
}

impl std::fmt::Debug for LoginSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSession")
            .field("profile", &self.store.profile())
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl LoginSession {
    /// The login of `profile`, if there is one. When the profile names an
    /// issuer, the stored tokens must be from it.
    pub fn open(
        profile: &str,
        data_dir: &Path,
        expected_issuer: Option<&str>,
    ) -> Result<Option<Self>, AuthError> {
        let store = TokenStore::open(profile, data_dir)?;
        let Some((tokens, location)) = store.load()? else {
            return Ok(None);
        };
        if let Some(want) = expected_issuer {
            if want.trim_end_matches('/') != tokens.issuer.trim_end_matches('/') {
                return Err(AuthError::Config(format!(
                    "profile {profile} is logged in to {} but its issuer is now {want}: run `hoop login`",
                    tokens.issuer
                )));
            }
        }
        Ok(Some(Self {
            store,
            http: super::http::client()?,
            tokens: tokio::sync::Mutex::new(tokens),
            location: std::sync::Mutex::new(location),
        }))
    }

    pub fn profile(&self) -> &str {
        self.store.profile()
    }

    pub fn location(&self) -> Location {
        self.location
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of the tokens as they are now (no refresh).
    pub async fn snapshot(&self) -> StoredTokens {
        self.tokens.lock().await.clone()
    }

    /// An access token with time left, refreshed first when needed.
    pub async fn access_token(&self) -> Result<String, AuthError> {
        self.access_token_inner(false).await
    }

    /// A newly refreshed access token, whatever the old one had left.
    pub async fn refreshed_access_token(&self) -> Result<String, AuthError> {
        self.access_token_inner(true).await
    }

    async fn access_token_inner(&self, force: bool) -> Result<String, AuthError> {
        let mut current = self.tokens.lock().await;
        let stale = |t: &StoredTokens| needs_refresh(t.expires_at, lifetime_of(t), now_unix());
        if !force && !stale(&current) {
            return Ok(current.access_token.clone());
        }
        // Held until the new tokens are saved (dropped on every return).
        // Bounded: the wait by LOCK_TIMEOUT, the refresh by the HTTP
        // client's timeout.
        let _cross_process = self.cross_process_lock().await?;
        // Another hoop process (a second `connect`, a `whoami`) may have
        // refreshed since we loaded; its refresh token is the live one, and
        // its access token as new as ours would be (also when forced).
        if let Some(stored) = self.reload().await? {
            if stored.access_token != current.access_token {
                *current = stored;
                if !stale(&current) {
                    tracing::debug!(
                        profile = self.profile(),
                        "using the tokens another hoop process refreshed"
                    );
                    return Ok(current.access_token.clone());
                }
            }
        }
        let now = now_unix();
        let Some(refresh_token) = current.refresh_token.clone() else {
            if current.expires_at.is_some_and(|e| e <= now) {
                return Err(AuthError::Rejected(format!(
                    "the access token of profile {} has expired and there is no refresh token (ask for the offline_access scope): run `hoop login`",
                    self.profile()
                )));
            }
            return Ok(current.access_token.clone());
        };
        let fresh = match self.refresh(&current, &refresh_token).await {
            Ok(t) => t,
            Err(e @ AuthError::Rejected(_)) => {
                // Lost a race with a process that does not take the lock
                // (an older hoop) and rotated the token first: adopt what
                // it saved.
                match self.reload().await? {
                    Some(s) if s.refresh_token != current.refresh_token && !stale(&s) => s,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let store = self.store.clone();
        let to_save = fresh.clone();
        match tokio::task::spawn_blocking(move || store.save(&to_save)).await {
            Ok(Ok(saved)) => {
                *self.location.lock().unwrap_or_else(|p| p.into_inner()) = saved.location;
            }
            // The new tokens still work in this process; say why the next
            // one will have to log in again.
            Ok(Err(e)) => tracing::warn!("refreshed tokens could not be saved: {e}"),
            Err(e) => tracing::warn!("refreshed tokens could not be saved: {e}"),
        }
        tracing::debug!(profile = self.profile(), expires_at = ?fresh.expires_at, "access token refreshed");
        *current = fresh;
        Ok(current.access_token.clone())
    }

    async fn cross_process_lock(&self) -> Result<StoreLock, AuthError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.lock(LOCK_TIMEOUT))
            .await
            .map_err(|e| AuthError::Store(format!("cannot lock the token store: {e}")))?
    }

    async fn reload(&self) -> Result<Option<StoredTokens>, AuthError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.load()).await {
            Ok(r) => Ok(r?.map(|(t, _)| t)),
            Err(e) => Err(AuthError::Store(format!(
                "cannot read the token store: {e}"
            ))),
        }
    }

    async fn refresh(
        &self,
        current: &StoredTokens,
        refresh_token: &str,
    ) -> Result<StoredTokens, AuthError> {
        let client = oauth::client(&current.client_id, &current.token_endpoint, None)?;
        let rt = RefreshToken::new(refresh_token.to_owned());
        let mut request = client
            .exchange_refresh_token(&rt)
            .map_err(|e| AuthError::Config(e.to_string()))?;
        if let Some(r) = &current.resource {
            request = request.add_extra_param("resource", r.as_str());
        }
        let resp = request
            .request_async(&oauth_client(&self.http))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => AuthError::Rejected(format!(
                    "the identity provider refused to refresh the login of profile {}: {}; run `hoop login`",
                    self.profile(),
                    describe_refusal(&r)
                )),
                RequestTokenError::Request(e) => AuthError::reaching(format!(
                    "{}: {}",
                    current.token_endpoint,
                    error_chain(&e)
                )),
                e => AuthError::reaching(format!(
                    "{} gave an answer hoop cannot read: {}",
                    current.token_endpoint,
                    error_chain(&e)
                )),
            })?;
        Ok(oauth::to_stored(&resp, current, Some(current)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_a_minute_before_expiry_or_a_fifth_of_a_short_life() {
        let now = 1_000_000;
        // Five-minute token: a minute's margin.
        assert!(!needs_refresh(Some(now + 61), Some(300), now));
        assert!(needs_refresh(Some(now + 60), Some(300), now));
        // Ten-second token: 2 s margin, not "always".
        assert!(!needs_refresh(Some(now + 3), Some(10), now));
        assert!(needs_refresh(Some(now + 2), Some(10), now));
        // Unknown lifetime: the minute.
        assert!(needs_refresh(Some(now + 30), None, now));
        assert!(!needs_refresh(Some(now + 3600), None, now));
        // Expired is always stale; unknown expiry never is.
        assert!(needs_refresh(Some(now - 1), Some(300), now));
        assert!(!needs_refresh(None, None, now));
    }
}
