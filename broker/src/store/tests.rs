//! The suite every broker-store backend passes: the same functions run on
//! an SQLite file and on a schema of the machine's PostgreSQL
//! (`HOOP_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::approval::{ApprovalRequest, ApprovalState};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store location of one backend, removed when dropped.
struct Place(StoreLocation);

impl Place {
    fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("hoop-store-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(StoreLocation::Sqlite(dir.join("broker.db")))
    }

    fn postgres() -> Self {
        Self(StoreLocation::Postgres {
            url: std::env::var("HOOP_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            schema: unique("s"),
        })
    }

    fn open(&self) -> BrokerStore {
        BrokerStore::open(&self.0).unwrap_or_else(|e| panic!("{}: {e:#}", self.0))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        match &self.0 {
            StoreLocation::Sqlite(p) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            StoreLocation::Postgres { url, schema } => {
                if let Ok(mut c) = ::postgres::Client::connect(url, ::postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}

/// One `#[test]` per suite function, per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Place::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::Place::postgres()); })*
        }
    };
}

suite!(
    revocations_round_trip_expire_and_lift,
    another_connection_sees_a_revocation,
    tool_definitions_are_baselined_seen_and_accepted,
    approvals_are_saved_and_released_once,
    deciders_at_once_take_turns_and_lose_nothing,
    handles_are_kept_for_who_received_them,
    held_tasks_are_kept_and_old_ones_dropped,
    a_store_reopens_with_its_data,
);

fn revocations_round_trip_expire_and_lift(place: &Place) {
    let s = place.open();
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
    assert_ne!(carol.id, temp.id);
    assert_eq!(carol.reason, "off-boarded");
    assert_eq!(temp.issuer.as_deref(), Some("https://idp"));
    assert_eq!(temp.expires_at, Some(2000));
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
    assert_eq!(
        s.revocation(carol.id).unwrap().unwrap().lifted_at,
        Some(1600)
    );
    assert!(s
        .revocations(false, 1700)
        .unwrap()
        .iter()
        .all(|r| r.subject == "bob"));
    let all = s.revocations(true, 3000).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, temp.id, "newest first");
    assert_eq!(s.revocation(9_999).unwrap(), None);
    if let StoreLocation::Sqlite(path) = &place.0 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

/// What the revocation watcher relies on: another connection's (another
/// process's, another replica's) change moves the version this one reads.
fn another_connection_sees_a_revocation(place: &Place) {
    let watcher = place.open();
    let v0 = watcher.version(changes::Topic::Admin).unwrap();
    let admin = place.open();
    let r = admin
        .add_revocation(
            &NewRevocation {
                subject: "dave",
                issuer: None,
                reason: "left",
                expires_at: None,
                created_by: "admin",
            },
            10,
        )
        .unwrap();
    let v1 = watcher.version(changes::Topic::Admin).unwrap();
    assert_ne!(v1, v0);
    assert_eq!(watcher.revocations(false, 11).unwrap()[0].subject, "dave");
    assert!(admin.lift_revocation(r.id, 12).unwrap());
    assert_ne!(watcher.version(changes::Topic::Admin).unwrap(), v1);
    // Nothing changed, nothing moves.
    let v2 = watcher.version(changes::Topic::Admin).unwrap();
    assert!(!admin.lift_revocation(r.id, 13).unwrap());
    assert_eq!(watcher.version(changes::Topic::Admin).unwrap(), v2);
}

fn tool_definitions_are_baselined_seen_and_accepted(place: &Place) {
    let s = place.open();
    let seen = |tool: &str, hash: &str| vec![(tool.to_owned(), hash.to_owned())];
    s.record_tools_seen("files", &seen("read", "h1"), true, 1)
        .unwrap();
    s.record_tools_seen("files", &seen("write", "w1"), true, 1)
        .unwrap();
    // A later list: seen, not accepted.
    s.record_tools_seen("files", &seen("read", "h2"), false, 2)
        .unwrap();
    s.record_tools_seen("mail", &seen("send", "m1"), true, 2)
        .unwrap();
    let mut baselines = s.tool_baselines().unwrap();
    baselines.sort();
    assert_eq!(
        baselines,
        [
            ("files".into(), "read".into(), "h1".into()),
            ("files".into(), "write".into(), "w1".into()),
            ("mail".into(), "send".into(), "m1".into()),
        ]
    );
    let status = s.tool_status(Some("files")).unwrap();
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].tool, "read");
    assert_eq!(status[0].accepted.as_deref(), Some("h1"));
    assert_eq!(status[0].seen.as_deref(), Some("h2"));
    assert_eq!(s.tool_status(None).unwrap().len(), 3);
    // Accepting what is already accepted changes nothing; accepting moves
    // the version the brokers watch, so they reload what was accepted.
    let v0 = s.version(changes::Topic::Admin).unwrap();
    assert_eq!(
        s.accept_tools("files", Some("write"), "admin", 3).unwrap(),
        0
    );
    assert_eq!(s.version(changes::Topic::Admin).unwrap(), v0);
    assert_eq!(s.accept_tools("files", None, "admin", 3).unwrap(), 1);
    assert_ne!(s.version(changes::Topic::Admin).unwrap(), v0);
    let status = s.tool_status(Some("files")).unwrap();
    assert_eq!(status[0].accepted.as_deref(), Some("h2"));
    assert_eq!(s.accept_tools("nope", None, "admin", 3).unwrap(), 0);
}

