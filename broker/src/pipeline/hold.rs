//! Layer 6, approval, on the request path: a call an `approve` rule
//! matched either uses up its granted approval and goes on, or is held.
//!
//! A held call is answered as an event stream at once, so the client hears
//! why it waits: a progress notification every few seconds where it sent a
//! progress token (each one resets the client's own timeout), and a log
//! message. When the request is approved the call is judged again from the
//! top (policy may have changed) and forwarded; its answer follows on the
//! same stream. Denied or expired, the client gets an error naming the
//! approval. Past the hold limit the broker answers a `tools/call` with a
//! tool result saying the approval is pending: the same caller's identical
//! call later picks the same request up. A client that goes away drops
//! this stream, which ends its wait and nothing else: the request stays
//! for the approvers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use hoop_proto::{McpHeaders, ResponseBody, ResponseHead};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::target::Target;
use super::{Judgement, Pipeline, Reply};
use crate::approval::{Admission, ApprovalState, Ask, Binding, Ticket, APPROVAL_META, REASON_META};
use crate::audit::Exchange;
use crate::identity::Caller;
use crate::masking::Masker;
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::policy::Policy;

type Messages = BoxStream<'static, Result<Bytes, McpError>>;

/// A held call: who made it and the call itself, all a release needs.
/// Shared by held streams and the broker's tasks.
pub(super) struct HeldCall {
    pub caller: Arc<Caller>,
    pub target: Arc<Target>,
    pub exchange: Exchange,
    pub headers: McpHeaders,
    pub msg: Arc<McpMessage>,
}

/// A call held on its stream.
struct Held {
    pipeline: Arc<Pipeline>,
    call: HeldCall,
    ticket: Ticket,
    /// When the broker stops holding and answers "pending".
    until: Instant,
    next_progress: Instant,
    progress: u64,
}

enum Step {
    Hold(Box<Held>),
    Done,
}

/// What became of a held call once its request was approved.
pub(super) enum Release {
    /// It runs: the upstream's answer.
    Runs(Reply),
    /// An identical call used the approval first: this one waits again.
    HeldAgain(Ticket),
    /// Refused (recorded): revoked or lapsed meanwhile, or the policy
    /// changed its mind.
    Refused(McpError),
}

