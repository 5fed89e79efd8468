//! The broker's own store: revocations, accepted tool definitions,
//! approval requests, held tasks and (for replicas) the handles upstreams
//! minted (the audit log has a store of its
//! own). Two backends behind one set of queries (`sql.rs`):
//!
//! - SQLite, the embedded default: one file, opened by the running broker
//!   and by the admin commands (`hoop-broker revoke`), which talk to the
//!   broker through it;
//! - PostgreSQL, for several broker replicas sharing one truth
//!   (`store = { postgres = "postgres://…" }`), in a schema of its own.
//!
//! A revocation or an accepted tool definition committed by an admin
//! command (against any replica's store) bumps a counter the brokers'
//! watchers poll, so it takes effect within a fraction of a second; on
//! PostgreSQL the commit also notifies every broker at once (`changes.rs`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use handles::StoredHandle;
use hoop_audit_log::store::postgres::PostgresTarget;
use sql::{Db, Row};

mod approvals;
pub mod changes;
mod handles;
pub mod sql;
#[cfg(test)]
mod tests;

/// SQLite's schema migrations, applied in order (`PRAGMA user_version`);
/// the index is the version reached.
const SQLITE_MIGRATIONS: &[&str] = &[
    "CREATE TABLE revocation (
        id          INTEGER PRIMARY KEY,
        subject     TEXT NOT NULL,
        issuer      TEXT,               -- NULL: every issuer
        reason      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,   -- unix seconds
        expires_at  INTEGER,            -- NULL: until lifted
        lifted_at   INTEGER,
        created_by  TEXT NOT NULL
    );
    CREATE INDEX revocation_subject ON revocation(subject);",
    "CREATE TABLE tool_baseline (
        target      TEXT NOT NULL,
        tool        TEXT NOT NULL,
        hash        TEXT NOT NULL,      -- tool definition hash (pipeline/drift.rs)
        accepted_at INTEGER NOT NULL,
        accepted_by TEXT NOT NULL,
        PRIMARY KEY (target, tool)
    );
    CREATE TABLE tool_seen (
        target      TEXT NOT NULL,
        tool        TEXT NOT NULL,
        hash        TEXT NOT NULL,      -- the latest definition the upstream listed
        seen_at     INTEGER NOT NULL,
        PRIMARY KEY (target, tool)
    );",
    // One row per approval request (broker/src/approval): its state and
    // binding as columns to find it by, the whole request as JSON.
    "CREATE TABLE approval (
        id          INTEGER PRIMARY KEY,
        state       TEXT NOT NULL,      -- pending|approved|denied|expired|cancelled|released
        binding     TEXT NOT NULL,      -- approval::Binding::key()
        created_at  INTEGER NOT NULL,   -- unix seconds
        expires_at  INTEGER NOT NULL,
        body        TEXT NOT NULL       -- approval::ApprovalRequest as JSON
    );
    CREATE INDEX approval_open ON approval(state) WHERE state IN ('pending', 'approved');",
    // The broker's own tasks for held calls (pipeline/held_task.rs): what
    // it needs to run the call after a restart, and the task's state.
    "CREATE TABLE approval_task (
        id          TEXT PRIMARY KEY,
        approval    INTEGER NOT NULL,
        status      TEXT NOT NULL,      -- working|completed|failed|cancelled
        changed_at  INTEGER NOT NULL,   -- unix seconds
        body        TEXT NOT NULL       -- held_task::StoredTask as JSON
    );",
    // Change counters the brokers poll (`admin`: revocations, accepted
    // tool definitions).
    "CREATE TABLE store_state (
        key         TEXT PRIMARY KEY,
        version     INTEGER NOT NULL
    );",
    // Task ids and request states upstreams minted, and whom for
    // (pipeline/handles): read by replicas sharing a PostgreSQL store.
    "CREATE TABLE handle (
        key         TEXT PRIMARY KEY,   -- handles::Key::stored()
        subject     TEXT NOT NULL,
        issuer      TEXT NOT NULL,
        origin      TEXT NOT NULL,      -- handles::Origin as JSON
        expires_at  INTEGER NOT NULL,   -- unix seconds
        poisoned    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX handle_expiry ON handle(expires_at);",
];

