//! The checksums that tell a real identifier from a number that merely has
//! its shape: Luhn (payment cards), the ABA routing-number weights, and
//! ISO 7064 mod 97-10 (IBAN). Also usable as the `validator` of a detector
//! from configuration.

use serde::Deserialize;

/// A validator a configured detector may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    Luhn,
    Mod97,
    Aba,
}

impl Validator {
    /// Whether `text` passes, read as its ASCII letters and digits only
    /// (separators ignored).
    pub fn check(self, text: &str) -> bool {
        let mut buf = [0u8; 64];
        let Some(chars) = alphanumerics(text, &mut buf) else {
            return false;
        };
        match self {
            Self::Luhn => digits_only(chars) && luhn(chars),
            Self::Aba => digits_only(chars) && aba(chars),
            Self::Mod97 => mod97(chars),
        }
    }
}

/// `text`'s ASCII letters and digits, uppercased, into `buf`; `None` when
/// there are none or more than fit.
fn alphanumerics<'b>(text: &str, buf: &'b mut [u8; 64]) -> Option<&'b [u8]> {
    let mut n = 0;
    for b in text.bytes().filter(u8::is_ascii_alphanumeric) {
        *buf.get_mut(n)? = b.to_ascii_uppercase();
        n += 1;
    }
    (n > 0).then_some(&buf[..n])
}

fn digits_only(chars: &[u8]) -> bool {
    chars.iter().all(u8::is_ascii_digit)
}

/// Luhn over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The ABA routing transit number check: nine digits, weights 3, 7, 1,
/// and a first pair the Federal Reserve assigns (00–12, 21–32, 61–72, 80).
pub fn aba(digits: &[u8]) -> bool {
    if digits.len() != 9 {
        return false;
    }
    let d = |i: usize| u32::from(digits[i].wrapping_sub(b'0'));
    let prefix = d(0) * 10 + d(1);
    let assigned = matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80);
    let sum = 3 * (d(0) + d(3) + d(6)) + 7 * (d(1) + d(4) + d(7)) + (d(2) + d(5) + d(8));
    assigned && sum % 10 == 0
}

/// ISO 7064 mod 97-10 as IBANs use it: the first four characters moved to
/// the end, letters as 10–35, the whole number mod 97 must be 1.
pub fn mod97(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let (head, tail) = chars.split_at(4);
    let mut rem = 0u32;
    for &c in tail.iter().chain(head) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_values_pass_and_one_digit_off_fails() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"378282246310005"));
        assert!(aba(b"021000021"));
        assert!(!aba(b"021000022"));
        assert!(!aba(b"991000021"), "unassigned prefix");
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(!mod97(b"GB82WEST12345698765433"));
        assert!(Validator::Luhn.check("4111 1111-1111 1111"));
        assert!(Validator::Mod97.check("gb82 west 1234 5698 7654 32"));
        assert!(!Validator::Aba.check("02100002A"));
        assert!(!Validator::Luhn.check(""));
    }
}
