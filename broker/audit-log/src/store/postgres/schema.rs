//! The log's tables in their PostgreSQL schema, the migrations that make
//! them (serialised across replicas by an advisory lock), and how
//! PostgreSQL's errors read to a person.

use postgres::error::SqlState;
use postgres::Client;

use crate::store::{StoreError, StoreErrorKind};

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// Version 1, the same layout as the SQLite file (store/sqlite/schema.rs)
/// plus `log_state`: the one coordination row every batch locks, so
/// replicas writing one log take turns and no two hand out a `seq`.
const SCHEMA_V1: &str = "
CREATE TABLE log_state (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL CHECK (size >= 0)
);
INSERT INTO log_state (id, size) VALUES (1, 0);
CREATE TABLE entries (
    seq      BIGINT PRIMARY KEY,
    time_ns  BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    subject  TEXT,
    target   TEXT,
    name     TEXT,
    decision TEXT,
    exchange TEXT,
    session  TEXT,
    entry    BYTEA NOT NULL
);
CREATE INDEX entries_time ON entries (time_ns);
CREATE INDEX entries_kind ON entries (kind, seq);
CREATE INDEX entries_subject ON entries (subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX entries_target ON entries (target, seq) WHERE target IS NOT NULL;
CREATE INDEX entries_name ON entries (name, seq) WHERE name IS NOT NULL;
CREATE INDEX entries_exchange ON entries (exchange, seq) WHERE exchange IS NOT NULL;
CREATE INDEX entries_session ON entries (session, seq) WHERE session IS NOT NULL;
CREATE TABLE hashes (
    idx  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);
CREATE TABLE bodies (
    sha256 BYTEA PRIMARY KEY,
    data   BYTEA NOT NULL
);
CREATE TABLE entry_bodies (
    seq    BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    PRIMARY KEY (seq, sha256)
);
CREATE INDEX entry_bodies_sha256 ON entry_bodies (sha256);
CREATE TABLE checkpoints (
    id   BIGSERIAL PRIMARY KEY,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    UNIQUE (size, note)
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Version 2: the lease one replica holds to sign the regular checkpoints.
const SCHEMA_V2: &str = "
CREATE TABLE lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
";

/// Keys `pg_advisory_xact_lock` takes while a schema is set up, so two
/// replicas starting at once do not both create it: "hoop" and "audit" in
/// ASCII.
const MIGRATION_LOCK: (i32, i32) = (0x686f_6f70, 0x6175_6469);

/// A PostgreSQL schema name hoop accepts: lower-case letters, digits and
/// `_`, not starting with a digit, at most 63 bytes. It goes into SQL as
/// an identifier, so nothing else is let through.
/// What [`valid_schema_name`] asks, for the error that refuses a name.
pub const SCHEMA_NAME_RULE: &str =
    "use lower-case letters, digits and _, not starting with a digit, at most 63 (e.g. hoop)";

pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Creates the schema and its tables, or brings them to
/// [`SCHEMA_VERSION`], in one transaction under the migration lock.
pub fn migrate(client: &mut Client, schema: &str, location: &str) -> Result<(), StoreError> {
    let err = |doing: &'static str| move |e| pg_error(location, doing, e);
    let mut tx = client
        .transaction()
        .map_err(err("starting to set up the tables"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
    )
    .map_err(err("taking the set-up lock"))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (version BIGINT NOT NULL);"
    ))
    .map_err(err("creating the schema"))?;
    let version: Option<i64> = tx
        .query_opt(
            &format!("SELECT MAX(version) FROM {schema}.schema_version"),
            &[],
        )
        .map_err(err("reading the schema version"))?
        .and_then(|r| r.get(0));
    match version.unwrap_or(0) {
        have @ 0..SCHEMA_VERSION => {
            let steps = [SCHEMA_V1, SCHEMA_V2];
            for (i, step) in steps.iter().enumerate().skip(have as usize) {
                tx.batch_execute(&format!("SET LOCAL search_path TO {schema};{step}"))
                    .map_err(err("creating the tables"))?;
                tx.execute(
                    &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
                    &[&(i as i64 + 1)],
                )
                .map_err(err("setting the schema version"))?;
            }
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

/// For a reader: the tables must be there already, and ours.
pub fn check_version(client: &mut Client, schema: &str, location: &str) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'schema_version')",
            &[&schema],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(location, "reading the schema version", e))?;
    if !exists {
        return Err(StoreError::corrupt(
            location,
            "not an audit log (no tables yet): the broker creates them on its first start; check the URL and the schema",
        ));
    }
    let version: Option<i64> = client
        .query_one(
            &format!("SELECT MAX(version) FROM {schema}.schema_version"),
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(location, "reading the schema version", e))?;
    match version.unwrap_or(0) {
        SCHEMA_VERSION => Ok(()),
        newer if newer > SCHEMA_VERSION => Err(newer_version(location, newer)),
        other => Err(StoreError::corrupt(
            location,
            format!("schema version {other} is not one hoop ever wrote"),
        )),
    }
}

fn newer_version(location: &str, version: i64) -> StoreError {
    StoreError::newer_schema(location, version, SCHEMA_VERSION)
}

/// A PostgreSQL error as a [`StoreError`]: the kind the writer acts on and
/// what a person can do, `doing` saying what the store was at.
pub fn pg_error(location: &str, doing: &str, e: postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // No SQLSTATE: the connection itself failed or is gone.
        let advice = if e.is_closed() {
            "the connection to PostgreSQL was lost; the broker reconnects"
        } else {
            "check that PostgreSQL runs there and accepts the broker's connections (the URL, pg_hba.conf)"
        };
        return StoreError::new(
            StoreErrorKind::Io,
            location,
            format!("{doing}: {e}; {advice}"),
        );
    };
    let code = db.code();
    let (kind, advice) = if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
        (
            StoreErrorKind::DiskFull,
            "PostgreSQL is out of space: free some on its disk; writing resumes by itself",
        )
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        (
            StoreErrorKind::ReadOnly,
            "this server is read-only (a standby?): point the broker at the primary",
        )
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        (
            StoreErrorKind::ReadOnly,
            "the broker's database role may not write here: grant it the schema",
        )
    } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
    {
        (
            StoreErrorKind::Busy,
            "another writer held the lock; the batch is retried",
        )
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        (
            StoreErrorKind::Corrupt,
            "PostgreSQL reports damaged data: keep the database for investigation and restore from backup",
        )
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || code.code().starts_with("08")
    {
        (
            StoreErrorKind::Io,
            "PostgreSQL is shutting down or restarting; the broker reconnects",
        )
    } else {
        (StoreErrorKind::Other, "")
    };
    let said = format!("{} ({})", db.message(), code.code());
    let detail = if advice.is_empty() {
        format!("{doing}: {said}")
    } else {
        format!("{doing}: {said}; {advice}")
    };
    StoreError::new(kind, location, detail)
}

#[cfg(test)]
mod tests {
    use super::valid_schema_name;

    #[test]
    fn only_plain_identifiers_name_a_schema() {
        assert!(valid_schema_name("hoop_audit"));
        assert!(valid_schema_name("a1"));
        for bad in [
            "",
            "1a",
            "Hoop",
            "a-b",
            "a;drop",
            "a b",
            "\"x\"",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema_name(bad), "{bad:?}");
        }
    }
}
