//! A held call as a task: for a client that declared the Tasks extension
//! (`io.modelcontextprotocol/tasks`, 2026-07-28) on its `tools/call`, the
//! broker answers at once with a task of its own (`resultType: "task"`,
//! status `working`, a status message naming the approval), and the client
//! polls `tasks/get` while the approvers decide. Approved, the call is
//! judged again and forwarded, and the task completes with its answer;
//! denied or expired, it fails with an error naming the approval, the
//! outcome and the approver's reason; `tasks/cancel` withdraws the request.
//!
//! The broker's tasks are answered here and never reach the upstream. Each
//! is bound to the identity and target it was issued to; anyone else who
//! presents its id is refused as for any other foreign handle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use hoop_proto::McpHeaders;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::hold::{HeldCall, Release};
use super::target::{Target, STATELESS_REVISION};
use super::{json_reply, Pipeline, Reply};
use crate::approval::{ApprovalState, Ticket, APPROVAL_META};
use crate::audit::{Exchange, RequestFacts};
use crate::identity::{now_unix, Caller, IdentityKind};
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::policy::Decision;
use crate::store::{BrokerStore, StoreLocation};

/// The extension a client declares to be answered with a task.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// Where the broker's own task ids start, so they never pass for an
/// upstream's.
const TASK_PREFIX: &str = "hoop-approval-";
/// Most tasks the broker keeps; finished ones past their TTL go first.
const MAX_TASKS: usize = 10_000;
/// Most working tasks one requester may have.
const MAX_TASKS_PER_REQUESTER: usize = 100;
/// How often a client is asked to poll.
const POLL_INTERVAL_MS: u64 = 2_000;
/// How long a finished task's answer stays readable.
const KEEP_FINISHED_SECS: u64 = 3_600;
/// The rule a broker-answered `tasks/*` exchange carries in the record.
const TASK_RULE: &str = "builtin:held-task";

/// Whether a held call is answered with a task: a `tools/call` in the
/// stateless revision whose client declared the Tasks extension.
pub fn wants_task(msg: &McpMessage) -> bool {
    msg.is_method("tools/call")
        && msg.protocol_version.as_deref() == Some(STATELESS_REVISION)
        && msg
            .params()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
            .and_then(|c| c.get("extensions"))
            .and_then(|e| e.get(TASKS_EXTENSION))
            .is_some()
}

/// One task the broker issued for a held call.
pub struct HeldTask {
    pub id: String,
    origin: TaskOrigin,
    created_at: String,
    ttl_ms: u64,
    state: Mutex<TaskState>,
}

/// Who made the held call and the call itself, as the store keeps them:
/// enough to judge it again and forward it after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskOrigin {
    subject: String,
    #[serde(default)]
    email: Option<String>,
    groups: Vec<String>,
    issuer: String,
    /// `human` or `workload`.
    kind: String,
    /// The caller's token: when it lapses (after that the call does not
    /// run) and which it was, for the record.
    expires_at: u64,
    token_id: String,
    remote: SocketAddr,
    client: String,
    target: String,
    exchange: String,
    /// The call's canonical JSON.
    message: String,
    headers: StoredHeaders,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredHeaders {
    protocol_version: Option<String>,
    session_id: Option<String>,
    method: Option<String>,
    name: Option<String>,
    params: Vec<(String, String)>,
}

/// A task as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTask {
    id: String,
    created_at: String,
    ttl_ms: u64,
    origin: TaskOrigin,
    approval: u64,
    status: String,
    message: String,
    result: Option<Value>,
    error: Option<Value>,
    updated_at: String,
    changed: u64,
    #[serde(default)]
    running: bool,
}

struct TaskState {
    /// The approval it waits on (a new one if an identical call used the
    /// first).
    approval: u64,
    status: &'static str,
    message: String,
    result: Option<Value>,
    error: Option<Value>,
    updated_at: String,
    /// Unix seconds of the last change, for pruning.
    changed: u64,
    /// Stored before the call is let through: a task restored with it set
    /// was running when the broker stopped, and is not run again.
    running: bool,
}

