//! No way around policy by encoding, by protocol revision or by borrowing
//! someone else's handle (issue 5, item 4).
//!
//! Real processes throughout: `hoop-broker dev` with a policy file written
//! here, `hoop connect` as alice and as bob, and the stateless 2026-07-28
//! Python SDK fixture (`tests/fixtures/stateless_server.py`), which records
//! every message it receives. Each attempt is its own assertion naming the
//! bypass, and the record proves that nothing refused reached the upstream.

use std::path::Path;

use hoop_e2e::stateless::{answer, request, rpc, send};
use hoop_e2e::*;
use serde_json::{json, Value};

/// Nothing here allows `initialize`, `ping`, `server/discover`,
/// notifications or `tasks/*`: they are protocol plumbing.
const POLICY: &str = r#"
[[rules]]
name = "everyday-tools"
anyone = true
tools = ["echo", "long_report", "confirm_transfer", "café"]
action = "allow"

[[rules]]
name = "small-payments"
anyone = true
tools = ["route_payment"]
when = "args.amount < 100"
action = "allow"

[[rules]]
name = "no-secret-reports"
anyone = true
tools = ["long_report"]
when = "has(args.topic) && args.topic == 'secrets'"
action = "deny"
reason = "reports on secrets are blocked"

[[rules]]
name = "no-bulk"
anyone = true
tools = ["big_payload"]
action = "deny"
reason = "bulk output is blocked"

[[rules]]
name = "no-summaries"
anyone = true
prompts = ["summarize"]
action = "deny"
reason = "summaries are blocked"

[[rules]]
name = "greeting-resource"
anyone = true
resources = ["fixture://greeting"]
action = "allow"

[[rules]]
name = "vendor-stats"
anyone = true
methods = ["vendor/stats"]
action = "allow"
"#;

const DENIED: i64 = -32041;
const HEADER_MISMATCH: i64 = -32020;
const HANDLE_NOT_YOURS: i64 = -32055;

struct Setup {
    _server: Proc,
    broker: Broker,
    record: std::path::PathBuf,
}

fn setup(dir: &Path) -> Setup {
    let record = dir.join("upstream.jsonl");
    let (server, upstream) = stateless_server(dir, &record);
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let broker = Broker::start(
        dir,
        &format!(
            "policy = \"{}\"\n{}",
            policy.display(),
            http_target("bank", &upstream)
        ),
    );
    Setup {
        _server: server,
        broker,
        record,
    }
}

fn code(v: &Value) -> Option<i64> {
    v["error"]["code"].as_i64()
}

fn calls_of<'a>(received: &'a [Value], tool: &str) -> Vec<&'a Value> {
    received
        .iter()
        .filter(|r| r["method"] == "tools/call" && r["name"] == tool)
        .collect()
}

