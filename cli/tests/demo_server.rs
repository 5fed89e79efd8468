//! Integration tests of the built-in demo MCP server, spoken to with raw HTTP
//! (and raw newline-delimited JSON for stdio), in both MCP eras: the
//! `initialize` handshake with `Mcp-Session-Id` (2025-11-25) and the
//! stateless 2026-07-28 revision (`server/discover`, per-request `_meta`).
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hoop_cli::demo_server::{self, DemoServerConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(30);
const NEW: &str = "2026-07-28";
const OLD: &str = "2025-11-25";
const TOOLS: [&str; 7] = [
    "big_payload",
    "delete_model",
    "deploy_model",
    "echo",
    "export_transactions",
    "get_customer",
    "slow_count",
];

/// A plain-HTTP reqwest client. reqwest is compiled with
/// `rustls-no-provider` in this workspace, so a crypto provider must be
/// installed before any client is built, even one that never uses TLS.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A running demo server; dropping it shuts it down.
struct Server {
    url: String,
    record: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(name: &str) -> Self {
        let record = temp_path(name);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = DemoServerConfig {
            record: Some(record.clone()),
        };
        let task = tokio::spawn(demo_server::serve_http(listener, config, async move {
            let _ = rx.await;
        }));
        Self {
            url,
            record,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("server stops promptly")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.record);
    }
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "hoop-demo-{name}-{}-{nanos}.jsonl",
        std::process::id()
    ))
}

fn read_record(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The `_meta` a 2026-07-28 request carries.
fn meta_2026() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": NEW,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// What one POST got back.
struct Reply {
    status: u16,
    content_type: String,
    session_id: Option<String>,
    /// Every JSON-RPC message in the body (one for JSON, any number for SSE).
    messages: Vec<Value>,
}

impl Reply {
    /// The response (result or error) to request `id`.
    fn response(&self, id: i64) -> &Value {
        self.messages
            .iter()
            .find(|message| message["id"] == json!(id))
            .unwrap_or_else(|| panic!("no response to {id} in {:?}", self.messages))
    }

    fn result(&self, id: i64) -> &Value {
        let response = self.response(id);
        assert!(
            response.get("error").is_none(),
            "request {id} failed: {response}"
        );
        &response["result"]
    }
}

/// Parses a `text/event-stream` body into the JSON payloads of its events.
fn parse_sse(body: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.trim().is_empty() {
                messages.push(serde_json::from_str(&data).unwrap());
            }
            data.clear();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    messages
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Reply {
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = tokio::time::timeout(TIMEOUT, request.send())
        .await
        .expect("POST answered in time")
        .unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let session_id = header("mcp-session-id");
    let text = tokio::time::timeout(TIMEOUT, response.text())
        .await
        .expect("body complete in time")
        .unwrap();
    let messages = if content_type.starts_with("text/event-stream") {
        parse_sse(&text)
    } else if content_type.starts_with("application/json") && !text.is_empty() {
        vec![serde_json::from_str(&text).unwrap()]
    } else {
        Vec::new()
    };
    Reply {
        status,
        content_type,
        session_id,
        messages,
    }
}

/// Headers of a 2026-07-28 request for `method` (and `name`, when the method
/// names a tool, prompt or resource).
fn headers_2026(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("MCP-Protocol-Version", NEW.to_owned()),
        ("Mcp-Method", method.to_owned()),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name.to_owned()));
    }
    headers
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap()
}

