//! MCP HTTP headers: checking the client's against the body, and deriving
//! the upstream's afresh.
//!
//! In 2026-07-28 `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//! `Mcp-Param-*` mirror the body so intermediaries can route without parsing
//! it. A gateway that decides on a header while the upstream acts on the
//! body can be fooled, so any mirrored header that disagrees with the body
//! is refused (-32020), and the upstream only ever sees headers the broker
//! derived from the body it judged.

use std::collections::HashMap;

use base64::Engine;
use hoop_proto::McpHeaders;
use serde_json::Value;

use super::session::BrokerSession;
use super::target::{Target, KNOWN_VERSIONS};
use crate::audit::Audit;
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// For one tool: `Mcp-Param-<header>` ↔ argument name, from the tool's
/// input schema (`"x-mcp-header": "<header>"` on a top-level property).
pub type ParamHeaders = Vec<(String, String)>;

/// Decodes a header value that may use the `=?base64?…?=` sentinel form.
pub fn decode_value(raw: &str) -> Result<String, String> {
    match raw
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|r| r.strip_suffix(SENTINEL_SUFFIX))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("bad base64 in {raw:?}: {e}"))?;
            String::from_utf8(bytes).map_err(|_| format!("base64 in {raw:?} is not UTF-8"))
        }
        None => Ok(raw.to_owned()),
    }
}

/// Encodes a value for a header: as-is when plain visible ASCII without
/// surrounding whitespace, else the base64 sentinel form.
pub fn encode_value(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && v.trim() == v
        && !(v.starts_with(SENTINEL_PREFIX) && v.ends_with(SENTINEL_SUFFIX));
    if plain {
        v.to_owned()
    } else {
        format!(
            "{SENTINEL_PREFIX}{}{SENTINEL_SUFFIX}",
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        )
    }
}

/// How an argument value is written in a `Mcp-Param-*` header: strings as
/// they are, integers and booleans as JSON text; anything else has no
/// header form.
fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Layer 4: refuses the message when a mirrored header disagrees with the
/// body, and returns the tool's argument-header mapping for `derive`.
/// Argument headers can only be checked against the tool's schema: when no
/// client listed the target's tools yet, the broker reads them itself.
pub async fn check_on(
    audit: &Audit,
    target: &Target,
    msg: &McpMessage,
    h: &McpHeaders,
) -> Result<Option<ParamHeaders>, McpError> {
    let mut params = msg.name.as_deref().and_then(|n| target.param_headers(n));
    if params.is_none() && !h.params.is_empty() && msg.is_method("tools/call") {
        target.fetch_tools(audit).await;
        params = msg.name.as_deref().and_then(|n| target.param_headers(n));
        if params.is_none() {
            return Err(McpError::header_mismatch(format!(
                "cannot check Mcp-Param-* headers: tool {:?} is not in the upstream's tool list",
                msg.name.as_deref().unwrap_or("")
            )));
        }
    }
    check(msg, h, params.as_ref())?;
    Ok(params)
}

/// The protocol version the upstream is told: the body's (2026-07-28), the
/// session's (negotiated in initialize), or the client's header when it
/// names a revision we know.
pub fn protocol_version(
    msg: &McpMessage,
    session: Option<&BrokerSession>,
    h: &McpHeaders,
) -> Result<Option<String>, McpError> {
    let unsupported = |what: &str, v: &str| {
        McpError::new(
            codes::UNSUPPORTED_VERSION,
            format!(
                "{what} {v:?} is not supported; supported: {}",
                KNOWN_VERSIONS.join(", ")
            ),
        )
    };
    if let Some(v) = &msg.protocol_version {
        if !KNOWN_VERSIONS.contains(&v.as_str()) {
            return Err(unsupported("protocol version", v));
        }
        return Ok(Some(v.clone()));
    }
    if let Some(v) = session.and_then(BrokerSession::protocol_version) {
        return Ok(Some(v));
    }
    match &h.protocol_version {
        Some(v) if KNOWN_VERSIONS.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(unsupported("MCP-Protocol-Version", v)),
        None => Ok(None),
    }
}

/// Refuses the message when any MCP header the client sent disagrees with
/// the body. `params` is the tool's header mapping when the broker knows the
/// tool's schema.
pub fn check(
    msg: &McpMessage,
    h: &McpHeaders,
    params: Option<&ParamHeaders>,
) -> Result<(), McpError> {
    if let (Some(header), Some(body)) = (&h.protocol_version, &msg.protocol_version) {
        if header != body {
            return Err(McpError::header_mismatch(format!(
                "header MCP-Protocol-Version is {header:?} but the body's _meta says {body:?}"
            )));
        }
    }
    if let Some(header) = &h.method {
        if Some(header.as_str()) != msg.method.as_deref() {
            return Err(McpError::header_mismatch(format!(
                "header Mcp-Method is {header:?} but the body's method is {:?}",
                msg.method.as_deref().unwrap_or("(none)")
            )));
        }
    }
    if let Some(raw) = &h.name {
        let header = decode_value(raw)
            .map_err(|e| McpError::header_mismatch(format!("header Mcp-Name: {e}")))?;
        if Some(header.as_str()) != msg.name.as_deref() {
            return Err(McpError::header_mismatch(format!(
                "header Mcp-Name is {header:?} but the body names {:?}",
                msg.name.as_deref().unwrap_or("(nothing)")
            )));
        }
    }
    if h.params.is_empty() {
        return Ok(());
    }
    if !msg.is_method("tools/call") {
        return Err(McpError::header_mismatch(
            "Mcp-Param-* headers are only valid on tools/call",
        ));
    }
    let Some(mapping) = params else {
        return Err(McpError::header_mismatch(
            "Mcp-Param-* headers cannot be checked: the tool's schema is unknown",
        ));
    };
    let args = msg.arguments();
    for (hname, raw) in &h.params {
        let Some((_, arg)) = mapping.iter().find(|(m, _)| m.eq_ignore_ascii_case(hname)) else {
            return Err(McpError::header_mismatch(format!(
                "header Mcp-Param-{hname} names no argument of tool {:?}",
                msg.name.as_deref().unwrap_or("")
            )));
        };
        let header = decode_value(raw)
            .map_err(|e| McpError::header_mismatch(format!("header Mcp-Param-{hname}: {e}")))?;
        let body = args.and_then(|a| a.get(arg)).and_then(param_text);
        if body.as_deref() != Some(header.as_str()) {
            return Err(McpError::header_mismatch(format!(
                "header Mcp-Param-{hname} disagrees with argument {arg:?} of the body"
            )));
        }
    }
    Ok(())
}

