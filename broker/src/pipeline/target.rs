//! What the broker knows about each upstream target beyond its config: the
//! MCP revision it speaks (learned once, not probed per request) and the
//! `x-mcp-header` mapping of its tools (read from `tools/list` results).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use super::drift::ToolDrift;
use super::headers::{self, ParamHeaders};
use crate::audit::Audit;
use crate::config::DriftMode;
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::mcp::server::ServerMessage;
use crate::upstream::{Outbound, Upstream};

/// The broker asks an upstream for its tools at most this often, however
/// many unknown `Mcp-Param-*` headers clients send.
const TOOLS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How long reading the upstream's tool list may take in all.
const TOOLS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Tool names remembered per target.
const MAX_KNOWN_TOOLS: usize = 10_000;

/// The tool names a target listed: each name, and each lowercase form with
/// the name it stands for.
#[derive(Default)]
struct ToolNames {
    names: std::collections::BTreeSet<String>,
    lowercase: HashMap<String, String>,
}

/// Pages of `tools/list` read per refresh.
const MAX_TOOL_PAGES: usize = 20;

/// The stateless MCP revision, whose list results carry `cacheScope`.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// MCP protocol revisions the broker carries.
pub const KNOWN_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// What a target answered to `server/discover`, learned from the first one.
#[derive(Debug, Clone)]
pub enum Revision {
    Unknown,
    /// It answered `server/discover`: it speaks 2026-07-28 (and maybe older).
    Stateless,
    /// It refused `server/discover` this way (HTTP status, JSON-RPC error):
    /// a handshake-era server. Later probes are answered from here.
    HandshakeOnly {
        status: u16,
        error: Value,
    },
}

pub struct Target {
    pub name: String,
    pub upstream: Upstream,
    revision: Mutex<Revision>,
    param_headers: RwLock<HashMap<String, ParamHeaders>>,
    tools_fetched: tokio::sync::Mutex<Option<Instant>>,
    /// Tool names seen in any `tools/list` answer (for `hoop targets`), by
    /// their lowercase form, so a case variant is found in one lookup.
    tool_names: RwLock<ToolNames>,
    /// Tool-definition baselines (shared by all targets) and this target's
    /// reaction to a change.
    drift: Arc<ToolDrift>,
    drift_mode: DriftMode,
}

impl Target {
    pub fn new(name: String, upstream: Upstream) -> Self {
        Self {
            name,
            upstream,
            revision: Mutex::new(Revision::Unknown),
            param_headers: RwLock::new(HashMap::new()),
            tools_fetched: tokio::sync::Mutex::new(None),
            tool_names: RwLock::new(Default::default()),
            drift: Arc::new(ToolDrift::disabled()),
            drift_mode: DriftMode::Warn,
        }
    }

    /// Compares this target's tool lists with `drift`'s baselines.
    pub fn with_drift(mut self, drift: Arc<ToolDrift>, mode: DriftMode) -> Self {
        self.drift = drift;
        self.drift_mode = mode;
        self
    }

    /// Whether `tool` changed since it was accepted and this target blocks
    /// such tools.
    pub fn drift_blocked(&self, tool: &str) -> bool {
        self.drift.blocked(&self.name, self.drift_mode, tool)
    }

    /// The hash of the definition of `tool` that calls reach now
    /// (`ToolDrift::fingerprint`).
    pub fn tool_fingerprint(&self, tool: &str) -> Option<String> {
        self.drift.fingerprint(&self.name, tool)
    }

