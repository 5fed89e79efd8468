//! One journal record's bytes. Private to hoop (the journal is a buffer in
//! front of the store, not part of what a verifier reads), so a compact
//! binary form, little-endian:
//!
//! ```text
//! u32 payload length | 8 bytes: SHA-256(payload)[..8] | payload
//! payload: u64 position | i64 time_ns | str kind | opt subject | opt target
//!          | opt name | opt decision | opt exchange | opt session
//!          | bytes fields | u32 body count | (32-byte sha256 | bytes data)*
//! str, bytes: u32 length | data        opt: u32::MAX for none, else str
//! ```
//!
//! The check catches a record torn by a crash mid-write and a damaged one;
//! decoding never trusts a length it has not checked against what is left.
//! A length of 0 ends the records: past the last one, a segment may hold
//! zeros written ahead (see `Journal::keep_room` in mod.rs).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::Position;
use crate::entry::check_pending;
use crate::store::{EntryIndex, PendingEntry};

const HEAD: usize = 4 + 8;
const NONE: u32 = u32::MAX;

/// Appends the record for `entry` at `position` to `out`.
pub(crate) fn encode(position: Position, entry: &PendingEntry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEAD]);
    out.extend_from_slice(&position.to_le_bytes());
    let ix = &entry.index;
    out.extend_from_slice(&ix.time_ns.to_le_bytes());
    put_bytes(out, ix.kind.as_bytes());
    for opt in [
        ix.subject.as_deref(),
        ix.target.as_deref(),
        ix.name.as_deref(),
        ix.decision.as_deref(),
        ix.exchange.as_deref(),
        ix.session.as_deref(),
    ] {
        match opt {
            Some(s) => put_bytes(out, s.as_bytes()),
            None => out.extend_from_slice(&NONE.to_le_bytes()),
        }
    }
    put_bytes(out, &entry.fields);
    out.extend_from_slice(&(entry.bodies.len() as u32).to_le_bytes());
    for (sha, data) in &entry.bodies {
        out.extend_from_slice(sha);
        put_bytes(out, data);
    }
    let payload_len = (out.len() - start - HEAD) as u32;
    let check: [u8; 32] = Sha256::digest(&out[start + HEAD..]).into();
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + HEAD].copy_from_slice(&check[..8]);
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    // Entries and bodies are far below 4 GiB (MAX_ENTRY_BYTES; the
    // broker's message limit), so the length always fits.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// A segment as read back.
pub(crate) struct Segment {
    pub(crate) records: Vec<(Position, PendingEntry)>,
    /// Bytes up to the end of the last whole, intact record.
    pub(crate) good_len: usize,
    /// Everything past `good_len` is zeros (or there is nothing): the
    /// room the journal writes ahead, not a damaged record.
    pub(crate) clean_end: bool,
    /// The position after the last record (the first one's, if none).
    pub(crate) next: Position,
}

/// Reads a segment whose first record is at `first`. Stops at the first
/// record that is cut short or fails its check (`good_len` says where);
/// a record that passes its check but is not a valid event, or is out of
/// order, is an error: the file was damaged in a way no crash does.
pub(crate) fn decode_segment(bytes: &[u8], first: Position) -> Result<Segment, String> {
    let mut records = Vec::new();
    let mut at = 0;
    let mut next = first;
    // Bounded: each pass consumes at least HEAD bytes or stops.
    while bytes.len() - at >= HEAD {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        if len == 0 {
            // No record is empty (a position alone is 8 bytes): the end.
            break;
        }
        let Some(payload) = bytes.get(at + HEAD..at + HEAD + len) else {
            break;
        };
        let check: [u8; 32] = Sha256::digest(payload).into();
        if check[..8] != bytes[at + 4..at + HEAD] {
            break;
        }
        let (position, entry) =
            decode_payload(payload).map_err(|e| format!("journal record at byte {at}: {e}"))?;
        if position != next {
            return Err(format!(
                "journal record at byte {at} is number {position}, where {next} was due"
            ));
        }
        records.push((position, entry));
        next += 1;
        at += HEAD + len;
    }
    Ok(Segment {
        records,
        good_len: at,
        clean_end: bytes[at..].iter().all(|b| *b == 0),
        next,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "cut short")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "cut short")?,
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8".into())
    }

    fn opt(&mut self) -> Result<Option<String>, String> {
        let n = self.u32()?;
        if n == NONE {
            return Ok(None);
        }
        let data = self.take(n as usize)?;
        String::from_utf8(data.to_vec())
            .map(Some)
            .map_err(|_| "a string is not UTF-8".into())
    }
}

fn decode_payload(payload: &[u8]) -> Result<(Position, PendingEntry), String> {
    let mut r = Reader(payload);
    let position = r.u64()?;
    let time_ns = r.u64()? as i64;
    let kind = r.string()?;
    let subject = r.opt()?;
    let target = r.opt()?;
    let name = r.opt()?;
    let decision = r.opt()?;
    let exchange = r.opt()?;
    let session = r.opt()?;
    let fields = r.bytes()?.to_vec();
    let count = r.u32()?;
    let mut bodies = Vec::new();
    for _ in 0..count {
        let sha: [u8; 32] = r.take(32)?.try_into().map_err(|_| "cut short")?;
        let data = bytes::Bytes::copy_from_slice(r.bytes()?);
        bodies.push((sha, data));
    }
    if !r.0.is_empty() {
        return Err("bytes left over after the record".into());
    }
    let entry = PendingEntry {
        fields,
        bodies,
        index: EntryIndex {
            time_ns,
            kind: Cow::Owned(kind),
            subject,
            target,
            name,
            decision: decision.map(Cow::Owned),
            exchange,
            session,
        },
    };
    check_pending(&entry).map_err(|e| e.to_string())?;
    Ok((position, entry))
}
