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

/// The README's approval walkthrough: as alice through the demo,
/// deploy_model waits; bob (`--profile demo-bob`, written by the demo)
/// lists and grants it; alice cannot grant her own.
#[test]
fn the_readme_approval_walkthrough_works_against_hoop_demo() {
    use std::process::Command;
    use std::time::{Duration, Instant};
    let dir = scratch();
    let record = dir.path().join("received.jsonl");
    let (mut demo, _url, _banner) = hoop_demo(dir.path(), &record);
    let hoop = |args: &[&str]| {
        let mut c = Command::new(bin("hoop"));
        c.args(args)
            .env("HOOP_DATA_DIR", dir.path())
            .env("HOOP_CONFIG", empty_config(dir.path()))
            .env_remove("HOOP_TOKEN")
            .env_remove("HOOP_PROFILE");
        c
    };
    let exec = hoop(&[
        "exec",
        "mcp",
        "demo",
        "--profile",
        "demo",
        "--tool",
        "deploy_model",
        "--args",
        r#"{"model":"fraud","version":"7","environment":"production"}"#,
        "--reason",
        "release 7",
    ]);
    let run = std::thread::spawn(move || run_bounded(exec, Duration::from_secs(90)));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    let listed = loop {
        let out = run_bounded(
            hoop(&["approve", "list", "--profile", "demo-bob"]),
            Duration::from_secs(30),
        );
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        if out.stdout.contains("#1") || Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(listed.contains("alice@example.com"), "{listed}");
    assert!(listed.contains("demo/deploy_model"), "{listed}");
    let own = run_bounded(
        hoop(&["approve", "grant", "1", "--profile", "demo"]),
        Duration::from_secs(30),
    );
    assert_eq!(own.status, Some(5), "{}", own.stderr);
    let granted = run_bounded(
        hoop(&[
            "approve",
            "grant",
            "1",
            "--profile",
            "demo-bob",
            "--reason",
            "CHG-1234",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(granted.status, Some(0), "{}", granted.stderr);
    let out = run.join().unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("deployed model fraud version 7 to production"),
        "{}",
        out.stdout
    );
    // The demo's own terminal was told.
    demo.terminate();
    let told = demo.stderr();
    assert!(
        told.contains("your call to deploy_model on demo waits for approval #1"),
        "{told}"
    );
}
