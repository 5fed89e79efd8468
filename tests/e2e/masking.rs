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
    let mut cmd = hoop(d);
    cmd.args([
        "audit",
        "search",
        "--profile",
        "demo",
        "--tool",
        "echo",
        "--json",
    ]);
    let found = run(cmd);
    assert_eq!(found.status, Some(0), "{}", found.stderr);
    assert_no_raw("hoop audit search", found.stdout.as_bytes());
    let events: Vec<Value> = found
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
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
