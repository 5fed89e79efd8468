//! Approval requests in the broker store, so pending requests and granted
//! approvals outlive a restart. Each change writes the whole request; the
//! release of a one-call approval is a conditional update, so it happens
//! at most once even if two brokers shared the file.

use rusqlite::{params, OptionalExtension};

use super::BrokerStore;
use crate::approval::{ApprovalRequest, ApprovalState};

impl BrokerStore {
    /// Inserts or replaces `r`.
    pub fn save_approval(&self, r: &ApprovalRequest) -> anyhow::Result<()> {
        let body = serde_json::to_string(r)?;
        self.conn.execute(
            "INSERT INTO approval (id, state, binding, created_at, expires_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET state = ?2, expires_at = ?5, body = ?6",
            params![
                r.id as i64,
                r.state.as_str(),
                r.binding.key(),
                r.created_at as i64,
                r.expires_at as i64,
                body
            ],
        )?;
        Ok(())
    }

    /// Moves `r` (as released, in `r`) from `approved` to `released`;
    /// `false` if it was no longer `approved`.
    pub fn release_approval(&self, r: &ApprovalRequest) -> anyhow::Result<bool> {
        let body = serde_json::to_string(r)?;
        let changed = self.conn.execute(
            "UPDATE approval SET state = ?2, body = ?3 WHERE id = ?1 AND state = 'approved'",
            params![r.id as i64, ApprovalState::Released.as_str(), body],
        )?;
        Ok(changed == 1)
    }

    /// The requests still open (pending, or approved and not yet used).
    pub fn open_approvals(&self) -> anyhow::Result<Vec<ApprovalRequest>> {
        let mut stmt = self.conn.prepare(
            "SELECT body FROM approval WHERE state IN ('pending', 'approved') ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            out.push(serde_json::from_str(&body?)?);
        }
        Ok(out)
    }

    /// The most recent `limit` requests, newest first (history).
    pub fn recent_approvals(&self, limit: usize) -> anyhow::Result<Vec<ApprovalRequest>> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM approval ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            out.push(serde_json::from_str(&body?)?);
        }
        Ok(out)
    }

    /// One request by its number.
    pub fn approval(&self, id: u64) -> anyhow::Result<Option<ApprovalRequest>> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM approval WHERE id = ?1",
                [id as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    /// The highest approval id used so far (0 when none).
    pub fn last_approval_id(&self) -> anyhow::Result<u64> {
        let id: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM approval", [], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(id.unwrap_or(0).try_into().unwrap_or(0))
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
        self.conn.execute(
            "INSERT INTO approval_task (id, approval, status, changed_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET approval = ?2, status = ?3, changed_at = ?4, body = ?5",
            params![id, approval as i64, status, changed_at as i64, body],
        )?;
        Ok(())
    }

    /// The tasks still working, and the finished ones changed since
    /// `since` (unix seconds); older finished ones are removed.
    pub fn load_tasks(&self, since: u64, limit: usize) -> anyhow::Result<Vec<String>> {
        self.conn.execute(
            "DELETE FROM approval_task WHERE status != 'working' AND changed_at < ?1",
            [since as i64],
        )?;
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM approval_task ORDER BY changed_at DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map_err(anyhow::Error::from)).collect()
    }
}
