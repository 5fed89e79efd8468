//! The CLI as a first-time user meets it: trusting a broker with a
//! self-signed certificate, one exit-code table (docs/cli.md, `hoop --help`
//! and the binary agree, and every code is reached here), JSON on failure
//! with `--json`, and `hoop exec` leaving the broker at once when done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

/// A self-signed certificate and key made by OpenSSL as an operator would
/// (`openssl req -x509`, which marks it CA:TRUE), for `names`.
fn openssl_self_signed(dir: &Path, stem: &str, names: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{stem}-key.pem"));
    let cert = dir.join(format!("{stem}-cert.pem"));
    let out = run_bounded(
        {
            let mut c = Command::new("openssl");
            c.args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=hoop test broker",
                "-addext",
                &format!("subjectAltName={names}"),
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert);
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(out.status, Some(0), "openssl: {}", out.stderr);
    (cert, key)
}

/// `hoop ARGS` with no ambient settings but `config`.
fn hoop(config: &Path, data: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin("hoop"));
    c.args(args)
        .env("HOOP_CONFIG", config)
        .env("HOOP_DATA_DIR", data)
        .env("HOOP_KEYRING", "file");
    for var in [
        "HOOP_TOKEN",
        "HOOP_TOKEN_FILE",
        "HOOP_PROFILE",
        "HOOP_PIN",
        "HOOP_CA_FILE",
        "HOOP_BROKER",
        "HOOP_SERVER_NAME",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    ] {
        c.env_remove(var);
    }
    run_bounded(c, Duration::from_secs(90))
}

fn json_error(out: &Output) -> Value {
    let line = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON on stdout; stderr: {}", out.stderr));
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}; stderr: {}", out.stderr));
    v["error"].clone()
}

