//! What the broker knows about each upstream target beyond its config: the
//! MCP revision it speaks (learned once, not probed per request) and the
//! `x-mcp-header` mapping of its tools (read from `tools/list` results).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use serde_json::Value;

use super::headers::{self, ParamHeaders};
use crate::upstream::Upstream;

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
}

impl Target {
    pub fn new(name: String, upstream: Upstream) -> Self {
        Self {
            name,
            upstream,
            revision: Mutex::new(Revision::Unknown),
            param_headers: RwLock::new(HashMap::new()),
        }
    }

    pub fn revision(&self) -> Revision {
        self.revision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the answer to a `server/discover` that went upstream.
    pub fn learn_revision(&self, status: u16, response: &Value) {
        let learned = if response.get("result").is_some() {
            Revision::Stateless
        } else if let Some(error) = response.get("error") {
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

    /// Remembers the `x-mcp-header` mapping from a `tools/list` result.
    pub fn learn_tools(&self, result: &Value) {
        let learned = headers::param_headers_of(result);
        self.param_headers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(learned);
    }
}