impl HeldTask {
    fn state(&self) -> std::sync::MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, status: &'static str, message: String) {
        let mut s = self.state();
        s.status = status;
        s.message = message;
        s.updated_at = now_text();
        s.changed = now_unix();
    }

    fn complete(&self, result: Value) {
        self.state().result = Some(result);
        self.set("completed", "done".into());
    }

    fn fail(&self, e: &McpError) {
        self.state().error = Some(json!({"code": e.code, "message": e.message}));
        self.set("failed", e.message.clone());
    }

    fn finished(&self) -> bool {
        self.state().status != "working"
    }

    fn stored(&self) -> StoredTask {
        let s = self.state();
        let mut origin = self.origin.clone();
        if s.status != "working" {
            // The call's raw arguments stay in the store only while the
            // call may still have to run.
            origin.message.clear();
            origin.headers.params.clear();
        }
        StoredTask {
            id: self.id.clone(),
            created_at: self.created_at.clone(),
            ttl_ms: self.ttl_ms,
            origin,
            approval: s.approval,
            status: s.status.to_owned(),
            message: s.message.clone(),
            result: s.result.clone(),
            error: s.error.clone(),
            updated_at: s.updated_at.clone(),
            changed: s.changed,
            running: s.running,
        }
    }

    fn from_stored(t: StoredTask) -> Self {
        let status = match t.status.as_str() {
            "working" => "working",
            "completed" => "completed",
            "cancelled" => "cancelled",
            _ => "failed",
        };
        Self {
            id: t.id,
            origin: t.origin,
            created_at: t.created_at,
            ttl_ms: t.ttl_ms,
            state: Mutex::new(TaskState {
                approval: t.approval,
                status,
                message: t.message,
                result: t.result,
                error: t.error,
                updated_at: t.updated_at,
                changed: t.changed,
                running: t.running,
            }),
        }
    }

    /// The task as the extension's wire shapes have it; `detailed`: with
    /// the result or error (`tasks/get`).
    fn wire(&self, detailed: bool) -> Value {
        let s = self.state();
        let mut out = json!({
            "taskId": self.id,
            "status": s.status,
            "statusMessage": s.message,
            "createdAt": self.created_at,
            "lastUpdatedAt": s.updated_at,
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": POLL_INTERVAL_MS,
            "_meta": {APPROVAL_META: {"id": s.approval}},
        });
        if detailed {
            if let Some(r) = &s.result {
                out["result"] = r.clone();
            }
            if let Some(e) = &s.error {
                out["error"] = e.clone();
            }
        }
        out
    }
}

/// The broker's tasks, by id, kept in the broker store when there is one.
#[derive(Default)]
pub struct HeldTasks {
    tasks: Mutex<HashMap<String, Arc<HeldTask>>>,
    store: Option<StoreLocation>,
}

impl HeldTasks {
    pub fn new(store: Option<StoreLocation>) -> Self {
        Self {
            tasks: Mutex::default(),
            store,
        }
    }

