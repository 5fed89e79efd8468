//! The SQLite backend: the whole log in one file (`audit.db`), WAL, one
//! transaction per batch. See README.md in this folder for the layout,
//! the durability levels and how to read the file while the broker writes.

mod open;
mod rows;
mod schema;
mod wal;

use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};
use tlog_tiles::Hash;

use crate::entry::{sequence_batch, SequenceError};
use crate::store::{sql_int, to_u64};
use crate::store::{
    AuditStore, Durability, PendingEntry, SearchQuery, StoreError, StoreErrorKind,
    StoredCheckpoint, StoredEntry, MAX_CHECKPOINTS_PER_READ, MAX_ENTRIES_PER_READ,
    MAX_SEARCH_LIMIT,
};
use open::{check_tree, connect, create_private, synchronous, tree_size_of, Access};
use rows::{entry_from_row, read_hashes_from, sha_from, ConnHashes};
use schema::sqlite_error;

/// An audit log in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    /// Copies the WAL into the file beside the writer; `None` read-only.
    checkpointer: Option<wal::Checkpointer>,
    path: PathBuf,
    location: String,
    durability: Durability,
    access: Access,
    /// Batches committed, for nudging the checkpointer now and then.
    commits: u64,
}

impl SqliteStore {
    /// Opens (creating it 0600 if needed) the log at `path` for writing.
    /// Refuses a file whose stored hashes do not match its entries.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        create_private(path, &location)?;
        let conn = connect(path, &location, durability, Access::ReadWrite)?;
        let store = Self {
            conn,
            checkpointer: wal::Checkpointer::start(path, synchronous(durability)),
            commits: 0,
            path: path.to_owned(),
            location,
            durability,
            access: Access::ReadWrite,
        };
        store.leave_checkpoints_to_checkpointer()?;
        Ok(store)
    }

    /// Opens an existing log for reading while the broker writes it (WAL
    /// lets readers and the writer work at once). Writes are refused.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::new(
                StoreErrorKind::Io,
                location,
                "no such file: check the path (the broker's `[audit] path`)",
            ));
        }
        let conn = connect(path, &location, Durability::Fsync, Access::ReadOnly)?;
        Ok(Self {
            conn,
            checkpointer: None,
            commits: 0,
            path: path.to_owned(),
            location,
            durability: Durability::Fsync,
            access: Access::ReadOnly,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| sqlite_error(&self.location, doing, e)
    }

    /// With the checkpointer running, the writer checkpoints only if the
    /// WAL grows far beyond what the checkpointer lets it.
    fn leave_checkpoints_to_checkpointer(&self) -> Result<(), StoreError> {
        if self.checkpointer.is_some() {
            self.conn
                .pragma_update(None, "wal_autocheckpoint", wal::WRITER_FALLBACK_PAGES)
                .map_err(self.err("setting the WAL size"))?;
        }
        Ok(())
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => wal::shared_memory_writable(&self.path).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::of_io(&e),
                    &self.location,
                    format!("its shared-memory file (-shm) cannot be written: {e}; make the file, its directory and its mount writable by the broker"),
                )
            }),
            Access::ReadOnly => Err(StoreError::new(
                StoreErrorKind::ReadOnly,
                &self.location,
                "opened read-only (a reader beside the broker): only the broker writes the log",
            )),
        }
    }

    /// One batch in one transaction, with the journal's mark if given.
    fn append(
        &mut self,
        batch: &[PendingEntry],
        mark: Option<(&str, &str)>,
    ) -> Result<u64, StoreError> {
        self.writable()?;
        if batch.is_empty() {
            return self.tree_size();
        }
        let location = self.location.as_str();
        let err = |doing: &'static str| move |e| sqlite_error(location, doing, e);
        // IMMEDIATE: the write lock first, so the size read below is the
        // one this batch extends.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("starting a write"))?;
        let size = check_tree(&tx, location)?;
        let hashes = ConnHashes {
            conn: &tx,
            location,
            failure: RefCell::new(None),
        };
        let sequenced = sequence_batch(size, batch, &hashes).map_err(|e| match e {
            SequenceError::Tree(t) => hashes
                .failure
                .borrow_mut()
                .take()
                .unwrap_or_else(|| StoreError::corrupt(location, format!("tree hashes: {t}"))),
            other => StoreError::invalid(location, other.to_string()),
        })?;
        {
            let mut put_entry = tx
                .prepare_cached(
                    "INSERT INTO entries (seq, time_ns, kind, subject, target, name, decision, exchange, session, entry)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err("writing entries"))?;
            let mut put_body = tx
                .prepare_cached("INSERT OR IGNORE INTO bodies (sha256, data) VALUES (?1, ?2)")
                .map_err(err("writing bodies"))?;
            let mut link_body = tx
                .prepare_cached("INSERT OR IGNORE INTO entry_bodies (seq, sha256) VALUES (?1, ?2)")
                .map_err(err("writing bodies"))?;
            for e in &sequenced.entries {
                let seq = sql_int(location, "seq", e.seq)?;
                let ix = &e.pending.index;
                put_entry
                    .execute(rusqlite::params![
                        seq,
                        ix.time_ns,
                        ix.kind,
                        ix.subject,
                        ix.target,
                        ix.name,
                        ix.decision,
                        ix.exchange,
                        ix.session,
                        e.entry,
                    ])
                    .map_err(err("writing entries"))?;
                for (sha, data) in &e.pending.bodies {
                    put_body
                        .execute((&sha[..], &data[..]))
                        .map_err(err("writing bodies"))?;
                    link_body
                        .execute((seq, &sha[..]))
                        .map_err(err("writing bodies"))?;
                }
            }
            let mut put_hash = tx
                .prepare_cached("INSERT INTO hashes (idx, hash) VALUES (?1, ?2)")
                .map_err(err("writing stored hashes"))?;
            for (idx, hash) in (sequenced.first_hash_index..).zip(&sequenced.hashes) {
                put_hash
                    .execute((sql_int(location, "hash index", idx)?, &hash.0[..]))
                    .map_err(err("writing stored hashes"))?;
            }
        }
        if let Some((key, value)) = mark {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute((key, value)))
            .map_err(err("writing metadata"))?;
        }
        tx.commit().map_err(err("committing a batch"))?;
        self.commits = self.commits.wrapping_add(1);
        if let Some(checkpointer) = &self.checkpointer {
            if self.commits.is_multiple_of(wal::COMMITS_PER_NUDGE) {
                checkpointer.nudge();
            }
        }
        Ok(sequenced.new_size)
    }

    fn set_synchronous(&self, level: &str) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", level)
            .map_err(self.err("syncing the log"))
    }

    /// Test hook: SQLite reports "database or disk is full" past this many
    /// pages, as it does on a full disk.
    #[cfg(test)]
    pub(crate) fn limit_pages(&self, pages: u64) {
        self.conn
            .pragma_update(None, "max_page_count", pages as i64)
            .unwrap();
    }

    /// Test hook: the raw connection, to damage the file as a bug or an
    /// intruder would.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}