/// PostgreSQL's schema, the same tables as SQLite's after all of its
/// migrations; later changes append here and to the SQLite list alike.
const POSTGRES_MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE revocation (
        id          BIGSERIAL PRIMARY KEY,
        subject     TEXT NOT NULL,
        issuer      TEXT,
        reason      TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT,
        lifted_at   BIGINT,
        created_by  TEXT NOT NULL
    );
    CREATE INDEX revocation_subject ON revocation(subject);
    CREATE TABLE tool_baseline (
        target      TEXT NOT NULL,
        tool        TEXT NOT NULL,
        hash        TEXT NOT NULL,
        accepted_at BIGINT NOT NULL,
        accepted_by TEXT NOT NULL,
        PRIMARY KEY (target, tool)
    );
    CREATE TABLE tool_seen (
        target      TEXT NOT NULL,
        tool        TEXT NOT NULL,
        hash        TEXT NOT NULL,
        seen_at     BIGINT NOT NULL,
        PRIMARY KEY (target, tool)
    );
    CREATE TABLE approval (
        id          BIGINT PRIMARY KEY,
        state       TEXT NOT NULL,
        binding     TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        body        TEXT NOT NULL
    );
    CREATE INDEX approval_open ON approval(state) WHERE state IN ('pending', 'approved');
    CREATE TABLE approval_task (
        id          TEXT PRIMARY KEY,
        approval    BIGINT NOT NULL,
        status      TEXT NOT NULL,
        changed_at  BIGINT NOT NULL,
        body        TEXT NOT NULL
    );
    CREATE TABLE store_state (
        key         TEXT PRIMARY KEY,
        version     BIGINT NOT NULL
    );
",
    "
    CREATE TABLE handle (
        key         TEXT PRIMARY KEY,
        subject     TEXT NOT NULL,
        issuer      TEXT NOT NULL,
        origin      TEXT NOT NULL,
        expires_at  BIGINT NOT NULL,
        poisoned    BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX handle_expiry ON handle(expires_at);
",
];

/// The schema the broker store's tables live in on PostgreSQL unless the
/// config names another (the audit log has `hoop_audit`).
pub const DEFAULT_POSTGRES_SCHEMA: &str = "hoop";

/// Where the broker store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// One SQLite file (created 0600).
    Sqlite(PathBuf),
    /// A schema in a PostgreSQL database, shared by every replica.
    Postgres { url: String, schema: String },
}

impl StoreLocation {
    /// Whether other brokers may share this store (PostgreSQL): changes
    /// are then taken under row locks and announced, handles shared.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

/// `store = "/var/lib/hoop/broker.db"` or `store = { postgres =
/// "postgres://hoop@db:5432/hoop", schema = "hoop" }` in the config.
impl<'de> serde::Deserialize<'de> for StoreLocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Postgres {
            postgres: String,
            #[serde(default)]
            schema: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(
            untagged,
            expecting = "a file path, or { postgres = \"postgres://USER@HOST:5432/DB\", schema = \"hoop\" }"
        )]
        enum Spec {
            Path(PathBuf),
            Postgres(Postgres),
        }
        Ok(match Spec::deserialize(d)? {
            Spec::Path(p) => Self::Sqlite(p),
            Spec::Postgres(p) => {
                let schema = p.schema.unwrap_or_else(|| DEFAULT_POSTGRES_SCHEMA.into());
                if !hoop_audit_log::store::postgres::valid_schema_name(&schema) {
                    return Err(serde::de::Error::custom(format!(
                        "store schema {schema:?}: {}",
                        hoop_audit_log::store::postgres::SCHEMA_NAME_RULE
                    )));
                }
                Self::Postgres {
                    url: p.postgres,
                    schema,
                }
            }
        })
    }
}

