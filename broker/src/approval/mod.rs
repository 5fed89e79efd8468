//! Approval: calls a policy `approve` rule matched wait for named people to
//! release them (docs/approvals.md).
//!
//! An [`ApprovalRequest`] is bound to the exact call ([`Binding`]): the
//! requester, target, tool, the tool definition's fingerprint, the digest
//! of the arguments, and the rule and policy version. The same caller's
//! identical call finds the same request again (a client that gave up
//! waiting and called again picks its approval up); any other call needs
//! its own. A request is released once its quorum of distinct approvers
//! granted it, never by the requester, and a one-call approval is used up
//! atomically by the first call that finds it approved.
//!
//! Every change is recorded in the audit log before it takes effect, then
//! kept in the broker store (when there is one), so pending requests and
//! unused approvals outlive a restart. Only calls an `approve` rule matched
//! reach this module: an allowed call pays nothing for it.

mod request;
pub mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use request::{
    clock_time, ApprovalDecision, ApprovalRequest, ApprovalState, Binding, Requester, Verdict,
};

use crate::audit::event::EventKind;
use crate::audit::Audit;
use crate::identity::{now_unix, Caller, Identity, IdentityKind};
use crate::mcp::error::{codes, McpError};
use crate::policy::ApprovalSpec;
use crate::store::{BrokerStore, StoreLocation};

/// Most requests open at once: a caller making endless distinct calls
/// cannot grow the broker's memory without bound.
pub const MAX_OPEN: usize = 10_000;
/// Most requests one requester may have open: one caller cannot crowd
/// out everyone else's.
pub const MAX_OPEN_PER_REQUESTER: usize = 100;
/// Finished requests kept in memory for `hoop approve list --all` when
/// there is no store to ask.
const RECENT_KEPT: usize = 200;
/// Longest reason kept, from a requester or an approver.
pub const MAX_REASON: usize = 1024;
/// Where a client puts the requester's reason: `params._meta[REASON_META]`.
pub const REASON_META: &str = "dev.hoop/reason";
/// Where the broker says which approval an answer is about:
/// `result._meta[APPROVAL_META]` = `{"id": 42, "state": "pending"}`.
pub const APPROVAL_META: &str = "dev.hoop/approval";

/// How long the broker keeps a held call's request open before it answers
/// "pending, call again", and how often it says it is still waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    /// With a progress token: each progress notification resets the
    /// client's own timeout, so it can wait this long.
    pub hold_secs: u64,
    /// Without one: under the 60 s a TypeScript SDK client waits.
    pub hold_secs_without_progress: u64,
    pub progress_every_secs: u64,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            hold_secs: 180,
            hold_secs_without_progress: 50,
            progress_every_secs: 15,
        }
    }
}

/// What the approval layer says of a call an `approve` rule matched.
pub enum Admission {
    /// Its approval was granted and is now used up: forward it.
    Released(u64),
    /// It waits: for the request in the ticket.
    Held(Ticket),
}

/// A held call's handle on its request.
pub struct Ticket {
    pub id: u64,
    /// Changes when the request does.
    pub changes: watch::Receiver<ApprovalState>,
    /// "approval #42 from ml-leads (expires 14:05 UTC)".
    pub waiting_for: String,
}

/// What a call asks of the approval layer.
pub struct Ask {
    pub caller: Arc<Caller>,
    pub binding: Binding,
    pub spec: Arc<ApprovalSpec>,
    /// `params._meta["dev.hoop/reason"]`, if the client gave one.
    pub reason: Option<String>,
    /// The arguments as masked, for approvers to read.
    pub arguments: Value,
    pub exchange: String,
    /// The tool's definition against the accepted one.
    pub tool_state: Option<String>,
}

struct Entry {
    request: ApprovalRequest,
    /// `request.match_key()`, computed once.
    key: String,
    changed: watch::Sender<ApprovalState>,
}

impl Entry {
    fn new(request: ApprovalRequest) -> (Self, watch::Receiver<ApprovalState>) {
        let (changed, changes) = watch::channel(request.state);
        let key = request.match_key();
        (
            Self {
                request,
                key,
                changed,
            },
            changes,
        )
    }
}

#[derive(Default)]
struct Book {
    open: BTreeMap<u64, Entry>,
    /// Finished requests, newest last (only without a store).
    recent: VecDeque<ApprovalRequest>,
    last_id: u64,
}

