//! Context: the words just before a candidate, and the JSON key it sits
//! under. Bare nine-digit numbers, account numbers and phone numbers
//! written with spaces are masked only when their context says what they
//! are; a Luhn-valid number after "order" or "invoice" is not a card.

/// How far back a context word may be, in bytes.
const LOOKBACK: usize = 40;

/// Words (lowercase) that name an account number.
pub const ACCOUNT_WORDS: &[&str] = &["account", "acct", "a/c", "acc no", "acc#", "acc. no"];
/// Words that name a Social Security number.
pub const SSN_WORDS: &[&str] = &["ssn", "social security", "soc sec", "ss#", "ss no"];
/// Words that name a routing number.
pub const ROUTING_WORDS: &[&str] = &["routing", "aba", "rtn", "transit", "fedwire"];
/// Words that name a payment card.
pub const CARD_WORDS: &[&str] = &[
    "card",
    "visa",
    "mastercard",
    "amex",
    "pan",
    "credit",
    "debit",
    "cc#",
    "cc no",
];
/// Words after which a Luhn-valid number is an identifier, not a card
/// (unless a card word is nearer).
pub const NOT_CARD_WORDS: &[&str] = &[
    "order",
    "invoice",
    "tracking",
    "ref",
    "reference",
    "transaction",
    "txn",
    "confirmation",
    "ticket",
    "shipment",
    "serial",
    "isbn",
    "imei",
];
/// Words that name a phone number.
pub const PHONE_WORDS: &[&str] = &["phone", "tel", "mobile", "cell", "fax", "call", "sms"];

/// What surrounds a candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The JSON key the text sits under, if any.
    pub key: Option<&'a str>,
}

/// The text just before `start` (at most [`LOOKBACK`] bytes), lowercased.
pub struct Before {
    buf: [u8; LOOKBACK],
    len: usize,
}

impl Before {
    pub fn of(text: &str, start: usize) -> Self {
        let from = start.saturating_sub(LOOKBACK);
        let bytes = &text.as_bytes()[from..start];
        let mut buf = [0u8; LOOKBACK];
        for (d, s) in buf.iter_mut().zip(bytes) {
            *d = s.to_ascii_lowercase();
        }
        Self {
            buf,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Where the nearest of `words` ends, counted back from the candidate
    /// (smaller is nearer); `None` when none is there. A word must start
    /// and end at a word boundary (a plural `s` allowed), so "pan" is not
    /// found in "company" nor "call" in "called"; and it must be in the
    /// candidate's clause: a `;`, a line break or a sentence's end between
    /// them means the word was about something else ("acct 12345678.
    /// Ticket 023238").
    pub fn nearest(&self, words: &[&str]) -> Option<usize> {
        self.find(words, false)
    }

    pub fn has(&self, words: &[&str]) -> bool {
        self.nearest(words).is_some()
    }

    /// Whether one of `words` labels the candidate itself: nothing but
    /// punctuation and at most three filler words ("no", "number", "id",
    /// "is", …) between them. For words that make a number *not* protected
    /// ("order number 4539…"): "ref TX123, charged to 4539…" is a card.
    pub fn labels_this(&self, words: &[&str]) -> Option<usize> {
        self.find(words, true)
    }

    fn find(&self, words: &[&str], labels: bool) -> Option<usize> {
        // One pass over the word starts (at most 40 bytes), comparing only
        // the words that begin with the byte there: this runs for every
        // digit run in a text, so it must cost next to nothing.
        let hay = self.bytes();
        let mut best: Option<usize> = None;
        for at in 0..hay.len() {
            let first = hay[at];
            if !first.is_ascii_alphabetic() || (at > 0 && hay[at - 1].is_ascii_alphanumeric()) {
                continue;
            }
            for w in words {
                let w = w.as_bytes();
                if w.first() != Some(&first) || !hay[at..].starts_with(w) {
                    continue;
                }
                let mut end = at + w.len();
                if hay.get(end) == Some(&b's')
                    && !hay.get(end + 1).is_some_and(u8::is_ascii_alphabetic)
                {
                    end += 1;
                }
                if hay.get(end).is_some_and(u8::is_ascii_alphabetic) {
                    continue;
                }
                let gap = &hay[end..];
                let fits = if labels {
                    only_filler(gap)
                } else {
                    !breaks_clause(gap)
                };
                let distance = gap.len();
                if fits && best.is_none_or(|b| distance < b) {
                    best = Some(distance);
                }
            }
        }
        best
    }
}

/// Whether `gap` (what lies between a context word and the candidate)
/// holds a clause break: `;`, `|`, a line break, a digit (the word named
/// an earlier number), or `.`, `!`, `?` before a space, except a `.` right
/// after the word ("Acct. 1234").
fn breaks_clause(gap: &[u8]) -> bool {
    gap.iter().enumerate().any(|(i, b)| match b {
        // Another number between them: the word named that one.
        b';' | b'|' | b'\n' | b'\r' | b'0'..=b'9' => true,
        b'.' | b'!' | b'?' => i > 0 && gap.get(i + 1).is_some_and(u8::is_ascii_whitespace),
        _ => false,
    })
}

/// Words that may sit between a label and its number.
const FILLER: &[&[u8]] = &[
    b"no", b"nr", b"num", b"number", b"id", b"is", b"of", b"for", b"was",
];

fn only_filler(gap: &[u8]) -> bool {
    let mut words = 0;
    for token in gap
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        words += 1;
        if words > 3 || !FILLER.contains(&token) {
            return false;
        }
    }
    !breaks_clause(gap)
}

/// Key words (lowercase, no separators) that name an account number.
pub const ACCOUNT_KEYS: &[&str] = &["account", "acct", "iban"];
pub const SSN_KEYS: &[&str] = &["ssn", "socialsecurity", "taxid", "tin"];
pub const ROUTING_KEYS: &[&str] = &["routing", "aba", "rtn", "transit"];
pub const CARD_KEYS: &[&str] = &["card", "pan", "cc", "creditcard"];
pub const PHONE_KEYS: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "fax",
    "msisdn",
];
pub const NOT_CARD_KEYS: &[&str] = &[
    "order",
    "invoice",
    "tracking",
    "ref",
    "transaction",
    "txn",
    "ticket",
    "serial",
];

