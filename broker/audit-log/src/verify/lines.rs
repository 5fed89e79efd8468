//! The lines of an export as the verifier reads them: bounded reading,
//! and the JSON each kind of line holds.

use std::io::BufRead;

use serde::de::IgnoredAny;
use serde::Deserialize;
use tlog_tiles::Hash;

/// Longest line read: as Go's hoopverify, room for a 12 MiB body in base64.
pub const MAX_LINE_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
pub(super) struct HeaderLine {
    pub(super) hoop_audit_export: u64,
    pub(super) origin: String,
    pub(super) first_seq: u64,
    pub(super) tree_size: u64,
}

/// Any line but the header and events; which member it has says what it is.
#[derive(Deserialize)]
pub(super) struct OtherLine {
    pub(super) seq: Option<IgnoredAny>,
    pub(super) checkpoint: Option<String>,
    pub(super) consistency: Option<ConsistencyProof>,
    pub(super) body: Option<String>,
    pub(super) data: Option<String>,
    pub(super) inclusion: Option<InclusionProof>,
}

#[derive(Deserialize)]
pub(super) struct ConsistencyProof {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) proof: Vec<Hash>,
}

#[derive(Deserialize)]
pub(super) struct InclusionProof {
    pub(super) seq: u64,
    pub(super) tree_size: u64,
    pub(super) proof: Vec<Hash>,
}

/// The members of an event the verifier reads.
#[derive(Deserialize)]
pub(super) struct EventLine {
    pub(super) seq: u64,
    pub(super) message_sha256: Option<String>,
    pub(super) message_bytes: Option<u64>,
}

pub(super) enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// The next line into `buf` without its `\n` (a `\r` stays: the entry is
/// hashed as it is in the file); `false` at the end.
pub(super) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, LineError> {
    buf.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > MAX_LINE_BYTES {
            return Err(LineError::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(true);
        }
    }
}

/// `N` from a line opening `{"seq":N,` or `{"seq":N}`: a JSON integer.
pub(super) fn leading_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(br#"{"seq":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, after) = rest.split_at(digits);
    if digits == 0
        || (digits > 1 && number[0] == b'0')
        || !matches!(after.first(), Some(b',' | b'}'))
    {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = std::io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while read_line(&mut reader, &mut buf).ok().unwrap() {
            out.push(buf.clone());
        }
        out
    }

    #[test]
    fn lines_keep_carriage_returns_and_end_without_a_newline() {
        assert_eq!(
            lines(b"ab\r\ncd\n\nef"),
            vec![b"ab\r".to_vec(), b"cd".to_vec(), Vec::new(), b"ef".to_vec()]
        );
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"x\n"), vec![b"x".to_vec()]);
    }

    #[test]
    fn a_line_past_the_limit_stops_the_reading() {
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut long.as_slice(), &mut buf),
            Err(LineError::TooLong)
        ));
        assert!(buf.len() <= MAX_LINE_BYTES);
        let exact = vec![b'a'; MAX_LINE_BYTES];
        assert!(read_line(&mut exact.as_slice(), &mut buf).ok().unwrap());
    }

    #[test]
    fn seq_must_be_a_plain_integer_and_the_first_member() {
        assert_eq!(leading_seq(br#"{"seq":12,"v":1}"#), Some(12));
        assert_eq!(leading_seq(br#"{"seq":0}"#), Some(0));
        for bad in [
            &br#"{"seq":012,"v":1}"#[..],
            br#"{"seq":1.5}"#,
            br#"{"seq":-1}"#,
            br#"{"seq":"1"}"#,
            br#"{ "seq":1}"#,
            br#"{"seq":99999999999999999999999}"#,
        ] {
            assert_eq!(leading_seq(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