#[test]
fn encodings_and_smuggled_calls_are_refused_before_the_upstream() {
    let dir = scratch();
    let s = setup(dir.path());
    let alice = Connect::start(dir.path(), &s.broker, "bank", &["--no-local-auth"]);
    let url = &alice.url;

    // Duplicate keys: one parser keeps the first `name`, another the last.
    let (status, m) = send(
        url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"big_payload","arguments":{"text":"dup","bytes":10}}}"#,
    );
    assert_eq!(
        (status, code(&m[0])),
        (400, Some(-32700)),
        "bypass: duplicate JSON keys must be refused, got {m:?}"
    );

    // A batch: one allowed call as cover for a denied one.
    let (status, m) = send(
        url,
        &[],
        r#"[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"cover"}}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"big_payload","arguments":{"bytes":10}}}]"#,
    );
    assert_eq!(
        (status, code(&m[0])),
        (400, Some(-32600)),
        "bypass: a JSON-RPC batch must be refused, got {m:?}"
    );

    // An unknown method needs a rule that lists it; with one, it passes.
    let v = rpc(url, 4, "admin/dump", json!({}), false);
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: an unknown method no rule lists must be denied, got {v}"
    );
    let v = rpc(url, 5, "vendor/stats", json!({}), false);
    assert_eq!(
        code(&v),
        Some(-32601),
        "a method a rule lists must reach the upstream (which does not know it), got {v}"
    );

    // Case variants are other names, allowed by no rule.
    for (id, variant) in [(6, "Echo"), (7, "ECHO"), (8, "Big_Payload")] {
        let v = rpc(
            url,
            id,
            "tools/call",
            json!({"name": variant, "arguments": {"text": "case"}}),
            false,
        );
        assert_eq!(
            code(&v),
            Some(DENIED),
            "bypass: case-variant tool name {variant:?} must be denied, got {v}"
        );
    }
    // Non-NFC: `café` (allowed, NFC) written decomposed is refused, not
    // normalised into the allowed name.
    let nfd = "cafe\u{301}";
    let v = rpc(
        url,
        9,
        "tools/call",
        json!({"name": nfd, "arguments": {}}),
        false,
    );
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: non-NFC tool name must be refused, got {v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("builtin:non-nfc-name"),
        "the non-NFC refusal names its rule: {v}"
    );
    let v = rpc(
        url,
        10,
        "tools/call",
        json!({"name": "caf\u{e9}", "arguments": {}}),
        false,
    );
    assert_ne!(
        code(&v),
        Some(DENIED),
        "control: the NFC name is allowed (the upstream has no such tool): {v}"
    );

    // `when = "args.amount < 100"`: the upstream coerces "5000" to 5000 and
    // reads only the top-level amount, so each of these is judged on what
    // it will receive and none is allowed by accident.
    let attempts = [
        (
            11,
            json!({"amount": "5000", "region": "eu"}),
            "amount as a string",
        ),
        (
            12,
            json!({"amount": "50", "region": "eu"}),
            "small amount as a string",
        ),
        (
            13,
            json!({"amount": {"value": 50}, "region": "eu"}),
            "amount nested in an object",
        ),
        (
            14,
            json!({"payment": {"amount": 50}, "amount": 5000, "region": "eu"}),
            "small amount nested, large at the top",
        ),
        (15, json!({"region": "eu"}), "amount missing"),
    ];
    for (id, args, what) in &attempts {
        let v = rpc(
            url,
            *id,
            "tools/call",
            json!({"name": "route_payment", "arguments": args}),
            false,
        );
        assert_eq!(
            code(&v),
            Some(DENIED),
            "bypass: arguments the condition does not see ({what}) must be denied, got {v}"
        );
    }
    // (The fixture wants its x-mcp-header argument mirrored, as a client
    // that listed tools sends it.)
    let (body, mut h) = request(
        16,
        "tools/call",
        json!({"name": "route_payment", "arguments": {"amount": 50, "region": "eu"}}),
        false,
    );
    h.push(("mcp-param-region".into(), "eu".into()));
    let v = answer(&send(url, &h, &body).1, 16);
    assert_eq!(
        v["result"]["content"][0]["text"], "routed 50 via eu",
        "control: a small top-level amount is allowed: {v}"
    );

    // Mirrored headers that disagree with the body (-32020).
    let (body, mut h) = request(
        17,
        "tools/call",
        json!({"name": "big_payload", "arguments": {"bytes": 10}}),
        false,
    );
    h.retain(|(k, _)| k != "mcp-name");
    h.push(("mcp-name".into(), "echo".into()));
    let (_, m) = send(url, &h, &body);
    assert_eq!(
        code(&answer(&m, 17)),
        Some(HEADER_MISMATCH),
        "bypass: Mcp-Name naming an allowed tool over a denied body must be refused, got {m:?}"
    );
    let (body, mut h) = request(
        18,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
        false,
    );
    h.retain(|(k, _)| k != "mcp-method");
    h.push(("mcp-method".into(), "tools/list".into()));
    let (_, m) = send(url, &h, &body);
    assert_eq!(
        code(&answer(&m, 18)),
        Some(HEADER_MISMATCH),
        "bypass: Mcp-Method disagreeing with the body must be refused, got {m:?}"
    );
    let (body, mut h) = request(
        19,
        "tools/call",
        json!({"name": "route_payment", "arguments": {"amount": 50, "region": "us"}}),
        false,
    );
    h.push(("mcp-param-region".into(), "eu".into()));
    let (_, m) = send(url, &h, &body);
    assert_eq!(
        code(&answer(&m, 19)),
        Some(HEADER_MISMATCH),
        "bypass: an x-mcp-header argument header disagreeing with the body must be refused, got {m:?}"
    );

    // A task-augmented call of a denied tool.
    let v = rpc(
        url,
        20,
        "tools/call",
        json!({"name": "long_report", "arguments": {"topic": "secrets", "sections": 1, "delay_ms": 0}}),
        true,
    );
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: a task-augmented tools/call of a denied call must be denied, got {v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-secret-reports"),
        "{v}"
    );

    // input_required: an allowed round, then its state carried into a
    // retry of a denied tool, and a bare retry of a denied tool.
    let first = rpc(
        url,
        21,
        "tools/call",
        json!({"name": "confirm_transfer", "arguments": {"amount": 5}}),
        false,
    );
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap();
    let responses = json!({key.clone(): {"action": "accept", "content": {"confirm": true}}});
    let v = rpc(
        url,
        22,
        "tools/call",
        json!({"name": "big_payload", "arguments": {"bytes": 10}, "inputResponses": responses, "requestState": state}),
        false,
    );
    assert!(
        matches!(code(&v), Some(DENIED | HANDLE_NOT_YOURS)),
        "bypass: an input_required retry naming a denied tool must be refused, got {v}"
    );
    let v = rpc(
        url,
        23,
        "tools/call",
        json!({"name": "big_payload", "arguments": {"bytes": 10}, "inputResponses": responses}),
        false,
    );
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: an input_required-style retry of a denied tool must be denied, got {v}"
    );
    let v = rpc(
        url,
        24,
        "tools/call",
        json!({"name": "confirm_transfer", "arguments": {"amount": 5}, "inputResponses": responses, "requestState": state}),
        false,
    );
    assert_eq!(
        v["result"]["content"][0]["text"], "transfer 5: confirm=true note=",
        "control: the genuine retry by the identity that received the state passes: {v}"
    );

    // A ref's type decides what is completed: a resource ref that also
    // carries some name is judged as the resource, and a ref of no known
    // type is refused.
    let v = rpc(
        url,
        123,
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "fixture://secret", "name": "echo"}, "argument": {"name": "x", "value": "a"}}),
        false,
    );
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: a resource ref judged by its name: {v}"
    );
    let v = rpc(
        url,
        124,
        "completion/complete",
        json!({"ref": {"type": "ref/other", "name": "summarize"}, "argument": {"name": "x", "value": "a"}}),
        false,
    );
    assert_eq!(code(&v), Some(-32602), "bypass: an unknown ref type: {v}");
    // A resource URI in a non-canonical form is refused before any glob
    // judges it (the upstream might normalise it into something else).
    let v = rpc(
        url,
        127,
        "resources/read",
        json!({"uri": "fixture://x/../greeting"}),
        false,
    );
    assert_eq!(code(&v), Some(DENIED), "bypass: a dot-segment URI: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("non-canonical-uri"),
        "{v}"
    );
    // A request dressed as a notification is no plumbing.
    let v = rpc(url, 126, "notifications/anything", json!({}), false);
    assert_eq!(
        code(&v),
        Some(-32600),
        "bypass: notifications/* with an id: {v}"
    );

    // completion/complete on a blocked prompt probes it by another path.
    let v = rpc(
        url,
        25,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "summarize"}, "argument": {"name": "topic", "value": "a"}}),
        false,
    );
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: completion/complete naming a blocked prompt must be denied, got {v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-summaries"),
        "{v}"
    );

    // What the upstream received: none of the refused messages.
    let received = read_record(&s.record);
    assert!(
        calls_of(&received, "big_payload").is_empty(),
        "the upstream saw a denied big_payload: {received:#?}"
    );
    for name in ["Echo", "ECHO", "Big_Payload", nfd] {
        assert!(
            calls_of(&received, name).is_empty(),
            "the upstream saw refused tool name {name:?}"
        );
    }
    assert_eq!(
        calls_of(&received, "caf\u{e9}").len(),
        1,
        "the NFC control call reached the upstream once"
    );
    let payments = calls_of(&received, "route_payment");
    assert_eq!(
        payments.len(),
        1,
        "only the allowed payment reached the upstream: {payments:#?}"
    );
    assert_eq!(
        payments[0]["arguments"],
        json!({"amount": 50, "region": "eu"})
    );
    assert!(
        calls_of(&received, "long_report").is_empty(),
        "the denied task-augmented call reached the upstream"
    );
    assert!(
        !received.iter().any(|r| r["event"] == "task_created"),
        "the upstream started a task policy denied"
    );
    assert!(
        calls_of(&received, "echo").is_empty(),
        "the duplicate-key and batch messages never reached the upstream"
    );
    for m in ["admin/dump", "completion/complete"] {
        assert!(
            !received.iter().any(|r| r["method"] == m),
            "the upstream saw refused method {m}"
        );
    }
    assert!(received.iter().any(|r| r["method"] == "vendor/stats"));
    assert_eq!(calls_of(&received, "confirm_transfer").len(), 2);
}

