//! The SQLite file's schema and its migrations (`PRAGMA user_version`),
//! and how SQLite's errors read to a person.

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::store::{StoreError, StoreErrorKind};

/// The schema this code writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// Version 1. `entries` keeps the entry bytes (the source of truth) and
/// copies of the columns search filters on; the index on each filter
/// column also holds `seq` (the rowid), so "these, ascending by seq" reads
/// one index in order. Partial indexes leave out rows without the value.
/// `hashes` is tlog's stored-hash layout, one row per stored hash.
const SCHEMA_V1: &str = "
CREATE TABLE entries (
    seq      INTEGER PRIMARY KEY,
    time_ns  INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT,
    target   TEXT,
    name     TEXT,
    decision TEXT,
    exchange TEXT,
    session  TEXT,
    entry    BLOB NOT NULL
);
CREATE INDEX entries_time ON entries (time_ns);
CREATE INDEX entries_kind ON entries (kind);
CREATE INDEX entries_subject ON entries (subject) WHERE subject IS NOT NULL;
CREATE INDEX entries_target ON entries (target) WHERE target IS NOT NULL;
CREATE INDEX entries_name ON entries (name) WHERE name IS NOT NULL;
CREATE INDEX entries_exchange ON entries (exchange) WHERE exchange IS NOT NULL;
CREATE INDEX entries_session ON entries (session) WHERE session IS NOT NULL;
CREATE TABLE hashes (
    idx  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE bodies (
    sha256 BLOB PRIMARY KEY,
    data   BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE entry_bodies (
    seq    INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    PRIMARY KEY (seq, sha256)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    id   INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    note TEXT NOT NULL,
    UNIQUE (size, note)
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction taken with
/// the write lock so two processes opening a new file do not both create.
pub fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let err = |doing: &'static str| move |e| sqlite_error(location, doing, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("locking the file to set up its tables"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("reading the schema version"))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1)
                .map_err(err("creating the tables"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err("setting the schema version"))?;
        }
        SCHEMA_VERSION => {}
        newer if newer > SCHEMA_VERSION => return Err(newer_version(location, newer)),
        older => {
            return Err(StoreError::corrupt(
                location,
                format!("schema version {older} is not one hoop ever wrote"),
            ))
        }
    }
    tx.commit().map_err(err("committing the tables"))
}

/// For a read-only opener: the schema must be there already, and ours.
pub fn check_version(conn: &Connection, location: &str) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sqlite_error(location, "reading the schema version", e))?;
    match version {
        SCHEMA_VERSION => Ok(()),
        0 => Err(StoreError::corrupt(
            location,
            "not an audit log (no tables yet): the broker creates it on its first start; check the path",
        )),
        newer if newer > SCHEMA_VERSION => Err(newer_version(location, newer)),
        older => Err(StoreError::corrupt(
            location,
            format!("schema version {older} is not one hoop ever wrote"),
        )),
    }
}

fn newer_version(location: &str, version: i64) -> StoreError {
    StoreError::newer_schema(location, version, SCHEMA_VERSION)
}

/// An SQLite error as a [`StoreError`]: the kind the writer acts on and
/// what a person can do, `doing` saying what the store was at.
pub fn sqlite_error(location: &str, doing: &str, e: rusqlite::Error) -> StoreError {
    let rusqlite::Error::SqliteFailure(failure, message) = &e else {
        return StoreError::new(StoreErrorKind::Other, location, format!("{doing}: {e}"));
    };
    let said = message.clone().unwrap_or_else(|| failure.to_string());
    let (kind, advice) = match failure.code {
        ErrorCode::DiskFull => (
            StoreErrorKind::DiskFull,
            "free space on its disk; writing resumes by itself once there is room",
        ),
        ErrorCode::ReadOnly => (
            StoreErrorKind::ReadOnly,
            "make the file, its directory and its mount writable by the broker",
        ),
        ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => (
            StoreErrorKind::ReadOnly,
            "the broker's user may not write it: fix its owner or permissions",
        ),
        ErrorCode::SystemIoFailure | ErrorCode::NoLargeFileSupport => (
            StoreErrorKind::Io,
            "the disk or file system failed: check the system log (dmesg) and the disk",
        ),
        ErrorCode::CannotOpen => (
            StoreErrorKind::Io,
            "check that its directory exists and the broker may write there",
        ),
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => (
            StoreErrorKind::Corrupt,
            "keep the file for investigation and restore the log from backup",
        ),
        ErrorCode::DatabaseBusy
        | ErrorCode::DatabaseLocked
        | ErrorCode::FileLockingProtocolFailed => (
            StoreErrorKind::Busy,
            "another process holds the write lock: only one broker may write a log file",
        ),
        _ => (StoreErrorKind::Other, ""),
    };
    let detail = if advice.is_empty() {
        format!("{doing}: {said}")
    } else {
        format!("{doing}: {said}; {advice}")
    };
    StoreError::new(kind, location, detail)
}
