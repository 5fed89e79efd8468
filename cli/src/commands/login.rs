//! `hoop login`: sign in with the profile's OpenID provider by the device
//! authorization grant (RFC 8628) and keep the tokens for later commands
//! (`hoop connect` uses them when no token file or `HOOP_TOKEN` is given).

use std::io::Write;

use serde_json::json;

use super::CommandError;
use crate::auth::device::{self, DevicePrompt};
use crate::auth::store::TokenStore;
use crate::auth::{claims, discovery, now_unix, AuthError};
use crate::settings::{self, ProfileArgs};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop login                                   # the default profile's issuer\n  hoop login --profile work\n  hoop login --issuer https://idp.example/realms/bank --no-browser\n  hoop login --qr      # also a QR code of the sign-in link, for a phone\n  hoop login --json    # first stdout line: {\"verification_uri\",\"verification_uri_complete\",\"user_code\"}\n\nThe profile's `issuer`, `client_id` (default hoop-cli), `scopes` (default\n\"openid offline_access email groups\") and optional `resource` come from\nconfig.toml. Tokens go to the OS keyring; where there is none (or with\nHOOP_KEYRING=file) to a 0600 file under the data dir (HOOP_DATA_DIR moves it).\n\nSigning in again replaces the profile's session (hoop says whose first).\n\nExit codes: 0 signed in, 2 configuration error (no issuer, a wrong issuer or one\nthat answers 404), 3 denied or expired at the identity provider, 4 identity\nprovider unreachable"
)]
pub struct LoginArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// OpenID issuer URL, exactly as the provider names itself (overrides
    /// the profile's `issuer`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// OAuth client id registered for hoop at the provider (overrides the
    /// profile's `client_id`; default hoop-cli).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Do not try to open a web browser; only print where to sign in.
    #[arg(long)]
    pub no_browser: bool,
    /// Also print the sign-in link as a QR code (on stderr), to sign in
    /// from a phone when this machine has no browser.
    #[arg(long)]
    pub qr: bool,
    /// Machine-readable output: the sign-in details as the first JSON line
    /// on stdout, the outcome as the last.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LoginArgs) -> Result<(), CommandError> {
    let (name, profile) = args
        .profile
        .select()
        .map_err(|e| CommandError::new(super::exit::USAGE, e))?;
    let cfg = profile.auth_config(&name, args.issuer, args.client_id)?;
    let groups_claim = profile.groups_claim(&name)?.to_owned();
    // Opened before the person signs in, so a store that cannot work
    // fails first.
    let store = TokenStore::open(&cfg.profile, &settings::data_dir()?)?;
    let reader = store.clone();
    // Who is signed in now, if anyone: signing in again replaces them, and
    // the person should know before they approve the code. A store that
    // cannot be read now says nothing here; saving will tell.
    if let Ok(Ok(Some((current, _)))) = tokio::task::spawn_blocking(move || reader.load()).await {
        let c = claims::shown(
            &current.access_token,
            current.id_token.as_deref(),
            &groups_claim,
        );
        let who = match (&c.sub, &c.email) {
            (Some(s), Some(e)) => format!("{s} <{e}>"),
            (Some(s), None) => s.clone(),
            _ => "someone".into(),
        };
        eprintln!(
            "Profile {} is logged in as {who} ({}); signing in again replaces that session.",
            cfg.profile, current.issuer
        );
    }
    let http = crate::auth::http::client()?;
    let meta = discovery::discover(&http, &cfg.issuer).await?;
    let browser = !args.no_browser;
    let json_out = args.json;
    let qr = args.qr;
    let tokens = device::sign_in(&http, &cfg, &meta, |p| {
        show_prompt(p, json_out, browser, qr)
    })
    .await?;

    let to_save = tokens.clone();
    let noter = store.clone();
    // Under the profile's lock, so a refresh another hoop process is in
    // the middle of cannot save the old login over this one.
    let saved = tokio::task::spawn_blocking(move || {
        let _lock = store.lock(crate::auth::refresh::LOCK_TIMEOUT)?;
        store.save(&to_save)
    })
    .await
    .map_err(|e| AuthError::Store(format!("cannot save the tokens: {e}")))??;
    if let Some(note) = saved.note() {
        if noter.first_file_note() {
            eprintln!("hoop: {note}");
        }
    }

    let c = claims::shown(
        &tokens.access_token,
        tokens.id_token.as_deref(),
        &groups_claim,
    );
    let expires_at = c.exp.or(tokens.expires_at);
    if json_out {
        println!(
            "{}",
            json!({
                "logged_in": true,
                "profile": cfg.profile,
                "subject": c.sub,
                "email": c.email,
                "groups": c.groups,
                "groups_from": c.groups_from,
                "issuer": tokens.issuer,
                "expires_at": expires_at,
                "token_store": saved.location.describe(),
            })
        );
    } else {
        let who = match (&c.sub, &c.email) {
            (Some(s), Some(e)) => format!("{s} <{e}>"),
            (Some(s), None) => s.clone(),
            _ => "(the access token is not a JWT; the broker will say who you are)".into(),
        };
        let left = expires_at
            .map(|e| {
                format!(
                    ", access token valid for {}",
                    human_secs(e.saturating_sub(now_unix()))
                )
            })
            .unwrap_or_default();
        println!(
            "Logged in as {who} ({}); profile {}{left}",
            tokens.issuer, cfg.profile
        );
    }
    Ok(())
}

