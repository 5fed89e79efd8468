//! The audit log end to end: what the official clients do through hoop is
//! recorded, exported, and proven unaltered by our verifier and by Go's
//! reference code (tests/verifier-go); tampering is caught and named; a
//! killed broker loses no answered call; an unwritable log refuses calls
//! (nothing reaches the upstream) and recovers by itself.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::{json, Value};

/// `hoop` with the test's own data dir and no config from the machine.
pub(crate) fn hoop(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("hoop"));
    cmd.env("HOOP_DATA_DIR", dir)
        .env("HOOP_CONFIG", empty_config(dir))
        .env_remove("HOOP_TOKEN")
        .env_remove("HOOP_PROFILE");
    cmd
}

pub(crate) fn run(mut cmd: Command) -> Output {
    run_bounded(
        {
            cmd.stdin(std::process::Stdio::null());
            cmd
        },
        Duration::from_secs(60),
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs Go's reference verifier on `file`; its exit code and output.
fn go_verify(key: &str, file: &Path) -> Output {
    let mut cmd = Command::new(tests_dir().join("verifier-go/run.sh"));
    cmd.arg("-key").arg(key).arg(file);
    run_bounded(cmd, Duration::from_secs(300))
}

/// `hoop audit verify FILE --key KEY`.
fn verify(dir: &Path, file: &Path, key: &str) -> Output {
    let mut cmd = hoop(dir);
    cmd.args(["audit", "verify"]).arg(file).args(["--key", key]);
    run(cmd)
}

fn events_of(export: &str) -> Vec<(usize, Value)> {
    export
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("{\"seq\":"))
        .map(|(i, l)| (i, serde_json::from_str(l).unwrap()))
        .collect()
}

fn write_lines(path: &Path, lines: &[&str]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn demo_calls_are_recorded_exported_and_proven_and_any_tampering_is_named() {
    let dir = scratch();
    let d = dir.path();
    let record = d.join("received.jsonl");
    let (mut demo, url, _) = hoop_demo(d, &record);
    for mode in ["auto", "handshake"] {
        let out = python_client(&url, mode, &["list_tools", "echo"], &[]);
        assert!(out.iter().all(|o| o.ok), "{mode}: {out:?}");
    }

    // Who ran which call, what came back: both revisions, both directions.
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
    let events = json_lines(&found.stdout);
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "mcp.request")
        .collect();
    let responses: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "mcp.response")
        .collect();
    assert_eq!(requests.len(), 2, "{events:#?}");
    assert_eq!(responses.len(), 2, "{events:#?}");
    for r in &requests {
        assert_eq!(r["actor"]["sub"], "alice");
        assert_eq!(r["actor"]["groups"][0], "eng");
        assert!(r["actor"]["jti"].as_str().is_some_and(|j| !j.is_empty()));
        assert!(r["actor"]["client"].as_str().unwrap().starts_with("hoop/"));
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["message"]["params"]["name"], "echo");
        let answer = responses
            .iter()
            .find(|a| a["exchange"] == r["exchange"])
            .expect("each request's answer shares its exchange id");
        assert_eq!(answer["outcome"], "ok");
        assert!(answer["message"]["result"]["content"][0]["text"].is_string());
    }
    assert!(
        requests.iter().any(|r| r["session"].is_string()),
        "the handshake-era call names its session: {requests:#?}"
    );

    // Replay one exchange as a timeline.
    let mut cmd = hoop(d);
    cmd.args(["audit", "replay", "--profile", "demo"])
        .arg(requests[0]["exchange"].as_str().unwrap());
    let replay = run(cmd);
    assert_eq!(replay.status, Some(0), "{}", replay.stderr);
    assert!(
        replay.stdout.contains("→ tools/call echo"),
        "{}",
        replay.stdout
    );
    assert!(replay.stdout.contains("← ok"), "{}", replay.stdout);

    // Export, then verify with our verifier and with Go's.
    let file = d.join("export.jsonl");
    let mut cmd = hoop(d);
    cmd.args(["audit", "export", "--profile", "demo", "--out"])
        .arg(&file);
    let exported = run(cmd);
    assert_eq!(exported.status, Some(0), "{}", exported.stderr);
    let mut cmd = hoop(d);
    cmd.args(["audit", "key", "--profile", "demo"]);
    let key = run(cmd).stdout.trim().to_owned();
    assert!(key.starts_with("hoop.local/audit/"), "{key}");
    let ok = verify(d, &file, &key);
    assert_eq!(ok.status, Some(0), "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.starts_with("OK "), "{}", ok.stdout);
    // --json says the same, with the origin it was signed under.
    let mut cmd = hoop(d);
    cmd.args(["audit", "verify"])
        .arg(&file)
        .args(["--key", &key, "--json"]);
    let report: Value = serde_json::from_str(run(cmd).stdout.trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        key.starts_with(report["origin"].as_str().unwrap()),
        "{report}"
    );
    assert_eq!(report["summary"], ok.stdout.trim(), "{report}");
    let go = go_verify(&key, &file);
    assert_eq!(
        go.status,
        Some(0),
        "Go verifier: {}{}",
        go.stdout,
        go.stderr
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let events = events_of(&text);
    assert!(events.len() >= 8, "{}", events.len());
    let (at, e) = &events[events.len() / 2];
    let seq = e["seq"].as_u64().unwrap();
    let named = |out: &Output, seq: u64| {
        assert_eq!(out.status, Some(1), "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(&format!("seq {seq}:")),
            "should name seq {seq}: {}",
            out.stdout
        );
    };

    // One byte of an event changed: the time's last digit.
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let t = e["time"].as_str().unwrap();
    let last = t.chars().nth(t.len() - 2).unwrap();
    let other = if last == '0' { '1' } else { '0' };
    let new_time = format!("{}{other}Z", &t[..t.len() - 2]);
    edited[*at] = edited[*at].replacen(t, &new_time, 1);
    assert_ne!(edited[*at], lines[*at]);
    let changed = d.join("changed.jsonl");
    write_lines(
        &changed,
        &edited.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    named(&verify(d, &changed, &key), seq);
    let go = go_verify(&key, &changed);
    assert_eq!(
        go.status,
        Some(1),
        "Go must reject: {}{}",
        go.stdout,
        go.stderr
    );
    assert!(go.stdout.contains(&format!("seq {seq}:")), "{}", go.stdout);

    // An event line deleted.
    let mut deleted = lines.clone();
    deleted.remove(*at);
    let path = d.join("deleted.jsonl");
    write_lines(&path, &deleted);
    named(&verify(d, &path, &key), seq);

    // An event line inserted (a copy of another).
    let mut inserted = lines.clone();
    inserted.insert(*at, lines[events[0].0]);
    let path = d.join("inserted.jsonl");
    write_lines(&path, &inserted);
    let out = verify(d, &path, &key);
    assert_eq!(out.status, Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("seq "), "{}", out.stdout);

    // Two event lines swapped.
    let (a, b) = (events[1].0, events[2].0);
    let mut swapped = lines.clone();
    swapped.swap(a, b);
    let path = d.join("swapped.jsonl");
    write_lines(&path, &swapped);
    named(
        &verify(d, &path, &key),
        events[1].1["seq"].as_u64().unwrap(),
    );

    // A key that is not one (its id does not match it) is a usage error.
    let mut cmd = hoop(d);
    cmd.args(["audit", "verify"]).arg(&file).args([
        "--key",
        "hoop.local/audit/00000000+4a8b2f6e+AQ8d4q0mcxVYkbmfSUlOjFv5DxSzbt4U0n7UZfgvCnux",
    ]);
    let out = run(cmd);
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--key"), "{}", out.stderr);

    // The OCSF export is API Activity as OCSF's own schema defines it.
    let ocsf = d.join("export.ocsf.jsonl");
    let mut cmd = hoop(d);
    cmd.args([
        "audit",
        "export",
        "--profile",
        "demo",
        "--format",
        "ocsf",
        "--out",
    ])
    .arg(&ocsf);
    assert_eq!(run(cmd).status, Some(0));
    let mut cmd = Command::new(python());
    cmd.arg(tests_dir().join("fixtures/ocsf_check.py"))
        .args(["1.3.0", "api_activity"])
        .arg(&ocsf);
    let checked = run(cmd);
    assert_eq!(
        checked.status,
        Some(0),
        "{}{}",
        checked.stdout,
        checked.stderr
    );
    let report: Value = serde_json::from_str(checked.stdout.trim()).unwrap();
    assert!(report["records"].as_u64().unwrap() >= 8, "{report}");

    // Online, the broker checks with its own key: a --key there would go
    // unused, so it is refused, pointing at the offline check.
    let mut cmd = hoop(d);
    cmd.args(["audit", "verify", "--profile", "demo", "--key", &key]);
    let out = run(cmd);
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("hoop audit verify FILE --key"),
        "{}",
        out.stderr
    );

    // On the host: the key, as a recorded read, by the user the system
    // says runs the command, whatever $USER claims.
    let db = d.join("demo/audit.db");
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["audit", "pubkey", "--audit-log"])
        .arg(&db)
        .env("USER", "ceo")
        .env("LOGNAME", "ceo");
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), key);
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args([
        "audit",
        "search",
        "--type",
        "audit.read",
        "--json",
        "--limit",
        "1000",
        "--audit-log",
    ])
    .arg(&db);
    let host_reads = json_lines(&run(cmd).stdout);
    let pubkey_read = host_reads
        .iter()
        .find(|r| r["method"] == "key" && r["actor"]["kind"] == "admin")
        .unwrap_or_else(|| panic!("the pubkey read was recorded: {host_reads:#?}"));
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid:{}", nix::unistd::getuid()));
    assert_eq!(pubkey_read["actor"]["sub"], me.as_str(), "{pubkey_read}");

    // The reads themselves are in the log.
    let mut cmd = hoop(d);
    cmd.args([
        "audit",
        "search",
        "--profile",
        "demo",
        "--type",
        "audit.read",
        "--json",
    ]);
    let reads = json_lines(&run(cmd).stdout);
    assert!(
        reads.iter().any(|r| r["method"] == "export"),
        "the export was recorded: {reads:#?}"
    );
    assert_eq!(demo.terminate(), Some(0));
}

