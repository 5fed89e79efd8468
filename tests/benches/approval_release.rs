//! How long from an approver's decision to the held call reaching the
//! upstream, on loopback (docs/benchmarks.md; aim: under 20 ms). A tool,
//! not a test: `cargo build --release --workspace --bins && cargo bench -p
//! hoop-e2e --bench approval_release`.
//!
//! A release `hoop-broker dev` holds a `tools/call` an `approve` rule
//! matches; the upstream is a small HTTP server in this process, so the
//! decision and the arrival are read off one clock. Each round: alice's
//! call is held, bob's live view shows it, bob sends the grant (t0) over
//! an open connection, the upstream sees the call (t1). Reports t1 − t0 at
//! each audit durability, and the grant's own round trip beside it; then
//! the same across two brokers sharing the machine's PostgreSQL
//! (`HOOP_TEST_POSTGRES`): the call held on one, the grant sent through the
//! other, which the holder hears of through the store (LISTEN/NOTIFY).
//! Environment: BENCH_ROUNDS (200).

// A measuring tool: a failure is a panic with its message, as in the tests.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hoop_broker::approval::ApprovalState;
use hoop_broker::pipeline::approval_view::{ApprovalCommand, Snapshot};
use hoop_cli::commands::approve::send;
use hoop_cli::tunnel::{TokenSource, Trust, TunnelClient, TunnelSettings};
use hoop_e2e::replicas::{replica_with, Schemas};
use hoop_e2e::{scratch, Broker};
use hoop_proto::{McpHeaders, OpenStream, StreamKind};
use serde_json::{json, Value};

const POLICY: &str = r#"
[[rules]]
name = "deploys-need-a-lead"
groups = ["eng"]
tools = ["deploy"]
action = "approve"
approvers = ["ml-leads"]
default_reason = "benchmark"
"#;

/// An MCP-enough upstream: `tools/list` names `deploy`, anything else gets
/// an empty text result; each `tools/call` arrival is sent on `arrived`.
fn upstream(arrived: mpsc::Sender<Instant>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let arrived = arrived.clone();
            std::thread::spawn(move || serve(stream, &arrived));
        }
    });
    url
}

/// Answers requests on one keep-alive connection until it closes.
fn serve(stream: std::net::TcpStream, arrived: &mpsc::Sender<Instant>) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let result = match msg["method"].as_str() {
            Some("tools/call") => {
                let _ = arrived.send(Instant::now());
                json!({"content": [{"type": "text", "text": "deployed"}]})
            }
            Some("tools/list") => {
                json!({"tools": [{"name": "deploy", "inputSchema": {"type": "object"}}]})
            }
            _ => json!({}),
        };
        let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(answer.as_bytes()).is_err()
        {
            return;
        }
    }
}

