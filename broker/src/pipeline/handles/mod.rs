//! Handles the upstream mints for one identity, bound to that identity.
//!
//! Every identity reaches an upstream through the broker with the same
//! service credential, so the upstream cannot tell alice from bob: a task id
//! it hands out (2026-07-28 Tasks extension: a result with
//! `resultType: "task"` and a `taskId`; 2025-11-25 SEP-1686: `result.task.
//! taskId`) or an `input_required` `requestState` it asks the client to echo
//! back is, to the upstream, good for anyone who presents it. The broker is
//! the only place that knows who received it, so it records that here, as
//! the answer streams by, and refuses a handle presented by anyone else —
//! or one it never saw issued (forged, from before a restart, from another
//! broker) — before the message reaches the upstream. Handshake-era session
//! ids are bound the same way in `session.rs`.
//!
//! A `tasks/get`, `tasks/result` or `tasks/update` is also judged again as
//! the call that started the task (method, name, arguments as the upstream
//! received them), under the policy in force now: a task started while a
//! tool was allowed does not keep delivering its results after a policy
//! change denies the tool. `tasks/cancel` is only bound, never re-judged:
//! stopping one's own work must stay possible when the tool is no longer
//! allowed.
//!
//! The table is bounded: entries per identity, entries overall, argument
//! bytes overall, and an age limit. A handle that falls out of it is refused
//! like an unknown one, which fails closed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::{McpMessage, MessageKind};
use crate::mcp::server::ServerMessage;
use crate::policy::{Decision, Policy, PolicyRequest};
use crate::store::StoreLocation;

/// How long a task id stays usable: the longest a report or batch job
/// plausibly runs and is polled, without keeping handles forever.
pub const TASK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long an `input_required` round may wait for the client's answer.
pub const STATE_TTL: Duration = Duration::from_secs(60 * 60);
/// Handles one identity may hold on all targets; past it, its oldest go.
pub const MAX_PER_IDENTITY: usize = 1024;
/// Handles overall; past it, the largest holder's oldest go, so one
/// identity cannot push everyone else's handles out.
pub const MAX_TOTAL: usize = 65_536;
/// Arguments of one originating call kept for re-judging `tasks/*`.
const MAX_ARGS_BYTES: usize = 16 * 1024;
/// Argument bytes kept overall (the table's memory is bounded by this and
/// the entry caps, not by what upstreams send).
const MAX_TOTAL_ARGS_BYTES: usize = 32 * 1024 * 1024;
/// Answers larger than this are not searched for handles. A handle result
/// is small; a handle in a larger one is not recorded and so is refused
/// when presented (fails closed).
const MAX_OBSERVED_BODY: usize = 1024 * 1024;
/// Longest task id or request state recorded.
const MAX_HANDLE_BYTES: usize = 64 * 1024;
/// How often expired entries are swept out (they are refused on sight
/// regardless).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The `tasks/*` methods that name one task in `params.taskId`.
const TASK_METHODS: &[&str] = &["tasks/get", "tasks/update", "tasks/cancel", "tasks/result"];

/// Whether `method` addresses one task by id.
pub fn is_task_method(method: &str) -> bool {
    TASK_METHODS.contains(&method)
}

/// The call that made the upstream mint a handle, as the upstream received
/// it: what a later `tasks/*` call is judged as.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub method: String,
    pub name: Option<String>,
    /// `params.arguments`, when small enough to keep; `None` otherwise,
    /// which makes a condition on arguments fail (and so never allow).
    pub arguments: Option<Value>,
}

impl Origin {
    /// Judged by the same item as the pipeline judged the message itself.
    fn of(msg: &McpMessage) -> Self {
        Self {
            method: msg.method.clone().unwrap_or_default(),
            name: msg.item.clone(),
            arguments: msg.policy_arguments().cloned(),
        }
    }

