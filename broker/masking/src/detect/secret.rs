//! Secrets: cloud and SaaS keys by their published prefixes, private-key
//! blocks, JWTs, bearer tokens, and passwords in connection strings and
//! `password=` assignments. Each entry: the pattern, and whether only its
//! capture group 1 is the secret (the rest is the context that names it).

/// The first line of a PEM private key; the scanner extends the finding
/// to its END line ([`pem_end`]). The regex stops at the BEGIN line: a
/// pattern that may run on to the end of a text would make every other
/// candidate's start be searched for back to the text's beginning.
pub const PEM_BEGIN: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----";

/// Where the key whose BEGIN line ends at `from` ends: after its END line,
/// or, when it was cut off, after the last byte of its body.
pub fn pem_end(text: &str, from: usize) -> usize {
    let rest = &text.as_bytes()[from..];
    if let Some(at) = find(rest, b"-----END ") {
        let after = &rest[at + 9..];
        if let Some(close) = find(after, b"-----") {
            return from + at + 9 + close + 5;
        }
    }
    let body = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"+/=:-,\r\n\t ".contains(b))
        .count();
    from + body
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub const PATTERNS: &[(&str, bool)] = &[
    // A JWT (JWS compact form): two base64url JSON parts and a signature.
    (
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        false,
    ),
    // AWS access key ids.
    (r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b", false),
    // An AWS secret access key, named.
    (
        r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
        true,
    ),
    // GitHub tokens.
    (
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        false,
    ),
    // Slack tokens.
    (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", false),
    // Google API keys.
    (r"\bAIza[0-9A-Za-z_\-]{35}", false),
    // Stripe live secret and restricted keys.
    (r"\b(?:sk|rk)_live_[0-9A-Za-z]{16,}", false),
    // `Bearer <token>`.
    (r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]{16,}=*)", true),
    // The password in `scheme://user:password@host`.
    (r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]+:([^\s@/]+)@", true),
    // `password=…`, `pwd: …`, `api_key=…`, `client_secret=…`.
    (
        r#"(?i)\b(?:password|passwd|pwd|secret|client_secret|api_?key|access_?token|auth_?token)["']?\s*[:=]\s*["']?([^\s"'&;,]{4,})"#,
        true,
    ),
];
