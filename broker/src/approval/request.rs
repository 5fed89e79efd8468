//! An approval request: the call it was opened for (its [`Binding`]), who
//! asked and why, who may decide, and the decisions so far. What the store
//! keeps, the audit log describes and `hoop approve` shows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mcp::canonical;

/// Where a request stands. `Pending` and `Approved` are open; the rest
/// are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for its approvers.
    Pending,
    /// The quorum granted it; the call it was opened for may run once.
    Approved,
    /// An approver said no.
    Denied,
    /// Nobody decided in time, or an approved call was not made in time.
    Expired,
    /// The approved call ran (a one-call approval is used up).
    Released,
    /// The requester withdrew it (`tasks/cancel` of its task).
    Cancelled,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Approved)
    }
}

/// What an approval is for, exactly: a call by someone else, with other
/// arguments, to a changed tool, or judged by another rule or policy
/// needs an approval of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub subject: String,
    pub issuer: String,
    pub target: String,
    pub method: String,
    /// The tool, prompt or resource.
    pub name: String,
    /// SHA-256 of the arguments in canonical JSON (keys sorted, no
    /// whitespace): `params.arguments` of a tool call or prompt, else
    /// `params` without `_meta`.
    pub args_digest: String,
    /// The hash of the tool's definition calls reached when the request
    /// was made (`pipeline::drift`); `None` before any list named it.
    pub tool_fingerprint: Option<String>,
    pub rule: String,
    pub policy_version: String,
}

impl Binding {
    /// One text that is equal exactly when the bindings are.
    pub fn key(&self) -> String {
        self.key_with(&self.args_digest)
    }

    /// What calls a grant covers are recognised by: [`Self::key`] when the
    /// arguments are pinned, else the same without them (any arguments).
    pub fn grant_key(&self, pin_arguments: bool) -> String {
        match pin_arguments {
            true => self.key(),
            false => self.key_with("*"),
        }
    }

    fn key_with(&self, args_digest: &str) -> String {
        let v = serde_json::json!([
            self.subject,
            self.issuer,
            self.target,
            self.method,
            self.name,
            args_digest,
            self.tool_fingerprint,
            self.rule,
            self.policy_version,
        ]);
        canonical::digest(&v)
    }

    /// The arguments' digest as a binding takes it (see `args_digest`):
    /// with the `_meta` the upstream's tool would read too, except what
    /// only the protocol, the broker or progress read (a retry may carry
    /// another progress token or reason).
    pub fn digest_of(method: &str, params: Option<&serde_json::Map<String, Value>>) -> String {
        let empty = Value::Object(Default::default());
        let Some(p) = params else {
            return canonical::digest(&empty);
        };
        let meta: serde_json::Map<String, Value> = p
            .get("_meta")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !volatile_meta(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut bound = match crate::mcp::message::has_arguments(method) {
            true => p.get("arguments").cloned().unwrap_or(empty),
            false => {
                let mut p = p.clone();
                p.remove("_meta");
                Value::Object(p)
            }
        };
        if !meta.is_empty() {
            bound = serde_json::json!({"arguments": bound, "_meta": meta});
        }
        canonical::digest(&bound)
    }
}

/// `_meta` keys a binding leaves out: the protocol's own, progress, and
/// the requester's reason.
fn volatile_meta(key: &str) -> bool {
    key == "progressToken"
        || key == "dev.hoop/reason"
        || key.starts_with("io.modelcontextprotocol/")
}

/// The person or workload that made the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub issuer: String,
    pub groups: Vec<String>,
    /// `human` or `workload`.
    pub kind: String,
}

/// One approver's say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub issuer: String,
    /// `granted` or `denied`.
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Granted,
    Denied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
        }
    }
}

/// One request for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: u64,
    pub state: ApprovalState,
    pub binding: Binding,
    pub requester: Requester,
    /// The requester's reason (or the rule's default).
    pub reason: String,
    /// The arguments as masked by the rule's profile (never raw values).
    pub arguments: Value,
    /// Groups whose members may decide.
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub human_approver: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Pending: when it expires undecided; approved: when the grant lapses
    /// unused.
    pub expires_at: u64,
    #[serde(default)]
    pub decisions: Vec<ApprovalDecision>,
    /// The exchange of the call that opened it, to find in the audit log.
    pub exchange: String,
    /// `None`: the approval releases the one call. `Some(secs)`: once
    /// approved, it releases the requester's calls of the tool on the
    /// target for that long (`grant` of the rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_window_secs: Option<u64>,
    /// With a window: only calls with the approved arguments.
    #[serde(default)]
    pub pin_arguments: bool,
    /// The tool's definition against the accepted one when the request
    /// was opened (`accepted`, `changed since it was accepted`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_state: Option<String>,
}

