use std::collections::BTreeMap;

use bytes::Bytes;
use hoop_masking::{HashKey, ProfileConfig};
use serde_json::{json, Value};

use super::*;

fn layer() -> Masker {
    Masking::from_config(&BTreeMap::new(), HashKey::from_bytes([3; 32]))
        .unwrap()
        .default_masker()
        .clone()
}

fn masked(layer: &Masker, body: Value, declaration: bool) -> (Value, MaskSummary) {
    let mut m = ServerMessage::parse(Bytes::from(serde_json::to_vec(&body).unwrap()));
    let found = layer.response(&mut m, declaration).unwrap();
    (serde_json::from_slice(&m.delivered()).unwrap(), found)
}

#[test]
fn a_tool_result_is_masked_and_the_envelope_kept() {
    let body = json!({"jsonrpc": "2.0", "id": 123456789012u64, "result": {
        "content": [{"type": "text", "text": "card 4111 1111 1111 1111"},
                    {"type": "resource_link", "uri": "file:///acct/000123456789", "name": "statement"}],
        "structuredContent": {"ssn": "078-05-1120"},
    }});
    let (out, found) = masked(&layer(), body, false);
    assert_eq!(out["id"], json!(123456789012u64));
    assert_eq!(
        out["result"]["content"][0]["text"],
        "card **** **** **** 1111"
    );
    assert_eq!(
        out["result"]["content"][1]["uri"], "file:///acct/000123456789",
        "a URI is a handle"
    );
    assert_eq!(out["result"]["structuredContent"]["ssn"], "[MASKED:ssn]");
    assert_eq!(found, Some(json!({"card": 1, "ssn": 1})));
}

#[test]
fn untouched_messages_keep_the_upstream_bytes() {
    let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",  \"id\":1,\"result\":{\"content\":[]}}");
    let mut m = ServerMessage::parse(raw.clone());
    assert_eq!(layer().response(&mut m, false).unwrap(), None);
    assert_eq!(m.delivered(), raw);
}

#[test]
fn declarations_are_left_whole_and_schemas_anywhere() {
    let list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "get_customer",
        "description": "e.g. 4111111111111111",
        "inputSchema": {"type": "object", "properties": {"ssn": {"type": "string"}}}}]}});
    let (out, found) = masked(&layer(), list.clone(), true);
    assert_eq!((out, found), (list, None));
    let elicit = json!({"jsonrpc": "2.0", "id": 9, "method": "elicitation/create", "params": {
        "message": "confirm card 4111111111111111",
        "requestedSchema": {"type": "object", "properties": {"ssn": {"type": "string"}}}}});
    let (out, _) = masked(&layer(), elicit, false);
    assert_eq!(out["params"]["message"], "confirm card ************1111");
    assert_eq!(
        out["params"]["requestedSchema"]["properties"]["ssn"],
        json!({"type": "string"})
    );
}

#[test]
fn what_cannot_be_masked_is_withheld() {
    let mut junk = ServerMessage::parse(Bytes::from_static(b"card 4111111111111111"));
    let e = layer().response(&mut junk, false).unwrap_err();
    assert_eq!(e.code, codes::MASKING_FAILED);
    assert!(e.message.contains("not JSON"), "{}", e.message);
    let mut blob = ServerMessage::parse(Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"x","mimeType":"text/plain","blob":"%%"}]}}"#,
    ));
    let e = layer().response(&mut blob, false).unwrap_err();
    assert!(e.message.contains("not valid base64"), "{}", e.message);
    // Off, nothing is withheld and nothing changes.
    let mut junk = ServerMessage::parse(Bytes::from_static(b"card 4111111111111111"));
    assert_eq!(
        Masking::off()
            .default_masker()
            .response(&mut junk, false)
            .unwrap(),
        None
    );
}

