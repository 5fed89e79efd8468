//! hoop's audit log: an append-only, tamper-evident record that a third
//! party can verify offline with tools hoop did not write.
//!
//! The log is an RFC 6962 Merkle tree whose leaves are the events' JSON
//! bytes (docs/audit.md), with C2SP checkpoints signed by the broker's
//! Ed25519 key, in the style of Tessera: a small storage trait, one folder
//! per backend, durability stated by the types that promise it.
//!
//! - [`writer`]: [`AuditLog`], what the broker appends through. `append`
//!   resolves once the event is durable; the broker forwards only then.
//! - [`store`]: the [`AuditStore`] trait, its SQLite backend
//!   (`store/sqlite`, see its README.md) and the suite every backend runs.
//! - [`entry`]: event fields to entry bytes, and the sequencing of a batch
//!   every backend shares.
//! - [`checkpoint`]: the signing key, checkpoint notes, opening them.
//! - [`tree`]: roots and proofs read from a store (tlog_tiles' math).
//! - [`export`]: the JSON-lines export; [`verify`]: checking an export
//!   offline, or a whole store.

mod background;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod store;
pub mod tree;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod test_support;

pub use checkpoint::{open_checkpoint, KeyError, LogSigner, OpenedCheckpoint, TrustedKeys};
pub use entry::{BuiltEntry, EntryBuilder, EntryError, MAX_ENTRY_BYTES, MAX_FIELDS_BYTES};
pub use export::{export_jsonl, ExportError, ExportRange, ExportSummary};
pub use store::postgres::PostgresStore;
pub use store::sqlite::SqliteStore;
pub use store::{
    AuditStore, Durability, EntryIndex, PendingEntry, SearchQuery, StoreError, StoreErrorKind,
    StoredCheckpoint, StoredEntry,
};
pub use verify::{verify_export, verify_store, Problem, Report, VerifyError};
pub use writer::{journal_unapplied, AppendError, AuditLog, Health, LogConfig, OpenError};