impl StoreLocation {
    /// The file, for SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres { .. } => None,
        }
    }
}

impl std::fmt::Display for StoreLocation {
    /// The file, or `postgres://user@host:port/db (schema S)`: never a
    /// password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres { url, schema } => match url.parse::<PostgresTarget>() {
                Ok(t) => f.write_str(&hoop_audit_log::store::postgres::describe(
                    &t.config, schema,
                )),
                Err(_) => write!(f, "PostgreSQL (an unreadable URL; schema {schema})"),
            },
        }
    }
}

/// The database behind one open store.
enum Backend {
    Sqlite(sql::Sqlite),
    Postgres(sql::Postgres),
}

impl Backend {
    fn db(&mut self) -> &mut dyn Db {
        match self {
            Self::Sqlite(d) => d,
            Self::Postgres(d) => d,
        }
    }
}

/// PostgreSQL connections kept between uses, per URL and schema: the
/// store is opened for each change (as the SQLite file is), and a new
/// connection costs a TCP and authentication round trip each time.
static POSTGRES_POOL: Mutex<Option<Pool>> = Mutex::new(None);
/// Idle connections by (URL, schema).
type Pool = HashMap<(String, String), Vec<postgres::Client>>;
/// Connections a location keeps idle at most.
const POOL_IDLE: usize = 8;
/// Locations whose schema this process already brought up to date.
static POSTGRES_MIGRATED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// An open store. Not `Sync`: each thread or task that needs one opens its own.
pub struct BrokerStore {
    /// Always `Some` while the store is open; taken when it is dropped, to
    /// give a PostgreSQL connection back to the pool.
    backend: RefCell<Option<Backend>>,
    location: StoreLocation,
}

impl Drop for BrokerStore {
    fn drop(&mut self) {
        let StoreLocation::Postgres { url, schema } = &self.location else {
            return;
        };
        let Some(Backend::Postgres(sql::Postgres(client))) = self.backend.get_mut().take() else {
            return;
        };
        // A panic may have left a transaction (and its row locks) open on
        // it: such a connection is closed, not handed to the next user.
        if std::thread::panicking() {
            return;
        }
        if client.is_closed() {
            return;
        }
        let mut pool = POSTGRES_POOL.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool
            .get_or_insert_with(HashMap::new)
            .entry((url.clone(), schema.clone()))
            .or_default();
        if idle.len() < POOL_IDLE {
            idle.push(client);
        }
    }
}

/// One revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    pub id: i64,
    pub subject: String,
    pub issuer: Option<String>,
    pub reason: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub lifted_at: Option<u64>,
    pub created_by: String,
}

impl Revocation {
    /// In force at `now`: not lifted and not expired.
    pub fn active(&self, now: u64) -> bool {
        self.lifted_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// Applies to this subject from this issuer.
    pub fn covers(&self, subject: &str, issuer: &str) -> bool {
        self.subject == subject && self.issuer.as_deref().is_none_or(|i| i == issuer)
    }
}

/// A new revocation to record.
pub struct NewRevocation<'a> {
    pub subject: &'a str,
    pub issuer: Option<&'a str>,
    pub reason: &'a str,
    pub expires_at: Option<u64>,
    pub created_by: &'a str,
}

impl BrokerStore {
    /// Opens a store that must exist already: the admin commands, which
    /// would otherwise write a revocation to a new file no broker reads.
    pub fn open_existing(location: &StoreLocation) -> anyhow::Result<Self> {
        if let StoreLocation::Sqlite(path) = location {
            if !path.exists() {
                anyhow::bail!(
                    "no broker store at {}: the broker creates it when it starts; point at the broker's own with --config FILE (its `store`) or --store FILE",
                    path.display()
                );
            }
        }
        Self::open(location)
    }