#[test]
fn search_and_replay_cover_both_revisions_a_stdio_upstream_and_sse() {
    let dir = scratch();
    let d = dir.path();
    let record = d.join("stateless.jsonl");
    let (_py, py_url) = stateless_server(d, &record);
    let (cmd, args) = everything_stdio_command();
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let broker = Broker::start(
        d,
        &format!(
            "[audit]\nreaders = [\"eng\"]\n{}[targets.every]\ntransport = \"stdio\"\ncommand = {cmd:?}\nargs = [{}]\n",
            http_target("py", &py_url),
            args.join(", ")
        ),
    );
    // server-everything over stdio, handshake era: its answers are SSE, and
    // its progress notifications arrive on the call's own stream.
    let every = Connect::start(d, &broker, "every", &[]);
    let out = python_client(
        &every.url,
        "handshake",
        &["echo", "progress"],
        &every.header_args(),
    );
    assert!(out.iter().all(|o| o.ok), "{out:?}");
    // The Python SDK's own 2026-07-28 server over HTTP.
    let py = Connect::start(d, &broker, "py", &[]);
    let out = python_client(&py.url, "auto", &["echo"], &py.header_args());
    assert!(out.iter().all(|o| o.ok), "{out:?}");

    let search = |args: &[&str]| {
        let mut cmd = hoop(d);
        cmd.args(["audit", "search", "--json", "--limit", "1000"])
            .args(args)
            .args(broker.connect_args("alice"));
        let out = run(cmd);
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        json_lines(&out.stdout)
    };
    let every_events = search(&["--target", "every"]);
    let session = every_events
        .iter()
        .find_map(|e| e["session"].as_str())
        .expect("the handshake session is recorded")
        .to_owned();
    let progress = every_events
        .iter()
        .filter(|e| e["type"] == "mcp.server_message" && e["method"] == "notifications/progress")
        .count();
    assert!(
        progress >= 2,
        "SSE progress events recorded one by one: {progress}"
    );
    // More than asked for: said on stderr with the next page's flag, and
    // that page starts after it. A type that does not exist is a usage
    // error, not an empty answer.
    let page = |extra: &[&str]| {
        let mut cmd = hoop(d);
        cmd.args(["audit", "search", "--json", "--target", "every"])
            .args(extra)
            .args(broker.connect_args("alice"));
        run(cmd)
    };
    let first = page(&["--limit", "2"]);
    assert_eq!(first.status, Some(0), "{}", first.stderr);
    let shown = json_lines(&first.stdout);
    assert_eq!(shown.len(), 2, "{}", first.stdout);
    let after = shown[1]["seq"].as_u64().unwrap();
    assert!(
        first.stderr.contains(&format!("--after {after}")),
        "{}",
        first.stderr
    );
    let next = json_lines(&page(&["--limit", "2", "--after", &after.to_string()]).stdout);
    assert!(next[0]["seq"].as_u64().unwrap() > after, "{next:?}");
    let bad = page(&["--type", "mcp.requests"]);
    assert_eq!(bad.status, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("mcp.request"), "{}", bad.stderr);
    let py_events = search(&["--target", "py", "--type", "mcp.request"]);
    assert!(
        py_events.iter().any(|e| e["message"]["params"]["_meta"]
            ["io.modelcontextprotocol/protocolVersion"]
            == "2026-07-28"),
        "{py_events:#?}"
    );

    // Replay of the whole handshake-era session: initialize to the last call.
    let mut cmd = hoop(d);
    cmd.args(["audit", "replay", &session])
        .args(broker.connect_args("alice"));
    let replay = run(cmd);
    assert_eq!(replay.status, Some(0), "{}", replay.stderr);
    let t = &replay.stdout;
    for want in [
        "→ initialize",
        "→ tools/call",
        "← ok",
        "(server)",
        "← notifications/progress",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }

    // Bob is in no reader group: refused (exit 5), and the refusal is
    // recorded like any other.
    let mut cmd = hoop(d);
    cmd.args(["audit", "search"])
        .args(broker.connect_args("bob"));
    let out = run(cmd);
    assert_eq!(out.status, Some(5), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("readers"), "{}", out.stderr);
    let refused = search(&["--type", "mcp.refused", "--user", "bob"]);
    assert_eq!(refused.len(), 1, "{refused:#?}");

    // On the broker host, the same log, and it verifies whole.
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["audit", "verify", "--state-dir"])
        .arg(&broker.state);
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("OK "), "{}", out.stdout);
}

