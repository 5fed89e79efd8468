//! Revocation: cutting an identity off before its token expires (the
//! off-boarded contractor). Revocations live in the broker store, where
//! `hoop-broker revoke` writes them; the running broker keeps the ones in
//! force in memory and checks them on every connection and on every
//! message (the stateless MCP revision has no session to end), and the
//! watcher ends live connections of a newly revoked subject.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::now_unix;
use crate::store::changes::{tick_or_change, StoreChanges, Topic};
use crate::store::{BrokerStore, Revocation, StoreLocation};

/// How often the watcher looks for changes: well inside the promised 2 s.
pub const POLL: Duration = Duration::from_millis(400);

/// The revocations in force, as last read from the store.
#[derive(Default)]
pub struct RevocationList {
    current: RwLock<Arc<Vec<Revocation>>>,
}

impl RevocationList {
    /// The revocation that cuts off `subject` from `issuer`, if one does now.
    pub fn find(&self, subject: &str, issuer: &str) -> Option<Revocation> {
        let now = now_unix();
        let list = match self.current.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        };
        list.iter()
            .find(|r| r.active(now) && r.covers(subject, issuer))
            .cloned()
    }

    /// Replaces the list; returns the revocations new in it and those no
    /// longer in it (lifted or expired), for the audit log.
    fn replace(&self, list: Vec<Revocation>) -> (Vec<Revocation>, Vec<Revocation>) {
        let mut guard = match self.current.write() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let old = guard.clone();
        let added = list
            .iter()
            .filter(|r| !old.iter().any(|o| o.id == r.id))
            .cloned()
            .collect();
        let gone = old
            .iter()
            .filter(|o| !list.iter().any(|r| r.id == o.id))
            .cloned()
            .collect();
        *guard = Arc::new(list);
        (added, gone)
    }

    /// Loads the list once from `store` (at start-up: the broker must not
    /// accept a revoked subject in its first moments).
    pub fn load(&self, store: &BrokerStore) -> anyhow::Result<()> {
        self.replace(store.revocations(false, now_unix())?);
        Ok(())
    }

    /// Every revocation in force now.
    pub fn all(&self) -> Arc<Vec<Revocation>> {
        match self.current.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Keeps `list` in step with the store at `path` and calls `changed` after
/// each reload, with the revocations that came into force and those that
/// ended (lifted or expired) since the last, as soon as `changes` announces
/// a change and at each poll. Runs until the task is dropped. A store that cannot be read
/// keeps the last list (and says so) rather than forgetting revocations.
/// SQLite calls block (a busy database waits up to 5 s), so they run on
/// the blocking pool, never on the runtime's own thread.
pub async fn watch(
    list: Arc<RevocationList>,
    path: StoreLocation,
    changes: Option<Arc<StoreChanges>>,
    changed: impl Fn(Vec<Revocation>, Vec<Revocation>) + Send + 'static,
) {
    let mut last_version = None;
    let mut last_reload = std::time::Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store: Option<BrokerStore> = None;
    loop {
        tick_or_change(&mut tick, changes.as_deref(), Topic::Admin).await;
        // Reload on every change, and now and then anyway so that a
        // revocation's own expiry takes effect.
        let due = last_reload.elapsed() >= Duration::from_secs(30);
        let path = path.clone();
        let job = tokio::task::spawn_blocking(move || {
            let outcome = poll_store(&mut store, &path, last_version, due);
            (store, outcome)
        });
        let outcome = match job.await {
            Ok((s, outcome)) => {
                store = s;
                outcome
            }
            Err(e) => {
                tracing::error!("revocations: the store poll failed: {e}");
                store = None;
                continue;
            }
        };
        match outcome {
            Ok(Some((version, revocations))) => {
                let (added, gone) = list.replace(revocations);
                last_version = Some(version);
                last_reload = std::time::Instant::now();
                changed(added, gone);
            }
            Ok(None) => {}
            Err(e) => tracing::error!("revocations: cannot read the store: {e:#}"),
        }
    }
}

/// One look at the store: the revocations in force when the store changed
/// since `last_version` (or `due`), else `None`.
fn poll_store(
    store: &mut Option<BrokerStore>,
    path: &StoreLocation,
    last_version: Option<i64>,
    due: bool,
) -> anyhow::Result<Option<(i64, Vec<Revocation>)>> {
    let s = match store {
        Some(s) => s,
        None => store.insert(BrokerStore::open(path)?),
    };
    let result = (|| {
        let version = s.version(Topic::Admin)?;
        if Some(version) == last_version && !due {
            return Ok(None);
        }
        Ok(Some((version, s.revocations(false, now_unix())?)))
    })();
    if result.is_err() {
        // Open afresh next time (the file may have been replaced).
        *store = None;
    }
    result
}
