//! The handle table's unit tests.
use super::*;
use crate::identity::IdentityKind;
use bytes::Bytes;

fn who(subject: &str) -> Identity {
    Identity {
        subject: subject.into(),
        email: None,
        groups: vec![],
        issuer: "dev".into(),
        kind: IdentityKind::Human,
    }
}

fn msg(body: &str) -> McpMessage {
    McpMessage::parse(body.as_bytes()).expect("valid")
}

fn call(id: u32) -> McpMessage {
    msg(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"long_report","arguments":{{"topic":"q3"}}}}}}"#
    ))
}

fn task_call(method: &str, task: &str) -> McpMessage {
    msg(&format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"{method}","params":{{"taskId":"{task}"}}}}"#
    ))
}

#[test]
fn a_task_is_usable_by_its_receiver_only() {
    let t = Arc::new(HandleTable::default());
    let (alice, bob) = (who("alice"), who("bob"));
    let obs = t
        .observer(&alice, "bank", &Arc::new(call(1)))
        .expect("a request");
    obs.observe_bytes(br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t-1","status":"working"}}"#);
    let o = t
        .check(&alice, "bank", &task_call("tasks/get", "t-1"))
        .expect("alice's own task")
        .expect("an origin");
    assert_eq!(o.method, "tools/call");
    assert_eq!(o.name.as_deref(), Some("long_report"));
    assert_eq!(o.arguments, Some(serde_json::json!({"topic": "q3"})));
    for m in TASK_METHODS {
        let e = t.check(&bob, "bank", &task_call(m, "t-1")).expect_err(m);
        assert_eq!(e.code, codes::HANDLE_NOT_YOURS);
    }
    // Another target, or an id never issued: refused alike.
    let e = t
        .check(&alice, "other", &task_call("tasks/get", "t-1"))
        .expect_err("other target");
    assert_eq!(e.code, codes::HANDLE_NOT_YOURS);
    let e = t
        .check(&alice, "bank", &task_call("tasks/get", "t-2"))
        .expect_err("never issued");
    assert_eq!(e.code, codes::HANDLE_NOT_YOURS);
    // No taskId at all.
    let e = t
        .check(
            &alice,
            "bank",
            &msg(r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{}}"#),
        )
        .expect_err("no id");
    assert_eq!(e.code, codes::INVALID_PARAMS);
}

#[test]
fn sep1686_tasks_and_other_ids_are_recorded_too() {
    let t = Arc::new(HandleTable::default());
    let alice = who("alice");
    let obs = t
        .observer(&alice, "bank", &Arc::new(call(7)))
        .expect("a request");
    // A progress notification and another id's answer record nothing.
    obs.observe_bytes(
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"taskId":"x"}}"#,
    );
    obs.observe_bytes(br#"{"jsonrpc":"2.0","id":8,"result":{"resultType":"task","taskId":"y"}}"#);
    assert!(t.is_empty());
    obs.observe_bytes(
        br#"{"jsonrpc":"2.0","id":7,"result":{"task":{"taskId":"s-1","status":"working"}}}"#,
    );
    assert!(t
        .check(&alice, "bank", &task_call("tasks/result", "s-1"))
        .is_ok());
    assert_eq!(t.len(), 1);
}

#[test]
fn request_state_is_bound_to_receiver_method_and_name() {
    let t = Arc::new(HandleTable::default());
    let (alice, bob) = (who("alice"), who("bob"));
    let obs = t
        .observer(&alice, "bank", &Arc::new(call(3)))
        .expect("a request");
    obs.observe_bytes(br#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"input_required","inputRequests":{},"requestState":"opaque-1"}}"#);
    let retry = |name: &str, state: &str| {
        msg(&format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"{name}","arguments":{{}},"requestState":"{state}"}}}}"#
        ))
    };
    assert!(t
        .check(&alice, "bank", &retry("long_report", "opaque-1"))
        .is_ok());
    for (who, name, state) in [
        (&bob, "long_report", "opaque-1"),
        (&alice, "delete_model", "opaque-1"),
        (&alice, "long_report", "forged"),
    ] {
        let e = t
            .check(who, "bank", &retry(name, state))
            .expect_err("refused");
        assert_eq!(e.code, codes::HANDLE_NOT_YOURS, "{}", e.message);
    }
    let e = t
        .check(
            &alice,
            "bank",
            &msg(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","requestState":5}}"#),
        )
        .expect_err("not a string");
    assert_eq!(e.code, codes::INVALID_PARAMS);
}

#[test]
fn the_table_is_bounded_per_identity() {
    let t = Arc::new(HandleTable::default());
    let alice = who("alice");
    let bob = who("bob");
    let obs = t
        .observer(&bob, "bank", &Arc::new(call(1)))
        .expect("a request");
    obs.observe_bytes(
        br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"bob-1"}}"#,
    );
    let obs = t
        .observer(&alice, "bank", &Arc::new(call(1)))
        .expect("a request");
    for i in 0..MAX_PER_IDENTITY + 10 {
        obs.observe_bytes(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"resultType":"task","taskId":"a-{i}"}}}}"#
            )
            .as_bytes(),
        );
    }
    assert_eq!(t.len(), MAX_PER_IDENTITY + 1);
    // Alice's oldest went, her newest and bob's stayed.
    assert!(t
        .check(&alice, "bank", &task_call("tasks/get", "a-0"))
        .is_err());
    let newest = format!("a-{}", MAX_PER_IDENTITY + 9);
    assert!(t
        .check(&alice, "bank", &task_call("tasks/get", &newest))
        .is_ok());
    assert!(t
        .check(&bob, "bank", &task_call("tasks/get", "bob-1"))
        .is_ok());
}

