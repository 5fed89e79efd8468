//! The audit log's storage interface: one small trait, one folder per
//! backend (`sqlite/`, the embedded default; `postgres/`, for several
//! broker replicas), one shared test suite every backend must pass
//! (`tests.rs`).
//!
//! A store keeps four things: the entries (the bytes the tree commits to,
//! with the columns search uses), the tree's stored hashes (the layout of
//! Go's `sumdb/tlog`, addressed by `stored_hash_index`), the bodies stored
//! beside leaves, and every signed checkpoint. It assigns sequence numbers
//! itself, inside the transaction that writes a batch, so several writers
//! (broker replicas on PostgreSQL) cannot hand out the same number; the
//! sequencing itself (`crate::entry::sequence_batch`) is shared so every
//! backend builds the same tree.

mod error;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use std::borrow::Cow;
use std::ops::Range;

pub(crate) use error::{sql_int, to_u64};
pub use error::{StoreError, StoreErrorKind};
pub use tlog_tiles::Hash;

/// One event ready to append: its JSON without `seq`, the bodies stored
/// beside its leaf, and what search indexes.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    /// The event as compact JSON object text, `{"v":1,...}`, without `seq`.
    /// The sequencer turns it into the entry `{"seq":N,"v":1,...}`.
    pub fields: Vec<u8>,
    /// Bodies stored beside the leaf (the leaf carries their SHA-256).
    pub bodies: Vec<([u8; 32], bytes::Bytes)>,
    /// Columns the store indexes for `hoop audit search` and `replay`.
    pub index: EntryIndex,
}

/// What an entry is searched by; the entry itself stays the source of truth.
#[derive(Debug, Clone, Default)]
pub struct EntryIndex {
    /// UTC nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The event type (`mcp.request`, `connection.open`, …). Borrowed when
    /// the broker makes it; owned when read back from the journal.
    pub kind: Cow<'static, str>,
    pub subject: Option<String>,
    pub target: Option<String>,
    /// Tool, prompt, resource URI or task id.
    pub name: Option<String>,
    /// `allow`, `deny`, `approve`.
    pub decision: Option<Cow<'static, str>>,
    pub exchange: Option<String>,
    pub session: Option<String>,
}

/// What "durable" means when [`AuditStore::append_batch`] returns `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On disk: the batch's commit was flushed to stable storage (fsync).
    /// It survives a power cut.
    #[default]
    Fsync,
    /// Handed to the operating system: it survives a crash or kill of the
    /// broker, not a crash of the machine or a power cut.
    Os,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::Os => "os",
        }
    }
}

/// An entry as stored: the exact bytes its leaf hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub time_ns: i64,
    /// `{"seq":N,...}`, byte for byte what the tree commits to.
    pub entry: Vec<u8>,
    /// SHA-256 of each body stored beside this leaf.
    pub bodies: Vec<[u8; 32]>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The signed note text (C2SP tlog-checkpoint in a C2SP signed-note).
    pub note: String,
}

/// `hoop audit search`: every filter set must match; entries ascending by
/// `seq`, at most `limit` (capped at [`MAX_SEARCH_LIMIT`]). Page with
/// `after_seq` = the last `seq` seen.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub name: Option<String>,
    pub decision: Option<String>,
    pub exchange: Option<String>,
    pub session: Option<String>,
    /// Inclusive, UTC nanoseconds.
    pub since_ns: Option<i64>,
    /// Exclusive, UTC nanoseconds.
    pub until_ns: Option<i64>,
    /// Only entries with a larger `seq`.
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// Most entries one search returns: 10,000, and one more, so a reader
/// showing 10,000 can tell whether more match.
pub const MAX_SEARCH_LIMIT: usize = 10_001;
/// Most entries one [`AuditStore::entries`] call reads: callers page.
pub const MAX_ENTRIES_PER_READ: u64 = 10_000;
/// Most checkpoints one [`AuditStore::checkpoints`] call returns.
pub const MAX_CHECKPOINTS_PER_READ: usize = 10_000;

/// Metadata keys the log itself uses.
pub mod meta_keys {
    /// The checkpoints' origin line and key name.
    pub const ORIGIN: &str = "origin";
    /// 8 hex digits, made once; the default origin ends with it.
    pub const LOG_ID: &str = "log_id";
    /// The verifier key of the key signing checkpoints now, for commands
    /// that read the log without the private key.
    pub const VERIFIER_KEY: &str = "verifier_key";
}

