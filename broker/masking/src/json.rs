//! Masking a JSON value in one walk: every string is scanned (and a string
//! that holds JSON is masked as JSON), integers long enough to be an
//! identifier are scanned as text, the values under a field rule's keys are
//! masked whatever they are, and base64 `blob`s with a textual `mimeType`
//! are decoded, masked and encoded again. Nothing is rebuilt where nothing
//! was found.

use base64::Engine;
use serde_json::{Map, Value};

use crate::context::{normalized_key_eq, Context};
use crate::profile::MaskingProfile;
use crate::report::MaskReport;

/// How deep JSON held in strings is followed (a string holding JSON
/// holding a string holding JSON…); deeper, it is scanned as text.
const MAX_EMBEDDED_DEPTH: u8 = 4;

/// Why a value could not be masked: the caller must not deliver it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("a `blob` declared as `{mime}` is not valid base64")]
    BlobNotBase64 { mime: String },
    #[error("a `blob` declared as `{mime}` is not UTF-8 text")]
    BlobNotText { mime: String },
}

/// Where the walk is.
#[derive(Clone, Copy)]
struct At<'k> {
    key: Option<&'k str>,
    embedded: u8,
}

impl MaskingProfile {
    /// Masks `v` in place; `skip`: keys whose values are left alone (an
    /// envelope's `id`, a protocol's handles). `Ok(true)` when anything
    /// changed.
    pub fn mask_value(
        &self,
        v: &mut Value,
        skip: &[&str],
        report: &mut MaskReport,
    ) -> Result<bool, MaskError> {
        self.walk(
            v,
            At {
                key: None,
                embedded: 0,
            },
            skip,
            report,
        )
    }

    fn walk(
        &self,
        v: &mut Value,
        at: At<'_>,
        skip: &[&str],
        report: &mut MaskReport,
    ) -> Result<bool, MaskError> {
        if let Some(field) = at.key.and_then(|k| self.field_rule(k)) {
            return Ok(self.mask_all(v, field, report));
        }
        match v {
            Value::String(s) => Ok(self.walk_string(s, at, skip, report)),
            Value::Number(n) => {
                // Only integers can be identifiers; a float is an amount.
                let text = match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) if u >= 100_000 => u.to_string(),
                    (None, Some(i)) if i <= -100_000 => i.to_string(),
                    _ => return Ok(false),
                };
                match self.mask_str(&text, Context { key: at.key }, report) {
                    Some(masked) => {
                        // The value is no longer a number: documented in
                        // docs/masking.md (a schema typing it as a number
                        // no longer holds for this one value).
                        *v = Value::String(masked);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.walk(item, at, skip, report)?;
                }
                Ok(changed)
            }
            Value::Object(map) => self.walk_object(map, at, skip, report),
            Value::Bool(_) | Value::Null => Ok(false),
        }
    }

    fn walk_object(
        &self,
        map: &mut Map<String, Value>,
        at: At<'_>,
        skip: &[&str],
        report: &mut MaskReport,
    ) -> Result<bool, MaskError> {
        let mut changed = self.mask_blob(map, at, skip, report)?;
        for (k, val) in map.iter_mut() {
            if k == "blob" || skip.contains(&k.as_str()) {
                continue;
            }
            let inner = At {
                key: Some(k),
                embedded: at.embedded,
            };
            changed |= self.walk(val, inner, skip, report)?;
        }
        Ok(changed)
    }

    /// A `blob` whose `mimeType` is text: decoded, masked, encoded again.
    /// Other blobs (images, audio) are left as they are.
    fn mask_blob(
        &self,
        map: &mut Map<String, Value>,
        at: At<'_>,
        skip: &[&str],
        report: &mut MaskReport,
    ) -> Result<bool, MaskError> {
        let mime = match map.get("mimeType").and_then(Value::as_str) {
            Some(m) if textual(m) => m.to_owned(),
            _ => return Ok(false),
        };
        let Some(Value::String(blob)) = map.get_mut("blob") else {
            return Ok(false);
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let bytes = engine
            .decode(blob.as_bytes())
            .map_err(|_| MaskError::BlobNotBase64 { mime: mime.clone() })?;
        let mut text = String::from_utf8(bytes).map_err(|_| MaskError::BlobNotText { mime })?;
        let inner = At {
            key: Some("blob"),
            embedded: at.embedded,
        };
        if self.walk_string(&mut text, inner, skip, report) {
            *blob = engine.encode(text.as_bytes());
            return Ok(true);
        }
        Ok(false)
    }

    fn walk_string(
        &self,
        s: &mut String,
        at: At<'_>,
        skip: &[&str],
        report: &mut MaskReport,
    ) -> bool {
        if at.embedded < MAX_EMBEDDED_DEPTH && looks_like_json(s) {
            if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                let deeper = At {
                    key: at.key,
                    embedded: at.embedded + 1,
                };
                // An embedded document that cannot be masked is scanned as
                // text instead: it is delivered as the string it is.
                match self.walk(&mut inner, deeper, skip, report) {
                    Ok(true) => {
                        if let Ok(text) = serde_json::to_string(&inner) {
                            *s = text;
                            return true;
                        }
                    }
                    Ok(false) => return false,
                    Err(_) => {}
                }
            }
        }
        match self.mask_str(s, Context { key: at.key }, report) {
            Some(masked) => {
                *s = masked;
                true
            }
            None => false,
        }
    }

    /// Every scalar under a field rule's key, masked as that rule says.
    fn mask_all(&self, v: &mut Value, field: usize, report: &mut MaskReport) -> bool {
        match v {
            Value::Null => false,
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |c, i| self.mask_all(i, field, report) | c),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |c, i| self.mask_all(i, field, report) | c),
            Value::String(s) if s.is_empty() => false,
            Value::String(s) => {
                let masked = self.masked_whole(s, field);
                report.count(field);
                *s = masked;
                true
            }
            Value::Number(n) => {
                let masked = self.masked_whole(&n.to_string(), field);
                report.count(field);
                *v = Value::String(masked);
                true
            }
            Value::Bool(_) => false,
        }
    }

    fn field_rule(&self, key: &str) -> Option<usize> {
        self.fields
            .iter()
            .find(|(k, _)| normalized_key_eq(key, k))
            .map(|(_, id)| *id)
    }
}

fn looks_like_json(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'))
}

/// MIME types whose blobs hold text.
pub fn textual(mime: &str) -> bool {
    let m = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    m.starts_with("text/")
        || m.ends_with("+json")
        || m.ends_with("+xml")
        || matches!(
            m.as_str(),
            "application/json"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/csv"
                | "application/x-ndjson"
                | "application/jsonl"
                | "application/javascript"
                | "application/sql"
                | "application/x-www-form-urlencoded"
        )
}
