//! Reading a JWT's claims locally, for display (`hoop whoami`) and for the
//! expiry of a token the provider sent without `expires_in`. No signature
//! is checked here: the broker verifies every token it is given, and the
//! CLI only shows a person what their own token says.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the broker reads groups when the profile names no `groups_claim`
/// (the broker's own default too).
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// The plain claims of one token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
}

/// The payload of a compact JWS as JSON, or `None` when `token` is not one
/// (an opaque access token, say).
pub fn payload_unverified(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // base64url without padding per RFC 7515; tolerate padding anyway.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

/// The payload claims of a compact JWS, or `None` when `token` is not one.
pub fn decode_unverified(token: &str) -> Option<Claims> {
    serde_json::from_value(payload_unverified(token)?).ok()
}

/// Whether `path` can name a claim: dot-separated, no empty part.
pub fn valid_claim_path(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(|part| !part.is_empty())
}

/// The value at a dotted `path` (`realm_access.roles`), if there is one.
fn at_path<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |v, part| v.as_object()?.get(part))
}

/// The groups at `path` as the broker reads them
/// (`hoop_broker::identity::claims::groups`): an array of strings, or one
/// string of space- or comma-separated names; any other shape is no
/// groups. `None` when the claims have nothing at `path`.
pub fn groups_at(claims: &Value, path: &str) -> Option<Vec<String>> {
    Some(match at_path(claims, path)? {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::String(s) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    })
}

/// Which token the groups shown came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsFrom {
    /// The access token: what the broker sees and decides on.
    AccessToken,
    /// The id token, because the access token has nothing at the path.
    /// The broker never sees the id token, so it will not see these.
    IdToken,
}

impl GroupsFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::IdToken => "id_token",
        }
    }
}

/// What `hoop login` and `hoop whoami` show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub sub: Option<String>,
    pub email: Option<String>,
    /// At the profile's `groups_claim`; `None` when neither token has it.
    pub groups: Option<Vec<String>>,
    pub groups_from: Option<GroupsFrom>,
    pub iss: Option<String>,
    /// The access token's expiry (never the id token's).
    pub exp: Option<u64>,
}

