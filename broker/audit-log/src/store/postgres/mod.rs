//! The PostgreSQL backend: the log in tables of one schema, shared by
//! every broker replica that points at it. Each batch is one transaction
//! that locks the log's one coordination row (`log_state`), so replicas
//! take turns appending and sequence numbers are handed out once; inside
//! it, the whole batch goes in a handful of statements (arrays, `UNNEST`),
//! whatever its length. See README.md in this folder.

pub mod connect;
mod schema;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

pub use connect::PostgresTarget;
use postgres::types::ToSql;
use postgres::{Client, GenericClient};
use tlog_tiles::{stored_hash_count, Hash, HashReader};

use crate::entry::{sequence_batch, SequenceError};
use crate::store::{
    sql_int, to_u64, AuditStore, Durability, PendingEntry, SearchQuery, StoreError, StoreErrorKind,
    StoredCheckpoint, StoredEntry, MAX_CHECKPOINTS_PER_READ, MAX_ENTRIES_PER_READ,
    MAX_SEARCH_LIMIT,
};
use schema::pg_error;
pub use schema::{valid_schema_name, SCHEMA_NAME_RULE};

/// The schema the log's tables live in unless the config names another.
pub const DEFAULT_SCHEMA: &str = "hoop_audit";

/// Whether this store may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// The statements every batch runs, prepared once per connection: each
/// then costs one round trip to the server, not two (parse, then run).
struct Prepared {
    lock: postgres::Statement,
    hashes: postgres::Statement,
    write: postgres::Statement,
}

impl Prepared {
    fn on(client: &mut Client, location: &str) -> Result<Self, StoreError> {
        let err = |e| pg_error(location, "preparing the log's statements", e);
        Ok(Self {
            lock: client
                .prepare("SELECT size FROM log_state WHERE id = 1 FOR UPDATE")
                .map_err(err)?,
            hashes: client
                .prepare("SELECT idx, hash FROM hashes WHERE idx = ANY($1::bigint[])")
                .map_err(err)?,
            // The whole batch in one statement, whatever its length.
            write: client
                .prepare(
                    "WITH e AS (
                         INSERT INTO entries (seq, time_ns, kind, subject, target, name, decision, exchange, session, entry)
                         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[])),
                     b AS (
                         INSERT INTO bodies (sha256, data) SELECT * FROM UNNEST($11::bytea[], $12::bytea[])
                         ON CONFLICT (sha256) DO NOTHING),
                     l AS (
                         INSERT INTO entry_bodies (seq, sha256) SELECT * FROM UNNEST($13::bigint[], $11::bytea[])
                         ON CONFLICT (seq, sha256) DO NOTHING),
                     h AS (
                         INSERT INTO hashes (idx, hash) SELECT * FROM UNNEST($14::bigint[], $15::bytea[]))
                     UPDATE log_state SET size = $16 WHERE id = 1",
                )
                .map_err(err)?,
        })
    }
}

