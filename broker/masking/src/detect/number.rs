//! Runs of digits (with single spaces or dashes between them): what each
//! one is, from its length, its grouping, its checksum and its context.
//! In order: a phone number written with `+`, a payment card, an SSN, a
//! routing number, a phone number in national form, an account number.

use super::Builtin;
use crate::checksum::{aba, luhn};
use crate::context::{self as cx, Before, Context};

/// A digit run as the scanner found it: its digits and how they were
/// grouped.
pub struct DigitRun {
    digits: [u8; 19],
    len: usize,
    /// Lengths of the groups between separators (at most 8 kept).
    groups: [u8; 8],
    group_count: usize,
    /// The separator used, if any, and whether it was always the same.
    separator: Option<u8>,
    mixed: bool,
}

impl DigitRun {
    /// `None` when `text` is not 1–19 digits with single separators.
    pub fn parse(text: &str) -> Option<Self> {
        let mut run = Self {
            digits: [0; 19],
            len: 0,
            groups: [0; 8],
            group_count: 0,
            separator: None,
            mixed: false,
        };
        let mut group = 0u8;
        for b in text.bytes() {
            if b.is_ascii_digit() {
                *run.digits.get_mut(run.len)? = b;
                run.len += 1;
                group += 1;
            } else {
                match run.separator {
                    None => run.separator = Some(b),
                    Some(s) if s != b => run.mixed = true,
                    _ => {}
                }
                if let Some(slot) = run.groups.get_mut(run.group_count) {
                    *slot = group;
                }
                run.group_count += 1;
                group = 0;
            }
        }
        if let Some(slot) = run.groups.get_mut(run.group_count) {
            *slot = group;
        }
        run.group_count += 1;
        (run.len > 0).then_some(run)
    }

    pub fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    fn groups(&self) -> &[u8] {
        &self.groups[..self.group_count.min(self.groups.len())]
    }

    fn grouped_as(&self, layout: &[u8]) -> bool {
        self.group_count == layout.len() && self.groups() == layout && !self.mixed
    }

    fn bare(&self) -> bool {
        self.separator.is_none()
    }
}

/// Which detectors are on, for classification.
#[derive(Debug, Clone, Copy)]
pub struct Enabled {
    pub card: bool,
    pub ssn: bool,
    pub aba: bool,
    pub account: bool,
    pub phone: bool,
}

/// What the run at `start..end` of `text` is, if it is protected data.
pub fn classify(
    text: &str,
    start: usize,
    end: usize,
    run: &DigitRun,
    ctx: Context<'_>,
    on: Enabled,
) -> Option<Builtin> {
    let bytes = text.as_bytes();
    let before = Before::of(text, start);
    let plus = start > 0 && bytes[start - 1] == b'+';
    let digits = run.digits();
    if plus {
        return (on.phone && (8..=15).contains(&digits.len())).then_some(Builtin::Phone);
    }
    // A decimal amount or a version, not an identifier.
    let decimal_after = bytes.get(end).is_some_and(|b| matches!(b, b'.' | b','))
        && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
    let decimal_before =
        start >= 2 && matches!(bytes[start - 1], b'.' | b',') && bytes[start - 2].is_ascii_digit();
    if decimal_after || decimal_before {
        return None;
    }
    if on.card && is_card(run, &before, ctx) {
        return Some(Builtin::Card);
    }
    // Context is read only where the shape and checksum leave a question
    // (most digit runs in a text are dates, amounts and ids).
    if digits.len() == 9 {
        let routing_context =
            || before.has(cx::ROUTING_WORDS) || cx::key_names(ctx.key, cx::ROUTING_KEYS);
        if on.aba && run.bare() && aba(digits) && routing_context() {
            return Some(Builtin::Aba);
        }
        let dashed = run.grouped_as(&[3, 2, 4]) && run.separator == Some(b'-');
        let spaced = run.grouped_as(&[3, 2, 4]) || run.bare();
        if on.ssn && ssn_valid(digits) {
            let ssn_context = || before.has(cx::SSN_WORDS) || cx::key_names(ctx.key, cx::SSN_KEYS);
            if dashed || (spaced && ssn_context()) {
                return Some(Builtin::Ssn);
            }
        }
    }
    if on.phone && is_national_phone(run, &before, ctx) {
        return Some(Builtin::Phone);
    }
    if on.account
        && (6..=17).contains(&digits.len())
        && (before.has(cx::ACCOUNT_WORDS) || cx::key_names(ctx.key, cx::ACCOUNT_KEYS))
    {
        return Some(Builtin::Account);
    }
    None
}

