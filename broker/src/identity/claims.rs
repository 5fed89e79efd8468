//! Reading identity facts out of a token's verified claims: the subject,
//! the email and the groups, which IdPs put in different places
//! (`groups`, Keycloak's `realm_access.roles`, a space-separated string).

use serde_json::Value;

/// The value at a dotted `path` (`realm_access.roles`), if there is one.
pub fn at_path<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |v, part| v.as_object()?.get(part))
}

/// The groups at `path`: an array of strings, or one string holding
/// space- or comma-separated names. Anything else counts as no groups, so
/// an IdP that changes its token shape loses access rather than gaining it.
pub fn groups(claims: &Value, path: &str) -> Vec<String> {
    match at_path(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A claim as text, for matching: strings as they are, numbers and
/// booleans printed; objects and arrays never match.
pub fn as_text(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_from_arrays_nested_paths_and_strings() {
        let c = json!({
            "groups": ["eng", "", 7, "ml"],
            "realm_access": {"roles": ["approver"]},
            "scp": "a b,c",
            "weird": {"x": 1}
        });
        assert_eq!(groups(&c, "groups"), ["eng", "ml"]);
        assert_eq!(groups(&c, "realm_access.roles"), ["approver"]);
        assert_eq!(groups(&c, "scp"), ["a", "b", "c"]);
        assert!(groups(&c, "weird").is_empty());
        assert!(groups(&c, "missing.path").is_empty());
        assert!(groups(&c, "groups.0").is_empty());
    }

    #[test]
    fn claims_as_text() {
        let c = json!({"ref": "refs/heads/main", "run": 7, "ok": true, "o": {}});
        assert_eq!(as_text(&c, "ref").as_deref(), Some("refs/heads/main"));
        assert_eq!(as_text(&c, "run").as_deref(), Some("7"));
        assert_eq!(as_text(&c, "ok").as_deref(), Some("true"));
        assert_eq!(as_text(&c, "o"), None);
        assert_eq!(as_text(&c, "none"), None);
    }
}
