//! `hoop connect --stdio`: MCP over the CLI's own stdin/stdout, for clients
//! that launch their servers as commands.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;
use serde_json::json;

#[test]
fn stdio_endpoint_relays_a_handshake_session() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, upstream) = demo_server(dir.path(), &record);
    let broker = Broker::start(dir.path(), &http_target("demo", &upstream));
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["connect", "mcp", "demo", "--stdio"])
        .args(broker.connect_args("alice"))
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let mut peer = StdioPeer::spawn(cmd, dir.path());
    let t = Duration::from_secs(30);

    peer.send(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"stdio-test","version":"1"}}}));
    let init = peer.until_response(&json!(1), t);
    let result = &init.last().unwrap()["result"];
    assert_eq!(result["protocolVersion"], "2025-11-25", "{init:?}");
    peer.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));

    peer.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}));
    let list = peer.until_response(&json!(2), t);
    let tools = list.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .len();
    assert!(tools >= 5, "{list:?}");

    peer.send(&json!({"jsonrpc":"2.0","id":"three","method":"tools/call","params":{"name":"echo","arguments":{"text":"over stdio"}}}));
    let call = peer.until_response(&json!("three"), t);
    assert_eq!(
        call.last().unwrap()["result"]["content"][0]["text"],
        "over stdio",
        "{call:?}"
    );

    // Malformed input gets a JSON-RPC error, and the session goes on.
    peer.send(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":[1,2]}));
    let bad = peer.until_response(&json!(4), t);
    assert_eq!(bad.last().unwrap()["error"]["code"], -32602, "{bad:?}");

    // End of stdin ends the session and the process, cleanly.
    assert_eq!(peer.close(Duration::from_secs(10)), Some(0));
    let received = read_record(&record);
    assert!(
        received
            .iter()
            .any(|r| r.to_string().contains("over stdio")),
        "{received:#?}"
    );
}