fn request(id: u64, state: &str) -> ApprovalRequest {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "state": state,
        "binding": {
            "subject": "alice", "issuer": "https://idp", "target": "models",
            "method": "tools/call", "name": "deploy_model", "args_digest": "d",
            "tool_fingerprint": null, "rule": "deploy", "policy_version": "v1"
        },
        "requester": {"subject": "alice", "issuer": "https://idp", "groups": ["eng"], "kind": "human"},
        "reason": "release",
        "arguments": {"version": "7"},
        "approvers": ["ml-leads"],
        "quorum": 1,
        "human_approver": false,
        "created_at": 100 + id,
        "expires_at": 1000,
        "exchange": format!("x{id}"),
    }))
    .unwrap()
}

fn approvals_are_saved_and_released_once(place: &Place) {
    let s = place.open();
    assert_eq!(s.last_approval_id().unwrap(), 0);
    assert!(s.open_approvals().unwrap().is_empty());
    s.save_approval(&request(1, "pending")).unwrap();
    s.save_approval(&request(2, "approved")).unwrap();
    s.save_approval(&request(3, "denied")).unwrap();
    assert_eq!(s.last_approval_id().unwrap(), 3);
    let open: Vec<u64> = s.open_approvals().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(open, [1, 2]);
    let recent: Vec<u64> = s
        .recent_approvals(2)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, [3, 2], "newest first, at most the limit");
    // Saving again replaces the request.
    let mut one = request(1, "approved");
    one.reason = "changed".into();
    s.save_approval(&one).unwrap();
    assert_eq!(s.approval(1).unwrap().unwrap().reason, "changed");
    assert_eq!(
        s.approval(1).unwrap().unwrap().state,
        ApprovalState::Approved
    );
    // A one-call approval is released once, whoever asks second.
    let other = place.open();
    let mut released = request(2, "released");
    released.state = ApprovalState::Released;
    assert!(s.release_approval(&released).unwrap());
    assert!(!other.release_approval(&released).unwrap());
    assert!(
        !s.release_approval(&request(3, "released")).unwrap(),
        "not approved"
    );
    assert_eq!(
        other.approval(2).unwrap().unwrap().state,
        ApprovalState::Released
    );
    assert_eq!(s.approval(42).unwrap(), None);
    // Numbers handed out by the store: distinct across connections (and
    // so across replicas), never below the floor given.
    let a = s.next_approval_id(4).unwrap();
    let b = other.next_approval_id(4).unwrap();
    let c = s.next_approval_id(2).unwrap();
    assert_eq!((a, b, c), (4, 5, 6));
    assert_eq!(other.next_approval_id(10).unwrap(), 10);
}

