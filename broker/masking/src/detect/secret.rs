//! Secrets: cloud and SaaS keys by their published prefixes, private-key
//! blocks, JWTs, bearer tokens, and passwords in connection strings and
//! `password=` assignments. Each entry: the pattern, and whether only its
//! capture group 1 is the secret (the rest is the context that names it).

pub const PATTERNS: &[(&str, bool)] = &[
    // A PEM private key, to its END line, or to the end of the text when
    // it was cut off.
    (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?s:(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*))",
        false,
    ),
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
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
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
