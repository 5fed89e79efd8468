//! Entries: turning an event's fields (`{"v":1,...}`) into the bytes the
//! tree commits to (`{"seq":N,"v":1,...}`), and sequencing a batch — the
//! leaf hashes and stored hashes it adds — against the hashes a store
//! already holds. Shared by every backend, so they all build the same tree.
//!
//! `seq` is spliced in as the first member rather than the event being
//! serialized again: the log never re-encodes what the broker recorded,
//! and a verifier finds `seq` at a fixed place (`{"seq":` opens the line).

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;
use sha2::{Digest, Sha256};
use tlog_tiles::{record_hash, stored_hash_count, stored_hashes_for_record_hash, Hash, HashReader};

use crate::store::PendingEntry;

/// Largest entry, in bytes: the tlog-tiles entry limit (docs/audit.md).
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// What splicing `"seq":N,` adds at most (`N` of 20 digits).
const MAX_SEQ_OVERHEAD: usize = r#""seq":,"#.len() + 20;

/// Largest `PendingEntry::fields` accepted: room for any `seq`, so an event
/// accepted at `append` never fails in the batch (and takes the batch with
/// it) for its size.
pub const MAX_FIELDS_BYTES: usize = MAX_ENTRY_BYTES - MAX_SEQ_OVERHEAD;

/// Largest tree a store may hold: far beyond any log, and small enough that
/// the stored-hash arithmetic (about 2 hashes per entry) cannot overflow.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Why an event cannot become an entry. The caller's mistake, not the
/// log's: it is refused before it is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the event is not a JSON object starting with '{{': {0}")]
    NotAnObject(String),
    #[error("the event is {bytes} bytes, over the {max}-byte limit of a leaf: store large parts beside it as bodies")]
    TooLarge { bytes: usize, max: usize },
    #[error("the event spans more than one line (a raw newline or carriage return in it)")]
    MultiLine,
    #[error("the event has a top-level \"seq\"; the log assigns it")]
    HasSeq,
    #[error("body {sha256} does not have that SHA-256")]
    BodyMismatch { sha256: String },
    #[error("body {sha256} is not named in the event (its leaf must carry the SHA-256)")]
    BodyNotNamed { sha256: String },
}

/// Checks what [`entry_bytes`] and a verifier rely on: one line, a JSON
/// object without `seq`, small enough for any `seq`, and bodies that are
/// what the event says. Run by the caller's task before the event is
/// queued, so a bad event fails alone.
pub fn check_pending(entry: &PendingEntry) -> Result<(), EntryError> {
    check_fields(&entry.fields)?;
    for (sha256, data) in &entry.bodies {
        let hex = hex(sha256);
        if <[u8; 32]>::from(Sha256::digest(data)) != *sha256 {
            return Err(EntryError::BodyMismatch { sha256: hex });
        }
        let quoted = format!("\"{hex}\"");
        if !entry
            .fields
            .windows(quoted.len())
            .any(|w| w == quoted.as_bytes())
        {
            return Err(EntryError::BodyNotNamed { sha256: hex });
        }
    }
    Ok(())
}

/// The fields half of [`check_pending`].
pub fn check_fields(fields: &[u8]) -> Result<(), EntryError> {
    if fields.len() > MAX_FIELDS_BYTES {
        return Err(EntryError::TooLarge {
            bytes: fields.len(),
            max: MAX_FIELDS_BYTES,
        });
    }
    if fields.first() != Some(&b'{') {
        return Err(EntryError::NotAnObject("it does not start with '{'".into()));
    }
    if fields.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return Err(EntryError::MultiLine);
    }
    let mut de = serde_json::Deserializer::from_slice(fields);
    let has_seq = de
        .deserialize_map(TopLevelKeys)
        .and_then(|has_seq| de.end().map(|()| has_seq))
        .map_err(|e| EntryError::NotAnObject(e.to_string()))?;
    if has_seq {
        return Err(EntryError::HasSeq);
    }
    Ok(())
}

