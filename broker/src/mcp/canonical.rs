//! Canonical JSON text: object keys sorted, no whitespace, so the same
//! value always gives the same bytes whatever order a client or upstream
//! wrote it in. What the broker hashes to recognise a value again: a tool
//! definition (drift) and a call's arguments (an approval binds them).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Appends `v` in canonical form.
pub fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(k, out);
                if let Some(x) = m.get(k) {
                    write(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Appends `"k":`.
pub fn write_key(k: &str, out: &mut String) {
    // A string always serializes.
    out.push_str(&serde_json::to_string(k).unwrap_or_default());
    out.push(':');
}

/// Lowercase hex of SHA-256 over `text`.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of `v`'s canonical form, in hex.
pub fn digest(v: &Value) -> String {
    let mut text = String::new();
    write(v, &mut text);
    sha256_hex(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_spacing_do_not_change_the_digest() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "s"}"#).unwrap();
        let b = json!({"a": "s", "b": [1, {"x": 1, "y": 2}]});
        assert_eq!(digest(&a), digest(&b));
        let mut text = String::new();
        write(&b, &mut text);
        assert_eq!(text, r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(
            digest(&b),
            digest(&json!({"a": "s", "b": [{"x": 1, "y": 2}, 1]}))
        );
    }
}
