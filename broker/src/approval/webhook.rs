//! Webhooks: approvers hear of a new request (and requesters of a
//! decision) without watching a terminal. Each change to a request is
//! POSTed as Slack-compatible JSON (`text`, plus the request under `hoop`)
//! to every configured URL, signed with HMAC-SHA256, and retried with
//! backoff. Never on a call's path: changes are queued (bounded) and a
//! background task delivers them; a full queue or an endpoint that stays
//! down costs a log line, never a held call.
//!
//! Signature (what a receiver checks): `X-Hoop-Timestamp` is the Unix time
//! of sending, `X-Hoop-Signature` is `v1=` and the hex HMAC-SHA256, keyed
//! with the webhook's secret, of `v1:{timestamp}:{body}`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{clock_time, ApprovalRequest, ApprovalState};

/// Changes waiting for delivery; past this they are dropped (and logged).
const QUEUE: usize = 1_000;
/// Attempts per delivery, waiting 1, 2, 4, 8 s between them.
const ATTEMPTS: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(5);

/// `[[approvals.webhooks]]` of the broker's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (https, or http on loopback).
    pub url: String,
    /// A file holding the HMAC key (its trimmed contents; keep it 0600).
    pub secret_file: PathBuf,
    /// Which changes: `requested`, `decided`, `expired`, `released`,
    /// `cancelled`. Default: requested, decided, expired.
    #[serde(default = "default_events")]
    pub events: Vec<String>,
}

fn default_events() -> Vec<String> {
    ["requested", "decided", "expired"]
        .map(str::to_owned)
        .to_vec()
}

pub const EVENTS: [&str; 5] = ["requested", "decided", "expired", "released", "cancelled"];

struct Hook {
    url: reqwest::Url,
    key: ring::hmac::Key,
    events: Vec<String>,
}

/// The sending side: cheap to call from the approval layer. Each hook has
/// a queue and a task of its own, so one that is down delays no other.
pub struct Webhooks {
    queues: Vec<(Vec<String>, mpsc::Sender<Value>)>,
}

impl Webhooks {
    /// Checks the configs (URLs, secrets, event names) and starts the
    /// delivering task; `None` when no webhook is configured.
    pub fn start(configs: &[WebhookConfig]) -> anyhow::Result<Option<Self>> {
        if configs.is_empty() {
            return Ok(None);
        }
        let mut hooks = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = format!("[[approvals.webhooks]] #{}", i + 1);
            let url =
                crate::config::secure_url(&c.url).map_err(|e| anyhow::anyhow!("{at}: url {e}"))?;
            let secret = std::fs::read_to_string(&c.secret_file).map_err(|e| {
                anyhow::anyhow!(
                    "{at}: cannot read secret_file {}: {e}",
                    c.secret_file.display()
                )
            })?;
            let secret = secret.trim();
            if secret.len() < 16 {
                anyhow::bail!(
                    "{at}: the secret in {} is shorter than 16 bytes; make a long random one (openssl rand -hex 32)",
                    c.secret_file.display()
                );
            }
            if let Some(e) = c.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
                anyhow::bail!("{at}: unknown event {e:?} (events: {})", EVENTS.join(", "));
            }
            hooks.push(Hook {
                url,
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
                events: c.events.clone(),
            });
        }
        crate::crypto::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut queues = Vec::new();
        for hook in hooks {
            let (queue, mut changes) = mpsc::channel::<Value>(QUEUE);
            queues.push((hook.events.clone(), queue));
            let http = http.clone();
            tokio::spawn(async move {
                // Ends when the approval layer (the only sender) goes. One
                // at a time, in order: a receiver sees a request before its
                // decision.
                while let Some(body) = changes.recv().await {
                    deliver(&http, &hook, &body).await;
                }
            });
        }
        Ok(Some(Self { queues }))
    }

    /// Queues `event` (`requested`, `decided`, …) about `r`.
    pub fn notify(&self, event: &str, r: &ApprovalRequest) {
        let body = payload(event, r);
        for (events, queue) in &self.queues {
            if events.iter().any(|e| e == event) && queue.try_send(body.clone()).is_err() {
                tracing::warn!(
                    id = r.id,
                    event,
                    "approval webhook not sent: {QUEUE} notifications already wait (is the endpoint down?)"
                );
            }
        }
    }
}

