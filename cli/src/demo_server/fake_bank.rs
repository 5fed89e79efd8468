//! Fake, well-formed banking data for the demo server.
//!
//! Every identifier here is a published test value (the Visa test card, the
//! SSN the Social Security Administration voided after it appeared in a wallet
//! advert, the IBAN from the IBAN registry's examples, the routing number of a
//! large bank's public test account). They pass their checksums, so data loss
//! prevention rules that validate checksums fire on them, yet none belongs to a
//! real person. The checksum helpers let tests prove that.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Visa test card number; it passes the Luhn check.
pub const CARD_NUMBER: &str = "4111111111111111";
/// A US Social Security number the SSA voided in 1938 (the "Woolworth" SSN).
pub const SSN: &str = "078-05-1120";
/// The IBAN registry's example British IBAN; its mod-97 checksum is valid.
pub const IBAN: &str = "GB82WEST12345698765432";
/// An ABA routing transit number with a valid checksum.
pub const ROUTING_NUMBER: &str = "021000021";
/// A made-up bank account number.
pub const ACCOUNT_NUMBER: &str = "000123456789";

/// One customer, as `get_customer` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    /// The identifier the caller asked for.
    pub customer_id: String,
    /// Full name.
    pub name: String,
    /// E-mail address (an `example.com` address).
    pub email: String,
    /// Payment card number (passes Luhn).
    pub card_number: String,
    /// US Social Security number.
    pub ssn: String,
    /// International bank account number (valid mod-97 checksum).
    pub iban: String,
    /// ABA routing transit number (valid checksum).
    pub routing_number: String,
    /// Bank account number.
    pub account_number: String,
}

impl Customer {
    /// The fake record for `customer_id`: the identifier is echoed back, the
    /// sensitive fields are always the same published test values.
    pub fn fake(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            name: "Jane Q. Sample".to_owned(),
            email: "jane.sample@example.com".to_owned(),
            card_number: CARD_NUMBER.to_owned(),
            ssn: SSN.to_owned(),
            iban: IBAN.to_owned(),
            routing_number: ROUTING_NUMBER.to_owned(),
            account_number: ACCOUNT_NUMBER.to_owned(),
        }
    }
}

/// One transaction row of `export_transactions`.
pub struct Transaction {
    /// Booking date, `YYYY-MM-DD`.
    pub date: &'static str,
    /// Free-text description.
    pub description: &'static str,
    /// Signed amount in minor units (cents).
    pub amount_cents: i64,
}

/// The fixed transaction history every demo account has, oldest first.
pub const TRANSACTIONS: &[Transaction] = &[
    Transaction {
        date: "2025-01-03",
        description: "Salary ACME Corp",
        amount_cents: 420_000,
    },
    Transaction {
        date: "2025-01-05",
        description: "Rent",
        amount_cents: -150_000,
    },
    Transaction {
        date: "2025-01-12",
        description: "Grocery Store #42",
        amount_cents: -8_734,
    },
    Transaction {
        date: "2025-02-01",
        description: "Card payment Coffee Shop",
        amount_cents: -450,
    },
    Transaction {
        date: "2025-02-14",
        description: "Transfer to savings",
        amount_cents: -50_000,
    },
];

/// Whether `date` looks like an ISO `YYYY-MM-DD` date (month and day ranges
/// are checked, not the calendar).
pub fn is_iso_date(date: &str) -> bool {
    let bytes = date.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = date.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    matches!(
        (digits(0..4), digits(5..7), digits(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

/// Renders the transactions of `account` between `from` and `to`
/// (inclusive ISO dates; either may be absent) as CSV with a header row.
pub fn transactions_csv(account: &str, from: Option<&str>, to: Option<&str>) -> String {
    let mut csv = String::from("date,account,description,amount,currency\n");
    let account = csv_field(account);
    for transaction in TRANSACTIONS {
        if from.is_some_and(|from| transaction.date < from)
            || to.is_some_and(|to| transaction.date > to)
        {
            continue;
        }
        let sign = if transaction.amount_cents < 0 {
            "-"
        } else {
            ""
        };
        let cents = transaction.amount_cents.unsigned_abs();
        csv.push_str(&format!(
            "{},{},{},{sign}{}.{:02},USD\n",
            transaction.date,
            account,
            csv_field(transaction.description),
            cents / 100,
            cents % 100,
        ));
    }
    csv
}

/// Quotes a CSV field when it holds a separator, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Luhn check of a digit string (spaces are not allowed).
pub fn luhn_valid(number: &str) -> bool {
    if number.len() < 2 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 check of an IBAN without spaces.
pub fn iban_valid(iban: &str) -> bool {
    if iban.len() < 5 || !iban.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for byte in tail.bytes().chain(head.bytes()) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// ABA routing number checksum: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10).
pub fn aba_valid(routing: &str) -> bool {
    if routing.len() != 9 || !routing.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = routing
        .bytes()
        .enumerate()
        .map(|(index, byte)| u32::from(byte - b'0') * [3, 7, 1][index % 3])
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `ssn` has the `AAA-GG-SSSS` shape with no all-zero group and an
/// area number the SSA can issue (not 000, 666 or 900-999).
pub fn ssn_well_formed(ssn: &str) -> bool {
    let parts: Vec<&str> = ssn.split('-').collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    let numeric = |part: &str, len: usize| -> Option<u32> {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    match (numeric(area, 3), numeric(group, 2), numeric(serial, 4)) {
        (Some(area), Some(group), Some(serial)) => {
            area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_values_pass_their_checksums() {
        assert!(luhn_valid(CARD_NUMBER));
        assert!(iban_valid(IBAN));
        assert!(aba_valid(ROUTING_NUMBER));
        assert!(ssn_well_formed(SSN));
    }

    #[test]
    fn checksums_reject_altered_values() {
        assert!(!luhn_valid("4111111111111112"));
        assert!(!iban_valid("GB83WEST12345698765432"));
        assert!(!aba_valid("021000022"));
        assert!(!ssn_well_formed("000-05-1120"));
        assert!(!ssn_well_formed("078051120"));
    }

    #[test]
    fn csv_filters_by_date() {
        let csv = transactions_csv("acct-1", Some("2025-01-10"), Some("2025-02-01"));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert_eq!(lines[0], "date,account,description,amount,currency");
        assert_eq!(lines[1], "2025-01-12,acct-1,Grocery Store #42,-87.34,USD");
        assert_eq!(
            lines[2],
            "2025-02-01,acct-1,Card payment Coffee Shop,-4.50,USD"
        );
        assert!(transactions_csv("a,b", None, None).contains("\"a,b\""));
    }

    #[test]
    fn iso_dates() {
        assert!(is_iso_date("2025-01-31"));
        assert!(!is_iso_date("2025-13-01"));
        assert!(!is_iso_date("2025-1-01"));
        assert!(!is_iso_date("yesterday"));
    }
}
