//! Resource URIs in plain form only (the `builtin:non-canonical-uri` rule).
//!
//! Resource globs judge the URI as written. Dot segments, percent-encoded
//! separators or dots, backslashes or empty segments could reach, once the
//! upstream normalises them, what a glob was written to keep out, so such a
//! URI is refused before any rule judges it.

use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;

/// The rule name its refusals carry.
pub const RULE: &str = "builtin:non-canonical-uri";

/// Refuses `msg` when the resource URI policy would judge it by is not in
/// plain form.
pub fn refuse_non_canonical(msg: &McpMessage) -> Result<(), McpError> {
    match msg.item.as_deref() {
        Some(uri) if msg.item_is_uri() => refuse_uri(uri),
        _ => Ok(()),
    }
}

/// Refuses one URI that is not in plain form.
pub fn refuse_uri(uri: &str) -> Result<(), McpError> {
    match non_canonical(uri) {
        Some(why) => Err(McpError::new(
            codes::DENIED,
            format!("denied by rule {RULE}: {why}; send the URI in its plain form"),
        )),
        None => Ok(()),
    }
}

/// Why a resource URI is not in the one form resource globs judge.
fn non_canonical(uri: &str) -> Option<&'static str> {
    let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("the URI has a `.` or `..` segment");
    }
    let lower = path.as_bytes();
    let encoded = lower.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    });
    if encoded {
        return Some("the URI percent-encodes a dot, slash or backslash");
    }
    if path.contains('\\') {
        return Some("the URI has a backslash");
    }
    if path.contains("//") {
        return Some("the URI has an empty path segment");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::non_canonical;

    #[test]
    fn only_plain_uris_pass() {
        for ok in [
            "fixture://greeting",
            "hoop-demo://policies/retention",
            "file:///srv/data/report.csv",
            "https://example.com/a/b?x=1",
            "hoop-demo://policies/100%25",
        ] {
            assert_eq!(non_canonical(ok), None, "{ok}");
        }
        for bad in [
            "hoop-demo://policies/../secrets",
            "hoop-demo://policies/./retention",
            "hoop-demo://policies/%2e%2e/secrets",
            "hoop-demo://policies/%2E%2E/secrets",
            "hoop-demo://policies%2Fsecrets",
            "hoop-demo://policies%5csecrets",
            "hoop-demo://policies\\secrets",
            "hoop-demo://policies//secrets",
        ] {
            assert!(non_canonical(bad).is_some(), "{bad}");
        }
    }
}
