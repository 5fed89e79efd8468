//! Revocation: cutting an identity off before its token expires (the
//! off-boarded contractor). Revocations live in the broker store, where
//! `hoop-broker revoke` writes them; the running broker keeps the ones in
//! force in memory and checks them on every connection and on every
//! message (the stateless MCP revision has no session to end), and the
//! watcher ends live connections of a newly revoked subject.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::now_unix;
use crate::store::{BrokerStore, Revocation};

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

    fn replace(&self, list: Vec<Revocation>) {
        match self.current.write() {
            Ok(mut l) => *l = Arc::new(list),
            Err(p) => *p.into_inner() = Arc::new(list),
        }
    }

    /// Loads the list once from `store` (at start-up: the broker must not
    /// accept a revoked subject in its first moments).
    pub fn load(&self, store: &BrokerStore) -> anyhow::Result<()> {
        self.replace(store.revocations(false, now_unix())?);
        Ok(())
    }
}

/// Keeps `list` in step with the store at `path` and calls `changed` after
/// each reload. Runs until the task is dropped. A store that cannot be read
/// keeps the last list (and says so) rather than forgetting revocations.
pub async fn watch(list: Arc<RevocationList>, path: PathBuf, changed: impl Fn() + Send + 'static) {
    let mut last_version = None;
    let mut last_reload = std::time::Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store: Option<BrokerStore> = None;
    loop {
        tick.tick().await;
        let s = match store.as_ref() {
            Some(s) => s,
            None => match BrokerStore::open(&path) {
                Ok(s) => store.insert(s),
                Err(e) => {
                    tracing::error!("revocations: cannot open the store: {e:#}");
                    continue;
                }
            },
        };
        let version = match s.data_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("revocations: cannot read the store: {e:#}");
                store = None;
                continue;
            }
        };
        // Reload on every change, and now and then anyway so that a
        // revocation's own expiry takes effect.
        if Some(version) == last_version && last_reload.elapsed() < Duration::from_secs(30) {
            continue;
        }
        match s.revocations(false, now_unix()) {
            Ok(l) => {
                list.replace(l);
                last_version = Some(version);
                last_reload = std::time::Instant::now();
                changed();
            }
            Err(e) => tracing::error!("revocations: cannot read the store: {e:#}"),
        }
    }
}
