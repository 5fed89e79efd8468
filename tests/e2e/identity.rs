//! Identity against a real OpenID provider (npm `oidc-provider`): people's
//! tokens from the device flow, CI workload tokens mapped by rule, a
//! battery of bad tokens each refused with its precise reason in the
//! broker's log, and the contractor story: a revoked subject loses its live
//! session within 2 seconds, stays out across a broker restart, and comes
//! back only when the revocation is lifted.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hoop_broker::tunnel::framed::{FrameReader, FrameWriter};
use hoop_cli::tunnel::{tls::client_config, Trust};
use hoop_e2e::*;
use hoop_proto::*;
use serde_json::{json, Value};

/// Connects to `broker`, presents `token` in a Hello on the control stream
/// and reads the broker's first answer.
async fn open_control(
    broker: &Broker,
    token: &str,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    FrameWriter,
    FrameReader,
    Frame,
) {
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint.set_default_client_config(client_config(&Trust::Pin(broker.pin.clone())).unwrap().0);
    let conn = endpoint
        .connect(broker.addr.parse().unwrap(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut w = FrameWriter::new(send);
    // A write may fail once the broker refuses an oversized frame; the
    // answer is what matters.
    let _ = w
        .send(&Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
            client_name: "identity-test".into(),
            client_version: "1".into(),
        }))
        .await;
    let mut r = FrameReader::new(recv, 1 << 20);
    let answer = tokio::time::timeout(Duration::from_secs(15), r.next())
        .await
        .expect("the broker answered within 15 s")
        .expect("a readable frame")
        .expect("a frame, not the end of the stream");
    (endpoint, conn, w, r, answer)
}

/// Presents `token` in a Hello and returns the broker's answer.
fn hello(broker: &Broker, token: &str) -> Frame {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_endpoint, conn, _w, _r, answer) = open_control(broker, token).await;
        conn.close(0u32.into(), b"done");
        answer
    })
}

/// An authenticated connection kept open, with its control stream.
struct Session {
    rt: tokio::runtime::Runtime,
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    writer: FrameWriter,
    reader: FrameReader,
}

fn session(broker: &Broker, token: &str) -> Session {
    // Worker threads keep the connection alive between the test's calls.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (endpoint, conn, writer, reader, answer) = rt.block_on(open_control(broker, token));
    assert!(
        matches!(answer, Frame::Welcome(_)),
        "expected Welcome, got {answer:?}"
    );
    Session {
        rt,
        _endpoint: endpoint,
        conn,
        writer,
        reader,
    }
}