impl Pipeline {
    /// Layer 6 for a call an `approve` rule matched under `policy`.
    #[allow(clippy::too_many_arguments)] // the call's facts, each read once
    pub(super) async fn admit(
        &self,
        caller: &Arc<Caller>,
        target: &Target,
        exchange: &Exchange,
        msg: &McpMessage,
        policy: &Policy,
        rule: &str,
        masker: &Masker,
    ) -> Result<Admission, McpError> {
        let Some(spec) = policy.approval(rule) else {
            return Err(McpError::internal(format!(
                "rule {rule} holds calls for approval but names no approvers"
            )));
        };
        let method = msg.method.as_deref().unwrap_or("");
        let name = msg.item.as_deref().unwrap_or("");
        let params = msg.params();
        let binding = Binding {
            subject: caller.identity.subject.clone(),
            issuer: caller.identity.issuer.clone(),
            target: target.name.clone(),
            method: method.to_owned(),
            name: name.to_owned(),
            args_digest: Binding::digest_of(method, params),
            tool_fingerprint: match method {
                "tools/call" => self.fingerprint(target, name).await,
                _ => None,
            },
            rule: rule.to_owned(),
            policy_version: policy.version().to_owned(),
        };
        let reason = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(REASON_META))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.approvals
            .admit(Ask {
                caller: caller.clone(),
                binding,
                spec: spec.clone(),
                reason,
                arguments: masked_arguments(msg, masker),
                exchange: exchange.id.clone(),
                tool_state: (method == "tools/call").then(|| target.tool_state(name).to_owned()),
            })
            .await
    }

    /// The definition of `tool` an approval binds: when no list named it
    /// yet, the broker lists the target's tools itself first, so an
    /// approval is never bound to a definition nobody saw.
    async fn fingerprint(&self, target: &Target, tool: &str) -> Option<String> {
        if let Some(f) = target.tool_fingerprint(tool) {
            return Some(f);
        }
        target.fetch_tools(&self.audit).await;
        target.tool_fingerprint(tool)
    }

    /// A held call whose request was approved: its caller must still be
    /// admitted (not revoked, token not lapsed), then it is judged again
    /// from the top, where the approval layer uses the approval up, and
    /// forwarded. Shared by held streams and the broker's tasks.
    pub(super) async fn release_held(self: &Arc<Self>, call: &HeldCall) -> Release {
        let HeldCall {
            caller,
            target,
            exchange,
            headers,
            msg,
        } = call;
        if let Err(e) = self.still_admitted(caller) {
            self.refuse_held(call, &e).await;
            return Release::Refused(e);
        }
        match self.judge(caller, target, exchange, headers, msg).await {
            Ok(Judgement::Forward(judged)) => Release::Runs(
                self.forward(caller, target.clone(), exchange, msg.clone(), judged)
                    .await,
            ),
            Ok(Judgement::Held(ticket)) => Release::HeldAgain(ticket),
            Err(e) => {
                self.refuse_held(call, &e).await;
                Release::Refused(e)
            }
        }
    }

    /// Records the refusal of a held call.
    pub(super) async fn refuse_held(&self, call: &HeldCall, e: &McpError) {
        self.audit
            .refused(
                &call.caller,
                &call.target.name,
                &call.exchange,
                call.headers.session_id.as_deref(),
                Some(&call.msg),
                None,
                e,
            )
            .await;
    }

    /// What a denied, expired or withdrawn request tells the caller.
    pub(super) async fn approval_refusal(
        &self,
        caller: &Caller,
        id: u64,
        state: ApprovalState,
    ) -> McpError {
        match state {
            ApprovalState::Denied => {
                let request = self.approvals.get(&caller.identity, id).await;
                let by = request
                    .as_ref()
                    .and_then(|r| r.decisions.last())
                    .map(|d| {
                        format!(
                            "{}: {}",
                            d.email.as_deref().unwrap_or(&d.approver),
                            d.reason.as_deref().unwrap_or("no reason given")
                        )
                    })
                    .unwrap_or_else(|| "an approver".into());
                McpError::new(
                    codes::APPROVAL_DENIED,
                    format!("approval #{id} was denied by {by}"),
                )
            }
            ApprovalState::Cancelled => McpError::new(
                codes::APPROVAL_EXPIRED,
                format!("approval #{id} was withdrawn by its requester"),
            ),
            _ => McpError::new(
                codes::APPROVAL_EXPIRED,
                format!("approval #{id} expired before anyone decided; call again to ask anew"),
            ),
        }
    }

    /// The answer to a held call: an event stream that waits for the
    /// decision, then carries the call's answer.
    pub(super) fn held(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        exchange: Exchange,
        headers: &McpHeaders,
        msg: Arc<McpMessage>,
        ticket: Ticket,
    ) -> Reply {
        let limit = match msg.progress_token() {
            Some(_) => self.approvals.hold.hold_secs,
            None => self.approvals.hold.hold_secs_without_progress,
        };
        let now = Instant::now();
        let notice = log_message(
            &format!("this call waits for {}", ticket.waiting_for),
            ticket.id,
            "held",
        );
        let held = Held {
            pipeline: self.clone(),
            call: HeldCall {
                caller: caller.clone(),
                target,
                exchange,
                headers: headers.clone(),
                msg,
            },
            ticket,
            until: now + Duration::from_secs(limit),
            next_progress: now,
            progress: 0,
        };
        let steps = stream::unfold(Step::Hold(Box::new(held)), |step| async move {
            match step {
                Step::Done => None,
                Step::Hold(held) => Some(held.step().await),
            }
        })
        .flatten();
        Reply {
            head: ResponseHead {
                status: 200,
                body: ResponseBody::EventStream,
                session_id: None,
            },
            messages: Box::pin(stream::once(async move { Ok(notice) }).chain(steps)),
        }
    }
}

