//! Both MCP revisions through the whole path (`hoop connect` → QUIC →
//! `hoop-broker` → upstream), against real servers: server-everything over
//! streamable HTTP and over stdio (handshake era), and a stateless
//! 2026-07-28 server written with the official Python SDK.

use hoop_e2e::*;

/// `--header K=V` arguments carrying the local endpoint's secret.
fn header_args(connect: &Connect) -> Vec<String> {
    connect
        .auth_header()
        .into_iter()
        .flat_map(|h| ["--header".to_string(), h])
        .collect()
}

#[test]
fn server_everything_over_http_in_both_client_modes() {
    let dir = scratch();
    let (_everything, upstream) = everything_http(dir.path());
    // The broker presents its own service credential upstream; the test
    // proves it in a stateless-server test where the server records headers.
    let broker = Broker::start(dir.path(), &http_target("everything", &upstream));
    let connect = Connect::start(dir.path(), &broker, "everything", &[]);
    let auth = header_args(&connect);
    let scenarios = [
        "negotiated",
        "list_tools",
        "echo",
        "resources",
        "prompts",
        "progress",
        "sampling",
        "elicitation",
        "task",
        "cancel",
    ];
    for mode in ["auto", "handshake"] {
        let out = python_client(&connect.url, mode, &scenarios, &auth);
        assert_eq!(
            outcome(&out, "negotiated").detail["protocol_version"],
            "2025-11-25"
        );
    }
    let ts = ts_client(&connect.url, &auth);
    assert!(ts.iter().any(|l| l.to_string().contains("echo")), "{ts:?}");
}

#[test]
fn server_everything_over_stdio() {
    let dir = scratch();
    let (cmd, args) = everything_stdio_command();
    let args = args
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let broker = Broker::start(
        dir.path(),
        &format!("[targets.local]\ntransport = \"stdio\"\ncommand = \"{cmd}\"\nargs = [{args}]\n"),
    );
    let connect = Connect::start(dir.path(), &broker, "local", &["--no-local-auth"]);
    let scenarios = [
        "negotiated",
        "list_tools",
        "echo",
        "resources",
        "prompts",
        "progress",
        "sampling",
        "elicitation",
        "cancel",
    ];
    let out = python_client(&connect.url, "handshake", &scenarios, &[]);
    assert_eq!(
        outcome(&out, "negotiated").detail["protocol_version"],
        "2025-11-25"
    );
    // Auto mode probes server/discover first, then falls back: the broker
    // answers the second probe from what it learned (no per-request probing).
    python_client(&connect.url, "auto", &["negotiated", "echo"], &[]);
    python_client(&connect.url, "auto", &["negotiated", "echo"], &[]);
}

#[test]
fn stateless_2026_server_from_the_python_sdk() {
    let dir = scratch();
    let record = dir.path().join("stateless.jsonl");
    let (_server, upstream) = stateless_server(dir.path(), &record);
    std::fs::write(dir.path().join("svc.token"), "svc-credential-123\n").unwrap();
    let broker = Broker::start(
        dir.path(),
        &format!(
            "[targets.bank]\ntransport = \"http\"\nurl = \"{upstream}\"\ncredential = {{ bearer_file = \"{}\" }}\n",
            dir.path().join("svc.token").display()
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "bank", &[]);
    let auth = header_args(&connect);
    let out = python_client(
        &connect.url,
        "auto",
        &[
            "negotiated",
            "list_tools",
            "echo",
            "resources",
            "prompts",
            "progress",
            "input_required",
            "task",
            "big",
            "cancel",
        ],
        &auth,
    );
    assert_eq!(
        outcome(&out, "negotiated").detail["protocol_version"],
        "2026-07-28"
    );
    python_client(
        &connect.url,
        "handshake",
        &["negotiated", "echo", "elicitation"],
        &auth,
    );

    // What reached the upstream: the broker's credential, never the local
    // secret, and MCP headers the broker derived from the body.
    let received = read_record(&record);
    let calls: Vec<_> = received
        .iter()
        .filter(|r| r["method"] == "tools/call")
        .collect();
    assert!(!calls.is_empty(), "no tools/call recorded: {received:#?}");
    for c in &calls {
        let text = c.to_string();
        // 2026-07-28 calls carry routing headers the broker derived.
        if c["protocol_version"] == "2026-07-28" {
            assert_eq!(c["headers"]["mcp-method"], "tools/call", "{text}");
            assert_eq!(c["headers"]["mcp-name"], c["name"], "{text}");
        }
        assert!(
            text.contains("Bearer svc-credential-123"),
            "service credential missing: {text}"
        );
        if let Some(s) = &connect.secret {
            assert!(
                !text.contains(s.as_str()),
                "local secret leaked upstream: {text}"
            );
        }
    }
}

#[test]
fn demo_server_over_stdio_in_both_revisions() {
    // The Rust demo server speaks both revisions over stdio: handshake-era
    // sessions get a child each, stateless 2026-07-28 requests share a pool.
    let dir = scratch();
    let record = dir.path().join("stdio-demo.jsonl");
    let broker = Broker::start(
        dir.path(),
        &format!(
            "[targets.bank]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"demo-server\", \"--stdio\", \"--record\", \"{}\"]\npool_size = 2\n",
            bin("hoop").display(),
            record.display()
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "bank", &["--no-local-auth"]);
    let auto = python_client(
        &connect.url,
        "auto",
        &["negotiated", "list_tools", "echo", "progress", "big"],
        &[],
    );
    assert_eq!(
        outcome(&auto, "negotiated").detail["protocol_version"],
        "2026-07-28"
    );
    let hs = python_client(
        &connect.url,
        "handshake",
        &["negotiated", "echo", "cancel"],
        &[],
    );
    assert_eq!(
        outcome(&hs, "negotiated").detail["protocol_version"],
        "2025-11-25"
    );
    // Pooled children get rewritten ids, so the client's own ids never
    // collide; the answers still carry the client's ids (checked by the SDK).
    let received = read_record(&record);
    assert!(
        received.iter().any(|r| r["method"] == "tools/call"),
        "the stdio demo server saw no tools/call: {received:#?}"
    );
}