fn tool_names(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| {
            assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            tool["name"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

fn assert_fake_customer(customer: &Value, id: &str) {
    assert_eq!(customer["customer_id"], id);
    for (field, valid) in [
        ("card_number", demo_server::luhn_valid as fn(&str) -> bool),
        ("iban", demo_server::iban_valid),
        ("routing_number", demo_server::aba_valid),
        ("ssn", demo_server::ssn_well_formed),
    ] {
        let value = customer[field].as_str().unwrap();
        assert!(valid(value), "{field} {value} fails its check");
    }
    assert!(customer["account_number"].as_str().is_some());
    assert!(customer["name"].as_str().is_some());
    assert!(customer["email"].as_str().unwrap().contains('@'));
}

#[tokio::test]
async fn handshake_era_session() {
    let server = Server::start("handshake").await;
    let client = http_client();

    let init = post(
        &client,
        &server.url,
        &[],
        &json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": OLD,
                "capabilities": {},
                "clientInfo": {"name": "raw-handshake", "version": "1.0"}
            }
        }),
    )
    .await;
    assert_eq!(init.status, 200);
    let session = init
        .session_id
        .clone()
        .expect("initialize returns a session id");
    let result = init.result(1);
    assert_eq!(result["protocolVersion"], OLD);
    assert_eq!(result["serverInfo"]["name"], "hoop-demo");
    for capability in ["tools", "resources", "prompts"] {
        assert!(result["capabilities"].get(capability).is_some());
    }

    let session_headers = vec![
        ("Mcp-Session-Id", session.clone()),
        ("MCP-Protocol-Version", OLD.to_owned()),
    ];
    let initialized = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status, 202);

    let list = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(tool_names(list.result(2)), TOOLS);

    let echo = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hello, handshake ✓"}}}),
    )
    .await;
    assert_eq!(echo.status, 200);
    assert_eq!(text_of(echo.result(3)), "hello, handshake ✓");

    let customer = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "get_customer", "arguments": {"customer_id": "cust-001"}}}),
    )
    .await;
    let result = customer.result(4);
    assert_fake_customer(&result["structuredContent"], "cust-001");
    let from_text: Value = serde_json::from_str(text_of(result)).unwrap();
    assert_eq!(from_text, result["structuredContent"]);

    // Progress: one notification per step, on the request's own stream.
    let count = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "slow_count", "arguments": {"steps": 3, "delay_ms": 10},
                           "_meta": {"progressToken": "count-1"}}}),
    )
    .await;
    assert!(count.content_type.starts_with("text/event-stream"));
    let progress: Vec<f64> = count
        .messages
        .iter()
        .filter(|message| message["method"] == "notifications/progress")
        .map(|message| {
            assert_eq!(message["params"]["progressToken"], "count-1");
            message["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0]);
    assert_eq!(text_of(count.result(5)), "counted 3");

    let big = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                "params": {"name": "big_payload", "arguments": {"bytes": 16 * 1024 * 1024}}}),
    )
    .await;
    let payload = text_of(big.result(6));
    assert_eq!(payload.len(), 16 * 1024 * 1024);
    assert!(payload.is_ascii());

    let too_big = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "big_payload", "arguments": {"bytes": 16 * 1024 * 1024 + 1}}}),
    )
    .await;
    assert_eq!(too_big.result(7)["isError"], true);

    let resources = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 8, "method": "resources/list"}),
    )
    .await;
    assert_eq!(
        resources.result(8)["resources"][0]["uri"],
        demo_server::RETENTION_POLICY_URI
    );
    let read = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "resources/read",
                "params": {"uri": demo_server::RETENTION_POLICY_URI}}),
    )
    .await;
    assert!(read.result(9)["contents"][0]["text"]
        .as_str()
        .unwrap()
        .contains("retention"));
    let prompts = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 10, "method": "prompts/list"}),
    )
    .await;
    assert_eq!(
        prompts.result(10)["prompts"][0]["name"],
        "summarize_customer"
    );
    let prompt = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "id": 11, "method": "prompts/get",
                "params": {"name": "summarize_customer", "arguments": {"customer_id": "cust-9"}}}),
    )
    .await;
    assert!(prompt.result(11)["messages"][0]["content"]["text"]
        .as_str()
        .unwrap()
        .contains("cust-9"));

    // The record holds every message, in order, tagged with the session.
    let record = read_record(&server.record);
    let methods: Vec<&str> = record
        .iter()
        .map(|line| line["method"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call",
            "tools/call",
            "tools/call",
            "tools/call",
            "tools/call",
            "resources/list",
            "resources/read",
            "prompts/list",
            "prompts/get"
        ]
    );
    assert_eq!(record[0]["protocol_version"], OLD);
    assert_eq!(record[0]["client"], "raw-handshake");
    assert!(record[0].get("session_id").is_none());
    assert!(record[1..]
        .iter()
        .all(|line| line["session_id"] == *session));
    assert_eq!(record[3]["name"], "echo");
    assert_eq!(
        record[3]["arguments"],
        json!({"text": "hello, handshake ✓"})
    );
    assert_eq!(record[9]["uri"], demo_server::RETENTION_POLICY_URI);
    assert_eq!(record[11]["name"], "summarize_customer");

    server.stop().await;
}