/// Tells the person where to go, on stderr (stdout carries the JSON line
/// with `--json`, which is how tests play the person).
fn show_prompt(p: &DevicePrompt, json_out: bool, browser: bool, qr: bool) {
    if json_out {
        println!(
            "{}",
            json!({
                "verification_uri": p.verification_uri,
                "verification_uri_complete": p.verification_uri_complete,
                "user_code": p.user_code,
                "expires_in": p.expires_in,
            })
        );
        let _ = std::io::stdout().flush();
    }
    eprintln!(
        "To sign in, open {} and enter code {}",
        p.verification_uri, p.user_code
    );
    if let Some(c) = &p.verification_uri_complete {
        eprintln!("(or open {c}, which carries the code)");
    }
    let url = p
        .verification_uri_complete
        .as_deref()
        .unwrap_or(&p.verification_uri);
    if qr {
        match qr_code(url) {
            Some(code) => eprintln!("{code}"),
            None => eprintln!("(the sign-in link is too long for a QR code; use the link above)"),
        }
    }
    if browser && open_browser(url) {
        eprintln!("A browser window should open; check that the code matches.");
    }
    eprintln!(
        "Waiting for approval (the code expires in {})…",
        human_secs(p.expires_in)
    );
}

/// `url` as a QR code drawn with half-block characters, two modules per
/// character cell, with its quiet zone. The light modules are the drawn
/// ones, which reads right on the usual light-on-dark terminal; phone
/// cameras read the inverse too.
fn qr_code(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Starts a browser at `url` when this machine seems to have one: `$BROWSER`,
/// `open` on macOS, `xdg-open` under X11/Wayland. Never fails the login.
fn open_browser(url: &str) -> bool {
    // The URL comes from the IdP's answer: never hand a browser launcher
    // anything but a web address (a `file:` or custom scheme could start
    // another program).
    if hoop_broker::config::secure_url(url).is_err() {
        return false;
    }
    let from_env = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::to_owned))
        .filter(|b| !b.trim().is_empty());
    let command = if let Some(b) = from_env {
        b
    } else if cfg!(target_os = "macos") {
        "open".into()
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open".into()
    } else {
        return false;
    };
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let spawned = std::process::Command::new(program)
        .args(words)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Reap it whenever it ends, so it never lingers as a zombie.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            true
        }
        Err(_) => false,
    }
}

/// `4m 05s`, `59s`, `1h 00m`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_link_becomes_a_square_qr_code() {
        let code = qr_code("https://idp.example/device?user_code=WDJB-MJHT").unwrap();
        let lines: Vec<&str> = code.lines().collect();
        // Two modules per line: a version-2+ code with its quiet zone is
        // at least (25 + 8) modules wide and (25 + 8) / 2 lines high.
        assert!(lines.len() >= 16, "{code}");
        let width = lines[0].chars().count();
        assert!(width >= 33, "{code}");
        assert!(lines.iter().all(|l| l.chars().count() == width), "{code}");
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(59), "59s");
        assert_eq!(human_secs(245), "4m 05s");
        assert_eq!(human_secs(3600), "1h 00m");
    }
}