/// Builds an entry from parts valid by construction, so that appending it
/// (`AuditLog::append_built`) skips [`check_pending`]: its parse of every
/// byte of the event and its second SHA-256 of every body, on the request
/// path. The head is serialized here by serde_json (one JSON object on one
/// line, whatever it holds); bodies are hashed here, once, and named in the
/// event. The one part taken on trust is a JSON member's text
/// ([`EntryBuilder::json_member`]): the caller parsed it or serialized it
/// itself; debug builds (every test) parse it again to hold callers to that.
#[derive(Debug)]
pub struct EntryBuilder {
    /// The object so far, without its closing brace.
    open: Vec<u8>,
    bodies: Vec<([u8; 32], bytes::Bytes)>,
}

/// An entry made by [`EntryBuilder`]: what [`check_pending`] checks holds.
#[derive(Debug)]
pub struct BuiltEntry(PendingEntry);

impl BuiltEntry {
    /// The event's fields, as `PendingEntry::fields`.
    pub fn fields(&self) -> &[u8] {
        &self.0.fields
    }

    /// The entry, for a store written directly (`hoop-broker audit`).
    pub fn into_pending(self) -> PendingEntry {
        self.0
    }
}

impl EntryBuilder {
    /// Starts from `head`, which must serialize as a JSON object without a
    /// top-level `seq`.
    pub fn new<T: serde::Serialize + ?Sized>(head: &T) -> Result<Self, EntryError> {
        // Room for a typical event and its message, so the head and the
        // members after it are written without growing the buffer.
        let mut open = Vec::with_capacity(1024);
        serde_json::to_writer(&mut open, head)
            .map_err(|e| EntryError::NotAnObject(e.to_string()))?;
        // serde_json writes an object, and only an object, as `{…}`.
        if open.first() != Some(&b'{') {
            return Err(EntryError::NotAnObject("it does not start with '{'".into()));
        }
        // serde_json writes no line breaks and escapes none of `seq`'s
        // letters, so a top-level `seq` shows as `"seq"`. A line break or a
        // `\u` escape can only come from a value that writes its own text
        // (`RawValue`); `"seq"` nested or inside a string is rare. Only then
        // is the head parsed whole.
        let suspect = open.iter().any(|b| *b == b'\n' || *b == b'\r')
            || open
                .windows(5)
                .any(|w| w == b"\"seq\"" || w.starts_with(b"\\u"));
        if suspect {
            check_fields(&open)?;
        }
        open.pop();
        Ok(Self {
            open,
            bodies: Vec::new(),
        })
    }

    /// Bytes of the fields so far.
    pub fn len(&self) -> usize {
        self.open.len() + 1
    }

    /// Never: a head is at least `{`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Adds `"name":json`. `json` is one JSON value on one line that this
    /// process parsed or serialized (not checked in release builds);
    /// `name` a plain lowercase key, not `seq`.
    pub fn json_member(&mut self, name: &'static str, json: &[u8]) -> Result<(), EntryError> {
        check_name(name)?;
        if json.iter().any(|b| *b == b'\n' || *b == b'\r') {
            return Err(EntryError::MultiLine);
        }
        // Cheap in any build: what no JSON value starts with (an empty
        // message a failed serialization would leave, say) is refused.
        if !json
            .first()
            .is_some_and(|b| b"{[\"-0123456789tfn".contains(b))
        {
            return Err(EntryError::NotAnObject(format!(
                "member {name} is not a JSON value"
            )));
        }
        if cfg!(debug_assertions) {
            let mut de = serde_json::Deserializer::from_slice(json);
            serde::de::Deserialize::deserialize(&mut de)
                .and_then(|IgnoredAny| de.end())
                .map_err(|e| EntryError::NotAnObject(format!("member {name}: {e}")))?;
        }
        self.separator();
        self.open.push(b'"');
        self.open.extend_from_slice(name.as_bytes());
        self.open.extend_from_slice(b"\":");
        self.open.extend_from_slice(json);
        Ok(())
    }

    /// Stores `data` beside the leaf and names it in the event:
    /// `"{name}_sha256":"<hex>","{name}_bytes":N`.
    pub fn body_member(
        &mut self,
        name: &'static str,
        data: bytes::Bytes,
    ) -> Result<(), EntryError> {
        check_name(name)?;
        let sha: [u8; 32] = Sha256::digest(&data).into();
        self.separator();
        self.open.extend_from_slice(
            format!(
                "\"{name}_sha256\":\"{}\",\"{name}_bytes\":{}",
                hex(&sha),
                data.len()
            )
            .as_bytes(),
        );
        self.bodies.push((sha, data));
        Ok(())
    }