/// An audit log in a PostgreSQL schema.
pub struct PostgresStore {
    /// Prepared on the current connection (writers only).
    prepared: Option<Prepared>,
    /// Reads take `&self` in [`AuditStore`]; the client needs `&mut` for
    /// every query. One thread uses a store at a time (the trait is `Send`,
    /// not `Sync`), so a `RefCell` is all the sharing there is.
    client: RefCell<Client>,
    target: PostgresTarget,
    schema: String,
    location: String,
    durability: Durability,
    access: Access,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:5432/db`, or the key=value
    /// form), creates the log's tables in `schema` if they are not there,
    /// and checks the tree before anything is written.
    pub fn open(url: &str, schema: &str, durability: Durability) -> Result<Self, StoreError> {
        Self::connect(url, schema, durability, Access::ReadWrite)
    }

    /// Opens an existing log for reading beside the brokers that write it.
    /// Writes are refused (and the session is read-only in PostgreSQL too).
    pub fn open_read_only(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect(url, schema, Durability::Fsync, Access::ReadOnly)
    }

    fn connect(
        url: &str,
        schema: &str,
        durability: Durability,
        access: Access,
    ) -> Result<Self, StoreError> {
        let target: PostgresTarget = url.parse().map_err(|e| {
            StoreError::invalid(
                "PostgreSQL",
                format!("the store URL is not a PostgreSQL connection string ({e}): write postgres://USER@HOST:5432/DATABASE"),
            )
        })?;
        let location = describe(&target.config, schema);
        if !valid_schema_name(schema) {
            return Err(StoreError::invalid(
                location,
                format!("schema {schema:?}: {}", schema::SCHEMA_NAME_RULE),
            ));
        }
        let mut client = open_client(&target, schema, durability, access, &location)?;
        let prepared = match access {
            Access::ReadWrite => Some(Prepared::on(&mut client, &location)?),
            Access::ReadOnly => None,
        };
        let store = Self {
            prepared,
            client: RefCell::new(client),
            target,
            schema: schema.to_owned(),
            location,
            durability,
            access,
        };
        store.check_tree()?;
        Ok(store)
    }

    fn err(&self, doing: &'static str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| pg_error(&self.location, doing, e)
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::new(
                StoreErrorKind::ReadOnly,
                &self.location,
                "opened read-only (a reader beside the brokers): only a broker writes the log",
            )),
        }
    }

    /// The stored hashes must end where a tree of `log_state.size` ends,
    /// and the newest entry must be that tree's last.
    fn check_tree(&self) -> Result<u64, StoreError> {
        let loc = self.location.as_str();
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT (SELECT size FROM log_state WHERE id = 1),
                        (SELECT MAX(idx) FROM hashes),
                        (SELECT MAX(seq) FROM entries)",
                &[],
            )
            .map_err(self.err("checking the tree"))?;
        let size: Option<i64> = row.get(0);
        let max_idx: Option<i64> = row.get(1);
        let max_seq: Option<i64> = row.get(2);
        let size = to_u64(loc, "the tree size", size.unwrap_or(-1))?;
        let held = max_idx.map_or(0, |i| i.saturating_add(1) as u64);
        let want = stored_hash_count(size);
        if held != want {
            return Err(StoreError::corrupt(
                loc,
                format!(
                    "it holds {held} stored hashes but a tree of its {size} entries has {want}: the tables were changed outside hoop; keep the database for investigation, check it with `hoop-broker audit verify` and restore the log from backup"
                ),
            ));
        }
        let last = max_seq.map_or(0, |s| s.saturating_add(1) as u64);
        if last != size {
            return Err(StoreError::corrupt(
                loc,
                format!("the newest entry is seq {} but the log says it holds {size}: the tables were changed outside hoop", last.saturating_sub(1)),
            ));
        }
        Ok(size)
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
        let err = |doing: &'static str| move |e| pg_error(location, doing, e);
        let prepared = self
            .prepared
            .as_ref()
            .ok_or_else(|| StoreError::new(StoreErrorKind::ReadOnly, location, "not a writer"))?;
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(err("starting a write"))?;
        // The coordination row, locked until commit: a replica's batch
        // waits here for another's, then sees the size it left.
        let size: i64 = tx
            .query_one(&prepared.lock, &[])
            .and_then(|r| r.try_get(0))
            .map_err(err("locking the log"))?;
        let size = to_u64(location, "the tree size", size)?;
        let sequenced = {
            let hashes = TxHashes {
                tx: RefCell::new(&mut tx),
                statement: Some(&prepared.hashes),
                location,
                failure: RefCell::new(None),
            };
            sequence_batch(size, batch, &hashes).map_err(|e| match e {
                SequenceError::Tree(t) => {
                    hashes.failure.borrow_mut().take().unwrap_or_else(|| {
                        StoreError::corrupt(location, format!("tree hashes: {t}"))
                    })
                }
                other => StoreError::invalid(location, other.to_string()),
            })?
        };
        let n = sequenced.entries.len();
        let mut seqs = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut targets = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut decisions = Vec::with_capacity(n);
        let mut exchanges = Vec::with_capacity(n);
        let mut sessions = Vec::with_capacity(n);
        let mut entries: Vec<&[u8]> = Vec::with_capacity(n);
        let mut body_shas: Vec<&[u8]> = Vec::new();
        let mut body_data: Vec<&[u8]> = Vec::new();
        let mut link_seqs = Vec::new();
        for e in &sequenced.entries {
            let seq = sql_int(location, "seq", e.seq)?;
            let ix = &e.pending.index;
            seqs.push(seq);
            times.push(ix.time_ns);
            kinds.push(ix.kind.as_ref());
            subjects.push(ix.subject.as_deref());
            targets.push(ix.target.as_deref());
            names.push(ix.name.as_deref());
            decisions.push(ix.decision.as_deref());
            exchanges.push(ix.exchange.as_deref());
            sessions.push(ix.session.as_deref());
            entries.push(&e.entry);
            for (sha, data) in &e.pending.bodies {
                body_shas.push(&sha[..]);
                body_data.push(&data[..]);
                link_seqs.push(seq);
            }
        }
        let first = sequenced.first_hash_index;
        let mut idxs = Vec::with_capacity(sequenced.hashes.len());
        let mut hashes: Vec<&[u8]> = Vec::with_capacity(sequenced.hashes.len());
        for (i, h) in sequenced.hashes.iter().enumerate() {
            idxs.push(sql_int(location, "hash index", first + i as u64)?);
            hashes.push(&h.0[..]);
        }
        let new_size = sql_int(location, "tree size", sequenced.new_size)?;
        tx.execute(
            &prepared.write,
            &[
                &seqs, &times, &kinds, &subjects, &targets, &names, &decisions, &exchanges,
                &sessions, &entries, &body_shas, &body_data, &link_seqs, &idxs, &hashes, &new_size,
            ],
        )
        .map_err(err("writing the batch"))?;
        if let Some((key, value)) = mark {
            upsert_meta(&mut tx, key, value).map_err(err("writing metadata"))?;
        }
        tx.commit().map_err(err("committing a batch"))?;
        Ok(sequenced.new_size)
    }

    /// Test hook: the schema's name, to damage its tables as a bug or an
    /// intruder would.
    #[cfg(test)]
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }
}

/// `postgres://user@host:port/db (schema S)`: where the log is, never the
/// password.
pub fn describe(config: &postgres::Config, schema: &str) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db} (schema {schema})")
}

