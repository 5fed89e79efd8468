//! Just-in-time approval end to end, against a real OpenID provider and
//! `hoop-broker serve`: a CI job's `hoop exec` (a workload token) calls a
//! tool an `approve` rule holds; a second identity releases it with `hoop
//! approve grant`; the upstream receives nothing before that, and the call
//! exactly once. Self-approval, a second vote, a changed argument, a
//! denial with its reason, expiry, a quorum of two, and a broker restart
//! while a request waits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::{json, Value};

const POLICY: &str = r#"
[[rules]]
name = "deploys-need-a-lead"
groups = ["ci-deploy", "ml-leads"]
targets = ["demo"]
tools = ["deploy_model"]
action = "approve"
approvers = ["ml-leads"]
expires = "10m"

[[rules]]
name = "deletes-need-two-people"
groups = ["ci-deploy"]
targets = ["demo"]
tools = ["delete_model"]
action = "approve"
approvers = ["ml-leads", "ci-deploy"]
quorum = 2
human_approver = true

[[rules]]
name = "customer-reads-for-a-while"
groups = ["ci-deploy"]
targets = ["demo"]
tools = ["get_customer"]
action = "approve"
approvers = ["ml-leads"]
grant = "2m"

[[rules]]
name = "echo-expires-fast"
groups = ["ci-deploy"]
targets = ["demo"]
tools = ["echo"]
action = "approve"
approvers = ["ml-leads"]
expires = "2s"
"#;

struct Setup {
    dir: tempfile::TempDir,
    _human: OidcProvider,
    _ci: OidcProvider,
    _demo: Proc,
    broker: Broker,
    record: PathBuf,
    /// Token files: the CI job, bob and carol (ml-leads), alice (eng).
    ci: PathBuf,
    bob: PathBuf,
    carol: PathBuf,
}

fn setup() -> Setup {
    let dir = scratch();
    let human = OidcProvider::start(dir.path(), "human", &[]);
    let ci = OidcProvider::start(dir.path(), "workload", &[]);
    let record = dir.path().join("demo.jsonl");
    let (demo, url) = demo_server(dir.path(), &record);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let issuers = issuers_toml(&human, &ci);
    // Short holds, so the pending-then-call-again path runs in seconds.
    let targets = format!(
        "[approvals]\nhold_secs = 4\nhold_secs_without_progress = 3\nprogress_every_secs = 1\n\n{}",
        http_target("demo", &url)
    );
    let broker = serve_broker_top(
        dir.path(),
        &format!("policy = \"{}\"", policy.display()),
        &issuers,
        &targets,
    );
    let token = |name: &str, t: String| {
        let path = dir.path().join(format!("{name}.token"));
        std::fs::write(&path, t).unwrap();
        path
    };
    let person = |sub: &str, groups: &[&str]| {
        let t = now_unix();
        human.forge(
            &json!({"iss": human.issuer, "aud": "hoop-broker", "sub": sub,
                "email": format!("{sub}@bank.example"), "groups": groups,
                "iat": t, "exp": t + 3600}),
            &[],
        )
    };
    let ci_token = token("ci", ci.client_credentials("ci-deploy", "ci-deploy-secret"));
    let bob = token("bob", person("bob", &["ml-leads"]));
    let carol = token("carol", person("carol", &["ml-leads"]));
    Setup {
        _human: human,
        _ci: ci,
        _demo: demo,
        broker,
        record,
        ci: ci_token,
        bob,
        carol,
        dir,
    }
}