/// Whether a JSON key names one of `words` (lowercase, no separators): a
/// word must begin where a part of the key begins (after `_`, `-`, `.`, a
/// space, or a lower-to-upper case change), so `accountNumber`,
/// `account_number` and `Account-Number` name "account", and `company_id`
/// does not name "pan" nor `database` "aba".
pub fn key_names(key: Option<&str>, words: &[&str]) -> bool {
    let Some(key) = key else { return false };
    let mut buf = [0u8; 64];
    let mut starts = 0u64;
    let mut n = 0;
    let mut prev: Option<u8> = None;
    let mut boundary = true;
    for b in key.bytes() {
        if matches!(b, b'_' | b'-' | b'.' | b' ') {
            boundary = true;
            prev = None;
            continue;
        }
        if n == buf.len() {
            break;
        }
        if prev.is_some_and(|p| p.is_ascii_lowercase()) && b.is_ascii_uppercase() {
            boundary = true;
        }
        if boundary {
            starts |= 1 << n;
            boundary = false;
        }
        buf[n] = b.to_ascii_lowercase();
        prev = Some(b);
        n += 1;
    }
    let key = &buf[..n];
    words.iter().any(|w| {
        let w = w.as_bytes();
        (0..n).any(|at| starts & (1 << at) != 0 && key[at..].starts_with(w))
    })
}

/// A normalized key, for comparing with field rules: lowercase, without
/// `_`, `-`, `.` and spaces.
pub fn normalized_key_eq(key: &str, normalized: &str) -> bool {
    let mut want = normalized.bytes();
    for b in key.bytes() {
        if matches!(b, b'_' | b'-' | b'.' | b' ') {
            continue;
        }
        if want.next() != Some(b.to_ascii_lowercase()) {
            return false;
        }
    }
    want.next().is_none()
}

/// What [`normalized_key_eq`] compares against.
pub fn normalize_key(key: &str) -> String {
    key.bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.' | b' '))
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_at_word_starts_only() {
        let t = "Company acct no: 12345678";
        let b = Before::of(t, t.find("123").unwrap());
        assert!(b.has(ACCOUNT_WORDS));
        assert!(!b.has(CARD_WORDS), "`pan` inside `company` is no card word");
        let t = "order 4111111111111111, card 4111111111111111";
        let b = Before::of(t, t.rfind("4111").unwrap());
        assert!(b.has(CARD_WORDS));
        assert_eq!(
            b.labels_this(NOT_CARD_WORDS),
            None,
            "`order` named the first number"
        );
    }

    #[test]
    fn a_word_counts_only_in_the_candidates_clause_and_whole() {
        let at = |t: &str, needle: &str| Before::of(t, t.rfind(needle).unwrap());
        assert!(
            !at("customer called about 887983034", "887").has(PHONE_WORDS),
            "`called` is not `call`"
        );
        assert!(at("call 2125550147", "212").has(PHONE_WORDS));
        assert!(!at("acct 12345678. Ticket 023238", "023").has(ACCOUNT_WORDS));
        assert!(!at("acct 12345678 and ticket 023238", "023").has(ACCOUNT_WORDS));
        assert!(
            at("Acct. 12345678", "123").has(ACCOUNT_WORDS),
            "an abbreviation's dot"
        );
        assert!(
            at("checking accounts: 12345678", "123").has(ACCOUNT_WORDS),
            "a plural"
        );
        assert!(!at("acct\n12345678", "123").has(ACCOUNT_WORDS));
        // A not-card word must label the number itself.
        assert!(at("order number 4111111111111111", "4111")
            .labels_this(NOT_CARD_WORDS)
            .is_some());
        assert!(at("Order #: 4111111111111111", "4111")
            .labels_this(NOT_CARD_WORDS)
            .is_some());
        assert!(at("ref TX123, charged to 4111111111111111", "4111")
            .labels_this(NOT_CARD_WORDS)
            .is_none());
        assert!(at("refund to 4111111111111111", "4111")
            .labels_this(NOT_CARD_WORDS)
            .is_none());
    }

    #[test]
    fn keys_are_compared_without_case_or_separators() {
        assert!(key_names(Some("accountNumber"), ACCOUNT_KEYS));
        assert!(key_names(Some("ROUTING_NUMBER"), ROUTING_KEYS));
        assert!(key_names(Some("customer-ssn"), SSN_KEYS));
        assert!(!key_names(Some("amount"), ACCOUNT_KEYS));
        assert!(!key_names(Some("company_id"), CARD_KEYS));
        assert!(!key_names(Some("database"), ROUTING_KEYS));
        assert!(normalized_key_eq("Account_Number", "accountnumber"));
        assert!(!normalized_key_eq("account_numbers", "accountnumber"));
        assert_eq!(normalize_key("date-of birth"), "dateofbirth");
    }
}
