//! Reading a JWT's claims locally, for display (`hoop whoami`) and for the
//! expiry of a token the provider sent without `expires_in`. No signature
//! is checked here: the broker verifies every token it is given, and the
//! CLI only shows a person what their own token says.

use base64::Engine;
use serde::Deserialize;

/// The claims hoop shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
}

/// The payload claims of a compact JWS, or `None` when `token` is not one
/// (an opaque access token, say).
pub fn decode_unverified(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // base64url without padding per RFC 7515; tolerate padding anyway.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Providers send `groups` as a list, a few as one string.
fn string_or_list<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<serde_json::Value>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None | Some(OneOrMany::Other(_)) => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(
            v.into_iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
        ),
    })
}

/// The claims to show: the access token's, with gaps filled from the id
/// token (an access token need not carry email or groups).
pub fn merged(access_token: &str, id_token: Option<&str>) -> Claims {
    let at = decode_unverified(access_token).unwrap_or_default();
    let id = id_token.and_then(decode_unverified).unwrap_or_default();
    Claims {
        sub: at.sub.or(id.sub),
        email: at.email.or(id.email),
        groups: at.groups.or(id.groups),
        iss: at.iss.or(id.iss),
        // The id token's expiry says nothing about the access token's.
        exp: at.exp,
        iat: at.iat,
    }
}

#[cfg(test)]
pub(crate) fn fake_jwt(claims: &serde_json::Value) -> String {
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        e(br#"{"alg":"RS256","typ":"at+jwt"}"#),
        e(claims.to_string().as_bytes()),
        e(b"not-a-signature")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_payload_without_verifying() {
        let t = fake_jwt(&json!({
            "sub": "alice", "email": "alice@bank.example", "groups": ["eng", 7],
            "iss": "http://127.0.0.1:1", "exp": 1_900_000_000u64, "aud": "hoop-broker"
        }));
        let c = decode_unverified(&t).unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.email.as_deref(), Some("alice@bank.example"));
        assert_eq!(c.groups, Some(vec!["eng".to_owned()]));
        assert_eq!(c.iss.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.exp, Some(1_900_000_000));
    }

    #[test]
    fn groups_may_be_one_string_and_non_jwts_decode_to_nothing() {
        let c = decode_unverified(&fake_jwt(&json!({"groups": "eng"}))).unwrap();
        assert_eq!(c.groups, Some(vec!["eng".to_owned()]));
        assert!(decode_unverified("opaque-token").is_none());
        assert!(decode_unverified("a.b").is_none());
        assert!(decode_unverified("a.!!!.c").is_none());
        assert!(decode_unverified("a.b.c.d").is_none());
    }

    #[test]
    fn the_id_token_fills_gaps_but_not_the_expiry() {
        let at = fake_jwt(&json!({"sub": "alice", "exp": 100}));
        let id = fake_jwt(&json!({"sub": "x", "email": "a@b", "groups": ["g"], "exp": 999}));
        let c = merged(&at, Some(&id));
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.email.as_deref(), Some("a@b"));
        assert_eq!(c.groups, Some(vec!["g".to_owned()]));
        assert_eq!(c.exp, Some(100));
        let c = merged("opaque", Some(&id));
        assert_eq!(c.sub.as_deref(), Some("x"));
        assert_eq!(c.exp, None);
    }
}
