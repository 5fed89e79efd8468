//! Bad input and broken surroundings: each gives a clear error, nothing
//! panics, and nothing refused reaches the upstream.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;
use serde_json::Value;

const V2026_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

fn error_code(messages: &[Value]) -> i64 {
    messages
        .iter()
        .find_map(|m| m["error"]["code"].as_i64())
        .unwrap_or_else(|| panic!("no JSON-RPC error in {messages:?}"))
}

fn demo_behind_hoop(dir: &std::path::Path) -> (Proc, Broker, Connect, std::path::PathBuf) {
    let record = dir.join("demo.jsonl");
    let (demo, upstream) = demo_server(dir, &record);
    let broker = Broker::start(dir, &http_target("demo", &upstream));
    let connect = Connect::start(dir, &broker, "demo", &["--no-local-auth"]);
    (demo, broker, connect, record)
}

#[test]
fn upstream_down_is_a_clear_error() {
    let dir = scratch();
    let dead = free_tcp_port();
    let broker = Broker::start(
        dir.path(),
        &format!("[targets.gone]\ntransport = \"http\"\nurl = \"http://127.0.0.1:{dead}/mcp\"\n"),
    );
    let connect = Connect::start(dir.path(), &broker, "gone", &["--no-local-auth"]);
    let (status, _, msgs) = post(
        &connect.url,
        &[],
        r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(status, 502, "{msgs:?}");
    assert_eq!(error_code(&msgs), -32050);
    assert_eq!(msgs[0]["id"], 7);
    let text = msgs[0]["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("gone") && text.contains("unreachable"),
        "{text}"
    );
}

#[test]
fn malformed_json_rpc_and_header_mismatch_are_refused_before_the_upstream() {
    let dir = scratch();
    let (_demo, _broker, connect, record) = demo_behind_hoop(dir.path());
    let url = &connect.url;

    let (s, _, m) = post(url, &[], "{not json");
    assert_eq!((s, error_code(&m)), (400, -32700));
    let (s, _, m) = post(
        url,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_model","arguments":{}}}"#,
    );
    assert_eq!((s, error_code(&m)), (400, -32700));
    assert!(
        m[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key"),
        "{m:?}"
    );
    let (s, _, m) = post(url, &[], r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    assert_eq!((s, error_code(&m)), (400, -32600));

    // 2026-07-28: headers that disagree with the body are refused (-32020).
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"mismatch","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"smuggled"}},{V2026_META}}}}}"#
    );
    let base = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    for bad in [
        vec![base[0], base[1], ("mcp-name", "delete_model")],
        vec![base[0], ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        vec![
            ("mcp-protocol-version", "2025-11-25"),
            base[1],
            ("mcp-name", "echo"),
        ],
        vec![
            base[0],
            base[1],
            ("mcp-name", "=?base64?ZGVsZXRlX21vZGVs?="),
        ],
    ] {
        let (s, _, m) = post(url, &bad, &body);
        assert_eq!((s, error_code(&m)), (400, -32020), "{bad:?} → {m:?}");
        assert_eq!(m[0]["id"], "mismatch");
    }
    // The same request with agreeing headers passes.
    let (s, _, m) = post(url, &[base[0], base[1], ("mcp-name", "echo")], &body);
    assert_eq!(s, 200, "{m:?}");
    assert_eq!(
        m.last().unwrap()["result"]["content"][0]["text"],
        "smuggled"
    );

    // Only the agreeing request reached the demo server, once.
    let seen = read_record(&record)
        .into_iter()
        .filter(|r| r.to_string().contains("smuggled"))
        .count();
    assert_eq!(seen, 1, "refused requests must never reach the upstream");
}

#[test]
fn a_bad_token_is_refused_with_exit_code_3() {
    let dir = scratch();
    let broker = Broker::start(dir.path(), "");
    let token = dir.path().join("bad.token");
    std::fs::write(&token, "not.a.jwt").unwrap();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args([
        "connect",
        "mcp",
        "x",
        "--broker",
        &broker.addr,
        "--pin",
        &broker.pin,
        "--token-file",
    ])
    .arg(&token)
    .env_remove("HOOP_TOKEN")
    .env("HOOP_CONFIG", empty_config(dir.path()));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status, Some(3), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    // The broker logged the precise reason; the client only got a hint.
    assert!(!out.stderr.contains("InvalidToken"), "{}", out.stderr);
}

#[test]
fn broker_unreachable_is_exit_code_4() {
    let dir = scratch();
    let token = dir.path().join("t.token");
    std::fs::write(&token, "x").unwrap();
    let port = free_udp_port();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args([
        "connect",
        "mcp",
        "x",
        "--broker",
        &format!("127.0.0.1:{port}"),
    ])
    .args([
        "--pin",
        &format!("sha256:{}", "ab".repeat(32)),
        "--token-file",
    ])
    .arg(&token)
    .env_remove("HOOP_TOKEN")
    .env("HOOP_CONFIG", empty_config(dir.path()));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status, Some(4), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the broker"),
        "{}",
        out.stderr
    );
    // The demo's profile with no demo running is the same: nothing to reach.
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["audit", "search", "--profile", "demo"])
        .env("HOOP_DATA_DIR", dir.path())
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status, Some(4), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("hoop demo"), "{}", out.stderr);
}