impl AuditStore for SqliteStore {
    fn durability(&self) -> Durability {
        self.durability
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn append_batch(&mut self, batch: &[PendingEntry]) -> Result<u64, StoreError> {
        self.append(batch, None)
    }

    fn append_batch_marked(
        &mut self,
        batch: &[PendingEntry],
        key: &str,
        value: &str,
    ) -> Result<u64, StoreError> {
        self.append(batch, Some((key, value)))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        // Through SQLite, never by opening the files here: closing any
        // descriptor of a file drops every POSIX lock this process holds
        // on it, SQLite's too, and another process writing beside the
        // broker would then overwrite its commits. One commit at FULL
        // fsyncs the WAL, and with it every commit before; what earlier
        // checkpoints copied into the file, they synced there.
        self.writable()?;
        let size = self.tree_size()?.to_string();
        self.set_synchronous("FULL")?;
        let written = self.set_meta("synced_at_size", &size);
        self.set_synchronous(synchronous(self.durability))?;
        written
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        tree_size_of(&self.conn, &self.location)
    }

    fn first_seq(&self) -> Result<u64, StoreError> {
        let min: Option<i64> = self
            .conn
            .query_row("SELECT MIN(seq) FROM entries", [], |r| r.get(0))
            .map_err(self.err("reading the first entry"))?;
        match min {
            Some(seq) => to_u64(&self.location, "the first seq", seq),
            None => self.tree_size(),
        }
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes_from(&self.conn, &self.location, indexes)
    }

    fn entries(&self, seqs: Range<u64>) -> Result<Vec<StoredEntry>, StoreError> {
        let loc = self.location.as_str();
        if seqs.end.saturating_sub(seqs.start) > MAX_ENTRIES_PER_READ {
            return Err(StoreError::invalid(
                loc,
                format!(
                    "read entries {} to {} in pages of {MAX_ENTRIES_PER_READ}",
                    seqs.start, seqs.end
                ),
            ));
        }
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let (from, to) = (
            sql_int(loc, "seq", seqs.start)?,
            sql_int(loc, "seq", seqs.end)?,
        );
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, time_ns, entry FROM entries WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
            )
            .map_err(self.err("reading entries"))?;
        let mut rows = stmt
            .query((from, to))
            .map_err(self.err("reading entries"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("reading entries"))? {
            out.push(entry_from_row(loc, row)?);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, sha256 FROM entry_bodies WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
            )
            .map_err(self.err("reading bodies"))?;
        let mut rows = stmt.query((from, to)).map_err(self.err("reading bodies"))?;
        while let Some(row) = rows.next().map_err(self.err("reading bodies"))? {
            let seq = to_u64(
                loc,
                "a body's seq",
                row.get(0).map_err(self.err("reading bodies"))?,
            )?;
            let sha = sha_from(loc, row.get(1).map_err(self.err("reading bodies"))?)?;
            if let Ok(i) = out.binary_search_by_key(&seq, |e| e.seq) {
                out[i].bodies.push(sha);
            }
        }
        Ok(out)
    }

    fn body(&self, sha256: &[u8; 32]) -> Result<Option<bytes::Bytes>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM bodies WHERE sha256 = ?1")
            .map_err(self.err("reading a body"))?;
        let data: Option<Vec<u8>> = stmt
            .query_row([&sha256[..]], |r| r.get(0))
            .optional()
            .map_err(self.err("reading a body"))?;
        Ok(data.map(bytes::Bytes::from))
    }

