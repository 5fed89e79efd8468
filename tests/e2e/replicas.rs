//! Several brokers, one truth: two brokers on one PostgreSQL store (the
//! machine's own at 127.0.0.1:5432, `HOOP_TEST_POSTGRES`), each with its
//! own listener and state, sharing revocations, accepted tool definitions,
//! approvals and one audit log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

fn postgres_url() -> String {
    std::env::var("HOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The store's schema and the audit log's beside it, dropped at the end.
struct Schemas(String);

impl Drop for Schemas {
    fn drop(&mut self) {
        let mut psql = Command::new("psql");
        psql.arg(postgres_url()).args([
            "-qc",
            &format!(
                "DROP SCHEMA IF EXISTS {0} CASCADE; DROP SCHEMA IF EXISTS {0}_audit CASCADE;",
                self.0
            ),
        ]);
        let _ = run_bounded(psql, Duration::from_secs(20));
    }
}

/// A dev broker in `dir` on the shared store, signing the one audit log
/// with the shared key.
fn replica(dir: &Path, schema: &str, key: &Path, targets: &str) -> Broker {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nstore = {{ postgres = \"{}\", schema = \"{schema}\" }}\npolicy = \"{}\"\n[audit]\nsigning_key = \"{}\"\nreaders = [\"eng\"]\ncheckpoint_every = 5\n{targets}",
            free_udp_port(),
            postgres_url(),
            tests_dir().join("../cli/src/demo_server/policy.toml").display(),
            key.display()
        ),
    )
    .unwrap();
    Broker::start_with(dir, config, dir.join("state"))
}

fn admin(config: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin("hoop-broker"));
    c.args(args).arg("--config").arg(config);
    run_bounded(c, Duration::from_secs(30))
}

fn echoed(msgs: &[Value]) -> bool {
    msgs.iter()
        .any(|m| m["result"]["content"][0]["text"] == "through a replica")
}

#[test]
fn two_brokers_on_postgres_share_approvals_revocations_and_one_audit_log() {
    let dir = scratch();
    let schema = Schemas(format!(
        "e2e_{}_{}",
        std::process::id(),
        now_unix() % 1_000_000
    ));
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let key: PathBuf = dir.path().join("shared/audit-signing.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let target = http_target("demo", &url);
    let a = replica(&dir.path().join("a"), &schema.0, &key, &target);
    let b = replica(&dir.path().join("b"), &schema.0, &key, &target);

    // A session through each replica.
    let via_a = Connect::start(dir.path(), &a, "demo", &["--no-local-auth"]);
    let via_b = Connect::start(dir.path(), &b, "demo", &["--no-local-auth"]);
    let echo = |url: &str, id: u64| call_tool(url, id, "echo", r#"{"text":"through a replica"}"#);
    assert!(echoed(&echo(&via_a.url, 1).1), "through a");
    assert!(echoed(&echo(&via_b.url, 2).1), "through b");

    // A call held for approval on A, granted by bob through B: it runs on
    // A, once.
    let hoop = |broker: &Broker, who: &str, args: &[&str]| {
        let mut c = Command::new(bin("hoop"));
        c.args(args)
            .args(broker.connect_args(who))
            .env("HOOP_CONFIG", empty_config(dir.path()))
            .env_remove("HOOP_TOKEN");
        c
    };
    let held = hoop(
        &a,
        "alice",
        &[
            "exec",
            "mcp",
            "demo",
            "--tool",
            "deploy_model",
            "--args",
            r#"{"model":"fraud","version":"9","environment":"production"}"#,
            "--reason",
            "release 9",
            "--wait",
            "60s",
        ],
    );
    let run = std::thread::spawn(move || run_bounded(held, Duration::from_secs(90)));
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline: B learns of A's request from the store.
    let id = loop {
        let out = run_bounded(
            hoop(&b, "bob", &["approve", "list", "--json"]),
            Duration::from_secs(30),
        );
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        let pending = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["state"] == "pending");
        if let Some(r) = pending {
            break r["id"].as_u64().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "b never listed a's request");
        std::thread::sleep(Duration::from_millis(100));
    };
    let granted = run_bounded(
        hoop(&b, "bob", &["approve", "grant", &id, "--reason", "CHG-9"]),
        Duration::from_secs(30),
    );
    assert_eq!(granted.status, Some(0), "{}", granted.stderr);
    let out = run.join().unwrap();
    assert_eq!(
        out.status,
        Some(0),
        "the held call ran on a: {}",
        out.stderr
    );
    assert!(
        out.stdout.contains("deployed model fraud version 9"),
        "{}",
        out.stdout
    );
    let deployed = read_record(&record)
        .iter()
        .filter(|r| r["method"] == "tools/call" && r["name"] == "deploy_model")
        .count();
    assert_eq!(deployed, 1, "the approval released the call once");

    // Revoked through A's store: B cuts alice's live session within 2 s.
    let out = admin(
        &a.config,
        &[
            "revoke",
            "--subject",
            "alice",
            "--reason",
            "left the bank",
            "--json",
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let revoked_at = Instant::now();
    let mut cut = None;
    // Bounded: 60 attempts, 50 ms apart.
    for i in 0..60 {
        let (_, msgs) = echo(&via_b.url, 10 + i);
        if !echoed(&msgs) {
            cut = Some((msgs, revoked_at.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (msgs, after) = cut.expect("broker b never cut alice off");
    assert!(
        after <= Duration::from_secs(2),
        "cut off only after {after:?}"
    );
    assert!(format!("{msgs:?}").contains("revoked"), "{msgs:?}");
    // And B lists the revocation A's admin made.
    let out = admin(&b.config, &["revocations", "--json"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list[0]["subject"], "alice", "{list}");

    // One audit log: events from both replicas, in one tree that verifies
    // whole, read through either broker's config.
    let found = |config: &Path| -> Vec<Value> {
        let out = admin(
            config,
            &["audit", "search", "--type", "mcp.request", "--json"],
        );
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let events = found(&b.config);
    let seqs: std::collections::BTreeSet<u64> =
        events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), events.len(), "each seq once: {events:#?}");
    let echoes = |events: &[Value]| events.iter().filter(|e| e["name"] == "echo").count();
    assert!(echoes(&events) >= 2, "both replicas' calls: {events:#?}");
    assert_eq!(found(&a.config).len(), events.len(), "the same log from a");
    drop(via_a);
    drop(via_b);
    for broker in [&a, &b] {
        let out = admin(&broker.config, &["audit", "verify"]);
        assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    }
    // And by an implementation hoop did not write: Go's sumdb/note and
    // sumdb/tlog check the export of both replicas' events as one log.
    let export = dir.path().join("both.jsonl");
    let out = admin(
        &a.config,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let key = admin(&b.config, &["audit", "pubkey"])
        .stdout
        .trim()
        .to_owned();
    let mut go = Command::new(tests_dir().join("verifier-go/run.sh"));
    go.arg("-key").arg(&key).arg(&export);
    let go = run_bounded(go, Duration::from_secs(300));
    assert_eq!(
        go.status,
        Some(0),
        "Go verifier: {}{}",
        go.stdout,
        go.stderr
    );
}
