//! Retention: events older than `[audit] retention_days` (default 400:
//! PCI DSS 10.5.1's twelve months, plus margin) are removed, cut at a
//! signed checkpoint so that what remains still verifies against every
//! checkpoint (stored hashes and checkpoints are never removed). The cut is
//! itself an event, recorded before anything is removed; a cut that cannot
//! be recorded is not made.

use std::time::Duration;

use hoop_audit_log::store::MAX_CHECKPOINTS_PER_READ;
use hoop_audit_log::{AuditStore, Durability};

use super::event::{Actor, Event, EventKind};
use super::{Audit, AuditLocation};

/// How often the broker looks for expired events.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The sequence number retention would cut at: the largest checkpoint size
/// at or below the first event recorded at or after `before_ns`, when that
/// removes anything.
pub fn cut_for(store: &dyn AuditStore, before_ns: i64) -> anyhow::Result<Option<u64>> {
    let first = store.first_seq()?;
    let Some(old) = store.seq_range_for_time(None, Some(before_ns))? else {
        return Ok(None);
    };
    // `old.end`: one past the last event recorded before the cut-off.
    let mut best = None;
    let mut from = first.saturating_add(1);
    // Bounded: each page moves `from` past its last checkpoint.
    loop {
        let page = store.checkpoints(from..old.end.saturating_add(1), MAX_CHECKPOINTS_PER_READ)?;
        let Some(last) = page.last() else { break };
        best = Some(last.size);
        from = last.size.saturating_add(1);
    }
    Ok(best.filter(|c| *c > first))
}

/// One pass: records the cut, then removes the events before it.
pub async fn enforce(audit: &Audit, days: u64) -> anyhow::Result<Option<u64>> {
    let before_ns = super::event::now_ns().saturating_sub(
        i64::try_from(days)
            .unwrap_or(i64::MAX)
            .saturating_mul(86_400_000_000_000),
    );
    let location = audit.location().clone();
    let find = location.clone();
    let cut = tokio::task::spawn_blocking(move || -> anyhow::Result<(Option<u64>, u64)> {
        let store = find.open_read_only()?;
        Ok((cut_for(store.as_ref(), before_ns)?, store.first_seq()?))
    })
    .await??;
    let (Some(cut), first) = cut else {
        return Ok(None);
    };
    let mut e = Event::now(EventKind::Retention);
    e.actor = Some(Actor::local("hoop-broker"));
    e.detail = Some(serde_json::json!({
        "retention_days": days,
        "removed_seqs": [first, cut],
        "cut_at_checkpoint": cut,
    }));
    audit
        .record(&e, None)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let removed = tokio::task::spawn_blocking(move || expire(&location, cut)).await??;
    tracing::info!(
        cut,
        removed,
        "audit retention: removed events older than {days} days"
    );
    Ok(Some(cut))
}

/// Events removed per transaction: each holds the log's write lock, which
/// the broker's writer waits for, so each is kept short.
const CHUNK: u64 = 5_000;

fn expire(location: &AuditLocation, cut: u64) -> anyhow::Result<u64> {
    let mut store = location.open(Durability::Fsync)?;
    let mut removed = 0;
    let mut upto = store.first_seq()?;
    // Bounded: `upto` moves by CHUNK towards `cut`.
    while upto < cut {
        upto = upto.saturating_add(CHUNK).min(cut);
        removed += store.expire_before(upto)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoop_audit_log::{verify_store, AuditLog, LogConfig, SqliteStore};

    #[tokio::test]
    async fn old_events_go_at_a_checkpoint_and_the_rest_still_verifies() {
        let dir = std::env::temp_dir().join(format!(
            "hoop-retention-{}-{}",
            std::process::id(),
            super::super::event::now_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        let log = AuditLog::open_sqlite(
            &path,
            &dir.join("key"),
            LogConfig {
                durability: Durability::Os,
                ..LogConfig::default()
            },
        )
        .unwrap();
        let audit = Audit::new(
            log.clone(),
            AuditLocation::Sqlite(path.clone()),
            Vec::new(),
            Default::default(),
        );
        for i in 0..10 {
            let mut e = Event::now(EventKind::AdminCommand);
            e.time_ns = 1_000 + i; // 1970: long expired
            audit.record(&e, None).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
        for _ in 0..3 {
            audit
                .record(&Event::now(EventKind::AdminCommand), None)
                .await
                .unwrap();
        }
        log.checkpoint_now().await.unwrap();
        assert_eq!(enforce(&audit, 400).await.unwrap(), Some(10));
        assert_eq!(
            enforce(&audit, 400).await.unwrap(),
            None,
            "nothing more to cut"
        );
        // The cut's own event is durable in the journal; reading the file
        // beside the writer needs it applied first.
        log.flush().await.unwrap();
        let store = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(store.first_seq().unwrap(), 10);
        let report = verify_store(&store, &[log.verifier_key().to_owned()]).unwrap();
        assert_eq!(report.first_seq, 10);
        let last = store.entries(13..14).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&last[0].entry).unwrap();
        assert_eq!(v["type"], "audit.retention", "the cut is recorded: {v}");
        log.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
