//! The writer thread: the only code that writes the store while the log is
//! open. It answers appends after their batch commits, and signs
//! checkpoints after commits (every `checkpoint_every` events) or on a
//! timer (`checkpoint_interval` after the first event not yet covered).
//!
//! With the journal, appends are answered before they reach this thread;
//! it takes their records in batches (what is queued, and when that is
//! short of `max_batch`, what arrives while records keep coming, up to
//! `index_delay`: one transaction for many) and applies them in order. A batch the store refuses is kept and tried
//! again every second; it is never dropped, since the journal has already
//! said yes.
//!
//! Answers go out through a second thread, the notifier: waking thousands
//! of waiters and freeing their events took a tenth of the writer's time,
//! which it now spends on the next batch. The notifier keeps the order in
//! which the writer hands it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::journal::{Journal, APPLIED_KEY};
use super::{AppendError, Command, LogConfig, State, Unindexed};
use crate::checkpoint::LogSigner;
use crate::store::{AuditStore, PendingEntry, StoreError, StoreErrorKind};
use crate::tree;

/// An append waiting in a batch: the event, its answer, its queue slot.
type Waiting = (
    PendingEntry,
    oneshot::Sender<Result<u64, AppendError>>,
    OwnedSemaphorePermit,
);

/// A journal record's appender, while its entry waits in the backlog.
struct Owed {
    position: u64,
    reply: Option<oneshot::Sender<Result<u64, AppendError>>>,
    permit: OwnedSemaphorePermit,
}

/// After a failed checkpoint, how long until the next try.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// After the store refused journal records, how long until the next try.
const INDEX_RETRY: Duration = Duration::from_secs(1);

/// Batches up to this many waiters are answered by the writer itself.
const INLINE_ANSWERS: usize = 8;

/// Work for the notifier: answering waiters, dropping what they sent.
type Delivery = Box<dyn FnOnce() + Send>;

pub(super) struct Writer {
    store: Box<dyn AuditStore>,
    journal: Option<Arc<Journal>>,
    /// Journal records the store refused, in order, for the next try.
    backlog: Vec<PendingEntry>,
    /// What each backlog entry's appender is owed once it is stored.
    backlog_owed: Vec<Owed>,
    index_retry_at: Option<Instant>,
    index_delay: Duration,
    index_quiet: Duration,
    /// The journal has segments older than its current one to remove.
    segments_to_drop: bool,
    /// `None` if the notifier thread could not start: answers go inline.
    notifier: Option<mpsc::Sender<Delivery>>,
    signer: LogSigner,
    state: Arc<State>,
    max_batch: usize,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    size: u64,
    /// Size of the last checkpoint stored.
    checkpointed: Option<u64>,
    /// When the next checkpoint is due by time, while events are uncovered.
    checkpoint_at: Option<Instant>,
    /// The last checkpoint attempt failed: only the timer retries it.
    checkpoint_failing: bool,
    /// The last write failed: reopen the store before the next.
    needs_reopen: bool,
    /// Who this writer is to a store shared by several (its signing lease).
    lease_holder: String,
}

impl Drop for Writer {
    /// The store is closed (the thread is done with it): another writer
    /// may open the log now.
    fn drop(&mut self) {
        if let Some(journal) = &self.journal {
            journal.release();
        }
    }
}

