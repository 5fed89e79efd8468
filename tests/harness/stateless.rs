//! Raw 2026-07-28 (stateless) requests, as a client sends them: the body
//! with the `_meta` the revision requires and the routing headers derived
//! from it; for tests that must send exactly what they mean (refusals,
//! task ids), where an SDK would correct or hide it.

use serde_json::{json, Value};

use crate::post;

pub const V2026: &str = "2026-07-28";
pub const TASKS_EXT: &str = "io.modelcontextprotocol/tasks";

/// A 2026-07-28 request: `params` plus the `_meta` the revision requires
/// (declaring the tasks extension when `tasks`), with the routing headers
/// a client derives from it (`Mcp-Name` only for plain ASCII names).
pub fn request(
    id: u64,
    method: &str,
    mut params: Value,
    tasks: bool,
) -> (String, Vec<(String, String)>) {
    let caps = if tasks {
        json!({"extensions": {TASKS_EXT: {}}, "elicitation": {}})
    } else {
        json!({"elicitation": {}})
    };
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientInfo": {"name": "bypass-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .filter(|n| n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![
        ("mcp-protocol-version".to_owned(), V2026.to_owned()),
        ("mcp-method".to_owned(), method.to_owned()),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name".to_owned(), n));
    }
    (body.to_string(), headers)
}

pub fn send(url: &str, headers: &[(String, String)], body: &str) -> (u16, Vec<Value>) {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _, msgs) = post(url, &h, body);
    (status, msgs)
}

/// Sends a 2026-07-28 request and returns the answer to it.
pub fn rpc(url: &str, id: u64, method: &str, params: Value, tasks: bool) -> Value {
    let (body, headers) = request(id, method, params, tasks);
    let (_, msgs) = send(url, &headers, &body);
    answer(&msgs, id)
}

pub fn answer(msgs: &[Value], id: u64) -> Value {
    msgs.iter()
        .find(|m| m["id"] == id && m.get("method").is_none())
        .cloned()
        .unwrap_or_else(|| panic!("no answer to request {id} in {msgs:?}"))
}