    fn separator(&mut self) {
        if self.open.len() > 1 {
            self.open.push(b',');
        }
    }

    /// The entry, with the columns the store indexes.
    pub fn finish(mut self, index: crate::store::EntryIndex) -> Result<BuiltEntry, EntryError> {
        self.open.push(b'}');
        let fields = self.open;
        if fields.len() > MAX_FIELDS_BYTES {
            return Err(EntryError::TooLarge {
                bytes: fields.len(),
                max: MAX_FIELDS_BYTES,
            });
        }
        let entry = PendingEntry {
            fields,
            bodies: self.bodies,
            index,
        };
        // Every test runs the whole check: a builder bug fails there, not
        // in a verifier's hands.
        if cfg!(debug_assertions) {
            check_pending(&entry)?;
        }
        Ok(BuiltEntry(entry))
    }
}

/// A member name the builder writes without escaping: `[a-z0-9_]+`, and
/// not the `seq` the log assigns.
fn check_name(name: &str) -> Result<(), EntryError> {
    if name == "seq" {
        return Err(EntryError::HasSeq);
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(EntryError::NotAnObject(format!(
            "member name {name:?} is not [a-z0-9_]+"
        )));
    }
    Ok(())
}

/// Walks an object's top-level members, skipping values, noting `seq`.
struct TopLevelKeys;

impl<'de> Visitor<'de> for TopLevelKeys {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut has_seq = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            has_seq |= key == "seq";
            map.next_value::<IgnoredAny>()?;
        }
        Ok(has_seq)
    }
}

/// The entry for `fields` at `seq`: `{"seq":N,` + the rest of the object,
/// or `{"seq":N}` for an empty one.
pub fn entry_bytes(seq: u64, fields: &[u8]) -> Result<Vec<u8>, EntryError> {
    let Some((b'{', rest)) = fields.split_first() else {
        return Err(EntryError::NotAnObject("it does not start with '{'".into()));
    };
    let empty = rest.trim_ascii_start().first() == Some(&b'}');
    let head = if empty {
        format!("{{\"seq\":{seq}")
    } else {
        format!("{{\"seq\":{seq},")
    };
    let rest = if empty { rest.trim_ascii_start() } else { rest };
    let len = head.len() + rest.len();
    if len > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge {
            bytes: len,
            max: MAX_ENTRY_BYTES,
        });
    }
    let mut entry = Vec::with_capacity(len);
    entry.extend_from_slice(head.as_bytes());
    entry.extend_from_slice(rest);
    Ok(entry)
}

/// RFC 6962 leaf hash, `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    record_hash(entry)
}

/// Lowercase hex, as events name bodies.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One entry of a sequenced batch.
#[derive(Debug)]
pub struct SequencedEntry<'a> {
    pub seq: u64,
    pub entry: Vec<u8>,
    pub pending: &'a PendingEntry,
}

/// A batch with its sequence numbers and the stored hashes it adds, ready
/// for a backend to write in one transaction.
#[derive(Debug)]
pub struct SequencedBatch<'a> {
    pub entries: Vec<SequencedEntry<'a>>,
    /// The stored-hash index of `hashes[0]`: `stored_hash_count(size)`.
    pub first_hash_index: u64,
    pub hashes: Vec<Hash>,
    /// The tree size once the batch is written.
    pub new_size: u64,
}

/// Why a batch could not be sequenced.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error("event {index} of the batch: {error}")]
    Entry { index: usize, error: EntryError },
    #[error("the tree would exceed {MAX_TREE_SIZE} entries")]
    TreeFull,
    /// Reading the store's hashes failed (the reader knows why) or the
    /// tree math refused (a store that does not hold the hashes it should).
    #[error("tree hashes: {0}")]
    Tree(#[from] tlog_tiles::Error),
}