#[test]
fn task_ids_and_request_states_work_only_for_who_received_them() {
    let dir = scratch();
    let s = setup(dir.path());
    let alice = Connect::start(dir.path(), &s.broker, "bank", &["--no-local-auth"]);
    let bob = Connect::start_as(dir.path(), &s.broker, "bank", "bob", &["--no-local-auth"]);

    // Alice starts a task (long enough to still be running when cancelled).
    let v = rpc(
        &alice.url,
        1,
        "tools/call",
        json!({"name": "long_report", "arguments": {"topic": "q3", "sections": 50, "delay_ms": 200}}),
        true,
    );
    assert_eq!(v["result"]["resultType"], "task", "{v}");
    let task = v["result"]["taskId"].as_str().unwrap().to_owned();

    // Bob presents it: refused before the upstream, whatever the method.
    for (id, method) in [(2, "tasks/get"), (3, "tasks/cancel"), (4, "tasks/result")] {
        let v = rpc(&bob.url, id, method, json!({"taskId": task}), true);
        assert_eq!(
            code(&v),
            Some(HANDLE_NOT_YOURS),
            "bypass: bob presenting alice's task id on {method} must be refused, got {v}"
        );
    }
    // A task id the broker never saw issued, even from alice.
    let v = rpc(
        &alice.url,
        5,
        "tasks/get",
        json!({"taskId": "0123456789abcdef"}),
        true,
    );
    assert_eq!(
        code(&v),
        Some(HANDLE_NOT_YOURS),
        "bypass: a task id never issued through the broker must be refused, got {v}"
    );

    // Alice polls her own task: no rule lists tasks/get, it is plumbing.
    let v = rpc(&alice.url, 6, "tasks/get", json!({"taskId": task}), true);
    assert_eq!(
        v["result"]["taskId"],
        task.as_str(),
        "plumbing: tasks/get of one's own task must work without a rule, got {v}"
    );

    // Bob presents alice's input_required state on the same call.
    let first = rpc(
        &alice.url,
        7,
        "tools/call",
        json!({"name": "confirm_transfer", "arguments": {"amount": 7}}),
        false,
    );
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap();
    let v = rpc(
        &bob.url,
        8,
        "tools/call",
        json!({"name": "confirm_transfer", "arguments": {"amount": 7},
               "inputResponses": {key: {"action": "accept", "content": {"confirm": true}}},
               "requestState": state}),
        false,
    );
    assert_eq!(
        code(&v),
        Some(HANDLE_NOT_YOURS),
        "bypass: bob echoing alice's requestState must be refused, got {v}"
    );

    // Alice cancels her own task.
    let v = rpc(&alice.url, 9, "tasks/cancel", json!({"taskId": task}), true);
    assert!(
        v.get("result").is_some(),
        "plumbing: tasks/cancel of one's own task must work without a rule, got {v}"
    );

    let received = read_record(&s.record);
    let task_calls: Vec<&Value> = received
        .iter()
        .filter(|r| {
            r["method"]
                .as_str()
                .is_some_and(|m| m.starts_with("tasks/"))
        })
        .collect();
    assert_eq!(
        task_calls.len(),
        2,
        "only alice's tasks/get and tasks/cancel reached the upstream: {task_calls:#?}"
    );
    assert!(
        received
            .iter()
            .any(|r| r["event"] == "task_cancelled" && r["task_id"] == task.as_str()),
        "alice's cancel reached the task"
    );
    assert_eq!(
        calls_of(&received, "confirm_transfer").len(),
        1,
        "bob's retry with alice's state never reached the upstream"
    );
}