impl ApprovalRequest {
    /// Distinct approvers who granted it.
    pub fn grants(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Granted)
            .count()
    }

    /// "approval #42 from ml-leads (1 of 2, expires 14:05 UTC)".
    pub fn waiting_for(&self) -> String {
        let quorum = match self.quorum {
            1 => String::new(),
            n => format!("{} of {n}, ", self.grants()),
        };
        format!(
            "approval #{} from {} ({quorum}expires {})",
            self.id,
            self.approvers.join(" or "),
            clock_time(self.expires_at)
        )
    }

    /// What calls this request stands for: the exact call, or with an
    /// unpinned window any arguments (so such calls share one request).
    pub fn match_key(&self) -> String {
        match self.grant_window_secs {
            Some(_) => self.binding.grant_key(self.pin_arguments),
            None => self.binding.key(),
        }
    }

    /// What an approval releases, in words.
    pub fn grant_scope(&self) -> String {
        match self.grant_window_secs {
            None => "the one call".into(),
            Some(secs) => format!(
                "{}'s calls of {} on {} for {} after the decision ({})",
                self.requester.subject,
                self.binding.name,
                self.binding.target,
                match secs {
                    s if s % 3600 == 0 => format!("{}h", s / 3600),
                    s if s % 60 == 0 => format!("{}m", s / 60),
                    s => format!("{s}s"),
                },
                if self.pin_arguments {
                    "these arguments only"
                } else {
                    "any arguments"
                }
            ),
        }
    }

    /// Whether `subject` of `issuer` made the call.
    pub fn requested_by(&self, subject: &str, issuer: &str) -> bool {
        self.requester.subject == subject && self.requester.issuer == issuer
    }
}

/// `14:05 UTC` (with the date when it is not today).
pub fn clock_time(unix: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix as i64) else {
        return format!("@{unix}");
    };
    let today = time::OffsetDateTime::now_utc().date();
    if t.date() == today {
        format!("{:02}:{:02} UTC", t.hour(), t.minute())
    } else {
        format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding() -> Binding {
        Binding {
            subject: "alice".into(),
            issuer: "https://idp".into(),
            target: "demo".into(),
            method: "tools/call".into(),
            name: "deploy_model".into(),
            args_digest: "d".into(),
            tool_fingerprint: Some("f".into()),
            rule: "r".into(),
            policy_version: "v".into(),
        }
    }

    #[test]
    fn every_part_of_the_binding_counts() {
        let b = binding();
        let mut other = b.clone();
        assert_eq!(b.key(), other.key());
        other.tool_fingerprint = None;
        assert_ne!(b.key(), other.key());
        let mut other = b.clone();
        other.subject = "bob".into();
        assert_ne!(b.key(), other.key());
        let mut other = b.clone();
        other.policy_version = "w".into();
        assert_ne!(b.key(), other.key());
    }

    #[test]
    fn the_digest_reads_the_arguments_of_a_call_and_ignores_meta() {
        let p = |v: Value| v.as_object().cloned();
        let a = Binding::digest_of(
            "tools/call",
            p(json!({"name": "t", "arguments": {"a": 1, "b": 2}, "_meta": {"progressToken": 1}}))
                .as_ref(),
        );
        let b = Binding::digest_of(
            "tools/call",
            p(json!({"arguments": {"b": 2, "a": 1}, "name": "t"})).as_ref(),
        );
        assert_eq!(a, b);
        let c = Binding::digest_of(
            "tools/call",
            p(json!({"name": "t", "arguments": {"a": 1, "b": 3}})).as_ref(),
        );
        assert_ne!(a, c);
        let r1 = Binding::digest_of(
            "resources/read",
            p(json!({"uri": "x://a", "_meta": {"progressToken": 1}})).as_ref(),
        );
        let r2 = Binding::digest_of("resources/read", p(json!({"uri": "x://a"})).as_ref());
        assert_eq!(r1, r2);
        // `_meta` a tool reads is bound; the protocol's and progress are not.
        let plain = Binding::digest_of("tools/call", p(json!({"arguments": {"a": 1}})).as_ref());
        let retried = Binding::digest_of(
            "tools/call",
            p(
                json!({"arguments": {"a": 1}, "_meta": {"progressToken": 7, "dev.hoop/reason": "x",
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
            )
            .as_ref(),
        );
        assert_eq!(plain, retried);
        let steered = Binding::digest_of(
            "tools/call",
            p(json!({"arguments": {"a": 1}, "_meta": {"env": "prod"}})).as_ref(),
        );
        assert_ne!(plain, steered);
    }
}
