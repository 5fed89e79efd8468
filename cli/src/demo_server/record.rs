//! The demo server's record of what it received.
//!
//! When a record file is configured, every message that reaches the server is
//! appended to it as one JSON object per line, written in one `write` call and
//! flushed before the message is handed on. Recording happens at the wire:
//! over HTTP in a middleware in front of rmcp (so requests rmcp later rejects
//! are recorded too), over stdio in a wrapper around the transport. A test can
//! therefore read the file to prove that a call a broker blocked never arrived.
//!
//! A line looks like
//! `{"seq":3,"unix_ms":1700000000000,"transport":"http","http_method":"POST",
//! "session_id":"…","kind":"request","id":2,"method":"tools/call",
//! "name":"echo","arguments":{"text":"hi"},"protocol_version":"2026-07-28"}`;
//! fields that do not apply are left out.

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use axum::{
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    service::RoleServer,
    transport::Transport,
};
use serde_json::{Map, Value};

/// `_meta` key naming the protocol revision of a 2026-07-28 request.
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key naming the client of a 2026-07-28 request.
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// Appends received messages to the record file, one JSON line each.
#[derive(Debug)]
pub(crate) struct Recorder {
    file: Mutex<File>,
    seq: AtomicU64,
}

impl Recorder {
    /// Opens (creating if needed) `path` for appending.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening demo server record file {}", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
            seq: AtomicU64::new(0),
        })
    }

    /// Writes one entry; `fields` come first after `seq` and `unix_ms`.
    ///
    /// A failed write is logged, never returned: recording must not change
    /// what the server answers.
    pub(crate) fn write(&self, fields: Map<String, Value>) {
        let mut entry = Map::new();
        entry.insert(
            "seq".into(),
            (self.seq.fetch_add(1, Ordering::SeqCst) + 1).into(),
        );
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        entry.insert("unix_ms".into(), unix_ms.into());
        entry.extend(fields);
        let mut line = Value::Object(entry).to_string();
        line.push('\n');
        // A poisoned lock only means another writer panicked mid-call; the file
        // handle itself is still usable.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(%error, "demo server: failed to append to the record file");
        }
    }

    /// Records one JSON-RPC message (already parsed as JSON), adding `context`.
    pub(crate) fn write_message(&self, context: &Map<String, Value>, message: &Value) {
        let mut fields = context.clone();
        fields.extend(describe_message(message));
        self.write(fields);
    }
}

