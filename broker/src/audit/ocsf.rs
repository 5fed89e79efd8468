//! The export as OCSF: each event becomes an OCSF 1.3 API Activity record
//! (class 6003, category 6, Application Activity) that a SIEM ingests as
//! is. Each record keeps its hoop entry (`unmapped.hoop.entry`, the exact
//! bytes the tree committed to) and its `seq` (`metadata.sequence`), so an
//! examiner can tie any record back to the JSON-lines export that proves
//! it; the OCSF file itself carries no proofs.

use std::io::Write;

use serde_json::{json, Map, Value};

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";
const CLASS_API_ACTIVITY: u64 = 6003;
const CATEGORY_APPLICATION: u64 = 6;

/// A JSON-lines export written into this comes out as OCSF, one record per
/// event line as each line completes: an export of a year of events goes
/// through one line's worth of memory. Checkpoint and proof lines (no
/// `seq`) are left out; the OCSF file carries no proofs.
pub struct OcsfLines<'a> {
    out: &'a mut dyn Write,
    line: Vec<u8>,
}

impl<'a> OcsfLines<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            line: Vec::new(),
        }
    }

    /// Converts a last line without its line break, and flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.convert_line()?;
        self.out.flush()
    }

    fn convert_line(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&self.line) {
            if v.get("seq").is_some() {
                let mut record = to_ocsf(&v, &self.line);
                // OCSF types its attributes: an absent value is left out,
                // not null.
                drop_nulls(&mut record);
                serde_json::to_writer(&mut *self.out, &record)?;
                self.out.write_all(b"\n")?;
            }
        }
        self.line.clear();
        Ok(())
    }
}

