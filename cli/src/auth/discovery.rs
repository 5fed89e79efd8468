//! OpenID Connect discovery: where the provider's device, token and
//! revocation endpoints are, read from `/.well-known/openid-configuration`
//! under the configured issuer, and the check that the document really is
//! that issuer's (OpenID Connect Discovery 1.0 §4.3).

use serde::Deserialize;

use super::http::{error_chain, require_secure};
use super::AuthError;

/// The parts of the discovery document hoop uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// The discovery URL for an issuer (a path in the issuer is kept).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the discovery document of `issuer`.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<ProviderMetadata, AuthError> {
    require_secure("issuer", issuer)?;
    let url = discovery_url(issuer);
    let resp = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| AuthError::reaching(format!("{url}: {}", error_chain(&e))))?;
    let status = resp.status();
    // A 4xx is the provider reached at a wrong URL: fixing the issuer, not
    // retrying, is what helps. A 5xx is the provider in trouble.
    if status.is_client_error() {
        return Err(AuthError::Config(format!(
            "{url} answered HTTP {status}: no OpenID provider there; fix `issuer` in the profile (or --issuer) to the provider's exact issuer URL"
        )));
    }
    if !status.is_success() {
        return Err(AuthError::reaching(format!("{url} answered HTTP {status}")));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| AuthError::reaching(format!("{url}: {}", error_chain(&e))))?;
    let meta: ProviderMetadata = serde_json::from_slice(&body).map_err(|e| {
        AuthError::Config(format!(
            "{url} is not an OpenID discovery document ({e}); fix `issuer` in the profile (or --issuer) to the provider's exact issuer URL"
        ))
    })?;
    check(issuer, meta, &url)
}

/// The pure part of [`discover`]: the issuer must match, and the endpoints
/// hoop will send tokens to must be safe.
fn check(issuer: &str, meta: ProviderMetadata, url: &str) -> Result<ProviderMetadata, AuthError> {
    // The spec wants an exact match; a trailing slash is the one difference
    // people type by accident and it names the same issuer.
    if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(AuthError::WrongIssuer {
            configured: issuer.to_owned(),
            discovered: meta.issuer,
            url: url.to_owned(),
        });
    }
    require_secure("token_endpoint", &meta.token_endpoint)?;
    if let Some(d) = &meta.device_authorization_endpoint {
        require_secure("device_authorization_endpoint", d)?;
    }
    if let Some(r) = &meta.revocation_endpoint {
        require_secure("revocation_endpoint", r)?;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(issuer: &str) -> ProviderMetadata {
        ProviderMetadata {
            issuer: issuer.into(),
            token_endpoint: "https://idp.example/token".into(),
            device_authorization_endpoint: Some("https://idp.example/device".into()),
            revocation_endpoint: None,
        }
    }

    #[test]
    fn the_issuer_must_match() {
        assert!(check("https://idp.example", meta("https://idp.example"), "u").is_ok());
        assert!(check("https://idp.example/", meta("https://idp.example"), "u").is_ok());
        let e = check("https://idp.example", meta("https://evil.example"), "u").unwrap_err();
        assert!(matches!(e, AuthError::WrongIssuer { .. }), "{e}");
        assert!(e.to_string().contains("wrong issuer"), "{e}");
    }

    #[test]
    fn discovery_url_keeps_a_path() {
        assert_eq!(
            discovery_url("https://idp.example/realms/bank/"),
            "https://idp.example/realms/bank/.well-known/openid-configuration"
        );
    }

    #[test]
    fn endpoints_must_be_https_off_loopback() {
        let mut m = meta("https://idp.example");
        m.token_endpoint = "http://idp.example/token".into();
        assert!(check("https://idp.example", m, "u").is_err());
    }
}
