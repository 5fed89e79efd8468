//! `hoop exec mcp TARGET --tool NAME --args JSON`: one tool call, no local
//! endpoint, for scripts and CI. It speaks whichever MCP revision the
//! target does (a `server/discover` probe, then the handshake era as a
//! fallback, as the official SDKs do) and turns the outcome into an exit
//! code a pipeline can branch on.

use std::io::Read as _;
use std::sync::Arc;

use bytes::Bytes;
use hoop_proto::{McpHeaders, OpenStream, StreamKind};
use serde_json::{json, Value};

use super::{exit, CommandError};
use crate::settings::ConnectionArgs;
use crate::tunnel::{TunnelClient, TunnelError};

const STATELESS: &str = "2026-07-28";
const HANDSHAKE: &str = "2025-11-25";
/// JSON-RPC codes the broker answers with (broker/src/pipeline/error.rs).
const UPSTREAM_UNAVAILABLE: i64 = -32050;
const APPROVAL_REQUIRED: i64 = -32040;
const DENIED: i64 = -32041;
const APPROVAL_DENIED: i64 = -32042;
const APPROVAL_EXPIRED: i64 = -32043;
/// The progress token exec sends: a held call then tells it how it waits,
/// and the broker holds it for its longest period.
const PROGRESS_TOKEN: &str = "hoop-exec";
/// Where the broker marks what it says of approvals.
const APPROVAL_META: &str = hoop_broker::approval::APPROVAL_META;
const UNKNOWN_TARGET: i64 = -32056;
const TOKEN_EXPIRED: i64 = -32053;
const REVOKED: i64 = -32054;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop exec mcp payments --tool get_customer --args '{\"customer_id\":\"c-1001\"}'\n  hoop exec mcp models --tool deploy_model --args @deploy.json --json\n  echo '{\"text\":\"hi\"}' | hoop exec mcp demo --tool echo --args -\n  hoop exec mcp models --tool deploy_model --args @deploy.json --reason \"release 7\" --wait 30m\n\nIn CI, the token comes from --token-file, HOOP_TOKEN, or the GitHub Actions\nOIDC variables (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, with `permissions: id-token: write`).\n\nA call a policy holds for approval waits up to --wait for an approver\n(`hoop approve grant ID`), showing progress on stderr; run the same command\nagain later to pick up the same request.\n\nExit codes (the table: hoop --help, docs/cli.md): 0 the tool succeeded, 1 other failure\n(upstream down, protocol error), 2 usage or configuration error (an unknown target),\n3 not logged in or the token was refused, 4 broker unreachable, 5 denied by policy,\n6 the tool reported an error, 7 an approver denied the call, 8 the approval expired\nor --wait ran out first, 9 the broker's certificate is not trusted.\nWith --json a failure is {\"error\": {code, exit_code, message, hint, jsonrpc_error | result}}."
)]
pub struct ExecArgs {
    /// What to call (only `mcp` for now).
    #[arg(value_parser = ["mcp"])]
    pub kind: String,
    /// The target's name on the broker.
    pub target: String,
    /// The tool to call.
    #[arg(long)]
    pub tool: String,
    /// Arguments as a JSON object, `@FILE` to read them from a file, or `-`
    /// for stdin.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Print the whole JSON-RPC result (or error) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Why you make the call, for the approvers of a call a policy holds
    /// (recorded in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
    /// How long to wait for an approval (`90s`, `30m`, `2h`).
    #[arg(long, default_value = "10m", value_parser = parse_wait)]
    pub wait: std::time::Duration,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

fn usage(e: anyhow::Error) -> CommandError {
    CommandError::new(exit::USAGE, e)
}

fn read_arguments(spec: &str) -> anyhow::Result<Value> {
    let text = if spec == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| anyhow::anyhow!("cannot read --args from stdin: {e}"))?;
        s
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --args file {path}: {e}"))?
    } else {
        spec.to_owned()
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--args is not valid JSON: {e}"))?;
    if !v.is_object() {
        anyhow::bail!("--args must be a JSON object, like '{{\"id\": \"c-1001\"}}'");
    }
    Ok(v)
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    hoop_broker::policy::parse_duration(text)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration: write `90s`, `30m` or `2h`"))
}

