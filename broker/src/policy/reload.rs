//! Hot reload: the broker keeps its policy in step with the file. The file
//! is read again every second and on SIGHUP; a changed file is compiled
//! first and only a valid one replaces the running policy, so a typo never
//! opens (or closes) the gates: the broker logs what is wrong, with file,
//! line and column, and keeps judging by the last good policy. Live
//! sessions get the new policy on their next message.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::Policy;

/// How often the file is looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a changed file must stay the same before it is taken.
const SETTLE: Duration = Duration::from_millis(200);
/// The same limit `Policy::load` keeps for a file read at start.
const MAX_RELOAD_BYTES: usize = super::file::MAX_FILE_BYTES as usize;

/// Reloads `path` whenever its content changes (or SIGHUP arrives) and
/// hands each outcome to `apply` with the SHA-256 (hex) of the text read:
/// a valid new policy, or why the file was refused (the running policy then
/// stays). `apply` answers whether it took the outcome; a new policy it
/// did not take (the broker could not record the reload first) is tried
/// again at the next look. `loaded` is the text the running policy came
/// from. Runs until the task is dropped.
pub async fn watch<Applied: Future<Output = bool>>(
    path: PathBuf,
    loaded: String,
    check: impl Fn(&Policy) -> Result<(), String> + Send + 'static,
    apply: impl Fn(Result<Policy, String>, &str) -> Applied + Send + 'static,
) {
    let mut current = loaded;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hangup = hangup_signal();
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = next_hangup(&mut hangup) => true,
        };
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    tracing::error!(path = %path.display(), "policy not reloaded: cannot read the file: {e}; the running policy stays");
                }
                continue;
            }
        };
        if text == current && !forced {
            continue;
        }
        // An editor may be half-way through writing the file in place; a
        // cut that still parses could drop the rules below it. Take the
        // file only when it reads the same twice, a moment apart.
        tokio::time::sleep(SETTLE).await;
        match tokio::fs::read_to_string(&path).await {
            Ok(again) if again == text => {}
            _ => continue,
        }
        let sha256 = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(text.as_bytes());
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        if text.len() > MAX_RELOAD_BYTES {
            let why = format!("the file is over {MAX_RELOAD_BYTES} bytes");
            tracing::error!(path = %path.display(), "policy not reloaded, the running policy stays: {why}");
            apply(Err(why), &sha256).await;
            current = text;
            continue;
        }
        match Policy::parse(&text, &path.display().to_string()) {
            Ok(policy) if policy.rule_count() == 0 => {
                let why = "the file has no rules (an empty or truncated file); write an explicit rule if everything is to be denied";
                tracing::error!(path = %path.display(), "policy not reloaded, the running policy stays: {why}");
                apply(Err(why.to_owned()), &sha256).await;
            }
            Ok(policy) => match check(&policy) {
                Err(why) => {
                    tracing::error!(path = %path.display(), "policy not reloaded, the running policy stays: {why}");
                    apply(Err(why), &sha256).await;
                }
                Ok(()) => {
                    let rules = policy.rule_count();
                    // Said once the policy is in force, not at each retry.
                    let findings = policy.lint();
                    if !apply(Ok(policy), &sha256).await {
                        // Not taken: `current` stays, so the next look
                        // tries the same file again.
                        continue;
                    }
                    for finding in findings {
                        tracing::warn!(path = %path.display(), "policy check: {finding}");
                    }
                    tracing::info!(path = %path.display(), rules, "policy reloaded");
                }
            },
            Err(e) => {
                tracing::error!(path = %path.display(), "policy not reloaded, the running policy stays: {e:#}");
                apply(Err(format!("{e:#}")), &sha256).await;
            }
        }
        // A bad file is not retried until it changes again.
        current = text;
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
