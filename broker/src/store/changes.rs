//! Live fan-out between brokers that share a PostgreSQL store. Every change
//! a broker or an admin command commits there (a revocation, an accepted
//! tool definition, an approval request or decision) bumps a counter and
//! sends `NOTIFY <schema>, '<topic>'` in the same transaction
//! (`bump_version`), so it is heard only once it is durable. Each broker
//! keeps one connection that `LISTEN`s and wakes the watcher of that topic
//! at once: a grant through replica B releases the call held on A within
//! milliseconds rather than at the next poll.
//!
//! The watchers still poll their counter (`revocation::POLL`): PostgreSQL
//! does not replay a notification sent while the listening connection was
//! down, and the poll keeps revocations within their 2 s bound then. The
//! listener, connected again, wakes every watcher once to catch up.

use std::sync::{Arc, Weak};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use tokio::sync::Notify;

use super::{connect_postgres, StoreLocation};

/// What changed: each topic has its own counter in `store_state` and its
/// own watcher in the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Revocations and accepted tool definitions.
    Admin,
    /// Approval requests and their decisions.
    Approvals,
}

impl Topic {
    /// The counter's key in `store_state`, and the notification's payload.
    pub fn key(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Approvals => "approvals",
        }
    }

    fn of(payload: &str) -> Option<Self> {
        [Self::Admin, Self::Approvals]
            .into_iter()
            .find(|t| t.key() == payload)
    }
}

/// How long one wait for notifications lasts before the listener looks
/// whether the broker still wants it.
const WAIT: Duration = Duration::from_millis(500);
/// How long the listener waits before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// The wake-ups of one broker's watchers. The listening thread stops soon
/// after the last `Arc` goes.
#[derive(Debug, Default)]
pub struct StoreChanges {
    admin: Notify,
    approvals: Notify,
}

impl StoreChanges {
    /// Starts listening to the store at `location`; `None` for SQLite,
    /// whose brokers poll the file.
    pub fn listen(location: &StoreLocation) -> Option<Arc<Self>> {
        let StoreLocation::Postgres { url, schema } = location else {
            return None;
        };
        let changes = Arc::new(Self::default());
        let weak = Arc::downgrade(&changes);
        let (url, schema, location) = (url.clone(), schema.clone(), location.clone());
        let started = std::thread::Builder::new()
            .name("hoop-store-listen".into())
            .spawn(move || follow(&url, &schema, &location, &weak));
        if let Err(e) = started {
            // The watchers' poll still carries every change.
            tracing::warn!(
                "store: cannot start listening for other brokers' changes ({e}); polling only"
            );
        }
        Some(changes)
    }

    fn notify(&self, topic: Topic) -> &Notify {
        match topic {
            Topic::Admin => &self.admin,
            Topic::Approvals => &self.approvals,
        }
    }

    fn wake(&self, topic: Topic) {
        // One stored permit: a change while the watcher is busy is seen
        // when it next waits.
        self.notify(topic).notify_one();
    }
}

/// Waits for `tick`, or for `topic` to change in the store first when the
/// broker listens for changes.
pub async fn tick_or_change(
    tick: &mut tokio::time::Interval,
    changes: Option<&StoreChanges>,
    topic: Topic,
) {
    match changes {
        Some(c) => {
            tokio::select! {
                _ = tick.tick() => {}
                _ = c.notify(topic).notified() => {}
            }
        }
        None => {
            tick.tick().await;
        }
    }
}

/// The listening thread: connects, listens, passes notifications on, and
/// connects again after a failure, until the broker lets go of `changes`.
fn follow(url: &str, schema: &str, location: &StoreLocation, changes: &Weak<StoreChanges>) {
    let mut down = false;
    while changes.strong_count() > 0 {
        match listen(url, schema, location, changes, &mut down) {
            Ok(()) => return,
            Err(e) => {
                if !down {
                    tracing::warn!(
                        "store: not hearing other brokers' changes ({e:#}); polling every {} ms until the connection is back",
                        crate::identity::revocation::POLL.as_millis()
                    );
                    down = true;
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// One listening connection, for as long as it lasts; `Ok` once the
/// broker no longer wants it.
fn listen(
    url: &str,
    schema: &str,
    location: &StoreLocation,
    changes: &Weak<StoreChanges>,
    down: &mut bool,
) -> anyhow::Result<()> {
    let mut client = connect_postgres(url, location)?;
    // The schema name is checked to be a plain identifier when the
    // config is read; the channel is named after it.
    client.batch_execute(&format!("LISTEN {schema}"))?;
    if std::mem::take(down) {
        tracing::info!("store: hearing other brokers' changes again");
    }
    // Whatever changed while nobody listened: every watcher looks once.
    match changes.upgrade() {
        Some(c) => {
            c.wake(Topic::Admin);
            c.wake(Topic::Approvals);
        }
        None => return Ok(()),
    }
    loop {
        let mut notifications = client.notifications();
        let mut heard = notifications.timeout_iter(WAIT);
        // Bounded: each turn waits at most WAIT, and ends once the broker
        // lets go.
        loop {
            let next = heard.next()?;
            let Some(c) = changes.upgrade() else {
                return Ok(());
            };
            match next.as_ref().and_then(|n| Topic::of(n.payload())) {
                Some(topic) => c.wake(topic),
                None if next.is_none() => break,
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Topic;

    #[test]
    fn a_topic_is_read_back_from_its_payload() {
        for t in [Topic::Admin, Topic::Approvals] {
            assert_eq!(Topic::of(t.key()), Some(t));
        }
        assert_eq!(Topic::of("policy"), None);
    }
}
