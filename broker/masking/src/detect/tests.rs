//! The scanner over whole strings: what each built-in detector finds, and
//! what it must leave alone.

use super::*;

fn scanner() -> Scanner {
    Scanner::new(&[], &|_| String::new()).expect("built-in patterns compile")
}

/// (text found, detector name) of every finding in `text`.
fn found(text: &str) -> Vec<(String, &'static str)> {
    found_in(text, None)
}

fn found_in(text: &str, key: Option<&str>) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    scanner().scan(text, Context { key }, &[true; 8], &mut out);
    out.iter()
        .map(|f| {
            (
                text[f.start..f.end].to_string(),
                Builtin::ALL[f.detector].name(),
            )
        })
        .collect()
}

fn pair(s: &str, d: &'static str) -> (String, &'static str) {
    (s.to_string(), d)
}

#[test]
fn a_customer_record_in_prose() {
    let text = "Jane Sample, card 4111 1111 1111 1111, SSN 078-05-1120, IBAN GB82 WEST 1234 5698 7654 32, \
                routing 021000021, account 000123456789, jane.sample@example.com, +1 212 555 0147";
    assert_eq!(
        found(text),
        vec![
            pair("4111 1111 1111 1111", "card"),
            pair("078-05-1120", "ssn"),
            pair("GB82 WEST 1234 5698 7654 32", "iban"),
            pair("021000021", "routing"),
            pair("000123456789", "account"),
            pair("jane.sample@example.com", "email"),
            pair("1 212 555 0147", "phone"),
        ]
    );
}

#[test]
fn ibans_of_every_length_with_and_without_spaces() {
    for iban in [
        "NO9386011117947",                  // 15, the shortest
        "DE89370400440532013000",           // 22
        "FR1420041010050500013M02606",      // 27, with a letter
        "MT84MALT011000012345MTLCAST001S",  // 31
        "LC55HEMM000100010012001200023015", // 32
    ] {
        assert_eq!(
            found(&format!("pay to {iban} today")),
            vec![pair(iban, "iban")],
            "{iban}"
        );
    }
    assert_eq!(
        found("DE89 3704 0044 0532 0130 00"),
        vec![pair("DE89 3704 0044 0532 0130 00", "iban")]
    );
    assert!(found("DE89370400440532013001").is_empty(), "bad mod-97");
    assert!(
        found("XX89370400440532013000").is_empty(),
        "no such country"
    );
}

#[test]
fn what_merely_looks_like_a_number_is_left_alone() {
    for text in [
        "order 4111111111111111 shipped",
        "invoice #4111-1111-1111-1111",
        "created 1733299200123",
        "total 1234567.89 USD",
        "v2.14.102938",
        "id 123456789",
        "on 2026-12-03 at 10:42",
        "request 8f14e45f-ceea-467f-a0e6-5a9b1c2d3e4f",
        "qty 250000",
    ] {
        assert!(found(text).is_empty(), "{text}: {:?}", found(text));
    }
}

#[test]
fn context_from_the_json_key() {
    assert_eq!(
        found_in("000123456789", Some("accountNumber")),
        vec![pair("000123456789", "account")]
    );
    assert_eq!(
        found_in("078051120", Some("customer_ssn")),
        vec![pair("078051120", "ssn")]
    );
    assert!(found_in("4111111111111111", Some("order_id")).is_empty());
    assert_eq!(
        found_in("4111111111111111", Some("card_or_order")),
        vec![pair("4111111111111111", "card")]
    );
}

#[test]
fn secrets_only_the_secret_part() {
    assert_eq!(
        found("postgres://app:s3cr3t-pw@db.internal:5432/core"),
        vec![pair("s3cr3t-pw", "secret")]
    );
    assert_eq!(
        found("Authorization: Bearer abcdefghijklmnop1234"),
        vec![pair("abcdefghijklmnop1234", "secret")]
    );
    assert_eq!(
        found("key AKIAIOSFODNN7EXAMPLE"),
        vec![pair("AKIAIOSFODNN7EXAMPLE", "secret")]
    );
    assert_eq!(
        found("password=hunter22&user=x"),
        vec![pair("hunter22", "secret")]
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
    assert_eq!(found(&format!("k: {pem} done")), vec![pair(pem, "secret")]);
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl";
    assert_eq!(found(jwt), vec![pair(jwt, "secret")]);
}

#[test]
fn disabled_detectors_find_nothing() {
    let mut on = [true; 8];
    on[Builtin::Card.id()] = false;
    let mut out = Vec::new();
    scanner().scan(
        "card 4111111111111111 ssn 078-05-1120",
        Context::default(),
        &on,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].detector, Builtin::Ssn.id());
}

#[test]
fn non_ascii_text_around_findings() {
    assert_eq!(
        found("Kartennummer: 4111111111111111 — geprüft ✓"),
        vec![pair("4111111111111111", "card")]
    );
    assert!(found("ünïcödé only ✓✓✓ 日本語").is_empty());
}

proptest::proptest! {
    /// Scanning never panics and findings are ordered, disjoint and on
    /// char boundaries, whatever the text.
    #[test]
    fn findings_are_well_formed(text in "\\PC{0,200}|[0-9 \\-+@.a-zA-Z:/]{0,200}") {
        let mut out = Vec::new();
        scanner().scan(&text, Context::default(), &[true; 8], &mut out);
        let mut last = 0;
        for f in &out {
            proptest::prop_assert!(f.start >= last && f.start < f.end && f.end <= text.len());
            proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            last = f.end;
        }
    }
}

#[test]
fn an_id_the_iban_pattern_swallows_does_not_hide_what_follows() {
    // "TX45844240 IBAN AE83 …" matches the IBAN pattern from `TX`; the
    // scan goes on after the id, so the IBAN, card, SSN or routing number
    // behind it is still found.
    let p = crate::MaskingProfile::compile(
        "t",
        &crate::ProfileConfig::default(),
        crate::HashKey::from_bytes([0; 32]),
    )
    .unwrap();
    for (text, value, label) in [
        (
            "req=TX45844240 IBAN AE070331234567890123456",
            "AE070331234567890123456",
            "iban",
        ),
        (
            "req=DD43077506 JCB 3530 1113 3330 0000",
            "3530 1113 3330 0000",
            "card",
        ),
        ("req=TX41037699 SSN 078-05-1120 ok", "078-05-1120", "ssn"),
        ("req=TX92258093 ABA 021000021", "021000021", "routing"),
        (
            "GB82WEST12345698765432 DE89370400440532013000",
            "DE89370400440532013000",
            "iban",
        ),
    ] {
        let found = p.findings(text, crate::Context::default());
        let start = text.find(value).unwrap();
        assert!(
            found.iter().any(|f| f.start == start
                && f.end == start + value.len()
                && p.label(f.detector) == label),
            "{text}: {found:?}"
        );
    }
}
