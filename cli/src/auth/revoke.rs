//! Token revocation at the provider (RFC 7009) for `hoop logout`, as a
//! public client (`client_id` in the form body, no secret). Written over
//! reqwest directly: oauth2's revocation request refuses any `http://`
//! endpoint, which would rule out a provider on loopback; we apply our own
//! rule instead (https, or http to this machine only).

use super::http::{error_chain, require_secure};

/// Revokes `token` (a refresh token, by `hint`) at `endpoint`.
pub async fn revoke(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    token: &str,
    hint: &str,
) -> Result<(), String> {
    require_secure("revocation_endpoint", endpoint).map_err(|e| e.to_string())?;
    let body = oauth2::url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("token_type_hint", hint)
        .append_pair("client_id", client_id)
        .finish();
    let resp = http
        .post(endpoint)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {}", error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    // The error body is the provider's JSON ({"error": ...}); show its code
    // and description only, never anything we sent.
    let text = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let code = v.get("error")?.as_str()?.to_owned();
            Some(match v.get("error_description").and_then(|d| d.as_str()) {
                Some(d) => format!("{code} ({d})"),
                None => code,
            })
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(format!("{endpoint} refused the revocation: {detail}"))
}
