//! IBANs: a candidate (two letters, two digits, 11–30 letters or digits,
//! single spaces allowed) is an IBAN when a prefix of it has its country's
//! length, BBAN format and a valid mod-97 checksum (`iban_validate`, which
//! keeps the registry's table of countries).

/// The length in bytes of the IBAN `candidate` starts with, if any.
pub fn validated(candidate: &str) -> Option<usize> {
    let mut compact = [0u8; 34];
    // End offset in `candidate` after each compact character.
    let mut ends = [0usize; 34];
    let mut n = 0;
    for (i, b) in candidate.bytes().enumerate() {
        if b == b' ' {
            continue;
        }
        if n == compact.len() {
            break;
        }
        compact[n] = b;
        ends[n] = i + 1;
        n += 1;
    }
    // Longest first: the candidate may run on into the next word.
    (15..=n).rev().find_map(|len| {
        let text = std::str::from_utf8(&compact[..len]).ok()?;
        text.parse::<iban::Iban>().ok().map(|_| ends[len - 1])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ibans_of_several_countries_with_or_without_spaces() {
        for ok in [
            "GB82WEST12345698765432",
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
            "BR1800360305000010009795493C1",
        ] {
            assert_eq!(validated(ok), Some(ok.len()), "{ok}");
        }
        assert_eq!(validated("GB82WEST12345698765433"), None, "checksum");
        assert_eq!(validated("XX82WEST12345698765432"), None, "no such country");
        assert_eq!(
            validated("GB82WEST12345698765432 USD"),
            Some(22),
            "runs on into a word"
        );
    }
}