/// 13–19 digits, Luhn-valid, in an issuer's range and length, written bare
/// or grouped as cards are printed; not after an "order"/"invoice" word
/// unless a card word is nearer.
fn is_card(run: &DigitRun, before: &Before, ctx: Context<'_>) -> bool {
    let d = run.digits();
    if !(13..=19).contains(&d.len()) || !issuer_length(d) || !luhn(d) {
        return false;
    }
    let grouping_ok = run.bare()
        || (!run.mixed
            && (run.groups()[..run.groups().len() - 1]
                .iter()
                .all(|g| *g == 4)
                && run.groups().last().is_some_and(|g| (1..=4).contains(g))
                || run.grouped_as(&[4, 6, 5])
                || run.grouped_as(&[4, 6, 4])
                || run.grouped_as(&[4, 3, 3, 3])));
    if !grouping_ok {
        return false;
    }
    let card = before.nearest(cx::CARD_WORDS);
    let not_card = before.labels_this(cx::NOT_CARD_WORDS);
    let key_not_card =
        cx::key_names(ctx.key, cx::NOT_CARD_KEYS) && !cx::key_names(ctx.key, cx::CARD_KEYS);
    match (card, not_card) {
        (_, None) => !key_not_card,
        (None, Some(_)) => false,
        (Some(c), Some(n)) => c < n,
    }
}

/// Whether the first digits belong to a card issuer that issues numbers of
/// this length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
/// Maestro, Mir, RuPay).
fn issuer_length(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    let len = d.len();
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    match p1 {
        4 => matches!(len, 13 | 16 | 19),
        5 => {
            (51..=55).contains(&p2) && len == 16
                || matches!(p2, 50 | 56..=59) && (12..=19).contains(&len)
        }
        2 => {
            (2221..=2720).contains(&p4) && len == 16
                || (2200..=2204).contains(&p4) && (16..=19).contains(&len)
        }
        3 => {
            matches!(p2, 34 | 37) && len == 15
                || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&len)
        }
        6 => {
            (p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || (622_126..=622_925).contains(&p6))
                && (16..=19).contains(&len)
                || p2 == 62 && (16..=19).contains(&len)
                || p2 == 60 && len == 16
                || matches!(p2, 63 | 67 | 68 | 69) && (12..=19).contains(&len)
        }
        8 => matches!(p2, 81 | 82) && len == 16,
        _ => false,
    }
}

/// Area 001–899 but not 666, group 01–99, serial 0001–9999.
fn ssn_valid(d: &[u8]) -> bool {
    let n = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, b| a * 10 + u32::from(b - b'0'));
    let (area, group, serial) = (n(0..3), n(3..5), n(5..9));
    (1..900).contains(&area) && area != 666 && group != 0 && serial != 0
}