/// Calls `echo` with distinct texts from several threads until the broker
/// dies; returns the texts whose answers came back.
fn load_until_broken(url: &str, threads: usize) -> Vec<String> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                for i in 0..5_000u64 {
                    let text = format!("crash-{t}-{i}");
                    let (status, msgs) =
                        call_tool(&url, i, "echo", &format!(r#"{{"text":"{text}"}}"#));
                    let echoed = msgs.iter().any(|m| {
                        m.pointer("/result/content/0/text").and_then(Value::as_str)
                            == Some(text.as_str())
                    });
                    if status != 200 || !echoed {
                        break;
                    }
                    answered.push(text);
                }
                answered
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect()
}

#[test]
fn a_broker_killed_under_load_loses_no_call_whose_answer_was_delivered() {
    let dir = scratch();
    let d = dir.path();
    let record = d.join("demo.jsonl");
    let (_demo, url) = demo_server(d, &record);
    let mut broker = Broker::start(d, &http_target("demo", &url));
    let connect = Connect::start(d, &broker, "demo", &["--no-local-auth"]);
    let load = {
        let url = connect.url.clone();
        std::thread::spawn(move || load_until_broken(&url, 6))
    };
    std::thread::sleep(Duration::from_millis(2500));
    // What runs behind the journal steps aside for the request path under
    // load (broker/audit-log/src/background.rs); the rest does not.
    let policies = thread_policies(broker.proc.pid());
    for thread in ["audit-writer", "audit-notifier", "audit-wal"] {
        let found: Vec<_> = policies.iter().filter(|(n, _)| n == thread).collect();
        assert!(!found.is_empty(), "no {thread} thread in {policies:?}");
        assert!(
            found.iter().all(|(_, p)| *p == SCHED_IDLE),
            "{thread} is not SCHED_IDLE: {policies:?}"
        );
    }
    let workers: Vec<_> = policies
        .iter()
        .filter(|(n, _)| n == "tokio-rt-worker")
        .collect();
    assert!(
        !workers.is_empty() && workers.iter().all(|(_, p)| *p == 0),
        "the request path runs at normal priority: {policies:?}"
    );
    broker.proc.kill();
    let answered = load.join().unwrap();
    assert!(answered.len() > 20, "the load ran: {}", answered.len());

    // Restarted on the same files, the log verifies...
    let restarted = Broker::start_with(d, broker.config.clone(), broker.state.clone());
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["audit", "verify", "--state-dir"])
        .arg(&restarted.state);
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    // ...and holds the request and the response of every answered call.
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args([
        "audit",
        "search",
        "--json",
        "--limit",
        "10000",
        "--tool",
        "echo",
        "--state-dir",
    ])
    .arg(&restarted.state);
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let events = json_lines(&out.stdout);
    let text_of = |e: &Value, pointer: &str| {
        e.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let requested: std::collections::HashSet<String> = events
        .iter()
        .filter(|e| e["type"] == "mcp.request")
        .filter_map(|e| text_of(e, "/message/params/arguments/text"))
        .collect();
    let responded: std::collections::HashSet<String> = events
        .iter()
        .filter(|e| e["type"] == "mcp.response")
        .filter_map(|e| text_of(e, "/message/result/content/0/text"))
        .collect();
    for text in &answered {
        assert!(requested.contains(text), "request of {text} missing");
        assert!(responded.contains(text), "response of {text} missing");
    }
}

/// Linux's number for `SCHED_IDLE`.
const SCHED_IDLE: u32 = 5;

/// Each thread of process `pid`: its name and scheduling policy, from
/// `/proc/PID/task/TID/stat` (the policy is field 41; the name, in
/// parentheses, may hold spaces, so fields are counted after its `)`).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let policy = stat[close + 1..]
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .unwrap();
        out.push((name, policy));
    }
    out
}