    /// Writes the task as it is now to the store, off the async threads.
    async fn persist(&self, task: &HeldTask) -> Result<(), McpError> {
        let Some(path) = self.store.clone() else {
            return Ok(());
        };
        let t = task.stored();
        let body = serde_json::to_string(&t).map_err(|e| McpError::internal(e.to_string()))?;
        let saved = tokio::task::spawn_blocking(move || {
            BrokerStore::open(&path)?.save_task(&t.id, t.approval, &t.status, t.changed, &body)
        })
        .await
        .map_err(|e| McpError::internal(e.to_string()))?;
        saved.map_err(|e| {
            tracing::error!("held task not stored: {e:#}");
            McpError::new(
                codes::AUDIT_UNAVAILABLE,
                "the broker cannot store held tasks now; the call was not held",
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HeldTask>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<Arc<HeldTask>> {
        if !id.starts_with(TASK_PREFIX) {
            return None;
        }
        self.lock().get(id).cloned()
    }

    fn insert(&self, task: Arc<HeldTask>) -> Result<(), McpError> {
        let mut tasks = self.lock();
        let o = &task.origin;
        let mine = tasks
            .values()
            .filter(|t| {
                t.origin.subject == o.subject && t.origin.issuer == o.issuer && !t.finished()
            })
            .count();
        if mine >= MAX_TASKS_PER_REQUESTER {
            return Err(McpError::new(
                codes::APPROVAL_REQUIRED,
                format!("this call needs approval, and {mine} of your calls already wait as tasks (at most {MAX_TASKS_PER_REQUESTER})"),
            ));
        }
        if tasks.len() >= MAX_TASKS {
            let now = now_unix();
            tasks.retain(|_, t| {
                let s = t.state();
                s.status == "working" || now.saturating_sub(s.changed) < KEEP_FINISHED_SECS
            });
        }
        if tasks.len() >= MAX_TASKS {
            return Err(McpError::new(
                codes::APPROVAL_REQUIRED,
                format!("this call needs approval, and {MAX_TASKS} held calls already wait; try again later"),
            ));
        }
        tasks.insert(task.id.clone(), task);
        Ok(())
    }
}

fn now_text() -> String {
    crate::audit::event::format_time(crate::audit::event::now_ns())
}

impl Pipeline {
    /// Answers a held call with a task, and waits for its decision in the
    /// background.
    pub(super) async fn held_as_task(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        exchange: &Exchange,
        headers: &McpHeaders,
        msg: Arc<McpMessage>,
        ticket: Ticket,
    ) -> Reply {
        let now = now_unix();
        let request = self.approvals.get(&caller.identity, ticket.id).await;
        let waits_secs = request
            .as_ref()
            .map_or(3_600, |r| r.expires_at.saturating_sub(now));
        let who = &caller.identity;
        let task = Arc::new(HeldTask {
            id: format!("{TASK_PREFIX}{:032x}", rand::random::<u128>()),
            origin: TaskOrigin {
                subject: who.subject.clone(),
                email: who.email.clone(),
                groups: who.groups.clone(),
                issuer: who.issuer.clone(),
                kind: match who.kind {
                    IdentityKind::Human => "human".into(),
                    IdentityKind::Workload => "workload".into(),
                },
                expires_at: caller.expires_at(),
                token_id: caller.token_id().to_string(),
                remote: caller.remote,
                client: caller.client.clone(),
                target: target.name.clone(),
                exchange: exchange.id.clone(),
                message: String::from_utf8_lossy(&msg.to_bytes()).into_owned(),
                headers: StoredHeaders {
                    protocol_version: headers.protocol_version.clone(),
                    session_id: headers.session_id.clone(),
                    method: headers.method.clone(),
                    name: headers.name.clone(),
                    params: headers.params.clone(),
                },
            },
            created_at: now_text(),
            // The wait, and an hour to read the answer.
            ttl_ms: (waits_secs + KEEP_FINISHED_SECS) * 1000,
            state: Mutex::new(TaskState {
                approval: ticket.id,
                status: "working",
                message: format!("waiting for {}", ticket.waiting_for),
                result: None,
                error: None,
                updated_at: now_text(),
                changed: now,
                running: false,
            }),
        });
        if let Err(e) = self.held_tasks.insert(task.clone()) {
            return Reply::error(&e, msg.id.as_ref());
        }
        // Stored before the client hears of it: a task it was given
        // outlives a restart of the broker.
        if let Err(e) = self.held_tasks.persist(&task).await {
            self.held_tasks.lock().remove(&task.id);
            return Reply::error(&e, msg.id.as_ref());
        }
        let mut created = task.wire(false);
        created["resultType"] = json!("task");
        let body = json!({"jsonrpc": "2.0", "id": msg.id, "result": created});
        let facts = RequestFacts {
            caller,
            target: &target.name,
            exchange,
            session: None,
            msg: &msg,
        };
        // The answer is recorded before it goes; unrecorded, the task is
        // not handed out and its request waits on for a later call.
        let bytes = match self.own_answer(&facts, &body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                // Stored already: ended there too, so a restart does not
                // run a task nobody was given.
                task.fail(&e);
                let _ = self.held_tasks.persist(&task).await;
                self.held_tasks.lock().remove(&task.id);
                return Reply::error(&e, msg.id.as_ref());
            }
        };
        let driver = TaskDriver {
            pipeline: self.clone(),
            call: HeldCall {
                caller: caller.clone(),
                target,
                exchange: exchange.clone(),
                headers: headers.clone(),
                msg,
            },
            ticket,
            task,
        };
        tokio::spawn(driver.run());
        json_reply(200, bytes)
    }

    /// `tasks/get`, `tasks/cancel`, `tasks/update` of one of the broker's
    /// own tasks, answered here; `None` for any other message.
    pub(super) async fn answer_held_task(
        &self,
        caller: &Arc<Caller>,
        target: &Target,
        exchange: &Exchange,
        msg: &McpMessage,
    ) -> Option<Reply> {
        let method = msg.method.as_deref()?;
        if !matches!(method, "tasks/get" | "tasks/cancel" | "tasks/update") {
            return None;
        }
        let task = self.held_tasks.get(msg.name.as_deref()?)?;
        let facts = RequestFacts {
            caller,
            target: &target.name,
            exchange,
            session: None,
            msg,
        };
        let who = &caller.identity;
        let o = &task.origin;
        if o.subject != who.subject || o.issuer != who.issuer || o.target != target.name {
            let e = McpError::new(
                codes::HANDLE_NOT_YOURS,
                "this task was issued to another identity or for another target",
            );
            self.audit
                .refused(caller, &target.name, exchange, None, Some(msg), None, &e)
                .await;
            return Some(Reply::error(&e, msg.id.as_ref()));
        }
        let allow = Decision::Allow {
            rule: TASK_RULE.into(),
        };
        let body = msg.to_bytes();
        let masker = self.masking.default_masker();
        let approval = Some(task.state().approval);
        if let Err(e) = self
            .audit
            .request(&facts, &body, &allow, masker, approval)
            .await
        {
            return Some(Reply::error(&e, msg.id.as_ref()));
        }
        let answer = match method {
            "tasks/get" => Ok(task.wire(true)),
            "tasks/cancel" => {
                let id = task.state().approval;
                match self.approvals.withdraw(caller, id).await {
                    Ok(true) => {
                        if !task.finished() {
                            task.set("cancelled", format!("approval #{id} withdrawn"));
                            let _ = self.held_tasks.persist(&task).await;
                        }
                        Ok(task.wire(false))
                    }
                    // Decided already: the call runs (or ran), or was
                    // refused; the task says which.
                    Ok(false) => Ok(task.wire(false)),
                    Err(e) => Err(e),
                }
            }
            _ => Err(McpError::invalid_params(
                "this task waits for an approver and takes no input",
            )),
        };
        let body = match answer {
            Ok(result) => json!({"jsonrpc": "2.0", "id": msg.id, "result": result}),
            Err(e) => e.to_response(msg.id.as_ref()),
        };
        Some(match self.own_answer(&facts, &body).await {
            Ok(bytes) => json_reply(200, bytes),
            Err(e) => Reply::error(&e, msg.id.as_ref()),
        })
    }
}

/// Waits for a task's approval in the background, then runs the call.
struct TaskDriver {
    pipeline: Arc<Pipeline>,
    call: HeldCall,
    ticket: Ticket,
    task: Arc<HeldTask>,
}

impl TaskDriver {
    /// Bounded: each turn waits for the request to change, and a request
    /// ends (expiry) within its rule's `expires`. The state is read first,
    /// so a driver restored after a restart acts on a decision made while
    /// the broker was down. Each change of the task is stored.
    async fn run(mut self) {
        loop {
            let state = *self.ticket.changes.borrow_and_update();
            match state {
                ApprovalState::Pending => {
                    if self.ticket.changes.changed().await.is_err()
                        && *self.ticket.changes.borrow() == ApprovalState::Pending
                    {
                        // Gone without a final state: it cannot be decided.
                        self.refused(ApprovalState::Expired).await;
                        break;
                    }
                }
                ApprovalState::Approved | ApprovalState::Released => {
                    let Some(next) = self.release().await else {
                        break;
                    };
                    self.ticket = next;
                    {
                        let mut s = self.task.state();
                        s.approval = self.ticket.id;
                        s.message = format!("waiting for {}", self.ticket.waiting_for);
                    }
                    let _ = self.pipeline.held_tasks.persist(&self.task).await;
                }
                ApprovalState::Cancelled => {
                    if !self.task.finished() {
                        self.task.set(
                            "cancelled",
                            format!("approval #{} withdrawn", self.ticket.id),
                        );
                    }
                    break;
                }
                state => {
                    self.refused(state).await;
                    break;
                }
            }
        }
        if let Err(e) = self.pipeline.held_tasks.persist(&self.task).await {
            tracing::warn!(task = %self.task.id, "the task's end is not stored: {}", e.message);
        }
    }

    /// Denied or expired: the task completes with an error result that
    /// names the approval, the outcome and the approver's reason (a tool
    /// result, so the client shows it as the call's answer).
    async fn refused(&self, state: ApprovalState) {
        let e = self
            .pipeline
            .approval_refusal(&self.call.caller, self.ticket.id, state)
            .await;
        self.refuse(&e).await;
        self.task.complete(json!({
            "content": [{"type": "text", "text": e.message}],
            "isError": true,
            "_meta": {APPROVAL_META: {"id": self.ticket.id, "state": state.as_str(), "code": e.code}},
        }));
    }

    async fn refuse(&self, e: &McpError) {
        self.pipeline.refuse_held(&self.call, e).await;
    }

    /// Judged again and forwarded; the task takes the answer. `Some`: an
    /// identical call used the approval first, so this one waits again.
    async fn release(&self) -> Option<Ticket> {
        // Marked running, and stored so, before anything can let the call
        // through: after a crash it must not run twice (a window grant
        // would let it). Unstored, it does not run.
        self.task.state().running = true;
        if let Err(e) = self.pipeline.held_tasks.persist(&self.task).await {
            self.task.state().running = false;
            self.task.fail(&e);
            return None;
        }
        let released = self.pipeline.release_held(&self.call).await;
        let reply = match released {
            Release::Runs(reply) => reply,
            Release::HeldAgain(ticket) => {
                self.task.state().running = false;
                return Some(ticket);
            }
            Release::Refused(e) => {
                self.task.fail(&e);
                return None;
            }
        };
        let mut messages = reply.messages;
        let mut answer = None;
        // Bounded by the upstream's answer, which ends the stream.
        while let Some(m) = messages.next().await {
            match m {
                Ok(bytes) => {
                    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                        continue;
                    };
                    if v.get("id") == self.call.msg.id.as_ref() {
                        answer = Some(v);
                    }
                }
                Err(e) => {
                    self.task.fail(&e);
                    return None;
                }
            }
        }
        match answer {
            Some(v) => match (v.get("result"), v.get("error")) {
                (Some(r), _) => self.task.complete(r.clone()),
                (None, Some(e)) => {
                    let code = e
                        .get("code")
                        .and_then(Value::as_i64)
                        .unwrap_or(codes::INTERNAL_ERROR);
                    let message = e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the call failed");
                    self.task.fail(&McpError::new(code, message));
                }
                _ => self
                    .task
                    .fail(&McpError::upstream("the upstream's answer had no result")),
            },
            None => self.task.fail(&McpError::upstream(
                "the upstream sent no answer to the call",
            )),
        }
        None
    }
}

impl Pipeline {
    /// After a restart: the broker's tasks from the store, and a driver
    /// again for each one still working (its call judged again when its
    /// request is decided, as if the broker had not stopped).
    pub async fn restore_held_tasks(self: &Arc<Self>) -> anyhow::Result<()> {
        let Some(path) = self.held_tasks.store.clone() else {
            return Ok(());
        };
        let since = now_unix().saturating_sub(KEEP_FINISHED_SECS);
        let bodies = tokio::task::spawn_blocking(move || {
            BrokerStore::open(&path)?.load_tasks(since, MAX_TASKS)
        })
        .await??;
        for body in bodies {
            let stored: StoredTask = match serde_json::from_str(&body) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("a held task in the store cannot be read, left out: {e}");
                    continue;
                }
            };
            let task = Arc::new(HeldTask::from_stored(stored));
            let _ = self.held_tasks.insert(task.clone());
            if !task.finished() {
                self.resume(task).await;
            }
        }
        Ok(())
    }