/// Two decisions on one request at the same moment, through two
/// connections (two brokers): the second waits for the first's commit and
/// builds on it, so neither vote is lost. A decision that fails writes
/// nothing.
fn deciders_at_once_take_turns_and_lose_nothing(place: &Place) {
    let s = place.open();
    s.save_approval(&request(1, "pending")).unwrap();
    let (started, first_holds) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            place
                .open()
                .decide_approval(1, |mut r| {
                    started.send(()).unwrap();
                    // Long enough for the second to arrive meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    r.reason.push_str(" +a");
                    Ok::<_, ()>(r)
                })
                .unwrap()
        });
        first_holds
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let second = place
            .open()
            .decide_approval(1, |mut r| {
                r.reason.push_str(" +b");
                Ok::<_, ()>(r)
            })
            .unwrap();
        assert_eq!(second.unwrap().unwrap().reason, "release +a +b");
        assert_eq!(first.join().unwrap().unwrap().unwrap().reason, "release +a");
    });
    assert_eq!(s.approval(1).unwrap().unwrap().reason, "release +a +b");
    let refused = s
        .decide_approval(1, |mut r| {
            r.reason.push_str(" +c");
            Err::<ApprovalRequest, _>("not an approver")
        })
        .unwrap();
    assert_eq!(refused.unwrap().unwrap_err(), "not an approver");
    assert_eq!(s.approval(1).unwrap().unwrap().reason, "release +a +b");
    assert!(s.decide_approval(42, Ok::<_, ()>).unwrap().is_none());
}

fn handles_are_kept_for_who_received_them(place: &Place) {
    let s = place.open();
    let alice = |expires_at| StoredHandle {
        subject: "alice".into(),
        issuer: "https://idp".into(),
        origin: r#"{"method":"tools/call","name":"report","arguments":null}"#.into(),
        expires_at,
        poisoned: false,
    };
    assert!(!s.save_handle("task\nbank\nt1", &alice(200), 100).unwrap());
    // Another connection (another replica) finds it until it expires.
    let other = place.open();
    assert_eq!(
        other.handle("task\nbank\nt1", 150).unwrap(),
        Some(alice(200))
    );
    assert_eq!(other.handle("task\nbank\nt1", 200).unwrap(), None);
    assert_eq!(other.handle("task\nbank\nt2", 150).unwrap(), None);
    // Minted again for alice: it lives longer.
    other
        .save_handle("task\nbank\nt1", &alice(300), 100)
        .unwrap();
    assert_eq!(s.handle("task\nbank\nt1", 250).unwrap(), Some(alice(300)));
    // Minted for bob too: good for nobody, its life not extended.
    let mut bob = alice(900);
    bob.subject = "bob".into();
    assert!(
        s.save_handle("task\nbank\nt1", &bob, 100).unwrap(),
        "poisoned"
    );
    let poisoned = other.handle("task\nbank\nt1", 250).unwrap().unwrap();
    assert!(poisoned.poisoned);
    assert_eq!(
        (poisoned.subject.as_str(), poisoned.expires_at),
        ("alice", 300)
    );
    // Expired ones are cleared as new ones come.
    s.save_handle("state\nbank\nabc", &alice(1000), 400)
        .unwrap();
    assert_eq!(s.handle("task\nbank\nt1", 0).unwrap(), None);
}

fn held_tasks_are_kept_and_old_ones_dropped(place: &Place) {
    let s = place.open();
    s.save_task("t1", 1, "working", 10, "{\"id\":\"t1\"}")
        .unwrap();
    s.save_task("t2", 1, "completed", 20, "{\"id\":\"t2\"}")
        .unwrap();
    s.save_task("t3", 2, "failed", 5, "{\"id\":\"t3\"}")
        .unwrap();
    // Replaced, not added.
    s.save_task("t1", 1, "working", 30, "{\"id\":\"t1\",\"n\":2}")
        .unwrap();
    let kept = s.load_tasks(15, 10).unwrap();
    assert_eq!(kept, ["{\"id\":\"t1\",\"n\":2}", "{\"id\":\"t2\"}"]);
    assert_eq!(s.load_tasks(0, 1).unwrap().len(), 1, "at most the limit");
}

