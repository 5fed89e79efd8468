//! `hoop exec`: one tool call from a script or CI job, in either MCP
//! revision, as the caller's own identity (a person's, or a workload's
//! from a CI token), with exit codes a pipeline can branch on.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;

fn exec(dir: &std::path::Path, broker: &Broker, token: &std::path::Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin("hoop"));
    c.args(["exec", "mcp"])
        .args(args)
        .args([
            "--broker",
            &broker.addr,
            "--pin",
            &broker.pin,
            "--token-file",
        ])
        .arg(token)
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir));
    run_bounded(c, Duration::from_secs(60))
}

#[test]
fn exec_calls_a_tool_in_both_revisions_with_clear_exit_codes() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, demo_url) = demo_server(dir.path(), &record);
    let (_every, every_url) = everything_http(dir.path());
    let broker = Broker::start(
        dir.path(),
        &format!(
            "{}{}",
            http_target("demo", &demo_url),
            http_target("everything", &every_url)
        ),
    );
    let alice = broker.token_file("alice");

    // The demo server speaks 2026-07-28: server/discover, then a stateless call.
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &[
            "demo",
            "--tool",
            "echo",
            "--args",
            r#"{"text":"hello from CI"}"#,
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "hello from CI");
    let seen = read_record(&record);
    assert!(
        seen.iter()
            .any(|r| r["method"] == "tools/call" && r["name"] == "echo"),
        "the call reached the upstream: {seen:?}"
    );

    // server-everything speaks only the handshake era: exec falls back.
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &[
            "everything",
            "--tool",
            "echo",
            "--args",
            r#"{"message":"hi"}"#,
            "--json",
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["content"][0]["text"], "Echo: hi", "{v}");

    // Arguments from a file.
    let args_file = dir.path().join("args.json");
    std::fs::write(&args_file, r#"{"text":"from a file"}"#).unwrap();
    let at = format!("@{}", args_file.display());
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &["demo", "--tool", "echo", "--args", &at],
    );
    assert_eq!(out.stdout.trim(), "from a file", "{}", out.stderr);

    // Exit codes.
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &["demo", "--tool", "no_such_tool"],
    );
    assert_eq!(
        out.status,
        Some(6),
        "tool error: {} {}",
        out.stdout,
        out.stderr
    );
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &["demo", "--tool", "echo", "--args", "[1,2]"],
    );
    assert_eq!(out.status, Some(2), "usage: {}", out.stderr);
    assert!(out.stderr.contains("JSON object"), "{}", out.stderr);
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, "not-a-token").unwrap();
    let out = exec(dir.path(), &broker, &bad, &["demo", "--tool", "echo"]);
    assert_eq!(out.status, Some(3), "auth: {}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    let mut c = Command::new(bin("hoop"));
    c.args(["exec", "mcp", "demo", "--tool", "echo", "--broker"])
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args(["--pin", &broker.pin, "--token-file"])
        .arg(&alice)
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let out = run_bounded(c, Duration::from_secs(90));
    assert_eq!(out.status, Some(4), "unreachable: {}", out.stderr);
}

#[test]
fn a_ci_job_calls_as_its_workload_identity() {
    let dir = scratch();
    let ci = OidcProvider::start(dir.path(), "workload", &[]);
    let human = OidcProvider::start(dir.path(), "human", &[]);
    let record = dir.path().join("demo.jsonl");
    let (_demo, demo_url) = demo_server(dir.path(), &record);
    let issuers = format!(
        "[[issuers]]\nissuer = \"{}\"\naudience = \"hoop-broker\"\n\n\
         [[issuers]]\nissuer = \"{}\"\naudience = \"hoop-broker\"\nkind = \"workload\"\n\
         [[issuers.workloads]]\nname = \"models-deploy\"\nclaims = {{ repository = \"bank/models\", ref = \"refs/heads/main\" }}\ngroups = [\"ci-deploy\"]\n",
        human.issuer, ci.issuer
    );
    let broker = serve_broker(dir.path(), &issuers, &http_target("demo", &demo_url));
    let token = dir.path().join("ci.token");
    std::fs::write(
        &token,
        ci.client_credentials("ci-deploy", "ci-deploy-secret"),
    )
    .unwrap();
    let out = exec(
        dir.path(),
        &broker,
        &token,
        &[
            "demo",
            "--tool",
            "echo",
            "--args",
            r#"{"text":"deploying"}"#,
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deploying");
    // The broker knows the caller as the workload, not as a person.
    let log = broker.proc.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("client connected") && l.contains("workload:models-deploy")),
        "{log}"
    );
    assert!(!log.contains("subject=alice"), "{log}");

    // Inside GitHub Actions: no token file, the runner's OIDC endpoint
    // (served here by the workload provider) hands out the token.
    let mut c = Command::new(bin("hoop"));
    c.args([
        "exec",
        "mcp",
        "demo",
        "--tool",
        "echo",
        "--args",
        r#"{"text":"from actions"}"#,
    ])
    .args(["--broker", &broker.addr, "--pin", &broker.pin])
    .env_remove("HOOP_TOKEN")
    .env_remove("HOOP_TOKEN_FILE")
    .env("HOOP_CONFIG", empty_config(dir.path()))
    .env(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        format!("{}/_actions/token?api-version=2.0", ci.issuer),
    )
    .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "actions-request-token");
    let out = run_bounded(c, Duration::from_secs(60));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "from actions");
    // A job without id-token permission gets a clear configuration error.
    let mut c = Command::new(bin("hoop"));
    c.args(["exec", "mcp", "demo", "--tool", "echo"])
        .args(["--broker", &broker.addr, "--pin", &broker.pin])
        .env_remove("HOOP_TOKEN")
        .env_remove("HOOP_TOKEN_FILE")
        .env("HOOP_CONFIG", empty_config(dir.path()))
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/_actions/token?api-version=2.0", ci.issuer),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong");
    let out = run_bounded(c, Duration::from_secs(60));
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("id-token: write"), "{}", out.stderr);
}

#[test]
fn exec_exits_5_when_policy_denies_and_8_when_no_approval_comes() {
    let dir = scratch();
    let (_demo, broker, record) = demo_behind_demo_policy(dir.path());
    let alice = broker.token_file("alice");
    let call = |tool: &str, args: &str| {
        exec(
            dir.path(),
            &broker,
            &alice,
            &["demo", "--tool", tool, "--args", args],
        )
    };
    let out = call("echo", r#"{"text":"fine"}"#);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let out = call("delete_model", r#"{"model":"fraud"}"#);
    assert_eq!(out.status, Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("no-destructive"), "{}", out.stderr);
    // Held for an approver who does not come within --wait.
    let out = exec(
        dir.path(),
        &broker,
        &alice,
        &[
            "demo",
            "--tool",
            "deploy_model",
            "--args",
            r#"{"model":"fraud"}"#,
            "--wait",
            "2s",
        ],
    );
    assert_eq!(out.status, Some(8), "{}", out.stderr);
    assert!(
        out.stderr.contains("waiting for approval #1 from ml-leads"),
        "{}",
        out.stderr
    );
    assert!(read_record(&record)
        .iter()
        .all(|r| r["name"] != "delete_model" && r["name"] != "deploy_model"));
}