/// Picks out of a JSON-RPC message what the record keeps: its kind, id,
/// method, the tool or prompt name, the resource uri, the arguments, the
/// protocol version and the client's name.
pub(crate) fn describe_message(message: &Value) -> Map<String, Value> {
    let mut fields = Map::new();
    let Some(object) = message.as_object() else {
        fields.insert("kind".into(), "invalid".into());
        fields.insert("error".into(), "JSON-RPC message is not an object".into());
        return fields;
    };
    let method = object.get("method").and_then(Value::as_str);
    let id = object.get("id").filter(|id| !id.is_null());
    let kind = match (method, id) {
        (Some(_), Some(_)) => "request",
        (Some(_), None) => "notification",
        (None, _) if object.contains_key("result") => "response",
        (None, _) if object.contains_key("error") => "error",
        (None, _) => "invalid",
    };
    fields.insert("kind".into(), kind.into());
    if let Some(id) = id {
        fields.insert("id".into(), id.clone());
    }
    let Some(method) = method else {
        return fields;
    };
    fields.insert("method".into(), method.into());
    let params = object.get("params").and_then(Value::as_object);
    let param = |key: &str| params.and_then(|params| params.get(key));
    match method {
        "tools/call" | "prompts/get" => {
            if let Some(name) = param("name") {
                fields.insert("name".into(), name.clone());
            }
            if let Some(arguments) = param("arguments") {
                fields.insert("arguments".into(), arguments.clone());
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            if let Some(uri) = param("uri") {
                fields.insert("uri".into(), uri.clone());
            }
        }
        "notifications/cancelled" => {
            if let Some(request_id) = param("requestId") {
                fields.insert("request_id".into(), request_id.clone());
            }
        }
        "initialize" => {
            if let Some(version) = param("protocolVersion") {
                fields.insert("protocol_version".into(), version.clone());
            }
            if let Some(client) = param("clientInfo").and_then(|info| info.get("name")) {
                fields.insert("client".into(), client.clone());
            }
        }
        _ => {}
    }
    if let Some(meta) = param("_meta").and_then(Value::as_object) {
        if let Some(version) = meta.get(META_PROTOCOL_VERSION) {
            fields.insert("protocol_version".into(), version.clone());
        }
        if let Some(client) = meta.get(META_CLIENT_INFO).and_then(|info| info.get("name")) {
            fields.insert("client".into(), client.clone());
        }
    }
    fields
}

/// State of the HTTP recording middleware.
#[derive(Clone)]
pub(crate) struct HttpRecording {
    pub(crate) recorder: Arc<Recorder>,
    /// Bodies larger than this are refused with 413, as rmcp would.
    pub(crate) max_body_bytes: usize,
}

/// Axum middleware: records every request to the MCP endpoint, then passes
/// it on unchanged. POST bodies are buffered (up to the same limit rmcp
/// enforces) and each JSON-RPC message in them is recorded.
pub(crate) async fn record_http(
    State(recording): State<HttpRecording>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(|value| Value::from(value.to_owned()))
    };
    let mut context = Map::new();
    context.insert("transport".into(), "http".into());
    context.insert("http_method".into(), parts.method.as_str().into());
    if let Some(session) = header("mcp-session-id") {
        context.insert("session_id".into(), session);
    }
    if let Some(version) = header("mcp-protocol-version") {
        context.insert("header_protocol_version".into(), version);
    }

    if parts.method != axum::http::Method::POST {
        context.insert("kind".into(), "http".into());
        recording.recorder.write(context);
        return next.run(Request::from_parts(parts, body)).await;
    }

    let bytes = match axum::body::to_bytes(body, recording.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => {
            context.insert("kind".into(), "invalid".into());
            context.insert("error".into(), format!("unreadable body: {error}").into());
            recording.recorder.write(context);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large or unreadable request body",
            )
                .into_response();
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(batch)) => {
            for message in &batch {
                recording.recorder.write_message(&context, message);
            }
        }
        Ok(message) => recording.recorder.write_message(&context, &message),
        Err(error) => {
            context.insert("kind".into(), "invalid".into());
            context.insert("error".into(), format!("body is not JSON: {error}").into());
            context.insert("body_bytes".into(), bytes.len().into());
            recording.recorder.write(context);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A server transport that records every message it receives.
pub(crate) struct RecordingTransport<T> {
    pub(crate) inner: T,
    pub(crate) recorder: Option<Arc<Recorder>>,
    pub(crate) context: Map<String, Value>,
}

impl<T> RecordingTransport<T> {
    /// Wraps `inner`; `transport` names it in the record (`"stdio"`).
    pub(crate) fn new(inner: T, recorder: Option<Arc<Recorder>>, transport: &str) -> Self {
        let mut context = Map::new();
        context.insert("transport".into(), transport.into());
        Self {
            inner,
            recorder,
            context,
        }
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for RecordingTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        let message = self.inner.receive().await?;
        if let Some(recorder) = &self.recorder {
            match serde_json::to_value(&message) {
                Ok(value) => recorder.write_message(&self.context, &value),
                Err(error) => {
                    let mut fields = self.context.clone();
                    fields.insert("kind".into(), "invalid".into());
                    fields.insert("error".into(), format!("unserializable: {error}").into());
                    recorder.write(fields);
                }
            }
        }
        Some(message)
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_a_2026_tool_call() {
        let fields = describe_message(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {
                "name": "echo", "arguments": {"text": "hi"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}
                }
            }
        }));
        assert_eq!(
            Value::Object(fields),
            json!({
                "kind": "request", "id": 7, "method": "tools/call", "name": "echo",
                "arguments": {"text": "hi"}, "protocol_version": "2026-07-28", "client": "t"
            })
        );
    }

    #[test]
    fn describes_notifications_and_junk() {
        let fields = describe_message(&json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3}
        }));
        assert_eq!(fields.get("kind"), Some(&json!("notification")));
        assert_eq!(fields.get("request_id"), Some(&json!(3)));
        let junk = describe_message(&json!(42));
        assert_eq!(junk.get("kind"), Some(&json!("invalid")));
    }
}
