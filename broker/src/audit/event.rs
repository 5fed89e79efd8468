//! Audit events: what the broker records, as the JSON an examiner reads
//! (schema version 1, docs/audit.md), built into a [`BuiltEntry`] for the
//! log.
//!
//! An event is serialized once, here, from borrowed parts; the message it
//! carries (the JSON-RPC message as delivered) is spliced in as the bytes
//! that were delivered, not parsed and written again. A message that would
//! make the entry larger than the tlog-tiles limit is stored beside the
//! leaf, which then carries its SHA-256 and length.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hoop_audit_log::store::EntryIndex;
use hoop_audit_log::{BuiltEntry, EntryBuilder, EntryError};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::identity::{Caller, IdentityKind};

/// The schema version every event carries in `v`.
pub const SCHEMA_VERSION: u8 = 1;

/// Largest event kept whole in its leaf; a larger message goes beside it.
/// Under the 65,535-byte entry limit with room for `seq`.
pub const MAX_INLINE_EVENT: usize = 60 * 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A client connected and authenticated.
    ConnectionOpen,
    ConnectionClose,
    /// A token was refused (at Hello or at re-authentication).
    AuthFailure,
    /// A client message judged and forwarded upstream.
    Request,
    /// A client message the broker refused (never forwarded).
    Refused,
    /// The upstream's answer to a request, as delivered.
    Response,
    /// Anything else the upstream sent on an exchange: progress, logging,
    /// server-initiated requests, SSE events of a listen stream.
    ServerMessage,
    /// An upstream that could not be reached or broke off.
    UpstreamFailed,
    PolicyReload,
    ToolDrift,
    RevocationAdded,
    RevocationLifted,
    /// An administrator's command on the broker host.
    AdminCommand,
    /// Someone read the audit log.
    AuditRead,
    /// Retention removed events older than the configured period.
    Retention,
    /// A call was held and an approval request opened for it.
    ApprovalRequested,
    /// An approver granted or denied a request.
    ApprovalDecided,
    /// A request nobody decided in time, or a grant not used in time.
    ApprovalExpired,
    /// The approved call was let through (a one-call approval is used up).
    ApprovalReleased,
    /// The requester withdrew the request.
    ApprovalCancelled,
}

/// Every event type's name, as `--type` accepts them.
pub const EVENT_TYPES: [&str; 20] = [
    "connection.open",
    "connection.close",
    "auth.failure",
    "mcp.request",
    "mcp.refused",
    "mcp.response",
    "mcp.server_message",
    "mcp.upstream_failed",
    "policy.reload",
    "tool.drift",
    "revocation.added",
    "revocation.lifted",
    "admin.command",
    "audit.read",
    "audit.retention",
    "approval.requested",
    "approval.decided",
    "approval.expired",
    "approval.released",
    "approval.cancelled",
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionOpen => "connection.open",
            Self::ConnectionClose => "connection.close",
            Self::AuthFailure => "auth.failure",
            Self::Request => "mcp.request",
            Self::Refused => "mcp.refused",
            Self::Response => "mcp.response",
            Self::ServerMessage => "mcp.server_message",
            Self::UpstreamFailed => "mcp.upstream_failed",
            Self::PolicyReload => "policy.reload",
            Self::ToolDrift => "tool.drift",
            Self::RevocationAdded => "revocation.added",
            Self::RevocationLifted => "revocation.lifted",
            Self::AdminCommand => "admin.command",
            Self::AuditRead => "audit.read",
            Self::Retention => "audit.retention",
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalDecided => "approval.decided",
            Self::ApprovalExpired => "approval.expired",
            Self::ApprovalReleased => "approval.released",
            Self::ApprovalCancelled => "approval.cancelled",
        }
    }
}

/// `actor.jti` as text (serde writes `Arc<str>` only with its `rc` feature).
fn token_id_text<S: serde::Serializer>(jti: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match jti {
        Some(jti) => s.serialize_str(jti),
        None => s.serialize_none(),
    }
}

/// The `actor.sub` of what the broker sends on its own account.
pub const BROKER_SUBJECT: &str = "hoop-broker";