#[test]
fn client_messages_are_masked_for_the_record_only() {
    let msg = McpMessage::parse(
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"SSN 078-05-1120"}}}"#,
    )
    .unwrap();
    let (bytes, found) = layer().client_message(&msg).unwrap();
    let recorded: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        recorded["params"]["arguments"]["message"],
        "SSN [MASKED:ssn]"
    );
    assert_eq!(recorded["params"]["name"], "echo");
    assert_eq!(found, json!({"ssn": 1}));
    assert_eq!(
        msg.arguments().unwrap()["message"],
        "SSN 078-05-1120",
        "the upstream gets it as sent"
    );
    let plain = McpMessage::parse(br#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#).unwrap();
    assert!(layer().client_message(&plain).is_none());
}

#[test]
fn a_bad_profile_stops_the_broker_at_start() {
    let mut profiles = BTreeMap::new();
    let bad: ProfileConfig = toml::from_str("[styles]\ncrad = \"hash\"").unwrap();
    profiles.insert("fraud".to_string(), bad);
    let e = Masking::from_config(&profiles, HashKey::from_bytes([0; 32])).unwrap_err();
    assert!(e.to_string().contains("masking profile `fraud`"), "{e}");
}

#[test]
fn the_key_is_made_once_0600_and_read_back() {
    let dir = std::env::temp_dir().join(format!("hoop-masking-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("masking.key");
    let _ = std::fs::remove_file(&path);
    let a = load_or_create_key(&path).unwrap();
    let b = load_or_create_key(&path).unwrap();
    let token = |k: HashKey| {
        let p = hoop_masking::MaskingProfile::compile(
            "t",
            &toml::from_str("[styles]\ncard = \"hash\"").unwrap(),
            k,
        )
        .unwrap();
        let mut v = json!("4111111111111111");
        p.mask_value(&mut v, &[], &mut hoop_masking::MaskReport::default())
            .unwrap();
        v
    };
    assert_eq!(token(a), token(b), "the same key after a restart");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::write(&path, "not hex\n").unwrap();
    let e = load_or_create_key(&path).unwrap_err();
    assert!(e.to_string().contains("not 64 hex digits"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_profile_a_rule_names_is_the_one_applied() {
    let mut profiles = BTreeMap::new();
    let fraud: ProfileConfig = toml::from_str("[styles]\ncard = \"off\"").unwrap();
    profiles.insert("fraud".to_string(), fraud);
    let layer = Masking::from_config(&profiles, HashKey::from_bytes([3; 32])).unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": "card 4111 1111 1111 1111, ssn 078-05-1120"}]}});
    let (out, _) = masked(layer.chosen(Some("fraud")).unwrap(), body.clone(), false);
    assert_eq!(
        out["result"]["content"][0]["text"],
        "card 4111 1111 1111 1111, ssn [MASKED:ssn]"
    );
    for default in [None, Some("default")] {
        let (out, _) = masked(layer.chosen(default).unwrap(), body.clone(), false);
        assert_eq!(
            out["result"]["content"][0]["text"],
            "card **** **** **** 1111, ssn [MASKED:ssn]"
        );
    }
    // A name the config lacks fails closed, never falls back to another.
    let e = layer.chosen(Some("fruad")).unwrap_err();
    assert_eq!(e.code, codes::MASKING_FAILED);
    assert!(
        e.message.contains("[masking.profiles.fruad]"),
        "{}",
        e.message
    );

    let policy = crate::policy::Policy::parse(
        "[[rules]]\nname = \"r\"\nanyone = true\ntools = [\"*\"]\naction = \"allow\"\nmasking = \"fruad\"\n",
        "p.toml",
    )
    .unwrap();
    let why = layer.check_policy(&policy).unwrap_err();
    assert!(
        why.contains("rule 'r' names masking profile 'fruad'")
            && why.contains("defined: default, fraud"),
        "{why}"
    );
    // Masking off: every name resolves to passing everything.
    assert!(Masking::off().check_policy(&policy).is_ok());
    assert!(Masking::off().chosen(Some("fruad")).is_ok());
}