/// The claims to show: the access token's, with gaps filled from the id
/// token (an access token need not carry email). Groups are read at
/// `groups_claim` like the broker does, from the access token whenever it
/// has that claim, and from the id token only when it does not.
pub fn shown(access_token: &str, id_token: Option<&str>, groups_claim: &str) -> Shown {
    let at_payload = payload_unverified(access_token);
    let id_payload = id_token.and_then(payload_unverified);
    let plain = |p: &Option<Value>| -> Claims {
        p.clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    };
    let (at, id) = (plain(&at_payload), plain(&id_payload));
    let (groups, groups_from) = match at_payload.as_ref().and_then(|p| groups_at(p, groups_claim)) {
        Some(g) => (Some(g), Some(GroupsFrom::AccessToken)),
        None => match id_payload.as_ref().and_then(|p| groups_at(p, groups_claim)) {
            Some(g) => (Some(g), Some(GroupsFrom::IdToken)),
            None => (None, None),
        },
    };
    Shown {
        sub: at.sub.or(id.sub),
        email: at.email.or(id.email),
        groups,
        groups_from,
        iss: at.iss.or(id.iss),
        exp: at.exp,
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
        assert_eq!(c.iss.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.exp, Some(1_900_000_000));
    }

    #[test]
    fn non_jwts_decode_to_nothing() {
        assert!(decode_unverified("opaque-token").is_none());
        assert!(decode_unverified("a.b").is_none());
        assert!(decode_unverified("a.!!!.c").is_none());
        assert!(decode_unverified("a.b.c.d").is_none());
        // A JSON payload that is not an object is not a claim set.
        assert!(payload_unverified(&fake_jwt(&json!(["x"]))).is_none());
    }

    #[test]
    fn groups_are_read_at_a_dotted_path() {
        let c = json!({
            "groups": ["eng", "", 7, "ml"],
            "realm_access": {"roles": ["approver", "offline_access"]},
            "roles": "a b,c",
            "scp": "",
            "weird": {"x": 1},
            "deep": {"a": {"b": ["x"]}},
        });
        let g = |p: &str| groups_at(&c, p);
        assert_eq!(g("groups"), Some(vec!["eng".into(), "ml".into()]));
        assert_eq!(
            g("realm_access.roles"),
            Some(vec!["approver".into(), "offline_access".into()])
        );
        assert_eq!(g("roles"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(g("deep.a.b"), Some(vec!["x".into()]));
        // Present but empty or of another shape: no groups, but present.
        assert_eq!(g("scp"), Some(vec![]));
        assert_eq!(g("weird"), Some(vec![]));
        // Absent: a missing part, a path through a non-object, a prefix.
        assert_eq!(g("missing"), None);
        assert_eq!(g("realm_access.missing"), None);
        assert_eq!(g("groups.x"), None);
        assert_eq!(g("roles.x"), None);
        assert_eq!(g("realm_access.roles.x"), None);
        assert_eq!(g("realm"), None);
    }

    #[test]
    fn groups_match_what_the_broker_reads() {
        let c = json!({
            "groups": ["eng", "", 7], "realm_access": {"roles": ["r"]},
            "roles": "a, b", "weird": 3
        });
        for path in [
            "groups",
            "realm_access.roles",
            "roles",
            "weird",
            "missing",
            "a..b",
        ] {
            assert_eq!(
                groups_at(&c, path).unwrap_or_default(),
                hoop_broker::identity::claims::groups(&c, path),
                "{path}"
            );
        }
    }

    #[test]
    fn claim_paths_need_every_part() {
        assert!(valid_claim_path("groups"));
        assert!(valid_claim_path("realm_access.roles"));
        assert!(!valid_claim_path(""));
        assert!(!valid_claim_path(".groups"));
        assert!(!valid_claim_path("realm_access."));
        assert!(!valid_claim_path("a..b"));
    }

    #[test]
    fn the_id_token_fills_gaps_but_not_the_expiry() {
        let at = fake_jwt(&json!({"sub": "alice", "exp": 100}));
        let id = fake_jwt(&json!({"sub": "x", "email": "a@b", "groups": ["g"], "exp": 999}));
        let c = shown(&at, Some(&id), "groups");
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.email.as_deref(), Some("a@b"));
        assert_eq!(c.groups, Some(vec!["g".to_owned()]));
        assert_eq!(c.groups_from, Some(GroupsFrom::IdToken));
        assert_eq!(c.exp, Some(100));
        let c = shown("opaque", Some(&id), "groups");
        assert_eq!(c.sub.as_deref(), Some("x"));
        assert_eq!(c.groups_from, Some(GroupsFrom::IdToken));
        assert_eq!(c.exp, None);
    }

    #[test]
    fn groups_never_come_from_the_id_token_when_the_access_token_has_the_claim() {
        let id = fake_jwt(&json!({"groups": ["admins"], "realm_access": {"roles": ["root"]}}));
        // Present in the access token, even empty: the broker sees that.
        let at = fake_jwt(&json!({"sub": "a", "groups": []}));
        let c = shown(&at, Some(&id), "groups");
        assert_eq!(c.groups, Some(vec![]));
        assert_eq!(c.groups_from, Some(GroupsFrom::AccessToken));
        // Read at the configured path, in the access token first.
        let at =
            fake_jwt(&json!({"sub": "a", "groups": ["eng"], "realm_access": {"roles": ["dev"]}}));
        let c = shown(&at, Some(&id), "realm_access.roles");
        assert_eq!(c.groups, Some(vec!["dev".to_owned()]));
        assert_eq!(c.groups_from, Some(GroupsFrom::AccessToken));
        // The default path is not consulted when another one is configured.
        let at = fake_jwt(&json!({"sub": "a", "groups": ["eng"]}));
        let c = shown(&at, None, "realm_access.roles");
        assert_eq!((c.groups, c.groups_from), (None, None));
        let c = shown(&at, Some(&id), "realm_access.roles");
        assert_eq!(c.groups, Some(vec!["root".to_owned()]));
        assert_eq!(c.groups_from, Some(GroupsFrom::IdToken));
        assert_eq!(GroupsFrom::IdToken.as_str(), "id_token");
        assert_eq!(
            serde_json::to_value(GroupsFrom::AccessToken).unwrap(),
            json!("access_token")
        );
    }
}