/// Who acted: the verified identity of a connection, or what is known of
/// one that failed to authenticate.
#[derive(Debug, Serialize)]
pub struct Actor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "token_id_text"
    )]
    pub jti: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub client: &'a str,
    /// This actor already serialized, written in its place: a connection's
    /// caller is the same in every event of its token, and is serialized
    /// once ([`Caller::record_json`]). Set only by [`Actor::of`], whose
    /// fields then serve the index (`sub`) and leave `jti` out.
    #[serde(skip)]
    record: Option<Arc<RawValue>>,
}

/// How `Event::actor` is written: its serialized form if it has one.
fn actor_as_recorded<S: serde::Serializer>(
    actor: &Option<Actor<'_>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match actor {
        Some(Actor {
            record: Some(json), ..
        }) => json.serialize(s),
        Some(actor) => actor.serialize(s),
        None => s.serialize_none(),
    }
}

impl<'a> Actor<'a> {
    pub fn of(caller: &'a Caller) -> Self {
        let record = caller.record_json(|token_id| {
            serde_json::value::to_raw_value(&Self::parts_of(caller, Some(token_id.clone()))).ok()
        });
        match record {
            Some(json) => Self {
                record: Some(json),
                ..Self::parts_of(caller, None)
            },
            None => Self::parts_of(caller, Some(caller.token_id())),
        }
    }

    /// `caller`'s fields, with `jti` as given.
    fn parts_of(caller: &'a Caller, jti: Option<Arc<str>>) -> Self {
        let who = &caller.identity;
        Self {
            sub: Some(&who.subject),
            email: who.email.as_deref(),
            groups: &who.groups,
            iss: Some(&who.issuer),
            kind: Some(match who.kind {
                IdentityKind::Human => "human",
                IdentityKind::Workload => "workload",
            }),
            jti,
            addr: Some(caller.remote),
            client: &caller.client,
            record: None,
        }
    }

    /// The broker itself, for the requests it sends an upstream on its own
    /// account (its `tools/list`): `sub` `hoop-broker`, `kind` `broker`.
    pub fn broker() -> Self {
        Self {
            sub: Some(BROKER_SUBJECT),
            email: None,
            groups: &[],
            iss: None,
            kind: Some("broker"),
            jti: None,
            addr: None,
            client: concat!("hoop-broker/", env!("CARGO_PKG_VERSION")),
            record: None,
        }
    }

    /// Someone not (yet) authenticated: only where they came from.
    pub fn unauthenticated(addr: SocketAddr, client: &'a str) -> Self {
        Self {
            sub: None,
            email: None,
            groups: &[],
            iss: None,
            kind: None,
            jti: None,
            addr: Some(addr),
            client,
            record: None,
        }
    }

    /// The broker itself, or an administrator on its host (`sub` is the
    /// operating-system user).
    pub fn local(user: &'a str) -> Self {
        Self {
            sub: Some(user),
            email: None,
            groups: &[],
            iss: Some("local"),
            kind: Some("admin"),
            jti: None,
            addr: None,
            client: "",
            record: None,
        }
    }
}

/// How a message or call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// A JSON-RPC error answer from the upstream.
    Error,
    /// Refused by the broker.
    Refused,
    UpstreamFailed,
    /// The upstream's message could not be masked and was not delivered.
    Withheld,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Error => "error",
            Self::Refused => "refused",
            Self::UpstreamFailed => "upstream_failed",
            Self::Withheld => "withheld",
        }
    }
}

/// One event, from borrowed parts. Members in the order docs/audit.md
/// lists them; the message comes last, spliced in by [`Event::entry`].
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub v: u8,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "actor_as_recorded"
    )]
    pub actor: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// The masking profile of the exchange (on its request's event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masking: Option<&'a str>,
    /// The approval request a held call opened, was released by, or that
    /// an `approval.*` event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// What masking replaced in the message, by type: `{"card": 1}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// Not serialized by serde: the indexed time.
    #[serde(skip)]
    pub time_ns: i64,
}

impl<'a> Event<'a> {
    /// A new event of `kind`, stamped now.
    pub fn now(kind: EventKind) -> Self {
        let time_ns = now_ns();
        Self {
            v: SCHEMA_VERSION,
            time: format_time(time_ns),
            kind: kind.as_str(),
            exchange: None,
            actor: None,
            target: None,
            session: None,
            jsonrpc_id: None,
            method: None,
            name: None,
            decision: None,
            rule: None,
            masking: None,
            approval: None,
            outcome: None,
            error_code: None,
            reason: None,
            latency_us: None,
            bytes: None,
            masked: None,
            detail: None,
            time_ns,
        }
    }