/// Where audit entries, hashes, bodies and checkpoints live.
///
/// Reads take `&self`, writes `&mut self`; a store is used by one thread
/// at a time (the log's writer thread, or a command reading the log).
pub trait AuditStore: Send {
    /// What a successful [`append_batch`](Self::append_batch) promises.
    fn durability(&self) -> Durability;

    /// Where the log lives (a file path, a database name), for messages.
    fn location(&self) -> &str;

    /// Appends the batch all-or-nothing in one transaction: assigns the
    /// sequence numbers `size, size+1, …` from the tree's size as seen in
    /// that transaction, writes entries, stored hashes and bodies, and
    /// returns the new tree size once the batch is durable as
    /// [`durability`](Self::durability) says. On `Err` nothing of the batch
    /// is kept. Entry `i` of the batch got `seq = new_size - len + i`.
    fn append_batch(&mut self, batch: &[PendingEntry]) -> Result<u64, StoreError>;

    /// [`append_batch`](Self::append_batch), and in the same transaction
    /// sets the metadata `key` to `value`: the journal in front of a store
    /// records which of its records the store holds, so none is applied
    /// twice after a crash. A backend that cannot do both at once must not
    /// override this default, which is not atomic (and is only used by
    /// writers that tolerate a record applied twice).
    fn append_batch_marked(
        &mut self,
        batch: &[PendingEntry],
        key: &str,
        value: &str,
    ) -> Result<u64, StoreError> {
        let size = self.append_batch(batch)?;
        self.set_meta(key, value)?;
        Ok(size)
    }

    /// Makes every committed batch survive a power cut, whatever
    /// [`durability`](Self::durability) says of a single one: before the
    /// journal drops records, the store holding them is synced.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Number of entries ever appended (the next `seq`).
    fn tree_size(&self) -> Result<u64, StoreError>;

    /// The smallest `seq` whose entry is still stored (retention may have
    /// removed older entries, never their hashes); `tree_size` when empty.
    fn first_seq(&self) -> Result<u64, StoreError>;

    /// The stored hashes at these indexes, in the order asked: exactly
    /// `indexes.len()` of them, or an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;

    /// The stored entries with `seq` in `seqs`, ascending; at most
    /// [`MAX_ENTRIES_PER_READ`] wide (wider is an `Invalid` error).
    fn entries(&self, seqs: Range<u64>) -> Result<Vec<StoredEntry>, StoreError>;

    /// A body stored beside a leaf, by its SHA-256.
    fn body(&self, sha256: &[u8; 32]) -> Result<Option<bytes::Bytes>, StoreError>;

    /// Keeps a signed checkpoint (every one signed is kept; the same note
    /// twice is kept once).
    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError>;

    /// Stored checkpoints with size in `sizes`, ascending by size, at most
    /// `limit` (capped at [`MAX_CHECKPOINTS_PER_READ`]).
    fn checkpoints(
        &self,
        sizes: Range<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The stored checkpoint of the largest size (the last stored of it).
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Entries matching every filter of `query`, ascending by `seq`.
    fn search(&self, query: &SearchQuery) -> Result<Vec<StoredEntry>, StoreError>;

    /// The seqs from the first entry recorded at or after `since_ns` to the
    /// last recorded before `until_ns`, or `None` when there is none.
    fn seq_range_for_time(
        &self,
        since_ns: Option<i64>,
        until_ns: Option<i64>,
    ) -> Result<Option<Range<u64>>, StoreError>;

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Stores `value` unless `key` has one already; returns the value now
    /// stored (so two processes starting at once agree on one).
    fn init_meta(&mut self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Retention: removes the entries with `seq < cut` (and the bodies only
    /// they named), all-or-nothing; keeps every stored hash and checkpoint,
    /// so what remains still proves against every checkpoint. The newest
    /// entry is always kept (`cut` is capped below the tree size). Returns
    /// how many entries were removed.
    fn expire_before(&mut self, cut: u64) -> Result<u64, StoreError>;

    /// Takes or renews, for `ttl`, the right to sign the log's regular
    /// checkpoints, when several writers (broker replicas) share the store:
    /// `true` while `holder` has it, `false` while another holder's lease
    /// runs (it signs; this one takes over once that lease lapses). A
    /// store with one writer has nothing to share: always `true`.
    fn take_signing_lease(
        &mut self,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Drops and reopens the connection after a failure that may have left
    /// it unusable; checks the store again as opening does.
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
