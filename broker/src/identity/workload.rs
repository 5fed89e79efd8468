//! Workload identities: a CI job's or a service account's token becomes a
//! named workload (`workload:<name>`) with its own groups, by the first
//! rule in the issuer's config whose claims all match. Tokens no rule
//! matches are refused: a workload issuer (GitHub Actions, say) signs
//! tokens for every repository on it, not only the bank's.

use serde_json::Value;

use super::claims;
use crate::config::WorkloadRule;

/// The rule a token's claims match, if any.
pub fn matching<'r>(rules: &'r [WorkloadRule], token: &Value) -> Option<&'r WorkloadRule> {
    rules.iter().find(|rule| {
        rule.claims.iter().all(|(name, want)| {
            claims::as_text(token, name).is_some_and(|have| claim_matches(want, &have))
        })
    })
}

/// `want` exactly, or as a prefix when it ends in `*`.
fn claim_matches(want: &str, have: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => have.starts_with(prefix),
        None => want == have,
    }
}

/// The subject a matched workload acts as.
pub fn subject(rule: &WorkloadRule) -> String {
    format!("workload:{}", rule.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(name: &str, claims: &[(&str, &str)]) -> WorkloadRule {
        WorkloadRule {
            name: name.into(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            groups: vec![format!("{name}-group")],
        }
    }

    #[test]
    fn first_rule_whose_claims_all_match_wins() {
        let rules = [
            rule(
                "deploy",
                &[
                    ("repository", "bank/models"),
                    ("ref", "refs/heads/main"),
                    ("environment", "prod"),
                ],
            ),
            rule(
                "release",
                &[("repository", "bank/models"), ("ref", "refs/tags/v*")],
            ),
            rule("any-models", &[("repository", "bank/models")]),
        ];
        let main =
            json!({"repository": "bank/models", "ref": "refs/heads/main", "environment": "prod"});
        assert_eq!(
            matching(&rules, &main).map(|r| r.name.as_str()),
            Some("deploy")
        );
        let tag = json!({"repository": "bank/models", "ref": "refs/tags/v1.2"});
        assert_eq!(
            matching(&rules, &tag).map(|r| r.name.as_str()),
            Some("release")
        );
        let pr =
            json!({"repository": "bank/models", "ref": "refs/pull/7/merge", "environment": ""});
        assert_eq!(
            matching(&rules, &pr).map(|r| r.name.as_str()),
            Some("any-models")
        );
        let other =
            json!({"repository": "evil/models", "ref": "refs/heads/main", "environment": "prod"});
        assert!(matching(&rules, &other).is_none());
        // A claim that is an object never matches a string rule.
        let odd = json!({"repository": {"name": "bank/models"}});
        assert!(matching(&rules, &odd).is_none());
        assert_eq!(subject(&rules[0]), "workload:deploy");
    }
}
