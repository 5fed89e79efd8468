//! What the broker counts for `GET /metrics` on the admin listener, in the
//! Prometheus / OpenMetrics text format (the `prometheus-client` crate):
//! calls and their decisions, refusals by reason, answers and how long the
//! exchange took, the audit log's appends and batches, approvals waiting.
//!
//! The counters are bumped where the audit layer records the same facts,
//! so the metrics and the log never tell two stories; gauges are read from
//! their owners when scraped.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    target: String,
    method: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    target: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 µs to ~100 s, doubling.
fn exchange_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

/// 10 µs to ~10 s, doubling.
fn append_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The broker's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
    connections_revoked: Counter,
    answers: Family<AnswerLabels, Counter>,
    exchange_seconds: HistogramFamily<TargetLabel>,
    upstream_seconds: HistogramFamily<TargetLabel>,
    audit_append_seconds: Histogram,
    audit_events: Gauge<u64, AtomicU64>,
    audit_batches: Gauge<u64, AtomicU64>,
    audit_queued: Gauge<u64, AtomicU64>,
    audit_degraded: Gauge,
    approvals_pending: Gauge,
    connections: Gauge,
    policy: Family<PolicyLabel, Gauge>,
    /// The version `policy` shows; held through a scrape, so that a
    /// scrape never sees the family emptied by another's change.
    policy_shown: std::sync::Mutex<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "hoop_calls",
            "Client messages forwarded to a target, by method and the decision that let them pass",
            calls.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "hoop_refusals",
            "Client messages the broker refused, by reason (policy, approval, identity, audit, protocol)",
            refusals.clone(),
        );
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "hoop_auth_failures",
            "Connections refused at authentication (or re-authentication), by kind",
            auth_failures.clone(),
        );
        let connections_revoked = Counter::default();
        registry.register(
            "hoop_connections_revoked",
            "Live connections ended because their identity was revoked",
            connections_revoked.clone(),
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "hoop_answers",
            "Answers delivered to clients, by outcome (ok, tool_error, error)",
            answers.clone(),
        );
        let exchange_seconds: HistogramFamily<TargetLabel> =
            Family::new_with_constructor(exchange_buckets);
        registry.register(
            "hoop_exchange_duration_seconds",
            "From a request's arrival to its answer's delivery, through the upstream",
            exchange_seconds.clone(),
        );
        let audit_append_seconds = append_buckets();
        registry.register(
            "hoop_audit_append_duration_seconds",
            "How long an event took to become durable in the audit log (the call waits for it)",
            audit_append_seconds.clone(),
        );
        let audit_events = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "hoop_audit_events",
            "Events in the audit log (its tree size); rate over hoop_audit_batches is the mean batch size",
            audit_events.clone(),
        );
        let audit_batches = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "hoop_audit_batches",
            "Batches this broker has written to the audit log's store since it started",
            audit_batches.clone(),
        );
        let audit_queued = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "hoop_audit_queued",
            "Events waiting for the audit log's writer",
            audit_queued.clone(),
        );
        let audit_degraded = Gauge::default();
        registry.register(
            "hoop_audit_degraded",
            "1 while the audit log cannot be written (calls are refused), else 0",
            audit_degraded.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "hoop_approvals_pending",
            "Approval requests waiting for a decision",
            approvals_pending.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "hoop_connections",
            "Authenticated client connections (QUIC) open now",
            connections.clone(),
        );
        let policy = Family::<PolicyLabel, Gauge>::default();
        registry.register(
            "hoop_policy_version",
            "1, labelled with the digest of the policy this broker judges by: replicas that disagree show two versions",
            policy.clone(),
        );
        let upstream_seconds: HistogramFamily<TargetLabel> =
            Family::new_with_constructor(exchange_buckets);
        registry.register(
            "hoop_upstream_duration_seconds",
            "From forwarding a message to the upstream until it answered (its response began, or the call failed)",
            upstream_seconds.clone(),
        );
        Self {
            registry,
            calls,
            refusals,
            auth_failures,
            connections_revoked,
            answers,
            exchange_seconds,
            upstream_seconds,
            audit_append_seconds,
            audit_events,
            audit_batches,
            audit_queued,
            audit_degraded,
            approvals_pending,
            connections,
            policy,
            policy_shown: std::sync::Mutex::default(),
        }
    }

    /// A client message forwarded to `target`.
    pub fn call(&self, target: &str, method: &str, decision: &'static str) {
        self.calls
            .get_or_create(&CallLabels {
                target: target.to_owned(),
                method: bounded_method(method),
                decision,
            })
            .inc();
    }

    /// A client message refused, with the JSON-RPC code it was refused with.
    pub fn refusal(&self, target: &str, code: i64) {
        // A target the broker does not serve is the client's own words: one
        // label for all of them, or any client could grow the series.
        let target = if code == crate::mcp::error::codes::UNKNOWN_TARGET {
            "unknown"
        } else {
            target
        };
        self.refusals
            .get_or_create(&RefusalLabels {
                target: target.to_owned(),
                reason: refusal_reason(code),
            })
            .inc();
    }

    /// A token refused; `reason` is the broker's own precise words, sorted
    /// into a few kinds here.
    pub fn auth_failure(&self, reason: &str) {
        // The words come from the verifier and its crates ("token expired",
        // jsonwebtoken's "ExpiredSignature"): compared without case.
        let reason = reason.to_ascii_lowercase();
        let kind = if reason.contains("revoked") {
            "revoked"
        } else if reason.contains("expired") {
            "expired"
        } else if reason.contains("hello") {
            "malformed"
        } else {
            "invalid_token"
        };
        self.auth_failures
            .get_or_create(&AuthLabels { reason: kind })
            .inc();
    }

    /// `n` live connections ended by a revocation.
    pub fn connections_revoked(&self, n: usize) {
        self.connections_revoked.inc_by(n as u64);
    }

    /// An answer delivered, and how long its exchange took.
    pub fn answer(&self, target: &str, outcome: &'static str, latency_us: u64) {
        self.answers
            .get_or_create(&AnswerLabels {
                target: target.to_owned(),
                outcome,
            })
            .inc();
        self.exchange_seconds
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .observe(latency_us as f64 / 1e6);
    }

    /// The upstream of `target` took `secs` to answer.
    pub fn upstream(&self, target: &str, secs: f64) {
        self.upstream_seconds
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .observe(secs);
    }

    /// One append to the audit log, waited for `secs`.
    pub fn audit_append(&self, secs: f64) {
        self.audit_append_seconds.observe(secs);
    }

    /// The text for `GET /metrics`, with the gauges as they are now.
    pub fn scrape(&self, now: &Snapshot) -> String {
        self.audit_events.set(now.audit_events);
        self.audit_batches.set(now.audit_batches);
        self.audit_queued.set(now.audit_queued);
        self.audit_degraded.set(i64::from(now.audit_degraded));
        self.approvals_pending
            .set(i64::try_from(now.approvals_pending).unwrap_or(i64::MAX));
        self.connections
            .set(i64::try_from(now.connections).unwrap_or(i64::MAX));
        // Only the policy in force now.
        let mut shown = self.policy_shown.lock().unwrap_or_else(|p| p.into_inner());
        if *shown != now.policy_version {
            self.policy.clear();
            self.policy
                .get_or_create(&PolicyLabel {
                    version: now.policy_version.clone(),
                })
                .set(1);
            shown.clone_from(&now.policy_version);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The gauges' values, read from their owners at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub audit_events: u64,
    pub audit_batches: u64,
    pub audit_queued: u64,
    pub audit_degraded: bool,
    pub approvals_pending: usize,
    pub connections: usize,
    /// `Policy::version` of the policy in force.
    pub policy_version: String,
}

/// MCP's own method names (both revisions), the only values the `method`
/// label takes besides `other`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "response",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/prompts/list_changed",
    "notifications/tasks/status",
];

