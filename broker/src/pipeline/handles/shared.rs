//! The handle table across replicas. Brokers sharing a PostgreSQL store
//! write each handle there as the upstream mints it, and look a presented
//! handle up there: alice's task started through replica A stays hers, and
//! usable, through replica B after A goes away; bob presenting it through
//! B is refused as he would be through A; and a handle an upstream minted
//! for two identities, through two brokers, is refused to both on each.
//!
//! The write is not waited for (the answer that carries the handle is not
//! held up for it), so a handle presented elsewhere within milliseconds of
//! being minted, or minted just before its broker died, may not be there
//! yet: it is then refused as unknown, which fails closed. What is stored
//! is what the broker's own table keeps: the identity, and the call that
//! minted the handle (method, name, arguments as the upstream received
//! them, or none past the size limit) for re-judging `tasks/*`; rows go
//! when the handle expires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{HandleTable, Key, Origin, Owner, MAX_ARGS_BYTES};
use crate::identity::now_unix;
#[cfg(test)]
use crate::identity::Identity;
use crate::mcp::message::McpMessage;
use crate::store::{BrokerStore, StoreLocation, StoredHandle};

/// Store look-ups in flight at once, per broker: each takes a database
/// connection, and a caller presenting made-up handles must not take all
/// of the database's.
const LOOKUPS: usize = 4;

/// The shared store, and the bound on look-ups.
pub(super) struct SharedHandles {
    store: StoreLocation,
    lookups: Semaphore,
}

impl SharedHandles {
    pub(super) fn new(store: StoreLocation) -> Self {
        Self {
            store,
            lookups: Semaphore::new(LOOKUPS),
        }
    }
}

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

/// Writes the handles `minted` for `owner` by the call `origin` to the
/// store `table` shares, off the request path; poisons one in `table`
/// when the store says it was minted for someone else too.
pub(super) fn publish(
    table: &Arc<HandleTable>,
    minted: &[(Key, Duration)],
    owner: &Owner,
    origin: &Origin,
) {
    let Some(shared) = &table.shared else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut origin = origin.clone();
    if origin.args_len() > MAX_ARGS_BYTES {
        origin.arguments = None;
    }
    let origin = match serde_json::to_string(&origin) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("a handle was not shared with the other brokers: {e}");
            return;
        }
    };
    let now = now_unix();
    let handles: Vec<(Key, StoredHandle)> = minted
        .iter()
        .map(|(key, ttl)| {
            let handle = StoredHandle {
                subject: owner.subject.clone(),
                issuer: owner.issuer.clone(),
                origin: origin.clone(),
                expires_at: now.saturating_add(ttl.as_secs()),
                poisoned: false,
            };
            (key.clone(), handle)
        })
        .collect();
    let (store, table) = (shared.store.clone(), table.clone());
    runtime.spawn_blocking(move || {
        let store = match BrokerStore::open(&store) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("handles not shared with the other brokers ({e:#}); only this broker honours them");
                return;
            }
        };
        for (key, handle) in handles {
            match store.save_handle(&key.stored(), &handle, now) {
                Ok(false) => {}
                Ok(true) => {
                    tracing::warn!(subject = %handle.subject,
                        "upstream issued the same handle to two identities (through two brokers); refusing it for both");
                    table.lock().poison(&key);
                }
                Err(e) => tracing::warn!(
                    "a handle was not shared with the other brokers ({e:#}); only this broker honours it"
                ),
            }
        }
    });
}

impl HandleTable {
    /// Brings into this broker's table what the shared store knows of the
    /// handles `msg` presents: one another replica saw minted (with the
    /// identity it was minted for, so that [`HandleTable::check`] judges
    /// it as it would have there), and whether one is poisoned. Does
    /// nothing without a shared store; a store that cannot be read leaves
    /// the table as it is (an unknown handle stays refused).
    pub async fn recall(&self, target: &str, msg: &McpMessage) {
        let Some(shared) = &self.shared else {
            return;
        };
        for key in Key::presented(target, msg) {
            let Ok(_permit) = shared.lookups.acquire().await else {
                return;
            };
            let (store, stored_key) = (shared.store.clone(), key.stored());
            let now = now_unix();
            let found = tokio::task::spawn_blocking(move || {
                BrokerStore::open(&store).and_then(|s| s.handle(&stored_key, now))
            })
            .await;
            let handle = match found.map_err(anyhow::Error::from).and_then(|f| f) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("cannot look up a handle in the shared store: {e:#}");
                    continue;
                }
            };
            let mut table = self.lock();
            if table.map.contains_key(&key) {
                if handle.poisoned {
                    table.poison(&key);
                }
                continue;
            }
            if handle.poisoned {
                continue;
            }
            let Ok(origin) = serde_json::from_str::<Origin>(&handle.origin) else {
                continue;
            };
            let owner = Owner {
                subject: handle.subject,
                issuer: handle.issuer,
            };
            let ttl = Duration::from_secs(handle.expires_at.saturating_sub(now));
            table.insert(key, owner, origin, ttl);
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