pub async fn run(args: ExecArgs) -> Result<(), CommandError> {
    let arguments = read_arguments(&args.args).map_err(usage)?;
    let resolved = args
        .connection
        .resolve()
        .map_err(CommandError::unresolved)?;
    let login = resolved.login.clone();
    let tunnel = TunnelClient::connect(resolved.tunnel)
        .await
        .map_err(|e| CommandError::from(e).for_login(&login))?;
    let result = call_and_wait(&tunnel, &args, arguments)
        .await
        .map_err(|e| e.for_login(&login));
    // The broker sees the job leave now, not at its idle timeout: a CI job
    // making many calls must not pile connections up there.
    tunnel.close().await;
    result
}

/// The call, asked again while its approval is pending, until `--wait`.
async fn call_and_wait(
    tunnel: &Arc<TunnelClient>,
    args: &ExecArgs,
    arguments: Value,
) -> Result<(), CommandError> {
    let call = Call {
        tunnel,
        target: &args.target,
        tool: &args.tool,
        arguments,
        reason: args.reason.as_deref(),
    };
    let deadline = tokio::time::Instant::now() + args.wait;
    let hold = HoldWatch::default();
    // Bounded by the deadline: each round ends with the call's answer, or
    // "pending" after the broker's hold; only waiting counts against
    // --wait, a call that runs is never cut short.
    let outcome = loop {
        let outcome = {
            let running = call.run(&hold);
            tokio::pin!(running);
            let out_of_time = async {
                tokio::time::sleep_until(deadline).await;
                // Until the call is known to wait for an approval; the
                // select drops this when the call ends first.
                while !hold.held.get() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                outcome = &mut running => outcome?,
                () = out_of_time => return Err(still_pending(hold.id.get(), args.wait)),
            }
        };
        match pending_approval(&outcome) {
            Some(id) if tokio::time::Instant::now() < deadline => {
                eprintln!("approval #{id} is still pending; asking again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Some(id) => return Err(still_pending(Some(id), args.wait)),
            None => break outcome,
        }
    };
    report(&outcome, args.json)
}

/// What the broker said of a held call so far: whether it waits for an
/// approval now, and which one.
#[derive(Default)]
struct HoldWatch {
    held: std::cell::Cell<bool>,
    id: std::cell::Cell<Option<u64>>,
    /// The broker said the call runs: what follows is the upstream's, and
    /// its words (even logged as `hoop`) no longer move the deadline.
    running: std::cell::Cell<bool>,
}

impl HoldWatch {
    /// Reads the broker's mark on a notification's params:
    /// `_meta["dev.hoop/approval"]` = `{"id": N, "state": "held"|"granted"}`.
    /// The broker strips that mark from anything an upstream sends, so it
    /// is the broker's word; words alone are not read.
    fn hear(&self, params: &Value) {
        if self.running.get() {
            return;
        }
        let Some(mark) = params.get("_meta").and_then(|m| m.get(APPROVAL_META)) else {
            return;
        };
        if let Some(id) = mark.get("id").and_then(Value::as_u64) {
            self.id.set(Some(id));
        }
        match mark.get("state").and_then(Value::as_str) {
            Some("granted") => {
                self.held.set(false);
                self.running.set(true);
            }
            Some("held") => self.held.set(true),
            _ => {}
        }
    }
}

/// The approval a "pending, call again" answer names.
fn pending_approval(outcome: &Outcome) -> Option<u64> {
    let Outcome::Result(r) = outcome else {
        return None;
    };
    let a = r.get("_meta")?.get(APPROVAL_META)?;
    (a.get("state")?.as_str()? == "pending").then(|| a.get("id")?.as_u64())?
}

fn still_pending(id: Option<u64>, wait: std::time::Duration) -> CommandError {
    let which = id.map_or("its approval".to_owned(), |id| format!("approval #{id}"));
    CommandError::new(exit::APPROVAL_EXPIRED, anyhow::anyhow!(
            "the call still waits for {which} after --wait {}s; run the same command again to pick it up (or wait longer with --wait)",
            wait.as_secs()
        ))
}

/// One tools/call as exec makes it.
struct Call<'a> {
    tunnel: &'a Arc<TunnelClient>,
    target: &'a str,
    tool: &'a str,
    arguments: Value,
    reason: Option<&'a str>,
}

impl Call<'_> {
    async fn run(&self, hold: &HoldWatch) -> Result<Outcome, CommandError> {
        call(
            self.tunnel,
            self.target,
            self.tool,
            self.arguments.clone(),
            self.reason,
            hold,
        )
        .await
    }
}

