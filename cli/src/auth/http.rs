//! HTTP to the identity provider: one reqwest client with short timeouts and
//! no redirects, and the adapter that lets the `oauth2` crate send its
//! requests through it. oauth2 5's own `reqwest` feature pins reqwest 0.12;
//! the workspace uses 0.13, so we implement its `AsyncHttpClient` contract
//! (a `Fn(HttpRequest) -> Future`) ourselves rather than build two reqwests.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};

use super::AuthError;

/// A reqwest client for talking to identity providers.
pub fn client() -> Result<reqwest::Client, AuthError> {
    // reqwest is built without a rustls provider in this workspace.
    hoop_broker::crypto::install_crypto_provider();
    reqwest::Client::builder()
        // Following redirects from a token endpoint can leak credentials to
        // another host (oauth2's own advice); providers do not need them.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("hoop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build an HTTP client: {e}")))
}

/// Why an HTTP exchange with the provider failed (no secrets inside:
/// reqwest's message names the URL, and our URLs carry none).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

type BoxFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

/// The `oauth2` HTTP client over our reqwest: pass `&oauth_client(&http)`
/// to any `request_async`.
pub fn oauth_client(http: &reqwest::Client) -> impl Fn(HttpRequest) -> BoxFuture + '_ {
    move |req: HttpRequest| -> BoxFuture {
        let http = http.clone();
        Box::pin(async move { send(&http, req).await })
    }
}

/// What [`oauth_client_observed`] calls with each response. It sees token
/// responses too: it must never log a body.
pub type Observer = std::sync::Arc<dyn Fn(&HttpResponse) + Send + Sync>;

/// [`oauth_client`], showing every response to `observe` before oauth2
/// reads it (the device flow's poll loop is inside oauth2; this is how
/// hoop learns that it was told to slow down).
pub fn oauth_client_observed(
    http: &reqwest::Client,
    observe: Observer,
) -> impl Fn(HttpRequest) -> BoxFuture + '_ {
    move |req: HttpRequest| -> BoxFuture {
        let http = http.clone();
        let observe = observe.clone();
        Box::pin(async move {
            let resp = send(&http, req).await?;
            observe(&resp);
            Ok(resp)
        })
    }
}

/// The OAuth error code of an error response (`{"error": "slow_down"}`),
/// read only from a 4xx answer (a 200 carries tokens, never parsed here).
pub fn oauth_error_code(resp: &HttpResponse) -> Option<String> {
    if !resp.status().is_client_error() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(resp.body()).ok()?;
    Some(v.get("error")?.as_str()?.to_owned())
}

async fn send(http: &reqwest::Client, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let req = reqwest::Request::try_from(req).map_err(|e| HttpError(e.to_string()))?;
    let resp = http
        .execute(req)
        .await
        .map_err(|e| HttpError(error_chain(&e)))?;
    let mut builder = http::Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        builder = builder.header(name, value);
    }
    let body = resp.bytes().await.map_err(|e| HttpError(error_chain(&e)))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

/// An error with its causes ("error sending request: connection refused"),
/// since reqwest's top-level message alone rarely says what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, but never trust a cycle.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

/// Refuses plain-HTTP URLs except to this machine: tokens and device codes
/// must not cross a network in clear, but a provider on loopback (tests, a
/// local dev IdP) has no network to cross.
pub fn require_secure(what: &str, url: &str) -> Result<oauth2::url::Url, AuthError> {
    let parsed = oauth2::url::Url::parse(url)
        .map_err(|e| AuthError::Config(format!("{what} {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(AuthError::Config(format!(
            "{what} {url} uses plain http; only https is allowed (http only for 127.0.0.1/localhost)"
        ))),
        other => Err(AuthError::Config(format!(
            "{what} {url} has scheme {other:?}; expected https"
        ))),
    }
}

fn is_loopback(url: &oauth2::url::Url) -> bool {
    match url.host() {
        Some(oauth2::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(oauth2::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_codes_only_from_client_errors() {
        let resp = |status: u16, body: &str| {
            http::Response::builder()
                .status(status)
                .body(body.as_bytes().to_vec())
                .unwrap()
        };
        let slow = r#"{"error":"slow_down"}"#;
        assert_eq!(
            oauth_error_code(&resp(400, slow)).as_deref(),
            Some("slow_down")
        );
        assert_eq!(oauth_error_code(&resp(200, slow)), None);
        assert_eq!(oauth_error_code(&resp(500, slow)), None);
        assert_eq!(oauth_error_code(&resp(400, "not json")), None);
        assert_eq!(oauth_error_code(&resp(400, r#"{"error":7}"#)), None);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(require_secure("issuer", "https://idp.example").is_ok());
        assert!(require_secure("issuer", "http://127.0.0.1:8080").is_ok());
        assert!(require_secure("issuer", "http://localhost:8080").is_ok());
        assert!(require_secure("issuer", "http://[::1]:8080").is_ok());
        assert!(require_secure("issuer", "http://idp.example").is_err());
        assert!(require_secure("issuer", "http://10.0.0.1").is_err());
        assert!(require_secure("issuer", "ftp://idp.example").is_err());
        assert!(require_secure("issuer", "not a url").is_err());
    }
}