/// Signs and POSTs `body`, retrying a failure (a transport error or a
/// status other than 2xx) with backoff. Bounded by `ATTEMPTS`.
async fn deliver(http: &reqwest::Client, hook: &Hook, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let ts = crate::identity::now_unix().to_string();
        let signature = sign(&hook.key, &ts, &bytes);
        let sent = http
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .header("x-hoop-timestamp", &ts)
            .header("x-hoop-signature", &signature)
            .body(bytes.clone())
            .send()
            .await;
        // Never the whole URL: a Slack webhook URL is itself a secret.
        let host = hook.url.host_str().unwrap_or("?");
        let why = match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(host, attempt, "approval webhook failed: {why}");
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(
        host = hook.url.host_str().unwrap_or("?"),
        "approval webhook given up after {ATTEMPTS} attempts"
    );
}

/// `v1=` and the hex HMAC-SHA256 of `v1:{timestamp}:{body}`.
pub fn sign(key: &ring::hmac::Key, timestamp: &str, body: &[u8]) -> String {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(b"v1:");
    ctx.update(timestamp.as_bytes());
    ctx.update(b":");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Slack's incoming-webhook shape (`text`), with the request itself under
/// `hoop` for receivers that want more than a line.
fn payload(event: &str, r: &ApprovalRequest) -> Value {
    let who = slack_text(r.requester.email.as_deref().unwrap_or(&r.requester.subject));
    let call = slack_text(&format!("{} on {}", r.binding.name, r.binding.target));
    let reason = slack_text(&r.reason);
    let text = match (event, r.state) {
        ("requested", _) => format!(
            "Approval #{} needed: {who} wants to call {call} — \"{}\" (rule {}, {} of {} from {}, expires {}). `hoop approve show {}`",
            r.id,
            reason,
            r.binding.rule,
            r.grants(),
            r.quorum,
            r.approvers.join(" or "),
            clock_time(r.expires_at),
            r.id
        ),
        ("decided", state) => {
            let last = r.decisions.last();
            let by = last.map_or("an approver".to_owned(), |d| {
                d.email.clone().unwrap_or_else(|| d.approver.clone())
            });
            let reason = last
                .and_then(|d| d.reason.as_deref())
                .map(|x| format!(": {}", slack_text(x)))
                .unwrap_or_default();
            match state {
                ApprovalState::Approved => format!("Approval #{} granted by {by}{reason}: it releases {}", r.id, slack_text(&r.grant_scope())),
                ApprovalState::Denied => format!("Approval #{} denied by {by}{reason}: {who}'s call to {call} will not run", r.id),
                _ => format!("Approval #{}: {by} granted{reason} ({} of {} so far) for {who}'s call to {call}", r.id, r.grants(), r.quorum),
            }
        }
        ("expired", _) => format!("Approval #{} expired undecided: {who}'s call to {call}", r.id),
        ("released", _) => format!("Approval #{} used: {who}'s call to {call} ran", r.id),
        _ => format!("Approval #{} withdrawn by {who}: {call}", r.id),
    };
    json!({"text": text, "hoop": {"event": event, "approval": r}})
}

/// Text as Slack reads it literally: `&`, `<` and `>` escaped (so a
/// requester's reason cannot mention `<!channel>` or hide a link), control
/// characters dropped.
fn slack_text(text: &str) -> String {
    super::printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_cannot_ping_a_channel_or_hide_a_link() {
        assert_eq!(
            slack_text("<!channel> see <http://x|here> & go\n"),
            "&lt;!channel&gt; see &lt;http://x|here&gt; &amp; go "
        );
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123");
        let a = sign(&key, "1700000000", b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, sign(&key, "1700000001", b"{}"));
        assert_ne!(a, sign(&key, "1700000000", b"{ }"));
        // What OpenSSL computes, not this code:
        // printf 'v1:1700000000:{}' | openssl dgst -sha256 -hmac 0123456789abcdef0123
        assert_eq!(
            a,
            "v1=c65f8709f7f321de2cb7960547dc2dcb5dbc9b943bed387d9bd69818d4435a89"
        );
    }
}