/// Journal records from `first` on: takes what is queued, up to
/// `max_batch`; short of that, while records keep coming, waits up to
/// `delay` for more, looking every `quiet` and stopping at the first look
/// that finds nothing new. A command of another kind ends the taking and
/// is returned, to run after this batch. Waiting parked, not on the
/// queue, is the point: appenders then send without waking the writer (a
/// futex wake and a context switch per event on the request path), and
/// one transaction takes many events. The commands that someone waits for
/// (a flush before a read, a checkpoint, shutdown, an `append_indexed`)
/// and an appender that finds the queue full raise `wake` and unpark the
/// writer ([`super::AuditLog`]), which ends the wait.
///
/// A long wait under steady calls is cheaper than its batch size
/// suggests: on a two-core machine, applying a second's records at once
/// disturbed the request path far less than applying them in fifty
/// batches (docs/benchmarks.md, seventh sitting), though an event costs
/// the store nearly the same in either; a look at the queue is a wake-up
/// and a few channel reads, without SQLite's pages in the caches. A full
/// batch does not wait: under saturation the queue is full, every
/// appender waits for the writer, and a wait would leave the cores idle
/// (it held the append rate to `max_batch` per wait and commit).
pub(super) fn gather(
    first: Unindexed,
    commands: &mpsc::Receiver<Command>,
    max_batch: usize,
    (delay, quiet): (Duration, Duration),
    wake: &AtomicBool,
) -> (Vec<Unindexed>, Option<Command>) {
    let mut batch = vec![first];
    let mut closed = false;
    let mut looked = false;
    let deadline = Instant::now() + delay;
    // Bounded: each pass after the first parks until the next look, the
    // deadline or an unpark; the loop ends at the deadline, at a full
    // batch, at a look that finds nothing new, when woken, at another
    // command or when the last handle is gone.
    loop {
        // The flag before the queue: a waker sends its record or command
        // first and raises the flag after, so a flag seen raised here
        // means what it sent is in the queue for the take below.
        let woken = wake.swap(false, Ordering::AcqRel);
        let before = batch.len();
        if let Some(other) = take_queued(&mut batch, commands, max_batch, &mut closed) {
            return (batch, Some(other));
        }
        if batch.len() >= max_batch {
            // The waker's record may be past this batch: the next batch
            // must not wait either.
            if woken {
                wake.store(true, Ordering::Release);
            }
            break;
        }
        if woken || closed || (looked && batch.len() == before) {
            break;
        }
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        std::thread::park_timeout(left.min(quiet));
        looked = true;
    }
    (batch, None)
}

/// Moves queued journal records into `batch` until it holds `max_batch`
/// or the queue is empty; returns a command of another kind met on the
/// way. `closed`: set once every sender is gone.
fn take_queued(
    batch: &mut Vec<Unindexed>,
    commands: &mpsc::Receiver<Command>,
    max_batch: usize,
    closed: &mut bool,
) -> Option<Command> {
    // Bounded by max_batch.
    while batch.len() < max_batch {
        match commands.try_recv() {
            Ok(Command::Index(record)) => batch.push(record),
            Ok(other) => return Some(other),
            Err(mpsc::TryRecvError::Empty) => break,
            Err(mpsc::TryRecvError::Disconnected) => {
                *closed = true;
                break;
            }
        }
    }
    None
}

/// Closes the queue when the thread ends, even by a panic, so appenders
/// waiting for room fail instead of waiting forever.
struct CloseOnExit(Arc<State>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.permits.close();
    }
}

/// What waiting for the next command gave.
#[allow(clippy::large_enum_variant)] // as `Command`
enum Next {
    Command(Command),
    CheckpointDue,
    Closed,
}

