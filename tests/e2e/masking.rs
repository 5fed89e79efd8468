//! Masking through `hoop demo`: the official Python client, in both MCP
//! revisions, gets `get_customer`'s and `echo`'s protected data masked;
//! the upstream still receives what the client sent; and no raw value is
//! anywhere in the audit record: not in the store's files, not in either
//! export. Keyed hashes stay equal across a restart of the broker.

use hoop_e2e::*;
use serde_json::Value;

use crate::audit::{hoop, run};

/// Every raw value the calls carry, in each form they are written.
const RAW: [&str; 9] = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "078-05-1120",
    "GB82WEST12345698765432",
    "GB82 WEST 1234 5698 7654 32",
    "021000021",
    "000123456789",
    "jane.sample@example.com",
    "123456789",
];

fn assert_no_raw(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for raw in RAW {
        assert!(!text.contains(raw), "{what} holds the raw value {raw:?}");
    }
}

/// `hoop audit search --json` with `args`: the events, none holding a raw value.
fn audit_search<S: AsRef<std::ffi::OsStr>>(dir: &std::path::Path, args: &[S]) -> Vec<Value> {
    let mut cmd = hoop(dir);
    cmd.args(["audit", "search", "--json", "--limit", "1000"])
        .args(args);
    let found = run(cmd);
    assert_eq!(found.status, Some(0), "{}", found.stderr);
    assert_no_raw("hoop audit search", found.stdout.as_bytes());
    found
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn masking(url: &str, mode: &str) -> Value {
    let out = python_client(url, mode, &["negotiated", "masking"], &[]);
    outcome(&out, "masking").detail.clone()
}

#[test]
fn demo_masks_protected_data_for_the_client_and_in_the_record() {
    let dir = scratch();
    let d = dir.path();
    // The upstream's own record of what it received: outside the data dir,
    // which must hold no raw value.
    let record_dir = scratch();
    let record = record_dir.path().join("received.jsonl");
    let (mut demo, url, _) = hoop_demo(d, &record);

    let mut tokens = Vec::new();
    for mode in ["auto", "handshake"] {
        let got = masking(&url, mode);
        assert_no_raw(
            &format!("what the client got ({mode})"),
            got.to_string().as_bytes(),
        );
        let s = &got["customer_structured"];
        assert_eq!(s["card_number"], "************1111", "{mode}: {got:#}");
        assert_eq!(s["ssn"], "[MASKED:ssn]");
        assert_eq!(s["iban"], "******************5432");
        assert_eq!(s["routing_number"], "[MASKED:routing]");
        assert_eq!(s["account_number"], "********6789");
        assert_eq!(
            s["customer_id"], "cust-001",
            "what is not protected is untouched"
        );
        let email = s["email"].as_str().unwrap().to_owned();
        assert!(
            email.starts_with("[email:") && email.ends_with(']'),
            "{email}"
        );
        tokens.push(email);
        // The text content is the same record as JSON, masked as JSON.
        let text: Value = serde_json::from_str(got["customer_text"].as_str().unwrap()).unwrap();
        assert_eq!(&text, s, "{mode}");
        assert_eq!(
            got["echo_text"],
            "card **** **** **** 1111, SSN [MASKED:ssn], IBAN **** **** **** **** **54 32, \
             routing [MASKED:routing], account ********6789"
        );
    }
    assert_eq!(tokens[0], tokens[1], "one address, one token");

    // The upstream got the echo as the client sent it.
    let received = std::fs::read_to_string(&record).unwrap();
    assert!(received.contains("4111 1111 1111 1111"), "{received}");

    // The record: masked requests and responses, with what was found.
    let events = audit_search(d, &["--profile", "demo", "--tool", "echo"]);
    let request = events
        .iter()
        .find(|e| e["type"] == "mcp.request")
        .expect("the echo request is recorded");
    assert_eq!(request["masked"]["card"], 1, "{request:#}");
    assert!(request["message"]["params"]["arguments"]["text"]
        .as_str()
        .unwrap()
        .contains("[MASKED:ssn]"));
    let response = events
        .iter()
        .find(|e| e["type"] == "mcp.response")
        .expect("the echo answer is recorded");
    assert_eq!(response["masked"]["ssn"], 1, "{response:#}");

    for (format, file) in [("jsonl", "export.jsonl"), ("ocsf", "export.ocsf.jsonl")] {
        let out = record_dir.path().join(file);
        let mut cmd = hoop(d);
        cmd.args([
            "audit",
            "export",
            "--profile",
            "demo",
            "--format",
            format,
            "--out",
        ])
        .arg(&out);
        let exported = run(cmd);
        assert_eq!(exported.status, Some(0), "{}", exported.stderr);
        assert_no_raw(file, &std::fs::read(&out).unwrap());
    }

    // A restart keeps the key, so the same address gets the same token.
    assert_eq!(demo.terminate(), Some(0));
    every_file_holds_no_raw_value(d);
    let (mut demo, url, _) = hoop_demo(d, &record);
    let got = masking(&url, "auto");
    assert_eq!(got["customer_structured"]["email"], tokens[0].as_str());
    assert_eq!(demo.terminate(), Some(0));
    every_file_holds_no_raw_value(d);
}

/// The whole data dir: the audit store, its journal and side files, the
/// broker's own store, logs.
fn every_file_holds_no_raw_value(dir: &std::path::Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    // Bounded: a scratch dir holds a few dozen files.
    while let Some(p) = stack.pop() {
        assert!(seen < 10_000, "too many files under {}", dir.display());
        seen += 1;
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_no_raw(&p.display().to_string(), &std::fs::read(&p).unwrap());
        }
    }
    assert!(seen > 3, "the data dir should hold the audit store");
}

