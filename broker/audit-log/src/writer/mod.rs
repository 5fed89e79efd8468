//! [`AuditLog`]: the handle the broker appends through. One writer thread
//! owns the store and commits in groups: it blocks for one pending append,
//! takes whatever else is queued (up to `max_batch`), writes them in one
//! transaction and answers every waiter with its `seq`. Under load one
//! fsync then covers thousands of events; idle, an event is written alone
//! at once. The queue is bounded, so appenders wait (asynchronously) when
//! the disk cannot keep up instead of piling events up in memory.
//!
//! `append` resolves only once its event is durable as the store's
//! [`Durability`] says; the broker forwards a request only after that. A
//! failed batch fails every waiter in it with the cause, keeps nothing,
//! marks the log degraded, and the next batch tries again (reopening the
//! store first), so writing recovers without a restart.
//!
//! [`AuditLog::open_sqlite`] puts a journal in front of the store
//! (`journal/`): an append is then durable once its record is written
//! (and, at `fsync`, synced with its group) by the appending task itself,
//! and the writer thread applies records to the store behind, in batches.
//! A store that failed keeps its batch for the next try; appends fail only
//! when the journal cannot be written, or when the store has failed long
//! enough that the queue is full.

mod journal;
pub use journal::unapplied as journal_unapplied;
#[cfg(test)]
mod tests;
mod thread;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::checkpoint::{check_origin, default_origin, new_log_id, KeyError, LogSigner};
use crate::entry::{check_pending, BuiltEntry, EntryError};
use crate::store::sqlite::SqliteStore;
use crate::store::{meta_keys, AuditStore, Durability, PendingEntry, StoreError, StoreErrorKind};
use journal::{Durable, Journal, Position};

/// How the log writes and signs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Used by [`AuditLog::open_sqlite`]; a store given ready-made has its own.
    pub durability: Durability,
    /// The checkpoints' origin; default `hoop.local/audit/<log id>`, made
    /// once and kept in the store.
    pub origin: Option<String>,
    /// A checkpoint once this many events are not covered by one…
    pub checkpoint_every: u64,
    /// …or this long after the first event not covered by one.
    pub checkpoint_interval: Duration,
    /// Most events one transaction takes. The queue holds four batches.
    pub max_batch: usize,
    /// [`AuditLog::open_sqlite`] only: a journal in front of the store.
    pub journal: bool,
    /// With the journal: how long the writer lets records gather before
    /// it applies them (one transaction for all) while they keep coming;
    /// a full batch is applied at once, and a flush (what reads through
    /// the broker do first), a checkpoint, shutdown or an `append_indexed`
    /// ends the wait. A reader of the file beside a busy broker sees
    /// records up to this late.
    pub index_delay: Duration,
    /// With the journal: the writer looks at the queue this often while
    /// it waits, and applies what it has once a look finds nothing new
    /// (calls have paused), so an idle broker's records reach the file
    /// this soon.
    pub index_quiet: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            origin: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 4096,
            journal: true,
            index_delay: Duration::from_secs(1),
            index_quiet: Duration::from_millis(20),
        }
    }
}

/// Why an append (or a checkpoint) did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The event itself is wrong; nothing else is affected.
    #[error("audit event refused: {0}")]
    Invalid(#[from] EntryError),
    /// The store failed; the whole batch was dropped.
    #[error("audit log cannot be written: {0}")]
    Store(StoreError),
    #[error("audit log cannot sign a checkpoint: {0}")]
    Sign(String),
    #[error("audit log cannot be written: it is shut down")]
    Closed,
}

/// Why the log did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("audit log: {0}")]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Key(#[from] KeyError),
    #[error("audit log {location}: its origin is `{stored}` but the configuration says `{configured}`: a log keeps its origin; remove `origin` from the configuration or set it to `{stored}`")]
    OriginChanged {
        location: String,
        stored: String,
        configured: String,
    },
    #[error("audit log {location}: a checkpoint of size {checkpoint} is stored but the tree has only {size} entries: signed entries are missing (restored from an older backup?); keep the file and check it with `hoop-broker audit verify`")]
    CheckpointAhead {
        location: String,
        checkpoint: u64,
        size: u64,
    },
    #[error("audit log: cannot start its writer thread: {0}")]
    Thread(std::io::Error),
}

