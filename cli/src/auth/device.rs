//! The OAuth 2.0 device authorization grant (RFC 8628): ask the provider for
//! a user code, show it (and where to enter it) to the person, then poll the
//! token endpoint at the interval the provider asked for — 5 s more after
//! every `slow_down` — until they approve or deny, or the code expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oauth2::{DeviceCodeErrorResponseType, RequestTokenError, Scope};
use serde::Serialize;

use super::discovery::ProviderMetadata;
use super::http::{error_chain, oauth_client, oauth_client_observed, oauth_error_code};
use super::oauth::{self, describe_refusal};
use super::store::StoredTokens;
use super::{AuthConfig, AuthError};

/// What the person has to do, as `hoop login --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePrompt {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// Polling never outlasts this, whatever `expires_in` the provider sent.
const MAX_WAIT: Duration = Duration::from_secs(30 * 60);

/// Runs the whole grant. `prompt` is called once, as soon as the code is
/// known, to show it; the call returns when the person has decided.
pub async fn sign_in(
    http: &reqwest::Client,
    cfg: &AuthConfig,
    meta: &ProviderMetadata,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<StoredTokens, AuthError> {
    let device_endpoint = meta.device_authorization_endpoint.as_deref().ok_or_else(|| {
        AuthError::Config(format!(
            "the identity provider {} offers no device authorization endpoint; hoop login needs the device flow (RFC 8628) enabled for client {}",
            meta.issuer, cfg.client_id
        ))
    })?;
    let client = oauth::client(&cfg.client_id, &meta.token_endpoint, Some(device_endpoint))?;
    let http_client = oauth_client(http);

    let mut request = client
        .exchange_device_code()
        .map_err(|e| AuthError::Config(e.to_string()))?
        .add_scopes(cfg.scopes.iter().cloned().map(Scope::new));
    if let Some(r) = &cfg.resource {
        request = request.add_extra_param("resource", r.as_str());
    }
    let details: oauth2::StandardDeviceAuthorizationResponse = request
        .request_async(&http_client)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => AuthError::Rejected(format!(
                "the identity provider refused the device authorization request: {}; check client_id ({}) and scopes ({})",
                describe_refusal(&r),
                cfg.client_id,
                cfg.scopes.join(" ")
            )),
            RequestTokenError::Request(e) => {
                AuthError::reaching(format!("{device_endpoint}: {}", error_chain(&e)))
            }
            e => AuthError::reaching(format!(
                "{device_endpoint} gave an answer hoop cannot read: {}",
                error_chain(&e)
            )),
        })?;

    prompt(&DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in().as_secs(),
        interval: details.interval().as_secs(),
    });

    let mut poll = client
        .exchange_device_access_token(&details)
        .map_err(|e| AuthError::Config(e.to_string()))?
        // A provider that is briefly unreachable is retried with a doubling
        // interval, capped here (RFC 8628 §3.5 asks for a back-off).
        .set_max_backoff_interval(Duration::from_secs(30));
    if let Some(r) = &cfg.resource {
        poll = poll.add_extra_param("resource", r.as_str());
    }
    // oauth2 stops at this timeout with `expired_token`, so the loop is
    // bounded by the code's own lifetime (and by MAX_WAIT).
    let timeout = details.expires_in().min(MAX_WAIT);
    // oauth2 adds 5 s to the interval on each `slow_down` by itself; say so.
    let slowed = Arc::new(AtomicU64::new(0));
    let base_interval = details.interval().as_secs();
    let observer: super::http::Observer = {
        let slowed = slowed.clone();
        Arc::new(move |resp| {
            if oauth_error_code(resp).as_deref() == Some("slow_down") {
                let n = slowed.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                tracing::info!(
                    "the identity provider asked hoop to poll less often (slow_down); slowing down: polling every {}s",
                    base_interval.saturating_add(n.saturating_mul(5))
                );
            }
        })
    };
    let poll_client = oauth_client_observed(http, observer);
    let token = poll
        .request_async(&poll_client, tokio::time::sleep, Some(timeout))
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => AuthError::Denied,
                DeviceCodeErrorResponseType::ExpiredToken => AuthError::Expired,
                _ => AuthError::Rejected(format!(
                    "the identity provider refused the sign-in: {}",
                    describe_refusal(&r)
                )),
            },
            RequestTokenError::Request(e) => {
                AuthError::reaching(format!("{}: {}", meta.token_endpoint, error_chain(&e)))
            }
            e => AuthError::reaching(format!(
                "{} gave an answer hoop cannot read: {}",
                meta.token_endpoint,
                error_chain(&e)
            )),
        })?;

    let template = StoredTokens {
        access_token: String::new(),
        refresh_token: None,
        id_token: None,
        expires_at: None,
        issuer: meta.issuer.clone(),
        client_id: cfg.client_id.clone(),
        token_endpoint: meta.token_endpoint.clone(),
        revocation_endpoint: meta.revocation_endpoint.clone(),
        scopes: cfg.scopes.clone(),
        resource: cfg.resource.clone(),
    };
    Ok(oauth::to_stored(&token, &template, None))
}