#[test]
fn protocol_plumbing_works_without_a_rule_per_method() {
    let dir = scratch();
    let s = setup(dir.path());
    let alice = Connect::start(dir.path(), &s.broker, "bank", &["--no-local-auth"]);
    let url = &alice.url;

    // 2026-07-28: server/discover and ping.
    let v = rpc(url, 1, "server/discover", json!({}), false);
    assert!(
        v["result"]["supportedVersions"].is_array() || v["result"].is_object(),
        "plumbing: server/discover must pass without a rule, got {v}"
    );
    // The 2026-07-28 SDK server no longer implements ping (-32601 from
    // the upstream); what matters is that the broker let it through.
    let v = rpc(url, 2, "ping", json!({}), false);
    assert!(
        v.get("result").is_some() || code(&v) == Some(-32601),
        "plumbing: ping must pass the broker without a rule, got {v}"
    );
    // The catalog: listed without a rule, filtered by policy.
    let v = rpc(url, 3, "tools/list", json!({}), false);
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list must pass without a rule, got {v}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"route_payment"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"big_payload") && !names.contains(&"chatty"),
        "denied and unlisted tools are hidden: {names:?}"
    );

    // Handshake era: initialize, notifications/initialized, ping.
    let (status, h, m) = post(
        url,
        &[],
        r#"{"jsonrpc":"2.0","id":10,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bypass-test","version":"1"}}}"#,
    );
    assert_eq!(
        status, 200,
        "plumbing: initialize must pass without a rule, got {m:?}"
    );
    assert!(answer(&m, 10).get("result").is_some(), "{m:?}");
    let sid = h
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    let session = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (status, _, m) = post(
        url,
        &session,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(
        status, 202,
        "plumbing: notifications must pass without a rule, got {m:?}"
    );
    let (_, _, m) = post(
        url,
        &session,
        r#"{"jsonrpc":"2.0","id":11,"method":"ping"}"#,
    );
    assert!(
        answer(&m, 11).get("result").is_some(),
        "plumbing: ping in a session must pass without a rule, got {m:?}"
    );
    // …and a tool call in that session is still judged.
    let (_, _, m) = post(
        url,
        &session,
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"big_payload","arguments":{"bytes":10}}}"#,
    );
    assert_eq!(
        code(&answer(&m, 12)),
        Some(DENIED),
        "bypass: the handshake revision must not skip policy, got {m:?}"
    );
    let received = read_record(&s.record);
    assert!(calls_of(&received, "big_payload").is_empty());
    for m in [
        "server/discover",
        "ping",
        "initialize",
        "notifications/initialized",
    ] {
        assert!(
            received.iter().any(|r| r["method"] == m),
            "{m} reached the upstream"
        );
    }
}