/// Sequences `batch` onto a tree of `size` entries whose stored hashes
/// `stored` reads: entry bytes, leaf hashes and every stored hash the batch
/// adds. Hashes the batch itself produced are read from the batch, since
/// the store does not hold them until the batch commits.
pub fn sequence_batch<'a, R: HashReader>(
    size: u64,
    batch: &'a [PendingEntry],
    stored: &R,
) -> Result<SequencedBatch<'a>, SequenceError> {
    let count = u64::try_from(batch.len()).map_err(|_| SequenceError::TreeFull)?;
    let new_size = size
        .checked_add(count)
        .filter(|n| *n <= MAX_TREE_SIZE)
        .ok_or(SequenceError::TreeFull)?;
    let first_hash_index = stored_hash_count(size);
    let mut entries = Vec::with_capacity(batch.len());
    let mut hashes = Vec::with_capacity(batch.len() * 2);
    for (index, (seq, pending)) in (size..new_size).zip(batch).enumerate() {
        let entry = entry_bytes(seq, &pending.fields)
            .map_err(|error| SequenceError::Entry { index, error })?;
        let reader = BatchHashes {
            stored,
            stored_count: first_hash_index,
            new: &hashes,
        };
        let added = stored_hashes_for_record_hash(seq, leaf_hash(&entry), &reader)?;
        hashes.extend(added);
        entries.push(SequencedEntry {
            seq,
            entry,
            pending,
        });
    }
    Ok(SequencedBatch {
        entries,
        first_hash_index,
        hashes,
        new_size,
    })
}

/// The store's hashes below `stored_count`, then the ones not yet
/// written (`new`, from index `stored_count` on). Returns exactly the
/// hashes asked for or an error, never fewer (tlog asserts on that).
pub struct BatchHashes<'r, R> {
    pub stored: &'r R,
    pub stored_count: u64,
    pub new: &'r [Hash],
}