    /// The entry for the log, with `message` (the JSON-RPC message as
    /// delivered, when the event carries one) added last: JSON on one line
    /// that the broker parsed or serialized itself ([`one_line`] makes it
    /// so), which the log then takes without parsing it again. A message
    /// that would make the entry too large goes beside the leaf.
    pub fn entry(&self, message: Option<&[u8]>) -> Result<BuiltEntry, EntryError> {
        let mut built = EntryBuilder::new(self)?;
        if built.len() > MAX_INLINE_EVENT / 2 {
            let whole =
                serde_json::to_value(self).map_err(|e| EntryError::NotAnObject(e.to_string()))?;
            built = EntryBuilder::new(&shortened(whole))?;
        }
        if let Some(raw) = message {
            if built.len() + raw.len() + 16 <= MAX_INLINE_EVENT {
                built.json_member("message", raw)?;
            } else {
                built.body_member("message", Bytes::copy_from_slice(raw))?;
            }
        }
        let actor = self.actor.as_ref();
        built.finish(EntryIndex {
            time_ns: self.time_ns,
            kind: self.kind.into(),
            subject: actor.and_then(|a| a.sub).map(str::to_owned),
            target: self.target.map(str::to_owned),
            name: self.name.map(str::to_owned),
            decision: self.decision.map(Into::into),
            exchange: self.exchange.map(str::to_owned),
            session: self.session.map(str::to_owned),
        })
    }
}

/// Longest string member kept whole in an oversized event.
const MAX_MEMBER_BYTES: usize = 1024;

/// An event whose members (not its message) are oversized, as a caller
/// can make them (a huge JSON-RPC id, a URI, a client name): every string
/// over [`MAX_MEMBER_BYTES`] cut to that, with how long it was, and
/// `"truncated": true`, so the event is still recorded rather than lost.
fn shortened(mut v: Value) -> Value {
    fn cut(v: &mut Value) {
        match v {
            Value::String(s) if s.len() > MAX_MEMBER_BYTES => {
                let mut end = MAX_MEMBER_BYTES;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let total = s.len();
                s.truncate(end);
                s.push_str(&format!("…({total} bytes)"));
            }
            Value::Array(a) => a.iter_mut().for_each(cut),
            Value::Object(m) => m.values_mut().for_each(cut),
            _ => {}
        }
    }
    cut(&mut v);
    if let Some(m) = v.as_object_mut() {
        m.insert("truncated".into(), Value::Bool(true));
    }
    v
}

/// A message's bytes as the JSON value an event carries, on one line. The
/// upstream's own bytes when they are JSON without line breaks (almost
/// always); an upstream may send pretty-printed JSON, whose line breaks
/// would split the event's line, so that is recorded in compact form (the
/// same value); what is not JSON is recorded as a JSON string of its text.
/// `value`: the bytes parsed, `None` when they are not JSON.
pub fn one_line<'b>(raw: &'b [u8], value: Option<&Value>) -> std::borrow::Cow<'b, [u8]> {
    use std::borrow::Cow;
    match value {
        Some(_) if !raw.iter().any(|b| *b == b'\n' || *b == b'\r') => Cow::Borrowed(raw),
        Some(v) => Cow::Owned(serde_json::to_vec(v).unwrap_or_default()),
        None => Cow::Owned(serde_json::to_vec(&String::from_utf8_lossy(raw)).unwrap_or_default()),
    }
}