/// `params._meta` of the tools/call: the progress token, and the reason
/// for approvers when there is one.
fn call_meta(mut meta: Value, reason: Option<&str>) -> Value {
    if let Some(m) = meta.as_object_mut() {
        m.insert("progressToken".into(), json!(PROGRESS_TOKEN));
        if let Some(r) = reason {
            m.insert("dev.hoop/reason".into(), json!(r));
        }
    }
    meta
}

/// What came back for the tools/call: a result or an error object.
enum Outcome {
    Result(Value),
    Error(Value),
}

async fn call(
    tunnel: &Arc<TunnelClient>,
    target: &str,
    tool: &str,
    arguments: Value,
    reason: Option<&str>,
    hold: &HoldWatch,
) -> Result<Outcome, CommandError> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientInfo": {"name": "hoop-exec", "version": env!("CARGO_PKG_VERSION")},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let discover =
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}});
    let probe = post(
        tunnel,
        target,
        stateless_headers("server/discover", None),
        &discover,
        hold,
    )
    .await?;
    match probe.answer {
        Some(Outcome::Result(_)) => {
            let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": call_meta(meta, reason)}});
            let reply = post(
                tunnel,
                target,
                stateless_headers("tools/call", Some(tool)),
                &body,
                hold,
            )
            .await?;
            reply.answer.ok_or_else(|| no_answer("tools/call"))
        }
        // The broker's own refusals (identity, policy, upstream down) are
        // the answer; any other refusal of the probe means a target of the
        // handshake era (which may not even echo the probe's id).
        Some(Outcome::Error(e)) if e["code"].as_i64().is_some_and(broker_refusal) => {
            Ok(Outcome::Error(e))
        }
        Some(Outcome::Error(_)) | None => {
            handshake_call(tunnel, target, tool, arguments, reason, hold).await
        }
    }
}

fn broker_refusal(code: i64) -> bool {
    matches!(
        code,
        APPROVAL_REQUIRED
            | DENIED
            | APPROVAL_DENIED
            | APPROVAL_EXPIRED
            | TOKEN_EXPIRED
            | REVOKED
            | UPSTREAM_UNAVAILABLE
            | UNKNOWN_TARGET
    )
}

/// The handshake era: initialize, initialized, the call, then end the session.
async fn handshake_call(
    tunnel: &Arc<TunnelClient>,
    target: &str,
    tool: &str,
    arguments: Value,
    reason: Option<&str>,
    hold: &HoldWatch,
) -> Result<Outcome, CommandError> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": HANDSHAKE, "capabilities": {},
        "clientInfo": {"name": "hoop-exec", "version": env!("CARGO_PKG_VERSION")}}});
    let reply = post(tunnel, target, McpHeaders::default(), &init, hold).await?;
    let session = match reply.answer {
        Some(Outcome::Result(r)) => {
            let version = r["protocolVersion"]
                .as_str()
                .unwrap_or(HANDSHAKE)
                .to_owned();
            (reply.session_id, version)
        }
        Some(Outcome::Error(e)) => return Ok(Outcome::Error(e)),
        None => return Err(no_answer("initialize")),
    };
    let headers = McpHeaders {
        protocol_version: Some(session.1.clone()),
        session_id: session.0.clone(),
        ..Default::default()
    };
    post(
        tunnel,
        target,
        headers.clone(),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        hold,
    )
    .await?;
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": call_meta(json!({}), reason)}});
    let answer = post(tunnel, target, headers.clone(), &body, hold)
        .await?
        .answer
        .ok_or_else(|| no_answer("tools/call"));
    if headers.session_id.is_some() {
        // Best effort: the broker also ends idle sessions itself.
        let open = OpenStream {
            target: target.to_owned(),
            kind: StreamKind::EndSession,
            headers,
        };
        if let Ok(mut ex) = tunnel.exchange(open, None).await {
            while let Ok(Some(_)) = ex.next_message().await {}
        }
    }
    answer
}