    /// How `tool` stands against its accepted definition (`ToolDrift::state`).
    pub fn tool_state(&self, tool: &str) -> &'static str {
        self.drift.state(&self.name, tool)
    }

    pub fn revision(&self) -> Revision {
        self.revision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the answer to a `server/discover` that went upstream.
    pub fn learn_revision(&self, status: u16, response: &Value) {
        // Only "no such method" says the server predates server/discover;
        // any other error (bad params, a passing failure) says nothing
        // about its revision and is not remembered.
        let learned = if response.get("result").is_some() {
            Revision::Stateless
        } else if let Some(error) = response.get("error") {
            let unknown_method = error.get("code").and_then(Value::as_i64) == Some(-32601)
                || matches!(status, 404 | 405);
            if !unknown_method {
                return;
            }
            Revision::HandshakeOnly {
                status,
                error: error.clone(),
            }
        } else {
            return;
        };
        tracing::info!(target = %self.name, revision = ?learned, "learned the upstream's MCP revision");
        *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = learned;
    }

    pub fn param_headers(&self, tool: &str) -> Option<ParamHeaders> {
        self.param_headers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tool)
            .cloned()
    }

    /// Remembers the `x-mcp-header` mapping from a `tools/list` result;
    /// `first_page`: the request carried no cursor.
    pub fn learn_tools(&self, result: &Value, first_page: bool) {
        self.drift
            .observe(&self.name, self.drift_mode, result, first_page);
        let learned = headers::param_headers_of(result);
        self.param_headers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(learned);
        let names = result
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str));
        let mut known = self.tool_names.write().unwrap_or_else(|p| p.into_inner());
        // Bounded: a hostile upstream cannot grow this without limit.
        for n in names {
            if known.names.len() >= MAX_KNOWN_TOOLS {
                break;
            }
            if known.names.insert(n.to_owned()) {
                known.lowercase.insert(n.to_lowercase(), n.to_owned());
            }
        }
    }

    /// The listed tool `tool` differs from only in case, if any (`None`
    /// when `tool` itself is listed).
    pub fn case_variant_of(&self, tool: &str) -> Option<String> {
        let known = self.tool_names.read().unwrap_or_else(|p| p.into_inner());
        if known.names.contains(tool) {
            return None;
        }
        known.lowercase.get(&tool.to_lowercase()).cloned()
    }

    /// Refuses a `tools/call` of a tool this target must not run under
    /// that name: a case variant of a listed tool (`builtin:case-variant`:
    /// an upstream that matches names loosely would run the listed tool
    /// under a name no rule judged), or, on a target that blocks drift, a
    /// tool that changed since it was accepted (its policy was written for
    /// what it was).
    pub fn refuse_tool(&self, msg: &McpMessage) -> Result<(), McpError> {
        let (true, Some(tool)) = (msg.is_method("tools/call"), msg.name.as_deref()) else {
            return Ok(());
        };
        if let Some(real) = self.case_variant_of(tool) {
            return Err(McpError::new(
                codes::DENIED,
                format!(
                    "denied by rule builtin:case-variant: {tool:?} is not a tool of {}; did you mean {real:?}?",
                    self.name
                ),
            ));
        }
        if self.drift_blocked(tool) {
            return Err(McpError::new(
                codes::DENIED,
                format!(
                    "denied by rule {}: tool {tool:?} changed since it was accepted; an administrator must accept it (hoop-broker tools accept --target {} --tool {tool})",
                    super::drift::DRIFT_RULE,
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// The tool names this target has listed so far.
    pub fn tool_names(&self) -> Vec<String> {
        self.tool_names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .names
            .iter()
            .cloned()
            .collect()
    }

    /// Reads the upstream's tool list itself (a stateless 2026-07-28
    /// `tools/list`, with the broker's own credential), so that `Mcp-Param-*`
    /// headers can be checked even when no client listed tools through this
    /// broker yet. Rate-limited per target; failures are logged and leave
    /// the mapping unknown, which refuses the headers. Each request and
    /// answer is recorded (actor `hoop-broker`) before it is sent or used:
    /// one that cannot be recorded is not.
    pub async fn fetch_tools(&self, audit: &Audit) {
        if tokio::time::timeout(TOOLS_FETCH_TIMEOUT, self.fetch_tools_now(audit))
            .await
            .is_err()
        {
            tracing::warn!(target = %self.name, "the upstream did not list its tools within {TOOLS_FETCH_TIMEOUT:?}");
        }
    }

    async fn fetch_tools_now(&self, audit: &Audit) {
        let mut last = self.tools_fetched.lock().await;
        if last.is_some_and(|t| t.elapsed() < TOOLS_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let mut cursor: Option<String> = None;
        for page in 0..MAX_TOOL_PAGES {
            let mut params = json!({"_meta": {
                crate::mcp::message::META_PROTOCOL_VERSION: "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "hoop-broker", "version": env!("CARGO_PKG_VERSION")},
                "io.modelcontextprotocol/clientCapabilities": {},
            }});
            if let Some(c) = &cursor {
                params["cursor"] = Value::from(c.clone());
            }
            let id = format!("hoop-tools-{page}");
            let body =
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let Ok(msg) = McpMessage::parse(&serde_json::to_vec(&body).unwrap_or_default()) else {
                return;
            };
            let exchange = audit.exchange();
            let bytes = msg.to_bytes();
            if let Err(e) = audit
                .broker_request(&self.name, &exchange, &msg, &bytes)
                .await
            {
                tracing::warn!(target = %self.name, "not reading the upstream's tools: {}", e.message);
                return;
            }
            let reply = self
                .upstream
                .post(Outbound {
                    message: &msg,
                    body: bytes,
                    headers: headers::derive(&msg, None, None),
                    session: None,
                })
                .await;
            let mut messages = match reply {
                Ok(r) => r.messages,
                Err(e) => {
                    tracing::warn!(target = %self.name, "could not read the upstream's tools: {e}");
                    return;
                }
            };
            let mut result = None;
            let id = Value::from(id);
            // Bounded by the upstream's answer: it ends after the response.
            while let Some(Ok(m)) = messages.next().await {
                let raw = m.body.clone();
                let m = ServerMessage::parse(m.body);
                if let Err(e) = audit
                    .broker_response(&self.name, &exchange, &msg, &m, &raw)
                    .await
                {
                    tracing::warn!(target = %self.name, "not using the upstream's tools: {}", e.message);
                    return;
                }
                if m.answers(&id) {
                    result = m.result().cloned();
                    break;
                }
            }
            let Some(result) = result else {
                tracing::warn!(target = %self.name, "the upstream answered tools/list without a result");
                return;
            };
            self.learn_tools(&result, page == 0);
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                return;
            }
        }
    }
}

/// Looks inside the answers the broker learns from: `tools/list` (argument
/// headers, tool names, drift) and `server/discover` (the upstream's
/// revision). Other answers are only borrowed, never parsed again.
pub struct TargetLearner {
    id: Value,
    discover: bool,
    status: u16,
    target: Arc<Target>,
    /// The request carried no cursor: its answer starts the list.
    first_page: bool,
}

impl TargetLearner {
    pub fn for_request(msg: &McpMessage, status: u16, target: &Arc<Target>) -> Option<Self> {
        let discover = match msg.method.as_deref()? {
            "tools/list" => false,
            "server/discover" => true,
            _ => return None,
        };
        let first_page = msg.params().is_none_or(|p| p.get("cursor").is_none());
        Some(Self {
            id: msg.id.clone()?,
            discover,
            status,
            target: target.clone(),
            first_page,
        })
    }

    pub fn observe(&self, m: &ServerMessage) {
        if !m.answers(&self.id) {
            return;
        }
        match (self.discover, m.value()) {
            (true, Some(v)) => self.target.learn_revision(self.status, v),
            (false, _) => {
                if let Some(r) = m.result() {
                    self.target.learn_tools(r, self.first_page);
                }
            }
            _ => {}
        }
    }
}