#[tokio::test]
async fn stateless_2026_07_28() {
    let server = Server::start("stateless").await;
    let client = http_client();

    let discover = post(
        &client,
        &server.url,
        &headers_2026("server/discover", None),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                "params": {"_meta": meta_2026()}}),
    )
    .await;
    assert_eq!(discover.status, 200);
    assert!(discover.session_id.is_none());
    let result = discover.result(1);
    let versions: Vec<&str> = result["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("discover result {result}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(versions.contains(&NEW), "{versions:?}");
    assert!(versions.contains(&OLD), "{versions:?}");

    let list = post(
        &client,
        &server.url,
        &headers_2026("tools/list", None),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                "params": {"_meta": meta_2026()}}),
    )
    .await;
    assert!(list.session_id.is_none());
    assert_eq!(tool_names(list.result(2)), TOOLS);

    let echo = post(
        &client,
        &server.url,
        &headers_2026("tools/call", Some("echo")),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hello, 2026"},
                           "_meta": meta_2026()}}),
    )
    .await;
    assert_eq!(echo.status, 200);
    assert!(echo.session_id.is_none());
    assert_eq!(text_of(echo.result(3)), "hello, 2026");

    let customer = post(
        &client,
        &server.url,
        &headers_2026("tools/call", Some("get_customer")),
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "get_customer", "arguments": {"customer_id": "c-2026"},
                           "_meta": meta_2026()}}),
    )
    .await;
    assert_fake_customer(&customer.result(4)["structuredContent"], "c-2026");

    let mut meta = meta_2026();
    meta["progressToken"] = json!(77);
    let count = post(
        &client,
        &server.url,
        &headers_2026("tools/call", Some("slow_count")),
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "slow_count", "arguments": {"steps": 2, "delay_ms": 0},
                           "_meta": meta}}),
    )
    .await;
    let progress = count
        .messages
        .iter()
        .filter(|message| message["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 2);
    assert_eq!(text_of(count.result(5)), "counted 2");

    let read = post(
        &client,
        &server.url,
        &headers_2026("resources/read", Some(demo_server::RETENTION_POLICY_URI)),
        &json!({"jsonrpc": "2.0", "id": 6, "method": "resources/read",
                "params": {"uri": demo_server::RETENTION_POLICY_URI, "_meta": meta_2026()}}),
    )
    .await;
    assert!(read.result(6)["contents"][0]["text"].as_str().is_some());

    // rmcp rejects a 2026-07-28 call whose Mcp-Name header is missing, but the
    // record still shows it arrived: recording happens before rmcp sees it.
    let rejected = post(
        &client,
        &server.url,
        &headers_2026("tools/call", None),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "delete_model", "arguments": {"model": "m"},
                           "_meta": meta_2026()}}),
    )
    .await;
    assert_eq!(rejected.status, 400);

    let record = read_record(&server.record);
    assert!(record.iter().all(|line| line.get("session_id").is_none()));
    assert!(record
        .iter()
        .all(|line| line["protocol_version"] == NEW && line["client"] == "raw-test"));
    let calls: Vec<(&str, &Value)> = record
        .iter()
        .filter(|line| line["method"] == "tools/call")
        .map(|line| (line["name"].as_str().unwrap(), &line["arguments"]))
        .collect();
    assert_eq!(
        calls,
        [
            ("echo", &json!({"text": "hello, 2026"})),
            ("get_customer", &json!({"customer_id": "c-2026"})),
            ("slow_count", &json!({"steps": 2, "delay_ms": 0})),
            ("delete_model", &json!({"model": "m"})),
        ]
    );
    assert_eq!(record[0]["method"], "server/discover");
    assert_eq!(record[0]["header_protocol_version"], NEW);
    // Nothing never sent shows up: no deploy_model call was made.
    assert!(!record.iter().any(|line| line["name"] == "deploy_model"));

    server.stop().await;
}