    /// A driver for a restored working task, or its end if it cannot run.
    async fn resume(self: &Arc<Self>, task: Arc<HeldTask>) {
        if task.state().running {
            let e = McpError::upstream(
                "the broker restarted while the approved call ran; its answer, if any, is in the audit log",
            );
            return self.end_restored(&task, e).await;
        }
        let o = &task.origin;
        let identity = crate::identity::Identity {
            subject: o.subject.clone(),
            email: o.email.clone(),
            groups: o.groups.clone(),
            issuer: o.issuer.clone(),
            kind: match o.kind.as_str() {
                "workload" => IdentityKind::Workload,
                _ => IdentityKind::Human,
            },
        };
        let caller = Arc::new(Caller::new(
            crate::identity::VerifiedToken {
                identity,
                expires_at: o.expires_at,
                token_id: o.token_id.clone(),
            },
            o.remote,
            o.client.clone(),
        ));
        let approval = task.state().approval;
        let (target, msg, ticket) = match (
            self.targets.get(&o.target).cloned(),
            McpMessage::parse(o.message.as_bytes()),
            self.approvals.ticket(approval).await,
        ) {
            (Some(t), Ok(m), Some(ticket)) => (t, Arc::new(m), ticket),
            (None, _, _) => {
                return self
                    .end_restored(
                        &task,
                        McpError::upstream(format!("target {} is no longer configured", o.target)),
                    )
                    .await
            }
            (_, Err(e), _) => return self.end_restored(&task, e).await,
            (_, _, None) => {
                // Decided while the broker was down, or used: what it
                // became says how the task ends.
                let state = self
                    .approvals
                    .get(&caller.identity, approval)
                    .await
                    .map_or(ApprovalState::Expired, |r| r.state);
                let e = match state {
                    ApprovalState::Released => McpError::upstream(
                        "the broker restarted while the approved call ran; its answer is in the audit log",
                    ),
                    state => self.approval_refusal(&caller, approval, state).await,
                };
                return self.end_restored(&task, e).await;
            }
        };
        let h = &o.headers;
        let driver = TaskDriver {
            pipeline: self.clone(),
            call: HeldCall {
                caller,
                target,
                exchange: Exchange {
                    id: o.exchange.clone(),
                    started: std::time::Instant::now(),
                },
                headers: McpHeaders {
                    protocol_version: h.protocol_version.clone(),
                    session_id: h.session_id.clone(),
                    method: h.method.clone(),
                    name: h.name.clone(),
                    params: h.params.clone(),
                    last_event_id: None,
                },
                msg,
            },
            ticket,
            task,
        };
        tokio::spawn(driver.run());
    }

    async fn end_restored(&self, task: &HeldTask, e: McpError) {
        task.fail(&e);
        let _ = self.held_tasks.persist(task).await;
    }
}
