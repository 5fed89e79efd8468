//! The one canonical parse of a client's JSON-RPC message.
//!
//! Every layer of the pipeline reads the [`McpMessage`] built here and
//! nothing else: method, name, protocol version and arguments come from the
//! body alone, so the broker and the upstream can never read different
//! things. The parse is strict where lenient parsers disagree: duplicate
//! object keys are refused (one parser keeps the first, another the last),
//! batches are refused, and `jsonrpc` must be `"2.0"`.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{codes, McpError};

/// `_meta` key carrying the protocol version of a 2026-07-28 request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What kind of JSON-RPC message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Notification,
    /// A response (result or error) to a server-initiated request.
    Response,
}

/// A parsed, validated client message.
#[derive(Debug, Clone)]
pub struct McpMessage {
    /// The whole message; the object every layer reads and the upstream gets.
    pub value: Value,
    pub kind: MessageKind,
    /// `id` for requests and responses.
    pub id: Option<Value>,
    /// `method` for requests and notifications.
    pub method: Option<String>,
    /// What the call is about: `params.name` for tools and prompts,
    /// `params.uri` for resources, `params.taskId` for tasks; the value
    /// `Mcp-Name` mirrors.
    pub name: Option<String>,
    /// What policy judges the message by, besides its method: `name`,
    /// except for `completion/complete`, where it is the prompt or resource
    /// its `ref` names (so completion cannot probe a blocked prompt).
    /// Computed once here; every layer borrows it.
    pub item: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub protocol_version: Option<String>,
}

impl McpMessage {
    /// Parses one JSON-RPC message from the bytes the client sent.
    pub fn parse(body: &[u8]) -> Result<Self, McpError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = StrictValue
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| McpError::new(codes::PARSE_ERROR, format!("invalid JSON: {e}")))?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, McpError> {
        let obj = match &value {
            Value::Object(o) => o,
            Value::Array(_) => {
                return Err(McpError::invalid_request(
                    "JSON-RPC batches are not supported by MCP; send one message per request",
                ))
            }
            _ => {
                return Err(McpError::invalid_request(
                    "a JSON-RPC message must be an object",
                ))
            }
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(McpError::invalid_request("\"jsonrpc\" must be \"2.0\""));
        }
        let id = match obj.get("id") {
            None => None,
            Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
            Some(_) => {
                return Err(McpError::invalid_request(
                    "\"id\" must be a string or a number",
                ))
            }
        };
        let method = match obj.get("method") {
            None => None,
            Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
            Some(_) => {
                return Err(McpError::invalid_request(
                    "\"method\" must be a non-empty string",
                ))
            }
        };
        let is_response = obj.contains_key("result") || obj.contains_key("error");
        let kind = match (&method, &id, is_response) {
            (Some(_), Some(_), false) => MessageKind::Request,
            (Some(_), None, false) => MessageKind::Notification,
            (None, Some(_), true) => MessageKind::Response,
            _ => {
                return Err(McpError::invalid_request(
                    "not a JSON-RPC request, notification or response",
                ))
            }
        };
        // A request named like a notification is not one: it would pass as
        // plumbing while the upstream treats it as a call.
        if kind == MessageKind::Request
            && method
                .as_deref()
                .is_some_and(|m| m.starts_with("notifications/"))
        {
            return Err(McpError::invalid_request(
                "a notifications/* method cannot carry an id",
            ));
        }
        let params = match obj.get("params") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) if kind == MessageKind::Response => None,
            Some(_) => return Err(McpError::invalid_params("\"params\" must be an object")),
        };
        let name = params.and_then(|p| name_of(method.as_deref(), p));
        let item = match method.as_deref() {
            Some("completion/complete") => params.and_then(completion_ref),
            _ => name.clone(),
        };
        let protocol_version = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            id,
            method,
            name,
            item,
            protocol_version,
            kind,
            value,
        })
    }

    /// The `id` of a message that failed validation but is valid JSON, so
    /// the refusal can still be matched to its request.
    pub fn salvage_id(body: &[u8]) -> Option<Value> {
        let v: Value = serde_json::from_slice(body).ok()?;
        match v.get("id")? {
            id @ (Value::String(_) | Value::Number(_)) => Some(id.clone()),
            _ => None,
        }
    }

    pub fn params(&self) -> Option<&Map<String, Value>> {
        self.value.get("params").and_then(Value::as_object)
    }

    /// `params.arguments` of a `tools/call` or `prompts/get`.
    pub fn arguments(&self) -> Option<&Map<String, Value>> {
        self.params()?.get("arguments")?.as_object()
    }

    /// The arguments a policy condition sees: only where the upstream reads
    /// them (`tools/call`, `prompts/get`). Anywhere else a client could add
    /// an `arguments` object the upstream ignores, to steer a condition.
    pub fn policy_arguments(&self) -> Option<&Value> {
        if has_arguments(self.method.as_deref().unwrap_or("")) {
            self.params().and_then(|p| p.get("arguments"))
        } else {
            None
        }
    }

    /// Whether [`Self::item`] is a resource URI (and so must be in plain
    /// form before a glob judges it).
    pub fn item_is_uri(&self) -> bool {
        match self.method.as_deref() {
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => true,
            Some("completion/complete") => {
                self.params()
                    .and_then(|p| p.get("ref"))
                    .and_then(|r| r.get("type"))
                    .and_then(Value::as_str)
                    == Some("ref/resource")
            }
            _ => false,
        }
    }

    /// The resource URIs a `subscriptions/listen` asks updates for
    /// (`params.notifications.resourceSubscriptions`); an entry that is not
    /// a string is refused rather than passed on unjudged.
    pub fn listened_resources(&self) -> Result<Vec<&str>, McpError> {
        if !self.is_method("subscriptions/listen") {
            return Ok(Vec::new());
        }
        let Some(list) = self
            .params()
            .and_then(|p| p.get("notifications"))
            .and_then(|n| n.get("resourceSubscriptions"))
        else {
            return Ok(Vec::new());
        };
        let not_uris = || {
            McpError::invalid_params(
                "notifications.resourceSubscriptions must be a list of resource URIs",
            )
        };
        list.as_array()
            .ok_or_else(not_uris)?
            .iter()
            .map(|u| u.as_str().ok_or_else(not_uris))
            .collect()
    }

    /// `params._meta.progressToken`, if the client asked for progress.
    pub fn progress_token(&self) -> Option<&Value> {
        self.params()?.get("_meta")?.get("progressToken")
    }

    pub fn is_method(&self, m: &str) -> bool {
        self.method.as_deref() == Some(m)
    }

    /// The canonical bytes the upstream receives: a re-serialization of
    /// exactly the value the layers judged.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing a Value into a Vec cannot fail (no I/O, string keys).
        Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default())
    }
}