fn open_client(
    target: &PostgresTarget,
    schema: &str,
    durability: Durability,
    access: Access,
    location: &str,
) -> Result<Client, StoreError> {
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("hoop-broker audit log");
    }
    let mut client = target.connect_with(&config).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Io,
            location,
            format!("cannot connect: {e}; check that PostgreSQL runs there and accepts the broker (the URL, its role and password, pg_hba.conf)"),
        )
    })?;
    if access == Access::ReadWrite {
        schema::migrate(&mut client, schema, location)?;
    } else {
        schema::check_version(&mut client, schema, location)?;
    }
    // `on`: a commit returns once PostgreSQL has flushed it to its disk.
    // `off`: once PostgreSQL has it, flushed within a few hundred ms; it
    // survives a kill of the broker, not a crash of the database server.
    let synchronous = match durability {
        Durability::Fsync => "on",
        Durability::Os => "off",
    };
    let read_only = if access == Access::ReadOnly {
        "on"
    } else {
        "off"
    };
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET synchronous_commit TO {synchronous}; SET default_transaction_read_only TO {read_only};"
        ))
        .map_err(|e| pg_error(location, "setting up the session", e))?;
    Ok(client)
}

fn upsert_meta(c: &mut impl GenericClient, key: &str, value: &str) -> Result<u64, postgres::Error> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&key, &value],
    )
}

/// Exactly one stored hash per index asked, in the order asked, in one
/// round trip; or an error naming the first one missing.
fn read_hashes_from(
    c: &mut impl GenericClient,
    statement: Option<&postgres::Statement>,
    location: &str,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let mut asked = Vec::with_capacity(indexes.len());
    for &i in indexes {
        asked.push(i64::try_from(i).map_err(|_| {
            StoreError::corrupt(location, format!("stored hash {i} is beyond any tree"))
        })?);
    }
    let rows = match statement {
        Some(s) => c.query(s, &[&asked]),
        None => c.query(
            "SELECT idx, hash FROM hashes WHERE idx = ANY($1::bigint[])",
            &[&asked],
        ),
    }
    .map_err(|e| pg_error(location, "reading stored hashes", e))?;
    let mut found: HashMap<i64, Hash> = HashMap::with_capacity(rows.len());
    for row in rows {
        let idx: i64 = row.get(0);
        let hash: &[u8] = row.get(1);
        let hash: [u8; 32] = hash.try_into().map_err(|_| {
            StoreError::corrupt(location, format!("stored hash {idx} is not 32 bytes"))
        })?;
        found.insert(idx, Hash(hash));
    }
    asked
        .iter()
        .map(|i| {
            found.get(i).copied().ok_or_else(|| {
                StoreError::corrupt(
                    location,
                    format!(
                        "stored hash {i} is missing: check the log with `hoop-broker audit verify`"
                    ),
                )
            })
        })
        .collect()
}

/// The hashes of an open transaction, as tlog reads them.
struct TxHashes<'t, 'c> {
    tx: RefCell<&'t mut postgres::Transaction<'c>>,
    statement: Option<&'t postgres::Statement>,
    location: &'t str,
    failure: RefCell<Option<StoreError>>,
}

impl HashReader for TxHashes<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut tx = self.tx.borrow_mut();
        read_hashes_from(&mut **tx, self.statement, self.location, indexes).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            tlog_tiles::Error::IndexesNotInTree
        })
    }
}

