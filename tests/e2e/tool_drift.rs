//! Tool drift: the first tool list a target shows becomes its baseline; a
//! tool that appears (or changes) later is, on a `block` target, hidden and
//! refused until an administrator accepts it with `hoop-broker tools
//! accept`, which a running broker picks up within a second.

use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

fn rpc(url: &str, id: u32, method: &str, name: Option<&str>, params: &str) -> Value {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}{sep}{META}}}}}"#,
        sep = if params.is_empty() { "" } else { "," }
    );
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name", n));
    }
    let (_, _, msgs) = post(url, &headers, &body);
    msgs.into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {method}"))
}

fn tool_names(url: &str) -> Vec<String> {
    rpc(url, 1, "tools/list", None, "")["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn admin(broker: &Broker, args: &[&str]) -> Output {
    let mut c = Command::new(bin("hoop-broker"));
    c.args(args).arg("--state-dir").arg(&broker.state);
    run_bounded(c, Duration::from_secs(20))
}

#[test]
fn a_tool_that_appears_later_is_blocked_until_accepted() {
    let dir = scratch();
    let record = dir.path().join("fixture.jsonl");
    let (_fixture, upstream) = stateless_server(dir.path(), &record);
    let broker = Broker::start(
        dir.path(),
        &format!("{}tool_drift = \"block\"\n", http_target("fx", &upstream)),
    );
    let connect = Connect::start(dir.path(), &broker, "fx", &["--no-local-auth"]);
    let url = &connect.url;

    // The first list is the baseline.
    let before = tool_names(url);
    assert!(before.iter().any(|t| t == "echo"), "{before:?}");
    // The upstream grows a tool at run time.
    let r = rpc(
        url,
        2,
        "tools/call",
        Some("announce_changes"),
        r#""name":"announce_changes","arguments":{"tool_name":"wire_funds"}"#,
    );
    assert!(r.get("result").is_some(), "{r}");
    let after = tool_names(url);
    assert!(
        !after.iter().any(|t| t == "wire_funds"),
        "a new tool must stay hidden: {after:?}"
    );
    assert_eq!(before.len(), after.len(), "{before:?} vs {after:?}");
    let r = rpc(
        url,
        3,
        "tools/call",
        Some("wire_funds"),
        r#""name":"wire_funds","arguments":{"text":"x"}"#,
    );
    assert_eq!(r["error"]["code"], -32041, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("builtin:tool-drift"),
        "{r}"
    );
    assert!(
        !read_record(&record)
            .iter()
            .any(|m| m["name"] == "wire_funds"),
        "the blocked tool was called upstream"
    );
    let log = broker.proc.stderr();
    assert!(
        log.contains("tool drift") && log.contains("wire_funds"),
        "{log}"
    );

    // The admin sees it and accepts it; the running broker unblocks it.
    let out = admin(&broker, &["tools", "list", "--json"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["tool"] == "wire_funds" && r["accepted"].is_null()),
        "{rows}"
    );
    let out = admin(
        &broker,
        &["tools", "accept", "--target", "fx", "--tool", "wire_funds"],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut listed = tool_names(url);
    while !listed.iter().any(|t| t == "wire_funds") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        listed = tool_names(url);
    }
    assert!(listed.iter().any(|t| t == "wire_funds"), "{listed:?}");
    let r = rpc(
        url,
        4,
        "tools/call",
        Some("wire_funds"),
        r#""name":"wire_funds","arguments":{"text":"x"}"#,
    );
    assert!(r.get("result").is_some(), "{r}");

    // The drift and the acceptance are in the audit log.
    let events = host_audit_search(
        &[
            "--limit".as_ref(),
            "1000".as_ref(),
            "--state-dir".as_ref(),
            broker.state.as_os_str(),
        ],
        |_| true,
    );
    assert!(
        events.iter().any(|e| e["type"] == "tool.drift"
            && e["name"] == "wire_funds"
            && e["detail"]["change"] == "appeared"),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "admin.command"
            && e["detail"]["command"] == "tools accept"
            && e["detail"]["tool"] == "wire_funds"),
        "{events:#?}"
    );
}
