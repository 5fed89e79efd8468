//! Opening the file: created 0600, WAL, the durability asked for, the
//! schema migrated, and the tree checked before anything is written.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tlog_tiles::stored_hash_count;

use super::schema::{self, sqlite_error};
use crate::entry::MAX_TREE_SIZE;
use crate::store::{Durability, StoreError, StoreErrorKind};

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this store may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    ReadWrite,
    ReadOnly,
}

/// Creates the file 0600 before SQLite does (SQLite would use the umask);
/// its `-wal` and `-shm` files then take the same mode.
pub(super) fn create_private(path: &Path, location: &str) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::new(
            StoreErrorKind::of_io(&e),
            location,
            format!("cannot create the audit log: {e}; check that its directory exists and the broker may write there"),
        )),
    }
}

/// Opens a connection with the log's settings, migrates (when writing)
/// and checks the tree.
pub(super) fn connect(
    path: &Path,
    location: &str,
    durability: Durability,
    access: Access,
) -> Result<Connection, StoreError> {
    let err = |doing: &'static str| move |e| sqlite_error(location, doing, e);
    let flags = match access {
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(err("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("setting the lock timeout"))?;
    conn.set_prepared_statement_cache_capacity(64);
    // A 64 MiB page cache and reads through mmap: the writer re-reads the
    // index pages it extends and the hashes it combines, and reading them
    // with read(2) copied every page (a third of the writer's time).
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(err("sizing the page cache"))?;
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)
        .map_err(err("mapping the file"))?;
    if access == Access::ReadWrite {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(err("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                location,
                format!("SQLite kept journal mode `{mode}` instead of WAL (a network file system?): keep the log on a local disk"),
            ));
        }
        // FULL: the WAL is fsynced at every commit. NORMAL in WAL mode:
        // commits reach the OS at once and the disk at WAL checkpoints, so
        // a power cut may lose the last commits but never corrupts the
        // file (OFF could).
        conn.pragma_update(None, "synchronous", synchronous(durability))
            .map_err(err("setting durability"))?;
        // Without the checkpointer thread: copy the WAL back every 32 MiB
        // rather than 4 MiB (a busy log's batch is a few MiB).
        conn.pragma_update(None, "wal_autocheckpoint", 8_192)
            .map_err(err("setting the WAL size"))?;
        schema::migrate(&mut conn, location)?;
    } else {
        schema::check_version(&conn, location)?;
    }
    check_tree(&conn, location)?;
    Ok(conn)
}

pub(super) fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::Fsync => "FULL",
        Durability::Os => "NORMAL",
    }
}

/// The stored hashes must end where a tree of the stored entries ends.
pub(super) fn check_tree(conn: &Connection, location: &str) -> Result<u64, StoreError> {
    let size = tree_size_of(conn, location)?;
    let max_idx: Option<i64> = conn
        .query_row("SELECT MAX(idx) FROM hashes", [], |r| r.get(0))
        .map_err(|e| sqlite_error(location, "counting stored hashes", e))?;
    let held = max_idx.map_or(0, |i| i.saturating_add(1) as u64);
    let want = stored_hash_count(size);
    if held != want {
        return Err(StoreError::corrupt(
            location,
            format!(
                "it holds {held} stored hashes but a tree of its {size} entries has {want}: the file was changed outside hoop or damaged; keep it for investigation, check it with `hoop-broker audit verify` and restore the log from backup"
            ),
        ));
    }
    Ok(size)
}

pub(super) fn tree_size_of(conn: &Connection, location: &str) -> Result<u64, StoreError> {
    let max: Option<i64> = conn
        .query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))
        .map_err(|e| sqlite_error(location, "reading the tree size", e))?;
    match max {
        None => Ok(0),
        Some(seq) if seq >= 0 && (seq as u64) < MAX_TREE_SIZE => Ok(seq as u64 + 1),
        Some(seq) => Err(StoreError::corrupt(
            location,
            format!("an entry has seq {seq}"),
        )),
    }
}