#[test]
fn broker_restart_mid_session_fails_only_the_call_in_flight() {
    let dir = scratch();
    let (_demo, mut broker, connect, _record) = demo_behind_hoop(dir.path());
    let url = connect.url.clone();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (s, h, _) = post(&url, &[], init);
    assert_eq!(s, 200);
    let sid = h["mcp-session-id"].to_str().unwrap().to_owned();
    let session = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    post(
        &url,
        &session,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );

    // A long call is in flight when the broker dies.
    let slow_url = url.clone();
    let slow_sid = sid.clone();
    let in_flight = std::thread::spawn(move || {
        post(
            &slow_url,
            &[
                ("mcp-session-id", slow_sid.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow_count","arguments":{"steps":50,"delay_ms":100}}}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    // A restart as an operator does it (SIGTERM): the broker closes its
    // connections, so the tunnel learns at once.
    broker.proc.terminate();
    let (_, _, msgs) = in_flight.join().unwrap();
    let err = msgs
        .iter()
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| panic!("the in-flight call got no answer: {msgs:?}"));
    assert_eq!(err["error"]["code"], -32052, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("tunnel"),
        "{err}"
    );

    // Same address, same certificate: the tunnel reconnects by itself.
    let _restarted = Broker::start_with(dir.path(), broker.config.clone(), broker.state.clone());
    // The old session died with the broker: 404 tells the client to start over.
    let (s, _, m) = post(
        &url,
        &session,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    );
    assert_eq!((s, error_code(&m)), (404, -32051), "{m:?}");
    let (s, _, _) = post(&url, &[], init);
    assert_eq!(s, 200);
    python_client(&url, "auto", &["echo"], &[]);
}

#[test]
fn param_headers_are_checked_against_the_tool_schema() {
    // The stateless Python server's route_payment marks `region` with
    // x-mcp-header: Region. The broker has never seen a tools/list when the
    // first call arrives, so it reads the schema from the upstream itself.
    let dir = scratch();
    let record = dir.path().join("stateless.jsonl");
    let (_server, upstream) = stateless_server(dir.path(), &record);
    let broker = Broker::start(dir.path(), &http_target("bank", &upstream));
    let connect = Connect::start(dir.path(), &broker, "bank", &["--no-local-auth"]);
    let call = |region: &str, marker: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"{marker}","method":"tools/call","params":{{"name":"route_payment","arguments":{{"amount":5,"region":"{region}"}},{V2026_META}}}}}"#
        )
    };
    let h = |param: (&'static str, &'static str)| {
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "route_payment"),
            param,
        ]
    };
    let (s, _, m) = post(
        &connect.url,
        &h(("mcp-param-region", "eu")),
        &call("eu", "agree"),
    );
    assert_eq!(s, 200, "{m:?}");
    assert_eq!(
        m.last().unwrap()["result"]["content"][0]["text"],
        "routed 5 via eu",
        "{m:?}"
    );
    for (header, marker) in [
        (("mcp-param-region", "us"), "disagree"),
        (("mcp-param-other", "eu"), "unknown"),
    ] {
        let (s, _, m) = post(&connect.url, &h(header), &call("eu", marker));
        assert_eq!((s, error_code(&m)), (400, -32020), "{header:?}: {m:?}");
    }
    let received = read_record(&record);
    let calls: Vec<&Value> = received
        .iter()
        .filter(|r| r["name"] == "route_payment")
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "only the agreeing call may reach the upstream: {calls:#?}"
    );
    // The upstream got the header the broker derived from the body.
    assert_eq!(
        calls[0]["headers"]["mcp-param-region"], "eu",
        "{:#}",
        calls[0]
    );
}

#[test]
fn an_expired_token_ends_the_tunnel_and_is_refused() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, upstream) = demo_server(dir.path(), &record);
    let broker = Broker::start(
        dir.path(),
        &format!("[dev]\ntoken_ttl_secs = 10\n[targets.demo]\ntransport = \"http\"\nurl = \"{upstream}\"\n"),
    );
    let connect = Connect::start(dir.path(), &broker, "demo", &["--no-local-auth"]);
    let call = |marker: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"{marker}","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{marker}"}},{V2026_META}}}}}"#
        )
    };
    let h = [("mcp-protocol-version", "2026-07-28")];
    let (s, _, m) = post(&connect.url, &h, &call("before-expiry"));
    assert_eq!(s, 200, "{m:?}");
    // Wait out the token's own `exp` (minted when the broker started; a
    // short TTL made this race a loaded machine), plus a margin: the broker
    // ends the connection at the expiry it announced, without leeway.
    let token = std::fs::read_to_string(broker.token_file("alice")).unwrap();
    let exp = jwt_claims(&token)["exp"].as_u64().expect("numeric exp");
    let now = now_unix();
    assert!(exp > now, "the token expired before the test could use it");
    std::thread::sleep(Duration::from_secs(exp - now + 2));
    let (s, _, m) = post(&connect.url, &h, &call("after-expiry"));
    assert!(
        s == 403 || s == 502,
        "expired token must be refused, got {s}: {m:?}"
    );
    let text = m[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("authentication failed") || text.contains("expired"),
        "{m:?}"
    );
    let seen = read_record(&record)
        .iter()
        .filter(|r| r.to_string().contains("after-expiry"))
        .count();
    assert_eq!(seen, 0, "a call after expiry must not reach the upstream");
}
