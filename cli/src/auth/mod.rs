//! Signing in a person with their organisation's OpenID provider and keeping
//! the resulting tokens fresh: OIDC discovery (`discovery`), the OAuth 2.0
//! device authorization grant of RFC 8628 (`device`), the token store in the
//! OS keyring or a 0600 file (`store`), silent refresh with the refresh token
//! (`refresh`), RFC 7009 revocation (`revoke`), and local, unverified reading
//! of token claims for display (`claims`). The broker verifies every token;
//! nothing here decides anything about access.

pub mod claims;
pub mod device;
pub mod discovery;
pub mod http;
pub mod oauth;
pub mod refresh;
pub mod revoke;
pub mod store;

use crate::commands::{exit, CommandError};

/// The identity-provider settings of one profile, after flags were applied.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The profile these tokens belong to (`default` when none was named).
    pub profile: String,
    /// The issuer URL exactly as the provider names itself.
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// RFC 8707 resource indicator, sent only when configured.
    pub resource: Option<String>,
}

pub const DEFAULT_CLIENT_ID: &str = "hoop-cli";
pub const DEFAULT_SCOPES: &str = "openid offline_access email groups";

/// Why signing in, refreshing or reading tokens failed, in words a user can
/// act on. Each kind maps to one of the CLI's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the sign-in was denied at the identity provider")]
    Denied,
    #[error("the code expired before it was approved; run `hoop login` again")]
    Expired,
    #[error("wrong issuer: the profile names {configured} but the discovery document at {url} says its issuer is {discovered}; fix `issuer` in the profile (or --issuer) to the provider's exact issuer URL")]
    WrongIssuer {
        configured: String,
        discovered: String,
        url: String,
    },
    #[error("cannot reach the identity provider: {0}")]
    Unreachable(String),
    /// The provider answered, but this machine does not trust its TLS
    /// certificate.
    #[error("the identity provider's certificate is not trusted: {0}")]
    Untrusted(String),
    /// No token of any kind for this profile: no `hoop login`, no token
    /// file, no `HOOP_TOKEN`.
    #[error("not logged in (profile {profile})")]
    NotLoggedIn {
        profile: String,
        /// `hoop login` with the flags that pick this profile and config.
        login: String,
        /// A command that could take a token another way (`--token-file`,
        /// `HOOP_TOKEN`), so the hint names those too.
        other_ways: bool,
    },
    /// The provider answered but refused (e.g. a refresh token that was
    /// revoked or expired).
    #[error("{0}")]
    Rejected(String),
    /// Local settings are wrong or missing.
    #[error("{0}")]
    Config(String),
    /// The token store could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The profile's tokens are in the OS keyring, which cannot be read
    /// now. Nothing was changed: the secret is still there.
    #[error("the tokens of profile {profile} are in the OS keyring, which cannot be read now ({reason}); use hoop where the keyring works, or run `hoop login` again")]
    KeyringUnreadable { profile: String, reason: String },
    /// The OS keyring could not delete the tokens it holds.
    #[error("{0}")]
    Keyring(String),
}

impl AuthError {
    /// A failed exchange with the provider: untrusted when TLS refused its
    /// certificate (reqwest says so only in its message), else unreachable.
    pub fn reaching(what: String) -> Self {
        if what.contains("invalid peer certificate") || what.contains("certificate verify failed") {
            Self::Untrusted(what)
        } else {
            Self::Unreachable(what)
        }
    }

    /// The next step, where the message does not already say it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotLoggedIn {
                login, other_ways, ..
            } => Some(match other_ways {
                true => format!("run `{login}`, or pass --token-file FILE / set HOOP_TOKEN"),
                false => format!("run `{login}`"),
            }),
            Self::Denied => Some(
                "if you denied it, run `hoop login` again and approve the code; if the identity provider refused you, ask its administrators to give you access to the hoop-cli client".into(),
            ),
            Self::Unreachable(_) => Some(
                "check the issuer URL (--issuer or the profile's issuer) and that this machine can reach it".into(),
            ),
            Self::Untrusted(_) => Some(
                "the provider's certificate must chain to a CA this machine trusts: add its CA to the system's trust store (or point SSL_CERT_FILE at a PEM file holding it)".into(),
            ),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Denied | Self::Expired | Self::NotLoggedIn { .. } | Self::Rejected(_) => {
                exit::AUTH_FAILED
            }
            Self::WrongIssuer { .. } | Self::Config(_) => exit::USAGE,
            Self::Unreachable(_) => exit::BROKER_UNREACHABLE,
            Self::Untrusted(_) => exit::UNTRUSTED,
            Self::Store(_) | Self::Keyring(_) | Self::KeyringUnreadable { .. } => exit::FAILURE,
        }
    }
}

impl From<AuthError> for CommandError {
    fn from(e: AuthError) -> Self {
        Self {
            code: e.exit_code(),
            hint: e.hint(),
            error: e.into(),
            details: serde_json::Map::new(),
        }
    }
}

/// `hoop login`, with `--profile NAME` unless it is the default profile,
/// and `--config FILE` when one was given: what the person types next.
pub fn login_command(profile: &str, config: Option<&std::path::Path>) -> String {
    let mut c = String::from("hoop login");
    if profile != crate::settings::DEFAULT_PROFILE {
        c.push_str(&format!(" --profile {profile}"));
    }
    if let Some(config) = config {
        c.push_str(&format!(" --config {}", config.display()));
    }
    c
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a profile name is safe as a file name and keyring account part.
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_safe_file_names() {
        assert!(valid_profile_name("default"));
        assert!(valid_profile_name("alice-prod_2.eu"));
        assert!(!valid_profile_name(""));
        assert!(!valid_profile_name("../x"));
        assert!(!valid_profile_name("a/b"));
        assert!(!valid_profile_name(".hidden"));
        assert!(!valid_profile_name("a|b"));
    }

    #[test]
    fn outcomes_map_to_the_documented_exit_codes() {
        assert_eq!(AuthError::Denied.exit_code(), 3);
        assert_eq!(AuthError::Expired.exit_code(), 3);
        assert_eq!(AuthError::Unreachable("x".into()).exit_code(), 4);
        let not_in = AuthError::NotLoggedIn {
            profile: "typo".into(),
            login: login_command("typo", None),
            other_ways: false,
        };
        assert_eq!(not_in.exit_code(), 3);
        assert!(not_in.hint().unwrap().contains("hoop login --profile typo"));
        assert_eq!(
            AuthError::WrongIssuer {
                configured: "a".into(),
                discovered: "b".into(),
                url: "c".into()
            }
            .exit_code(),
            2
        );
    }
}