/// A North American number written 3-3-4 (or 1-3-3-4) with dashes or
/// dots; with spaces, or as ten bare digits, only where a phone word or key
/// says so.
fn is_national_phone(run: &DigitRun, before: &Before, ctx: Context<'_>) -> bool {
    let shaped = run.grouped_as(&[3, 3, 4]) || run.grouped_as(&[1, 3, 3, 4]);
    let context = || before.has(cx::PHONE_WORDS) || cx::key_names(ctx.key, cx::PHONE_KEYS);
    let nanp = |d: &[u8]| {
        let d = if d.len() == 11 && d[0] == b'1' {
            &d[1..]
        } else {
            d
        };
        d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3])
    };
    if !nanp(run.digits()) {
        return (7..=15).contains(&run.digits().len()) && !run.mixed && context();
    }
    match run.separator {
        Some(b'-') | Some(b'.') => shaped,
        Some(_) => shaped && context(),
        None => context(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Enabled = Enabled {
        card: true,
        ssn: true,
        aba: true,
        account: true,
        phone: true,
    };

    fn what(text: &str, needle: &str) -> Option<Builtin> {
        what_in(text, needle, None)
    }

    fn what_in(text: &str, needle: &str, key: Option<&str>) -> Option<Builtin> {
        let start = text.find(needle).unwrap();
        let end = start + needle.len();
        let run = DigitRun::parse(needle).unwrap();
        classify(text, start, end, &run, Context { key }, ALL)
    }

    #[test]
    fn cards_by_checksum_issuer_and_grouping() {
        assert_eq!(
            what("4111111111111111", "4111111111111111"),
            Some(Builtin::Card)
        );
        assert_eq!(
            what("pay with 4111 1111 1111 1111", "4111 1111 1111 1111"),
            Some(Builtin::Card)
        );
        assert_eq!(
            what("amex 3782-822463-10005", "3782-822463-10005"),
            Some(Builtin::Card)
        );
        assert_eq!(
            what("4111111111111112", "4111111111111112"),
            None,
            "bad Luhn"
        );
        assert_eq!(what("order 4111111111111111", "4111111111111111"), None);
        assert_eq!(
            what("order 7, card 4111111111111111", "4111111111111111"),
            Some(Builtin::Card)
        );
        assert_eq!(
            what_in("4111111111111111", "4111111111111111", Some("order_id")),
            None
        );
        assert_eq!(
            what("ts 1733299200000", "1733299200000"),
            None,
            "no issuer starts with 1"
        );
        assert_eq!(
            what("411 1111 1111 11111", "411 1111 1111 11111"),
            None,
            "not a card grouping"
        );
    }

    #[test]
    fn ssns_dashed_or_with_context_and_never_invalid_ones() {
        assert_eq!(what("078-05-1120", "078-05-1120"), Some(Builtin::Ssn));
        assert_eq!(
            what("id 078051120", "078051120"),
            None,
            "bare without context"
        );
        assert_eq!(what("SSN 078051120", "078051120"), Some(Builtin::Ssn));
        assert_eq!(
            what_in("078 05 1120", "078 05 1120", Some("ssn")),
            Some(Builtin::Ssn)
        );
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_eq!(what(bad, bad), None, "{bad}");
        }
    }

    #[test]
    fn routing_account_and_phone_by_context() {
        assert_eq!(what("routing 021000021", "021000021"), Some(Builtin::Aba));
        assert_eq!(what("id 021000021", "021000021"), None);
        assert_eq!(
            what_in("021000021", "021000021", Some("routing_number")),
            Some(Builtin::Aba)
        );
        assert_eq!(
            what("acct 000123456789", "000123456789"),
            Some(Builtin::Account)
        );
        assert_eq!(what("balance 000123456789", "000123456789"), None);
        assert_eq!(
            what("account balance 1234567.89", "1234567"),
            None,
            "an amount"
        );
        assert_eq!(
            what("+44 20 7946 0958", "44 20 7946 0958"),
            Some(Builtin::Phone)
        );
        assert_eq!(
            what("call 212-555-0147", "212-555-0147"),
            Some(Builtin::Phone)
        );
        assert_eq!(what("on 2026-12-03", "2026-12-03"), None, "a date");
        assert_eq!(
            what("ref 212 555 0147", "212 555 0147"),
            None,
            "spaces need a phone word"
        );
    }
}