/// A 4 MiB tmpfs at `at`, or `None` where this process may not mount.
fn small_tmpfs(at: &Path) -> Option<TmpfsMount> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !nix::unistd::Uid::effective().is_root(),
            "root could not mount a tmpfs for the full-disk test"
        );
        return None;
    }
    Some(TmpfsMount(at.to_owned()))
}

struct TmpfsMount(std::path::PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The demo server (recording what it receives to `record`) behind a
/// broker whose audit log is at `db` and whose admin listener is on the
/// returned port, and `hoop connect` to it; one call made, healthy.
fn demo_logged_at(d: &Path, record: &Path, db: &Path) -> (Proc, Broker, Connect, u16) {
    let (demo, url) = demo_server(d, record);
    let admin = free_tcp_port();
    let broker = Broker::start(
        d,
        &format!(
            "[audit]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            db.display(),
            http_target("demo", &url)
        ),
    );
    let connect = Connect::start(d, &broker, "demo", &["--no-local-auth"]);
    let (status, _) = call_tool(&connect.url, 1, "echo", r#"{"text":"before"}"#);
    assert_eq!(status, 200);
    assert_eq!(healthz(admin).0, 200);
    (demo, broker, connect, admin)
}

/// Waits (10 s at most) for `/healthz` to say ok again.
fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, h) = healthz(port);
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "still degraded: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthz(port: u16) -> (u16, Value) {
    let r = http()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn a_full_disk_refuses_calls_before_the_upstream_and_recovers_without_a_restart() {
    let dir = scratch();
    let d = dir.path();
    let mnt = d.join("audit-fs");
    let Some(_mount) = small_tmpfs(&mnt) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let record = d.join("demo.jsonl");
    let (_demo, broker, connect, admin) = demo_logged_at(d, &record, &mnt.join("audit.db"));

    // Fill the file system.
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // Calls with a large argument grow the log until a write fails; that
    // call and every one after it is refused before the upstream.
    let big = "x".repeat(48 * 1024);
    let mut refused = None;
    for i in 0..200u64 {
        let text = format!("full-{i}-{big}");
        let (_, msgs) = call_tool(
            &connect.url,
            100 + i,
            "echo",
            &format!(r#"{{"text":"{text}"}}"#),
        );
        if let Some(e) = msgs.iter().find_map(|m| m.get("error")) {
            assert_eq!(e["code"], -32060, "{e}");
            let message = e["message"].as_str().unwrap();
            assert!(message.contains("full"), "names the cause: {message}");
            refused = Some(format!("full-{i}-"));
            break;
        }
    }
    // The first refusal may be of an answer (the upstream ran the call, its
    // answer could not be recorded, so it was withheld); from then on the
    // request itself cannot be recorded and never leaves the broker.
    assert!(refused.is_some(), "a call is refused once the disk is full");
    // (As large as the calls that filled it: a small one may still fit in
    // the log's own free pages.)
    let (_, msgs) = call_tool(
        &connect.url,
        500,
        "echo",
        &format!(r#"{{"text":"full-next-{big}"}}"#),
    );
    let e = msgs
        .iter()
        .find_map(|m| m.get("error"))
        .unwrap_or_else(|| panic!("refused while full: {msgs:?}"));
    assert_eq!(e["code"], -32060, "{e}");
    let seen = read_record(&record);
    assert!(
        !seen.iter().any(|m| m.to_string().contains("full-next")),
        "the upstream must not see a call that could not be recorded"
    );
    let (status, h) = healthz(admin);
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "degraded");
    assert!(
        h["audit"]["error"].as_str().unwrap().contains("full"),
        "{h}"
    );

    // Room again: the next call goes through, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, msgs) = call_tool(&connect.url, 999, "echo", r#"{"text":"after"}"#);
        if status == 200 && msgs.iter().any(|m| m.get("result").is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {msgs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The journal takes calls again at once; the file catches up with
    // what it holds within its next retry (every second).
    wait_healthy(admin);
    drop(connect);
    drop(broker);
}

/// Makes a folder and everything in it immutable (`chattr +i`: even root
/// may not write, through descriptors already open too, which a read-only
/// remount refuses to do under open files), until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    /// `None` where this process may not set the attribute.
    fn set(dir: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .args(["-R", "+i"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("chattr").args(["-R", "-i"]).arg(dir).status();
            assert!(
                !nix::unistd::Uid::effective().is_root(),
                "root could not make {} immutable for the read-only test",
                dir.display()
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_log_made_read_only_while_the_broker_runs_refuses_calls_and_recovers_without_a_restart() {
    let dir = scratch();
    let d = dir.path();
    let audit_dir = d.join("audit");
    std::fs::create_dir_all(&audit_dir).unwrap();
    let record = d.join("demo.jsonl");
    let (_demo, broker, connect, admin) = demo_logged_at(d, &record, &audit_dir.join("audit.db"));

    // The log's folder, its file and its journal turn read-only under the
    // running broker, as a file system does that the kernel remounts
    // read-only after an error.
    let Some(immutable) = Immutable::set(&audit_dir) else {
        eprintln!("skipped: chattr +i needs root");
        return;
    };
    let (_, msgs) = call_tool(&connect.url, 2, "echo", r#"{"text":"ro-next"}"#);
    let e = msgs
        .iter()
        .find_map(|m| m.get("error"))
        .unwrap_or_else(|| panic!("refused while read-only: {msgs:?}"));
    assert_eq!(e["code"], -32060, "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("read-only"), "names the cause: {message}");
    let seen = read_record(&record);
    assert!(
        !seen.iter().any(|m| m.to_string().contains("ro-next")),
        "the upstream must not see a call that could not be recorded"
    );
    let (status, h) = healthz(admin);
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "degraded");
    assert!(
        h["audit"]["error"].as_str().unwrap().contains("read-only"),
        "{h}"
    );

    // Writable again: the next call goes through, without a restart, and
    // both calls that were answered are in a log that verifies.
    drop(immutable);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, msgs) = call_tool(&connect.url, 3, "echo", r#"{"text":"after"}"#);
        if status == 200 && msgs.iter().any(|m| m.get("result").is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {msgs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The journal takes calls again at once; the file catches up with
    // what it holds within its next retry (every second).
    wait_healthy(admin);
    drop(connect);
    // Healthy means the records the file refused are in it; the last
    // call's may still wait in the journal (applied within 20 ms, or at
    // the next start), so the broker is stopped as an operator would,
    // and applies them as it stops, before the file is read alone.
    let mut broker = broker;
    assert_eq!(broker.proc.terminate(), Some(0), "{}", broker.proc.stderr());
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args([
        "audit",
        "search",
        "--json",
        "--type",
        "mcp.response",
        "--audit-log",
    ])
    .arg(audit_dir.join("audit.db"));
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    for text in ["before", "after"] {
        assert!(out.stdout.contains(text), "{text} missing: {}", out.stdout);
    }
    assert!(!out.stdout.contains("ro-next"), "{}", out.stdout);
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["audit", "verify", "--audit-log"])
        .arg(audit_dir.join("audit.db"));
    let out = run(cmd);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_broker_whose_log_cannot_be_opened_for_writing_does_not_start() {
    let dir = scratch();
    let d = dir.path();
    let mnt = d.join("ro-fs");
    let Some(_mount) = small_tmpfs(&mnt) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\n[audit]\npath = \"{}\"\n",
            free_udp_port(),
            mnt.join("audit.db").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["dev", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(d.join("state"));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("audit") && out.stderr.contains("read-only"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_policy_reload_the_log_cannot_record_does_not_take_effect_until_it_can() {
    let dir = scratch();
    let d = dir.path();
    let audit_dir = d.join("audit");
    std::fs::create_dir_all(&audit_dir).unwrap();
    let (_demo, url) = demo_server(d, &d.join("demo.jsonl"));
    let policy = d.join("policy.toml");
    let allow = "[[rules]]\nname = \"echo-for-eng\"\ngroups = [\"eng\"]\ntools = [\"echo\"]\naction = \"allow\"\n";
    let deny = "[[rules]]\nname = \"echo-frozen\"\nanyone = true\ntools = [\"echo\"]\naction = \"deny\"\nreason = \"frozen\"\n";
    std::fs::write(&policy, allow).unwrap();
    let broker = Broker::start(
        d,
        &format!(
            "policy = \"{}\"\n[audit]\npath = \"{}\"\n{}",
            policy.display(),
            audit_dir.join("audit.db").display(),
            http_target("demo", &url)
        ),
    );
    let connect = Connect::start(d, &broker, "demo", &["--no-local-auth"]);
    let code = |id: u64| {
        let (_, msgs) = call_tool(&connect.url, id, "echo", r#"{"text":"hi"}"#);
        msgs.iter()
            .find_map(|m| m.get("error"))
            .map(|e| e["code"].clone())
    };
    assert_eq!(code(1), None, "allowed at first");
    // Let the file take the call's events first (the writer applies them
    // within 20 ms): SQLite writing its WAL index (shared memory mapped
    // from a file) after the file turned immutable would kill the broker
    // with SIGBUS, which is not what this test is about.
    std::thread::sleep(Duration::from_millis(500));

    let Some(immutable) = Immutable::set(&audit_dir) else {
        eprintln!("skipped: chattr +i needs root");
        return;
    };
    std::fs::write(&policy, deny).unwrap();
    // The broker looks at the file every second; it must not take the new
    // policy while it cannot record the reload.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker
        .proc
        .stderr()
        .contains("the reload cannot be recorded")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        broker
            .proc
            .stderr()
            .contains("the reload cannot be recorded"),
        "{}",
        broker.proc.stderr()
    );
    // Still the old policy: echo is allowed, so it fails at the record
    // (-32060), not at the new rule (-32041).
    assert_eq!(code(2), Some(json!(-32060)));

    // Writable again: the reload is recorded, then applies.
    drop(immutable);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = code(3);
    while last != Some(json!(-32041)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = code(3);
    }
    assert_eq!(
        last,
        Some(json!(-32041)),
        "the new policy applies once recorded"
    );
    let accepted = |events: &[Value]| events.iter().any(|e| e["detail"]["accepted"] == true);
    let log = audit_dir.join("audit.db");
    let events = host_audit_search(
        &[
            "--type".as_ref(),
            "policy.reload".as_ref(),
            "--audit-log".as_ref(),
            log.as_os_str(),
        ],
        accepted,
    );
    assert!(
        events.iter().any(|e| e["detail"]["accepted"] == true),
        "{events:#?}"
    );
}
