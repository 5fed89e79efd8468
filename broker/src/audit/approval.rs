//! The approval events: a request opened, each approver's decision, an
//! expiry, the release of the approved call. Each is recorded before it
//! takes effect, so the log never misses a decision that released a call.

use serde_json::json;

use super::event::{Actor, Event, EventKind};
use super::Audit;
use crate::approval::{ApprovalDecision, ApprovalRequest};
use crate::identity::Caller;
use crate::mcp::error::McpError;

impl Audit {
    /// `approval.requested`, `approval.released`, `approval.cancelled`:
    /// the requester acted, in `exchange` (a release happens in the
    /// exchange of the call it lets through, which may be a later one than
    /// the call that opened the request: `detail.opened_in` names that).
    pub async fn approval_by_requester(
        &self,
        kind: EventKind,
        caller: &Caller,
        r: &ApprovalRequest,
        exchange: &str,
    ) -> Result<(), McpError> {
        let mut e = approval_event(kind, r);
        e.exchange = Some(exchange);
        e.actor = Some(Actor::of(caller));
        e.reason = Some(&r.reason);
        let mut detail = detail(r);
        if exchange != r.exchange {
            detail["opened_in"] = r.exchange.clone().into();
        }
        e.detail = Some(detail);
        self.record(&e, None).await
    }

    /// `approval.decided`: `decision` (the one just made) by `approver`.
    pub async fn approval_decided(
        &self,
        approver: &Caller,
        r: &ApprovalRequest,
        decision: &ApprovalDecision,
    ) -> Result<(), McpError> {
        let mut e = approval_event(EventKind::ApprovalDecided, r);
        e.actor = Some(Actor::of(approver));
        e.decision = Some(decision.verdict.as_str());
        e.reason = decision.reason.as_deref();
        e.detail = Some(detail(r));
        self.record(&e, None).await
    }

    /// `approval.expired`: the broker ended it.
    pub async fn approval_expired(&self, r: &ApprovalRequest) -> Result<(), McpError> {
        let mut e = approval_event(EventKind::ApprovalExpired, r);
        e.actor = Some(Actor::broker());
        e.detail = Some(detail(r));
        self.record(&e, None).await
    }
}

fn approval_event(kind: EventKind, r: &ApprovalRequest) -> Event<'_> {
    let mut e = Event::now(kind);
    e.approval = Some(r.id);
    e.exchange = Some(&r.exchange);
    e.target = Some(&r.binding.target);
    e.method = Some(&r.binding.method);
    e.name = Some(&r.binding.name);
    e.rule = Some(&r.binding.rule);
    e
}

/// What an examiner needs to tie the event to the call: the binding, the
/// requester, the approvers asked, the decisions so far and the state.
fn detail(r: &ApprovalRequest) -> serde_json::Value {
    json!({
        "state": r.state,
        "requester": r.requester,
        "args_sha256": r.binding.args_digest,
        "tool_fingerprint": r.binding.tool_fingerprint,
        "policy_version": r.binding.policy_version,
        "approvers": r.approvers,
        "quorum": r.quorum,
        "human_approver": r.human_approver,
        "decisions": r.decisions,
        "expires_at": r.expires_at,
    })
}