impl Setup {
    fn hoop(&self, token: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin("hoop"));
        c.args(args)
            .args(["--broker", &self.broker.addr, "--pin", &self.broker.pin])
            .arg("--token-file")
            .arg(token)
            .env_remove("HOOP_TOKEN")
            .env("HOOP_CONFIG", empty_config(self.dir.path()));
        c
    }

    /// `hoop exec` as the CI job, in the background.
    fn exec(&self, token: &Path, tool: &str, args: Value, extra: &[&str]) -> ExecRun {
        let args = args.to_string();
        let mut all = vec!["exec", "mcp", "demo", "--tool", tool, "--args", &args];
        all.extend_from_slice(extra);
        let cmd = self.hoop(token, &all);
        ExecRun(std::thread::spawn(move || {
            run_bounded(cmd, Duration::from_secs(90))
        }))
    }

    fn approve(&self, token: &Path, args: &[&str]) -> Output {
        let mut all = vec!["approve"];
        all.extend_from_slice(args);
        run_bounded(self.hoop(token, &all), Duration::from_secs(30))
    }

    /// `hoop approve list --all --json` as `token`, asked again (every
    /// 100 ms, at most 20 s) until `found` holds.
    fn requests_until(&self, token: &Path, found: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Bounded by the deadline.
        loop {
            let out = self.approve(token, &["list", "--all", "--json"]);
            assert_eq!(out.status, Some(0), "{}", out.stderr);
            let list: Vec<Value> = out
                .stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if found(&list) || Instant::now() > deadline {
                return list;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The id of the pending request for `tool` with these arguments.
    fn pending(&self, tool: &str, args: &Value) -> u64 {
        let is = |r: &Value| {
            r["state"] == "pending" && r["binding"]["name"] == tool && r["arguments"] == *args
        };
        let list = self.requests_until(&self.bob, |l| l.iter().any(is));
        let r = list
            .iter()
            .find(|r| is(r))
            .unwrap_or_else(|| panic!("no pending request for {tool} {args}: {list:?}"));
        r["id"].as_u64().unwrap()
    }

    /// How many times the upstream received `tools/call` of `tool`.
    fn received(&self, tool: &str) -> usize {
        read_record(&self.record)
            .iter()
            .filter(|r| r["method"] == "tools/call" && r["name"] == tool)
            .count()
    }
}

struct ExecRun(std::thread::JoinHandle<Output>);

impl ExecRun {
    fn finish(self) -> Output {
        self.0.join().unwrap()
    }
}

fn deploy(version: &str) -> Value {
    json!({"model": "fraud", "version": version, "environment": "production"})
}

#[test]
fn a_held_ci_call_runs_once_when_a_second_identity_approves_it() {
    let s = setup();
    let run = s.exec(
        &s.ci,
        "deploy_model",
        deploy("7"),
        &["--reason", "release 7", "--wait", "60s"],
    );
    let id = s.pending("deploy_model", &deploy("7"));
    let shown = s.approve(&s.bob, &["show", &id.to_string(), "--json"]);
    let r: Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(r["requester"]["subject"], "workload:models-deploy");
    assert_eq!(r["requester"]["kind"], "workload");
    assert_eq!(r["reason"], "release 7");
    assert_eq!(r["binding"]["rule"], "deploys-need-a-lead");
    assert_eq!(r["binding"]["args_digest"].as_str().unwrap().len(), 64);
    assert!(
        r["binding"]["tool_fingerprint"].is_string(),
        "bound to the tool's definition: {r}"
    );
    assert_eq!(r["tool_state"], "accepted", "{r}");
    // Held: past the 4 s hold the exec asks again, and still nothing
    // reached the upstream.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(s.received("deploy_model"), 0, "nothing runs unapproved");

    // The requester cannot approve its own call, nor can a non-approver.
    let own = s.approve(&s.ci, &["grant", &id.to_string()]);
    assert_eq!(own.status, Some(5), "{}", own.stderr);
    assert!(own.stderr.contains("yourself"), "{}", own.stderr);

    let granted = s.approve(&s.bob, &["grant", &id.to_string(), "--reason", "CHG-1"]);
    assert_eq!(granted.status, Some(0), "{}", granted.stderr);
    assert!(
        granted
            .stdout
            .contains("approved: it releases the one call"),
        "{}",
        granted.stdout
    );
    let out = run.finish();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("deployed model fraud version 7 to production"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!("approval #{id}")),
        "{}",
        out.stderr
    );
    assert_eq!(s.received("deploy_model"), 1);

    // A second vote on a finished request is refused; the approval was
    // one call: the same call again is a new request.
    let again = s.approve(&s.carol, &["grant", &id.to_string()]);
    assert_eq!(again.status, Some(2), "{}", again.stderr);
    assert!(
        again.stderr.contains("already released"),
        "{}",
        again.stderr
    );
    let out = s
        .exec(
            &s.ci,
            "deploy_model",
            deploy("7"),
            &["--reason", "again", "--wait", "2s"],
        )
        .finish();
    assert_eq!(out.status, Some(8), "{}", out.stderr);
    assert!(
        out.stderr.contains("run the same command again"),
        "{}",
        out.stderr
    );
    let second = s.pending("deploy_model", &deploy("7"));
    assert_ne!(second, id);
    assert_eq!(s.received("deploy_model"), 1, "the used approval ran once");

    // Other arguments need their own approval: granting #second does not
    // release version 8, and a denial reaches the caller with its reason.
    let run8 = s.exec(
        &s.ci,
        "deploy_model",
        deploy("8"),
        &["--reason", "release 8"],
    );
    let id8 = s.pending("deploy_model", &deploy("8"));
    assert_ne!(id8, second);
    let no_reason = s.approve(&s.bob, &["deny", &id8.to_string(), "--reason", " "]);
    assert_eq!(no_reason.status, Some(2), "{}", no_reason.stderr);
    let denied = s.approve(
        &s.bob,
        &[
            "deny",
            &id8.to_string(),
            "--reason",
            "not during the freeze",
        ],
    );
    assert_eq!(denied.status, Some(0), "{}", denied.stderr);
    let out = run8.finish();
    assert_eq!(out.status, Some(7), "{}", out.stderr);
    assert!(
        out.stderr.contains("not during the freeze"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bob@bank.example"), "{}", out.stderr);
    assert_eq!(s.received("deploy_model"), 1);

    // The chain is in the audit log, linked by the approval's number.
    let events = host_audit_search(
        &["--config".to_owned(), s.broker.config.display().to_string()],
        |e| {
            e.iter()
                .any(|e| e["type"] == "approval.decided" && e["approval"] == id8)
        },
    );
    let of = |kind: &str, n: u64| {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["approval"] == n)
            .count()
    };
    assert_eq!(of("approval.requested", id), 1, "{events:?}");
    assert_eq!(of("approval.decided", id), 1);
    assert_eq!(of("approval.released", id), 1);
    assert_eq!(
        of("mcp.request", id),
        1,
        "the released call names its approval"
    );
    let decided = events
        .iter()
        .find(|e| e["type"] == "approval.decided" && e["approval"] == id8)
        .unwrap();
    assert_eq!(decided["actor"]["sub"], "bob");
    assert_eq!(decided["decision"], "denied");
    assert_eq!(decided["reason"], "not during the freeze");
}

#[test]
fn quorum_expiry_a_persons_decision_and_a_restart() {
    let s = setup();
    // Two distinct people: the same one twice does not count, nor does a
    // workload where the rule wants a person.
    let run = s.exec(
        &s.ci,
        "delete_model",
        json!({"model": "old"}),
        &["--reason", "cleanup", "--wait", "60s"],
    );
    let id = s
        .pending("delete_model", &json!({"model": "old"}))
        .to_string();
    let one = s.approve(&s.bob, &["grant", &id]);
    assert_eq!(one.status, Some(0), "{}", one.stderr);
    assert!(one.stdout.contains("1 of 2"), "{}", one.stdout);
    let twice = s.approve(&s.bob, &["grant", &id]);
    assert_eq!(twice.status, Some(5), "{}", twice.stderr);
    assert!(twice.stderr.contains("already decided"), "{}", twice.stderr);
    // The CI job is in an approver group of this rule, but it made the
    // call (and the rule wants a person besides).
    let own = s.approve(&s.ci, &["grant", &id]);
    assert_eq!(own.status, Some(5), "{}", own.stderr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.received("delete_model"),
        0,
        "one vote of two releases nothing"
    );
    let two = s.approve(&s.carol, &["grant", &id]);
    assert_eq!(two.status, Some(0), "{}", two.stderr);
    let out = run.finish();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(s.received("delete_model"), 1);

    // Nobody decides in time: exit 8, and the request says expired.
    let out = s
        .exec(
            &s.ci,
            "echo",
            json!({"text": "hi"}),
            &["--reason", "ping", "--wait", "30s"],
        )
        .finish();
    assert_eq!(out.status, Some(8), "{}", out.stderr);
    assert!(out.stderr.contains("expired"), "{}", out.stderr);
    assert_eq!(s.received("echo"), 0);

    // A request pending when the broker stops is there after the restart,
    // and its grant releases the same call made again.
    let pending = s.exec(
        &s.ci,
        "deploy_model",
        deploy("9"),
        &["--reason", "release 9", "--wait", "3s"],
    );
    let id9 = s.pending("deploy_model", &deploy("9"));
    assert_eq!(pending.finish().status, Some(8));
    let Setup {
        dir,
        _human,
        _ci,
        _demo,
        mut broker,
        record,
        ci,
        bob,
        carol,
    } = s;
    broker.proc.terminate();
    let broker = serve_broker_with(dir.path(), broker.config.clone(), broker.state.clone());
    let s = Setup {
        dir,
        _human,
        _ci,
        _demo,
        broker,
        record,
        ci,
        bob,
        carol,
    };
    assert_eq!(
        s.pending("deploy_model", &deploy("9")),
        id9,
        "kept across the restart"
    );
    let granted = s.approve(&s.bob, &["grant", &id9.to_string()]);
    assert_eq!(granted.status, Some(0), "{}", granted.stderr);
    let out = s
        .exec(
            &s.ci,
            "deploy_model",
            deploy("9"),
            &["--reason", "release 9"],
        )
        .finish();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(s.received("deploy_model"), 1);
}

/// `hoop approve grant` as a dev identity of `broker`, once `tool` has a
/// pending request (asked every 100 ms, at most 30 s): the request's id.
fn grant_when_pending(dir: &Path, broker: &Broker, who: &str, tool: &str) -> u64 {
    let approve = |args: &[&str]| {
        let mut c = Command::new(bin("hoop"));
        c.arg("approve")
            .args(args)
            .args(broker.connect_args(who))
            .env_remove("HOOP_TOKEN")
            .env("HOOP_CONFIG", empty_config(dir));
        run_bounded(c, Duration::from_secs(30))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    let id = loop {
        let out = approve(&["list", "--json"]);
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        let found = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["state"] == "pending" && r["binding"]["name"] == tool);
        if let Some(r) = found {
            break r["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no pending request for {tool}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = approve(&["grant", &id.to_string(), "--reason", "looks right"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    id
}

#[test]
fn the_python_sdk_hears_progress_while_held_in_both_revisions() {
    let dir = scratch();
    let (_demo, broker, record) = demo_behind_demo_policy_with(
        dir.path(),
        "[approvals]\nhold_secs = 60\nprogress_every_secs = 1\n",
    );
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    for (n, mode) in ["auto", "handshake"].into_iter().enumerate() {
        let version = format!("{}", 10 + n);
        let args = json!({"model": "fraud", "version": version, "environment": "staging"});
        let mut extra = vec![
            "--tool".to_owned(),
            "held=deploy_model".to_owned(),
            "--held-args".to_owned(),
            args.to_string(),
        ];
        extra.extend(connect.header_args());
        let url = connect.url.clone();
        let client = std::thread::spawn(move || python_client_raw(&url, mode, &["held"], &extra));
        // Let two progress notifications go by before the approver comes.
        std::thread::sleep(Duration::from_secs(3));
        grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
        let outcomes = client.join().unwrap();
        let held = outcome(&outcomes, "held");
        assert!(held.ok, "{mode}: {:?}", held.detail);
        let messages = held.detail["messages"].to_string();
        assert!(messages.contains("waiting for approval #"), "{messages}");
        assert!(
            held.detail["text"]
                .as_str()
                .unwrap()
                .contains(&format!("version {version} to staging")),
            "{:?}",
            held.detail
        );
    }
    let calls = read_record(&record)
        .iter()
        .filter(|r| r["method"] == "tools/call" && r["name"] == "deploy_model")
        .count();
    assert_eq!(calls, 2, "each approved call ran once");
    // The person running `hoop connect` was told on stderr, as it happened.
    let told = connect.proc.stderr();
    assert!(
        told.contains("your call to deploy_model on demo waits for approval #1 from ml-leads"),
        "{told}"
    );
    assert!(told.contains("approval #1 granted"), "{told}");
}

#[test]
fn the_typescript_sdk_calls_again_after_pending_and_the_approval_runs_once() {
    let dir = scratch();
    // The broker's own defaults: held 50 s without a progress token, under
    // the TypeScript SDK's 60 s request timeout.
    let (_demo, broker, record) = demo_behind_demo_policy_with(dir.path(), "");
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    let args = json!({"model": "fraud", "version": "12", "environment": "staging"});
    let mut extra = vec![
        "--held-tool".to_owned(),
        "deploy_model".to_owned(),
        "--held-args".to_owned(),
        args.to_string(),
        "--held-tries".to_owned(),
        "3".to_owned(),
    ];
    extra.extend(connect.header_args());
    let url = connect.url.clone();
    let client = std::thread::spawn(move || ts_client(&url, &extra));
    // Past the first hold (50 s): the client got "pending" and called again.
    std::thread::sleep(Duration::from_secs(53));
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["name"] == "deploy_model")
            .count(),
        0
    );
    let id = grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
    let lines = client.join().unwrap();
    let held = lines.iter().find(|l| l["scenario"] == "held").unwrap();
    let pending = held["detail"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{held}");
    assert_eq!(
        pending[0]["id"], id,
        "the second call picked the same request up"
    );
    assert!(
        pending[0]["waited_ms"].as_u64().unwrap() >= 49_000,
        "{held}"
    );
    assert!(
        held["detail"]["text"]
            .as_str()
            .unwrap()
            .contains("version 12 to staging"),
        "{held}"
    );
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["method"] == "tools/call" && r["name"] == "deploy_model")
            .count(),
        1
    );
}

#[test]
fn a_client_of_the_tasks_extension_gets_a_task_that_completes_or_fails() {
    let dir = scratch();
    let (_demo, broker, record) = demo_behind_demo_policy(dir.path());
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    let held = |version: &str, expect: &str| {
        let args = json!({"model": "fraud", "version": version, "environment": "staging"});
        let mut extra = vec![
            "--tool".to_owned(),
            "held=deploy_model".to_owned(),
            "--held-args".to_owned(),
            args.to_string(),
            "--held-expect".to_owned(),
            expect.to_owned(),
        ];
        extra.extend(connect.header_args());
        let url = connect.url.clone();
        std::thread::spawn(move || python_client_raw(&url, "modern", &["held_task"], &extra))
    };
    let approve = |args: &[&str]| {
        let mut c = Command::new(bin("hoop"));
        c.arg("approve")
            .args(args)
            .args(broker.connect_args("bob"))
            .env_remove("HOOP_TOKEN")
            .env("HOOP_CONFIG", empty_config(dir.path()));
        run_bounded(c, Duration::from_secs(30))
    };

    // Granted: the task completes with the tool's result. Past the 3 s
    // hold a held stream would have answered "pending"; a task waits on.
    let client = held("20", "ok");
    std::thread::sleep(Duration::from_secs(4));
    grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
    let outcomes = client.join().unwrap();
    let o = outcome(&outcomes, "held_task");
    assert!(o.ok, "{:?}", o.detail);
    let task_id = o.detail["task_id"].as_str().unwrap();
    assert!(task_id.starts_with("hoop-approval-"), "{task_id}");
    assert!(
        o.detail["status_messages"]
            .to_string()
            .contains("waiting for approval #"),
        "{:?}",
        o.detail
    );
    assert!(
        o.detail["text"]
            .as_str()
            .unwrap()
            .contains("version 20 to staging"),
        "{:?}",
        o.detail
    );

    // Denied: the task fails with the approval, the outcome and the reason.
    let client = held("21", "failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    let id = loop {
        let out = approve(&["list", "--json"]);
        let found = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["state"] == "pending");
        if let Some(r) = found {
            break r["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no pending request");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = approve(&["deny", &id.to_string(), "--reason", "wrong environment"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let outcomes = client.join().unwrap();
    let o = outcome(&outcomes, "held_task");
    assert!(o.ok, "{:?}", o.detail);
    let text = o.detail["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("approval #{id} was denied")),
        "{text}"
    );
    assert!(text.contains("wrong environment"), "{text}");
    // It completes with an error result, as a tool result the client shows.
    assert!(
        o.detail["statuses"].to_string().contains("completed"),
        "{:?}",
        o.detail
    );

    // tasks/cancel withdraws the request; the task is bound to its owner.
    let stateless = |url: &str,
                     secret: &Option<String>,
                     method: &str,
                     name: &str,
                     params: Value| {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        });
        let body = json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": params});
        let auth = secret
            .as_ref()
            .map(|s| format!("Bearer {s}"))
            .unwrap_or_default();
        let mut headers = vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("mcp-name", name),
        ];
        if !auth.is_empty() {
            headers.push(("authorization", auth.as_str()));
        }
        let (_, _, msgs) = post(url, &headers, &body.to_string());
        msgs.into_iter().find(|m| m["id"] == 5).unwrap()
    };
    let created = stateless(
        &connect.url,
        &connect.secret,
        "tools/call",
        "deploy_model",
        json!({"name": "deploy_model", "arguments": {"model": "fraud", "version": "22", "environment": "staging"}}),
    );
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    assert_eq!(created["result"]["status"], "working", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_owned();
    let bobs = Connect::start_as(dir.path(), &broker, "demo", "bob", &[]);
    let foreign = stateless(
        &bobs.url,
        &bobs.secret,
        "tasks/get",
        &task,
        json!({"taskId": task}),
    );
    assert_eq!(foreign["error"]["code"], -32055, "{foreign}");
    let cancelled = stateless(
        &connect.url,
        &connect.secret,
        "tasks/cancel",
        &task,
        json!({"taskId": task}),
    );
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    let id = created["result"]["_meta"]["dev.hoop/approval"]["id"].clone();
    let out = approve(&["list", "--all", "--json"]);
    let state = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["id"] == id)
        .map(|r| r["state"].clone());
    assert_eq!(state, Some(json!("cancelled")), "{}", out.stdout);

    let calls: Vec<Value> = read_record(&record)
        .into_iter()
        .filter(|r| r["method"] == "tools/call" && r["name"] == "deploy_model")
        .collect();
    assert_eq!(calls.len(), 1, "only the granted call ran: {calls:?}");
    assert!(
        read_record(&record)
            .iter()
            .all(|r| r["method"] != "tasks/get"),
        "the broker's tasks never reach the upstream"
    );
}

/// tmux on a socket of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        run_bounded(c, Duration::from_secs(10))
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "approve"]).stdout
    }

    /// Waits (every 100 ms, at most 20 s) until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Bounded by the deadline.
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn an_approver_releases_a_held_call_from_the_live_view_in_a_real_terminal() {
    let dir = scratch();
    let (_demo, broker, record) =
        demo_behind_demo_policy_with(dir.path(), "[approvals]\nhold_secs = 60\n");
    let args = r#"{"model":"fraud","version":"30","environment":"staging"}"#;
    let mut exec = Command::new(bin("hoop"));
    exec.args([
        "exec",
        "mcp",
        "demo",
        "--tool",
        "deploy_model",
        "--args",
        args,
    ])
    .args(["--reason", "release 30", "--wait", "60s"])
    .args(broker.connect_args("alice"))
    .env_remove("HOOP_TOKEN")
    .env("HOOP_CONFIG", empty_config(dir.path()));
    let run = std::thread::spawn(move || run_bounded(exec, Duration::from_secs(90)));

    let tmux = Tmux {
        socket: format!("hoop-e2e-{}", std::process::id()),
    };
    let command = format!(
        "env HOOP_CONFIG={} {} approve {}",
        empty_config(dir.path()).display(),
        bin("hoop").display(),
        broker.connect_args("bob").join(" ")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "approve",
        "-x",
        "140",
        "-y",
        "40",
        &command,
    ]);
    assert_eq!(started.status, Some(0), "{}", started.stderr);
    let screen = tmux.wait_for("alice@example.com");
    assert!(screen.contains("demo/deploy_model"), "{screen}");
    assert!(screen.contains("release 30"), "{screen}");
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["name"] == "deploy_model")
            .count(),
        0
    );

    tmux.run(&["send-keys", "-t", "approve", "a"]);
    tmux.wait_for("Grant #1, reason (optional)");
    tmux.run(&["send-keys", "-t", "approve", "-l", "CHG-30"]);
    tmux.run(&["send-keys", "-t", "approve", "Enter"]);
    tmux.wait_for("#1 approved: it releases the one call");
    let out = run.join().unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("version 30 to staging"),
        "{}",
        out.stdout
    );
    // The live view follows: the request leaves the open list.
    tmux.wait_for("nothing waits for your decision");
    tmux.run(&["send-keys", "-t", "approve", "q"]);
    // `hoop audit replay` of the call's exchange tells the whole story.
    let mut list = Command::new(bin("hoop"));
    list.args(["approve", "show", "1", "--json"])
        .args(broker.connect_args("bob"))
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let shown = run_bounded(list, Duration::from_secs(30));
    let request: Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    let exchange = request["exchange"].as_str().unwrap().to_owned();
    let replay = |found: &dyn Fn(&[String]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline (the file trails the journal a little).
        loop {
            let mut c = Command::new(bin("hoop-broker"));
            c.args(["audit", "replay", &exchange, "--json", "--audit-log"])
                .arg(broker.state.join("audit.db"));
            let out = run_bounded(c, Duration::from_secs(20));
            let types: Vec<String> = out
                .stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|e| e["type"].as_str().map(str::to_owned))
                .collect();
            if found(&types) || Instant::now() > deadline {
                return (types, out.stdout);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (types, v) = replay(&|t: &[String]| t.iter().any(|t| t == "mcp.response"));
    let at = |kind: &str| {
        types
            .iter()
            .position(|t| t == kind)
            .unwrap_or_else(|| panic!("no {kind} in {v}"))
    };
    assert!(
        at("approval.requested") < at("approval.decided"),
        "{types:?}"
    );
    assert!(
        at("approval.decided") < at("approval.released"),
        "{types:?}"
    );
    assert!(at("approval.released") < at("mcp.request"), "{types:?}");
    assert!(at("mcp.request") < at("mcp.response"), "{types:?}");
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["name"] == "deploy_model")
            .count(),
        1
    );
}

