//! Server notifications that no client request asked for by id, through the
//! whole path (`hoop connect` → QUIC → `hoop-broker` → upstream and back),
//! with real servers and the official Python SDK client: log messages
//! (`notifications/message`), `list_changed` and `resources/updated` on the
//! handshake era's GET stream, log messages on a call's own SSE answer, and
//! the 2026-07-28 `subscriptions/listen` stream.
//!
//! Every scenario first runs direct against the upstream, so a failure
//! through hoop is hoop's.

use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

fn detail<'a>(all: &'a [Outcome], scenario: &str) -> &'a Value {
    &outcome(all, scenario).detail
}

#[test]
fn handshake_era_get_stream_carries_logs_updates_and_list_changed() {
    // server-everything sends all three on the session's GET stream, not on
    // any POST: periodic log messages after logging/setLevel, resource
    // updates for a resources/subscribe, and resources/list_changed when a
    // tool registers a resource.
    let dir = scratch();
    let (_everything, upstream) = everything_http(dir.path());
    let scenarios = ["negotiated", "logging", "resource_updates", "list_changed"];
    let direct = python_client(&upstream, "handshake", &scenarios, &[]);

    let broker = Broker::start(dir.path(), &http_target("everything", &upstream));
    let connect = Connect::start(dir.path(), &broker, "everything", &[]);
    let via = python_client(
        &connect.url,
        "handshake",
        &scenarios,
        &connect.header_args(),
    );

    for out in [&direct, &via] {
        assert_eq!(detail(out, "negotiated")["protocol_version"], "2025-11-25");
        let logs = detail(out, "logging");
        assert!(logs["logs"].as_u64() >= Some(2), "{logs}");
        assert_eq!(logs["stream_errors"], serde_json::json!([]), "{logs}");
        let updates = detail(out, "resource_updates");
        assert!(updates["updates"].as_u64() >= Some(1), "{updates}");
        // The subscribe and unsubscribe acknowledgements are log messages
        // on the GET stream too.
        assert!(updates["subscribe_logs"].as_u64() >= Some(1), "{updates}");
        let changed = detail(out, "list_changed");
        assert_eq!(changed["new_resource_listed"], true, "{changed}");
    }
}

#[test]
fn request_scoped_logs_and_the_2026_listen_stream() {
    // The stateless fixture (Python SDK): `chatty` logs on the call's own
    // SSE answer in both eras (2026-07-28 only when the request's _meta opts
    // in); `announce_changes` adds a tool and announces it, on the listen
    // stream at 2026-07-28 and on the GET stream in the handshake era.
    let dir = scratch();
    let record = dir.path().join("stateless.jsonl");
    let (_server, upstream) = stateless_server(dir.path(), &record);
    let modern = ["negotiated", "request_logs", "listen"];
    let legacy = ["negotiated", "request_logs", "list_changed"];
    let direct_modern = python_client(&upstream, "auto", &modern, &[]);
    let direct_legacy = python_client(&upstream, "handshake", &legacy, &[]);
    let seen_direct = read_record(&record).len();

    let broker = Broker::start(dir.path(), &http_target("bank", &upstream));
    let connect = Connect::start(dir.path(), &broker, "bank", &[]);
    let auth = connect.header_args();
    let via_modern = python_client(&connect.url, "auto", &modern, &auth);
    let via_legacy = python_client(&connect.url, "handshake", &legacy, &auth);

    for out in [&direct_modern, &via_modern] {
        assert_eq!(detail(out, "negotiated")["protocol_version"], "2026-07-28");
        assert_eq!(detail(out, "request_logs")["opt_in_required"], true);
        let listen = detail(out, "listen");
        assert_eq!(
            listen["honored"],
            serde_json::json!({"toolsListChanged": true, "resourceSubscriptions": ["fixture://greeting"]}),
            "{listen}"
        );
        assert_eq!(
            listen["stamps"],
            serde_json::json!([listen["subscription_id"]]),
            "{listen}"
        );
        assert_eq!(listen["new_tool_listed"], true, "{listen}");
    }
    for out in [&direct_legacy, &via_legacy] {
        assert_eq!(detail(out, "negotiated")["protocol_version"], "2025-11-25");
        let changed = detail(out, "list_changed");
        assert_eq!(changed["new_tool_listed"], true, "{changed}");
        assert!(changed["resource_updates"].as_u64() >= Some(1), "{changed}");
    }
    for out in [&direct_modern, &via_modern, &direct_legacy, &via_legacy] {
        let logs = detail(out, "request_logs");
        assert_eq!(logs["data"].as_array().map(Vec::len), Some(5), "{logs}");
    }

    // What the upstream saw from the broker: the listen request as a
    // 2026-07-28 request, with the routing header the broker derived.
    let received = read_record(&record);
    let listens: Vec<&Value> = received[seen_direct..]
        .iter()
        .filter(|r| r["method"] == "subscriptions/listen")
        .collect();
    assert_eq!(listens.len(), 1, "{listens:#?}");
    assert_eq!(listens[0]["headers"]["mcp-method"], "subscriptions/listen");
    assert_eq!(listens[0]["protocol_version"], "2026-07-28");

    // The client closed its listen stream (the SDK drops the POST): the
    // broker must end the upstream's stream too, not hold it open for as
    // long as it runs. The broker is still up here.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let ended: Vec<Value> = read_record(&record)[seen_direct..]
            .iter()
            .filter(|r| r["event"] == "listen_ended")
            .cloned()
            .collect();
        if !ended.is_empty() || Instant::now() > deadline {
            break ended;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        ended.len(),
        1,
        "upstream listen stream left open: {ended:#?}"
    );
    assert_eq!(ended[0]["request_id"], listens[0]["id"], "{ended:#?}");
    assert_eq!(ended[0]["how"], "cancelled", "{ended:#?}");
}

#[test]
fn the_2026_listen_stream_from_a_pooled_stdio_server() {
    // The same fixture over stdio, where the broker shares a pool of
    // children between identities and rewrites request ids: listen frames
    // name the broker's id in _meta (io.modelcontextprotocol/subscriptionId)
    // and must reach the listen request that id belongs to, stamped with
    // the client's own id again. (No direct run: the client driver speaks
    // HTTP only.)
    let dir = scratch();
    let record = dir.path().join("stdio.jsonl");
    let broker = Broker::start(
        dir.path(),
        &format!(
            "[targets.fx]\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"{}\", \"--stdio\", \"--record\", \"{}\"]\npool_size = 1\n",
            python().display(),
            tests_dir().join("fixtures/stateless_server.py").display(),
            record.display()
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "fx", &["--no-local-auth"]);
    let out = python_client(&connect.url, "auto", &["negotiated", "listen"], &[]);
    assert_eq!(detail(&out, "negotiated")["protocol_version"], "2026-07-28");
    let listen = detail(&out, "listen");
    assert_eq!(listen["subscription_id"], "listen-1", "{listen}");
    assert_eq!(
        listen["stamps"],
        serde_json::json!(["listen-1"]),
        "{listen}"
    );
    assert_eq!(listen["new_tool_listed"], true, "{listen}");
    // The child saw the broker's id, never the client's.
    let received = read_record(&record);
    let listens: Vec<&Value> = received
        .iter()
        .filter(|r| r["method"] == "subscriptions/listen")
        .collect();
    assert_eq!(listens.len(), 1, "{received:#?}");
    assert_ne!(listens[0]["id"], "listen-1", "{listens:#?}");
}