#[test]
fn a_listen_stream_subscribes_only_to_resources_the_caller_may_read() {
    // 2026-07-28 `subscriptions/listen` replaced `resources/subscribe`: its
    // resourceSubscriptions are judged URI by URI, as that call would be.
    let dir = scratch();
    let s = setup(dir.path());
    let alice = Connect::start(dir.path(), &s.broker, "bank", &["--no-local-auth"]);
    let listen = |id: u64, uris: Value| {
        rpc(
            &alice.url,
            id,
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": uris}}),
            false,
        )
    };
    let v = listen(1, json!(["fixture://secret"]));
    assert_eq!(
        code(&v),
        Some(DENIED),
        "bypass: a listen stream must not subscribe to a resource no rule allows, got {v}"
    );
    let v = listen(2, json!(["fixture://greeting", "fixture://secret"]));
    assert_eq!(code(&v), Some(DENIED), "{v}");
    let text = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        text.contains("fixture://secret") && text.contains("default-deny"),
        "{v}"
    );
    let v = listen(3, json!(["fixture://x/../secret"]));
    assert_eq!(code(&v), Some(DENIED), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("non-canonical"),
        "{v}"
    );
    let v = listen(4, json!([42]));
    assert_eq!(
        code(&v),
        Some(-32602),
        "an entry that is no URI is refused: {v}"
    );
    assert!(
        !read_record(&s.record)
            .iter()
            .any(|r| r["method"] == "subscriptions/listen"),
        "the upstream saw a refused listen"
    );
    // A resource a rule allows: the stream opens (its answer never ends,
    // so only the head is read) and reaches the upstream.
    let (body, headers) = request(
        5,
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": ["fixture://greeting"]}}),
        false,
    );
    let mut req = http()
        .post(&alice.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listens = loop {
        let n = read_record(&s.record)
            .iter()
            .filter(|r| r["method"] == "subscriptions/listen")
            .count();
        if n > 0 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(listens, 1, "only the allowed listen reached the upstream");
}
