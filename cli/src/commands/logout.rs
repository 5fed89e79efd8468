//! `hoop logout`: revoke the profile's refresh token at the identity
//! provider (RFC 7009) when it offers a revocation endpoint, then delete
//! the tokens here. Idempotent: logging out twice is not an error.

use super::CommandError;
use crate::auth::store::TokenStore;
use crate::auth::{revoke, AuthError};
use crate::settings::{self, ProfileArgs};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop logout\n  hoop logout --profile work\n\nThe local tokens are deleted even when the identity provider cannot be\nreached (a warning then says the refresh token may stay valid there until\nit expires). Not being logged in is not an error (exit 0). When the tokens\nare in an OS keyring that cannot be read now, nothing is deleted (exit 1):\nrun hoop logout again where the keyring works."
)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
}

pub async fn run(args: LogoutArgs) -> Result<(), CommandError> {
    let (name, _) = args
        .profile
        .select()
        .map_err(|e| CommandError::new(super::exit::USAGE, e))?;
    let store = TokenStore::open(&name, &settings::data_dir()?)?;
    // Under the profile's lock from reading the tokens to deleting them: the
    // refresh token revoked is the live one, and a refresh in another hoop
    // process cannot save new tokens after these are gone.
    let (loaded, _lock) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, AuthError> {
            let lock = store.lock(crate::auth::refresh::LOCK_TIMEOUT)?;
            Ok((store.load(), lock))
        })
        .await
        .map_err(|e| AuthError::Store(e.to_string()))??
    };
    let tokens = match loaded {
        Ok(Some((t, _))) => Some(t),
        Ok(None) => None,
        // The secret is in a keyring that cannot be read now: deleting the
        // pointer would only forget where it is. Touch nothing.
        Err(AuthError::KeyringUnreadable { profile, reason }) => {
            return Err(AuthError::Keyring(format!(
                "cannot log out: the tokens of profile {profile} are in the OS keyring, which cannot be read now ({reason}); nothing was deleted: run `hoop logout` again where the keyring works"
            ))
            .into())
        }
        // Damaged or unreadable file: nothing to revoke, but still wipe.
        Err(e) => {
            eprintln!("hoop: warning: {e}");
            None
        }
    };

    let mut revoked = None;
    if let Some(t) = &tokens {
        match (&t.revocation_endpoint, &t.refresh_token) {
            (Some(endpoint), Some(rt)) => {
                let http = crate::auth::http::client()?;
                match revoke::revoke(&http, endpoint, &t.client_id, rt, "refresh_token").await {
                    Ok(()) => revoked = Some(true),
                    Err(e) => {
                        revoked = Some(false);
                        eprintln!(
                            "hoop: warning: {e}; the tokens are deleted here, but the refresh token may stay valid at the identity provider until it expires"
                        );
                    }
                }
            }
            (None, Some(_)) => eprintln!(
                "hoop: note: {} offers no revocation endpoint; the refresh token stays valid there until it expires",
                t.issuer
            ),
            _ => {}
        }
    }

    let deleted = tokio::task::spawn_blocking(move || store.delete())
        .await
        .map_err(|e| AuthError::Store(e.to_string()))??;
    match (&tokens, deleted) {
        (Some(t), _) => println!(
            "Logged out of {} (profile {name}){}",
            t.issuer,
            if revoked == Some(true) {
                "; the refresh token was revoked at the identity provider"
            } else {
                ""
            }
        ),
        (None, true) => println!("Deleted the stored tokens of profile {name}"),
        (None, false) => eprintln!("hoop: not logged in (profile {name}); nothing to do"),
    }
    Ok(())
}