/// Whether the method carries an `arguments` object the upstream reads
/// (and so a policy condition may read).
pub fn has_arguments(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get")
}

/// The method-specific subject of a message: what `Mcp-Name` mirrors.
fn name_of(method: Option<&str>, params: &Map<String, Value>) -> Option<String> {
    let key = match method? {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        // Tasks extension: the task a call is about.
        "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" => "taskId",
        _ => return None,
    };
    params.get(key)?.as_str().map(str::to_owned)
}

/// The prompt or resource a `completion/complete` completes: its ref's type
/// says which field the upstream reads; judging any other field would judge
/// something else than what is completed.
fn completion_ref(params: &Map<String, Value>) -> Option<String> {
    let r = params.get("ref")?;
    let field = match r.get("type").and_then(Value::as_str)? {
        "ref/prompt" => "name",
        "ref/resource" => "uri",
        _ => return None,
    };
    r.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Builds a `serde_json::Value` while refusing duplicate object keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // Integers past 2^53 arrive here as floats and would reach the
        // upstream rounded: an account number or amount silently changed.
        // Refuse them instead; other floats round-trip exactly
        // (serde_json's float_roundtrip).
        if v.fract() == 0.0 && v.abs() >= 9_007_199_254_740_992.0 {
            return Err(E::custom(format_args!(
                "number {v:e} is too large to carry exactly; send it as a string"
            )));
        }
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?}: refused because parsers disagree on which copy wins"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_method_name_and_version_from_the_body() {
        let m = McpMessage::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .expect("valid");
        assert_eq!(m.kind, MessageKind::Request);
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(m.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(
            m.arguments().and_then(|a| a.get("text")),
            Some(&Value::from("hi"))
        );
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"x"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[{"k":1,"k":2}]}}}"#,
        ] {
            let e = McpMessage::parse(body).expect_err("duplicate must fail");
            assert_eq!(e.code, codes::PARSE_ERROR);
            assert!(e.message.contains("duplicate key"), "{}", e.message);
        }
    }

    #[test]
    fn refuses_batches_garbage_and_wrong_shapes() {
        let cases: [(&[u8], i64); 7] = [
            (
                b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
                codes::INVALID_REQUEST,
            ),
            (b"{not json", codes::PARSE_ERROR),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing",
                codes::PARSE_ERROR,
            ),
            (
                b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
                codes::INVALID_REQUEST,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
                codes::INVALID_REQUEST,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[1]}",
                codes::INVALID_PARAMS,
            ),
            (b"\"just a string\"", codes::INVALID_REQUEST),
        ];
        for (body, code) in cases {
            let e = McpMessage::parse(body).expect_err("must fail");
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn numbers_reach_the_upstream_unchanged_or_are_refused() {
        let m = McpMessage::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":123456789.123456789,"cents":9007199254740991,"neg":-12,"small":0.1}}}"#,
        )
        .expect("valid");
        let again: Value = serde_json::from_slice(&m.to_bytes()).expect("canonical JSON");
        let args = &again["params"]["arguments"];
        assert_eq!(
            args["amount"].as_f64(),
            "123456789.123456789".parse::<f64>().ok()
        );
        assert_eq!(args["cents"].as_u64(), Some(9007199254740991));
        assert_eq!(args["neg"].as_i64(), Some(-12));
        assert_eq!(args["small"].as_f64(), Some(0.1));
        for big in ["12345678901234567890123", "1e300", "-9.007199254740993e15"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"n":{big}}}}}"#);
            let e = McpMessage::parse(body.as_bytes()).expect_err(big);
            assert!(e.message.contains("too large"), "{}", e.message);
        }
    }

    #[test]
    fn canonical_bytes_reparse_to_the_same_value() {
        let m = McpMessage::parse(br#"{ "params": {"uri":"file:///x"}, "method":"resources/read", "id":"a", "jsonrpc":"2.0" }"#)
            .expect("valid");
        assert_eq!(m.name.as_deref(), Some("file:///x"));
        let again = McpMessage::parse(&m.to_bytes()).expect("canonical form parses");
        assert_eq!(again.value, m.value);
    }
}