/// A method name as a label: one of MCP's own, anything else a client
/// sends folded into `other`, so a client cannot grow the series without
/// bound (and the label needs no allocation).
fn bounded_method(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// The refusal's kind, from the JSON-RPC code the broker answered with.
fn refusal_reason(code: i64) -> &'static str {
    use crate::mcp::error::codes;
    match code {
        codes::DENIED => "denied",
        codes::APPROVAL_REQUIRED => "approval_required",
        codes::APPROVAL_DENIED => "approval_denied",
        codes::APPROVAL_EXPIRED => "approval_expired",
        codes::TOKEN_EXPIRED => "token_expired",
        codes::REVOKED => "revoked",
        codes::SESSION_NOT_FOUND => "session_not_found",
        codes::HANDLE_NOT_YOURS => "handle_not_yours",
        codes::UNKNOWN_TARGET => "unknown_target",
        codes::UPSTREAM_UNAVAILABLE => "upstream_unavailable",
        codes::AUDIT_UNAVAILABLE => "audit_unavailable",
        codes::MASKING_FAILED => "masking_failed",
        codes::HEADER_MISMATCH | codes::UNSUPPORTED_VERSION => "protocol",
        codes::PARSE_ERROR | codes::INVALID_REQUEST | codes::INVALID_PARAMS => "malformed",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_and_bounds_its_labels() {
        let m = Metrics::new();
        m.call("payments", "tools/call", "allow");
        m.call("payments", "x/custom-thing-a-client-made-up", "allow");
        m.refusal("payments", crate::mcp::error::codes::DENIED);
        m.answer("payments", "ok", 1_500);
        m.audit_append(0.000_2);
        m.upstream("payments", 0.000_9);
        let text = m.scrape(&Snapshot {
            audit_events: 7,
            approvals_pending: 2,
            policy_version: "0123456789abcdef".into(),
            ..Snapshot::default()
        });
        for want in [
            "hoop_calls_total{target=\"payments\",method=\"tools/call\",decision=\"allow\"} 1",
            "hoop_calls_total{target=\"payments\",method=\"other\",decision=\"allow\"} 1",
            "hoop_refusals_total{target=\"payments\",reason=\"denied\"} 1",
            "hoop_answers_total{target=\"payments\",outcome=\"ok\"} 1",
            "hoop_exchange_duration_seconds_count{target=\"payments\"} 1",
            "hoop_audit_append_duration_seconds_count 1",
            "hoop_upstream_duration_seconds_count{target=\"payments\"} 1",
            "hoop_audit_events 7",
            "hoop_approvals_pending 2",
            "hoop_policy_version{version=\"0123456789abcdef\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }
}