fn entry_from_row(location: &str, row: &postgres::Row) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        seq: to_u64(location, "an entry's seq", row.get(0))?,
        time_ns: row.get(1),
        entry: row.get(2),
        bodies: Vec::new(),
    })
}

fn sha_from(location: &str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(location, "a body's SHA-256 is not 32 bytes"))
}

impl AuditStore for PostgresStore {
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
        // One commit with synchronous_commit on flushes PostgreSQL's WAL up
        // to it, and with it every asynchronous commit before.
        self.writable()?;
        let size = self.tree_size()?.to_string();
        let location = self.location.as_str();
        let err = |e| pg_error(location, "syncing the log", e);
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(err)?;
        tx.batch_execute("SET LOCAL synchronous_commit TO on")
            .map_err(err)?;
        upsert_meta(&mut tx, "synced_at_size", &size).map_err(err)?;
        tx.commit().map_err(err)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        let size: i64 = self
            .client
            .borrow_mut()
            .query_one("SELECT size FROM log_state WHERE id = 1", &[])
            .and_then(|r| r.try_get(0))
            .map_err(self.err("reading the tree size"))?;
        to_u64(&self.location, "the tree size", size)
    }

    fn first_seq(&self) -> Result<u64, StoreError> {
        let min: Option<i64> = self
            .client
            .borrow_mut()
            .query_one("SELECT MIN(seq) FROM entries", &[])
            .and_then(|r| r.try_get(0))
            .map_err(self.err("reading the first entry"))?;
        match min {
            Some(seq) => to_u64(&self.location, "the first seq", seq),
            None => self.tree_size(),
        }
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes_from(
            &mut *self.client.borrow_mut(),
            None,
            &self.location,
            indexes,
        )
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
        let mut client = self.client.borrow_mut();
        let rows = client
            .query(
                "SELECT seq, time_ns, entry FROM entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                &[&from, &to],
            )
            .map_err(self.err("reading entries"))?;
        let mut out = rows
            .iter()
            .map(|r| entry_from_row(loc, r))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = client
            .query(
                "SELECT seq, sha256 FROM entry_bodies WHERE seq >= $1 AND seq < $2 ORDER BY seq, sha256",
                &[&from, &to],
            )
            .map_err(self.err("reading bodies"))?;
        for row in rows {
            let seq = to_u64(loc, "a body's seq", row.get(0))?;
            let sha = sha_from(loc, row.get(1))?;
            if let Ok(i) = out.binary_search_by_key(&seq, |e| e.seq) {
                out[i].bodies.push(sha);
            }
        }
        Ok(out)
    }

    fn body(&self, sha256: &[u8; 32]) -> Result<Option<bytes::Bytes>, StoreError> {
        let row = self
            .client
            .borrow_mut()
            .query_opt("SELECT data FROM bodies WHERE sha256 = $1", &[&&sha256[..]])
            .map_err(self.err("reading a body"))?;
        Ok(row.map(|r| bytes::Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.writable()?;
        let size = sql_int(&self.location, "checkpoint size", size)?;
        self.client
            .get_mut()
            .execute(
                "INSERT INTO checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size, note) DO NOTHING",
                &[&size, &note],
            )
            .map_err(|e| pg_error(&self.location, "storing a checkpoint", e))?;
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
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT size, note FROM checkpoints WHERE size >= $1 AND size < $2 ORDER BY size, id LIMIT $3",
                &[&clamp(sizes.start), &clamp(sizes.end), &limit],
            )
            .map_err(self.err("reading checkpoints"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    size: to_u64(loc, "a checkpoint's size", r.get(0))?,
                    note: r.get(1),
                })
            })
            .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT size, note FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1",
                &[],
            )
            .map_err(self.err("reading the latest checkpoint"))?;
        row.map(|r| {
            Ok(StoredCheckpoint {
                size: to_u64(&self.location, "a checkpoint's size", r.get(0))?,
                note: r.get(1),
            })
        })
        .transpose()
    }

    fn search(&self, q: &SearchQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let loc = self.location.as_str();
        let mut sql = String::from("SELECT seq, time_ns, entry FROM entries WHERE TRUE");
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
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
                params.push(Box::new(v.clone()));
                sql.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        if let Some(since) = q.since_ns {
            params.push(Box::new(since));
            sql.push_str(&format!(" AND time_ns >= ${}", params.len()));
        }
        if let Some(until) = q.until_ns {
            params.push(Box::new(until));
            sql.push_str(&format!(" AND time_ns < ${}", params.len()));
        }
        if let Some(after) = q.after_seq {
            params.push(Box::new(i64::try_from(after).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" AND seq > ${}", params.len()));
        }
        params.push(Box::new(q.limit.min(MAX_SEARCH_LIMIT) as i64));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut client = self.client.borrow_mut();
        let rows = client.query(&sql, &refs).map_err(self.err("searching"))?;
        let mut out = rows
            .iter()
            .map(|r| entry_from_row(loc, r))
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        let seqs = out
            .iter()
            .map(|e| sql_int(loc, "seq", e.seq))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = client
            .query(
                "SELECT seq, sha256 FROM entry_bodies WHERE seq = ANY($1::bigint[]) ORDER BY seq, sha256",
                &[&seqs],
            )
            .map_err(self.err("reading bodies"))?;
        for row in rows {
            let seq = to_u64(loc, "a body's seq", row.get(0))?;
            if let Ok(i) = out.binary_search_by_key(&seq, |e| e.seq) {
                out[i].bodies.push(sha_from(loc, row.get(1))?);
            }
        }
        Ok(out)
    }

    fn seq_range_for_time(
        &self,
        since_ns: Option<i64>,
        until_ns: Option<i64>,
    ) -> Result<Option<Range<u64>>, StoreError> {
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT MIN(seq), MAX(seq) FROM entries WHERE time_ns >= $1 AND time_ns < $2",
                &[&since_ns.unwrap_or(i64::MIN), &until_ns.unwrap_or(i64::MAX)],
            )
            .map_err(self.err("finding entries by time"))?;
        let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
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
        Ok(self
            .client
            .borrow_mut()
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .map_err(self.err("reading metadata"))?
            .map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.writable()?;
        upsert_meta(self.client.get_mut(), key, value)
            .map_err(|e| pg_error(&self.location, "writing metadata", e))?;
        Ok(())
    }

    fn init_meta(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        self.writable()?;
        self.client
            .get_mut()
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .map_err(|e| pg_error(&self.location, "writing metadata", e))?;
        self.meta(key)?.ok_or_else(|| {
            StoreError::corrupt(
                &self.location,
                format!("metadata `{key}` vanished as it was written"),
            )
        })
    }

    fn expire_before(&mut self, cut: u64) -> Result<u64, StoreError> {
        self.writable()?;
        let location = self.location.as_str();
        let err = |doing: &'static str| move |e| pg_error(location, doing, e);
        let mut tx = self
            .client
            .get_mut()
            .transaction()
            .map_err(err("starting retention"))?;
        let last: Option<i64> = tx
            .query_one("SELECT MAX(seq) FROM entries", &[])
            .and_then(|r| r.try_get(0))
            .map_err(err("reading the tree size"))?;
        let Some(last) = last else {
            return Ok(0);
        };
        let cut = i64::try_from(cut).unwrap_or(i64::MAX).min(last);
        tx.execute("DELETE FROM entry_bodies WHERE seq < $1", &[&cut])
            .map_err(err("removing expired bodies"))?;
        let removed = tx
            .execute("DELETE FROM entries WHERE seq < $1", &[&cut])
            .map_err(err("removing expired entries"))?;
        tx.execute(
            "DELETE FROM bodies b WHERE NOT EXISTS (SELECT 1 FROM entry_bodies l WHERE l.sha256 = b.sha256)",
            &[],
        )
        .map_err(err("removing expired bodies"))?;
        tx.commit().map_err(err("committing retention"))?;
        Ok(removed)
    }

    fn take_signing_lease(
        &mut self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        // Taken when free or lapsed, renewed by its holder; one statement,
        // so two replicas asking at once cannot both get it.
        let row = self
            .client
            .get_mut()
            .query_opt(
                "INSERT INTO lease (name, holder, expires_at)
                 VALUES ('checkpoints', $1, now() + $2 * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                 WHERE lease.holder = EXCLUDED.holder OR lease.expires_at < now()
                 RETURNING holder",
                &[&holder, &(ms as f64)],
            )
            .map_err(|e| pg_error(&self.location, "taking the checkpoint lease", e))?;
        Ok(row.is_some())
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        let client = open_client(
            &self.target,
            &self.schema,
            self.durability,
            self.access,
            &self.location,
        )?;
        *self.client.get_mut() = client;
        if self.access == Access::ReadWrite {
            self.prepared = Some(Prepared::on(self.client.get_mut(), &self.location)?);
        }
        self.check_tree().map(|_| ())
    }
}

#[cfg(test)]
mod tests;