impl Writer {
    #[allow(clippy::too_many_arguments)] // one call, in `AuditLog::start`
    pub(super) fn new(
        store: Box<dyn AuditStore>,
        journal: Option<Arc<Journal>>,
        signer: LogSigner,
        config: &LogConfig,
        max_batch: usize,
        state: Arc<State>,
        size: u64,
        checkpointed: Option<u64>,
    ) -> Self {
        let uncovered = size > checkpointed.unwrap_or(0);
        Self {
            store,
            journal,
            backlog: Vec::new(),
            backlog_owed: Vec::new(),
            index_retry_at: None,
            index_delay: config.index_delay,
            index_quiet: config.index_quiet,
            segments_to_drop: false,
            notifier: None,
            signer,
            state,
            max_batch,
            checkpoint_every: config.checkpoint_every.max(1),
            checkpoint_interval: config.checkpoint_interval,
            size,
            checkpointed,
            // Events left uncovered by the last run get theirs soon.
            checkpoint_at: uncovered.then(|| Instant::now() + config.checkpoint_interval),
            checkpoint_failing: false,
            needs_reopen: false,
            lease_holder: format!(
                "{}-{:016x}",
                std::process::id(),
                rand_core::RngCore::next_u64(&mut rand_core::OsRng)
            ),
        }
    }

    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        let _close = CloseOnExit(self.state.clone());
        // Without the journal, appends wait for this thread: it is on the
        // request path and keeps its priority.
        let behind = self.journal.is_some();
        if behind {
            crate::background::step_aside("audit-writer");
        }
        let (notifier, deliveries) = mpsc::channel::<Delivery>();
        let started = std::thread::Builder::new()
            .name("audit-notifier".into())
            // Ends when the writer drops its sender, after the last answer.
            .spawn(move || {
                if behind {
                    crate::background::step_aside("audit-notifier");
                }
                deliveries.into_iter().for_each(|deliver| deliver());
            });
        self.notifier = started.is_ok().then_some(notifier);
        // A command met while draining appends, handled after their commit.
        let mut held: Option<Command> = None;
        loop {
            let command = match held.take() {
                Some(command) => command,
                None => match self.wait(&commands) {
                    Next::Command(command) => command,
                    Next::CheckpointDue => {
                        self.retry_backlog_if_due();
                        self.checkpoint_if_due();
                        continue;
                    }
                    Next::Closed => break,
                },
            };
            match command {
                Command::Append {
                    entry,
                    reply,
                    permit,
                } => {
                    let mut batch = vec![(entry, reply, permit)];
                    // Bounded by max_batch: what queued while the last
                    // commit was being flushed.
                    while batch.len() < self.max_batch {
                        match commands.try_recv() {
                            Ok(Command::Append {
                                entry,
                                reply,
                                permit,
                            }) => batch.push((entry, reply, permit)),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(batch);
                    self.checkpoint_if_due();
                }
                Command::Index(first) => {
                    let (batch, next) = gather(
                        first,
                        &commands,
                        self.max_batch,
                        (self.index_delay, self.index_quiet),
                        &self.state.wake,
                    );
                    held = next;
                    // A failure is kept in the backlog and in health.
                    let _ = self.index(batch);
                    // After the batch, not at each look while gathering:
                    // `keep_room` holds the journal's lock while it writes,
                    // and this thread runs under `SCHED_IDLE`, so an
                    // appender could wait on it while it is preempted
                    // (measured: docs/benchmarks.md, seventh sitting). Under
                    // steady calls, a second between batches, appenders
                    // then write most zeros themselves, a 64 KiB chunk
                    // about every 80 records.
                    if let Some(journal) = &self.journal {
                        journal.keep_room();
                    }
                    self.checkpoint_if_due();
                }
                Command::Flush { reply } => {
                    let result = self.index(Vec::new());
                    let _ = reply.send(result);
                }
                Command::Checkpoint { reply } => {
                    let _ = self.index(Vec::new());
                    let result = self.checkpoint();
                    self.deliver(1, Box::new(move || drop(reply.send(result))));
                }
                Command::Shutdown { reply } => {
                    let _ = self.index(Vec::new());
                    let result = self.finish();
                    // The store closes before the caller hears back, so a
                    // caller may reopen the file at once.
                    let notifier = self.notifier.take();
                    drop(self);
                    deliver_through(
                        notifier.as_ref(),
                        Box::new(move || drop(reply.send(result))),
                    );
                    return;
                }
            }
        }
        // Every handle dropped: the same final checkpoint, with nobody to
        // tell if it fails (the next start signs one for what it covers).
        let _ = self.index(Vec::new());
        let _ = self.finish();
    }

    /// Applies the backlog and `batch` to the store in one transaction,
    /// recording the last journal position with them, and answers those
    /// waiting for their seq. On failure everything stays in the backlog.
    fn index(&mut self, batch: Vec<Unindexed>) -> Result<(), AppendError> {
        for record in batch {
            self.backlog.push(record.entry);
            self.backlog_owed.push(Owed {
                position: record.position,
                reply: record.reply,
                permit: record.permit,
            });
        }
        let Some(last) = self.backlog_owed.last().map(|r| r.position) else {
            return Ok(());
        };
        let written = self.reopen_if_needed().and_then(|()| {
            self.store
                .append_batch_marked(&self.backlog, APPLIED_KEY, &last.to_string())
        });
        let new_size = match written {
            Ok(new_size) => new_size,
            Err(e) => {
                self.needs_reopen = e.kind() != StoreErrorKind::Invalid;
                self.state.set_index_failure(Some(e.clone()));
                self.index_retry_at = Some(Instant::now() + INDEX_RETRY);
                return Err(AppendError::Store(e));
            }
        };
        let entries = std::mem::take(&mut self.backlog);
        let done = std::mem::take(&mut self.backlog_owed);
        let first = new_size.saturating_sub(done.len() as u64);
        self.size = new_size;
        self.state.tree_size.store(new_size, Ordering::Release);
        self.state.batches.fetch_add(1, Ordering::Relaxed);
        if self.index_retry_at.take().is_some() {
            self.state.set_index_failure(None);
        }
        if self.checkpoint_at.is_none() {
            self.checkpoint_at = Some(Instant::now() + self.checkpoint_interval);
        }
        let count = done.iter().filter(|r| r.reply.is_some()).count();
        self.deliver(
            count,
            Box::new(move || {
                for (record, seq) in done.into_iter().zip(first..) {
                    drop(record.permit);
                    if let Some(reply) = record.reply {
                        let _ = reply.send(Ok(seq));
                    }
                }
                drop(entries);
            }),
        );
        self.drop_applied_segments(last);
        Ok(())
    }

    /// After the journal began a new segment: the store synced, the
    /// segments it now holds entirely are removed. A failure keeps them
    /// until the next new segment (the store's mark says they are applied,
    /// so keeping them costs only disk).
    fn drop_applied_segments(&mut self, applied: u64) {
        let Some(journal) = &self.journal else {
            return;
        };
        self.segments_to_drop |= journal.take_rotated();
        if !self.segments_to_drop {
            return;
        }
        let journal = journal.clone();
        match self
            .store
            .sync()
            .and_then(|()| journal.remove_applied(applied))
        {
            Ok(left) => self.segments_to_drop = left > 1,
            Err(e) => tracing::warn!("audit journal: applied segments kept for now: {e}"),
        }
    }

    fn retry_backlog_if_due(&mut self) {
        if self.index_retry_at.is_some_and(|at| Instant::now() >= at) {
            let _ = self.index(Vec::new());
        }
    }

    fn wait(&self, commands: &mpsc::Receiver<Command>) -> Next {
        let due = match (self.checkpoint_at, self.index_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match due {
            None => commands.recv().map_or(Next::Closed, Next::Command),
            Some(at) => match commands.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(command) => Next::Command(command),
                Err(mpsc::RecvTimeoutError::Timeout) => Next::CheckpointDue,
                Err(mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
            },
        }
    }

    /// Writes one batch in one transaction and answers each of its waiters:
    /// all with their seqs, or all with the one failure.
    fn commit(&mut self, batch: Vec<Waiting>) {
        let mut entries = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        for (entry, reply, permit) in batch {
            entries.push(entry);
            waiters.push((reply, permit));
        }
        let written = match self.reopen_if_needed() {
            Ok(()) => self.store.append_batch(&entries),
            Err(e) => Err(e),
        };
        let count = waiters.len();
        let first = written.and_then(
            |new_size| match new_size.checked_sub(entries.len() as u64) {
                Some(first) => Ok((first, new_size)),
                None => Err(StoreError::corrupt(
                    self.store.location(),
                    format!("a batch of {} made a tree of {new_size}", entries.len()),
                )),
            },
        );
        match first {
            Ok((first, new_size)) => {
                self.size = new_size;
                self.state.tree_size.store(new_size, Ordering::Release);
                self.state.batches.fetch_add(1, Ordering::Relaxed);
                self.state.set_degraded(None);
                if self.checkpoint_at.is_none() {
                    self.checkpoint_at = Some(Instant::now() + self.checkpoint_interval);
                }
                self.deliver(
                    count,
                    Box::new(move || {
                        for ((reply, permit), seq) in waiters.into_iter().zip(first..) {
                            // The slot frees before the answer: a waiter that
                            // has its answer never sees itself still queued.
                            drop(permit);
                            let _ = reply.send(Ok(seq));
                        }
                        drop(entries);
                    }),
                );
            }
            Err(e) => {
                // A connection that failed may be unusable (an I/O error
                // mid-transaction); opening again is cheap and checks the
                // file as the first open did.
                self.needs_reopen = e.kind() != StoreErrorKind::Invalid;
                let error = AppendError::Store(e);
                self.state.set_degraded(Some(error.to_string()));
                self.deliver(
                    count,
                    Box::new(move || {
                        for (reply, permit) in waiters {
                            drop(permit);
                            let _ = reply.send(Err(error.clone()));
                        }
                        drop(entries);
                    }),
                );
            }
        }
    }

    /// Whether a checkpoint is due now, by count or by time.
    fn checkpoint_due(&self) -> bool {
        let uncovered = self.size.saturating_sub(self.checkpointed.unwrap_or(0));
        if uncovered == 0 {
            return false;
        }
        let by_time = self.checkpoint_at.is_some_and(|at| Instant::now() >= at);
        by_time || (!self.checkpoint_failing && uncovered >= self.checkpoint_every)
    }

    fn checkpoint_if_due(&mut self) {
        if !self.checkpoint_due() {
            return;
        }
        // Several writers on one store (broker replicas): the one holding
        // the lease signs; the others take stock of what it signed and look
        // again later. A lease is renewed only by signing, so a holder that
        // stops writing lets another cover the events it does not see.
        let ttl = self
            .checkpoint_interval
            .saturating_mul(2)
            .max(Duration::from_secs(2));
        match self.store.take_signing_lease(&self.lease_holder, ttl) {
            Ok(true) => {
                let _ = self.checkpoint();
            }
            Ok(false) => {
                if let Ok(Some(latest)) = self.store.latest_checkpoint() {
                    let signed = latest.size.max(self.checkpointed.unwrap_or(0));
                    self.checkpointed = Some(signed);
                    self.state
                        .last_checkpoint_size
                        .store(signed, Ordering::Release);
                }
                self.checkpoint_at = Some(Instant::now() + self.checkpoint_interval);
            }
            Err(e) => {
                tracing::warn!("audit log: cannot take the checkpoint lease: {e}");
                self.checkpoint_at = Some(Instant::now() + CHECKPOINT_RETRY);
            }
        }
    }

    /// Signs and stores a checkpoint of the store's tree as it is now.
    fn checkpoint(&mut self) -> Result<String, AppendError> {
        match self.try_checkpoint() {
            Ok(note) => {
                self.checkpoint_failing = false;
                self.checkpoint_at = None;
                self.state.set_degraded(None);
                Ok(note)
            }
            Err(e) => {
                self.checkpoint_failing = true;
                self.checkpoint_at = Some(Instant::now() + CHECKPOINT_RETRY);
                self.state.set_degraded(Some(e.to_string()));
                Err(e)
            }
        }
    }

    fn try_checkpoint(&mut self) -> Result<String, AppendError> {
        self.reopen_if_needed().map_err(AppendError::Store)?;
        let store_error = |this: &mut Self, e: StoreError| {
            this.needs_reopen = e.kind() != StoreErrorKind::Invalid;
            AppendError::Store(e)
        };
        let size = match self.store.tree_size() {
            Ok(size) => size,
            Err(e) => return Err(store_error(self, e)),
        };
        let root = match tree::root(self.store.as_ref(), size) {
            Ok(root) => root,
            Err(e) => return Err(store_error(self, e)),
        };
        let note = self
            .signer
            .sign(size, &root)
            .map_err(|e| AppendError::Sign(e.to_string()))?;
        if let Err(e) = self.store.put_checkpoint(size, &note) {
            return Err(store_error(self, e));
        }
        self.size = self.size.max(size);
        self.checkpointed = Some(size);
        self.state
            .last_checkpoint_size
            .store(size, Ordering::Release);
        Ok(note)
    }

    /// The final checkpoint, if any event is not covered yet.
    fn finish(&mut self) -> Result<Option<String>, AppendError> {
        if self.size > self.checkpointed.unwrap_or(0) {
            self.checkpoint().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Answers a batch's waiters: a small batch here at once (a hop to
    /// another thread would cost a lightly loaded broker more than the
    /// waking saves), a large one through the notifier.
    fn deliver(&self, waiters: usize, delivery: Delivery) {
        if waiters <= INLINE_ANSWERS {
            delivery();
        } else {
            deliver_through(self.notifier.as_ref(), delivery);
        }
    }

    fn reopen_if_needed(&mut self) -> Result<(), StoreError> {
        if self.needs_reopen {
            self.store.reopen()?;
            self.needs_reopen = false;
        }
        Ok(())
    }
}

/// Hands `delivery` to the notifier, or runs it here without one.
fn deliver_through(notifier: Option<&mpsc::Sender<Delivery>>, delivery: Delivery) {
    match notifier {
        Some(notifier) => {
            if let Err(mpsc::SendError(delivery)) = notifier.send(delivery) {
                delivery();
            }
        }
        None => delivery(),
    }
}