#[test]
fn a_broker_with_a_self_signed_certificate_is_trusted_by_file_or_pin_and_distrust_is_named() {
    let dir = scratch();
    let state = dir.path().join("broker-state");
    std::fs::create_dir_all(&state).unwrap();
    // The broker serves the operator's own certificate (the dev broker
    // takes the files it finds in its state dir).
    let (cert, key) = openssl_self_signed(&state, "made", "DNS:localhost,IP:127.0.0.1");
    std::fs::rename(&cert, state.join("broker-cert.pem")).unwrap();
    std::fs::rename(&key, state.join("broker-key.pem")).unwrap();
    let cert = state.join("broker-cert.pem");
    let broker = Broker::start(dir.path(), "");
    let alice = broker.token_file("alice");
    let data = dir.path().join("data");
    let empty = empty_config(dir.path());
    let targets = |config: &Path, extra: &[&str]| {
        let mut args = vec!["targets", "--token-file", alice.to_str().unwrap()];
        args.extend_from_slice(extra);
        hoop(config, &data, &args)
    };
    let at = ["--broker", broker.addr.as_str()];

    // The certificate itself as --ca-file: trusted (webpki alone refuses a
    // CA:TRUE certificate as the server's own).
    let cert_s = cert.to_str().unwrap();
    let out = targets(&empty, &[&at[..], &["--ca-file", cert_s]].concat());
    assert_eq!(out.status, Some(0), "{}", out.stderr);

    // A certificate the file does not vouch for: its own code and words.
    let (other, _) = openssl_self_signed(dir.path(), "other", "DNS:localhost");
    let other_s = other.to_str().unwrap();
    let out = targets(&empty, &[&at[..], &["--ca-file", other_s]].concat());
    assert_eq!(out.status, Some(9), "{}", out.stderr);
    assert!(
        out.stderr.contains("is not trusted")
            && out
                .stderr
                .contains("is a self-signed CA certificate, and not the one in")
            && !out.stderr.contains("cannot reach"),
        "{}",
        out.stderr
    );

    // A wrong pin, with --json: the error is JSON too, with the next step.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = targets(&empty, &[&at[..], &["--pin", &wrong, "--json"]].concat());
    assert_eq!(out.status, Some(9), "{}", out.stderr);
    let e = json_error(&out);
    assert_eq!(e["code"], "untrusted", "{e}");
    assert_eq!(e["exit_code"], 9, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(&broker.pin),
        "the message names the certificate seen: {e}"
    );
    assert!(e["hint"].as_str().unwrap().contains("--pin"), "{e}");

    // A name the certificate does not have: it says which names it has.
    let out = targets(
        &empty,
        &[
            &at[..],
            &["--ca-file", cert_s, "--server-name", "broker.example"],
        ]
        .concat(),
    );
    assert_eq!(out.status, Some(9), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not valid for \"broker.example\" (it names: localhost, 127.0.0.1)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--server-name"), "{}", out.stderr);

    // Flags beat the profile, whole: --ca-file replaces the profile's pin.
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.work]\nbroker = \"{}\"\npin = \"{wrong}\"\n",
            broker.addr
        ),
    )
    .unwrap();
    let out = targets(&config, &["--profile", "work"]);
    assert_eq!(out.status, Some(9), "the profile's pin: {}", out.stderr);
    let out = targets(&config, &["--profile", "work", "--ca-file", cert_s]);
    assert_eq!(out.status, Some(0), "the flag wins: {}", out.stderr);
    let out = targets(&config, &["--profile", "work", "--pin", &broker.pin]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    // Both at once is a usage error, not a silent choice.
    let out = targets(
        &empty,
        &[&at[..], &["--pin", &broker.pin, "--ca-file", cert_s]].concat(),
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);

    // docs/certificates.md's CA and leaf, made by its own commands.
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let doc = std::fs::read_to_string(tests_dir().join("../docs/certificates.md")).unwrap();
    let block = doc
        .split("<!-- tests/e2e/first_use.rs runs this block as is, with NAMES set -->\n```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the tested block in docs/certificates.md");
    let mut sh = Command::new("bash");
    sh.args(["-euo", "pipefail", "-c", block])
        .current_dir(&pki)
        .env("NAMES", "DNS:localhost,IP:127.0.0.1");
    let made = run_bounded(sh, Duration::from_secs(60));
    assert_eq!(
        made.status,
        Some(0),
        "the documented commands: {}",
        made.stderr
    );
    let leaf_dir = dir.path().join("leaf");
    let leaf_state = leaf_dir.join("broker-state");
    std::fs::create_dir_all(&leaf_state).unwrap();
    std::fs::copy(pki.join("broker.crt"), leaf_state.join("broker-cert.pem")).unwrap();
    std::fs::copy(pki.join("broker.key"), leaf_state.join("broker-key.pem")).unwrap();
    let leaf_broker = Broker::start(&leaf_dir, "");
    let ca = pki.join("hoop-ca.pem");
    let out = hoop(
        &empty,
        &data,
        &[
            "targets",
            "--broker",
            &leaf_broker.addr,
            "--ca-file",
            ca.to_str().unwrap(),
            "--token-file",
            leaf_broker.token_file("alice").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status,
        Some(0),
        "the CA vouches for its leaf: {}",
        out.stderr
    );
    // The CA of another broker does not.
    let out = hoop(
        &empty,
        &data,
        &[
            "targets",
            "--broker",
            &leaf_broker.addr,
            "--ca-file",
            cert_s,
            "--token-file",
            leaf_broker.token_file("alice").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status, Some(9), "{}", out.stderr);
}

/// `hoop --help`'s exit-code table.
fn help_table() -> Vec<(u8, String)> {
    let out = hoop(
        Path::new("/nonexistent"),
        Path::new("/nonexistent"),
        &["--help"],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let table: Vec<(u8, String)> = out
        .stdout
        .split("Exit codes:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no exit-code table in hoop --help:\n{}", out.stdout))
        .lines()
        .map_while(|l| {
            let mut w = l.split_whitespace();
            let code = w.next()?.parse().ok()?;
            Some((code, w.next()?.to_owned()))
        })
        .collect();
    assert!(table.len() >= 9, "{table:?}");
    table
}

/// docs/cli.md's exit-code table: `| code | name | meaning |` rows.
fn docs_table() -> Vec<(u8, String)> {
    let doc = std::fs::read_to_string(tests_dir().join("../docs/cli.md")).unwrap();
    let section = doc
        .split("## Exit codes")
        .nth(1)
        .expect("docs/cli.md has an \"## Exit codes\" section");
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(2)?.trim_matches('`').to_owned()))
        })
        .collect()
}