async fn tunnel(broker: &Broker, who: &str) -> std::sync::Arc<TunnelClient> {
    TunnelClient::connect(TunnelSettings {
        broker: broker.addr.parse().unwrap(),
        fallbacks: Vec::new(),
        server_name: "localhost".into(),
        trust: Trust::Pin(broker.pin.clone()),
        token: TokenSource::File(broker.token_file(who)),
    })
    .await
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Where the call is held and where it is decided.
enum Setup {
    /// One dev broker on SQLite, its audit log at `durability`.
    One { durability: &'static str },
    /// Two dev brokers on the machine's PostgreSQL, the audit log at `os`:
    /// alice's call held on one, bob deciding through the other.
    Replicas,
}

async fn measure(setup: Setup, rounds: usize) {
    let dir = scratch();
    let (tx, arrivals) = mpsc::channel();
    let url = upstream(tx);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let target = format!(
        "[targets.bench]\ntransport = \"http\"\nurl = \"{url}\"\n[approvals]\nhold_secs = 60\n"
    );
    // Declared before the brokers, so dropped after them: the schemas go
    // once no broker writes to them (unused by one broker: dropping none).
    let schemas = Schemas::unique("bench");
    let (label, brokers) = match setup {
        Setup::One { durability } => {
            let broker = Broker::start(
                dir.path(),
                &format!(
                    "policy = \"{}\"\n[audit]\ndurability = \"{durability}\"\n{target}",
                    policy.display()
                ),
            );
            (format!("one broker, durability {durability}"), vec![broker])
        }
        Setup::Replicas => {
            let key = dir.path().join("audit-signing.key");
            let audit = "durability = \"os\"";
            let held_on = replica_with(
                &dir.path().join("a"),
                &schemas.0,
                &key,
                &policy,
                audit,
                &target,
            );
            let decided_on = replica_with(
                &dir.path().join("b"),
                &schemas.0,
                &key,
                &policy,
                audit,
                &target,
            );
            (
                "two brokers on PostgreSQL, held on one, granted through the other".to_owned(),
                vec![held_on, decided_on],
            )
        }
    };
    let (held_on, decided_on) = (&brokers[0], &brokers[brokers.len() - 1]);
    let alice = tunnel(held_on, "alice").await;
    let bob = tunnel(decided_on, "bob").await;
    let open = |kind| OpenStream {
        target: String::new(),
        kind,
        headers: McpHeaders::default(),
    };
    let watch_body = Bytes::from(serde_json::to_vec(&ApprovalCommand::Watch).unwrap());
    let mut view = bob
        .exchange(open(StreamKind::Approvals), Some(watch_body))
        .await
        .unwrap();
    let mut decided = Vec::with_capacity(rounds);
    let mut acked = Vec::with_capacity(rounds);
    let mut last_granted = 0;
    for n in 0..rounds {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "deploy", "arguments": {"n": n},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}}});
        let headers = McpHeaders {
            protocol_version: Some("2026-07-28".into()),
            method: Some("tools/call".into()),
            name: Some("deploy".into()),
            ..Default::default()
        };
        let held = OpenStream {
            target: "bench".into(),
            kind: StreamKind::Post,
            headers,
        };
        let a = alice.clone();
        let body = Bytes::from(call.to_string());
        let caller = tokio::spawn(async move {
            let mut ex = a.exchange(held, Some(body)).await.unwrap();
            // Bounded by the broker: the answer ends the exchange.
            while ex.next_message().await.unwrap().is_some() {}
        });
        // Bounded: the view sends a snapshot per change.
        let id = loop {
            let m = view
                .next_message()
                .await
                .unwrap()
                .expect("the live view goes on");
            let s: Snapshot = serde_json::from_slice(&m.body).unwrap();
            // The view may show a request pending in more than one
            // snapshot: only one not granted yet is this round's.
            if let Some(r) = s
                .requests
                .iter()
                .find(|r| r.state == ApprovalState::Pending && r.id > last_granted)
            {
                break r.id;
            }
        };
        last_granted = id;
        let t0 = Instant::now();
        send(&bob, &ApprovalCommand::Grant { id, reason: None })
            .await
            .unwrap();
        acked.push(t0.elapsed());
        let t1 = arrivals
            .recv_timeout(Duration::from_secs(10))
            .expect("the call reached the upstream");
        decided.push(t1.duration_since(t0));
        caller.await.unwrap();
    }
    decided.sort();
    acked.sort();
    println!(
        "{label}  rounds {rounds}  decision -> upstream ms: p50 {} p90 {} p99 {} max {}   grant answered ms: p50 {} p90 {}",
        ms(percentile(&decided, 0.5)),
        ms(percentile(&decided, 0.9)),
        ms(percentile(&decided, 0.99)),
        ms(*decided.last().unwrap()),
        ms(percentile(&acked, 0.5)),
        ms(percentile(&acked, 0.9)),
    );
    alice.close().await;
    bob.close().await;
}

fn main() {
    // `cargo bench` passes --bench; nothing else is read.
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for durability in ["os", "fsync"] {
            measure(Setup::One { durability }, rounds).await;
        }
        measure(Setup::Replicas, rounds).await;
    });
}
