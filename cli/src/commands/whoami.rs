//! `hoop whoami`: who the stored login says you are — subject, email,
//! groups, issuer and expiry — read from the tokens' claims on this machine.

use serde_json::json;

use super::login::human_secs;
use super::CommandError;
use crate::auth::claims::{self, GroupsFrom};
use crate::auth::store::TokenStore;
use crate::auth::{now_unix, AuthError};
use crate::settings::{self, ProfileArgs};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop whoami\n  hoop whoami --profile work --json\n\nThe claims are decoded locally from the access token (the id token fills\ngaps) WITHOUT verifying its signature: this shows what your token says, and\nthe broker verifies it on every call. Nothing is refreshed or sent anywhere.\nGroups are read at the profile's groups_claim (a dotted path, default\n\"groups\"; set it to the broker's groups_claim for your issuer, e.g.\n\"realm_access.roles\" or \"roles\"), from the access token; from the id token\nonly when the access token has nothing there, which the broker never sees.\n\n--json keys: profile, subject, email, groups, groups_claim, groups_from\n(\"access_token\", \"id_token\" or null), issuer, expires_at (Unix seconds),\nexpires_in_secs (0 once expired), expired, token_store (\"keyring\" or\n\"file:<path>\").\n\nExit codes: 0 logged in (even with an expired access token), 3 not logged in"
)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// No `hoop login` session for the profile; a profile that takes its
/// token from a file is told apart, since logging in is not its way.
fn not_logged_in(
    name: &str,
    profile: &crate::settings::Profile,
    config: Option<&std::path::Path>,
) -> CommandError {
    let e = CommandError::from(AuthError::NotLoggedIn {
        profile: name.to_owned(),
        login: crate::auth::login_command(name, config),
        other_ways: false,
    });
    match &profile.token_file {
        Some(file) if profile.issuer.is_none() => e.with_hint(format!(
            "profile {name} takes its token from token_file {} rather than `hoop login`; `hoop targets --profile {name}` shows who the broker says you are",
            file.display()
        )),
        _ => e,
    }
}

pub async fn run(args: WhoamiArgs) -> Result<(), CommandError> {
    let (name, profile) = args
        .profile
        .select()
        .map_err(|e| CommandError::new(super::exit::USAGE, e))?;
    let groups_claim = profile.groups_claim(&name)?.to_owned();
    let store = TokenStore::open(&name, &settings::data_dir()?)?;
    let (tokens, location) = tokio::task::spawn_blocking(move || store.load())
        .await
        .map_err(|e| AuthError::Store(e.to_string()))??
        .ok_or_else(|| not_logged_in(&name, &profile, args.profile.config.as_deref()))?;
    let c = claims::shown(
        &tokens.access_token,
        tokens.id_token.as_deref(),
        &groups_claim,
    );
    let issuer = c.iss.clone().unwrap_or_else(|| tokens.issuer.clone());
    let expires_at = c.exp.or(tokens.expires_at);
    let now = now_unix();
    let expired = expires_at.is_some_and(|e| e <= now);
    let expires_in = expires_at.map(|e| e.saturating_sub(now));

    if args.json {
        println!(
            "{}",
            json!({
                "profile": name,
                "subject": c.sub,
                "email": c.email,
                "groups": c.groups.clone().unwrap_or_default(),
                "groups_claim": groups_claim,
                "groups_from": c.groups_from,
                "issuer": issuer,
                "expires_at": expires_at,
                "expires_in_secs": expires_in,
                "expired": expired,
                "token_store": location.describe(),
            })
        );
        return Ok(());
    }
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "(not in the token)".into());
    println!("subject:  {}", or_none(c.sub));
    println!("email:    {}", or_none(c.email));
    let groups = match &c.groups {
        None => format!("(no {groups_claim:?} claim in the tokens)"),
        Some(g) if g.is_empty() => "(none)".into(),
        Some(g) => g.join(", "),
    };
    let from = match c.groups_from {
        Some(GroupsFrom::AccessToken) => format!("  (access token, claim {groups_claim:?})"),
        Some(GroupsFrom::IdToken) => format!(
            "  (id token, claim {groups_claim:?}: the access token, which is what the broker reads, has no such claim)"
        ),
        None => String::new(),
    };
    println!("groups:   {groups}{from}");
    println!("issuer:   {issuer}");
    let expiry = match (expires_at, expired) {
        (None, _) => "unknown".to_owned(),
        (Some(e), true) => format!(
            "expired {} ago (Unix {e}); the next command that needs it refreshes it",
            human_secs(now - e)
        ),
        (Some(e), false) => format!("in {} (Unix {e})", human_secs(e - now)),
    };
    println!("expires:  {expiry}");
    println!("profile:  {name}");
    println!("tokens:   {}", location.describe());
    Ok(())
}