fn a_store_reopens_with_its_data(place: &Place) {
    {
        let s = place.open();
        s.save_approval(&request(7, "pending")).unwrap();
        s.record_tools_seen("files", &[("read".into(), "h".into())], true, 1)
            .unwrap();
    }
    let s = BrokerStore::open_existing(&place.0).unwrap();
    assert_eq!(s.last_approval_id().unwrap(), 7);
    assert_eq!(s.tool_baselines().unwrap().len(), 1);
    assert_eq!(s.location(), &place.0);
}

#[test]
fn an_admin_command_does_not_create_a_store_no_broker_reads() {
    let place = Place::sqlite();
    let err = BrokerStore::open_existing(&place.0).err().unwrap();
    assert!(err.to_string().contains("no broker store at"), "{err}");
}

#[test]
fn a_postgres_location_reads_without_its_password() {
    let l = StoreLocation::Postgres {
        url: "postgres://hoop:s3cret@db.internal:6432/bank".into(),
        schema: "hoop".into(),
    };
    assert_eq!(
        l.to_string(),
        "postgres://hoop@db.internal:6432/bank (schema hoop)"
    );
    let bad = StoreLocation::Postgres {
        url: "postgres://hoop@127.0.0.1:9/x".into(),
        schema: "hoop".into(),
    };
    let err = BrokerStore::open(&bad).err().unwrap();
    assert!(
        err.to_string()
            .contains("cannot connect to the broker store"),
        "{err}"
    );
    let unsafe_schema = StoreLocation::Postgres {
        url: "postgres://hoop@127.0.0.1:9/x".into(),
        schema: "a;drop".into(),
    };
    // Refused for its name, before any connection is tried.
    let err = BrokerStore::open(&unsafe_schema).err().unwrap();
    assert!(err.to_string().contains("store schema"), "{err}");
}

/// On PostgreSQL a committed change wakes the watchers of other brokers
/// at once, each of its own topic, through LISTEN/NOTIFY.
#[test]
fn postgres_announces_changes_to_listening_brokers() {
    let place = Place::postgres();
    let store = place.open();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let changes = changes::StoreChanges::listen(&place.0).expect("PostgreSQL is listened to");
    // Waits (bounded) for `topic`'s watcher to be woken; false if it
    // was not within `within`.
    let woken = |topic, within| {
        rt.block_on(async {
            let mut never = tokio::time::interval(std::time::Duration::from_secs(3600));
            never.tick().await;
            tokio::time::timeout(
                within,
                changes::tick_or_change(&mut never, Some(&changes), topic),
            )
            .await
            .is_ok()
        })
    };
    let long = std::time::Duration::from_secs(10);
    let short = std::time::Duration::from_millis(300);
    // Once connected the listener wakes every watcher, to catch up.
    assert!(woken(changes::Topic::Admin, long));
    assert!(woken(changes::Topic::Approvals, long));
    assert!(!woken(changes::Topic::Admin, short), "nothing changed yet");

    store
        .add_revocation(
            &NewRevocation {
                subject: "mallory",
                issuer: None,
                reason: "left",
                expires_at: None,
                created_by: "test",
            },
            1,
        )
        .unwrap();
    assert!(
        woken(changes::Topic::Admin, long),
        "a revocation is announced"
    );
    assert!(
        !woken(changes::Topic::Approvals, short),
        "to its own topic only"
    );

    store.save_approval(&request(1, "pending")).unwrap();
    assert!(
        woken(changes::Topic::Approvals, long),
        "an approval is announced"
    );
    assert!(!woken(changes::Topic::Admin, short));
}

/// SQLite's brokers poll the file: there is nothing to listen to.
#[test]
fn sqlite_is_not_listened_to() {
    assert!(changes::StoreChanges::listen(&Place::sqlite().0).is_none());
}