impl Session {
    /// Sends `Reauth` and returns the broker's answer.
    fn reauth(&mut self, token: &str) -> Frame {
        let (w, r) = (&mut self.writer, &mut self.reader);
        self.rt.block_on(async {
            w.send(&Frame::Reauth(Reauth {
                token: token.to_owned(),
            }))
            .await
            .unwrap();
            tokio::time::timeout(Duration::from_secs(10), r.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        })
    }

    /// How the connection ended, waiting at most `limit`.
    fn closed_within(&self, limit: Duration) -> Option<quinn::ConnectionError> {
        let conn = self.conn.clone();
        self.rt
            .block_on(async { tokio::time::timeout(limit, conn.closed()).await.ok() })
    }
}

fn welcome(broker: &Broker, token: &str) -> Welcome {
    match hello(broker, token) {
        Frame::Welcome(w) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// Waits (bounded) until the broker's log holds `needle`.
fn logged(broker: &Broker, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if broker.proc.stderr().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn trusted_tokens_are_accepted_and_each_bad_one_is_refused_with_its_reason() {
    let dir = scratch();
    let human = OidcProvider::start(dir.path(), "human", &[]);
    let ci = OidcProvider::start(dir.path(), "workload", &[]);
    let broker = serve_broker(dir.path(), &issuers_toml(&human, &ci), "");

    // An engineer, through the real device flow.
    let tokens = human.device_login("alice");
    let access = tokens["access_token"].as_str().unwrap();
    let w = welcome(&broker, access);
    assert_eq!(w.identity.subject, "alice");
    assert_eq!(w.identity.groups, ["eng"]);
    assert_eq!(w.identity.email.as_deref(), Some("alice@bank.example"));
    assert_eq!(w.identity.issuer, human.issuer);
    assert_eq!(w.identity.kind, IdentityKind::Human);
    let claims = jwt_claims(access);
    assert_eq!(w.session_expires_at, claims["exp"].as_u64().unwrap());

    // A CI job: a workload identity by rule, never a person.
    let deploy = ci.client_credentials("ci-deploy", "ci-deploy-secret");
    let w = welcome(&broker, &deploy);
    assert_eq!(w.identity.subject, "workload:models-deploy");
    assert_eq!(w.identity.kind, IdentityKind::Workload);
    assert_eq!(w.identity.groups, ["ci-deploy"]);

    // ES256 with the provider's EC key verifies too.
    let t = now_unix();
    let good = json!({"iss": human.issuer, "aud": "hoop-broker", "sub": "bob", "groups": ["ml-leads"], "iat": t, "exp": t + 300});
    let w = welcome(&broker, &human.forge(&good, &["--alg", "ES256"]));
    assert_eq!(w.identity.subject, "bob");

    // The battery: (what, token, reason the broker must log).
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let tampered = {
        let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
        let mut payload = claims.clone();
        payload["groups"] = json!(["admins"]);
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
        parts.join(".")
    };
    let pr = ci.client_credentials("ci-pr", "ci-pr-secret");
    let huge = format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", "A".repeat(1024 * 1024));
    let battery: Vec<(&str, String, &str)> = vec![
        ("tampered signature", tampered, "signature does not verify"),
        (
            "untrusted issuer",
            human.forge(&with(json!({"iss": "https://evil.example"})), &[]),
            "issuer \"https://evil.example\" is not trusted",
        ),
        (
            "wrong audience",
            human.forge(&with(json!({"aud": "payments-api"})), &[]),
            "audience \"payments-api\" is not this broker's",
        ),
        (
            "expired",
            human.forge(&with(json!({"iat": t - 900, "exp": t - 600})), &[]),
            "token expired at",
        ),
        (
            "not yet valid",
            human.forge(&with(json!({"nbf": t + 600})), &[]),
            "token not valid before",
        ),
        (
            "alg none",
            human.forge(&good, &["--alg", "none"]),
            "algorithm \"none\" is not accepted",
        ),
        (
            "HS256 keyed with the RSA public key",
            human.forge(&good, &["--alg", "HS256-pubkey"]),
            "algorithm \"HS256\" is not accepted",
        ),
        (
            "unknown kid",
            human.forge(&good, &["--header-kid", "rotated-away"]),
            "no signing key with kid \"rotated-away\"",
        ),
        ("not a JWT", "these bytes are not a JWT".into(), "not a JWT"),
        (
            "workload matching no rule",
            pr,
            "matches no [[issuers.workloads]] rule",
        ),
    ];
    for (what, token, reason) in &battery {
        match hello(&broker, token) {
            Frame::ControlError(e) => {
                assert_eq!(e.code, ErrorCode::UNAUTHENTICATED, "{what}: {e:?}");
                assert!(
                    e.message.starts_with("authentication failed"),
                    "{what}: {e:?}"
                );
                assert!(
                    !e.message.contains(reason),
                    "{what}: the client must not learn the precise reason: {e:?}"
                );
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        assert!(
            logged(&broker, reason),
            "{what}: the broker's log lacks {reason:?}:\n{}",
            broker.proc.stderr()
        );
    }
    // A 1 MiB token never reaches the verifier: the Hello itself is too
    // big, and the client is told that its token is the problem.
    match hello(&broker, &huge) {
        Frame::ControlError(e) => {
            assert_eq!(e.code, ErrorCode::UNAUTHENTICATED, "{e:?}");
            assert!(e.message.contains("token is too large"), "{e:?}");
        }
        other => panic!("1 MiB token: expected a refusal, got {other:?}"),
    }
    assert!(logged(&broker, "authentication failed: unreadable Hello"));
    // Re-authentication: the same identity extends the session; another
    // subject, or the same subject with other groups, ends it.
    let mut s = session(&broker, access);
    match s.reauth(access) {
        Frame::Welcome(w) => assert_eq!(w.identity.subject, "alice"),
        other => panic!("same token: expected Welcome, got {other:?}"),
    }
    let bob = human.forge(&good, &[]);
    match s.reauth(&bob) {
        Frame::ControlError(e) => {
            assert_eq!(e.code, ErrorCode::UNAUTHENTICATED, "{e:?}");
            assert!(e.message.contains("same identity"), "{e:?}");
        }
        other => panic!("bob on alice's connection: expected a refusal, got {other:?}"),
    }
    assert!(s.closed_within(Duration::from_secs(5)).is_some());
    let mut s = session(&broker, access);
    let promoted = human.forge(
        &with(
            json!({"sub": "alice", "email": "alice@bank.example", "groups": ["eng", "approvers"]}),
        ),
        &[],
    );
    match s.reauth(&promoted) {
        Frame::ControlError(e) => assert!(e.message.contains("groups changed"), "{e:?}"),
        other => panic!("changed groups: expected a refusal, got {other:?}"),
    }
    assert!(s.closed_within(Duration::from_secs(5)).is_some());

    // After all that, a good token still works.
    assert_eq!(welcome(&broker, access).identity.subject, "alice");
    // And it keeps working while the IdP is down: the keys are cached.
    let mut human = human;
    human.proc.kill();
    assert_eq!(welcome(&broker, access).identity.subject, "alice");
    let w = welcome(&broker, &human.forge(&good, &["--alg", "ES256"]));
    assert_eq!(w.identity.subject, "bob");
}

fn echo(url: &str, id: u32) -> (u16, Vec<Value>) {
    call_tool(url, id.into(), "echo", r#"{"text":"hi"}"#)
}

fn echoed(msgs: &[Value]) -> bool {
    msgs.iter()
        .any(|m| m["result"]["content"][0]["text"] == "hi")
}

fn connect_with_token(dir: &std::path::Path, broker: &Broker, name: &str, token: &str) -> Connect {
    let file = dir.join(format!("{name}.token"));
    std::fs::write(&file, token).unwrap();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args([
        "--log",
        "info",
        "connect",
        "mcp",
        "demo",
        "--port",
        "0",
        "--json",
        "--no-local-auth",
        "--broker",
        &broker.addr,
        "--pin",
        &broker.pin,
        "--token-file",
    ])
    .arg(&file)
    .env_remove("HOOP_TOKEN")
    .env("HOOP_CONFIG", empty_config(dir));
    let mut proc = Proc::spawn(&format!("connect-{name}"), cmd, dir);
    let line = proc.line(Duration::from_secs(20));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    Connect {
        proc,
        url: v["url"].as_str().unwrap().to_owned(),
        secret: None,
    }
}

fn admin(args: &[&str], store: &std::path::Path) -> Output {
    let mut c = Command::new(bin("hoop-broker"));
    c.args(args).arg("--store").arg(store);
    run_bounded(c, Duration::from_secs(20))
}

#[test]
fn a_revoked_contractor_loses_access_within_two_seconds_until_lifted() {
    let dir = scratch();
    let human = OidcProvider::start(dir.path(), "human", &[]);
    let ci = OidcProvider::start(dir.path(), "workload", &[]);
    let record = dir.path().join("demo.jsonl");
    let (_demo, upstream) = demo_server(dir.path(), &record);
    let broker = serve_broker(
        dir.path(),
        &issuers_toml(&human, &ci),
        &http_target("demo", &upstream),
    );
    let store = broker.state.join("broker.db");
    let carol_token = human.device_login("carol")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_token = human.device_login("alice")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol = connect_with_token(dir.path(), &broker, "carol", &carol_token);
    let alice = connect_with_token(dir.path(), &broker, "alice", &alice_token);
    assert!(echoed(&echo(&carol.url, 1).1), "carol works before");
    assert!(echoed(&echo(&alice.url, 1).1), "alice works before");

    // A raw connection of carol's, idle, to see the broker end it.
    let idle = session(&broker, &carol_token);
    let out = admin(
        &[
            "revoke",
            "--subject",
            "carol",
            "--reason",
            "off-boarded",
            "--json",
        ],
        &store,
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let revoked_at = Instant::now();
    let revocation: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let id = revocation["id"].as_i64().unwrap();
    // Bounded: 40 attempts, 50 ms apart.
    let mut refused = None;
    for i in 0..40 {
        let (status, msgs) = echo(&carol.url, 10 + i);
        if !echoed(&msgs) {
            refused = Some((status, msgs, revoked_at.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, msgs, after) = refused.expect("carol was never cut off");
    assert!(
        after <= Duration::from_secs(2),
        "cut off only after {after:?}"
    );
    let text = format!("{msgs:?}");
    assert!(status >= 400, "{status} {text}");
    assert!(text.contains("revoked"), "the refusal says why: {text}");
    assert!(echoed(&echo(&alice.url, 2).1), "alice is untouched");
    // The live connection itself was ended, with the revoked code and reason.
    match idle.closed_within(Duration::from_secs(2)) {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(u64::from(c.error_code), 6, "{c:?}");
            assert!(
                String::from_utf8_lossy(&c.reason).contains("off-boarded"),
                "{c:?}"
            );
        }
        other => panic!("carol's idle connection: {other:?}"),
    }
    assert!(logged(&broker, "access revoked"));

    // The list shows it; a restart keeps it (it lives in the store).
    let out = admin(&["revocations", "--json"], &store);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list[0]["subject"], "carol", "{list}");
    let config = broker.config.clone();
    let state = broker.state.clone();
    drop(carol);
    drop(alice);
    drop(broker);
    let broker = serve_broker_with(dir.path(), config, state);
    match hello(&broker, &carol_token) {
        Frame::ControlError(e) => {
            assert_eq!(e.code, ErrorCode::REVOKED, "{e:?}");
            assert!(e.message.contains("off-boarded"), "{e:?}");
        }
        other => panic!("carol after restart: expected a refusal, got {other:?}"),
    }
    assert_eq!(welcome(&broker, &alice_token).identity.subject, "alice");

    // Lifted: carol is back (the broker notices within its poll interval).
    let out = admin(&["unrevoke", &id.to_string()], &store);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(welcome(&broker, &carol_token).identity.subject, "carol");
    let out = admin(&["revocations", "--json"], &store);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!([])
    );

    // A revocation with an end lapses by itself.
    let out = admin(&["revoke", "--subject", "carol", "--for", "3s"], &store);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        matches!(hello(&broker, &carol_token), Frame::ControlError(e) if e.code == ErrorCode::REVOKED)
    );
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(welcome(&broker, &carol_token).identity.subject, "carol");
    // Each revocation and its lifting are in the audit log, with the
    // commands that made them and carol's refused attempts. (A lapse is
    // recorded at the broker's next full reload of the list, within 30 s.)
    let events = host_audit_search(
        &[
            "--limit".as_ref(),
            "1000".as_ref(),
            "--store".as_ref(),
            store.as_os_str(),
        ],
        |_| true,
    );
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("revocation.added"), 2, "{events:#?}");
    assert_eq!(count("revocation.lifted"), 1, "the unrevoke: {events:#?}");
    assert!(
        count("admin.command") >= 3,
        "revoke, unrevoke, revoke: {events:#?}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "auth.failure"
            && e["actor"]["sub"] == "carol"
            && e["reason"].as_str().unwrap_or("").contains("revoked")),
        "{events:#?}"
    );
    // An issuer the broker does not trust is refused (it would never match),
    // and so is a store no broker created.
    let mut c = Command::new(bin("hoop-broker"));
    c.args([
        "revoke",
        "--subject",
        "carol",
        "--issuer",
        "https://typo.example",
        "--config",
    ])
    .arg(&broker.config);
    let out = run_bounded(c, Duration::from_secs(20));
    assert_ne!(out.status, Some(0));
    assert!(
        out.stderr.contains("not one this broker trusts"),
        "{}",
        out.stderr
    );
    let out = admin(
        &["revoke", "--subject", "carol"],
        &dir.path().join("nowhere.db"),
    );
    assert_ne!(out.status, Some(0));
    assert!(out.stderr.contains("no broker store at"), "{}", out.stderr);
}

#[test]
fn an_issuer_down_when_the_broker_starts_is_used_once_it_is_up() {
    let dir = scratch();
    let port = free_tcp_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let broker = serve_broker(
        dir.path(),
        &format!("[[issuers]]\nissuer = \"{issuer}\"\naudience = \"hoop-broker\"\n"),
        "",
    );
    assert!(logged(&broker, "signing keys not available yet"));
    let human = OidcProvider::start_on(dir.path(), "human", port, &[]);
    let t = now_unix();
    let token = human.forge(
        &json!({"iss": issuer, "aud": "hoop-broker", "sub": "alice", "iat": t, "exp": t + 300}),
        &[],
    );
    // Bounded: the broker retries a failed key fetch after 2 s at most.
    let mut answer = hello(&broker, &token);
    for _ in 0..10 {
        if matches!(answer, Frame::Welcome(_)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        answer = hello(&broker, &token);
    }
    match answer {
        Frame::Welcome(w) => assert_eq!(w.identity.subject, "alice"),
        other => panic!("the issuer is up, but: {other:?}\n{}", broker.proc.stderr()),
    }
}