#[test]
fn a_held_task_of_someone_revoked_meanwhile_does_not_run_when_granted() {
    let dir = scratch();
    let (_demo, broker, record) = demo_behind_demo_policy(dir.path());
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    // A task: it waits in the broker, not on alice's connection.
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
    "name": "deploy_model",
    "arguments": {"model": "fraud", "version": "40", "environment": "production"},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
    }}});
    let auth = format!("Bearer {}", connect.secret.clone().unwrap_or_default());
    let (_, _, msgs) = post(
        &connect.url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "deploy_model"),
            ("authorization", &auth),
        ],
        &body.to_string(),
    );
    let created = msgs.into_iter().find(|m| m["id"] == 5).unwrap();
    assert_eq!(created["result"]["resultType"], "task", "{created}");

    // alice is off-boarded while her call waits; then bob approves it.
    let mut revoke = Command::new(bin("hoop-broker"));
    revoke
        .args([
            "revoke",
            "--subject",
            "alice",
            "--reason",
            "off-boarded",
            "--store",
        ])
        .arg(broker.state.join("broker.db"));
    let out = run_bounded(revoke, Duration::from_secs(20));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(1500));
    grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["name"] == "deploy_model")
            .count(),
        0,
        "a revoked requester's call never reaches the upstream"
    );
    let refused = host_audit_search(
        &[
            "--audit-log".to_owned(),
            broker.state.join("audit.db").display().to_string(),
            "--type".to_owned(),
            "mcp.refused".to_owned(),
        ],
        |e| e.iter().any(|e| e["error_code"] == -32054),
    );
    assert!(
        refused
            .iter()
            .any(|e| e["error_code"] == -32054 && e["name"] == "deploy_model"),
        "{refused:?}"
    );
}