/// The log's state as the broker's health check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub durability: Durability,
    /// Why the last write failed, until a write succeeds.
    pub degraded: Option<String>,
    pub tree_size: u64,
    /// Batches committed since the log opened (events per batch: how well
    /// group commit is doing).
    pub batches: u64,
    pub last_checkpoint_size: Option<u64>,
    /// Appends queued or being written.
    pub queued: usize,
    pub origin: String,
    pub location: String,
}

/// The handle the broker appends through: cheap to clone, `Send + Sync`.
/// The writer thread stops when `shutdown` is called or the last handle
/// is dropped (both sign a final checkpoint).
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::Sender<Command>,
    /// The writer thread, unparked to end its wait for more records.
    writer: std::thread::Thread,
    /// `None`: appends go to the writer thread, which answers after its
    /// commit.
    journal: Option<Arc<Journal>>,
    state: Arc<State>,
    queue_capacity: usize,
    origin: String,
    verifier_key: String,
    location: String,
    durability: Durability,
}

impl Shared {
    /// Ends the writer's wait for more records (`thread::gather`). The
    /// flag, not only the unpark: the writer also parks inside the
    /// queue's `recv`, which can take an unpark meant for its wait.
    fn wake_writer(&self) {
        self.state.wake.store(true, Ordering::Release);
        self.writer.unpark();
    }
}

impl Drop for Shared {
    /// The last handle is gone: the writer, perhaps waiting for more
    /// records, is told at once (the queue closed first, so it sees that
    /// when it wakes), and applies what it has and stops.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.commands, mpsc::channel().0));
        self.wake_writer();
    }
}

/// What the writer thread publishes for `health`, and the flag the
/// handles raise to wake it.
struct State {
    /// Bounds the queue: one permit per queued or in-flight append.
    permits: Arc<Semaphore>,
    tree_size: AtomicU64,
    batches: AtomicU64,
    /// `NO_CHECKPOINT` until one is stored.
    last_checkpoint_size: AtomicU64,
    degraded: Mutex<Option<String>>,
    stopped: AtomicBool,
    /// With the journal: why the last write to it failed, until one works.
    journal_failure: Mutex<Option<String>>,
    journal_failing: AtomicBool,
    /// With the journal: why the store refuses the records waiting for it.
    index_failure: Mutex<Option<StoreError>>,
    /// Someone waits for the writer: it applies what it has, now.
    wake: AtomicBool,
}

const NO_CHECKPOINT: u64 = u64::MAX;

