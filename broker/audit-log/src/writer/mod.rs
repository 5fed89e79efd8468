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

#[cfg(test)]
mod tests;
mod thread;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::checkpoint::{check_origin, default_origin, new_log_id, KeyError, LogSigner};
use crate::entry::{check_pending, EntryError};
use crate::store::sqlite::SqliteStore;
use crate::store::{meta_keys, AuditStore, Durability, PendingEntry, StoreError};

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
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            origin: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 4096,
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
    state: Arc<State>,
    queue_capacity: usize,
    origin: String,
    verifier_key: String,
    location: String,
    durability: Durability,
}

/// What the writer thread publishes for `health`.
struct State {
    /// Bounds the queue: one permit per queued or in-flight append.
    permits: Arc<Semaphore>,
    tree_size: AtomicU64,
    batches: AtomicU64,
    /// `NO_CHECKPOINT` until one is stored.
    last_checkpoint_size: AtomicU64,
    degraded: Mutex<Option<String>>,
    stopped: AtomicBool,
}

const NO_CHECKPOINT: u64 = u64::MAX;

impl State {
    fn set_degraded(&self, why: Option<String>) {
        *self.degraded.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }
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
    pub fn open_sqlite(path: &Path, key_path: &Path, config: LogConfig) -> Result<Self, OpenError> {
        let store = SqliteStore::open(path, config.durability)?;
        Self::open(Box::new(store), key_path, config)
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
        mut store: Box<dyn AuditStore>,
        signer: LogSigner,
        config: LogConfig,
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
        });
        let (commands, receiver) = mpsc::channel();
        let shared = Shared {
            commands,
            state: state.clone(),
            queue_capacity,
            origin,
            verifier_key: signer.verifier_key().to_owned(),
            location: store.location().to_owned(),
            durability: store.durability(),
        };
        let writer =
            thread::Writer::new(store, signer, &config, max_batch, state, size, checkpointed);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(OpenError::Thread)?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Appends one event; resolves with its `seq` once it is durable.
    /// Waits (without blocking the runtime) while the queue is full.
    pub async fn append(&self, entry: PendingEntry) -> Result<u64, AppendError> {
        check_pending(&entry)?;
        let permit = self
            .shared
            .state
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppendError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Append {
                entry,
                reply,
                permit,
            })
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Signs and stores a checkpoint of the tree as it is now; its note text.
    pub async fn checkpoint_now(&self) -> Result<String, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Checkpoint { reply })
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Writes what is queued, signs a final checkpoint (its note, if the
    /// tree grew since the last) and stops the writer. Later appends fail.
    pub async fn shutdown(&self) -> Result<Option<String>, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Shutdown { reply })
            .map_err(|_| AppendError::Closed)?;
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
                .degraded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
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
