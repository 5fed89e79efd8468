//! Several brokers, one truth: two brokers on one PostgreSQL store (the
//! machine's own at 127.0.0.1:5432, `HOOP_TEST_POSTGRES`), each with its
//! own listener and state, sharing revocations, accepted tool definitions,
//! approvals and one audit log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoop_e2e::replicas::{
    admin_port, postgres_tls_url, postgres_url, replica, replica_at, replica_with, Schemas,
};
use hoop_e2e::stateless::rpc;
use hoop_e2e::*;
use serde_json::Value;

/// `/metrics` of the admin listener at `port`, read by the Prometheus
/// project's own parser (Python `prometheus_client`, OpenMetrics): every
/// sample as `[name, labels, value]`.
fn scrape(port: u16) -> Vec<Value> {
    let r = http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = r.text().unwrap();
    let file = std::env::temp_dir().join(format!("hoop-metrics-{}-{port}.txt", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let mut py = Command::new(python());
    py.args([
        "-c",
        "import json, sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nout = [[s.name, s.labels, s.value] for f in parse(open(sys.argv[1]).read()) for s in f.samples]\nprint(json.dumps(out))",
    ])
    .arg(&file);
    let out = run_bounded(py, Duration::from_secs(30));
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        out.status,
        Some(0),
        "the parser refused it: {}\n{text}",
        out.stderr
    );
    serde_json::from_str::<Vec<Value>>(out.stdout.trim()).unwrap()
}

/// The sum of the samples `name` whose labels include `labels`; `None`
/// when there is none.
fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .filter_map(|s| s[2].as_f64())
        .collect();
    (!found.is_empty()).then(|| found.iter().sum())
}

/// Two replicas on `schema` in `dir`/a and `dir`/b that are one service:
/// B serves A's certificate and trusts A's dev identities (its state
/// starts as a copy of A's), so a client may use either. Under `policy`,
/// or the demo's. B reaches PostgreSQL over TLS.
fn twins(
    dir: &Path,
    schema: &str,
    key: &Path,
    policy: Option<&Path>,
    rest: &str,
) -> (Broker, Broker) {
    let demo_policy = tests_dir().join("../cli/src/demo_server/policy.toml");
    let policy = policy.unwrap_or(&demo_policy);
    let a = replica_with(&dir.join("a"), schema, key, policy, "", rest);
    let b_dir = dir.join("b");
    std::fs::create_dir_all(b_dir.join("state")).unwrap();
    for f in ["signing-key.pem", "broker-cert.pem", "broker-key.pem"] {
        std::fs::copy(a.state.join(f), b_dir.join("state").join(f)).unwrap();
    }
    // B reaches PostgreSQL over TLS (store, audit log and listener), A
    // over plain TCP: both work on one truth.
    // Named after the schema, so its sessions are told from any other's.
    let tls_url = format!("{}&application_name={schema}_b", postgres_tls_url());
    let b = replica_at(&tls_url, &b_dir, schema, key, policy, "", rest);
    assert_eq!(a.pin, b.pin);
    // B's long-lived connections (its audit writer's, its listener's) are
    // TLS sessions, as PostgreSQL itself reports them.
    let mut psql = Command::new("psql");
    psql.arg(postgres_url()).args([
        "-Atc",
        &format!("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = '{schema}_b'"),
    ]);
    let out = run_bounded(psql, Duration::from_secs(20));
    let tls: u32 = out.stdout.trim().parse().unwrap_or(0);
    assert!(
        tls >= 2,
        "b's connections over TLS: {}{}",
        out.stdout,
        out.stderr
    );
    (a, b)
}

