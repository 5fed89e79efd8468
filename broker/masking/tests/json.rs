//! Masking whole MCP payloads through the public API: what a caller of the
//! crate (the broker) sees.

use base64::Engine;
use hoop_masking::{HashKey, MaskError, MaskReport, MaskingProfile, ProfileConfig};
use serde_json::{json, Value};

fn profile(toml: &str) -> MaskingProfile {
    let config: ProfileConfig = toml::from_str(toml).expect("profile parses");
    MaskingProfile::compile("test", &config, HashKey::from_bytes([9; 32]))
        .expect("profile compiles")
}

fn mask(p: &MaskingProfile, mut v: Value) -> (Value, MaskReport) {
    let mut report = MaskReport::default();
    p.mask_value(&mut v, &["id", "jsonrpc"], &mut report)
        .expect("masks");
    (v, report)
}

const RAW: [&str; 6] = [
    "4111111111111111",
    "078-05-1120",
    "GB82WEST12345698765432",
    "021000021",
    "000123456789",
    "jane.sample@example.com",
];

fn customer() -> Value {
    json!({
        "name": "Jane Sample",
        "card": "4111111111111111",
        "ssn": "078-05-1120",
        "iban": "GB82WEST12345698765432",
        "routing_number": "021000021",
        "account_number": "000123456789",
        "email": "jane.sample@example.com",
        "balance": 1234.56,
        "order_id": 4012888888881881u64,
    })
}