/// One request a webhook receiver got: its headers (lowercase) and body.
struct Delivery {
    headers: std::collections::HashMap<String, String>,
    body: Vec<u8>,
}

/// A tiny HTTP receiver on loopback: answers 500 to the first request (so
/// the sender must retry) and 200 after; hands each request to the test.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Delivery>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Bounded: at most 50 requests, and the test's end drops `rx`.
        for (n, stream) in listener.incoming().take(50).enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if tx.send(Delivery { headers, body }).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

#[test]
fn approvers_hear_of_requests_and_decisions_through_a_signed_webhook() {
    let dir = scratch();
    let (url, deliveries) = webhook_receiver();
    let secret = "hoop-webhook-secret-0123456789abcdef";
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let (_demo, broker, _record) = demo_behind_demo_policy_with(
        dir.path(),
        &format!(
            "[approvals]\nhold_secs = 60\n[[approvals.webhooks]]\nurl = \"{url}\"\nsecret_file = \"{}\"\nevents = [\"requested\", \"decided\"]\n",
            secret_file.display()
        ),
    );
    let mut exec = Command::new(bin("hoop"));
    exec.args(["exec", "mcp", "demo", "--tool", "deploy_model"])
        .args([
            "--args",
            r#"{"model":"fraud","version":"50","environment":"staging"}"#,
        ])
        .args(["--reason", "release 50", "--wait", "60s"])
        .args(broker.connect_args("alice"))
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir.path()));
    let run = std::thread::spawn(move || run_bounded(exec, Duration::from_secs(90)));

    let next = || {
        deliveries
            .recv_timeout(Duration::from_secs(20))
            .expect("a webhook delivery")
    };
    // The receiver refused the first delivery; the broker tried again.
    let first = next();
    let retried = next();
    assert_eq!(first.body, retried.body, "the same notification, again");
    let v: Value = serde_json::from_slice(&retried.body).unwrap();
    assert_eq!(v["hoop"]["event"], "requested");
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("Approval #1 needed: alice@example.com wants to call deploy_model on demo"),
        "{text}"
    );
    assert!(text.contains("release 50"), "{text}");

    // The signature, checked with OpenSSL rather than hoop's own code.
    let ts = &retried.headers["x-hoop-timestamp"];
    let mut openssl = Command::new("openssl");
    openssl
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = openssl.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("v1:{ts}:").as_bytes()).unwrap();
        stdin.write_all(&retried.body).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(retried.headers["x-hoop-signature"], format!("v1={hex}"));

    grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
    let decided: Value = serde_json::from_slice(&next().body).unwrap();
    assert_eq!(decided["hoop"]["event"], "decided");
    assert!(
        decided["text"]
            .as_str()
            .unwrap()
            .contains("Approval #1 granted by bob@example.com: looks right"),
        "{decided}"
    );
    let out = run.join().unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
}