    /// Opens (creating, 0600, and migrating) the store.
    pub fn open(location: &StoreLocation) -> anyhow::Result<Self> {
        let backend = match location {
            StoreLocation::Sqlite(path) => Backend::Sqlite(open_sqlite(path)?),
            StoreLocation::Postgres { url, schema } => {
                Backend::Postgres(open_postgres(url, schema, location)?)
            }
        };
        Ok(Self {
            backend: RefCell::new(Some(backend)),
            location: location.clone(),
        })
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Runs `f` against the database.
    fn with<T>(&self, f: impl FnOnce(&mut dyn Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut backend = self.backend.borrow_mut();
        let db = backend
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the broker store {} is closed", self.location))?;
        f(db.db())
    }

    /// Runs `f` in one transaction: all of it, or none of it.
    fn in_tx<T>(&self, f: impl FnOnce(&mut dyn Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.with(|db| {
            db.batch("BEGIN")?;
            match f(db) {
                Ok(v) => {
                    db.batch("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = db.batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    /// The change counter of `topic`: it changes whenever any process
    /// or replica commits a change of that kind (admin: a revocation
    /// added or lifted, a tool definition accepted; approvals: a request
    /// saved or released). What the brokers' watchers poll.
    pub fn version(&self, topic: changes::Topic) -> anyhow::Result<i64> {
        self.with(|db| {
            Ok(db
                .query_opt(
                    "SELECT version FROM store_state WHERE key = $1",
                    &[topic.key().into()],
                )?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0))
        })
    }

    pub fn add_revocation(&self, r: &NewRevocation<'_>, now: u64) -> anyhow::Result<Revocation> {
        let id = self.in_tx(|db| {
            let row = db
                .query_opt(
                    "INSERT INTO revocation (subject, issuer, reason, created_at, expires_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        r.subject.into(),
                        r.issuer.into(),
                        r.reason.into(),
                        now.into(),
                        r.expires_at.into(),
                        r.created_by.into(),
                    ],
                )?
                .ok_or_else(|| anyhow::anyhow!("the revocation was not stored"))?;
            bump_version(db, changes::Topic::Admin)?;
            row.int(0)
        })?;
        self.revocation(id)?
            .ok_or_else(|| anyhow::anyhow!("revocation {id} vanished after insert"))
    }

    /// Lifts a revocation; `false` when there is no such active one.
    pub fn lift_revocation(&self, id: i64, now: u64) -> anyhow::Result<bool> {
        self.in_tx(|db| {
            let n = db.execute(
                "UPDATE revocation SET lifted_at = $2 WHERE id = $1 AND lifted_at IS NULL",
                &[id.into(), now.into()],
            )?;
            if n == 1 {
                bump_version(db, changes::Topic::Admin)?;
            }
            Ok(n == 1)
        })
    }

    pub fn revocation(&self, id: i64) -> anyhow::Result<Option<Revocation>> {
        self.with(|db| {
            db.query_opt(
                &format!("SELECT {COLUMNS} FROM revocation WHERE id = $1"),
                &[id.into()],
            )?
            .map(|r| row_to_revocation(&r))
            .transpose()
        })
    }

    /// Every revocation, newest first; only those in force unless `all`.
    pub fn revocations(&self, all: bool, now: u64) -> anyhow::Result<Vec<Revocation>> {
        let rows = self.with(|db| {
            db.query(
                &format!("SELECT {COLUMNS} FROM revocation ORDER BY id DESC"),
                &[],
            )
        })?;
        let mut out = Vec::new();
        for row in rows {
            let r = row_to_revocation(&row)?;
            if all || r.active(now) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// Counts a change to `topic` and tells the other brokers (at commit).
fn bump_version(db: &mut dyn Db, topic: changes::Topic) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO store_state (key, version) VALUES ($1, 1)
         ON CONFLICT (key) DO UPDATE SET version = store_state.version + 1",
        &[topic.key().into()],
    )?;
    db.announce(topic.key())
}

fn open_sqlite(path: &Path) -> anyhow::Result<sql::Sqlite> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the store's directory {}: {e}", dir.display())
        })?;
    }
    if !path.exists() {
        create_private(path)?;
    }
    let mut conn = rusqlite::Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the broker store {}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets `revoke` write while the broker reads.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let have: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?
        .try_into()
        .unwrap_or(0);
    if have > SQLITE_MIGRATIONS.len() {
        anyhow::bail!(
            "the broker store {} was written by a newer hoop-broker (schema {have}, this one knows {}); upgrade hoop-broker",
            path.display(),
            SQLITE_MIGRATIONS.len()
        );
    }
    for (i, sql) in SQLITE_MIGRATIONS.iter().enumerate().skip(have) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(sql::Sqlite(conn))
}

/// A pooled connection, or a new one (migrating the schema the first time
/// this process meets it).
fn open_postgres(
    url: &str,
    schema: &str,
    location: &StoreLocation,
) -> anyhow::Result<sql::Postgres> {
    if !hoop_audit_log::store::postgres::valid_schema_name(schema) {
        anyhow::bail!(
            "store schema {schema:?}: {}",
            hoop_audit_log::store::postgres::SCHEMA_NAME_RULE
        );
    }
    let key = (url.to_owned(), schema.to_owned());
    let pooled = POSTGRES_POOL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .and_then(|pool| pool.get_mut(&key))
        .and_then(Vec::pop);
    if let Some(client) = pooled.filter(|c| !c.is_closed()) {
        return Ok(sql::Postgres(client));
    }
    let mut client = connect_postgres(url, location)?;
    let migrated = POSTGRES_MIGRATED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|m| m.contains(&key));
    if !migrated {
        migrate_postgres(&mut client, schema, location)?;
        POSTGRES_MIGRATED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(key);
    }
    client.batch_execute(&format!("SET search_path TO {schema}"))?;
    Ok(sql::Postgres(client))
}

/// A new connection to the store's database (not yet in its schema), TLS
/// when the URL asks for it (`sslmode=require`, `sslrootcert=FILE`: see
/// `hoop_audit_log::store::postgres::connect`).
fn connect_postgres(url: &str, location: &StoreLocation) -> anyhow::Result<postgres::Client> {
    let target: PostgresTarget = url.parse().map_err(|e| {
        anyhow::anyhow!("the store URL is not a PostgreSQL connection string ({e}): write postgres://USER@HOST:5432/DATABASE")
    })?;
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("hoop-broker");
    }
    // A database that went silent (its host or the network gone) is
    // noticed in about half a minute, not at the OS's two hours: the
    // listening connection reconnects, a locked change fails.
    config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(5))
        .keepalives_retries(3);
    target.connect_with(&config).map_err(|e| {
        anyhow::anyhow!("cannot connect to the broker store {location}: {e}; check that PostgreSQL runs there and accepts the broker (the URL, its role and password, pg_hba.conf)")
    })
}

/// Brings the schema up to date under an advisory lock, so two replicas
/// starting at once do not both create it.
fn migrate_postgres(
    client: &mut postgres::Client,
    schema: &str,
    location: &StoreLocation,
) -> anyhow::Result<()> {
    let mut tx = client.transaction()?;
    // "hoop" and "stor" in ASCII.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&0x686f_6f70_i32, &0x7374_6f72_i32],
    )?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (version BIGINT NOT NULL);"
    ))?;
    let have: i64 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"),
            &[],
        )?
        .get(0);
    let have = usize::try_from(have).unwrap_or(usize::MAX);
    if have > POSTGRES_MIGRATIONS.len() {
        anyhow::bail!(
            "the broker store {location} was written by a newer hoop-broker (schema {have}, this one knows {}); upgrade hoop-broker",
            POSTGRES_MIGRATIONS.len()
        );
    }
    for (i, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(have) {
        tx.batch_execute(&format!("SET LOCAL search_path TO {schema};{sql}"))?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&((i + 1) as i64)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// One tool of one target: what was accepted and what was seen last.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolStatus {
    pub target: String,
    pub tool: String,
    pub accepted: Option<String>,
    pub seen: Option<String>,
}

impl BrokerStore {
    /// Every accepted tool definition: (target, tool, hash).
    pub fn tool_baselines(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        self.with(|db| {
            db.query("SELECT target, tool, hash FROM tool_baseline", &[])?
                .iter()
                .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
                .collect()
        })
    }

    /// Records the definitions seen; `baseline` also accepts them (the
    /// first list of a target).
    pub fn record_tools_seen(
        &self,
        target: &str,
        seen: &[(String, String)],
        baseline: bool,
        now: u64,
    ) -> anyhow::Result<()> {
        self.in_tx(|db| {
            for (tool, hash) in seen {
                db.execute(
                    "INSERT INTO tool_seen (target, tool, hash, seen_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (target, tool) DO UPDATE SET hash = EXCLUDED.hash, seen_at = EXCLUDED.seen_at",
                    &[target.into(), tool.as_str().into(), hash.as_str().into(), now.into()],
                )?;
                if baseline {
                    db.execute(
                        "INSERT INTO tool_baseline (target, tool, hash, accepted_at, accepted_by)
                         VALUES ($1, $2, $3, $4, 'first list seen')
                         ON CONFLICT (target, tool) DO NOTHING",
                        &[target.into(), tool.as_str().into(), hash.as_str().into(), now.into()],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Accepts the latest seen definition of `tool` (or of every drifted
    /// tool of `target`); returns how many were accepted.
    pub fn accept_tools(
        &self,
        target: &str,
        tool: Option<&str>,
        by: &str,
        now: u64,
    ) -> anyhow::Result<usize> {
        let n = self.in_tx(|db| {
            let n = db.execute(
                "INSERT INTO tool_baseline (target, tool, hash, accepted_at, accepted_by)
                 SELECT target, tool, hash, $3, $4 FROM tool_seen
                 WHERE target = $1 AND ($2 = '' OR tool = $2)
                 ON CONFLICT (target, tool) DO UPDATE SET hash = EXCLUDED.hash,
                     accepted_at = EXCLUDED.accepted_at, accepted_by = EXCLUDED.accepted_by
                 WHERE tool_baseline.hash != EXCLUDED.hash",
                &[
                    target.into(),
                    tool.unwrap_or("").into(),
                    now.into(),
                    by.into(),
                ],
            )?;
            if n > 0 {
                bump_version(db, changes::Topic::Admin)?;
            }
            Ok(n)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Accepted and seen definitions, by target and tool.
    pub fn tool_status(&self, target: Option<&str>) -> anyhow::Result<Vec<ToolStatus>> {
        self.with(|db| {
            db.query(
                "SELECT s.target, s.tool, b.hash, s.hash FROM tool_seen s
                 LEFT JOIN tool_baseline b ON b.target = s.target AND b.tool = s.tool
                 WHERE $1 = '' OR s.target = $1
                 ORDER BY s.target, s.tool",
                &[target.unwrap_or("").into()],
            )?
            .iter()
            .map(|r| {
                Ok(ToolStatus {
                    target: r.text(0)?,
                    tool: r.text(1)?,
                    accepted: r.opt_text(2)?,
                    seen: r.opt_text(3)?,
                })
            })
            .collect()
        })
    }
}

const COLUMNS: &str = "id, subject, issuer, reason, created_at, expires_at, lifted_at, created_by";

fn row_to_revocation(row: &Row) -> anyhow::Result<Revocation> {
    let secs = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Revocation {
        id: row.int(0)?,
        subject: row.text(1)?,
        issuer: row.opt_text(2)?,
        reason: row.text(3)?,
        created_at: secs(row.opt_int(4)?).unwrap_or(0),
        expires_at: secs(row.opt_int(5)?),
        lifted_at: secs(row.opt_int(6)?),
        created_by: row.text(7)?,
    })
}

/// The store holds who was cut off and why: owner-only from its first byte
/// (created 0600, not chmod-ed after the fact).
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the broker store {}: {e}",
            path.display()
        )),
    }
}