/// `hoop connect mcp TARGET` as `who` with both replicas' addresses (A
/// first): the endpoint and its URL.
fn connect_through(dir: &Path, a: &Broker, b: &Broker, who: &str, target: &str) -> (Proc, String) {
    let mut connect = Command::new(bin("hoop"));
    connect
        .args([
            "connect",
            "mcp",
            target,
            "--port",
            "0",
            "--json",
            "--no-local-auth",
        ])
        .arg("--broker")
        .arg(format!("{},{}", a.addr, b.addr))
        .args(["--pin", &a.pin, "--token-file"])
        .arg(a.token_file(who))
        .env("HOOP_CONFIG", empty_config(dir))
        .env_remove("HOOP_TOKEN");
    let mut endpoint = Proc::spawn(&format!("hoop-connect-{who}-{target}"), connect, dir);
    let line = endpoint.line(Duration::from_secs(20));
    let v: Value = serde_json::from_str(&line).unwrap();
    let url = v["url"].as_str().unwrap().to_owned();
    (endpoint, url)
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
    let schema = Schemas::unique("e2e");
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

    // What A counted, read by Prometheus' own parser: its calls, the
    // approval it waited for, its audit appends; and it is ready.
    let a_admin = admin_port(&dir.path().join("a"));
    let m = scrape(a_admin);
    let calls = sample(
        &m,
        "hoop_calls_total",
        &[("target", "demo"), ("method", "tools/call")],
    );
    assert!(calls.unwrap_or(0.0) >= 2.0, "{m:?}");
    assert!(
        sample(
            &m,
            "hoop_answers_total",
            &[("target", "demo"), ("outcome", "ok")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m:?}"
    );
    assert!(
        sample(&m, "hoop_audit_append_duration_seconds_count", &[]).unwrap_or(0.0) >= 4.0,
        "{m:?}"
    );
    assert!(
        sample(
            &m,
            "hoop_upstream_duration_seconds_count",
            &[("target", "demo")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m:?}"
    );
    assert!(
        sample(&m, "hoop_audit_events", &[]).unwrap_or(0.0) >= 4.0,
        "{m:?}"
    );
    assert_eq!(sample(&m, "hoop_audit_degraded", &[]), Some(0.0), "{m:?}");
    assert_eq!(
        sample(&m, "hoop_approvals_pending", &[]),
        Some(0.0),
        "{m:?}"
    );
    assert!(
        sample(&m, "hoop_connections", &[]).unwrap_or(0.0) >= 1.0,
        "{m:?}"
    );
    let ready = http()
        .get(format!("http://127.0.0.1:{a_admin}/readyz"))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

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
    // B counted the live connection it ended for the revocation.
    let m = scrape(admin_port(&dir.path().join("b")));
    let ended = sample(&m, "hoop_connections_revoked_total", &[]);
    assert!(ended.unwrap_or(0.0) >= 1.0, "{m:?}");
    // Both judge by the same policy, and say which.
    let policy_of = |m: &[Value]| -> Vec<String> {
        m.iter()
            .filter(|s| s[0] == "hoop_policy_version" && s[2] == 1.0)
            .map(|s| s[1]["version"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let b_policy = policy_of(&m);
    assert_eq!(b_policy.len(), 1, "{m:?}");
    assert_eq!(
        b_policy,
        policy_of(&scrape(admin_port(&dir.path().join("a"))))
    );
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

/// SIGTERM drains a broker: `/readyz` turns 503 at once, new connections
/// are refused, the call in flight finishes and is answered, and the
/// broker exits cleanly (then its clients' connections end with the
/// "draining" reason, which tells them to reconnect).
#[test]
fn sigterm_drains_the_calls_in_flight_before_the_broker_stops() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let admin = free_tcp_port();
    let mut broker = Broker::start(
        dir.path(),
        &format!(
            "drain_secs = 20\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            http_target("demo", &url)
        ),
    );
    let exec = |tool: &str, args: &str| {
        let mut c = Command::new(bin("hoop"));
        c.args(["exec", "mcp", "demo", "--tool", tool, "--args", args])
            .args(broker.connect_args("alice"))
            .env("HOOP_CONFIG", empty_config(dir.path()))
            .env_remove("HOOP_TOKEN");
        c
    };
    let slow = exec("slow_count", r#"{"steps":4,"delay_ms":600}"#);
    let run = std::thread::spawn(move || run_bounded(slow, Duration::from_secs(60)));
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline: the call reached the upstream.
    while !read_record(&record)
        .iter()
        .any(|r| r["method"] == "tools/call" && r["name"] == "slow_count")
    {
        assert!(Instant::now() < deadline, "the slow call never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut kill = Command::new("kill");
    kill.args(["-TERM", &broker.proc.pid().to_string()]);
    assert_eq!(run_bounded(kill, Duration::from_secs(5)).status, Some(0));
    let readyz = || {
        http()
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    // Bounded by the deadline.
    while readyz() != 503 {
        assert!(Instant::now() < deadline, "/readyz never said not ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A newcomer is turned away while the broker drains.
    let late = run_bounded(
        exec("echo", r#"{"text":"too late"}"#),
        Duration::from_secs(60),
    );
    assert_eq!(late.status, Some(4), "{}", late.stderr);
    // The call in flight is answered in full.
    let out = run.join().unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("counted 4"), "{}", out.stdout);
    assert_eq!(broker.proc.wait_exit(Duration::from_secs(30)), Some(0));
}

/// Two replicas behind one address list: a CI job's calls go on through
/// the other when one is killed (-9), a long-lived `hoop connect` loses at
/// most the call in flight, and nothing answered is missing from the log.
#[test]
fn when_a_replica_is_killed_the_cli_goes_on_through_the_other() {
    let dir = scratch();
    let schema = Schemas::unique("e2e_k");
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let key: PathBuf = dir.path().join("shared/audit-signing.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let target = http_target("demo", &url);
    let (mut a, b) = twins(dir.path(), &schema.0, &key, None, &target);
    let both = format!("{},{}", a.addr, b.addr);
    let token = a.token_file("alice");
    let exec = |text: &str| {
        let mut c = Command::new(bin("hoop"));
        c.args(["exec", "mcp", "demo", "--tool", "echo", "--args"])
            .arg(format!(r#"{{"text":"{text}"}}"#))
            .args(["--broker", &both, "--pin", &a.pin, "--token-file"])
            .arg(&token)
            .env("HOOP_CONFIG", empty_config(dir.path()))
            .env_remove("HOOP_TOKEN");
        run_bounded(c, Duration::from_secs(60))
    };
    let out = exec("before");
    assert_eq!(out.status, Some(0), "{}", out.stderr);

    // A long-lived endpoint through the same list, under load: four
    // clients in a closed loop, each call's text its own; A is killed
    // while they run.
    let (mut endpoint, url) = connect_through(dir.path(), &a, &b, "alice", "demo");
    assert!(echoed(
        &call_tool(&url, 1, "echo", r#"{"text":"through a replica"}"#).1
    ));
    let killed = Arc::new(AtomicBool::new(false));
    // Clients with an answered call: the kill waits for all four.
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (url, killed, running) = (url.clone(), killed.clone(), running.clone());
            std::thread::spawn(move || {
                // (text, answered, started after the kill)
                let mut calls: Vec<(String, bool, bool)> = Vec::new();
                // Bounded: 400 calls; ends once five went through after
                // the kill.
                for n in 0..400u64 {
                    let text = format!("load-{client}-{n}");
                    let after = killed.load(Ordering::SeqCst);
                    let (status, msgs) =
                        call_tool(&url, n, "echo", &format!(r#"{{"text":"{text}"}}"#));
                    let answered = status == 200
                        && msgs
                            .iter()
                            .any(|m| m["result"]["content"][0]["text"] == text.as_str());
                    if answered && !calls.iter().any(|c: &(String, bool, bool)| c.1) {
                        running.fetch_add(1, Ordering::SeqCst);
                    }
                    calls.push((text, answered, after));
                    if calls.iter().filter(|(_, ok, after)| *ok && *after).count() >= 5 {
                        break;
                    }
                }
                calls
            })
        })
        .collect();
    // Bounded: 30 s for the four clients to be under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the clients never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A few more calls each in flight, then the kill.
    std::thread::sleep(Duration::from_millis(100));
    a.proc.kill();
    killed.store(true, Ordering::SeqCst);
    let out = exec("after");
    assert_eq!(
        out.status,
        Some(0),
        "exec goes on through b: {}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "after");
    let calls: Vec<Vec<(String, bool, bool)>> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (client, calls) in calls.iter().enumerate() {
        let failed: Vec<&String> = calls.iter().filter(|c| !c.1).map(|c| &c.0).collect();
        eprintln!(
            "client {client}: {} calls, {} answered after the kill, failed: {failed:?}",
            calls.len(),
            calls.iter().filter(|c| c.1 && c.2).count()
        );
        assert!(
            failed.len() <= 1,
            "client {client}: only the call in flight may fail, {} did: {failed:?}",
            failed.len()
        );
        assert!(
            calls.iter().filter(|c| c.1 && !c.2).count() >= 1,
            "client {client} made no call before the kill"
        );
        assert!(
            calls.iter().filter(|c| c.1 && c.2).count() >= 5,
            "client {client} never came back through b"
        );
    }
    endpoint.terminate();

    // Every answered call is in the one log, whichever replica answered.
    let out = admin(
        &b.config,
        &[
            "audit",
            "search",
            "--type",
            "mcp.response",
            "--limit",
            "10000",
            "--json",
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let answered: Vec<&String> = calls
        .iter()
        .flatten()
        .filter(|c| c.1)
        .map(|c| &c.0)
        .collect();
    let missing: Vec<&&String> = answered
        .iter()
        .filter(|text| !out.stdout.contains(&format!("\"{text}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls are missing from the log: {missing:?}",
        missing.len(),
        answered.len()
    );
    let out = admin(&b.config, &["audit", "verify"]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
}

/// A handshake-era (2025-11-25) session and a task, each started through
/// replica A, when A is killed: the session's next request through B is
/// told the session ended (HTTP 404, which makes a client start a new
/// one) and a new session works; the task id stays alice's through B
/// (she can poll it there, bob cannot).
#[test]
fn after_a_replica_dies_sessions_end_cleanly_and_task_ids_stay_their_owners() {
    let dir = scratch();
    let schema = Schemas::unique("e2e_t");
    let (_bank, bank) = stateless_server(dir.path(), &dir.path().join("bank.jsonl"));
    let (_everything, everything) = everything_http(dir.path());
    let key: PathBuf = dir.path().join("shared/audit-signing.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nname = \"tools\"\nanyone = true\ntools = [\"echo\", \"long_report\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let targets = format!(
        "{}{}",
        http_target("bank", &bank),
        http_target("everything", &everything)
    );
    let (mut a, b) = twins(dir.path(), &schema.0, &key, Some(&policy), &targets);
    let (_alice_bank, alice_bank) = connect_through(dir.path(), &a, &b, "alice", "bank");
    let (_alice_every, alice_every) = connect_through(dir.path(), &a, &b, "alice", "everything");

    // A session through A.
    let v1125 = [("mcp-protocol-version", "2025-11-25")];
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"replicas-test","version":"1"}}}"#;
    let start_session = || {
        let (status, headers, msgs) = post(&alice_every, &[], init);
        assert_eq!(status, 200, "{msgs:?}");
        let sid = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let (status, _, _) = post(
            &alice_every,
            &[("mcp-session-id", &sid), v1125[0]],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(status, 202);
        sid
    };
    let echo = |sid: &str, id: u64| {
        post(
            &alice_every,
            &[("mcp-session-id", sid), v1125[0]],
            &format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hi"}}}}}}"#
            ),
        )
    };
    let old = start_session();
    let (status, _, msgs) = echo(&old, 2);
    assert_eq!(status, 200, "{msgs:?}");
    assert!(
        msgs[0]["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("hi"),
        "{msgs:?}"
    );

    // A task through A.
    let started = rpc(
        &alice_bank,
        1,
        "tools/call",
        serde_json::json!({"name": "long_report", "arguments": {"topic": "q3", "sections": 3, "delay_ms": 100}}),
        true,
    );
    assert_eq!(started["result"]["resultType"], "task", "{started}");
    let task = started["result"]["taskId"].as_str().unwrap().to_owned();
    let poll = |url: &str, id: u64| {
        rpc(
            url,
            id,
            "tasks/get",
            serde_json::json!({"taskId": task}),
            true,
        )
    };
    assert_eq!(poll(&alice_bank, 2)["result"]["taskId"], task.as_str());

    a.proc.kill();

    // The old session, through B: told it ended (404), never answered as
    // if it were B's. Bounded: the first request may meet the dead
    // connection (the call in flight when a replica goes).
    let mut ended = false;
    for id in 10..14 {
        let (status, _, msgs) = echo(&old, id);
        assert_ne!(status, 200, "b cannot know a's session: {msgs:?}");
        if status == 404 {
            ended = true;
            break;
        }
    }
    assert!(ended, "the client was never told its session ended");
    let new = start_session();
    assert_ne!(new, old);
    let (status, _, msgs) = echo(&new, 20);
    assert_eq!(status, 200, "a new session works through b: {msgs:?}");

    // The task: alice's through B, and not bob's there.
    let mut polled = serde_json::Value::Null;
    for id in 30..34 {
        polled = poll(&alice_bank, id);
        if polled["result"]["taskId"] == task.as_str() {
            break;
        }
    }
    assert_eq!(
        polled["result"]["taskId"],
        task.as_str(),
        "alice polls her task through b: {polled}"
    );
    let bob = Connect::start_as(dir.path(), &b, "bank", "bob", &["--no-local-auth"]);
    let refused = poll(&bob.url, 40);
    assert_eq!(
        refused["error"]["code"], -32055,
        "bob may not use alice's task: {refused}"
    );
}

/// Replicas judge by one policy file (one ConfigMap, or one file on
/// shared storage, as in deploy/): a change to it reaches every replica
/// within seconds, and each says in /metrics which policy it judges by.
#[test]
fn a_policy_change_reaches_every_replica() {
    let dir = scratch();
    let schema = Schemas::unique("e2e_p");
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let key: PathBuf = dir.path().join("shared/audit-signing.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let policy = dir.path().join("shared/policy.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nname = \"echo\"\nanyone = true\ntools = [\"echo\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let (a, b) = twins(
        dir.path(),
        &schema.0,
        &key,
        Some(&policy),
        &http_target("demo", &url),
    );
    let exec = |broker: &Broker| {
        let mut c = Command::new(bin("hoop"));
        c.args([
            "exec",
            "mcp",
            "demo",
            "--tool",
            "echo",
            "--args",
            r#"{"text":"hi"}"#,
        ])
        .args(broker.connect_args("alice"))
        .env("HOOP_CONFIG", empty_config(dir.path()))
        .env_remove("HOOP_TOKEN");
        run_bounded(c, Duration::from_secs(60))
    };
    let version = |replica: &str| -> Vec<String> {
        scrape(admin_port(&dir.path().join(replica)))
            .iter()
            .filter(|s| s[0] == "hoop_policy_version" && s[2] == 1.0)
            .map(|s| s[1]["version"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    for broker in [&a, &b] {
        let out = exec(broker);
        assert_eq!(out.status, Some(0), "allowed at first: {}", out.stderr);
    }
    let before = version("a");
    assert_eq!(before, version("b"));

    std::fs::write(
        &policy,
        "[[rules]]\nname = \"echo-frozen\"\nanyone = true\ntools = [\"echo\"]\naction = \"deny\"\nreason = \"echo is frozen\"\n",
    )
    .unwrap();
    for (name, broker) in [("a", &a), ("b", &b)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline: each replica reads the file every second.
        loop {
            let out = exec(broker);
            if out.status != Some(0) {
                assert!(
                    out.stderr.contains("echo is frozen"),
                    "{name}: {}",
                    out.stderr
                );
                break;
            }
            assert!(Instant::now() < deadline, "{name} still allows echo");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let after = version("a");
    assert_ne!(after, before);
    assert_eq!(after, version("b"), "both judge by the new policy");
}
