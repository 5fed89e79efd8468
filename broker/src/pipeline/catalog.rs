//! Filtered catalogs: the answers to `tools/list`, `resources/list`,
//! `resources/templates/list` and `prompts/list` show a caller only what
//! policy lets them use. Items that need approval stay listed and say so;
//! a filtered 2026-07-28 list is marked `cacheScope: "private"`, since it is
//! this caller's view and no shared cache may hand it to anyone else.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::mcp::server::ServerMessage;

use super::{Pipeline, Reply};
use crate::identity::Caller;
use crate::policy::{ItemKind, ListingRequest, Visibility};

/// What a list method's result holds: its array key, the field that names
/// each item, and the kind policy judges.
fn shape(method: &str) -> Option<(&'static str, &'static str, ItemKind)> {
    match method {
        "tools/list" => Some(("tools", "name", ItemKind::Tool)),
        "prompts/list" => Some(("prompts", "name", ItemKind::Prompt)),
        "resources/list" => Some(("resources", "uri", ItemKind::Resource)),
        "resources/templates/list" => Some((
            "resourceTemplates",
            "uriTemplate",
            ItemKind::ResourceTemplate,
        )),
        _ => None,
    }
}

/// Whether `method` answers with a catalog this module filters.
pub fn is_catalog(method: Option<&str>) -> bool {
    method.and_then(shape).is_some()
}

/// Filters the response `m` to a `method` list request through `visible`.
/// Anything that is not such a response passes unchanged (a notification
/// on the same stream, an error). An item without a usable name is
/// dropped: policy cannot judge what it cannot name.
pub fn filter(
    m: &mut ServerMessage,
    method: &str,
    stateless: bool,
    visible: impl Fn(ItemKind, &str) -> Visibility,
) {
    let Some((key, field, kind)) = shape(method) else {
        return;
    };
    // Look before touching: an untouched message is delivered byte for byte.
    if !m
        .result()
        .and_then(|r| r.get(key))
        .is_some_and(Value::is_array)
    {
        return;
    }
    let Some(result) = m
        .value_mut()
        .and_then(|v| v.get_mut("result"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(items) = result.get_mut(key).and_then(Value::as_array_mut) {
        items.retain_mut(|item| {
            let Some(name) = item.get(field).and_then(Value::as_str) else {
                return false;
            };
            match visible(kind, name) {
                Visibility::Hidden => false,
                Visibility::Allowed => true,
                Visibility::NeedsApproval { rule } => {
                    mark_approval(item, &rule);
                    true
                }
            }
        });
    }
    // This caller's view: never to be shared, whatever the upstream said.
    if stateless || result.contains_key("cacheScope") {
        result.insert("cacheScope".into(), json!("private"));
    }
}

/// Says in the item itself that calling it waits for an approver: in its
/// description (what a model reads) and in `_meta` (what a program reads).
fn mark_approval(item: &mut Value, rule: &str) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    let note = format!("[needs approval: rule {rule}]");
    let description = match obj.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d} {note}"),
        _ => note,
    };
    obj.insert("description".into(), Value::String(description));
    let meta = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "dev.hoop/approval".into(),
            json!({ "required": true, "rule": rule }),
        );
    }
}

impl Pipeline {
    /// `hoop targets`: every target with the tools this caller may use (or
    /// ask approval for). Tool names come from what the target has listed:
    /// the broker asks a 2026-07-28 upstream itself; a handshake-era one is
    /// known once any client has listed its tools.
    pub(super) async fn targets_view(&self, caller: &Arc<Caller>) -> Reply {
        let policy = self.policy();
        let mut targets = Vec::new();
        for target in self.targets.values() {
            target.fetch_tools(&self.audit).await;
            let names: Vec<String> = target
                .tool_names()
                .into_iter()
                .filter(|n| !target.drift_blocked(n))
                .collect();
            let tools_known = !names.is_empty();
            let tools: Vec<Value> = names
                .iter()
                .filter_map(|name| {
                    let v = policy.visibility(&ListingRequest {
                        identity: &caller.identity,
                        target: &target.name,
                        kind: ItemKind::Tool,
                        name,
                    });
                    match v {
                        Visibility::Hidden => None,
                        Visibility::Allowed => Some(json!({"name": name, "access": "allowed"})),
                        Visibility::NeedsApproval { rule } => {
                            Some(json!({"name": name, "access": "approval", "rule": rule}))
                        }
                    }
                })
                .collect();
            targets.push(json!({"name": target.name, "tools": tools, "tools_known": tools_known}));
        }
        let body = json!({
            "identity": {
                "subject": caller.identity.subject,
                "groups": caller.identity.groups,
                "issuer": caller.identity.issuer,
            },
            "targets": targets,
        });
        super::json_reply(
            200,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: Bytes, method: &str, stateless: bool) -> Bytes {
        let mut m = ServerMessage::parse(body);
        filter(&mut m, method, stateless, judge);
        m.into_bytes()
    }

    fn judge(kind: ItemKind, name: &str) -> Visibility {
        match (kind, name) {
            (ItemKind::Tool, "echo") => Visibility::Allowed,
            (ItemKind::Tool, "deploy_model") => Visibility::NeedsApproval {
                rule: "deploy-needs-approval".into(),
            },
            (ItemKind::Resource, "bank://ok") => Visibility::Allowed,
            _ => Visibility::Hidden,
        }
    }

    #[test]
    fn lists_keep_what_policy_allows_and_mark_approvals() {
        let body = Bytes::from(
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
                {"name": "echo", "description": "Echo"},
                {"name": "deploy_model", "description": "Deploy"},
                {"name": "delete_model"},
                {"description": "no name"}
            ]}})
            .to_string(),
        );
        let out: Value = serde_json::from_slice(&run(body, "tools/list", true)).unwrap();
        let tools = out["result"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["echo", "deploy_model"]);
        assert!(tools[1]["description"]
            .as_str()
            .unwrap()
            .contains("needs approval: rule deploy-needs-approval"));
        assert_eq!(tools[1]["_meta"]["dev.hoop/approval"]["required"], true);
        assert_eq!(out["result"]["cacheScope"], "private");
    }

    #[test]
    fn other_messages_and_errors_pass_unchanged() {
        let note = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
        );
        assert_eq!(run(note.clone(), "tools/list", false), note);
        let err =
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#);
        assert_eq!(run(err.clone(), "tools/list", false), err);
        let call = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        assert_eq!(run(call.clone(), "tools/call", false), call);
        let res = Bytes::from(
            json!({"jsonrpc": "2.0", "id": 2, "result": {"resources": [{"uri": "bank://ok"}, {"uri": "bank://secret"}]}})
                .to_string(),
        );
        let out: Value = serde_json::from_slice(&run(res, "resources/list", false)).unwrap();
        assert_eq!(out["result"]["resources"].as_array().unwrap().len(), 1);
        assert!(
            out["result"].get("cacheScope").is_none(),
            "handshake era has no cacheScope"
        );
    }
}