#[test]
fn a_tool_result_in_text_and_structured_content() {
    let p = profile("");
    let record = customer();
    let result = json!({
        "jsonrpc": "2.0", "id": 4012888888881881u64,
        "result": {
            "content": [{"type": "text", "text": record.to_string()}],
            "structuredContent": record,
        }
    });
    let (masked, report) = mask(&p, result);
    let text = masked.to_string();
    for raw in RAW {
        assert!(!text.contains(raw), "{raw} left in {text}");
    }
    assert_eq!(
        masked["id"],
        json!(4012888888881881u64),
        "skipped keys are left alone"
    );
    let sc = &masked["result"]["structuredContent"];
    assert_eq!(sc["card"], "************1111");
    assert_eq!(sc["ssn"], "[MASKED:ssn]");
    assert_eq!(sc["routing_number"], "[MASKED:routing]");
    assert_eq!(sc["account_number"], "********6789");
    assert_eq!(sc["balance"], json!(1234.56), "amounts stay numbers");
    assert_eq!(
        sc["order_id"],
        json!(4012888888881881u64),
        "an order id is not a card"
    );
    assert!(
        sc["email"]
            .as_str()
            .is_some_and(|e| e.starts_with("[email:")),
        "{}",
        sc["email"]
    );
    // The text content was JSON in a string: masked as JSON, still JSON.
    let inner: Value =
        serde_json::from_str(masked["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(inner, *sc);
    assert_eq!(report.total(), 12);
}

#[test]
fn a_number_the_schema_types_as_number_becomes_a_masked_string() {
    let p = profile("");
    let (masked, _) = mask(
        &p,
        json!({"account_number": 123456789012u64, "card": 4111111111111111u64}),
    );
    assert_eq!(
        masked,
        json!({"account_number": "********9012", "card": "************1111"})
    );
}

#[test]
fn textual_blobs_are_masked_and_binary_ones_left() {
    let p = profile("");
    let b64 = base64::engine::general_purpose::STANDARD;
    let text_blob = b64.encode("card 4111 1111 1111 1111\n");
    let png = b64.encode([0x89, b'P', b'N', b'G', 0, 1, 2]);
    let v = json!({"contents": [
        {"uri": "file:///a.csv", "mimeType": "text/csv", "blob": text_blob},
        {"uri": "file:///a.png", "mimeType": "image/png", "blob": png},
    ]});
    let (masked, _) = mask(&p, v);
    let decoded = b64
        .decode(masked["contents"][0]["blob"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "card **** **** **** 1111\n"
    );
    assert_eq!(masked["contents"][1]["blob"], json!(png));

    let mut bad = json!({"mimeType": "text/plain", "blob": "%%% not base64"});
    let err = p
        .mask_value(&mut bad, &[], &mut MaskReport::default())
        .unwrap_err();
    assert!(matches!(err, MaskError::BlobNotBase64 { .. }));
}

#[test]
fn field_rules_mask_whatever_sits_under_their_keys() {
    let p = profile(
        r#"
        [[fields]]
        keys = ["customer_notes"]
        label = "notes"
        style = "hash"
        "#,
    );
    let (masked, report) = mask(
        &p,
        json!({"dob": "1970-01-01", "customerNotes": ["x", {"y": 3}], "password": true, "PIN": 1234}),
    );
    assert_eq!(masked["dob"], "[MASKED:dob]");
    assert!(masked["customerNotes"][0]
        .as_str()
        .unwrap()
        .starts_with("[notes:"));
    assert!(masked["customerNotes"][1]["y"]
        .as_str()
        .unwrap()
        .starts_with("[notes:"));
    assert_eq!(masked["password"], json!(true), "a boolean says nothing");
    assert_eq!(masked["PIN"], "[MASKED:secret]");
    assert_eq!(
        report.by_label(&p),
        vec![("dob", 1), ("notes", 2), ("secret", 1)]
    );
}

#[test]
fn styles_configured_per_detector_and_keyed_hashes_are_stable() {
    let p = profile("[styles]\ncard = \"hash\"\nemail = \"off\"\n");
    let (a, _) = mask(
        &p,
        json!("card 4111 1111 1111 1111 from jane.sample@example.com"),
    );
    let (b, _) = mask(&p, json!({"card_number": "4111111111111111"}));
    let token = a
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(token.starts_with("[card:"), "{a}");
    assert_eq!(
        b["card_number"],
        json!(token),
        "the same card, the same token, however written"
    );
    assert!(
        a.as_str().unwrap().ends_with("jane.sample@example.com"),
        "email is off"
    );
    let other = MaskingProfile::compile(
        "other",
        &toml::from_str("[styles]\ncard = \"hash\"").unwrap(),
        HashKey::from_bytes([1; 32]),
    )
    .unwrap();
    let (c, _) = mask(&other, json!({"card_number": "4111111111111111"}));
    assert_ne!(c["card_number"], json!(token), "another key, another token");
}

#[test]
fn detectors_from_configuration_with_a_validator() {
    let p = profile(
        r#"
        [[detectors]]
        name = "employee"
        pattern = 'EMP-(\d{6})'
        style = "redact"

        [[detectors]]
        name = "loyalty"
        pattern = '\bLY(\d{12})\b'
        validator = "luhn"
        "#,
    );
    let (m, report) = mask(
        &p,
        json!("EMP-123456 and LY4111111111111111? no: LY411111111111 vs LY000000000000"),
    );
    assert_eq!(m, json!("EMP-[MASKED:employee] and LY4111111111111111? no: LY411111111111 vs LY[MASKED:loyalty]"));
    assert_eq!(report.total(), 2);
}

#[test]
fn bad_profiles_say_what_is_wrong() {
    let err = |toml: &str| {
        let config: ProfileConfig = toml::from_str(toml).unwrap();
        MaskingProfile::compile("p", &config, HashKey::from_bytes([0; 32]))
            .unwrap_err()
            .to_string()
    };
    assert!(err("[styles]\ncrad = \"hash\"").contains("`crad` is not a detector"));
    assert!(err("[[detectors]]\nname = \"x\"\npattern = \"(\"").contains("does not compile"));
    assert!(err("[[detectors]]\nname = \"card\"\npattern = \"x\"").contains("used twice"));
    assert!(err("[[detectors]]\nname = \"x\"\npattern = \"(a)(b)\"")
        .contains("at most one capture group"));
    assert!(err("[[fields]]\nkeys = []\nlabel = \"x\"").contains("lists no keys"));
    assert!(toml::from_str::<ProfileConfig>("[styles]\ncard = \"blur\"").is_err());
}

#[test]
fn nothing_found_nothing_changed() {
    let p = profile("");
    let v = json!({"content": [{"type": "text", "text": "all 318 items matched on 2026-12-03, total 1234567.89"}]});
    let mut copy = v.clone();
    let changed = p
        .mask_value(&mut copy, &[], &mut MaskReport::default())
        .unwrap();
    assert!(!changed);
    assert_eq!(copy, v);
}
