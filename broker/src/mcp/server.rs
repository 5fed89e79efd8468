//! One message an upstream sent back, parsed once.
//!
//! Every reader on the response side (what the broker learns from
//! `tools/list` and `server/discover`, the handles it binds, masking, the
//! filtered catalogs and task lists, the audit record) borrows the one
//! [`ServerMessage`] built here, instead of each parsing the bytes again.
//! The bytes the upstream sent are delivered as they are unless a layer
//! changed the value; then the value is serialized once, at the end.

use bytes::Bytes;
use serde_json::Value;

/// A message from the upstream: its bytes and, when they are JSON, the value.
#[derive(Debug)]
pub struct ServerMessage {
    raw: Bytes,
    /// `None` when the bytes are not JSON: delivered as they are, and no
    /// layer can read anything out of them (nor can the client).
    value: Option<Value>,
    changed: bool,
}

impl ServerMessage {
    pub fn parse(raw: Bytes) -> Self {
        let value = serde_json::from_slice(&raw).ok();
        Self {
            raw,
            value,
            changed: false,
        }
    }

    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }

    /// The value to change; what is delivered becomes its serialization.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        self.changed = self.value.is_some();
        self.value.as_mut()
    }

    /// Changes the value through `f`, which says whether it changed
    /// anything: a message nothing changed keeps the upstream's bytes.
    pub fn edit<E>(&mut self, f: impl FnOnce(&mut Value) -> Result<bool, E>) -> Result<bool, E> {
        let Some(v) = self.value.as_mut() else {
            return Ok(false);
        };
        let changed = f(v)?;
        self.changed |= changed;
        Ok(changed)
    }

    /// Whether this is the response (result or error) to request `id`, not
    /// a server request or notification that happens to carry the same id.
    pub fn answers(&self, id: &Value) -> bool {
        self.value
            .as_ref()
            .is_some_and(|v| v.get("id") == Some(id) && v.get("method").is_none())
    }

    /// `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        self.value.as_ref()?.get("result")
    }

    /// Size of what will be delivered, as the upstream sent it.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// The bytes to deliver: the upstream's own, or the changed value.
    pub fn delivered(&self) -> Bytes {
        match (self.changed, &self.value) {
            (true, Some(v)) => serde_json::to_vec(v).map_or_else(|_| self.raw.clone(), Bytes::from),
            _ => self.raw.clone(),
        }
    }

    pub fn into_bytes(self) -> Bytes {
        self.delivered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytes_pass_unchanged_unless_a_layer_changes_the_value() {
        let raw = Bytes::from_static(br#"{"jsonrpc":"2.0", "id":1, "result":{}}"#);
        let m = ServerMessage::parse(raw.clone());
        assert!(m.answers(&json!(1)));
        assert!(!m.answers(&json!(2)));
        assert_eq!(m.into_bytes(), raw, "untouched: the upstream's bytes");
        let mut m = ServerMessage::parse(raw);
        if let Some(v) = m.value_mut() {
            v["result"]["x"] = json!(true);
        }
        let out: Value = serde_json::from_slice(&m.into_bytes()).unwrap();
        assert_eq!(
            out,
            json!({"jsonrpc": "2.0", "id": 1, "result": {"x": true}})
        );
        let junk = ServerMessage::parse(Bytes::from_static(b"not json"));
        assert!(junk.value().is_none());
        assert_eq!(&junk.into_bytes()[..], b"not json");
    }

    #[test]
    fn a_server_request_with_the_same_id_is_not_the_answer() {
        let m = ServerMessage::parse(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#,
        ));
        assert!(!m.answers(&json!(1)));
    }
}
