//! Latency of one append at a time (a lightly loaded broker: each call
//! waits for its own event), at `os` or `fsync` durability:
//!
//!     cargo run --release -p hoop-audit-log --example append_latency [fsync]
//!
//! 500 warm-up appends, then 5,000 measured one after another; prints p50,
//! p90 and p99. docs/benchmarks.md has the figures.

#![allow(clippy::unwrap_used)]
use hoop_audit_log::{AuditLog, Durability, EntryIndex, LogConfig, PendingEntry};
use std::time::Instant;
/// An event of the size the broker records for a small tools/call.
fn ev(i: u64) -> PendingEntry {
    let f = format!(
        r#"{{"v":1,"time":"2026-12-03T09:25:53.000000000Z","type":"mcp.request","exchange":"{i:016x}","actor":{{"sub":"alice","groups":["eng"],"iss":"hoop-dev","kind":"human","jti":"abc","addr":"127.0.0.1:5000","client":"hoop/0.1.0"}},"target":"demo","jsonrpc_id":1,"method":"tools/call","name":"echo","decision":"allow","rule":"r","bytes":200,"message":{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}}}"#
    );
    PendingEntry {
        fields: f.into_bytes(),
        bodies: vec![],
        index: EntryIndex {
            time_ns: i as i64,
            kind: "mcp.request".into(),
            subject: Some("alice".into()),
            target: Some("demo".into()),
            name: Some("echo".into()),
            decision: Some("allow".into()),
            exchange: Some(format!("{i:016x}")),
            session: None,
        },
    }
}
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let d = std::env::temp_dir().join(format!("lat-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let dur = if std::env::args().nth(1).as_deref() == Some("fsync") {
        Durability::Fsync
    } else {
        Durability::Os
    };
    let log = AuditLog::open_sqlite(
        &d.join("a.db"),
        &d.join("k"),
        LogConfig {
            durability: dur,
            ..LogConfig::default()
        },
    )
    .unwrap();
    for i in 0..500 {
        log.append(ev(i)).await.unwrap();
    }
    let mut ts = Vec::new();
    for i in 500..5500 {
        let t = Instant::now();
        log.append(ev(i)).await.unwrap();
        ts.push(t.elapsed().as_micros());
    }
    ts.sort();
    println!(
        "{dur:?}: sequential append p50 {} us p90 {} us p99 {} us",
        ts[2500], ts[4500], ts[4950]
    );
    log.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