impl<R: HashReader> HashReader for BatchHashes<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let old: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| *i < self.stored_count)
            .collect();
        let old_hashes = if old.is_empty() {
            Vec::new()
        } else {
            self.stored.read_hashes(&old)?
        };
        if old_hashes.len() != old.len() {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        let mut old_hashes = old_hashes.into_iter();
        let mut out = Vec::with_capacity(indexes.len());
        for &index in indexes {
            let hash = if index < self.stored_count {
                old_hashes.next()
            } else {
                usize::try_from(index - self.stored_count)
                    .ok()
                    .and_then(|i| self.new.get(i).copied())
            };
            out.push(hash.ok_or(tlog_tiles::Error::IndexesNotInTree)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::MemoryHashes;
    use tlog_tiles::{stored_hashes, tree_hash};

    fn pending(fields: &str) -> PendingEntry {
        PendingEntry {
            fields: fields.as_bytes().to_vec(),
            bodies: Vec::new(),
            index: Default::default(),
        }
    }

    #[test]
    fn seq_becomes_the_first_member() {
        assert_eq!(
            entry_bytes(7, br#"{"v":1,"type":"x"}"#).unwrap(),
            br#"{"seq":7,"v":1,"type":"x"}"#
        );
        assert_eq!(entry_bytes(0, b"{}").unwrap(), br#"{"seq":0}"#);
        assert_eq!(entry_bytes(3, b"{ }").unwrap(), br#"{"seq":3}"#);
        assert!(matches!(
            entry_bytes(0, b"[1]"),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            entry_bytes(0, b""),
            Err(EntryError::NotAnObject(_))
        ));
    }

    #[test]
    fn fields_are_checked_before_queueing() {
        check_fields(br#"{"v":1,"message":{"seq":1}}"#).unwrap();
        assert_eq!(check_fields(br#"{"v":1,"seq":1}"#), Err(EntryError::HasSeq));
        assert_eq!(
            check_fields(b"{\"v\":1,\n\"x\":2}"),
            Err(EntryError::MultiLine)
        );
        assert!(matches!(
            check_fields(b" {}"),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            check_fields(br#"{"v":1"#),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            check_fields(br#"{"v":1} {}"#),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            check_fields(br#"{"v":1,}"#),
            Err(EntryError::NotAnObject(_))
        ));
    }

    #[test]
    fn size_limit_leaves_room_for_any_seq() {
        let filler = |n: usize| format!(r#"{{"x":"{}"}}"#, "a".repeat(n - 8));
        let largest = filler(MAX_FIELDS_BYTES);
        assert_eq!(largest.len(), MAX_FIELDS_BYTES);
        check_fields(largest.as_bytes()).unwrap();
        let entry = entry_bytes(u64::MAX, largest.as_bytes()).unwrap();
        assert_eq!(entry.len(), MAX_ENTRY_BYTES);
        assert!(matches!(
            check_fields(filler(MAX_FIELDS_BYTES + 1).as_bytes()),
            Err(EntryError::TooLarge { .. })
        ));
    }

    #[test]
    fn bodies_must_match_and_be_named() {
        let data = bytes::Bytes::from_static(b"a big answer");
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let mut p = pending(&format!(r#"{{"v":1,"message_sha256":"{}"}}"#, hex(&sha)));
        p.bodies.push((sha, data.clone()));
        check_pending(&p).unwrap();
        p.bodies[0].1 = bytes::Bytes::from_static(b"another answer");
        assert!(matches!(
            check_pending(&p),
            Err(EntryError::BodyMismatch { .. })
        ));
        let mut q = pending(r#"{"v":1}"#);
        q.bodies.push((sha, data));
        assert!(matches!(
            check_pending(&q),
            Err(EntryError::BodyNotNamed { .. })
        ));
    }

    #[derive(serde::Serialize)]
    struct Head<'a> {
        v: u8,
        #[serde(rename = "type")]
        kind: &'a str,
        detail: serde_json::Value,
    }

    #[test]
    fn a_built_entry_is_what_check_pending_accepts() {
        let head = Head {
            v: 1,
            kind: "mcp.response",
            detail: serde_json::json!({"seq": 3, "note": "a \"seq\" inside"}),
        };
        let mut b = EntryBuilder::new(&head).unwrap();
        b.json_member("message", br#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
            .unwrap();
        let data = bytes::Bytes::from_static(b"a big answer");
        b.body_member("blob", data.clone()).unwrap();
        let built = b.finish(Default::default()).unwrap().into_pending();
        check_pending(&built).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&built.fields).unwrap();
        assert_eq!(v["type"], "mcp.response");
        assert_eq!(v["detail"]["seq"], 3);
        assert_eq!(v["message"]["id"], 1);
        assert_eq!(v["blob_bytes"], data.len());
        let sha: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(v["blob_sha256"], hex(&sha));
        assert_eq!(built.bodies, vec![(sha, data)]);

        // A head alone, and an empty one.
        let alone = EntryBuilder::new(&head)
            .unwrap()
            .finish(Default::default())
            .unwrap();
        check_fields(alone.fields()).unwrap();
        let empty = EntryBuilder::new(&serde_json::json!({})).unwrap();
        assert_eq!(empty.finish(Default::default()).unwrap().fields(), b"{}");
        let mut empty = EntryBuilder::new(&serde_json::json!({})).unwrap();
        empty.json_member("message", b"1").unwrap();
        assert_eq!(
            empty.finish(Default::default()).unwrap().fields(),
            br#"{"message":1}"#
        );
    }

    #[test]
    fn what_a_builder_cannot_make_is_refused() {
        assert!(matches!(
            EntryBuilder::new(&[1, 2]),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            EntryBuilder::new("text"),
            Err(EntryError::NotAnObject(_))
        ));
        assert_eq!(
            EntryBuilder::new(&serde_json::json!({"v": 1, "seq": 2})).unwrap_err(),
            EntryError::HasSeq
        );
        let mut b = EntryBuilder::new(&serde_json::json!({"v": 1})).unwrap();
        assert_eq!(
            b.json_member("message", b"{\n}").unwrap_err(),
            EntryError::MultiLine
        );
        assert_eq!(b.json_member("seq", b"1").unwrap_err(), EntryError::HasSeq);
        assert!(matches!(
            b.json_member("message", b""),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            b.json_member("message", b"}"),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            b.json_member("Bad\"name", b"1"),
            Err(EntryError::NotAnObject(_))
        ));
        b.json_member(
            "message",
            format!("\"{}\"", "a".repeat(MAX_FIELDS_BYTES)).as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            b.finish(Default::default()),
            Err(EntryError::TooLarge { .. })
        ));
    }

    /// A value that writes its own text (`RawValue`) cannot smuggle in a
    /// line break or an escaped `seq`: such a head is parsed whole.
    #[test]
    fn a_head_with_raw_text_is_checked_whole() {
        let line_break = serde_json::value::RawValue::from_string("{\n\"a\":1}".into()).unwrap();
        assert_eq!(
            EntryBuilder::new(&*line_break).unwrap_err(),
            EntryError::MultiLine
        );
        let escaped = serde_json::value::RawValue::from_string(r#"{"\u0073eq":1}"#.into()).unwrap();
        assert_eq!(
            EntryBuilder::new(&*escaped).unwrap_err(),
            EntryError::HasSeq
        );
    }

    /// The builder's size limit is the one `check_fields` applies.
    #[test]
    fn a_built_entry_may_be_exactly_the_largest() {
        let head = serde_json::json!({"v": 1});
        // {"v":1,"message":"…"}
        let room = MAX_FIELDS_BYTES - r#"{"v":1,"message":""}"#.len();
        let at = |n: usize| {
            let mut b = EntryBuilder::new(&head).unwrap();
            b.json_member("message", format!("\"{}\"", "a".repeat(n)).as_bytes())
                .unwrap();
            b.finish(Default::default())
        };
        let largest = at(room).unwrap();
        assert_eq!(largest.fields().len(), MAX_FIELDS_BYTES);
        check_fields(largest.fields()).unwrap();
        assert!(matches!(at(room + 1), Err(EntryError::TooLarge { .. })));
    }

    /// Debug builds hold a caller to "JSON this process made": every test
    /// that records a message checks it.
    #[cfg(debug_assertions)]
    #[test]
    fn debug_builds_parse_json_members_again() {
        let mut b = EntryBuilder::new(&serde_json::json!({"v": 1})).unwrap();
        assert!(matches!(
            b.json_member("message", br#"{"id":1"#),
            Err(EntryError::NotAnObject(_))
        ));
        assert!(matches!(
            b.json_member("message", b"1 2"),
            Err(EntryError::NotAnObject(_))
        ));
    }

    /// Sequencing in batches of any split builds the tree entry-by-entry
    /// appends (tlog's `stored_hashes`) build.
    #[test]
    fn batches_build_the_same_tree_as_single_appends() {
        let events: Vec<PendingEntry> = (0..37)
            .map(|i| pending(&format!(r#"{{"v":1,"i":{i}}}"#)))
            .collect();
        let mut one_by_one = MemoryHashes(Vec::new());
        for (seq, p) in events.iter().enumerate() {
            let entry = entry_bytes(seq as u64, &p.fields).unwrap();
            let added = stored_hashes(seq as u64, &entry, &one_by_one).unwrap();
            one_by_one.0.extend(added);
        }
        for split in [1, 2, 5, 16, 37] {
            let mut store = MemoryHashes(Vec::new());
            for chunk in events.chunks(split) {
                let size = stored_size(&store);
                let b = sequence_batch(size, chunk, &store).unwrap();
                assert_eq!(b.first_hash_index, store.0.len() as u64);
                assert_eq!(b.entries[0].seq, size);
                store.0.extend(b.hashes);
            }
            assert_eq!(store.0, one_by_one.0, "split {split}");
            assert_eq!(
                tree_hash(37, &store).unwrap(),
                tree_hash(37, &one_by_one).unwrap()
            );
        }
    }

    fn stored_size(h: &MemoryHashes) -> u64 {
        (0..=h.0.len() as u64)
            .find(|n| stored_hash_count(*n) == h.0.len() as u64)
            .unwrap()
    }

    #[test]
    fn a_reader_returning_too_few_hashes_is_an_error_not_a_panic() {
        struct Short;
        impl HashReader for Short {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
                Ok(Vec::new())
            }
        }
        let events = vec![pending("{}")];
        assert!(matches!(
            sequence_batch(1, &events, &Short),
            Err(SequenceError::Tree(_))
        ));
    }

    #[test]
    fn a_batch_past_the_largest_tree_is_refused() {
        let events = vec![pending("{}")];
        assert!(matches!(
            sequence_batch(MAX_TREE_SIZE, &events, &MemoryHashes(Vec::new())),
            Err(SequenceError::TreeFull)
        ));
    }
}