/// Every exit code the table promises, reached against real processes,
/// with `--json` failures as JSON objects naming the same code.
#[test]
fn every_exit_code_in_the_one_table_is_reached() {
    let dir = scratch();
    let (_demo, mut broker, _record) = demo_behind_demo_policy(dir.path());
    // A target whose upstream is down, beside the demo.
    let config = std::fs::read_to_string(&broker.config).unwrap();
    let down = format!("http://127.0.0.1:{}/mcp", free_tcp_port());
    std::fs::write(
        &broker.config,
        format!("{config}{}", http_target("down", &down)),
    )
    .unwrap();
    broker.proc.terminate();
    let broker = Broker::start_with(dir.path(), broker.config.clone(), broker.state.clone());
    let data = dir.path().join("data");
    let empty = empty_config(dir.path());
    let alice = broker.token_file("alice");
    let bob = broker.token_file("bob");
    let conn = |token: &Path| -> Vec<String> {
        vec![
            "--broker".into(),
            broker.addr.clone(),
            "--pin".into(),
            broker.pin.clone(),
            "--token-file".into(),
            token.display().to_string(),
        ]
    };
    let exec = |args: &[&str], extra: &[&str]| {
        let mut all = vec!["exec", "mcp"];
        all.extend_from_slice(args);
        let c = conn(&alice);
        all.extend(c.iter().map(String::as_str));
        all.extend_from_slice(extra);
        all.push("--json");
        hoop(&empty, &data, &all)
    };
    let mut reached = std::collections::BTreeMap::new();
    let mut saw = |what: &str, out: &Output| {
        let code = out.status.unwrap_or_else(|| panic!("{what}: killed"));
        if code != 0 {
            let e = json_error(out);
            assert_eq!(e["exit_code"], code, "{what}: {e}");
            assert!(e["message"].is_string(), "{what}: {e}");
            assert!(e.get("hint").is_some(), "{what}: {e}");
            reached.insert(code as u8, e["code"].as_str().unwrap().to_owned());
        } else {
            reached.insert(0, "ok".into());
        }
        code
    };

    let ok = exec(
        &["demo", "--tool", "echo", "--args", r#"{"text":"hi"}"#],
        &[],
    );
    assert_eq!(saw("ok", &ok), 0, "{}", ok.stderr);
    let failed = exec(&["down", "--tool", "echo"], &[]);
    assert_eq!(saw("upstream down", &failed), 1, "{}", failed.stderr);
    let unknown = exec(&["no-such-target", "--tool", "echo"], &[]);
    assert_eq!(saw("unknown target", &unknown), 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("hoop targets"),
        "{}",
        unknown.stderr
    );
    // No token at all: the same words and code as `hoop whoami`.
    let no_token = hoop(
        &empty,
        &data,
        &[
            "exec",
            "mcp",
            "demo",
            "--tool",
            "echo",
            "--broker",
            &broker.addr,
            "--pin",
            &broker.pin,
            "--json",
        ],
    );
    assert_eq!(saw("not logged in", &no_token), 3, "{}", no_token.stderr);
    let who = hoop(&empty, &data, &["whoami", "--json"]);
    assert_eq!(saw("whoami", &who), 3, "{}", who.stderr);
    assert_eq!(
        json_error(&who)["message"],
        json_error(&no_token)["message"]
    );
    assert_eq!(
        json_error(&who)["message"],
        "not logged in (profile default)"
    );
    let unreachable = hoop(
        &empty,
        &data,
        &[
            &[
                "exec", "mcp", "demo", "--tool", "echo", "--json", "--broker",
            ][..],
            &[format!("127.0.0.1:{}", free_udp_port()).as_str()],
            &[
                "--pin",
                &broker.pin,
                "--token-file",
                alice.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(
        saw("unreachable", &unreachable),
        4,
        "{}",
        unreachable.stderr
    );
    let denied = exec(
        &[
            "demo",
            "--tool",
            "delete_model",
            "--args",
            r#"{"model":"fraud"}"#,
        ],
        &[],
    );
    assert_eq!(saw("denied", &denied), 5, "{}", denied.stderr);
    let tool_error = exec(&["demo", "--tool", "echo", "--args", r#"{"text":5}"#], &[]);
    assert_eq!(saw("tool error", &tool_error), 6, "{}", tool_error.stderr);
    // Held for approval: bob denies it (7); nobody decides in time (8).
    let deploy = |version: &str| {
        let mut c = Command::new(bin("hoop"));
        c.args(["exec", "mcp", "demo", "--tool", "deploy_model", "--args"])
            .arg(format!(
                r#"{{"model":"fraud","version":"{version}","environment":"production"}}"#
            ))
            .args(conn(&alice))
            .args(["--reason", "first use", "--wait", "60s", "--json"])
            .env("HOOP_CONFIG", &empty)
            .env("HOOP_DATA_DIR", &data)
            .env_remove("HOOP_TOKEN");
        c
    };
    let held = deploy("1");
    let run = std::thread::spawn(move || run_bounded(held, Duration::from_secs(90)));
    let approve = |args: &[&str]| {
        let mut all = vec!["approve"];
        all.extend_from_slice(args);
        let c = conn(&bob);
        all.extend(c.iter().map(String::as_str));
        hoop(&empty, &data, &all)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    let id = loop {
        let out = approve(&["list", "--json"]);
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        let pending = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["state"] == "pending");
        if let Some(r) = pending {
            break r["id"].as_u64().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no pending request");
        std::thread::sleep(Duration::from_millis(100));
    };
    let no = approve(&["deny", &id, "--reason", "not today"]);
    assert_eq!(no.status, Some(0), "{}", no.stderr);
    let denied = run.join().unwrap();
    assert_eq!(saw("approval denied", &denied), 7, "{}", denied.stderr);
    let late = exec(
        &[
            "demo",
            "--tool",
            "deploy_model",
            "--args",
            r#"{"model":"fraud","version":"2","environment":"production"}"#,
        ],
        &["--wait", "1s"],
    );
    assert_eq!(saw("approval expired", &late), 8, "{}", late.stderr);
    let wrong_pin = hoop(
        &empty,
        &data,
        &[
            "exec",
            "mcp",
            "demo",
            "--tool",
            "echo",
            "--json",
            "--broker",
            &broker.addr,
            "--pin",
            &format!("sha256:{}", "1".repeat(64)),
            "--token-file",
            alice.to_str().unwrap(),
        ],
    );
    assert_eq!(saw("untrusted", &wrong_pin), 9, "{}", wrong_pin.stderr);

    // One table: the binary's help, the docs and what was reached agree.
    let help = help_table();
    let docs = docs_table();
    assert_eq!(help, docs, "hoop --help and docs/cli.md disagree");
    let reached: Vec<(u8, String)> = reached.into_iter().collect();
    assert_eq!(
        reached, help,
        "every code in the table, and only those, reached"
    );
}

/// `hoop exec` closes its QUIC connection with a reason when it is done,
/// so the broker sees it leave at once, not at the idle timeout (~10 s).
#[test]
fn exec_leaves_the_broker_at_once_when_done() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let broker = Broker::start(dir.path(), &http_target("demo", &url));
    let mut args = vec![
        "exec".to_owned(),
        "mcp".into(),
        "demo".into(),
        "--tool".into(),
        "echo".into(),
        "--args".into(),
        r#"{"text":"bye"}"#.into(),
    ];
    args.extend(broker.connect_args("alice"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hoop(&empty_config(dir.path()), &dir.path().join("data"), &args);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Bounded by the deadline.
    let left = loop {
        let log = broker.proc.stderr();
        if let Some(l) = log.lines().find(|l| l.contains("client disconnected")) {
            break l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not see exec leave within 5 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!left.contains("timed out"), "{left}");

    // `hoop connect --stdio` whose client went away (end of stdin) too.
    let mut args = vec![
        "connect".to_owned(),
        "mcp".into(),
        "demo".into(),
        "--stdio".into(),
    ];
    args.extend(broker.connect_args("bob"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hoop(&empty_config(dir.path()), &dir.path().join("data"), &args);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Bounded by the deadline.
    while !broker
        .proc
        .stderr()
        .lines()
        .any(|l| l.contains("client disconnected") && l.contains("subject=bob"))
    {
        assert!(
            Instant::now() < deadline,
            "the broker did not see connect leave within 5 s:\n{}",
            broker.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hoop demo` says how to reach its broker from a second terminal with
/// the identity features: the pin, the token files, commands to paste.
#[test]
fn hoop_demo_prints_its_pin_and_tokens_and_they_work() {
    let dir = scratch();
    let port = free_tcp_port();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["demo", "--port", &port.to_string()])
        .env("HOOP_DATA_DIR", dir.path());
    let mut demo = Proc::spawn("hoop-demo", cmd, dir.path());
    let broker = demo.line_matching(Duration::from_secs(30), |l| l.starts_with("broker: "));
    let pin = broker
        .split("certificate pin ")
        .nth(1)
        .unwrap_or_else(|| panic!("{broker}"))
        .trim()
        .to_owned();
    let addr = broker.split_whitespace().nth(1).unwrap().to_owned();
    let tokens = demo.line_matching(Duration::from_secs(5), |l| l.starts_with("tokens"));
    let bob_token = tokens
        .split("bob ")
        .nth(1)
        .unwrap_or_else(|| panic!("{tokens}"))
        .split(',')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let tried = demo.line_matching(Duration::from_secs(5), |l| {
        l.contains("hoop connect mcp demo")
    });
    assert!(tried.contains(&pin), "{tried}");
    // What it printed is enough, without its profiles.
    let out = hoop(
        &empty_config(dir.path()),
        &dir.path().join("elsewhere"),
        &[
            "exec",
            "mcp",
            "demo",
            "--tool",
            "echo",
            "--args",
            r#"{"text":"from the banner"}"#,
            "--broker",
            &addr,
            "--pin",
            &pin,
            "--token-file",
            &bob_token,
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "from the banner");
    demo.terminate();
}

/// Every command that takes `--json` answers a failure with one JSON error
/// object on stdout (and the words on stderr), whatever failed.
#[test]
fn every_json_command_fails_in_json() {
    let dir = scratch();
    let empty = empty_config(dir.path());
    let data = dir.path().join("data");
    let pin = format!("sha256:{}", "0".repeat(64));
    let nowhere = ["--broker", "127.0.0.1:9", "--pin", pin.as_str()];
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let missing = dir.path().join("missing.jsonl");
    let missing = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["whoami", "--json"], "auth_failed"),
        (vec!["targets", "--json"], "auth_failed"),
        (
            vec!["exec", "mcp", "demo", "--tool", "echo", "--json"],
            "auth_failed",
        ),
        (vec!["connect", "mcp", "demo", "--json"], "auth_failed"),
        (vec!["approve", "list", "--json"], "auth_failed"),
        (vec!["approve", "show", "1", "--json"], "auth_failed"),
        (vec!["approve", "grant", "1", "--json"], "auth_failed"),
        (
            vec!["approve", "deny", "1", "--reason", "no", "--json"],
            "auth_failed",
        ),
        (vec!["audit", "search", "--json"], "auth_failed"),
        (vec!["audit", "replay", "x", "--json"], "auth_failed"),
        (vec!["audit", "key", "--json"], "auth_failed"),
        (vec!["audit", "verify", "--json"], "auth_failed"),
        (
            vec!["audit", "verify", missing, "--key", "k", "--json"],
            "usage",
        ),
        (vec!["login", "--json", "--no-browser"], "usage"),
        (vec!["demo", "--json", "--port", &port], "failure"),
    ];
    for (args, code) in cases {
        let mut all = args.clone();
        let offline = matches!(args[0], "whoami" | "login" | "demo") || args.contains(&missing);
        let needs_broker = !offline;
        if needs_broker {
            all.extend_from_slice(&nowhere);
        }
        let out = hoop(&empty, &data, &all);
        assert_ne!(out.status, Some(0), "{args:?}: {}", out.stderr);
        let e = json_error(&out);
        assert_eq!(e["code"], code, "{args:?}: {e}\n{}", out.stderr);
        assert_eq!(e["exit_code"], out.status.unwrap(), "{args:?}: {e}");
        assert!(
            out.stderr.contains(e["message"].as_str().unwrap()),
            "{args:?}: the words are on stderr too: {}",
            out.stderr
        );
        assert_eq!(
            out.stdout.lines().filter(|l| l.starts_with('{')).count(),
            1,
            "{args:?}: one JSON object: {}",
            out.stdout
        );
    }
    drop(taken);
}

/// A token too large for the Hello frame (the broker reads at most 64 KiB
/// there) is an authentication failure that names the token, not a
/// "malformed frame".
#[test]
fn a_token_too_large_for_the_broker_is_an_authentication_failure() {
    let dir = scratch();
    let broker = Broker::start(dir.path(), "");
    let big = dir.path().join("big.token");
    std::fs::write(&big, "e".repeat(1 << 20)).unwrap();
    let out = hoop(
        &empty_config(dir.path()),
        &dir.path().join("data"),
        &[
            "targets",
            "--broker",
            &broker.addr,
            "--pin",
            &broker.pin,
            "--token-file",
            big.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains("the token is too large"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("malformed"), "{}", out.stderr);
}

/// The subcommands `hoop --help` lists, and theirs.
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let out = hoop(Path::new("/nonexistent"), Path::new("/nonexistent"), &args);
    assert_eq!(out.status, Some(0), "{args:?}: {}", out.stderr);
    let Some(list) = out.stdout.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| l.starts_with(' '))
        // A description's wrapped lines are indented further.
        .filter_map(|l| l.strip_prefix("  ").filter(|r| !r.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand's `--help` shows examples.
#[test]
fn every_subcommand_has_examples_in_its_help() {
    let mut checked = 0;
    let top = subcommands(&[]);
    assert!(top.len() >= 10, "{top:?}");
    for c in &top {
        let mut paths = vec![vec![c.clone()]];
        for sub in subcommands(&[c]) {
            paths.push(vec![c.clone(), sub]);
        }
        for p in paths {
            let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
            args.push("--help");
            let out = hoop(Path::new("/nonexistent"), Path::new("/nonexistent"), &args);
            assert_eq!(out.status, Some(0), "{p:?}: {}", out.stderr);
            assert!(
                out.stdout.contains("Examples:\n  ")
                    && out
                        .stdout
                        .split("Examples:")
                        .nth(1)
                        .is_some_and(|e| e.contains("hoop ")),
                "hoop {p:?} --help has no examples:\n{}",
                out.stdout
            );
            checked += 1;
        }
    }
    assert!(checked >= 19, "{checked}");
}

/// What a first-time user met next, each mended: trust flags beat trust
/// variables, clap's own errors answer `--json` in JSON, a closed pipe is
/// not a panic, a missing id is a usage error, an unknown target is caught
/// by `connect` at start, hints keep the profile and name the real next
/// step, and a few messages say what is wrong instead of something near.
#[test]
fn the_rough_edges_a_first_user_met_are_mended() {
    let dir = scratch();
    let record = dir.path().join("demo.jsonl");
    let (_demo, url) = demo_server(dir.path(), &record);
    let broker = Broker::start(
        dir.path(),
        &format!(
            "[audit]\nreaders = [\"eng\"]\n{}",
            http_target("demo", &url)
        ),
    );
    let data = dir.path().join("data");
    let empty = empty_config(dir.path());
    let alice = broker.token_file("alice");
    let cert = broker.state.join("broker-cert.pem");
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let with_env = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(bin("hoop"));
        c.args(args)
            .env("HOOP_CONFIG", &empty)
            .env("HOOP_DATA_DIR", &data)
            .env_remove("HOOP_TOKEN")
            .env_remove("HOOP_PIN")
            .env_remove("HOOP_CA_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        run_bounded(c, Duration::from_secs(60))
    };
    let targets = [
        "targets",
        "--broker",
        &broker.addr,
        "--token-file",
        alice.to_str().unwrap(),
    ];

    // A trust flag replaces a trust variable of the other kind.
    let out = with_env(
        &[("HOOP_PIN", &wrong_pin)],
        &[&targets[..], &["--ca-file", cert.to_str().unwrap()]].concat(),
    );
    assert_eq!(
        out.status,
        Some(0),
        "HOOP_PIN then --ca-file: {}",
        out.stderr
    );
    let out = with_env(
        &[("HOOP_CA_FILE", "/nonexistent/ca.pem")],
        &[&targets[..], &["--pin", &broker.pin]].concat(),
    );
    assert_eq!(
        out.status,
        Some(0),
        "HOOP_CA_FILE then --pin: {}",
        out.stderr
    );
    // A profile with both is an error, not the pin chosen silently.
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        format!(
            "[profiles.x]\nbroker = \"{}\"\npin = \"{}\"\nca_file = \"{}\"\n",
            broker.addr,
            broker.pin,
            cert.display()
        ),
    )
    .unwrap();
    let out = with_env(
        &[],
        &[
            "targets",
            "--config",
            both.to_str().unwrap(),
            "--profile",
            "x",
            "--token-file",
            alice.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("both a pin and a CA file"),
        "{}",
        out.stderr
    );

    // clap's own errors, with --json: JSON too.
    let out = with_env(&[], &["exec", "mcp", "demo", "--json"]);
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    let e = json_error(&out);
    assert_eq!(e["code"], "usage", "{e}");
    assert!(e["message"].as_str().unwrap().contains("--tool"), "{e}");

    // A reader that stops reading: no panic.
    let script = format!(
        "set -o pipefail; '{}' exec mcp demo --tool big_payload --args '{{\"bytes\":200000}}' --broker {} --pin {} --token-file {} | head -c 10 >/dev/null",
        bin("hoop").display(),
        broker.addr,
        broker.pin,
        alice.display()
    );
    let mut sh = Command::new("bash");
    sh.args(["-c", &script])
        .env("HOOP_CONFIG", &empty)
        .env("HOOP_DATA_DIR", &data);
    let out = run_bounded(sh, Duration::from_secs(60));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(out.status, Some(141), "{}", out.stderr);

    // An id that does not exist: exit 2, in JSON with --json.
    let out = with_env(
        &[],
        &[
            "audit",
            "replay",
            "feedfacefeedface",
            "--json",
            "--broker",
            &broker.addr,
            "--pin",
            &broker.pin,
            "--token-file",
            alice.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert_eq!(json_error(&out)["code"], "usage");

    // `connect` to a target the broker does not have: exit 2 at start.
    let out = with_env(
        &[],
        &[
            "connect",
            "mcp",
            "nosuch",
            "--broker",
            &broker.addr,
            "--pin",
            &broker.pin,
            "--token-file",
            alice.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no target named \"nosuch\""),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("MCP endpoint"), "{}", out.stdout);

    // A refused token's hint keeps the profile and config in use.
    let work = dir.path().join("work.toml");
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, "not-a-token").unwrap();
    std::fs::write(
        &work,
        format!(
            "[profiles.work]\nbroker = \"{}\"\npin = \"{}\"\ntoken_file = \"{}\"\n",
            broker.addr,
            broker.pin,
            bad.display()
        ),
    )
    .unwrap();
    let out = with_env(
        &[],
        &[
            "targets",
            "--config",
            work.to_str().unwrap(),
            "--profile",
            "work",
        ],
    );
    assert_eq!(out.status, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "`hoop login --profile work --config {}`",
            work.display()
        )),
        "{}",
        out.stderr
    );
    // Revoked: a new token does not help, and the hint says so.
    let mut revoke = Command::new(bin("hoop-broker"));
    revoke
        .args([
            "revoke",
            "--subject",
            "alice",
            "--reason",
            "test",
            "--store",
        ])
        .arg(broker.state.join("broker.db"));
    let out = run_bounded(revoke, Duration::from_secs(20));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Bounded by the deadline: the broker polls its store.
    let out = loop {
        let out = with_env(&[], &[&targets[..], &["--pin", &broker.pin]].concat());
        if out.status == Some(3) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(out.status, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains("a new token does not help"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("get a new token"), "{}", out.stderr);

    // Words that say what is wrong.
    let out = with_env(
        &[],
        &["targets", "--broker", "127.0.0.1", "--pin", &broker.pin],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("has no port"), "{}", out.stderr);
    let out = with_env(
        &[("HOOP_CONFIG", "/nonexistent/hoop/config.toml")],
        &["whoami"],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("unset HOOP_CONFIG"), "{}", out.stderr);
    let out = with_env(
        &[],
        &[
            "demo",
            "--as",
            "carol",
            "--port",
            &free_tcp_port().to_string(),
        ],
    );
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no demo identity \"carol\""),
        "{}",
        out.stderr
    );
}

/// An identity provider whose certificate this machine does not trust is
/// an untrusted provider (exit 9), not an unreachable one.
#[test]
fn an_identity_provider_with_an_untrusted_certificate_is_named_so() {
    let dir = scratch();
    let (cert, key) = openssl_self_signed(dir.path(), "idp", "DNS:localhost,IP:127.0.0.1");
    let port = free_tcp_port();
    let mut server = Command::new("openssl");
    server
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key);
    let _idp = Proc::spawn("openssl-s-server", server, dir.path());
    wait_tcp(port, Duration::from_secs(10));
    let out = hoop(
        &empty_config(dir.path()),
        &dir.path().join("data"),
        &[
            "login",
            "--no-browser",
            "--issuer",
            &format!("https://127.0.0.1:{port}/realm"),
        ],
    );
    assert_eq!(out.status, Some(9), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the identity provider's certificate is not trusted"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("cannot reach"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("ERROR"),
        "no library log line: {}",
        out.stderr
    );
}
