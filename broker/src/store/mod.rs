//! The broker's own SQLite database: revocations, accepted tool
//! definitions and approval requests (the audit log has a file of its
//! own). One file, opened by the running broker and by the admin commands (`hoop-broker revoke`), which talk to the broker through it:
//! a row committed by `revoke` is seen by the broker's watcher within a
//! fraction of a second (`PRAGMA data_version`).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

mod approvals;

/// Schema migrations, applied in order; the index is the version reached.
const MIGRATIONS: &[&str] = &[
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
];

/// An open store. Not `Sync`: each thread or task that needs one opens its own.
pub struct BrokerStore {
    conn: Connection,
    path: PathBuf,
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
    pub fn open_existing(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            anyhow::bail!(
                "no broker store at {}: the broker creates it when it starts; point at the broker's own with --config FILE (its `store`) or --store FILE",
                path.display()
            );
        }
        Self::open(path)
    }

    /// Opens (creating, 0600, and migrating) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the store's directory {}: {e}", dir.display())
            })?;
        }
        if !path.exists() {
            create_private(path)?;
        }
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the broker store {}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL lets `revoke` write while the broker reads.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let have: usize = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?
            .try_into()
            .unwrap_or(0);
        if have > MIGRATIONS.len() {
            anyhow::bail!(
                "the broker store {} was written by a newer hoop-broker (schema {have}, this one knows {}); upgrade hoop-broker",
                self.path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(have) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Changes whenever another connection commits to the database.
    pub fn data_version(&self) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    pub fn add_revocation(&self, r: &NewRevocation<'_>, now: u64) -> anyhow::Result<Revocation> {
        self.conn.execute(
            "INSERT INTO revocation (subject, issuer, reason, created_at, expires_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.subject,
                r.issuer,
                r.reason,
                now as i64,
                r.expires_at.map(|e| e as i64),
                r.created_by
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.revocation(id)?
            .ok_or_else(|| anyhow::anyhow!("revocation {id} vanished after insert"))
    }

    /// Lifts a revocation; `false` when there is no such active one.
    pub fn lift_revocation(&self, id: i64, now: u64) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "UPDATE revocation SET lifted_at = ?2 WHERE id = ?1 AND lifted_at IS NULL",
            params![id, now as i64],
        )?;
        Ok(n == 1)
    }

    pub fn revocation(&self, id: i64) -> anyhow::Result<Option<Revocation>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM revocation WHERE id = ?1"),
                [id],
                row_to_revocation,
            )
            .optional()?)
    }

    /// Every revocation, newest first; only those in force unless `all`.
    pub fn revocations(&self, all: bool, now: u64) -> anyhow::Result<Vec<Revocation>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM revocation ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([], row_to_revocation)?;
        let mut out = Vec::new();
        for r in rows {
            let r = r?;
            if all || r.active(now) {
                out.push(r);
            }
        }
        Ok(out)
    }
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
        let mut stmt = self
            .conn
            .prepare("SELECT target, tool, hash FROM tool_baseline")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let tx = self.conn.unchecked_transaction()?;
        for (tool, hash) in seen {
            tx.execute(
                "INSERT INTO tool_seen (target, tool, hash, seen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (target, tool) DO UPDATE SET hash = ?3, seen_at = ?4",
                params![target, tool, hash, now as i64],
            )?;
            if baseline {
                tx.execute(
                    "INSERT OR IGNORE INTO tool_baseline (target, tool, hash, accepted_at, accepted_by)
                     VALUES (?1, ?2, ?3, ?4, 'first list seen')",
                    params![target, tool, hash, now as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
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
        let n = self.conn.execute(
            "INSERT INTO tool_baseline (target, tool, hash, accepted_at, accepted_by)
             SELECT target, tool, hash, ?3, ?4 FROM tool_seen
             WHERE target = ?1 AND (?2 IS NULL OR tool = ?2)
             ON CONFLICT (target, tool) DO UPDATE SET hash = excluded.hash,
                 accepted_at = excluded.accepted_at, accepted_by = excluded.accepted_by
             WHERE tool_baseline.hash != excluded.hash",
            params![target, tool, now as i64, by],
        )?;
        Ok(n)
    }

    /// Accepted and seen definitions, by target and tool.
    pub fn tool_status(&self, target: Option<&str>) -> anyhow::Result<Vec<ToolStatus>> {
        let mut stmt = self.conn.prepare(
            "SELECT s.target, s.tool, b.hash, s.hash FROM tool_seen s
             LEFT JOIN tool_baseline b ON b.target = s.target AND b.tool = s.tool
             WHERE ?1 IS NULL OR s.target = ?1
             ORDER BY s.target, s.tool",
        )?;
        let rows = stmt.query_map([target], |r| {
            Ok(ToolStatus {
                target: r.get(0)?,
                tool: r.get(1)?,
                accepted: r.get(2)?,
                seen: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const COLUMNS: &str = "id, subject, issuer, reason, created_at, expires_at, lifted_at, created_by";

fn row_to_revocation(row: &rusqlite::Row<'_>) -> rusqlite::Result<Revocation> {
    let secs = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Revocation {
        id: row.get(0)?,
        subject: row.get(1)?,
        issuer: row.get(2)?,
        reason: row.get(3)?,
        created_at: secs(row.get(4)?).unwrap_or(0),
        expires_at: secs(row.get(5)?),
        lifted_at: secs(row.get(6)?),
        created_by: row.get(7)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_round_trip_expire_and_lift() {
        let dir = tempdir();
        let path = dir.join("broker.db");
        let s = BrokerStore::open(&path).unwrap();
        let v0 = s.data_version().unwrap();
        let carol = s
            .add_revocation(
                &NewRevocation {
                    subject: "carol",
                    issuer: None,
                    reason: "off-boarded",
                    expires_at: None,
                    created_by: "test",
                },
                1000,
            )
            .unwrap();
        let temp = s
            .add_revocation(
                &NewRevocation {
                    subject: "bob",
                    issuer: Some("https://idp"),
                    reason: "incident",
                    expires_at: Some(2000),
                    created_by: "test",
                },
                1000,
            )
            .unwrap();
        assert!(carol.covers("carol", "https://any"));
        assert!(temp.covers("bob", "https://idp"));
        assert!(!temp.covers("bob", "https://other"));
        assert_eq!(s.revocations(false, 1500).unwrap().len(), 2);
        assert_eq!(
            s.revocations(false, 2000).unwrap().len(),
            1,
            "bob's expired"
        );
        assert!(s.lift_revocation(carol.id, 1600).unwrap());
        assert!(
            !s.lift_revocation(carol.id, 1601).unwrap(),
            "already lifted"
        );
        assert!(s
            .revocations(false, 1700)
            .unwrap()
            .iter()
            .all(|r| r.subject == "bob"));
        assert_eq!(s.revocations(true, 3000).unwrap().len(), 2);
        // Another connection's commit moves data_version for this one.
        let other = BrokerStore::open(&path).unwrap();
        other.lift_revocation(temp.id, 1800).unwrap();
        assert_ne!(s.data_version().unwrap(), v0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hoop-store-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