#[test]
fn a_profile_is_tried_offline_with_hoop_broker_mask() {
    let dir = scratch();
    let d = dir.path();
    let doc = d.join("result.json");
    std::fs::write(
        &doc,
        r#"{"content": [{"type": "text", "text": "card 4111 1111 1111 1111, order 4012888888881881"}],
            "structuredContent": {"ssn": "078-05-1120", "employee": "EMP-123456"}}"#,
    )
    .unwrap();
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        "store = \"broker.db\"\n\
         [masking.profiles.fraud]\n\
         styles = { card = \"hash\" }\n\
         [[masking.profiles.fraud.detectors]]\n\
         name = \"employee\"\n\
         pattern = 'EMP-(\\d{6})'\n",
    )
    .unwrap();
    let mask = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("hoop-broker"));
        cmd.arg("mask").args(args);
        run_bounded(cmd, std::time::Duration::from_secs(30))
    };

    let out = mask(&[doc.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let masked: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        masked["content"][0]["text"],
        "card **** **** **** 1111, order 4012888888881881"
    );
    assert_eq!(masked["structuredContent"]["ssn"], "[MASKED:ssn]");
    assert_eq!(masked["structuredContent"]["employee"], "EMP-123456");
    assert!(
        out.stderr.contains("profile default: masked card 1, ssn 1"),
        "{}",
        out.stderr
    );

    let out = mask(&[
        "--config",
        config.to_str().unwrap(),
        "--profile",
        "fraud",
        "--json",
        doc.to_str().unwrap(),
    ]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        report["found"],
        serde_json::json!({"card": 1, "employee": 1, "ssn": 1})
    );
    assert!(report["masked"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("card [card:"));
    assert_eq!(
        report["masked"]["structuredContent"]["employee"],
        "EMP-[MASKED:employee]"
    );
    assert!(
        !d.join("masking.key").exists(),
        "trying a profile makes no broker key"
    );

    let out = mask(&[
        "--config",
        config.to_str().unwrap(),
        "--profile",
        "nope",
        doc.to_str().unwrap(),
    ]);
    assert_eq!(out.status, Some(2));
    assert!(
        out.stderr.contains("no masking profile `nope`") && out.stderr.contains("fraud"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_carrier_of_the_stateless_fixture_is_masked_in_both_revisions() {
    // The Python SDK's server, through the whole path: a tool result (text,
    // an embedded resource, a resource link), log notifications and a
    // progress message on the call's SSE stream, the server's sampling and
    // elicitation requests (back-channel requests in the handshake era, an
    // `input_required` result's `inputRequests` at 2026-07-28), a JSON-RPC
    // error's message and data, a text/plain blob from resources/read, a
    // prompt, a completion, and a task's result read through tasks/get at
    // 2026-07-28. The server trickles every SSE answer a few bytes per read
    // with each message over several `data:` lines, so each value arrives
    // split across reads.
    let dir = scratch();
    let record = dir.path().join("stateless.jsonl");
    let (_server, upstream) = stateless_server_with(dir.path(), &record, &["--trickle-sse"]);
    let broker = Broker::start(
        dir.path(),
        &format!(
            "[audit]\nreaders = [\"eng\"]\n{}",
            http_target("bank", &upstream)
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "bank", &[]);
    let auth = connect.header_args();
    const MASKED: &str = "card **** **** **** 1111 SSN [MASKED:ssn]";
    for mode in ["auto", "handshake"] {
        let out = python_client(&connect.url, mode, &["negotiated", "carriers"], &auth);
        let got = &outcome(&out, "carriers").detail;
        assert_no_raw(
            &format!("what the client got ({mode})"),
            got.to_string().as_bytes(),
        );
        assert_eq!(got["tool_result"], MASKED, "{mode}: {got:#}");
        assert_eq!(
            got["log_data"],
            serde_json::json!([format!("{MASKED} #1"), format!("{MASKED} #2")]),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["sampling_request"],
            serde_json::json!([MASKED]),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["prompt_text"],
            format!("Please summarize {MASKED} in one sentence.")
        );
        assert_eq!(
            got["content_blocks"],
            serde_json::json!([MASKED, MASKED, MASKED]),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["error"]["message"],
            format!("cannot disclose {MASKED}"),
            "{mode}: {got:#}"
        );
        assert_eq!(got["error"]["data"]["detail"], MASKED, "{mode}: {got:#}");
        assert_eq!(
            got["progress_messages"][0],
            format!("found {MASKED}"),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["elicitation_message"],
            serde_json::json!([format!("Confirm: {MASKED}")]),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["statement_blob"],
            format!("statement: {MASKED}"),
            "{mode}: {got:#}"
        );
        assert_eq!(
            got["completion_values"],
            serde_json::json!([format!("{MASKED} (suggested)")]),
            "{mode}: {got:#}"
        );
        // What cannot be masked is withheld, with a reason.
        assert_eq!(got["unmaskable"]["code"], -32061, "{mode}: {got:#}");
        let why = got["unmaskable"]["message"].as_str().unwrap_or_default();
        assert!(why.contains("not valid base64"), "{mode}: {why}");
        if mode == "auto" {
            assert_eq!(got["protocol_version"], "2026-07-28");
            assert_eq!(
                got["task_result"],
                format!("report on {MASKED}: 2 sections"),
                "{got:#}"
            );
            // Polled with tasks/get while it runs: its status messages.
            let seen = got["task_status_messages"].as_array().unwrap();
            assert!(
                seen.iter()
                    .any(|m| m == &Value::from(format!("section 1/2 on {MASKED}"))),
                "{got:#}"
            );
        }
    }
    // The server got every argument as the client sent it.
    let received = std::fs::read_to_string(&record).unwrap();
    assert!(received.contains("4111 1111 1111 1111"));
    // The record says why an answer was withheld, and does not hold it.
    let mut args = vec!["--tool".to_owned(), "disclose".to_owned()];
    args.extend(broker.connect_args("alice"));
    let withheld: Vec<Value> = audit_search(dir.path(), &args)
        .into_iter()
        .filter(|e| e["outcome"] == "withheld")
        .collect();
    assert_eq!(withheld.len(), 2, "one per revision: {withheld:#?}");
    for e in &withheld {
        assert_eq!(e["type"], "mcp.response", "{e:#}");
        assert_eq!(e["error_code"], -32061, "{e:#}");
        assert!(
            e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("not valid base64"),
            "{e:#}"
        );
    }
    every_file_holds_no_raw_value(&dir.path().join("broker-state"));
}

const PROFILE_POLICY: &str = r#"
[[rules]]
name = "leads-read-customers"
groups = ["ml-leads"]
tools = ["get_customer"]
action = "allow"
masking = "fraud"

[[rules]]
name = "everyone"
anyone = true
tools = ["*"]
action = "allow"
"#;

fn customer(url: &str) -> Value {
    let (status, msgs) = call_tool(url, 7, "get_customer", r#"{"customer_id":"cust-001"}"#);
    assert_eq!(status, 200, "{msgs:?}");
    let answer = msgs.into_iter().find(|m| m["id"] == 7).unwrap();
    answer["result"]["structuredContent"].clone()
}

#[test]
fn the_policy_rule_chooses_the_profile_and_a_reload_cannot_name_a_missing_one() {
    let dir = scratch();
    let d = dir.path();
    let record = d.join("demo.jsonl");
    let (_demo, upstream) = demo_server(d, &record);
    let policy = d.join("policy.toml");
    std::fs::write(&policy, PROFILE_POLICY).unwrap();
    let broker = Broker::start(
        d,
        &format!(
            "policy = \"{}\"\n[audit]\nreaders = [\"eng\"]\n{}\n[masking.profiles.fraud]\nstyles = {{ card = \"hash\" }}\n",
            policy.display(),
            http_target("demo", &upstream)
        ),
    );
    // bob (ml-leads) gets the fraud profile: cards as keyed tokens, which a
    // fraud analyst can match across records; alice (eng) gets `default`.
    let bob = Connect::start_as(d, &broker, "demo", "bob", &["--no-local-auth"]);
    let alice = Connect::start(d, &broker, "demo", &["--no-local-auth"]);
    let fraud = customer(&bob.url);
    let card = fraud["card_number"].as_str().unwrap();
    assert!(
        card.starts_with("[card:") && card.ends_with(']'),
        "{fraud:#}"
    );
    assert_eq!(fraud["ssn"], "[MASKED:ssn]", "the rest is as in default");
    let plain = customer(&alice.url);
    assert_eq!(plain["card_number"], "************1111", "{plain:#}");
    // Each request's event names the profile its exchange was masked with.
    let mut args = ["--tool", "get_customer", "--type", "mcp.request"]
        .map(str::to_owned)
        .to_vec();
    args.extend(broker.connect_args("alice"));
    let profiles: Vec<(String, String)> = audit_search(d, &args)
        .into_iter()
        .map(|e| {
            (
                e["actor"]["sub"].as_str().unwrap_or_default().to_owned(),
                e["masking"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        profiles.contains(&("bob".into(), "fraud".into()))
            && profiles.contains(&("alice".into(), "default".into())),
        "{profiles:?}"
    );

    // `policy explain` says which profile applies; `policy check --config`
    // refuses a profile the config lacks.
    let explain = |who: &str, groups: &str| {
        let mut cmd = std::process::Command::new(bin("hoop-broker"));
        cmd.args(["policy", "explain"])
            .arg(&policy)
            .args(["--subject", who, "--groups", groups, "--target", "demo"])
            .args(["--tool", "get_customer", "--json", "--config"])
            .arg(&broker.config);
        run_bounded(cmd, std::time::Duration::from_secs(20))
    };
    let out = explain("bob", "ml-leads");
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["masking"], "fraud", "{v:#}");
    assert_eq!(v["rule"], "leads-read-customers");
    let v: Value = serde_json::from_str(&explain("alice", "eng").stdout).unwrap();
    assert_eq!(v["masking"], "default", "{v:#}");

    let typo = PROFILE_POLICY.replace("masking = \"fraud\"", "masking = \"fruad\"");
    let bad = d.join("typo.toml");
    std::fs::write(&bad, &typo).unwrap();
    let mut cmd = std::process::Command::new(bin("hoop-broker"));
    cmd.args(["policy", "check"])
        .arg(&bad)
        .arg("--config")
        .arg(&broker.config);
    let out = run_bounded(cmd, std::time::Duration::from_secs(20));
    assert_eq!(out.status, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("rule 'leads-read-customers' names masking profile 'fruad'"),
        "{}",
        out.stderr
    );

    // The same typo, live: refused, and bob keeps the fraud profile.
    std::fs::write(&policy, &typo).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !broker.proc.stderr().contains("policy not reloaded")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = broker.proc.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("policy not reloaded"))
        .unwrap_or_else(|| panic!("no reload refusal in the log:\n{log}"));
    assert!(line.contains("'fruad'"), "{line}");
    assert_eq!(customer(&bob.url)["card_number"], card);
}
