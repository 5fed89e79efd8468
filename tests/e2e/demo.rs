//! `hoop demo`: the README's first command, driven by the official Python
//! client in both of its modes.

use hoop_e2e::*;

// What alice (eng) may use or ask approval for under the demo policy;
// delete_model and export_transactions are blocked and not listed.
const DEMO_TOOLS: [&str; 5] = [
    "big_payload",
    "deploy_model",
    "echo",
    "get_customer",
    "slow_count",
];

#[test]
fn demo_serves_both_revisions_to_the_python_client() {
    let dir = scratch();
    let record = dir.path().join("received.jsonl");
    let (mut demo, url, banner) = hoop_demo(dir.path(), &record);
    assert_eq!(banner, format!("MCP endpoint: {url}"));

    let auto = python_client(
        &url,
        "auto",
        &["negotiated", "list_tools", "echo", "progress", "big"],
        &[],
    );
    assert_eq!(
        outcome(&auto, "negotiated").detail["protocol_version"],
        "2026-07-28"
    );
    let tools: Vec<&str> = outcome(&auto, "list_tools").detail["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for t in DEMO_TOOLS {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }

    let hs = python_client(
        &url,
        "handshake",
        &[
            "negotiated",
            "list_tools",
            "echo",
            "resources",
            "prompts",
            "cancel",
        ],
        &[],
    );
    assert_eq!(
        outcome(&hs, "negotiated").detail["protocol_version"],
        "2025-11-25"
    );

    // The upstream really received the calls, each as the broker sent it.
    let received = read_record(&record);
    let echoes = received
        .iter()
        .filter(|r| r.to_string().contains("tools/call") && r.to_string().contains("\"echo\""))
        .count();
    assert!(
        echoes >= 2,
        "demo server should have seen both echo calls: {received:#?}"
    );

    // Ctrl-C (SIGTERM here) stops everything it started.
    assert_eq!(demo.terminate(), Some(0), "hoop demo should exit cleanly");
}