    fn expire_before(&mut self, cut: u64) -> Result<u64, StoreError> {
        self.writable()?;
        let location = self.location.as_str();
        let err = |doing: &'static str| move |e| sqlite_error(location, doing, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("starting retention"))?;
        let last: Option<i64> = tx
            .query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))
            .map_err(err("reading the tree size"))?;
        let Some(last) = last else {
            return Ok(0);
        };
        let cut = i64::try_from(cut).unwrap_or(i64::MAX).min(last);
        tx.execute("DELETE FROM entry_bodies WHERE seq < ?1", [cut])
            .map_err(err("removing expired bodies"))?;
        let removed = tx
            .execute("DELETE FROM entries WHERE seq < ?1", [cut])
            .map_err(err("removing expired entries"))?;
        tx.execute(
            "DELETE FROM bodies WHERE sha256 NOT IN (SELECT sha256 FROM entry_bodies)",
            [],
        )
        .map_err(err("removing expired bodies"))?;
        tx.commit().map_err(err("committing retention"))?;
        Ok(removed as u64)
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.writable()?;
        let size = sql_int(&self.location, "checkpoint size", size)?;
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO checkpoints (size, note) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute((size, note)))
            .map_err(self.err("storing a checkpoint"))?;
        Ok(())
    }

    fn checkpoints(
        &self,
        sizes: Range<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let loc = self.location.as_str();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_CHECKPOINTS_PER_READ) as i64;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, note FROM checkpoints WHERE size >= ?1 AND size < ?2 ORDER BY size, id LIMIT ?3")
            .map_err(self.err("reading checkpoints"))?;
        let mut rows = stmt
            .query((clamp(sizes.start), clamp(sizes.end), limit))
            .map_err(self.err("reading checkpoints"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("reading checkpoints"))? {
            out.push(StoredCheckpoint {
                size: to_u64(
                    loc,
                    "a checkpoint's size",
                    row.get(0).map_err(self.err("reading checkpoints"))?,
                )?,
                note: row.get(1).map_err(self.err("reading checkpoints"))?,
            });
        }
        Ok(out)
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT size, note FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(self.err("reading the latest checkpoint"))?;
        row.map(|(size, note)| {
            Ok(StoredCheckpoint {
                size: to_u64(&self.location, "a checkpoint's size", size)?,
                note,
            })
        })
        .transpose()
    }

    fn search(&self, q: &SearchQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let loc = self.location.as_str();
        let mut sql = String::from("SELECT seq, time_ns, entry FROM entries WHERE 1 = 1");
        let mut params: Vec<Value> = Vec::new();
        let columns = [
            ("kind", &q.kind),
            ("subject", &q.subject),
            ("target", &q.target),
            ("name", &q.name),
            ("decision", &q.decision),
            ("exchange", &q.exchange),
            ("session", &q.session),
        ];
        for (column, value) in columns {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                params.push(Value::Text(v.clone()));
            }
        }
        if let Some(since) = q.since_ns {
            sql.push_str(" AND time_ns >= ?");
            params.push(Value::Integer(since));
        }
        if let Some(until) = q.until_ns {
            sql.push_str(" AND time_ns < ?");
            params.push(Value::Integer(until));
        }
        if let Some(after) = q.after_seq {
            sql.push_str(" AND seq > ?");
            params.push(Value::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        params.push(Value::Integer(q.limit.min(MAX_SEARCH_LIMIT) as i64));
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("searching"))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(self.err("searching"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("searching"))? {
            out.push(entry_from_row(loc, row)?);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sha256 FROM entry_bodies WHERE seq = ?1")
            .map_err(self.err("reading bodies"))?;
        for e in &mut out {
            let mut rows = stmt
                .query([sql_int(loc, "seq", e.seq)?])
                .map_err(self.err("reading bodies"))?;
            while let Some(row) = rows.next().map_err(self.err("reading bodies"))? {
                e.bodies.push(sha_from(
                    loc,
                    row.get(0).map_err(self.err("reading bodies"))?,
                )?);
            }
        }
        Ok(out)
    }

    fn seq_range_for_time(
        &self,
        since_ns: Option<i64>,
        until_ns: Option<i64>,
    ) -> Result<Option<Range<u64>>, StoreError> {
        let (min, max): (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT MIN(seq), MAX(seq) FROM entries WHERE time_ns >= ?1 AND time_ns < ?2",
            )
            .and_then(|mut s| {
                s.query_row(
                    (since_ns.unwrap_or(i64::MIN), until_ns.unwrap_or(i64::MAX)),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .map_err(self.err("finding entries by time"))?;
        match (min, max) {
            (Some(min), Some(max)) => {
                let loc = &self.location;
                Ok(Some(
                    to_u64(loc, "seq", min)?..to_u64(loc, "seq", max)?.saturating_add(1),
                ))
            }
            _ => Ok(None),
        }
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(self.err("reading metadata"))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute((key, value)))
            .map_err(self.err("writing metadata"))?;
        Ok(())
    }

    fn init_meta(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        self.writable()?;
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute((key, value)))
            .map_err(self.err("writing metadata"))?;
        self.meta(key)?.ok_or_else(|| {
            StoreError::corrupt(
                &self.location,
                format!("metadata `{key}` vanished as it was written"),
            )
        })
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.conn = connect(&self.path, &self.location, self.durability, self.access)?;
        self.leave_checkpoints_to_checkpointer()
    }
}

#[cfg(test)]
mod tests;