#[test]
fn a_window_grant_releases_the_requesters_calls_of_the_tool_until_it_ends() {
    let s = setup();
    let run = s.exec(
        &s.ci,
        "get_customer",
        json!({"customer_id": "cust-001"}),
        &["--reason", "incident 7", "--wait", "60s"],
    );
    let id = s.pending("get_customer", &json!({"customer_id": "cust-001"}));
    let shown = s.approve(&s.bob, &["show", &id.to_string()]);
    assert!(
        shown
            .stdout
            .contains("calls of get_customer on demo for 2m after the decision (any arguments)"),
        "{}",
        shown.stdout
    );
    let granted = s.approve(
        &s.bob,
        &["grant", &id.to_string(), "--reason", "for the incident"],
    );
    assert_eq!(granted.status, Some(0), "{}", granted.stderr);
    assert_eq!(run.finish().status, Some(0));
    // Within the window, other arguments go through at once, no new request.
    let out = s
        .exec(
            &s.ci,
            "get_customer",
            json!({"customer_id": "cust-002"}),
            &["--wait", "2s"],
        )
        .finish();
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(s.received("get_customer"), 2);
    let list = s.requests_until(&s.bob, |_| true);
    let open: Vec<&Value> = list.iter().filter(|r| r["state"] == "pending").collect();
    assert!(open.is_empty(), "no new request: {open:?}");
    let released = host_audit_search(
        &[
            "--config".to_owned(),
            s.broker.config.display().to_string(),
            "--type".to_owned(),
            "approval.released".to_owned(),
        ],
        |e| e.iter().filter(|e| e["approval"] == id).count() >= 2,
    );
    let digests: Vec<&Value> = released
        .iter()
        .filter(|e| e["approval"] == id)
        .map(|e| &e["detail"]["args_sha256"])
        .collect();
    assert_eq!(
        digests.len(),
        2,
        "each call released is on the record: {released:?}"
    );
    assert_ne!(digests[0], digests[1], "with its own arguments");
}