/// UTC nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339, UTC, always nine fractional digits (so times sort as text).
/// Written with `format!` from the calendar fields: every event is stamped
/// on the request path, and a `time` format description took ~1 µs of it.
pub fn format_time(ns: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month, day) = t.to_calendar_date();
    format!(
        "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        u8::from(month),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(jti: &str) -> crate::identity::VerifiedToken {
        crate::identity::VerifiedToken {
            identity: crate::identity::Identity {
                subject: "alice".into(),
                email: Some("alice@bank.example".into()),
                groups: vec!["eng".into()],
                issuer: "https://idp".into(),
                kind: IdentityKind::Human,
            },
            expires_at: u64::MAX,
            token_id: jti.into(),
        }
    }

    fn actor_json(caller: &Caller) -> Value {
        let mut e = Event::now(EventKind::Request);
        e.actor = Some(Actor::of(caller));
        let v: Value =
            serde_json::from_slice(&e.entry(None).unwrap().into_pending().fields).unwrap();
        v["actor"].clone()
    }

    #[test]
    fn a_callers_actor_is_written_as_its_fields_say_and_follows_a_new_token() {
        let caller = Caller::new(
            token("jti-1"),
            ([127, 0, 0, 1], 5000).into(),
            "hoop/0.1.0".into(),
        );
        let first = actor_json(&caller);
        assert_eq!(
            first,
            json!({"sub": "alice", "email": "alice@bank.example", "groups": ["eng"],
                   "iss": "https://idp", "kind": "human", "jti": "jti-1",
                   "addr": "127.0.0.1:5000", "client": "hoop/0.1.0"})
        );
        // Written from the kept JSON the second time: the same.
        assert_eq!(actor_json(&caller), first);
        // The kept JSON is byte for byte what the fields serialize to.
        let kept = Actor::of(&caller).record.expect("kept once written");
        let fields = serde_json::to_string(&Actor::parts_of(&caller, Some(caller.token_id())));
        assert_eq!(kept.get(), fields.unwrap());
        caller.renewed(&token("jti-2"));
        assert_eq!(actor_json(&caller)["jti"], "jti-2");
    }

    #[test]
    fn times_have_nine_digits_in_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_time(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(
            format_time(1_764_754_553_000_000_007),
            "2025-12-03T09:35:53.000000007Z"
        );
    }

    #[test]
    fn the_message_is_spliced_in_last_and_large_ones_go_beside() {
        let mut e = Event::now(EventKind::Response);
        e.target = Some("demo");
        e.outcome = Some(Outcome::Ok.as_str());
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let entry = e.entry(Some(msg)).unwrap().into_pending();
        let v: Value = serde_json::from_slice(&entry.fields).unwrap();
        assert_eq!(
            v["message"],
            json!({"jsonrpc": "2.0", "id": 1, "result": {}})
        );
        assert_eq!(v["type"], "mcp.response");
        assert_eq!(v["v"], 1);
        assert!(entry.bodies.is_empty());
        assert_eq!(entry.index.target.as_deref(), Some("demo"));

        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"x":"{}"}}}}"#,
            "a".repeat(70_000)
        );
        let entry = e.entry(Some(big.as_bytes())).unwrap().into_pending();
        assert!(entry.fields.len() < 1024);
        let v: Value = serde_json::from_slice(&entry.fields).unwrap();
        assert!(v.get("message").is_none());
        assert_eq!(v["message_bytes"], big.len());
        let (sha, body) = &entry.bodies[0];
        assert_eq!(&body[..], big.as_bytes());
        assert_eq!(v["message_sha256"], hoop_audit_log::entry::hex(sha));
    }

    #[test]
    fn oversized_members_are_cut_so_the_event_is_still_recorded() {
        let huge = "x".repeat(100_000);
        let id = Value::from(huge.clone());
        let mut e = Event::now(EventKind::Refused);
        e.jsonrpc_id = Some(&id);
        e.reason = Some(&huge);
        let entry = e
            .entry(Some(br#"{"jsonrpc":"2.0"}"#))
            .unwrap()
            .into_pending();
        assert!(entry.fields.len() < 8 * 1024, "{}", entry.fields.len());
        let v: Value = serde_json::from_slice(&entry.fields).unwrap();
        assert_eq!(v["truncated"], true);
        assert!(v["reason"].as_str().unwrap().ends_with("…(100000 bytes)"));
        assert_eq!(v["message"], json!({"jsonrpc": "2.0"}));
    }

    #[test]
    fn pretty_printed_messages_are_recorded_on_one_line() {
        let raw = b"{\n  \"id\": 1\n}";
        let v: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(&one_line(raw, Some(&v))[..], br#"{"id":1}"#);
        let v = json!({"a": 1});
        assert_eq!(&one_line(b"{\"a\":1}", Some(&v))[..], b"{\"a\":1}");
        assert_eq!(&one_line(b"x\ny", None)[..], br#""x\ny""#);
    }
}
