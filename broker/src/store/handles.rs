//! Handles upstreams minted (task ids, request states) and the identity
//! each was minted for, so that a replica sharing the store honours a
//! handle another replica saw issued (`pipeline/handles` keeps its own
//! table in memory and asks here for what it has not seen).

use super::BrokerStore;

/// One handle as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHandle {
    pub subject: String,
    pub issuer: String,
    /// The call that minted it, as JSON.
    pub origin: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Issued to two identities: good for neither.
    pub poisoned: bool,
}

impl BrokerStore {
    /// Records that `key` was minted for `subject`@`issuer`. The same key
    /// minted again for the same identity lives longer; for another
    /// identity it is poisoned, as in the broker's own table. Expired
    /// handles are removed on the way. Whether the handle is poisoned now
    /// (minted for someone else too, through any broker).
    pub fn save_handle(&self, key: &str, h: &StoredHandle, now: u64) -> anyhow::Result<bool> {
        let row = self.with(|db| {
            db.execute("DELETE FROM handle WHERE expires_at <= $1", &[now.into()])?;
            db.query_opt(
                "INSERT INTO handle (key, subject, issuer, origin, expires_at, poisoned)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key) DO UPDATE SET
                     poisoned = CASE WHEN handle.subject = EXCLUDED.subject
                         AND handle.issuer = EXCLUDED.issuer THEN handle.poisoned ELSE 1 END,
                     expires_at = CASE WHEN handle.subject = EXCLUDED.subject
                         AND handle.issuer = EXCLUDED.issuer THEN EXCLUDED.expires_at
                         ELSE handle.expires_at END
                 RETURNING poisoned",
                &[
                    key.into(),
                    h.subject.as_str().into(),
                    h.issuer.as_str().into(),
                    h.origin.as_str().into(),
                    h.expires_at.into(),
                    i64::from(h.poisoned).into(),
                ],
            )
        })?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) != 0)
    }

    /// Handle `key`, unless it expired by `now`.
    pub fn handle(&self, key: &str, now: u64) -> anyhow::Result<Option<StoredHandle>> {
        let row = self.with(|db| {
            db.query_opt(
                "SELECT subject, issuer, origin, expires_at, poisoned FROM handle
                 WHERE key = $1 AND expires_at > $2",
                &[key.into(), now.into()],
            )
        })?;
        row.map(|r| {
            Ok(StoredHandle {
                subject: r.text(0)?,
                issuer: r.text(1)?,
                origin: r.text(2)?,
                expires_at: u64::try_from(r.int(3)?).unwrap_or(0),
                poisoned: r.int(4)? != 0,
            })
        })
        .transpose()
    }
}