impl Held {
    /// Waits for the next thing to say: progress, the decision, or the
    /// end of the hold.
    async fn step(mut self: Box<Self>) -> (Messages, Step) {
        let token = self.call.msg.progress_token().cloned();
        tokio::select! {
            changed = self.ticket.changes.changed() => {
                // An error: the request left the open set; its last state
                // says how (never pending, but a stream must not spin).
                let state = *self.ticket.changes.borrow_and_update();
                match (changed, state) {
                    (Err(_), ApprovalState::Pending) => self.decided(ApprovalState::Expired).await,
                    _ => self.decided(state).await,
                }
            }
            _ = tokio::time::sleep_until(self.next_progress), if token.is_some() => {
                self.progress += 1;
                self.next_progress = Instant::now()
                    + Duration::from_secs(self.pipeline.approvals.hold.progress_every_secs);
                let note = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {
                        "progressToken": token,
                        "progress": self.progress,
                        "message": format!("waiting for {}", self.ticket.waiting_for),
                        "_meta": {APPROVAL_META: {"id": self.ticket.id, "state": "held"}},
                    }
                });
                (one(Ok(to_bytes(&note))), Step::Hold(self))
            }
            _ = tokio::time::sleep_until(self.until) => {
                let answer = self.pending().await;
                (one(Ok(answer)), Step::Done)
            }
        }
    }

    async fn decided(self: Box<Self>, state: ApprovalState) -> (Messages, Step) {
        match state {
            // Another grant towards a quorum: keep waiting.
            ApprovalState::Pending => (empty(), Step::Hold(self)),
            // Approved (or used by an identical call that got there
            // first): judged again from the top; the approval layer then
            // uses the approval up, or holds the call on a new request.
            ApprovalState::Approved | ApprovalState::Released => self.rejudge().await,
            ApprovalState::Denied | ApprovalState::Expired | ApprovalState::Cancelled => {
                let e = self
                    .pipeline
                    .approval_refusal(&self.call.caller, self.ticket.id, state)
                    .await;
                self.refuse(&e).await;
                (
                    one(Ok(error_body(&e, self.call.msg.id.as_ref()))),
                    Step::Done,
                )
            }
        }
    }

    async fn rejudge(mut self: Box<Self>) -> (Messages, Step) {
        let p = self.pipeline.clone();
        let released = p.release_held(&self.call).await;
        match released {
            Release::Runs(reply) => {
                // Said first, so a client that waits on its own clock (hoop
                // exec --wait) knows the wait is over and the call runs.
                let granted = format!(
                    "approval #{} was granted; the call runs now",
                    self.ticket.id
                );
                let messages =
                    one(Ok(log_message(&granted, self.ticket.id, "granted"))).chain(reply.messages);
                (Box::pin(messages), Step::Done)
            }
            Release::HeldAgain(ticket) => {
                self.ticket = ticket;
                (empty(), Step::Hold(self))
            }
            Release::Refused(e) => (
                one(Ok(error_body(&e, self.call.msg.id.as_ref()))),
                Step::Done,
            ),
        }
    }

    async fn refuse(&self, e: &McpError) {
        self.pipeline.refuse_held(&self.call, e).await;
    }

    /// The hold ended undecided: a tool call gets a tool result that says
    /// so (clients show it; a model can call again); anything else an
    /// error. Recorded as a refusal, since nothing was forwarded.
    async fn pending(&self) -> Bytes {
        let text = format!(
            "{} is pending; call again with the same arguments to pick it up",
            self.ticket.waiting_for
        );
        let e = McpError::new(codes::APPROVAL_REQUIRED, text.clone());
        self.refuse(&e).await;
        if self.call.msg.is_method("tools/call") {
            to_bytes(&json!({
                "jsonrpc": "2.0",
                "id": self.call.msg.id,
                "result": {
                    "content": [{"type": "text", "text": text}],
                    "isError": true,
                    "_meta": {APPROVAL_META: {"id": self.ticket.id, "state": "pending"}},
                }
            }))
        } else {
            error_body(&e, self.call.msg.id.as_ref())
        }
    }
}

/// The arguments approvers read: masked by the rule's profile.
fn masked_arguments(msg: &McpMessage, masker: &Masker) -> Value {
    let masked = masker
        .client_message(msg)
        .and_then(|(bytes, _)| serde_json::from_slice::<Value>(&bytes).ok());
    let value = masked.as_ref().unwrap_or(&msg.value);
    let params = value.get("params");
    params
        .and_then(|p| p.get("arguments"))
        .or(params)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A `notifications/message` from the broker (logger `hoop`), marked with
/// the approval and its state (`held`, `granted`) in `_meta`: upstreams'
/// messages lose that mark in the relay, so a client can trust it.
fn log_message(text: &str, id: u64, state: &str) -> Bytes {
    to_bytes(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {"level": "notice", "logger": "hoop", "data": text,
            "_meta": {APPROVAL_META: {"id": id, "state": state}}}
    }))
}

fn error_body(e: &McpError, id: Option<&Value>) -> Bytes {
    to_bytes(&e.to_response(id))
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn one(m: Result<Bytes, McpError>) -> Messages {
    Box::pin(stream::once(async move { m }))
}

fn empty() -> Messages {
    Box::pin(stream::empty())
}