fn stateless_headers(method: &str, name: Option<&str>) -> McpHeaders {
    McpHeaders {
        protocol_version: Some(STATELESS.into()),
        method: Some(method.into()),
        name: name.map(header_name),
        ..Default::default()
    }
}

/// `Mcp-Name` as the wire wants it: plain when it is visible ASCII,
/// otherwise the spec's base64 sentinel.
fn header_name(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        name.to_owned()
    } else {
        use base64::Engine as _;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

struct Reply {
    session_id: Option<String>,
    answer: Option<Outcome>,
}

/// One POST through the tunnel; the answer is the response carrying the
/// request's id (progress and other notifications on the way are shown on
/// stderr, since nobody else will see them).
async fn post(
    tunnel: &Arc<TunnelClient>,
    target: &str,
    headers: McpHeaders,
    body: &Value,
    hold: &HoldWatch,
) -> Result<Reply, CommandError> {
    let id = body.get("id").cloned();
    let open = OpenStream {
        target: target.to_owned(),
        kind: StreamKind::Post,
        headers,
    };
    let bytes = Bytes::from(serde_json::to_vec(body).map_err(anyhow::Error::from)?);
    let mut ex = tunnel
        .exchange(open, Some(bytes))
        .await
        .map_err(tunnel_error)?;
    let session_id = ex.head.session_id.clone();
    let mut answer = None;
    // Bounded by the broker: the exchange ends with a Close.
    while let Some(m) = ex.next_message().await.map_err(tunnel_error)? {
        let v: Value = match serde_json::from_slice(&m.body) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let unaddressed_error = v.get("id").is_some_and(Value::is_null) && v.get("error").is_some();
        if id.is_some() && (v.get("id") == id.as_ref() || unaddressed_error) {
            if let Some(e) = v.get("error") {
                answer = Some(Outcome::Error(e.clone()));
            } else if let Some(r) = v.get("result") {
                answer = Some(Outcome::Result(r.clone()));
            }
        } else if let Some(method) = v.get("method").and_then(Value::as_str) {
            match method {
                "notifications/progress" => {
                    let p = &v["params"];
                    hold.hear(p);
                    eprintln!(
                        "progress: {}{}{}",
                        p["progress"],
                        p.get("total").map(|t| format!("/{t}")).unwrap_or_default(),
                        p.get("message")
                            .and_then(Value::as_str)
                            .map(|m| format!(" {m}"))
                            .unwrap_or_default()
                    );
                }
                "notifications/message" => {
                    hold.hear(&v["params"]);
                    eprintln!("log: {}", v["params"]["data"]);
                }
                _ => tracing::debug!(method, "notification during exec"),
            }
        }
    }
    Ok(Reply { session_id, answer })
}

fn tunnel_error(e: TunnelError) -> CommandError {
    CommandError::from(e)
}

fn no_answer(method: &str) -> CommandError {
    CommandError::new(
        exit::FAILURE,
        anyhow::anyhow!("the target sent no answer to {method}"),
    )
}

fn report(outcome: &Outcome, json: bool) -> Result<(), CommandError> {
    match outcome {
        Outcome::Result(r) if r["isError"] == Value::Bool(true) => {
            // With --json the result goes out once, inside the error object.
            if !json {
                print_content(r);
            }
            Err(CommandError::new(
                exit::TOOL_ERROR,
                anyhow::anyhow!("the tool reported an error"),
            )
            .with_detail("result", r.clone()))
        }
        Outcome::Result(r) => {
            if json {
                println!("{r}");
            } else {
                print_content(r);
            }
            Ok(())
        }
        Outcome::Error(e) => {
            let code = e["code"].as_i64().unwrap_or(0);
            let message = e["message"].as_str().unwrap_or("(no message)");
            let failed = |exit_code| {
                CommandError::new(
                    exit_code,
                    anyhow::anyhow!("{message} (JSON-RPC error {code})"),
                )
                .with_detail("jsonrpc_error", e.clone())
            };
            Err(match code {
                DENIED | APPROVAL_REQUIRED => failed(exit::DENIED),
                APPROVAL_DENIED => failed(exit::APPROVAL_DENIED),
                APPROVAL_EXPIRED => failed(exit::APPROVAL_EXPIRED),
                TOKEN_EXPIRED | REVOKED => failed(exit::AUTH_FAILED),
                UNKNOWN_TARGET => CommandError::usage(anyhow::anyhow!("{message}"))
                    .with_hint("`hoop targets` lists the targets you may use")
                    .with_detail("jsonrpc_error", e.clone()),
                -32099..=-32000 => failed(exit::FAILURE),
                _ => failed(exit::TOOL_ERROR),
            })
        }
    }
}

/// Text content as text; anything else as JSON, one item per line.
fn print_content(result: &Value) {
    let items = result["content"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        if let Some(s) = result.get("structuredContent") {
            println!("{s}");
        }
        return;
    }
    for item in items {
        match item["type"].as_str() {
            Some("text") => println!("{}", item["text"].as_str().unwrap_or_default()),
            _ => println!("{item}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_json_object() {
        assert_eq!(read_arguments(r#"{"a":1}"#).unwrap()["a"], 1);
        assert!(read_arguments("[1]").is_err());
        assert!(read_arguments("{").is_err());
        assert!(read_arguments("@/nonexistent/args.json").is_err());
    }

    #[test]
    fn only_the_brokers_mark_says_when_a_call_waits_and_when_it_runs() {
        let hold = HoldWatch::default();
        hold.hear(&json!({"data": "this call waits for approval #9"}));
        assert!(!hold.held.get(), "words alone are not read");
        hold.hear(&json!({"_meta": {"dev.hoop/approval": {"id": 42, "state": "held"}}}));
        assert!(hold.held.get());
        assert_eq!(hold.id.get(), Some(42));
        hold.hear(&json!({"_meta": {"dev.hoop/approval": {"id": 42, "state": "granted"}}}));
        assert!(!hold.held.get());
        // After the grant, nothing restarts the wait.
        hold.hear(&json!({"_meta": {"dev.hoop/approval": {"id": 43, "state": "held"}}}));
        assert!(!hold.held.get());
    }

    #[test]
    fn a_pending_answer_names_its_approval() {
        let pending = Outcome::Result(json!({"content": [], "isError": true,
            "_meta": {"dev.hoop/approval": {"id": 42, "state": "pending"}}}));
        assert_eq!(pending_approval(&pending), Some(42));
        let done = Outcome::Result(
            json!({"content": [], "_meta": {"dev.hoop/approval": {"id": 42, "state": "released"}}}),
        );
        assert_eq!(pending_approval(&done), None);
        assert_eq!(
            pending_approval(&Outcome::Result(json!({"content": []}))),
            None
        );
    }

    #[test]
    fn names_outside_visible_ascii_use_the_base64_sentinel() {
        assert_eq!(header_name("get_customer"), "get_customer");
        assert_eq!(header_name("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(header_name("a b"), "=?base64?YSBi?=");
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let code = |v: Value| match report(&Outcome::Error(v), false) {
            Err(e) => e.code,
            Ok(()) => 0,
        };
        assert_eq!(code(json!({"code": DENIED, "message": "no"})), exit::DENIED);
        assert_eq!(
            code(json!({"code": APPROVAL_DENIED, "message": "no"})),
            exit::APPROVAL_DENIED
        );
        assert_eq!(
            code(json!({"code": APPROVAL_EXPIRED, "message": "late"})),
            exit::APPROVAL_EXPIRED
        );
        assert_eq!(
            code(json!({"code": REVOKED, "message": "no"})),
            exit::AUTH_FAILED
        );
        assert_eq!(
            code(json!({"code": -32602, "message": "unknown tool"})),
            exit::TOOL_ERROR
        );
        assert_eq!(
            code(json!({"code": -32050, "message": "upstream down"})),
            exit::FAILURE
        );
        let tool_failed = report(
            &Outcome::Result(json!({"content": [], "isError": true})),
            false,
        );
        assert_eq!(tool_failed.err().map(|e| e.code), Some(exit::TOOL_ERROR));
        assert!(report(&Outcome::Result(json!({"content": []})), false).is_ok());
    }
}