impl Write for OcsfLines<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        // Bounded by the line breaks in `buf`.
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            self.convert_line()?;
            rest = &rest[end + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// One event as an API Activity record.
pub fn to_ocsf(event: &Value, entry: &[u8]) -> Value {
    let s = |k: &str| event.get(k).and_then(Value::as_str);
    let method = s("method").unwrap_or("");
    let activity_id = activity(method);
    let outcome = s("outcome");
    let failed = matches!(
        outcome,
        Some("refused" | "error" | "upstream_failed" | "tool_error")
    ) || s("type") == Some("auth.failure");
    let time_ms = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .unwrap_or(0);
    let actor = event.get("actor");
    let a = |k: &str| actor.and_then(|x| x.get(k)).cloned();
    let mut user = Map::new();
    if let Some(sub) = a("sub") {
        user.insert("uid".into(), sub.clone());
        user.insert("name".into(), sub);
    }
    if let Some(e) = a("email") {
        user.insert("email_addr".into(), e);
    }
    if let Some(Value::Array(groups)) = a("groups") {
        let groups: Vec<Value> = groups.iter().map(|g| json!({"name": g})).collect();
        user.insert("groups".into(), Value::Array(groups));
    }
    if let Some(k) = a("kind") {
        user.insert(
            "type".into(),
            json!(if k == "workload" { "System" } else { "User" }),
        );
    }
    let mut actor_out = json!({ "user": user });
    if let (Some(iss), Some(obj)) = (a("iss"), actor_out.as_object_mut()) {
        obj.insert("idp".into(), json!({ "name": iss }));
    }
    if let (Some(jti), Some(obj)) = (a("jti"), actor_out.as_object_mut()) {
        obj.insert("session".into(), json!({ "uid": jti }));
    }
    let (ip, port) = match a("addr").as_ref().and_then(Value::as_str) {
        Some(addr) => match addr.parse::<std::net::SocketAddr>() {
            Ok(sa) => (Value::from(sa.ip().to_string()), Value::from(sa.port())),
            Err(_) => (Value::from(addr), Value::Null),
        },
        None => (Value::Null, Value::Null),
    };
    // An event made on the broker host (an admin command, retention, a
    // reload) has no network source: the host itself.
    let mut src = if ip.is_null() {
        json!({ "hostname": "localhost" })
    } else {
        json!({ "ip": ip })
    };
    if !port.is_null() {
        src["port"] = port;
    }
    let operation = if method.is_empty() {
        s("type").unwrap_or("unknown").to_owned()
    } else {
        method.to_owned()
    };
    let mut api = json!({
        "operation": operation,
        "service": { "name": s("target").unwrap_or("hoop-broker") },
    });
    if let Some(id) = event.get("jsonrpc_id") {
        api["request"] = json!({ "uid": id.to_string() });
    }
    if let Some(code) = event.get("error_code") {
        api["response"] = json!({ "code": code, "error": s("reason").unwrap_or("") });
    }
    let seq = event.get("seq").cloned().unwrap_or(Value::Null);
    json!({
        "activity_id": activity_id,
        "activity_name": activity_name(activity_id),
        "category_uid": CATEGORY_APPLICATION,
        "category_name": "Application Activity",
        "class_uid": CLASS_API_ACTIVITY,
        "class_name": "API Activity",
        "type_uid": CLASS_API_ACTIVITY * 100 + activity_id,
        "severity_id": if failed { 3 } else { 1 },
        "severity": if failed { "Medium" } else { "Informational" },
        "status_id": if failed { 2 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "time": time_ms,
        "message": format!("{} {}", s("type").unwrap_or(""), s("name").unwrap_or("")).trim().to_owned(),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("{seq}"),
            "sequence": seq,
            "correlation_uid": s("exchange"),
            "product": {
                "name": "hoop",
                "vendor_name": "hoop",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": "hoop audit",
        },
        "actor": actor_out,
        "api": api,
        "src_endpoint": src,
        "resources": s("name").map(|n| json!([{ "name": n, "type": "mcp" }])).unwrap_or(json!([])),
        "unmapped": {
            "hoop": {
                "entry": String::from_utf8_lossy(entry),
                "decision": event.get("decision"),
                "rule": event.get("rule"),
                "outcome": outcome,
            }
        },
    })
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// OCSF API Activity's activity: reads, creates, updates and deletes where
/// the MCP method says which; a tool call is "Other" (99): what a tool does
/// is not knowable from its name.
fn activity(method: &str) -> u64 {
    match method {
        "resources/read"
        | "prompts/get"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "tasks/get"
        | "tasks/result"
        | "tasks/list"
        | "server/discover"
        | "completion/complete" => 2,
        "resources/subscribe" | "initialize" => 1,
        "tasks/update" => 3,
        "resources/unsubscribe" | "tasks/cancel" => 4,
        "" => 0,
        _ => 99,
    }
}

fn activity_name(id: u64) -> &'static str {
    match id {
        1 => "Create",
        2 => "Read",
        3 => "Update",
        4 => "Delete",
        99 => "Other",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_written_in_pieces_comes_out_one_record_per_event_line() {
        let export = concat!(
            r#"{"seq":0,"v":1,"time":"2026-12-03T09:25:53Z","type":"mcp.request","method":"tools/call","name":"echo"}"#,
            "\n",
            r#"{"checkpoint":"hoop.local/audit/x\n1\nAAAA\n"}"#,
            "\n",
            r#"{"seq":1,"v":1,"time":"2026-12-03T09:25:54Z","type":"mcp.response","method":"tools/call","name":"echo"}"#,
        )
        .as_bytes();
        let whole = {
            let mut out = Vec::new();
            let mut lines = OcsfLines::new(&mut out);
            lines.write_all(export).unwrap();
            lines.finish().unwrap();
            out
        };
        let records: Vec<Value> = whole
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "the checkpoint line is left out");
        assert_eq!(records[0]["metadata"]["sequence"], 0);
        assert_eq!(records[1]["metadata"]["sequence"], 1);
        for piece in [1, 7, 64] {
            let mut out = Vec::new();
            let mut lines = OcsfLines::new(&mut out);
            for chunk in export.chunks(piece) {
                lines.write_all(chunk).unwrap();
            }
            lines.finish().unwrap();
            assert_eq!(out, whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn an_event_becomes_an_api_activity_with_the_required_fields() {
        let line = br#"{"seq":7,"v":1,"time":"2026-12-03T09:25:53.123456789Z","type":"mcp.request","exchange":"00000001","actor":{"sub":"alice","groups":["eng"],"iss":"https://idp","kind":"human","addr":"127.0.0.1:5000"},"target":"demo","jsonrpc_id":1,"method":"tools/call","name":"echo","decision":"allow","rule":"r1"}"#;
        let v: Value = serde_json::from_slice(line).unwrap();
        let r = to_ocsf(&v, line);
        for k in [
            "activity_id",
            "category_uid",
            "class_uid",
            "type_uid",
            "severity_id",
            "time",
            "actor",
            "src_endpoint",
        ] {
            assert!(r.get(k).is_some_and(|x| !x.is_null()), "{k}");
        }
        assert_eq!(r["class_uid"], 6003);
        assert_eq!(r["type_uid"], 600399);
        assert_eq!(r["time"], 1_796_289_953_123i64);
        assert_eq!(r["api"]["operation"], "tools/call");
        assert_eq!(r["metadata"]["product"]["name"], "hoop");
        assert!(r["metadata"]["version"].is_string());
        assert_eq!(r["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(r["src_endpoint"]["port"], 5000);
        assert_eq!(r["actor"]["user"]["name"], "alice");
        assert_eq!(
            r["unmapped"]["hoop"]["entry"],
            String::from_utf8_lossy(line).as_ref()
        );
    }
}
