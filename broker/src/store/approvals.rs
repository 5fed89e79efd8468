//! Approval requests in the broker store, so pending requests and granted
//! approvals outlive a restart. Each change writes the whole request; the
//! release of a one-call approval is a conditional update, so it happens
//! at most once even when several brokers share the store.

use super::BrokerStore;
use crate::approval::{ApprovalRequest, ApprovalState};

impl BrokerStore {
    /// Inserts or replaces `r`.
    pub fn save_approval(&self, r: &ApprovalRequest) -> anyhow::Result<()> {
        let body = serde_json::to_string(r)?;
        self.in_tx(|db| {
            super::bump_version(db, super::changes::Topic::Approvals)?;
            db.execute(
                "INSERT INTO approval (id, state, binding, created_at, expires_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,
                     expires_at = EXCLUDED.expires_at, body = EXCLUDED.body",
                &[
                    r.id.into(),
                    r.state.as_str().into(),
                    r.binding.key().into(),
                    r.created_at.into(),
                    r.expires_at.into(),
                    body.into(),
                ],
            )
        })?;
        Ok(())
    }

    /// Moves `r` (as released, in `r`) from `approved` to `released`;
    /// `false` if it was no longer `approved`.
    pub fn release_approval(&self, r: &ApprovalRequest) -> anyhow::Result<bool> {
        let body = serde_json::to_string(r)?;
        let changed = self.in_tx(|db| {
            let n = db.execute(
                "UPDATE approval SET state = $2, body = $3 WHERE id = $1 AND state = 'approved'",
                &[
                    r.id.into(),
                    ApprovalState::Released.as_str().into(),
                    body.into(),
                ],
            )?;
            if n == 1 {
                super::bump_version(db, super::changes::Topic::Approvals)?;
            }
            Ok(n)
        })?;
        Ok(changed == 1)
    }

    /// Runs `decide` on request `id` as stored, its row locked until the
    /// outcome is committed (SQLite: the whole database, `BEGIN
    /// IMMEDIATE`; PostgreSQL: `SELECT … FOR UPDATE`), and writes back what
    /// it returns: two deciders through two brokers take turns, and each
    /// sees the other's vote. `None` when there is no such request; the
    /// inner `Err` is `decide`'s own, and nothing is written then.
    pub fn decide_approval<E>(
        &self,
        id: u64,
        decide: impl FnOnce(ApprovalRequest) -> Result<ApprovalRequest, E>,
    ) -> anyhow::Result<Option<Result<ApprovalRequest, E>>> {
        self.with(|db| {
            let lock = db.begin_locking()?;
            let outcome = decide_locked(db, id, lock, decide);
            match &outcome {
                Ok(Some(Ok(_))) => db.batch("COMMIT")?,
                _ => {
                    let _ = db.batch("ROLLBACK");
                }
            }
            outcome
        })
    }

    /// The requests still open (pending, or approved and not yet used).
    pub fn open_approvals(&self) -> anyhow::Result<Vec<ApprovalRequest>> {
        self.bodies(
            "SELECT body FROM approval WHERE state IN ('pending', 'approved') ORDER BY id",
            &[],
        )
    }

    /// The most recent `limit` requests, newest first (history).
    pub fn recent_approvals(&self, limit: usize) -> anyhow::Result<Vec<ApprovalRequest>> {
        self.bodies(
            "SELECT body FROM approval ORDER BY id DESC LIMIT $1",
            &[(limit as u64).into()],
        )
    }

    /// One request by its number.
    pub fn approval(&self, id: u64) -> anyhow::Result<Option<ApprovalRequest>> {
        Ok(self
            .bodies("SELECT body FROM approval WHERE id = $1", &[id.into()])?
            .pop())
    }

    /// The highest approval id used so far (0 when none).
    pub fn last_approval_id(&self) -> anyhow::Result<u64> {
        let id = self.with(|db| {
            db.query_opt("SELECT MAX(id) FROM approval", &[])?
                .map(|r| r.opt_int(0))
                .transpose()
        })?;
        Ok(id.flatten().unwrap_or(0).try_into().unwrap_or(0))
    }

    /// A new approval number, never handed out before by any broker
    /// sharing this store, and at least `floor` (past the numbers already
    /// used).
    pub fn next_approval_id(&self, floor: u64) -> anyhow::Result<u64> {
        let id = self.with(|db| {
            db.query_opt(
                "INSERT INTO store_state (key, version) VALUES ('approval_id', $1)
                 ON CONFLICT (key) DO UPDATE SET version = CASE
                     WHEN store_state.version + 1 > EXCLUDED.version THEN store_state.version + 1
                     ELSE EXCLUDED.version END
                 RETURNING version",
                &[floor.into()],
            )?
            .ok_or_else(|| anyhow::anyhow!("no approval number was handed out"))?
            .int(0)
        })?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    /// Requests as stored (JSON bodies), parsed.
    fn bodies(
        &self,
        sql: &str,
        params: &[super::sql::Value],
    ) -> anyhow::Result<Vec<ApprovalRequest>> {
        self.with(|db| {
            db.query(sql, params)?
                .iter()
                .map(|r| Ok(serde_json::from_str(&r.text(0)?)?))
                .collect()
        })
    }

    /// Inserts or replaces one of the broker's tasks (`body`: its JSON).
    pub fn save_task(
        &self,
        id: &str,
        approval: u64,
        status: &str,
        changed_at: u64,
        body: &str,
    ) -> anyhow::Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO approval_task (id, approval, status, changed_at, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET approval = EXCLUDED.approval,
                     status = EXCLUDED.status, changed_at = EXCLUDED.changed_at, body = EXCLUDED.body",
                &[
                    id.into(),
                    approval.into(),
                    status.into(),
                    changed_at.into(),
                    body.into(),
                ],
            )
        })?;
        Ok(())
    }

    /// The tasks still working, and the finished ones changed since
    /// `since` (unix seconds); older finished ones are removed.
    pub fn load_tasks(&self, since: u64, limit: usize) -> anyhow::Result<Vec<String>> {
        self.with(|db| {
            db.execute(
                "DELETE FROM approval_task WHERE status != 'working' AND changed_at < $1",
                &[since.into()],
            )?;
            db.query(
                "SELECT body FROM approval_task ORDER BY changed_at DESC LIMIT $1",
                &[(limit as u64).into()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
        })
    }
}

/// [`BrokerStore::decide_approval`]'s work inside its transaction.
fn decide_locked<E>(
    db: &mut dyn super::sql::Db,
    id: u64,
    lock: &str,
    decide: impl FnOnce(ApprovalRequest) -> Result<ApprovalRequest, E>,
) -> anyhow::Result<Option<Result<ApprovalRequest, E>>> {
    let Some(row) = db.query_opt(
        &format!("SELECT body FROM approval WHERE id = $1{lock}"),
        &[id.into()],
    )?
    else {
        return Ok(None);
    };
    let stored: ApprovalRequest = serde_json::from_str(&row.text(0)?)?;
    let decided = match decide(stored) {
        Ok(r) => r,
        Err(e) => return Ok(Some(Err(e))),
    };
    super::bump_version(db, super::changes::Topic::Approvals)?;
    db.execute(
        "UPDATE approval SET state = $2, expires_at = $3, body = $4 WHERE id = $1",
        &[
            decided.id.into(),
            decided.state.as_str().into(),
            decided.expires_at.into(),
            serde_json::to_string(&decided)?.into(),
        ],
    )?;
    Ok(Some(Ok(decided)))
}
