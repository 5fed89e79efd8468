//! Policy through `hoop demo` (its shipped policy): alice (eng) sees exactly
//! the tools she may use or may ask approval for; a blocked call is refused
//! with its rule and reason and never reaches the MCP server; a call that
//! needs approval is held back too; `hoop exec` tells them apart by exit code.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;
use serde_json::Value;

fn call(url: &str, tool: &str, args: &str) -> Vec<Value> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{tool}","arguments":{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{{"name":"t","version":"1"}},"io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let (_, _, msgs) = post(
        url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
        &body,
    );
    msgs
}

#[test]
fn the_demo_policy_filters_the_catalog_and_blocks_before_the_upstream() {
    let dir = scratch();
    let record = dir.path().join("received.jsonl");
    let port = free_tcp_port();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["demo", "--port", &port.to_string(), "--record"])
        .arg(&record);
    let mut demo = Proc::spawn("hoop-demo", cmd, dir.path());
    demo.line_matching(Duration::from_secs(30), |l| l.starts_with("MCP endpoint:"));
    let url = format!("http://127.0.0.1:{port}/mcp");

    // The catalog, in both revisions, as the official client sees it.
    for mode in ["auto", "handshake"] {
        let out = python_client(&url, mode, &["list_tools"], &[]);
        let mut tools: Vec<String> = outcome(&out, "list_tools").detail["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        tools.sort();
        assert_eq!(
            tools,
            [
                "big_payload",
                "deploy_model",
                "echo",
                "get_customer",
                "slow_count"
            ],
            "{mode}"
        );
    }

    // Blocked: the rule and its reason, and the upstream never saw it.
    let msgs = call(&url, "delete_model", r#"{"model_id":"fraud-v3"}"#);
    let err = msgs.iter().find(|m| m["id"] == 9).unwrap()["error"].clone();
    assert_eq!(err["code"], -32041, "{err}");
    let text = err["message"].as_str().unwrap();
    assert!(text.contains("no-destructive"), "{text}");
    assert!(text.contains("blocked"), "{text}");
    // Needs approval: held back as well (the approval flow comes later).
    let msgs = call(
        &url,
        "deploy_model",
        r#"{"model_id":"fraud-v4","environment":"prod"}"#,
    );
    let err = msgs.iter().find(|m| m["id"] == 9).unwrap()["error"].clone();
    assert_eq!(err["code"], -32040, "{err}");
    // A case variant is another name no rule allows, not a way around one.
    let msgs = call(&url, "Delete_Model", r#"{"model_id":"fraud-v3"}"#);
    assert_eq!(
        msgs.iter().find(|m| m["id"] == 9).unwrap()["error"]["code"],
        -32041
    );
    // Allowed: passes.
    let msgs = call(&url, "echo", r#"{"text":"ok"}"#);
    assert_eq!(
        msgs.iter().find(|m| m["id"] == 9).unwrap()["result"]["content"][0]["text"],
        "ok"
    );

    let received = read_record(&record);
    for r in &received {
        let name = r["name"].as_str().unwrap_or("");
        assert!(
            !name.eq_ignore_ascii_case("delete_model") && name != "deploy_model",
            "the upstream saw a call policy refused: {r}"
        );
    }
    assert!(received.iter().any(|r| r["name"] == "echo"));
}
