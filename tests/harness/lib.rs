//! Test harness for hoop's end-to-end suites: starts real processes (the
//! broker, `hoop connect`, real MCP servers, the official SDK clients) on
//! loopback ports, waits for them to be ready, and kills each one's whole
//! process group when the test ends, pass or fail.
//!
//! Prerequisites come from `tests/setup.sh` (npm and pip packages pinned in
//! tests/package-lock.json and tests/requirements.txt); a missing one fails
//! the test with a message that says to run it.

#![allow(clippy::unwrap_used)] // test harness: a failed expectation should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod oidc;
pub mod replicas;
pub mod stateless;
pub use oidc::{
    issuers_toml, serve_broker, serve_broker_top, serve_broker_with, OidcProvider, WORKLOAD_RULES,
};

/// The tests/ directory.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A workspace binary (`hoop`, `hoop-broker`) built next to this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

pub fn python() -> PathBuf {
    let p = tests_dir().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/setup.sh` first",
        p.display()
    );
    p
}

pub fn node_modules() -> PathBuf {
    let p = tests_dir().join("node_modules");
    assert!(
        p.join("@modelcontextprotocol/server-everything").exists(),
        "tests/node_modules is missing: run `bash tests/setup.sh` first"
    );
    p
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process in its own process group, killed (group and all) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: Option<mpsc::Receiver<String>>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd`; stderr goes to a log file printed if the test fails.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().map(lines_of);
        Self {
            name: name.to_owned(),
            child,
            stdout,
            log,
        }
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        let rx = self.stdout.as_ref().unwrap();
        match rx.recv_timeout(timeout) {
            Ok(l) => l,
            Err(_) => panic!(
                "{} printed no line within {timeout:?}; its stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Reads stdout lines until one satisfies `f`.
    pub fn line_matching(&mut self, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.line(left);
            if f(&l) {
                return l;
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to the group and waits for the exit status.
    pub fn terminate(&mut self) -> Option<i32> {
        signal_group(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    pub fn kill(&mut self) {
        signal_group(self.child.id(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit within {timeout:?}", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} stderr ----\n{}", self.name, self.stderr());
        }
        self.kill();
    }
}

fn signal_group(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_tcp(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// An empty CLI config file, so the machine's own config.toml stays out.
pub fn empty_config(dir: &Path) -> PathBuf {
    let p = dir.join("empty-config.toml");
    std::fs::write(&p, "").unwrap();
    p
}

/// A scratch directory for one test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoop-e2e-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------- servers

/// `@modelcontextprotocol/server-everything` in streamable HTTP mode.
pub fn everything_http(dir: &Path) -> (Proc, String) {
    let nm = node_modules();
    let port = free_tcp_port();
    let mut cmd = Command::new("node");
    cmd.current_dir(tests_dir())
        .env("PORT", port.to_string())
        .arg("--require")
        .arg(tests_dir().join("fixtures/loopback_only.cjs"))
        .arg(nm.join("@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp");
    let p = Proc::spawn("server-everything", cmd, dir);
    wait_tcp(port, Duration::from_secs(30));
    (p, format!("http://127.0.0.1:{port}/mcp"))
}

/// The command line that runs server-everything over stdio.
pub fn everything_stdio_command() -> (String, Vec<String>) {
    let entry = node_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    (
        "node".into(),
        vec![entry.display().to_string(), "stdio".into()],
    )
}

/// tests/fixtures/stateless_server.py: a 2026-07-28 server on the Python SDK.
pub fn stateless_server(dir: &Path, record: &Path) -> (Proc, String) {
    stateless_server_with(dir, record, &[])
}

/// The same, with more of its flags (`--trickle-sse`, `--json-response`, …).
pub fn stateless_server_with(dir: &Path, record: &Path, flags: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(python());
    cmd.arg(tests_dir().join("fixtures/stateless_server.py"))
        .args(["--port", "0", "--record"])
        .arg(record)
        .args(flags);
    let mut p = Proc::spawn("stateless-server", cmd, dir);
    let line = p.line_matching(Duration::from_secs(30), |l| l.contains("\"listening\""));
    let v: Value = serde_json::from_str(&line).unwrap();
    let url = v["url"].as_str().unwrap().to_owned();
    (p, url)
}

/// `hoop demo-server` on a loopback port.
pub fn demo_server(dir: &Path, record: &Path) -> (Proc, String) {
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["demo-server", "--port", "0", "--record"])
        .arg(record);
    let mut p = Proc::spawn("demo-server", cmd, dir);
    let line = p.line_matching(Duration::from_secs(20), |l| {
        l.starts_with("demo MCP server:")
    });
    let url = line
        .trim_start_matches("demo MCP server:")
        .trim()
        .to_owned();
    (p, url)
}

// ---------------------------------------------------------------- hoop

/// Broker config for one streamable HTTP target.
pub fn http_target(name: &str, url: &str) -> String {
    format!("[targets.{name}]\ntransport = \"http\"\nurl = \"{url}\"\n")
}

/// The demo server behind a dev broker that runs `hoop demo`'s policy
/// (cli/src/demo_server/policy.toml); returns them and the server's record.
/// A call held for approval is held for 2 or 3 seconds, not minutes.
pub fn demo_behind_demo_policy(dir: &Path) -> (Proc, Broker, PathBuf) {
    demo_behind_demo_policy_with(
        dir,
        "[approvals]\nhold_secs = 3\nhold_secs_without_progress = 2\n",
    )
}

/// The same with these config tables after the target (`[approvals]`).
pub fn demo_behind_demo_policy_with(dir: &Path, tables: &str) -> (Proc, Broker, PathBuf) {
    let record = dir.join("demo.jsonl");
    let (demo, url) = demo_server(dir, &record);
    let policy = tests_dir().join("../cli/src/demo_server/policy.toml");
    let broker = Broker::start(
        dir,
        &format!(
            "policy = \"{}\"\n{}\n{tables}",
            policy.display(),
            http_target("demo", &url)
        ),
    );
    (demo, broker, record)
}

/// A `hoop-broker dev` process with its state directory.
pub struct Broker {
    pub proc: Proc,
    pub addr: String,
    pub pin: String,
    pub state: PathBuf,
    pub config: PathBuf,
}

impl Broker {
    /// Starts a dev broker with these `[targets…]` (TOML) on a free port.
    pub fn start(dir: &Path, targets_toml: &str) -> Self {
        let port = free_udp_port();
        let config = dir.join("broker.toml");
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:{port}\"\n{targets_toml}"),
        )
        .unwrap();
        Self::start_with(dir, config, dir.join("broker-state"))
    }

    /// (Re)starts a dev broker from an existing config and state directory.
    pub fn start_with(dir: &Path, config: PathBuf, state: PathBuf) -> Self {
        let mut cmd = Command::new(bin("hoop-broker"));
        cmd.args(["--log", "info,hoop_broker=debug", "dev", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state);
        let mut proc = Proc::spawn("hoop-broker", cmd, dir);
        let listening = proc.line_matching(Duration::from_secs(20), |l| l.contains("listening on"));
        let addr = listening.split_whitespace().nth(5).unwrap().to_owned();
        let cert = proc.line_matching(Duration::from_secs(5), |l| l.starts_with("certificate:"));
        let pin = cert
            .split('(')
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .to_owned();
        Self {
            proc,
            addr,
            pin,
            state,
            config,
        }
    }

    pub fn token_file(&self, who: &str) -> PathBuf {
        self.state.join("tokens").join(format!("{who}.token"))
    }

    /// Args for `hoop connect` to reach this broker as `who`.
    pub fn connect_args(&self, who: &str) -> Vec<String> {
        vec![
            "--broker".into(),
            self.addr.clone(),
            "--pin".into(),
            self.pin.clone(),
            "--token-file".into(),
            self.token_file(who).display().to_string(),
        ]
    }
}

/// A `hoop connect mcp TARGET` process serving HTTP.
pub struct Connect {
    pub proc: Proc,
    pub url: String,
    pub secret: Option<String>,
}

impl Connect {
    pub fn start(dir: &Path, broker: &Broker, target: &str, extra: &[&str]) -> Self {
        Self::start_as(dir, broker, target, "alice", extra)
    }

    pub fn start_as(dir: &Path, broker: &Broker, target: &str, who: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(bin("hoop"));
        cmd.args([
            "--log", "info", "connect", "mcp", target, "--port", "0", "--json",
        ])
        .args(broker.connect_args(who))
        .args(extra)
        // The tests' own settings must not leak in from the machine.
        .env_remove("HOOP_TOKEN")
        .env("HOOP_CONFIG", empty_config(dir));
        let mut proc = Proc::spawn("hoop-connect", cmd, dir);
        let line = proc.line(Duration::from_secs(20));
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        Self {
            proc,
            url: v["url"].as_str().unwrap().to_owned(),
            secret: v["secret"].as_str().map(str::to_owned),
        }
    }

    /// `--header K=V` arguments for the Python client, carrying the local
    /// endpoint's secret.
    pub fn header_args(&self) -> Vec<String> {
        self.auth_header()
            .into_iter()
            .flat_map(|h| ["--header".to_string(), h])
            .collect()
    }

    /// The `Authorization` header the local endpoint wants, as K=V.
    pub fn auth_header(&self) -> Vec<String> {
        self.secret
            .iter()
            .map(|s| format!("Authorization=Bearer {s}"))
            .collect()
    }
}

// ---------------------------------------------------------------- clients

/// One scenario's outcome, as tests/clients/mcp_client.py prints it.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: String,
    pub ok: bool,
    pub detail: Value,
}

/// Runs the official Python SDK client driver and returns every outcome;
/// panics (with the driver's output) when any scenario failed.
pub fn python_client(url: &str, mode: &str, scenarios: &[&str], extra: &[String]) -> Vec<Outcome> {
    let outcomes = python_client_raw(url, mode, scenarios, extra);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(
        failed.is_empty(),
        "scenarios failed ({mode}) against {url}: {failed:#?}"
    );
    assert_eq!(
        outcomes.len(),
        scenarios.len(),
        "missing outcomes: {outcomes:#?}"
    );
    outcomes
}

/// Same, without asserting success.
pub fn python_client_raw(
    url: &str,
    mode: &str,
    scenarios: &[&str],
    extra: &[String],
) -> Vec<Outcome> {
    let mut cmd = Command::new(python());
    cmd.arg(tests_dir().join("clients/mcp_client.py")).args([
        "--url",
        url,
        "--mode",
        mode,
        "--timeout",
        "60",
    ]);
    for s in scenarios {
        cmd.args(["--scenario", s]);
    }
    for e in extra {
        cmd.arg(e);
    }
    let out = run_bounded(cmd, Duration::from_secs(300));
    let outcomes: Vec<Outcome> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Outcome {
            scenario: v["scenario"].as_str().unwrap_or("").to_owned(),
            ok: v["ok"].as_bool().unwrap_or(false),
            detail: v["detail"].clone(),
        })
        .collect();
    if outcomes.is_empty() {
        panic!(
            "python client printed nothing.\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
    }
    outcomes
}

/// Finds a scenario's outcome.
pub fn outcome<'a>(all: &'a [Outcome], scenario: &str) -> &'a Outcome {
    all.iter().find(|o| o.scenario == scenario).unwrap()
}

pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `hoop-broker audit search --json ARGS` on the host, beside a running
/// broker: the events it prints. The file trails the broker's journal by
/// a batch, so the search is asked again (every 100 ms, for at most 10 s)
/// until `found` holds of the events; the last answer is returned for the
/// caller's own assertions.
pub fn host_audit_search<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    found: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let search = || {
        let mut cmd = Command::new(bin("hoop-broker"));
        cmd.args(["audit", "search", "--json"]).args(args);
        let out = run_bounded(cmd, Duration::from_secs(20));
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect::<Vec<Value>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = search();
    // Bounded by the deadline.
    while !found(&events) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        events = search();
    }
    events
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if Instant::now() > deadline {
            signal_group(child.id(), nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

/// The official TypeScript SDK client: initialize, tools/list, echo.
pub fn ts_client(url: &str, extra: &[String]) -> Vec<Value> {
    node_modules();
    let mut cmd = Command::new("node");
    cmd.current_dir(tests_dir())
        .arg(tests_dir().join("clients/ts_client.mjs"))
        .args(["--url", url]);
    for e in extra {
        cmd.arg(e);
    }
    let out = run_bounded(cmd, Duration::from_secs(120));
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status == Some(0)
            && !lines.is_empty()
            && lines.iter().all(|v| v["ok"] == Value::Bool(true)),
        "TypeScript client failed (status {:?}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    lines
}

/// Lines of a JSON-lines record file (what a test server received).
pub fn read_record(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Raw HTTP against a local endpoint, for the failure tests.
pub fn http() -> reqwest::blocking::Client {
    hoop_broker::crypto::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs one JSON-RPC message the way an MCP client does; returns status,
/// headers and every JSON-RPC message of the answer (JSON or SSE).
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<Value>) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    (status, h, parse_messages(&text))
}

/// A stateless (2026-07-28) `tools/call` of `tool` with `args` (a JSON
/// object as text) through `url`, with the headers the revision wants;
/// returns the status and every message of the answer.
pub fn call_tool(url: &str, id: u64, tool: &str, args: &str) -> (u16, Vec<Value>) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{{"name":"t","version":"1"}},"io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let (status, _, msgs) = post(
        url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
        &body,
    );
    (status, msgs)
}

/// JSON body, or the `data:` lines of an SSE body.
pub fn parse_messages(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return vec![v];
    }
    let mut out = Vec::new();
    let mut data = String::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        } else if line.is_empty() && !data.is_empty() {
            if let Ok(v) = serde_json::from_str(&data) {
                out.push(v);
            }
            data.clear();
        }
    }
    if !data.is_empty() {
        if let Ok(v) = serde_json::from_str(&data) {
            out.push(v);
        }
    }
    out
}

/// A JSON line writer/reader over a child's stdio (for `hoop connect --stdio`).
pub struct StdioPeer {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl StdioPeer {
    pub fn spawn(mut cmd: Command, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let log = dir.join("stdio-peer.log");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        Self {
            child,
            stdin: Some(stdin),
            lines,
            log,
        }
    }

    pub fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads lines until the response with `id`, returning every line read.
    pub fn until_response(&mut self, id: &Value, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no response with id {id} within {timeout:?}; got {seen:#?}; stderr:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
            let v: Value = serde_json::from_str(&line).unwrap();
            let done = v.get("id") == Some(id) && v.get("method").is_none();
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// Closes stdin and waits for the process to exit.
    pub fn close(mut self, timeout: Duration) -> Option<i32> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        signal_group(self.child.id(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- hoop login

/// `tests/fixtures/oidc/provider.mjs --kind human` on a free port, with
/// extra environment (`OIDC_AT_TTL`, …); returns it and its issuer URL.
pub fn human_oidc_provider(dir: &Path, env: &[(&str, &str)]) -> (Proc, String) {
    let p = OidcProvider::start(dir, "human", env);
    (p.proc, p.issuer)
}

/// Plays the person at the provider's device page
/// (`tests/fixtures/oidc/device_user.mjs`): exit 0 approved, 2 denied.
pub fn play_device_user(url: &str, login: &str, deny: bool) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(tests_dir().join("fixtures/oidc/device_user.mjs"))
        .args(["--url", url, "--login", login]);
    if deny {
        cmd.arg("--deny");
    }
    run_bounded(cmd, Duration::from_secs(30))
}

/// Seconds since the Unix epoch, the unit of JWT `exp` and `iat`.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The claims of a JWT, decoded without checking anything (tests read
/// what a token says; the broker is what verifies).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.trim().split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `hoop demo` on a free port, recording what its demo server receives in
/// `record`; returns the process, its MCP endpoint URL and the banner line
/// it printed for it.
pub fn hoop_demo(dir: &Path, record: &Path) -> (Proc, String, String) {
    let port = free_tcp_port();
    let mut cmd = Command::new(bin("hoop"));
    cmd.args(["demo", "--port", &port.to_string(), "--record"])
        .arg(record)
        // The demo's audit log and profile go to the test's own data dir.
        .env("HOOP_DATA_DIR", dir);
    let mut demo = Proc::spawn("hoop-demo", cmd, dir);
    let banner = demo.line_matching(Duration::from_secs(30), |l| l.starts_with("MCP endpoint:"));
    (demo, format!("http://127.0.0.1:{port}/mcp"), banner)
}