impl Book {
    /// Takes in the store's copy of a request (another broker sharing the
    /// store may have opened, decided or ended it): an open one is added
    /// or updated, a final one leaves the open set; the calls waiting on it
    /// hear of any change. Whether anything changed.
    fn take_in(&mut self, stored: ApprovalRequest) -> bool {
        self.last_id = self.last_id.max(stored.id);
        if !stored.state.is_open() {
            return match self.open.remove(&stored.id) {
                Some(entry) => {
                    entry.changed.send_replace(stored.state);
                    true
                }
                None => false,
            };
        }
        match self.open.get_mut(&stored.id) {
            None => {
                let (entry, _) = Entry::new(stored);
                self.open.insert(entry.request.id, entry);
                true
            }
            Some(entry) if entry.request != stored => {
                let state = stored.state;
                entry.request = stored;
                entry.changed.send_replace(state);
                true
            }
            Some(_) => false,
        }
    }
}

/// What the store holds of approvals when the broker starts: the open
/// requests, and the highest number used (never given again).
#[derive(Debug, Default)]
pub struct StoredApprovals {
    pub last_id: u64,
    pub open: Vec<ApprovalRequest>,
}

impl StoredApprovals {
    /// Reads them (blocking).
    pub fn read(store: Option<&StoreLocation>) -> anyhow::Result<Self> {
        let Some(location) = store else {
            return Ok(Self::default());
        };
        let s = BrokerStore::open(location)?;
        Ok(Self {
            last_id: s.last_approval_id()?,
            open: s.open_approvals()?,
        })
    }
}

/// The requests, held in memory for the calls that wait on them and kept
/// in the broker store.
pub struct Approvals {
    /// Held across the audit record and the store write of each change, so
    /// changes to the requests happen one at a time and in the order the
    /// log has them. Approvals are rare; allowed calls never take it.
    book: tokio::sync::Mutex<Book>,
    store: Option<StoreLocation>,
    audit: Arc<Audit>,
    pub hold: HoldSettings,
    /// Counts changes to any request, so `hoop approve` views can follow.
    changed: watch::Sender<u64>,
    /// Where changes are announced (`[[approvals.webhooks]]`).
    webhooks: Option<webhook::Webhooks>,
    /// The last count [`Approvals::pending`] took.
    pending_seen: std::sync::atomic::AtomicUsize,
}

impl Approvals {
    /// The engine over `store`, starting from what [`StoredApprovals`]
    /// read of it (read off the runtime's threads: it blocks).
    pub fn new(
        store: Option<StoreLocation>,
        stored: StoredApprovals,
        audit: Arc<Audit>,
        hold: HoldSettings,
        webhooks: Option<webhook::Webhooks>,
    ) -> anyhow::Result<Self> {
        let mut book = Book {
            last_id: stored.last_id,
            ..Book::default()
        };
        for request in stored.open {
            let (entry, _) = Entry::new(request);
            book.open.insert(entry.request.id, entry);
        }
        Ok(Self {
            book: tokio::sync::Mutex::new(book),
            store,
            audit,
            hold,
            changed: watch::channel(0).0,
            webhooks,
            pending_seen: Default::default(),
        })
    }

    /// A handle on open request `id`, for a call that waits on it again
    /// (a task restored after a restart); `None` once it is final.
    pub async fn ticket(&self, id: u64) -> Option<Ticket> {
        let book = self.book.lock().await;
        let e = book
            .open
            .get(&id)
            .filter(|e| e.request.expires_at > now_unix())?;
        Some(Ticket {
            id,
            changes: e.changed.subscribe(),
            waiting_for: e.request.waiting_for(),
        })
    }

    /// The broker store the requests are kept in, if any.
    pub fn store(&self) -> Option<&StoreLocation> {
        self.store.as_ref()
    }

    /// Requests waiting for a decision now (for `/metrics`): read without
    /// waiting for the book; the last count when it is busy.
    pub fn pending(&self) -> usize {
        use std::sync::atomic::Ordering;
        match self.book.try_lock() {
            Ok(book) => {
                let n = book
                    .open
                    .values()
                    .filter(|e| e.request.state == ApprovalState::Pending)
                    .count();
                self.pending_seen.store(n, Ordering::Relaxed);
                n
            }
            Err(_) => self.pending_seen.load(Ordering::Relaxed),
        }
    }

