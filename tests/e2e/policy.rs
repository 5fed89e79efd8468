//! Policy through `hoop demo` (its shipped policy): alice (eng) sees exactly
//! the tools she may use or may ask approval for; a blocked call is refused
//! with its rule and reason and never reaches the MCP server; a call that
//! needs approval is held back too; `hoop exec` tells them apart by exit code.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;
use serde_json::Value;

fn call(url: &str, tool: &str, args: &str) -> Vec<Value> {
    call_tool(url, 9, tool, args).1
}

/// A stateless `tools/call` of `deploy_model`: the first SSE event of the
/// held answer, read as it arrives (the answer itself waits for an
/// approver).
fn first_event_of_held_call(url: &str, args: &str) -> Value {
    use std::io::Read as _;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"deploy_model","arguments":{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{{"name":"t","version":"1"}},"io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let mut resp = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "deploy_model")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: at most 64 KiB, and the client's 60 s timeout.
    while text.len() < 64 * 1024 {
        let n = resp.read(&mut chunk).unwrap();
        assert!(n > 0, "the held answer ended before its first event");
        text.extend_from_slice(&chunk[..n]);
        if let Some(v) = parse_messages(&String::from_utf8_lossy(&text))
            .into_iter()
            .next()
        {
            return v;
        }
    }
    panic!("no event in {} bytes", text.len());
}

#[test]
fn the_demo_policy_filters_the_catalog_and_blocks_before_the_upstream() {
    let dir = scratch();
    let record = dir.path().join("received.jsonl");
    let (_demo, url, _) = hoop_demo(dir.path(), &record);

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
    // Needs approval: held, with a message naming the approval, and never
    // forwarded (this client leaves after the first event; the hold and
    // its end are tests/e2e/approvals.rs).
    let first = first_event_of_held_call(&url, r#"{"model_id":"fraud-v4","environment":"prod"}"#);
    assert_eq!(first["method"], "notifications/message", "{first}");
    let data = first["params"]["data"].as_str().unwrap();
    assert!(
        data.contains("waits for approval #1 from ml-leads"),
        "{data}"
    );
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

#[test]
fn hoop_targets_shows_each_person_what_they_may_use() {
    let dir = scratch();
    let (_demo, broker, _record) = demo_behind_demo_policy(dir.path());
    let view = |who: &str| -> Value {
        let mut c = Command::new(bin("hoop"));
        c.args(["targets", "--json"])
            .args(broker.connect_args(who))
            .env_remove("HOOP_TOKEN")
            .env("HOOP_CONFIG", empty_config(dir.path()));
        let out = run_bounded(c, Duration::from_secs(60));
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        serde_json::from_str(out.stdout.trim()).unwrap()
    };
    let tools = |v: &Value| -> Vec<(String, String)> {
        v["targets"][0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["access"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let alice = view("alice");
    assert_eq!(alice["targets"][0]["name"], "demo");
    let a = tools(&alice);
    let s = |n: &str, a: &str| (n.to_owned(), a.to_owned());
    assert_eq!(
        a,
        [
            s("big_payload", "allowed"),
            s("deploy_model", "approval"),
            s("echo", "allowed"),
            s("get_customer", "allowed"),
            s("slow_count", "allowed")
        ]
    );
    // bob (ml-leads) may not read customer records.
    let b = tools(&view("bob"));
    assert!(!b.iter().any(|(n, _)| n == "get_customer"), "{b:?}");
    assert!(b.iter().any(|(n, _)| n == "echo"), "{b:?}");
    // The text form says who is asking and marks approvals.
    let mut c = Command::new(bin("hoop"));
    c.arg("targets")
        .args(broker.connect_args("alice"))
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let out = run_bounded(c, Duration::from_secs(60));
    assert!(out.stdout.starts_with("as alice"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("deploy_model  (needs approval: rule deploy-needs-approval)"),
        "{}",
        out.stdout
    );
    // The broker read the tool list itself, on its own account: each of
    // its requests and the answers it used are in the audit log.
    let mut events = Vec::new();
    for _ in 0..50 {
        let mut c = Command::new(bin("hoop-broker"));
        c.args([
            "audit",
            "search",
            "--json",
            "--user",
            "hoop-broker",
            "--state-dir",
        ])
        .arg(&broker.state);
        let out = run_bounded(c, Duration::from_secs(60));
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        events = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        if events.iter().any(|e| e["type"] == "mcp.response") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let request = events
        .iter()
        .find(|e| e["type"] == "mcp.request")
        .unwrap_or_else(|| panic!("the broker's tools/list is not recorded: {events:?}"));
    assert_eq!(request["method"], "tools/list", "{request}");
    assert_eq!(request["actor"]["kind"], "broker", "{request}");
    assert_eq!(request["target"], "demo", "{request}");
    assert_eq!(request["message"]["method"], "tools/list", "{request}");
    let response = events
        .iter()
        .find(|e| e["type"] == "mcp.response" && e["exchange"] == request["exchange"])
        .unwrap_or_else(|| panic!("its answer is not recorded: {events:?}"));
    assert_eq!(response["outcome"], "ok", "{response}");
    assert!(
        response["message"]["result"]["tools"].is_array(),
        "{response}"
    );
}

#[test]
fn a_case_variant_of_a_denied_tool_does_not_slip_past_a_wide_allow() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nname = \"everything\"\nanyone = true\ntools = [\"*\"]\naction = \"allow\"\n\n\
         [[rules]]\nname = \"no-delete\"\nanyone = true\ntools = [\"delete_model\"]\naction = \"deny\"\nreason = \"never\"\n",
    )
    .unwrap();
    let broker = Broker::start(
        dir.path(),
        &format!(
            "policy = \"{}\"\n{}",
            policy.display(),
            http_target("demo", &url)
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "demo", &["--no-local-auth"]);
    // Any client's list teaches the broker the real names.
    let out = python_client(&connect.url, "auto", &["list_tools"], &[]);
    assert!(outcome(&out, "list_tools").detail["tools"]
        .as_array()
        .is_some());
    for variant in ["Delete_Model", "DELETE_MODEL"] {
        let msgs = call(&connect.url, variant, r#"{"model":"fraud"}"#);
        let err = &msgs.iter().find(|m| m["id"] == 9).unwrap()["error"];
        assert_eq!(err["code"], -32041, "{variant}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains("case-variant"),
            "{err}"
        );
    }
    assert!(read_record(&record).iter().all(|r| !r["name"]
        .as_str()
        .unwrap_or("")
        .eq_ignore_ascii_case("delete_model")));
}