#[test]
fn a_handle_issued_twice_is_refused_for_both() {
    let t = Arc::new(HandleTable::default());
    let (alice, bob) = (who("alice"), who("bob"));
    for w in [&alice, &bob] {
        let obs = t
            .observer(w, "bank", &Arc::new(call(1)))
            .expect("a request");
        obs.observe_bytes(
            br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"dup"}}"#,
        );
    }
    assert!(t
        .check(&alice, "bank", &task_call("tasks/get", "dup"))
        .is_err());
    assert!(t
        .check(&bob, "bank", &task_call("tasks/get", "dup"))
        .is_err());
}

#[test]
fn task_lists_show_only_the_callers_tasks() {
    let t = Arc::new(HandleTable::default());
    let (alice, bob) = (who("alice"), who("bob"));
    let obs = t
        .observer(&alice, "bank", &Arc::new(call(1)))
        .expect("a request");
    obs.observe_bytes(
        br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"mine"}}"#,
    );
    let body = Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":5,"result":{"tasks":[{"taskId":"mine"},{"taskId":"theirs"},{"x":1}]}}"#,
    );
    let filtered = |who: &Identity| {
        let mut m = ServerMessage::parse(body.clone());
        t.filter_task_list(&mut m, who, "bank");
        serde_json::from_slice::<Value>(&m.into_bytes()).expect("json")
    };
    let v = filtered(&alice);
    assert_eq!(
        v["result"]["tasks"],
        serde_json::json!([{"taskId": "mine"}])
    );
    let v = filtered(&bob);
    assert_eq!(v["result"]["tasks"], serde_json::json!([]));
}

/// A schema of the machine's PostgreSQL (`HOOP_TEST_POSTGRES`) for one
/// test, dropped when it ends.
struct SharedStore(StoreLocation);

impl SharedStore {
    fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000);
        Self(StoreLocation::Postgres {
            url: std::env::var("HOOP_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            schema: format!("{prefix}_{}_{nanos}", std::process::id()),
        })
    }

    /// Waits (bounded) until the store holds `key`, as the broker writes
    /// it behind the answer.
    async fn holds(&self, key: &'static str) -> bool {
        for _ in 0..100 {
            let store = self.0.clone();
            let there = tokio::task::spawn_blocking(move || {
                crate::store::BrokerStore::open(&store)
                    .and_then(|s| s.handle(key, crate::identity::now_unix()))
            })
            .await
            .unwrap()
            .unwrap();
            if there.is_some() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        let StoreLocation::Postgres { url, schema } = self.0.clone() else {
            return;
        };
        // The blocking client runs a runtime of its own: on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = ::postgres::Client::connect(&url, ::postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        })
        .join();
    }
}

const MINTED_T9: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t-9","status":"working"}}"#;

/// Two replicas on one PostgreSQL store: a task minted for alice through
/// one is hers through the other, and bob's presenting it there is
/// refused. Without a shared store it is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_minted_through_one_replica_is_its_receivers_through_another() {
    let store = SharedStore::new("handles");
    let (a, b) = (
        Arc::new(HandleTable::new(Some(&store.0))),
        Arc::new(HandleTable::new(Some(&store.0))),
    );
    let alone = HandleTable::new(None);
    let (alice, bob) = (who("alice"), who("bob"));
    a.observer(&alice, "bank", &Arc::new(call(1)))
        .expect("a request")
        .observe_bytes(MINTED_T9);
    assert!(
        store.holds("task\nbank\nt-9").await,
        "the handle reached the shared store"
    );
    let poll = task_call("tasks/get", "t-9");
    assert!(
        !shared::recall_and_check(&b, &bob, "bank", &poll).await,
        "bob may not use alice's task through another replica"
    );
    assert!(
        shared::recall_and_check(&b, &alice, "bank", &poll).await,
        "alice's task is hers through another replica"
    );
    let origin = b.check(&alice, "bank", &poll).unwrap().expect("an origin");
    assert_eq!(
        origin.name.as_deref(),
        Some("long_report"),
        "judged as the call that started it"
    );
    assert!(
        !shared::recall_and_check(&alone, &alice, "bank", &poll).await,
        "without a shared store it is unknown"
    );
}

/// An upstream that mints one task id for alice through one replica and
/// for bob through the other: refused to both, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_minted_for_two_identities_through_two_replicas_is_refused_to_both() {
    let store = SharedStore::new("poison");
    let (a, b) = (
        Arc::new(HandleTable::new(Some(&store.0))),
        Arc::new(HandleTable::new(Some(&store.0))),
    );
    let (alice, bob) = (who("alice"), who("bob"));
    a.observer(&alice, "bank", &Arc::new(call(1)))
        .expect("a request")
        .observe_bytes(MINTED_T9);
    assert!(store.holds("task\nbank\nt-9").await);
    b.observer(&bob, "bank", &Arc::new(call(1)))
        .expect("a request")
        .observe_bytes(MINTED_T9);
    let poll = task_call("tasks/get", "t-9");
    // Bounded: B hears back from its write behind the answer.
    let mut refused_on_b = false;
    for _ in 0..100 {
        if b.check(&bob, "bank", &poll).is_err() {
            refused_on_b = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused_on_b, "bob's copy on b is poisoned");
    assert!(
        !shared::recall_and_check(&a, &alice, "bank", &poll).await,
        "alice's copy on a is poisoned once a looks at the store"
    );
}