    fn args_len(&self) -> usize {
        self.arguments
            .as_ref()
            .map_or(0, |a| serde_json::to_vec(a).map_or(usize::MAX, |v| v.len()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Owner {
    subject: String,
    issuer: String,
}

impl Owner {
    fn of(identity: &Identity) -> Self {
        Self {
            subject: identity.subject.clone(),
            issuer: identity.issuer.clone(),
        }
    }

    fn is(&self, identity: &Identity) -> bool {
        self.subject == identity.subject && self.issuer == identity.issuer
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Task {
        target: String,
        id: String,
    },
    /// Request states can be large; their digest identifies them.
    State {
        target: String,
        digest: [u8; 32],
    },
}

impl Key {
    fn task(target: &str, id: &str) -> Self {
        Self::Task {
            target: target.to_owned(),
            id: id.to_owned(),
        }
    }

    fn state(target: &str, state: &str) -> Self {
        Self::State {
            target: target.to_owned(),
            digest: Sha256::digest(state.as_bytes()).into(),
        }
    }

    /// The handles `msg` presents: its task id on a `tasks/*` call, its
    /// request state.
    fn presented(target: &str, msg: &McpMessage) -> impl Iterator<Item = Self> {
        let task = is_task_method(msg.method.as_deref().unwrap_or(""))
            .then_some(msg.name.as_deref())
            .flatten()
            .map(|id| Self::task(target, id));
        let state = msg
            .params()
            .and_then(|p| p.get("requestState"))
            .and_then(Value::as_str)
            .map(|s| Self::state(target, s));
        task.into_iter().chain(state)
    }
}

struct Entry {
    owner: Owner,
    origin: Arc<Origin>,
    expires: Instant,
    args_len: usize,
    /// Issued to two identities: refused for both until it expires.
    poisoned: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Each owner's keys, oldest first: the order eviction follows. Kept in
    /// step with `map` (every removal goes through `remove`).
    by_owner: HashMap<Owner, VecDeque<Key>>,
    args_bytes: usize,
    next_sweep: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        let Some(e) = self.map.remove(key) else {
            return;
        };
        self.args_bytes = self.args_bytes.saturating_sub(e.args_len);
        if let Some(q) = self.by_owner.get_mut(&e.owner) {
            if let Some(pos) = q.iter().position(|k| k == key) {
                q.remove(pos);
            }
            if q.is_empty() {
                self.by_owner.remove(&e.owner);
            }
        }
    }

    fn evict_oldest_of(&mut self, owner: &Owner) {
        let oldest = self.by_owner.get(owner).and_then(|q| q.front()).cloned();
        if let Some(k) = oldest {
            self.remove(&k);
        }
    }

    /// Marks `key` as issued to two identities (another broker saw it
    /// minted for someone else): refused for both from now on.
    fn poison(&mut self, key: &Key) {
        if let Some(e) = self.map.get_mut(key) {
            e.poisoned = true;
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let expired: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.remove(k);
        }
    }

    fn insert(&mut self, key: Key, owner: Owner, mut origin: Origin, ttl: Duration) {
        let now = Instant::now();
        self.sweep(now);
        if let Some(e) = self.map.get_mut(&key) {
            if e.owner == owner {
                e.expires = now + ttl;
            } else {
                e.poisoned = true;
                // The upstream issued the same handle to two identities (a
                // bug or a collision). Neither may use it: one could reach
                // the other's work.
                tracing::warn!(first = %e.owner.subject, second = %owner.subject,
                    "upstream issued the same handle to two identities; refusing it for both");
            }
            return;
        }
        let mut args_len = origin.args_len();
        if args_len > MAX_ARGS_BYTES
            || self.args_bytes.saturating_add(args_len) > MAX_TOTAL_ARGS_BYTES
        {
            // Not kept: re-judging sees no arguments, so a condition on them
            // fails and never allows (fail closed, memory bounded).
            origin.arguments = None;
            args_len = 0;
        }
        while self.by_owner.get(&owner).map_or(0, VecDeque::len) >= MAX_PER_IDENTITY {
            self.evict_oldest_of(&owner);
        }
        while self.map.len() >= MAX_TOTAL {
            let heaviest = self
                .by_owner
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(o, _)| o.clone());
            match heaviest {
                Some(o) => self.evict_oldest_of(&o),
                None => break,
            }
        }
        self.args_bytes = self.args_bytes.saturating_add(args_len);
        self.by_owner
            .entry(owner.clone())
            .or_default()
            .push_back(key.clone());
        self.map.insert(
            key,
            Entry {
                owner,
                origin: Arc::new(origin),
                expires: now + ttl,
                args_len,
                poisoned: false,
            },
        );
    }

    /// The origin of `key` if it is live and `identity`'s.
    fn owned_by(&self, key: &Key, identity: &Identity) -> Result<Arc<Origin>, Refusal> {
        match self.map.get(key) {
            Some(e) if e.expires <= Instant::now() || e.poisoned => Err(Refusal::Unknown),
            Some(e) if e.owner.is(identity) => Ok(e.origin.clone()),
            Some(e) => Err(Refusal::NotYours(e.owner.subject.clone())),
            None => Err(Refusal::Unknown),
        }
    }
}

enum Refusal {
    Unknown,
    NotYours(String),
}

/// The handles the upstreams minted, and whom for.
#[derive(Default)]
pub struct HandleTable {
    inner: Mutex<Inner>,
    /// The store shared with other replicas, when there is one: handles
    /// are written there as they are minted, and looked up there when
    /// presented (`shared.rs`).
    shared: Option<shared::SharedHandles>,
}

impl HandleTable {
    /// A table that shares its handles through `store` when several
    /// replicas use it (PostgreSQL); alone otherwise.
    pub fn new(store: Option<&StoreLocation>) -> Self {
        Self {
            inner: Mutex::default(),
            shared: store
                .filter(|s| s.is_shared())
                .map(|s| shared::SharedHandles::new(s.clone())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles recorded now (all kinds, all identities).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses `msg` when it presents a handle that is not `identity`'s on
    /// `target`: a task id (`tasks/get|update|cancel|result`) or an
    /// `input_required` `requestState`. Returns the call that created the
    /// task, for `tasks/*` to be judged again as that call.
    pub fn check(
        &self,
        identity: &Identity,
        target: &str,
        msg: &McpMessage,
    ) -> Result<Option<Arc<Origin>>, McpError> {
        let method = msg.method.as_deref().unwrap_or("");
        let mut origin = None;
        if is_task_method(method) {
            let Some(task) = msg.name.as_deref() else {
                return Err(McpError::invalid_params(format!(
                    "{method} needs params.taskId (a string)"
                )));
            };
            let found = self.lock().owned_by(&Key::task(target, task), identity);
            match found {
                Ok(o) => origin = Some(o),
                Err(r) => return Err(refuse(identity, target, "task", &short(task), r)),
            }
        }
        if let Some(state) = msg.params().and_then(|p| p.get("requestState")) {
            let Some(state) = state.as_str() else {
                return Err(McpError::invalid_params(
                    "params.requestState must be a string",
                ));
            };
            let found = self.lock().owned_by(&Key::state(target, state), identity);
            let o = match found {
                Ok(o) => o,
                Err(r) => return Err(refuse(identity, target, "requestState", "", r)),
            };
            // A state answers one call: echoed on another method or item it
            // would carry one call's progress into another.
            if o.method != method || o.name != msg.item {
                return Err(McpError::new(
                    codes::HANDLE_NOT_YOURS,
                    format!(
                        "this requestState was issued for {} {:?}, not for {method} {:?}; retry the call that received it",
                        o.method,
                        o.name.as_deref().unwrap_or(""),
                        msg.item.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(origin)
    }

    /// Something that watches the answers to `msg` for handles minted for
    /// `identity`; `None` when `msg` cannot mint one (not a request, or a
    /// `tasks/*` call, which reuses its task's handle).
    pub fn observer(
        self: &Arc<Self>,
        identity: &Identity,
        target: &str,
        msg: &Arc<McpMessage>,
    ) -> Option<HandleObserver> {
        if msg.kind != MessageKind::Request {
            return None;
        }
        let method = msg.method.as_deref()?;
        if is_task_method(method) || method == "tasks/list" {
            return None;
        }
        Some(HandleObserver {
            table: self.clone(),
            owner: Owner::of(identity),
            target: target.to_owned(),
            id: msg.id.clone()?,
            request: msg.clone(),
        })
    }

    /// Removes from a `tasks/list` answer the tasks that are not
    /// `identity`'s: the upstream lists every task of its one client, the
    /// broker.
    pub fn filter_task_list(&self, m: &mut ServerMessage, identity: &Identity, target: &str) {
        if !m
            .result()
            .and_then(|r| r.get("tasks"))
            .is_some_and(Value::is_array)
        {
            return;
        }
        let Some(tasks) = m
            .value_mut()
            .and_then(|v| v.pointer_mut("/result/tasks"))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let inner = self.lock();
        tasks.retain(|t| {
            let Some(id) = t.get("taskId").and_then(Value::as_str) else {
                return false;
            };
            let key = Key::Task {
                target: target.to_owned(),
                id: id.to_owned(),
            };
            inner.owned_by(&key, identity).is_ok()
        });
    }
}

/// Reading a task's status or result, or feeding it input, is use of the
/// tool that started it: judged again as that call, under the policy in
/// force now. Cancelling is not: stopping one's own work stays possible
/// after the tool is denied. An approve decision does not block here:
/// approval is for starting the work. The decision returned is the
/// starting call's, whose masking profile the task's answers get.
pub fn rejudge_task(
    policy: &Policy,
    identity: &Identity,
    target: &str,
    msg: &McpMessage,
    origin: Option<&Origin>,
) -> Result<Option<Decision>, McpError> {
    let Some(o) = origin.filter(|_| !msg.is_method("tasks/cancel")) else {
        return Ok(None);
    };
    match policy.decide(&PolicyRequest {
        identity,
        target,
        method: &o.method,
        name: o.name.as_deref(),
        arguments: o.arguments.as_ref(),
    }) {
        Decision::Deny { rule, reason } => Err(McpError::new(
            codes::DENIED,
            format!(
                "denied by rule {rule}: {reason} (the task was started by {} {:?})",
                o.method,
                o.name.as_deref().unwrap_or("")
            ),
        )),
        d => Ok(Some(d)),
    }
}

/// Watches one request's answers and records the handles in its result.
pub struct HandleObserver {
    table: Arc<HandleTable>,
    owner: Owner,
    target: String,
    id: Value,
    /// The request, shared with the pipeline: its origin is copied out only
    /// when the upstream actually mints a handle.
    request: Arc<McpMessage>,
}

impl HandleObserver {
    #[cfg(test)]
    fn observe_bytes(&self, body: &[u8]) {
        self.observe(&ServerMessage::parse(bytes::Bytes::copy_from_slice(body)));
    }

    /// Looks at one message of the answer (as the upstream sent it).
    pub fn observe(&self, m: &ServerMessage) {
        if m.raw_len() > MAX_OBSERVED_BODY || !m.answers(&self.id) {
            return;
        }
        let Some(result) = m.result() else {
            return;
        };
        let minted = handles_in(result, &self.target);
        if minted.is_empty() {
            return;
        }
        let origin = Origin::of(&self.request);
        {
            let mut table = self.table.lock();
            for (key, ttl) in &minted {
                table.insert(key.clone(), self.owner.clone(), origin.clone(), *ttl);
            }
        }
        // After the entries exist: a store that says "minted for someone
        // else too" poisons them, and cannot answer before they are there.
        shared::publish(&self.table, &minted, &self.owner, &origin);
    }
}

/// The handles a result mints.
fn handles_in(result: &Value, target: &str) -> Vec<(Key, Duration)> {
    let mut out = Vec::new();
    let task = match result.get("resultType").and_then(Value::as_str) {
        // 2026-07-28 Tasks extension: the task's fields sit in the result.
        Some("task") => result.get("taskId"),
        // 2025-11-25 (SEP-1686): CreateTaskResult `{task: {taskId, …}}`.
        _ => result.get("task").and_then(|t| t.get("taskId")),
    };
    if let Some(id) = task.and_then(Value::as_str) {
        if !id.is_empty() && id.len() <= MAX_HANDLE_BYTES {
            out.push((Key::task(target, id), TASK_TTL));
        }
    }
    if let Some(state) = result.get("requestState").and_then(Value::as_str) {
        if state.len() <= MAX_HANDLE_BYTES {
            out.push((Key::state(target, state), STATE_TTL));
        }
    }
    out
}

/// A handle for a log line or message: enough to recognise, not to reuse.
fn short(handle: &str) -> String {
    let s: String = handle.chars().take(12).collect();
    if s.len() < handle.len() {
        format!("{s}…")
    } else {
        s
    }
}

fn refuse(identity: &Identity, target: &str, what: &str, shown: &str, r: Refusal) -> McpError {
    if let Refusal::NotYours(owner) = &r {
        tracing::warn!(%target, handle = %shown, %owner, presented_by = %identity.subject,
            "refused a {what} minted for another identity");
    }
    // Unknown and not-yours read alike, so the answer does not tell a
    // guesser that a handle exists.
    let shown = if shown.is_empty() {
        String::new()
    } else {
        format!(" {shown:?}")
    };
    McpError::new(
        codes::HANDLE_NOT_YOURS,
        format!(
            "{what}{shown} was not issued to {} on target {target} through this broker (another identity's, expired, or unknown); only the identity that received a handle may use it: start the call again to get one of your own",
            identity.subject
        ),
    )
}

mod shared;
#[cfg(test)]
mod tests;
