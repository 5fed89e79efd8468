//! The handle table across replicas. Brokers sharing a PostgreSQL store
//! write each handle there as the upstream mints it, and a broker asked
//! for a handle it did not see minted looks it up there before refusing:
//! alice's task started through replica A stays hers, and usable, through
//! replica B after A goes away; bob presenting it through B is refused as
//! he would be through A.
//!
//! The write is not waited for (the answer that carries the handle is not
//! held up for it), so a handle presented elsewhere within milliseconds of
//! being minted, or minted just before its broker died, may not be there
//! yet: it is then refused as unknown, which fails closed.

use std::time::Duration;

use super::{HandleTable, Key, Origin, Owner};
use crate::identity::now_unix;
#[cfg(test)]
use crate::identity::Identity;
use crate::mcp::message::McpMessage;
use crate::store::{BrokerStore, StoreLocation, StoredHandle};

impl Key {
    /// The key's text in the store: kind, target and id (a request state's
    /// digest, in hex), one per line (a target name holds no line break).
    fn stored(&self) -> String {
        match self {
            Self::Task { target, id } => format!("task\n{target}\n{id}"),
            Self::State { target, digest } => format!("state\n{target}\n{}", hex::encode(digest)),
        }
    }
}

/// Writes `key`, minted for `owner` by the call `origin`, to `store`, off
/// the request path.
pub(super) fn publish(
    store: &StoreLocation,
    key: &Key,
    owner: &Owner,
    origin: &Origin,
    ttl: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let origin = match serde_json::to_string(origin) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("a handle was not shared with the other brokers: {e}");
            return;
        }
    };
    let now = now_unix();
    let handle = StoredHandle {
        subject: owner.subject.clone(),
        issuer: owner.issuer.clone(),
        origin,
        expires_at: now.saturating_add(ttl.as_secs()),
        poisoned: false,
    };
    let (store, key) = (store.clone(), key.stored());
    runtime.spawn_blocking(move || {
        let saved = BrokerStore::open(&store).and_then(|s| s.save_handle(&key, &handle, now));
        if let Err(e) = saved {
            tracing::warn!("a handle was not shared with the other brokers ({e:#}); only this broker honours it");
        }
    });
}

impl HandleTable {
    /// Brings into this broker's table the handles `msg` presents that
    /// another replica saw minted (with the identity they were minted
    /// for, so that [`HandleTable::check`] judges them as it would have
    /// there). Does nothing without a shared store, or when this broker
    /// knows them already.
    pub async fn recall(&self, target: &str, msg: &McpMessage) {
        let Some(store) = &self.shared else {
            return;
        };
        for key in Key::presented(target, msg) {
            if self.lock().map.contains_key(&key) {
                continue;
            }
            let (store, stored_key) = (store.clone(), key.stored());
            let now = now_unix();
            let found = tokio::task::spawn_blocking(move || {
                BrokerStore::open(&store).and_then(|s| s.handle(&stored_key, now))
            })
            .await;
            let handle = match found {
                Ok(Ok(Some(h))) if !h.poisoned => h,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!("cannot look up a handle in the shared store: {e:#}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot look up a handle in the shared store: {e}");
                    continue;
                }
            };
            let Ok(origin) = serde_json::from_str::<Origin>(&handle.origin) else {
                continue;
            };
            let owner = Owner {
                subject: handle.subject,
                issuer: handle.issuer,
            };
            let ttl = Duration::from_secs(handle.expires_at.saturating_sub(now));
            self.lock().insert(key, owner, origin, ttl);
        }
    }
}

/// For tests: whether `identity` may use what `msg` presents, after
/// recalling it from the shared store.
#[cfg(test)]
pub(super) async fn recall_and_check(
    table: &HandleTable,
    identity: &Identity,
    target: &str,
    msg: &McpMessage,
) -> bool {
    table.recall(target, msg).await;
    table.check(identity, target, msg).is_ok()
}