    /// Follows changes to any request (a new one, a decision, an end).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells the webhooks (off the call's path: queued).
    fn announce(&self, event: &str, r: &ApprovalRequest) {
        if let Some(w) = &self.webhooks {
            w.notify(event, r);
        }
    }

    /// Takes in what other brokers sharing the store did: requests they
    /// opened (so approvers here see and decide them), decisions they
    /// recorded (a call held here runs once its request is approved,
    /// whichever broker the approver used), and ends (released, denied,
    /// expired). The store is the truth; the book is each broker's copy.
    pub async fn sync_from_store(&self) -> anyhow::Result<()> {
        let Some(location) = self.store.clone() else {
            return Ok(());
        };
        let mut book = self.book.lock().await;
        let held: Vec<u64> = book.open.keys().copied().collect();
        let (open, ended) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let s = BrokerStore::open(&location)?;
            let open = s.open_approvals()?;
            let mut ended = Vec::new();
            for id in held {
                if !open.iter().any(|r| r.id == id) {
                    if let Some(r) = s.approval(id)? {
                        ended.push(r);
                    }
                }
            }
            Ok((open, ended))
        })
        .await??;
        let mut changed = false;
        for stored in open.into_iter().chain(ended) {
            changed |= book.take_in(stored);
        }
        if changed {
            self.bump();
        }
        Ok(())
    }

    /// Writes `r` to the store, off the async threads.
    async fn save(&self, r: &ApprovalRequest) -> Result<(), McpError> {
        let Some(path) = self.store.clone() else {
            return Ok(());
        };
        let r = r.clone();
        run_blocking(move || BrokerStore::open(&path)?.save_approval(&r)).await
    }

    /// The approval layer for one call an `approve` rule matched: uses up
    /// its approval if granted, else holds it on its request (opening one
    /// if there is none). Runs to its end even if the caller goes away
    /// meanwhile, so the record, the store and memory never part.
    pub async fn admit(self: &Arc<Self>, ask: Ask) -> Result<Admission, McpError> {
        let this = self.clone();
        tokio::spawn(async move { this.admit_now(ask).await })
            .await
            .map_err(|e| McpError::internal(format!("approval layer: {e}")))?
    }

    async fn admit_now(&self, ask: Ask) -> Result<Admission, McpError> {
        let mut book = self.book.lock().await;
        self.expire_due(&mut book).await;
        let key = match ask.spec.grant_window_secs {
            Some(_) => ask.binding.grant_key(ask.spec.pin_arguments),
            None => ask.binding.key(),
        };
        let found = book
            .open
            .values()
            .find(|e| e.key == key)
            .map(|e| e.request.id);
        if let Some(id) = found {
            return self.admit_existing(&mut book, id, &ask).await;
        }
        if book.open.len() >= MAX_OPEN {
            return Err(McpError::new(
                codes::APPROVAL_REQUIRED,
                format!("this call needs approval, and {MAX_OPEN} requests already wait for one; try again later"),
            ));
        }
        let who = &ask.caller.identity;
        let mine = book
            .open
            .values()
            .filter(|e| e.request.requested_by(&who.subject, &who.issuer))
            .count();
        if mine >= MAX_OPEN_PER_REQUESTER {
            return Err(McpError::new(
                codes::APPROVAL_REQUIRED,
                format!("this call needs approval, and {mine} of your requests already wait for one (at most {MAX_OPEN_PER_REQUESTER}); wait for their decisions"),
            ));
        }
        let given = ask.reason.as_deref().filter(|r| !r.trim().is_empty());
        let reason = match given.or(ask.spec.default_reason.as_deref()) {
            Some(r) => printable(r),
            None => {
                return Err(McpError::new(
                    codes::APPROVAL_REQUIRED,
                    format!(
                        "this call needs approval (rule {}) and a reason for the approvers: give one with `hoop exec --reason TEXT`, or ask for a `default_reason` on the rule",
                        ask.binding.rule
                    ),
                ))
            }
        };
        let now = now_unix();
        // Taken before anything can fail: a number the log has seen is
        // never given to another request. With a store, the store hands
        // it out, so replicas sharing one never give the same number.
        let id = match self.store.clone() {
            Some(location) => {
                let floor = book.last_id + 1;
                run_blocking(move || BrokerStore::open(&location)?.next_approval_id(floor)).await?
            }
            None => book.last_id + 1,
        };
        book.last_id = book.last_id.max(id);
        let request = ApprovalRequest {
            id,
            state: ApprovalState::Pending,
            requester: requester(who),
            reason,
            arguments: ask.arguments,
            approvers: ask.spec.approvers.clone(),
            quorum: ask.spec.quorum,
            human_approver: ask.spec.human_approver,
            created_at: now,
            expires_at: now + ask.spec.expires_secs,
            decisions: Vec::new(),
            exchange: ask.exchange.clone(),
            binding: ask.binding.clone(),
            grant_window_secs: ask.spec.grant_window_secs,
            pin_arguments: ask.spec.pin_arguments,
            tool_state: ask.tool_state.clone(),
        };
        self.audit
            .approval_by_requester(
                EventKind::ApprovalRequested,
                &ask.caller,
                &request,
                &ask.exchange,
            )
            .await?;
        self.save(&request).await?;
        tracing::info!(id = request.id, rule = %request.binding.rule, requester = %request.requester.subject, "approval requested");
        let (entry, changes) = Entry::new(request);
        let ticket = Ticket {
            id: entry.request.id,
            changes,
            waiting_for: entry.request.waiting_for(),
        };
        self.announce("requested", &entry.request);
        book.open.insert(entry.request.id, entry);
        self.bump();
        Ok(Admission::Held(ticket))
    }

    async fn admit_existing(
        &self,
        book: &mut Book,
        id: u64,
        ask: &Ask,
    ) -> Result<Admission, McpError> {
        let caller = &ask.caller;
        let Some(entry) = book.open.get(&id) else {
            return Err(McpError::internal("approval request vanished"));
        };
        if entry.request.state == ApprovalState::Pending {
            return Ok(Admission::Held(Ticket {
                id,
                changes: entry.changed.subscribe(),
                waiting_for: entry.request.waiting_for(),
            }));
        }
        if entry.request.expires_at <= now_unix() {
            // Its expiry could not be recorded yet: it is over all the same.
            return Err(McpError::new(
                codes::APPROVAL_EXPIRED,
                format!(
                    "approval #{id} expired before the call was made again; call again to ask anew"
                ),
            ));
        }
        if entry.request.grant_window_secs.is_some() {
            // A window: this call goes through, the grant stays for the
            // next until the window ends. Recorded with this call's own
            // arguments.
            let mut this_call = entry.request.clone();
            this_call.binding = ask.binding.clone();
            this_call.arguments = ask.arguments.clone();
            self.audit
                .approval_by_requester(
                    EventKind::ApprovalReleased,
                    caller,
                    &this_call,
                    &ask.exchange,
                )
                .await?;
            self.announce("released", &this_call);
            return Ok(Admission::Released(id));
        }
        let approved = entry.request.clone();
        let mut released = approved.clone();
        released.state = ApprovalState::Released;
        // Claimed in the store first (at most once, even across brokers),
        // then recorded; a claim that cannot be recorded is given back.
        if let Some(path) = self.store.clone() {
            let r = released.clone();
            let took = run_blocking(move || BrokerStore::open(&path)?.release_approval(&r)).await?;
            if !took {
                book.open.remove(&id);
                self.bump();
                return Err(McpError::new(
                    codes::APPROVAL_REQUIRED,
                    format!("approval #{id} was already used; call again to ask for a new one"),
                ));
            }
        }
        if let Err(e) = self
            .audit
            .approval_by_requester(
                EventKind::ApprovalReleased,
                caller,
                &released,
                &ask.exchange,
            )
            .await
        {
            if let Err(back) = self.save(&approved).await {
                tracing::error!(
                    id,
                    "approval #{id} was claimed but not recorded, and could not be given back: {}",
                    back.message
                );
            }
            return Err(e);
        }
        self.announce("released", &released);
        self.finish(book, released);
        Ok(Admission::Released(id))
    }

    /// Moves a request that reached a final state out of the open set and
    /// tells the calls waiting on it.
    fn finish(&self, book: &mut Book, request: ApprovalRequest) {
        if let Some(entry) = book.open.remove(&request.id) {
            entry.changed.send_replace(request.state);
        }
        self.bump();
        if self.store.is_none() {
            book.recent.push_back(request);
            while book.recent.len() > RECENT_KEPT {
                book.recent.pop_front();
            }
        }
    }

    /// Expires what is due: pending requests nobody decided and approvals
    /// nobody used in time. A failure to record leaves them for the next
    /// sweep (they stay unusable meanwhile: `admit` and `decide` check the
    /// time too).
    async fn expire_due(&self, book: &mut Book) {
        let now = now_unix();
        let due: Vec<ApprovalRequest> = book
            .open
            .values()
            .filter(|e| e.request.expires_at <= now)
            .map(|e| e.request.clone())
            .collect();
        for request in due {
            let id = request.id;
            match self.expire(request, now).await {
                Ok(expired) => {
                    tracing::info!(id, "approval request expired");
                    self.announce("expired", &expired);
                    self.finish(book, expired);
                }
                // Another broker sharing the store ended it, or it was
                // granted a new deadline there meanwhile.
                Err(Some(current)) => {
                    if book.take_in(*current) {
                        self.bump();
                    }
                }
                Err(None) => {}
            }
        }
    }

    /// `request`, expired: recorded, then stored. With a shared store,
    /// only if it is still open and due there, its row locked meanwhile,
    /// so one broker of several records the expiry; `Err(Some(copy))`
    /// with the store's copy when it was not. `Err(None)`: not recorded
    /// now.
    async fn expire(
        &self,
        mut request: ApprovalRequest,
        now: u64,
    ) -> Result<ApprovalRequest, Option<Box<ApprovalRequest>>> {
        let Some(location) = self.shared_store() else {
            request.state = ApprovalState::Expired;
            self.audit
                .approval_expired(&request)
                .await
                .map_err(|_| None)?;
            if let Err(e) = self.save(&request).await {
                tracing::warn!(id = request.id, "approval expiry not stored: {}", e.message);
            }
            return Ok(request);
        };
        let (audit, id) = (self.audit.clone(), request.id);
        let outcome = self
            .change_locked(location, id, move |mut stored, runtime| {
                if !stored.state.is_open() || stored.expires_at > now {
                    return Err(Some(Box::new(stored)));
                }
                stored.state = ApprovalState::Expired;
                runtime
                    .block_on(audit.approval_expired(&stored))
                    .map_err(|_| None)?;
                Ok(stored)
            })
            .await;
        match outcome {
            Ok(Some(decided)) => decided,
            Ok(None) => {
                // Not in the store (it cannot have been saved): ends here.
                request.state = ApprovalState::Expired;
                self.audit
                    .approval_expired(&request)
                    .await
                    .map_err(|_| None)?;
                Ok(request)
            }
            Err(e) => {
                tracing::warn!(
                    id,
                    "approval expiry not recorded now, tried again at the next sweep: {}",
                    e.message
                );
                Err(None)
            }
        }
    }

    /// The requester withdraws request `id` (`tasks/cancel` of its task):
    /// recorded, then final. `Ok(false)` when it is no longer open.
    pub async fn withdraw(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        id: u64,
    ) -> Result<bool, McpError> {
        let (this, caller) = (self.clone(), caller.clone());
        tokio::spawn(async move { this.withdraw_now(&caller, id).await })
            .await
            .map_err(|e| McpError::internal(format!("approval layer: {e}")))?
    }

    async fn withdraw_now(&self, caller: &Arc<Caller>, id: u64) -> Result<bool, McpError> {
        let mut book = self.book.lock().await;
        let Some(entry) = book.open.get(&id) else {
            return Ok(false);
        };
        let who = &caller.identity;
        if !entry.request.requested_by(&who.subject, &who.issuer) {
            return Err(McpError::new(
                codes::HANDLE_NOT_YOURS,
                format!("approval request #{id} is not yours to withdraw"),
            ));
        }
        let cancelled = match self.shared_store() {
            // Only if it is still open in the store: a vote or an end
            // another broker committed meanwhile is not overwritten.
            Some(location) => {
                let (audit, caller) = (self.audit.clone(), caller.clone());
                let outcome = self
                    .change_locked(location, id, move |mut stored, runtime| {
                        if !stored.state.is_open() {
                            return Err(Ok(Box::new(stored)));
                        }
                        stored.state = ApprovalState::Cancelled;
                        let exchange = stored.exchange.clone();
                        runtime
                            .block_on(audit.approval_by_requester(
                                EventKind::ApprovalCancelled,
                                &caller,
                                &stored,
                                &exchange,
                            ))
                            .map_err(Err)?;
                        Ok(stored)
                    })
                    .await?;
                match outcome {
                    Some(Ok(r)) => r,
                    Some(Err(Ok(ended))) => {
                        if book.take_in(*ended) {
                            self.bump();
                        }
                        return Ok(false);
                    }
                    Some(Err(Err(e))) => return Err(e),
                    None => return Ok(false),
                }
            }
            None => {
                let mut cancelled = entry.request.clone();
                cancelled.state = ApprovalState::Cancelled;
                self.audit
                    .approval_by_requester(
                        EventKind::ApprovalCancelled,
                        caller,
                        &cancelled,
                        &cancelled.exchange,
                    )
                    .await?;
                self.save(&cancelled).await?;
                cancelled
            }
        };
        tracing::info!(id, "approval request withdrawn by its requester");
        self.announce("cancelled", &cancelled);
        self.finish(&mut book, cancelled);
        Ok(true)
    }

    /// Expires what is due; the broker runs it every second.
    pub async fn sweep(&self) {
        let mut book = self.book.lock().await;
        self.expire_due(&mut book).await;
    }

    /// An approver's decision on request `id`; runs to its end even if
    /// the approver goes away meanwhile.
    pub async fn decide(
        self: &Arc<Self>,
        approver: &Arc<Caller>,
        id: u64,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Result<ApprovalRequest, DecideError> {
        let (this, approver) = (self.clone(), approver.clone());
        tokio::spawn(async move { this.decide_now(&approver, id, verdict, reason).await })
            .await
            .map_err(|e| {
                DecideError::Unavailable(McpError::internal(format!("approval layer: {e}")))
            })?
    }

    async fn decide_now(
        &self,
        approver: &Arc<Caller>,
        id: u64,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Result<ApprovalRequest, DecideError> {
        let mut book = self.book.lock().await;
        self.expire_due(&mut book).await;
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .map(|r| printable(&r));
        let decided = match self.shared_store() {
            Some(location) => {
                self.decide_in_store(location, approver, id, verdict, reason)
                    .await?
            }
            // One broker: its book is the truth, and its lock keeps
            // decisions in turn. Recorded, then stored.
            None => {
                let Some(entry) = book.open.get(&id) else {
                    return Err(self.not_open(&book, id).await);
                };
                let (decided, decision) =
                    decision_on(entry.request.clone(), &approver.identity, verdict, reason)?;
                self.audit
                    .approval_decided(approver, &decided, &decision)
                    .await
                    .map_err(DecideError::Unavailable)?;
                self.save(&decided)
                    .await
                    .map_err(DecideError::Unavailable)?;
                decided
            }
        };
        tracing::info!(id, verdict = verdict.as_str(), approver = %approver.identity.subject, state = decided.state.as_str(), "approval decision");
        self.announce("decided", &decided);
        match decided.state {
            ApprovalState::Denied => self.finish(&mut book, decided.clone()),
            _ => {
                book.take_in(decided.clone());
                self.bump();
            }
        }
        Ok(decided)
    }

    /// A decision taken on the shared store's copy of request `id`, its
    /// row locked from the read to the commit: two approvers voting at
    /// once through two brokers take turns, so neither vote is lost.
    /// Recorded in the audit log under the lock, before the decision is
    /// committed (and so before it takes effect anywhere).
    async fn decide_in_store(
        &self,
        location: StoreLocation,
        approver: &Arc<Caller>,
        id: u64,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Result<ApprovalRequest, DecideError> {
        let (audit, approver) = (self.audit.clone(), approver.clone());
        let outcome = self
            .change_locked(location, id, move |stored, runtime| {
                let (decided, decision) = decision_on(stored, &approver.identity, verdict, reason)?;
                runtime
                    .block_on(audit.approval_decided(&approver, &decided, &decision))
                    .map_err(DecideError::Unavailable)?;
                Ok(decided)
            })
            .await
            .map_err(DecideError::Unavailable)?;
        outcome.unwrap_or(Err(DecideError::NotFound(id)))
    }

    /// Runs `change` on request `id` as the shared store has it, its row
    /// locked until what `change` returns is committed
    /// ([`BrokerStore::decide_approval`]); `change` records in the audit
    /// log, through the runtime it is handed, before it returns. `None`:
    /// no such request; the inner `Err` is `change`'s own.
    async fn change_locked<E: Send + 'static>(
        &self,
        location: StoreLocation,
        id: u64,
        change: impl FnOnce(ApprovalRequest, &tokio::runtime::Handle) -> Result<ApprovalRequest, E>
            + Send
            + 'static,
    ) -> Result<Option<Result<ApprovalRequest, E>>, McpError> {
        let runtime = tokio::runtime::Handle::current();
        run_blocking(move || {
            BrokerStore::open(&location)?.decide_approval(id, |stored| change(stored, &runtime))
        })
        .await
    }

    /// The store other brokers share, if any: PostgreSQL. Changes to a
    /// request there are taken under its row lock; with SQLite (one
    /// broker) the book's lock keeps them in turn, and the database is
    /// not held while the audit log writes.
    fn shared_store(&self) -> Option<StoreLocation> {
        self.store
            .clone()
            .filter(|s| matches!(s, StoreLocation::Postgres { .. }))
    }

    async fn not_open(&self, book: &Book, id: u64) -> DecideError {
        match self.find_finished(book, id).await {
            Some(r) => DecideError::Finished(r.id, r.state),
            None => DecideError::NotFound(id),
        }
    }

    async fn find_finished(&self, book: &Book, id: u64) -> Option<ApprovalRequest> {
        if let Some(r) = book.recent.iter().find(|r| r.id == id) {
            return Some(r.clone());
        }
        self.stored(id).await
    }

    /// Request `id` as the store has it.
    async fn stored(&self, id: u64) -> Option<ApprovalRequest> {
        let path = self.store.clone()?;
        tokio::task::spawn_blocking(move || {
            BrokerStore::open(&path)
                .and_then(|s| s.approval(id))
                .ok()
                .flatten()
        })
        .await
        .ok()
        .flatten()
    }

    /// One request, if `who` may see it (an approver it names, or the
    /// requester).
    pub async fn get(&self, who: &Identity, id: u64) -> Option<ApprovalRequest> {
        let held = {
            let book = self.book.lock().await;
            book.open
                .get(&id)
                .map(|e| e.request.clone())
                .or_else(|| book.recent.iter().find(|r| r.id == id).cloned())
        };
        let r = match held {
            Some(r) => Some(r),
            None => self.stored(id).await,
        };
        r.filter(|r| may_see(r, who))
    }

    /// The requests `who` may see: open ones, and with `all` the recent
    /// finished ones too; oldest first.
    pub async fn list(&self, who: &Identity, all: bool) -> Vec<ApprovalRequest> {
        // Copied out, so the store is read without holding up held calls
        // and decisions.
        let (mut out, recent): (Vec<ApprovalRequest>, Vec<ApprovalRequest>) = {
            let book = self.book.lock().await;
            (
                book.open
                    .values()
                    .map(|e| e.request.clone())
                    .filter(|r| may_see(r, who))
                    .collect(),
                book.recent.iter().cloned().collect(),
            )
        };
        if all {
            let finished: Vec<ApprovalRequest> = match self.store.clone() {
                None => recent,
                Some(path) => tokio::task::spawn_blocking(move || {
                    BrokerStore::open(&path)
                        .and_then(|s| s.recent_approvals(RECENT_KEPT))
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default(),
            };
            out.extend(
                finished
                    .into_iter()
                    .filter(|r| !r.state.is_open() && may_see(r, who)),
            );
            out.sort_by_key(|r| r.id);
            out.dedup_by_key(|r| r.id);
        }
        out
    }
}

/// Why a decision was not taken.
#[derive(Debug)]
pub enum DecideError {
    NotFound(u64),
    /// It is no longer pending: its id and state.
    Finished(u64, ApprovalState),
    /// The approver may not decide it; what to tell them.
    NotAllowed(String),
    /// A denial needs a reason.
    ReasonRequired,
    /// The record or the store could not take the decision.
    Unavailable(McpError),
}

impl DecideError {
    pub fn to_error(&self) -> McpError {
        match self {
            Self::NotFound(id) => McpError::invalid_params(format!(
                "no approval request #{id} on this broker (`hoop approve list --all` shows the recent ones)"
            )),
            Self::Finished(id, state) => McpError::invalid_params(format!(
                "approval request #{id} is already {}",
                state.as_str()
            )),
            Self::NotAllowed(why) => McpError::new(codes::DENIED, why.clone()),
            Self::ReasonRequired => McpError::invalid_params(
                "a denial needs a reason, for the requester to read: add --reason TEXT",
            ),
            Self::Unavailable(e) => e.clone(),
        }
    }
}

fn requester(who: &Identity) -> Requester {
    Requester {
        subject: who.subject.clone(),
        email: who.email.clone(),
        issuer: who.issuer.clone(),
        groups: who.groups.clone(),
        kind: kind_name(who.kind).into(),
    }
}

fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Human => "human",
        IdentityKind::Workload => "workload",
    }
}

fn is_approver(r: &ApprovalRequest, who: &Identity) -> bool {
    who.groups.iter().any(|g| r.approvers.contains(g))
}

fn may_see(r: &ApprovalRequest, who: &Identity) -> bool {
    is_approver(r, who) || r.requested_by(&who.subject, &who.issuer)
}

/// Separation of duties and the rule's demands, before anything changes.
fn check_approver(
    r: &ApprovalRequest,
    who: &Identity,
    verdict: Verdict,
    reason: Option<&str>,
) -> Result<(), DecideError> {
    // The same person through another issuer is still the same person.
    let same_email = |email: Option<&str>| matches!((email, who.email.as_deref()), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
    if r.requested_by(&who.subject, &who.issuer) || same_email(r.requester.email.as_deref()) {
        return Err(DecideError::NotAllowed(format!(
            "you cannot decide approval request #{} yourself: it is your own call; an approver from {} must",
            r.id,
            r.approvers.join(" or ")
        )));
    }
    if !is_approver(r, who) {
        return Err(DecideError::NotAllowed(format!(
            "only members of {} may decide approval request #{} (rule {}); you are in {}",
            r.approvers.join(", "),
            r.id,
            r.binding.rule,
            if who.groups.is_empty() {
                "no group".to_owned()
            } else {
                who.groups.join(", ")
            }
        )));
    }
    if r.human_approver && who.kind != IdentityKind::Human {
        return Err(DecideError::NotAllowed(format!(
            "rule {} needs a person to decide approval request #{}, not a workload token",
            r.binding.rule, r.id
        )));
    }
    if r.decisions
        .iter()
        .any(|d| d.approver == who.subject && d.issuer == who.issuer)
    {
        return Err(DecideError::NotAllowed(format!(
            "you already decided approval request #{}; the quorum counts distinct approvers ({} of {} so far)",
            r.id,
            r.grants(),
            r.quorum
        )));
    }
    if r.state != ApprovalState::Pending {
        return Err(DecideError::Finished(r.id, r.state));
    }
    if r.expires_at <= now_unix() {
        return Err(DecideError::Finished(r.id, ApprovalState::Expired));
    }
    if verdict == Verdict::Denied && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(DecideError::ReasonRequired);
    }
    Ok(())
}

/// `r` with `who`'s decision added, and that decision, once
/// [`check_approver`] allows it: denied at the first denial, approved at
/// the quorum's last grant.
fn decision_on(
    mut r: ApprovalRequest,
    who: &Identity,
    verdict: Verdict,
    reason: Option<String>,
) -> Result<(ApprovalRequest, ApprovalDecision), DecideError> {
    // An ended request is reported as such, whoever asks.
    if !r.state.is_open() {
        return Err(DecideError::Finished(r.id, r.state));
    }
    check_approver(&r, who, verdict, reason.as_deref())?;
    let decision = ApprovalDecision {
        approver: who.subject.clone(),
        email: who.email.clone(),
        issuer: who.issuer.clone(),
        verdict,
        reason,
        at: now_unix(),
    };
    r.decisions.push(decision.clone());
    let spec_expiry = r.expires_at.saturating_sub(r.created_at);
    match verdict {
        Verdict::Denied => r.state = ApprovalState::Denied,
        Verdict::Granted if r.grants() >= r.quorum as usize => {
            r.state = ApprovalState::Approved;
            // A window lasts its length from now; a one-call grant as
            // long again as the request could wait, so a client that
            // gave up has time to call again.
            r.expires_at = now_unix() + r.grant_window_secs.unwrap_or(spec_expiry);
        }
        Verdict::Granted => {}
    }
    Ok((r, decision))
}

/// A reason as it is kept and shown: control characters (which could
/// redraw an approver's terminal) become spaces; at most [`MAX_REASON`]
/// characters.
pub fn printable(text: &str) -> String {
    text.chars()
        .take(MAX_REASON)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Runs store work on the blocking pool; a failure is the store's.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, McpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| McpError::internal(format!("approval store: {e}")))?
        .map_err(|e| {
            tracing::error!("approval store: {e:#}");
            McpError::new(
                codes::AUDIT_UNAVAILABLE,
                "the broker cannot store approval requests now; the call was not held or forwarded",
            )
        })
}
