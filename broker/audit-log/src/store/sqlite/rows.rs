//! Reading rows and stored hashes, and the integer conversions between
//! SQLite's signed integers and the log's unsigned ones.

use std::cell::RefCell;

use rusqlite::Connection;
use tlog_tiles::{Hash, HashReader};

use super::schema::sqlite_error;
use crate::store::{sql_int, to_u64, StoreError, StoredEntry};

/// Reads stored hashes in runs of consecutive indexes (one range query
/// each); exactly one hash per index asked, or an error.
pub(super) fn read_hashes_from(
    conn: &Connection,
    location: &str,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    let err = |e| sqlite_error(location, "reading stored hashes", e);
    let mut stmt = conn
        .prepare_cached("SELECT idx, hash FROM hashes WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
        .map_err(err)?;
    let mut out = Vec::with_capacity(indexes.len());
    let mut rest = indexes;
    while let Some(&start) = rest.first() {
        let run = 1 + rest
            .windows(2)
            .take_while(|w| w[0].checked_add(1) == Some(w[1]))
            .count();
        let end = start.saturating_add(run as u64);
        let mut rows = stmt
            .query((
                sql_int(location, "hash index", start)?,
                sql_int(location, "hash index", end)?,
            ))
            .map_err(err)?;
        let mut expect = start;
        while let Some(row) = rows.next().map_err(err)? {
            let idx: i64 = row.get(0).map_err(err)?;
            if u64::try_from(idx).ok() != Some(expect) {
                break;
            }
            let hash: [u8; 32] = row
                .get_ref(1)
                .map_err(err)?
                .as_blob()
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    StoreError::corrupt(location, format!("stored hash {idx} is not 32 bytes"))
                })?;
            out.push(Hash(hash));
            expect += 1;
        }
        if expect != end {
            return Err(StoreError::corrupt(
                location,
                format!("stored hash {expect} is missing: check the log with `hoop-broker audit verify`"),
            ));
        }
        rest = &rest[run..];
    }
    Ok(out)
}

/// The hashes of an open transaction, as tlog reads them.
pub(super) struct ConnHashes<'c> {
    pub(super) conn: &'c Connection,
    pub(super) location: &'c str,
    pub(super) failure: RefCell<Option<StoreError>>,
}

impl HashReader for ConnHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        read_hashes_from(self.conn, self.location, indexes).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            tlog_tiles::Error::IndexesNotInTree
        })
    }
}

pub(super) fn entry_from_row(
    location: &str,
    row: &rusqlite::Row<'_>,
) -> Result<StoredEntry, StoreError> {
    let err = |e| sqlite_error(location, "reading an entry", e);
    Ok(StoredEntry {
        seq: to_u64(location, "an entry's seq", row.get(0).map_err(err)?)?,
        time_ns: row.get(1).map_err(err)?,
        entry: row.get(2).map_err(err)?,
        bodies: Vec::new(),
    })
}

pub(super) fn sha_from(location: &str, blob: Vec<u8>) -> Result<[u8; 32], StoreError> {
    blob.try_into()
        .map_err(|_| StoreError::corrupt(location, "a body's SHA-256 is not 32 bytes"))
}