impl State {
    fn set_degraded(&self, why: Option<String>) {
        *self.degraded.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    fn set_index_failure(&self, why: Option<StoreError>) {
        self.set_degraded(
            why.as_ref()
                .map(|e| format!("audit log cannot be written: {e}")),
        );
        *self
            .index_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    fn journal_result(&self, failure: Option<&StoreError>) {
        // The common case, a write that worked after one that worked,
        // takes no lock.
        if failure.is_none() && !self.journal_failing.load(Ordering::Acquire) {
            return;
        }
        self.journal_failing
            .store(failure.is_some(), Ordering::Release);
        *self
            .journal_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            failure.map(|e| format!("audit log cannot be written: {e}"));
    }
}

/// A record the journal holds, waiting for the store.
pub(crate) struct Unindexed {
    entry: PendingEntry,
    position: Position,
    /// `append_indexed`: told the event's seq once the store has it.
    reply: Option<oneshot::Sender<Result<u64, AppendError>>>,
    permit: OwnedSemaphorePermit,
}

// Appends are nearly every command sent; boxing their event to shrink the
// rare others would cost each append an allocation.
#[allow(clippy::large_enum_variant)]
enum Command {
    Append {
        entry: PendingEntry,
        reply: oneshot::Sender<Result<u64, AppendError>>,
        /// Released once the append is answered: the queue's bound.
        permit: OwnedSemaphorePermit,
    },
    /// With the journal: a record to apply to the store.
    Index(Unindexed),
    /// With the journal: answered once every record before it is applied.
    Flush {
        reply: oneshot::Sender<Result<(), AppendError>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<String, AppendError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<Option<String>, AppendError>>,
    },
}

impl AuditLog {
    /// The log in the SQLite file `path`, signing with the key at
    /// `key_path` (created 0600 on first start).
    ///
    /// With `config.journal` (the default) the durability asked for is the
    /// journal's, and the file itself is written at `os` behind it (and
    /// synced before the journal lets records go). Records a previous run
    /// left in the journal are applied first.
    pub fn open_sqlite(path: &Path, key_path: &Path, config: LogConfig) -> Result<Self, OpenError> {
        if !config.journal {
            let store = SqliteStore::open(path, config.durability)?;
            return Self::open(Box::new(store), key_path, config);
        }
        let mut store = SqliteStore::open(path, Durability::Os)?;
        let applied = match store.meta(journal::APPLIED_KEY)? {
            None => None,
            Some(v) => Some(v.parse::<Position>().map_err(|_| {
                StoreError::corrupt(
                    store.location(),
                    format!("`{}` is `{v}`, not a number", journal::APPLIED_KEY),
                )
            })?),
        };
        let (recovered, next) = Journal::open(path, config.durability, applied)?;
        for chunk in recovered.records.chunks(config.max_batch.max(1)) {
            let entries: Vec<PendingEntry> = chunk.iter().map(|(_, e)| e.clone()).collect();
            if let Some((last, _)) = chunk.last() {
                store.append_batch_marked(&entries, journal::APPLIED_KEY, &last.to_string())?;
            }
        }
        store.sync()?;
        let journal = recovered.start(next)?;
        let origin = resolve_origin(&mut store, config.origin.as_deref())?;
        let signer = LogSigner::load_or_create(key_path, &origin)?;
        Self::start(Box::new(store), signer, config, Some(Arc::new(journal)))
    }

    /// The log in any store, signing with the key at `key_path`.
    pub fn open(
        mut store: Box<dyn AuditStore>,
        key_path: &Path,
        config: LogConfig,
    ) -> Result<Self, OpenError> {
        let origin = resolve_origin(store.as_mut(), config.origin.as_deref())?;
        let signer = LogSigner::load_or_create(key_path, &origin)?;
        Self::with_signer(store, signer, config)
    }

    /// The log in any store, signing with `signer` (whose name must be the
    /// store's origin, or becomes it in a new store).
    pub fn with_signer(
        store: Box<dyn AuditStore>,
        signer: LogSigner,
        config: LogConfig,
    ) -> Result<Self, OpenError> {
        Self::start(store, signer, config, None)
    }

    fn start(
        mut store: Box<dyn AuditStore>,
        signer: LogSigner,
        config: LogConfig,
        journal: Option<Arc<Journal>>,
    ) -> Result<Self, OpenError> {
        let origin = resolve_origin(store.as_mut(), Some(signer.origin()))?;
        if store.meta(meta_keys::VERIFIER_KEY)?.as_deref() != Some(signer.verifier_key()) {
            store.set_meta(meta_keys::VERIFIER_KEY, signer.verifier_key())?;
        }
        let size = store.tree_size()?;
        let checkpointed = store.latest_checkpoint()?.map(|c| c.size);
        if let Some(checkpoint) = checkpointed.filter(|c| *c > size) {
            return Err(OpenError::CheckpointAhead {
                location: store.location().to_owned(),
                checkpoint,
                size,
            });
        }
        let max_batch = config.max_batch.max(1);
        let queue_capacity = max_batch.saturating_mul(4).min(Semaphore::MAX_PERMITS);
        let state = Arc::new(State {
            permits: Arc::new(Semaphore::new(queue_capacity)),
            tree_size: AtomicU64::new(size),
            batches: AtomicU64::new(0),
            last_checkpoint_size: AtomicU64::new(checkpointed.unwrap_or(NO_CHECKPOINT)),
            degraded: Mutex::new(None),
            stopped: AtomicBool::new(false),
            journal_failure: Mutex::new(None),
            journal_failing: AtomicBool::new(false),
            index_failure: Mutex::new(None),
            wake: AtomicBool::new(false),
        });
        let (commands, receiver) = mpsc::channel();
        let durability = journal
            .as_ref()
            .map_or(store.durability(), |j| j.durability());
        let verifier_key = signer.verifier_key().to_owned();
        let location = store.location().to_owned();
        let writer = thread::Writer::new(
            store,
            journal.clone(),
            signer,
            &config,
            max_batch,
            state.clone(),
            size,
            checkpointed,
        );
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(OpenError::Thread)?;
        let shared = Shared {
            commands,
            writer: thread.thread().clone(),
            journal,
            state,
            queue_capacity,
            origin,
            verifier_key,
            location,
            durability,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Appends one event; resolves once it is durable. Waits (without
    /// blocking the runtime) while the queue is full.
    pub async fn append(&self, entry: PendingEntry) -> Result<(), AppendError> {
        self.append_with(entry, false).await.map(drop)
    }

    /// Appends one event; resolves with its `seq` once it is durable and
    /// in the store (with the journal, that waits for the writer thread,
    /// which it wakes rather than let it wait for more records).
    pub async fn append_indexed(&self, entry: PendingEntry) -> Result<u64, AppendError> {
        self.append_with(entry, true)
            .await?
            .ok_or(AppendError::Closed)
    }

    /// Appends an entry made by [`EntryBuilder`](crate::entry::EntryBuilder),
    /// as [`append`](Self::append) does, without parsing it again: the
    /// broker's path.
    pub async fn append_built(&self, entry: BuiltEntry) -> Result<(), AppendError> {
        self.append_checked(entry.into_pending(), false)
            .await
            .map(drop)
    }

    async fn append_with(
        &self,
        entry: PendingEntry,
        want_seq: bool,
    ) -> Result<Option<u64>, AppendError> {
        check_pending(&entry)?;
        self.append_checked(entry, want_seq).await
    }

    /// `entry` passed `check_pending` (or was built so that it holds).
    async fn append_checked(
        &self,
        entry: PendingEntry,
        want_seq: bool,
    ) -> Result<Option<u64>, AppendError> {
        let permit = self.queue_slot().await?;
        let Some(journal) = &self.shared.journal else {
            let (reply, answer) = oneshot::channel();
            self.shared
                .commands
                .send(Command::Append {
                    entry,
                    reply,
                    permit,
                })
                .map_err(|_| AppendError::Closed)?;
            return answer.await.map_err(|_| AppendError::Closed)?.map(Some);
        };
        let state = &self.shared.state;
        let written = journal.append(entry, |position, entry| {
            let (reply, answer) = match want_seq {
                true => {
                    let (reply, answer) = oneshot::channel();
                    (Some(reply), Some(answer))
                }
                false => (None, None),
            };
            self.shared
                .commands
                .send(Command::Index(Unindexed {
                    entry,
                    position,
                    reply,
                    permit,
                }))
                .map_err(|_| {
                    StoreError::new(
                        StoreErrorKind::Other,
                        journal.dir().display().to_string(),
                        "the audit log's writer has stopped",
                    )
                })?;
            Ok(answer)
        });
        let (answer, durable) = match written {
            Ok(w) => w,
            Err(e) => {
                state.journal_result(Some(&e));
                return Err(AppendError::Store(e));
            }
        };
        if let Durable::AfterSync(synced) = durable {
            let synced = synced.await.map_err(|_| AppendError::Closed)?;
            state.journal_result(synced.as_ref().err());
            synced.map_err(AppendError::Store)?;
        } else {
            state.journal_result(None);
        }
        match answer {
            Some(answer) => {
                // Its caller waits for the store: the writer need not wait
                // for more records.
                self.shared.wake_writer();
                answer.await.map_err(|_| AppendError::Closed)?.map(Some)
            }
            None => Ok(None),
        }
    }

    /// A place in the bounded queue. With the journal, a full queue means
    /// the store is behind; if it is behind because it fails, the append
    /// fails with that cause instead of waiting for a store that may not
    /// recover soon.
    async fn queue_slot(&self) -> Result<OwnedSemaphorePermit, AppendError> {
        let permits = &self.shared.state.permits;
        match permits.clone().try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(AppendError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        if self.shared.journal.is_some() {
            let failure = self
                .shared
                .state
                .index_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(e) = failure {
                return Err(AppendError::Store(e));
            }
            // The writer may be waiting for more records: there are enough.
            self.shared.wake_writer();
        }
        permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppendError::Closed)
    }

    /// Resolves once every event appended before is in the store, so a
    /// read of the store sees them. Without the journal, at once.
    pub async fn flush(&self) -> Result<(), AppendError> {
        if self.shared.journal.is_none() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Flush { reply })
            .map_err(|_| AppendError::Closed)?;
        self.shared.wake_writer();
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Signs and stores a checkpoint of the tree as it is now; its note text.
    pub async fn checkpoint_now(&self) -> Result<String, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Checkpoint { reply })
            .map_err(|_| AppendError::Closed)?;
        self.shared.wake_writer();
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Writes what is queued, signs a final checkpoint (its note, if the
    /// tree grew since the last) and stops the writer. Later appends fail.
    pub async fn shutdown(&self) -> Result<Option<String>, AppendError> {
        if let Some(journal) = &self.shared.journal {
            journal.close();
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Shutdown { reply })
            .map_err(|_| AppendError::Closed)?;
        self.shared.wake_writer();
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Cheap: atomics and one short lock.
    pub fn health(&self) -> Health {
        let state = &self.shared.state;
        let last = state.last_checkpoint_size.load(Ordering::Acquire);
        let available = if state.stopped.load(Ordering::Acquire) {
            self.shared.queue_capacity
        } else {
            state.permits.available_permits()
        };
        Health {
            durability: self.shared.durability,
            degraded: state
                .journal_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .or_else(|| {
                    state
                        .degraded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                }),
            tree_size: state.tree_size.load(Ordering::Acquire),
            batches: state.batches.load(Ordering::Relaxed),
            last_checkpoint_size: (last != NO_CHECKPOINT).then_some(last),
            queued: self.shared.queue_capacity.saturating_sub(available),
            origin: self.shared.origin.clone(),
            location: self.shared.location.clone(),
        }
    }

    /// `name+hexid+base64`: what verifiers of this log are given.
    pub fn verifier_key(&self) -> &str {
        &self.shared.verifier_key
    }

    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Where the log is stored, for messages.
    pub fn location(&self) -> &str {
        &self.shared.location
    }
}

/// The log's origin: the one its store keeps; on a new store the one
/// configured, or `hoop.local/audit/<log id>` with a log id made now.
pub fn resolve_origin(
    store: &mut dyn AuditStore,
    configured: Option<&str>,
) -> Result<String, OpenError> {
    if let Some(configured) = configured {
        check_origin(configured)?;
    }
    let stored = match (store.meta(meta_keys::ORIGIN)?, configured) {
        (Some(stored), _) => stored,
        (None, Some(configured)) => store.init_meta(meta_keys::ORIGIN, configured)?,
        (None, None) => {
            let log_id = store.init_meta(meta_keys::LOG_ID, &new_log_id()?)?;
            store.init_meta(meta_keys::ORIGIN, &default_origin(&log_id))?
        }
    };
    match configured {
        Some(configured) if configured != stored => Err(OpenError::OriginChanged {
            location: store.location().to_owned(),
            stored,
            configured: configured.to_owned(),
        }),
        _ => Ok(stored),
    }
}