/// The MCP headers the upstream receives, derived from the body alone.
pub fn derive(
    msg: &McpMessage,
    version: Option<&str>,
    params: Option<&ParamHeaders>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(4);
    if let Some(v) = msg.protocol_version.as_deref().or(version) {
        out.push(("mcp-protocol-version".to_owned(), v.to_owned()));
    }
    // Routing headers exist from 2026-07-28 on; older servers get none.
    if msg.protocol_version.is_none() {
        return out;
    }
    if let Some(m) = &msg.method {
        out.push(("mcp-method".to_owned(), m.clone()));
    }
    if let Some(n) = &msg.name {
        out.push(("mcp-name".to_owned(), encode_value(n)));
    }
    if let (Some(mapping), Some(args)) = (params, msg.arguments()) {
        for (hname, arg) in mapping {
            if let Some(text) = args.get(arg).and_then(param_text) {
                out.push((format!("mcp-param-{hname}"), encode_value(&text)));
            }
        }
    }
    out
}

/// An RFC 9110 token: what may follow `Mcp-Param-` in a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads the `x-mcp-header` mapping of every tool in a `tools/list` result.
pub fn param_headers_of(tools_list_result: &Value) -> HashMap<String, ParamHeaders> {
    let mut out = HashMap::new();
    let Some(tools) = tools_list_result.get("tools").and_then(Value::as_array) else {
        return out;
    };
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mapping: ParamHeaders = tool
            .get("inputSchema")
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .filter_map(|(arg, schema)| {
                        let h = schema.get("x-mcp-header")?.as_str()?;
                        if !is_token(h) {
                            tracing::warn!(
                                tool = name,
                                header = h,
                                "ignoring an x-mcp-header that is not a valid header name"
                            );
                            return None;
                        }
                        Some((h.to_owned(), arg.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_owned(), mapping);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> McpMessage {
        McpMessage::parse(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"region":"eu","n":3}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
            )
            .as_bytes(),
        )
        .expect("valid")
    }

    #[test]
    fn sentinel_round_trips_and_plain_stays_plain() {
        for v in ["echo", " padded", "naïve", "=?base64?x?=", "a\r\nb"] {
            assert_eq!(decode_value(&encode_value(v)).as_deref(), Ok(v));
        }
        assert_eq!(encode_value("echo"), "echo");
        assert!(encode_value("naïve").starts_with("=?base64?"));
    }

    #[test]
    fn mismatched_headers_are_refused() {
        let m = call("echo");
        let ok = McpHeaders {
            protocol_version: Some("2026-07-28".into()),
            method: Some("tools/call".into()),
            name: Some(encode_value("echo")),
            ..Default::default()
        };
        assert!(check(&m, &ok, None).is_ok());
        for bad in [
            McpHeaders {
                name: Some("delete_model".into()),
                ..ok.clone()
            },
            McpHeaders {
                method: Some("tools/list".into()),
                ..ok.clone()
            },
            McpHeaders {
                protocol_version: Some("2025-11-25".into()),
                ..ok.clone()
            },
            McpHeaders {
                name: Some("=?base64?ZGVsZXRl?=".into()),
                ..ok.clone()
            },
        ] {
            let e = check(&m, &bad, None).expect_err("mismatch");
            assert_eq!(e.code, crate::mcp::error::codes::HEADER_MISMATCH);
        }
    }

    #[test]
    fn param_headers_are_checked_against_the_schema_and_derived_again() {
        let m = call("route");
        let mapping = vec![
            ("Region".to_string(), "region".to_string()),
            ("N".into(), "n".into()),
        ];
        let good = McpHeaders {
            params: vec![("Region".into(), "eu".into())],
            ..Default::default()
        };
        assert!(check(&m, &good, Some(&mapping)).is_ok());
        let bad = McpHeaders {
            params: vec![("Region".into(), "us".into())],
            ..Default::default()
        };
        assert!(check(&m, &bad, Some(&mapping)).is_err());
        let unknown = McpHeaders {
            params: vec![("Other".into(), "x".into())],
            ..Default::default()
        };
        assert!(check(&m, &unknown, Some(&mapping)).is_err());
        let derived = derive(&m, None, Some(&mapping));
        assert!(derived.contains(&("mcp-param-Region".into(), "eu".into())));
        assert!(derived.contains(&("mcp-param-N".into(), "3".into())));
        assert!(derived.contains(&("mcp-name".into(), "route".into())));
    }

    #[test]
    fn schema_mapping_is_read_from_tools_list() {
        let list = serde_json::json!({"tools":[{"name":"route","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]});
        let map = param_headers_of(&list);
        assert_eq!(
            map["route"],
            vec![("Region".to_string(), "region".to_string())]
        );
    }
}