#[tokio::test]
async fn both_eras_at_once_and_record_is_per_line() {
    let server = Server::start("mixed").await;
    let client = http_client();
    let init = post(
        &client,
        &server.url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": OLD, "capabilities": {},
                           "clientInfo": {"name": "old", "version": "1"}}}),
    )
    .await;
    let session = init.session_id.unwrap();
    let old_headers = vec![
        ("Mcp-Session-Id", session.clone()),
        ("MCP-Protocol-Version", OLD.to_owned()),
    ];
    for (id, text) in [(2, "one"), (3, "two")] {
        let old = post(
            &client,
            &server.url,
            &old_headers,
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": format!("old {text}")}}}),
        )
        .await;
        assert_eq!(text_of(old.result(id)), format!("old {text}"));
        let new = post(
            &client,
            &server.url,
            &headers_2026("tools/call", Some("echo")),
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": format!("new {text}")},
                               "_meta": meta_2026()}}),
        )
        .await;
        assert_eq!(text_of(new.result(id)), format!("new {text}"));
        // Each call is on disk as soon as it has been answered.
        let record = read_record(&server.record);
        let last_two: Vec<(&Value, &Value)> = record[record.len() - 2..]
            .iter()
            .map(|line| (&line["arguments"]["text"], &line["session_id"]))
            .collect();
        assert_eq!(
            last_two,
            [
                (&json!(format!("old {text}")), &json!(session)),
                (&json!(format!("new {text}")), &Value::Null)
            ]
        );
    }
    let seqs: Vec<u64> = read_record(&server.record)
        .iter()
        .map(|line| line["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    server.stop().await;
}

#[tokio::test]
async fn cancelled_slow_count_stops() {
    let server = Server::start("cancel").await;
    let client = http_client();
    let init = post(
        &client,
        &server.url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": OLD, "capabilities": {},
                           "clientInfo": {"name": "canceller", "version": "1"}}}),
    )
    .await;
    let session = init.session_id.unwrap();
    let session_headers = vec![
        ("Mcp-Session-Id", session.clone()),
        ("MCP-Protocol-Version", OLD.to_owned()),
    ];
    // 100 steps of 5 s would take minutes; cancel it after the call started.
    let slow = {
        let client = client.clone();
        let url = server.url.clone();
        let headers = session_headers.clone();
        tokio::spawn(async move {
            let mut request = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                              "params": {"name": "slow_count",
                                         "arguments": {"steps": 100, "delay_ms": 5000}}}));
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.unwrap();
            response.text().await.unwrap_or_default()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = post(
        &client,
        &server.url,
        &session_headers,
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 2, "reason": "test"}}),
    )
    .await;
    assert_eq!(cancelled.status, 202);
    let record = read_record(&server.record);
    let last = record.last().unwrap();
    assert_eq!(last["method"], "notifications/cancelled");
    assert_eq!(last["request_id"], 2);

    // The cancelled call's stream ends without a result: the tool stops at
    // its next cancellation check instead of counting on for minutes.
    let body = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("cancelled call ends promptly")
        .unwrap();
    assert!(!body.contains("counted"), "{body}");
    assert!(parse_sse(&body)
        .iter()
        .all(|message| message.get("result").is_none()));

    let started = std::time::Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let server = Server::start("shutdown").await;
    let client = http_client();
    let mut meta = meta_2026();
    meta["progressToken"] = json!("p");
    let mut request = client
        .post(&server.url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "slow_count",
                                 "arguments": {"steps": 100, "delay_ms": 5000},
                                 "_meta": meta}}));
    for (name, value) in headers_2026("tools/call", Some("slow_count")) {
        request = request.header(name, value);
    }
    let slow = tokio::spawn(async move {
        let response = request.send().await.unwrap();
        response.text().await.unwrap_or_default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let body = tokio::time::timeout(TIMEOUT, slow).await.unwrap().unwrap();
    assert!(!body.contains("counted"), "{body}");
}

/// Drives the stdio flavour through an in-memory pipe.
async fn stdio_exchange(record: &Path, requests: &[Value]) -> Vec<Value> {
    let (client_side, server_side) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_side);
    let config = DemoServerConfig {
        record: Some(record.to_path_buf()),
    };
    let server = tokio::spawn(demo_server::serve_io(server_read, server_write, config));
    let (client_read, mut client_write) = tokio::io::split(client_side);
    let mut lines = BufReader::new(client_read).lines();
    let mut responses = Vec::new();
    for request in requests {
        let mut line = request.to_string();
        line.push('\n');
        client_write.write_all(line.as_bytes()).await.unwrap();
        if request.get("id").is_some() {
            let response = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            responses.push(serde_json::from_str(&response).unwrap());
        }
    }
    client_write.shutdown().await.unwrap();
    drop(client_write);
    tokio::time::timeout(TIMEOUT, server)
        .await
        .expect("stdio server ends at EOF")
        .unwrap()
        .unwrap();
    responses
}

#[tokio::test]
async fn stdio_handshake_and_2026() {
    let record = temp_path("stdio-old");
    let responses = stdio_exchange(
        &record,
        &[
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": OLD, "capabilities": {},
                              "clientInfo": {"name": "stdio-old", "version": "1"}}}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": "over stdio"}}}),
        ],
    )
    .await;
    assert_eq!(responses[0]["result"]["protocolVersion"], OLD);
    assert_eq!(text_of(&responses[1]["result"]), "over stdio");
    let lines = read_record(&record);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|line| line["transport"] == "stdio"));
    assert_eq!(lines[2]["name"], "echo");
    let _ = std::fs::remove_file(&record);

    let record = temp_path("stdio-new");
    let responses = stdio_exchange(
        &record,
        &[
            json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                   "params": {"_meta": meta_2026()}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": "stdio 2026"},
                              "_meta": meta_2026()}}),
        ],
    )
    .await;
    assert!(responses[0]["result"]["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!(NEW)));
    assert_eq!(text_of(&responses[1]["result"]), "stdio 2026");
    let lines = read_record(&record);
    assert_eq!(lines[1]["protocol_version"], NEW);
    assert_eq!(lines[1]["arguments"], json!({"text": "stdio 2026"}));
    let _ = std::fs::remove_file(&record);
}
