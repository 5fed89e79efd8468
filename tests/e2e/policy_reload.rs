//! Hot reload of the policy file: a valid change applies to live sessions
//! on their next message; a broken file is refused with file, line and
//! column in the broker's log while the last good policy keeps judging;
//! SIGHUP reloads at once.

use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

const ALLOW_ECHO: &str = r#"
[[rules]]
name = "echo-for-eng"
groups = ["eng"]
tools = ["echo"]
action = "allow"
"#;

const DENY_ECHO: &str = r#"
[[rules]]
name = "echo-frozen"
anyone = true
tools = ["echo"]
action = "deny"
reason = "echo is frozen for the audit"
"#;

fn echo(url: &str) -> Value {
    let (_, msgs) = call_tool(url, 5, "echo", r#"{"text":"hi"}"#);
    msgs.into_iter().find(|m| m["id"] == 5).unwrap()
}

/// Calls echo until `pred` holds, for at most 5 s.
fn until(url: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = echo(url);
        if pred(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policy_changes_apply_live_and_a_broken_file_changes_nothing() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, upstream) = demo_server(dir.path(), &record);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ALLOW_ECHO).unwrap();
    let broker = Broker::start(
        dir.path(),
        &format!(
            "policy = \"{}\"\n{}",
            policy.display(),
            http_target("demo", &upstream)
        ),
    );
    let connect = Connect::start(dir.path(), &broker, "demo", &["--no-local-auth"]);
    assert_eq!(echo(&connect.url)["result"]["content"][0]["text"], "hi");

    // A new rule applies to the live session, without a restart.
    std::fs::write(&policy, DENY_ECHO).unwrap();
    let v = until(&connect.url, |v| v.get("error").is_some());
    assert_eq!(v["error"]["code"], -32041, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo-frozen"),
        "{v}"
    );

    // A broken file: refused with where it is broken; the frozen rule stays.
    std::fs::write(
        &policy,
        "[[rules]]\nname = \"oops\"\naction = \"allow\nanyone = true\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.proc.stderr().contains("policy not reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = broker.proc.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("policy not reloaded"))
        .unwrap_or_else(|| panic!("no reload error in the log:\n{log}"));
    assert!(line.contains("policy.toml"), "{line}");
    assert!(line.contains("line 3"), "{line}");
    assert_eq!(echo(&connect.url)["error"]["code"], -32041);

    // SIGHUP reloads at once (the file is also polled; either applies it).
    std::fs::write(&policy, ALLOW_ECHO).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(broker.proc.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let v = until(&connect.url, |v| v.get("result").is_some());
    assert_eq!(v["result"]["content"][0]["text"], "hi", "{v}");
    // The broker survived all of it.
    assert!(broker.proc.stderr().contains("policy reloaded"));
}
