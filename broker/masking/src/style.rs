//! How a finding is written once masked: redacted (`[MASKED:card]`),
//! partial (the last four letters or digits kept, as PCI DSS allows for a
//! card number), or a keyed hash (`[card:3f9a1c2b7d40]`: HMAC-SHA256 under
//! the broker's masking key, so equal values give equal tokens across
//! restarts and across brokers that share the key, and nobody without the
//! key can test a guess).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// A detector's style; `off` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Redact,
    Partial,
    Hash,
    Off,
}

impl Style {
    pub fn name(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Partial => "partial",
            Self::Hash => "hash",
            Self::Off => "off",
        }
    }
}

/// Hex digits of the HMAC a hash token shows: 48 bits, so two distinct
/// values among a million share a token with odds of about 1 in 500.
const TOKEN_HEX: usize = 12;

/// The secret keyed hashes are made with. The broker keeps it in its data
/// dir; brokers that share it give equal tokens.
#[derive(Clone)]
pub struct HashKey(Hmac<Sha256>);

impl HashKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // Keyed once: each token then costs a clone, not the key schedule.
        // HMAC pads a key shorter than SHA-256's 64-byte block with zeros,
        // so the padded block is the same key, taken by the infallible
        // constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&bytes);
        Self(<Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into()))
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(…)")
    }
}

/// Writes `value` (found by the detector `label`) masked in `style` onto
/// `out`.
pub fn write_masked(
    out: &mut String,
    value: &str,
    label: &str,
    style: Style,
    key: &HashKey,
    secret: bool,
) {
    match style {
        Style::Partial if !secret => partial(out, value),
        Style::Hash => hashed(out, value, label, key),
        Style::Off => out.push_str(value),
        _ => {
            out.push_str("[MASKED:");
            out.push_str(label);
            out.push(']');
        }
    }
}

/// Every letter and digit but the last four as `*`; separators kept. An
/// e-mail address keeps its first letter and its domain.
fn partial(out: &mut String, value: &str) {
    if let Some(at) = value.rfind('@') {
        let mut local = value[..at].chars();
        if let Some(first) = local.next() {
            out.push(first);
        }
        out.push_str("***");
        out.push_str(&value[at..]);
        return;
    }
    let total = value.chars().filter(char::is_ascii_alphanumeric).count();
    let keep_from = if total > 4 { total - 4 } else { total };
    let mut seen = 0;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if seen < keep_from { '*' } else { c });
            seen += 1;
        } else {
            out.push(c);
        }
    }
}

fn hashed(out: &mut String, value: &str, label: &str, key: &HashKey) {
    let mut mac = key.0.clone();
    mac.update(label.as_bytes());
    mac.update(&[0]);
    // The same value however it was written: "4111 1111…" and
    // "41111111…" are one card; an address is compared lowercase.
    if value.contains('@') {
        for b in value.bytes() {
            mac.update(&[b.to_ascii_lowercase()]);
        }
    } else {
        for b in value.bytes().filter(u8::is_ascii_alphanumeric) {
            mac.update(&[b.to_ascii_uppercase()]);
        }
    }
    let tag = mac.finalize().into_bytes();
    out.push('[');
    out.push_str(label);
    out.push(':');
    for b in tag.iter().take(TOKEN_HEX / 2) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out.push(']');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(value: &str, style: Style) -> String {
        let mut s = String::new();
        write_masked(
            &mut s,
            value,
            "card",
            style,
            &HashKey::from_bytes([7; 32]),
            false,
        );
        s
    }

    #[test]
    fn partial_keeps_the_last_four_and_the_separators() {
        assert_eq!(
            masked("4111111111111111", Style::Partial),
            "************1111"
        );
        assert_eq!(
            masked("4111-1111-1111-1111", Style::Partial),
            "****-****-****-1111"
        );
        assert_eq!(masked("1234", Style::Partial), "****");
        assert_eq!(
            masked("jane.sample@example.com", Style::Partial),
            "j***@example.com"
        );
        let mut s = String::new();
        write_masked(
            &mut s,
            "hunter22",
            "secret",
            Style::Partial,
            &HashKey::from_bytes([7; 32]),
            true,
        );
        assert_eq!(s, "[MASKED:secret]", "a secret is never shown in part");
    }

    #[test]
    fn the_padded_key_is_the_same_hmac_key() {
        let mut a = HashKey::from_bytes([5; 32]).0;
        let mut b = Hmac::<Sha256>::new_from_slice(&[5; 32]).unwrap();
        a.update(b"x");
        b.update(b"x");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn hashes_are_stable_per_key_and_ignore_formatting() {
        let a = masked("4111111111111111", Style::Hash);
        assert_eq!(a, masked("4111 1111 1111 1111", Style::Hash));
        assert_ne!(a, masked("5555555555554444", Style::Hash));
        assert!(
            a.starts_with("[card:") && a.len() == "[card:]".len() + TOKEN_HEX,
            "{a}"
        );
        let mut other = String::new();
        write_masked(
            &mut other,
            "4111111111111111",
            "card",
            Style::Hash,
            &HashKey::from_bytes([8; 32]),
            false,
        );
        assert_ne!(a, other, "another key, another token");
        assert_eq!(masked("x", Style::Redact), "[MASKED:card]");
    }
}
