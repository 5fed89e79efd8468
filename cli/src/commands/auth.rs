//! `hoop auth token` (hidden, for scripts and tests): print the profile's
//! access token, refreshed first when it is about to expire — the same
//! token `hoop connect` would present to the broker.

use super::CommandError;
use crate::auth::refresh::LoginSession;
use crate::auth::AuthError;
use crate::settings::{self, ProfileArgs};

#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Print a valid access token of the logged-in profile on stdout
    /// (refreshing it first when it expires within a minute).
    #[command(
        after_help = "Examples:\n  hoop auth token\n  curl -H \"Authorization: Bearer $(hoop auth token --profile work)\" …\n  hoop auth token --refresh     # always refresh first\n\nExit codes: 0 printed, 3 not logged in or the refresh was refused (run hoop login), 4 identity provider unreachable"
    )]
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Refresh even if the current access token has time left.
    #[arg(long)]
    pub refresh: bool,
}

pub async fn run(args: AuthArgs) -> Result<(), CommandError> {
    match args.command {
        AuthCommand::Token(a) => token(a).await,
    }
}

async fn token(args: TokenArgs) -> Result<(), CommandError> {
    let (name, profile) = args
        .profile
        .select()
        .map_err(|e| CommandError::new(super::exit::USAGE, e))?;
    let data_dir = settings::data_dir()?;
    let issuer = profile.issuer.clone();
    let login = crate::auth::login_command(&name, args.profile.config.as_deref());
    let session = tokio::task::spawn_blocking(move || {
        LoginSession::open(&name, &data_dir, issuer.as_deref()).and_then(|s| {
            s.ok_or(AuthError::NotLoggedIn {
                profile: name.clone(),
                login,
                other_ways: false,
            })
        })
    })
    .await
    .map_err(|e| AuthError::Store(e.to_string()))??;
    let token = if args.refresh {
        session.refreshed_access_token().await?
    } else {
        session.access_token().await?
    };
    println!("{token}");
    Ok(())
}
