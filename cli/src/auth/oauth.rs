//! The `oauth2` client hoop uses (a public client: no secret, `client_id` in
//! the form body) with the OpenID `id_token` field its token responses
//! carry, and the conversion of a token response into [`StoredTokens`].

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    Client, ClientId, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, ExtraTokenFields,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::claims::decode_unverified;
use super::store::StoredTokens;
use super::{now_unix, AuthError};

/// The OpenID addition to an OAuth token response.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenFields {}

// oauth2 requires Debug on the fields; the id token is a credential.
impl std::fmt::Debug for IdTokenFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenFields")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub type OidcTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;

pub type OidcClient = Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
>;

/// A client for `client_id` at these endpoints.
pub fn client(
    client_id: &str,
    token_endpoint: &str,
    device_endpoint: Option<&str>,
) -> Result<OidcClient, AuthError> {
    let token_url = TokenUrl::new(token_endpoint.to_owned())
        .map_err(|e| AuthError::Config(format!("token endpoint {token_endpoint:?}: {e}")))?;
    let device_url = device_endpoint
        .map(|d| {
            DeviceAuthorizationUrl::new(d.to_owned())
                .map_err(|e| AuthError::Config(format!("device authorization endpoint {d:?}: {e}")))
        })
        .transpose()?;
    Ok(Client::new(ClientId::new(client_id.to_owned()))
        .set_token_uri_option(Some(token_url))
        .set_device_authorization_url_option(device_url)
        // A public client: the id goes in the body (there is no secret).
        .set_auth_type(oauth2::AuthType::RequestBody))
}

/// What a token response becomes in the store. `previous` supplies what a
/// refresh answer may leave out (RFC 6749 §6: the refresh token is kept
/// unless a new one is issued; an id token is optional on refresh).
pub fn to_stored(
    resp: &OidcTokenResponse,
    template: &StoredTokens,
    previous: Option<&StoredTokens>,
) -> StoredTokens {
    let access_token = resp.access_token().secret().clone();
    let expires_at = resp
        .expires_in()
        .map(|d| now_unix().saturating_add(d.as_secs()))
        .or_else(|| decode_unverified(&access_token).and_then(|c| c.exp));
    StoredTokens {
        access_token,
        refresh_token: resp
            .refresh_token()
            .map(|r| r.secret().clone())
            .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        id_token: resp
            .extra_fields()
            .id_token
            .clone()
            .or_else(|| previous.and_then(|p| p.id_token.clone())),
        expires_at,
        ..template.clone()
    }
}

/// The OAuth error code and description of a provider's refusal, for
/// messages (never the request, which may hold a token).
pub fn describe_refusal<T: oauth2::ErrorResponseType + std::fmt::Display>(
    e: &oauth2::StandardErrorResponse<T>,
) -> String {
    match e.error_description() {
        Some(d) => format!("{} ({d})", e.error()),
        None => e.error().to_string(),
    }
}