#[test]
fn a_task_outlives_a_broker_restart_and_completes_when_granted() {
    let dir = scratch();
    let (_demo, mut broker, record) = demo_behind_demo_policy(dir.path());
    let call = |connect: &Connect, method: &str, name: &str, params: Value| {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        });
        let body = json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": params});
        let auth = format!("Bearer {}", connect.secret.clone().unwrap_or_default());
        let (_, _, msgs) = post(
            &connect.url,
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", method),
                ("mcp-name", name),
                ("authorization", &auth),
            ],
            &body.to_string(),
        );
        msgs.into_iter().find(|m| m["id"] == 5).unwrap()
    };
    let task = {
        let connect = Connect::start(dir.path(), &broker, "demo", &[]);
        let created = call(
            &connect,
            "tools/call",
            "deploy_model",
            json!({"name": "deploy_model", "arguments": {"model": "fraud", "version": "60", "environment": "staging"}}),
        );
        assert_eq!(created["result"]["status"], "working", "{created}");
        created["result"]["taskId"].as_str().unwrap().to_owned()
    };
    broker.proc.terminate();
    let broker = Broker::start_with(dir.path(), broker.config.clone(), broker.state.clone());
    grant_when_pending(dir.path(), &broker, "bob", "deploy_model");
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline.
    let done = loop {
        let got = call(&connect, "tasks/get", &task, json!({"taskId": task}));
        if got["result"]["status"] != "working" || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["result"]["status"], "completed", "{done}");
    let text = done["result"]["result"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("version 60 to staging"), "{text}");
    assert_eq!(
        read_record(&record)
            .iter()
            .filter(|r| r["method"] == "tools/call" && r["name"] == "deploy_model")
            .count(),
        1
    );
}

#[test]
fn a_quiet_held_stream_says_it_is_alive() {
    use std::io::Read as _;
    let dir = scratch();
    let (_demo, broker, _record) =
        demo_behind_demo_policy_with(dir.path(), "[approvals]\nhold_secs_without_progress = 40\n");
    let connect = Connect::start(dir.path(), &broker, "demo", &[]);
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "deploy_model", "arguments": {"model": "fraud", "version": "70", "environment": "staging"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut req = http()
        .post(&connect.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "deploy_model")
        .body(body.to_string());
    if let Some(secret) = &connect.secret {
        req = req.header("authorization", format!("Bearer {secret}"));
    }
    let mut resp = req.send().unwrap();
    let started = Instant::now();
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: the client's 60 s timeout, and at most 64 KiB.
    while text.len() < 64 * 1024 {
        let n = resp.read(&mut chunk).unwrap();
        assert!(n > 0, "the held answer ended early");
        text.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&text).contains(": keep-alive") {
            break;
        }
    }
    let seen = String::from_utf8_lossy(&text).into_owned();
    assert!(seen.contains("waits for approval #1"), "{seen}");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "a keep-alive only on a quiet stream: {seen}"
    );
}
