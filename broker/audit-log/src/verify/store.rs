//! The online check of a whole store: every leaf hash and stored hash
//! recomputed from the entries (the sequencer's own code, so the same tree
//! an append builds) and compared with what is stored; every stored
//! checkpoint's signature checked and its root compared with the tree.

use tlog_tiles::{stored_hash_count, stored_hashes_for_record_hash, Hash};

use super::{Problem, Report, VerifyError};
use crate::checkpoint::{open_checkpoint, TrustedKeys};
use crate::entry::{leaf_hash, BatchHashes};
use crate::store::{meta_keys, AuditStore, StoreError, MAX_CHECKPOINTS_PER_READ};
use crate::tree::{self, StoreHashes};

/// Entries checked at a time.
const PAGE: u64 = 1_000;

fn store_error(e: StoreError) -> VerifyError {
    VerifyError::new(Problem::Store, None, None, e.to_string())
}

/// Verifies the store with the verifier keys given. Entries retention
/// removed (before `first_seq`) cannot be recomputed; their stored hashes
/// are taken as they are.
pub fn verify_store(store: &dyn AuditStore, keys: &[String]) -> Result<Report, VerifyError> {
    let keys = TrustedKeys::parse(keys)
        .map_err(|e| VerifyError::new(Problem::BadKey, None, None, e.to_string()))?;
    let origin = store
        .meta(meta_keys::ORIGIN)
        .map_err(store_error)?
        .ok_or_else(|| VerifyError::new(Problem::Store, None, None, "the store has no origin"))?;
    let size = store.tree_size().map_err(store_error)?;
    let first = store.first_seq().map_err(store_error)?;

    let mut next = first;
    while next < size {
        let end = next.saturating_add(PAGE).min(size);
        check_page(store, next..end)?;
        next = end;
    }

    let mut checkpoints = 0u64;
    // The largest checkpoint size that matched: a rewrite lies after it.
    let mut good_below = 0u64;
    let mut cursor = 0u64;
    loop {
        let page = store
            .checkpoints(cursor..u64::MAX, MAX_CHECKPOINTS_PER_READ)
            .map_err(store_error)?;
        let Some(last) = page.last().map(|c| c.size) else {
            break;
        };
        for c in &page {
            let which = format!("stored checkpoint of size {}", c.size);
            let opened = open_checkpoint(c.note.as_bytes(), &keys)
                .map_err(|e| VerifyError::checkpoint(None, &which, e))?;
            if opened.origin != origin {
                return Err(VerifyError::new(
                    Problem::WrongOrigin,
                    None,
                    None,
                    format!(
                        "{which} is of `{}`, the store's origin is `{origin}`",
                        opened.origin
                    ),
                ));
            }
            if opened.size != c.size || c.size > size {
                return Err(VerifyError::new(
                    Problem::Inconsistent,
                    None,
                    None,
                    format!("{which} signs size {}, the tree has {size}", opened.size),
                ));
            }
            let root = tree::root(store, c.size).map_err(store_error)?;
            if opened.root != root {
                return Err(VerifyError::new(
                    Problem::Inconsistent,
                    None,
                    None,
                    format!(
                        "{which} does not match the tree recomputed from the entries: an event from seq {good_below} to {} was rewritten after it was signed, with the hashes to match",
                        c.size.saturating_sub(1)
                    ),
                ));
            }
            good_below = c.size;
            checkpoints += 1;
        }
        match last.checked_add(1) {
            Some(after) if page.len() == MAX_CHECKPOINTS_PER_READ => cursor = after,
            _ => break,
        }
    }

    let root = tree::root(store, size).map_err(store_error)?;
    Ok(Report {
        origin,
        events: size - first,
        checkpoints,
        first_seq: first,
        last_seq: size.checked_sub(1).filter(|_| size > first),
        tree_size: size,
        root: root.to_string(),
    })
}

/// Recomputes the stored hashes entries `seqs` add and compares them with
/// the store's; names the first seq whose hashes differ.
fn check_page(store: &dyn AuditStore, seqs: std::ops::Range<u64>) -> Result<(), VerifyError> {
    let entries = store.entries(seqs.clone()).map_err(store_error)?;
    let base = stored_hash_count(seqs.start);
    let stored = StoreHashes::new(store);
    let mut recomputed: Vec<Hash> = Vec::new();
    // (seq, index in `recomputed` of the first hash it added)
    let mut written: Vec<(u64, usize)> = Vec::with_capacity(entries.len());
    let mut expect = seqs.start;
    for e in &entries {
        if e.seq != expect {
            return Err(VerifyError::new(
                Problem::Missing,
                Some(expect),
                None,
                "the entry is missing from the store (its hashes are there)",
            ));
        }
        let prefix = format!("{{\"seq\":{}", e.seq);
        if !e.entry.starts_with(prefix.as_bytes())
            || !matches!(e.entry.get(prefix.len()), Some(b',' | b'}'))
        {
            return Err(VerifyError::new(
                Problem::Changed,
                Some(e.seq),
                None,
                "the entry's \"seq\" member is not its sequence number",
            ));
        }
        let reader = BatchHashes {
            stored: &stored,
            stored_count: base,
            new: &recomputed,
        };
        let added = stored_hashes_for_record_hash(e.seq, leaf_hash(&e.entry), &reader)
            .map_err(|t| store_error(stored.error(t)))?;
        written.push((e.seq, recomputed.len()));
        recomputed.extend(added);
        expect += 1;
    }
    if expect != seqs.end {
        return Err(VerifyError::new(
            Problem::Missing,
            Some(expect),
            None,
            "the entry is missing from the store (its hashes are there)",
        ));
    }
    let indexes: Vec<u64> = (base..base + recomputed.len() as u64).collect();
    let held = store.read_hashes(&indexes).map_err(store_error)?;
    if held.len() != recomputed.len() {
        return Err(VerifyError::new(
            Problem::Store,
            Some(seqs.start),
            None,
            format!(
                "asked for {} stored hashes, got {}",
                recomputed.len(),
                held.len()
            ),
        ));
    }
    if let Some(j) = held.iter().zip(&recomputed).position(|(h, r)| h != r) {
        let at = written
            .partition_point(|(_, start)| *start <= j)
            .saturating_sub(1);
        let (seq, start) = written[at];
        let detail = if j == start {
            "the entry does not hash to its stored leaf hash: the entry or its hash was changed"
        } else {
            "a stored interior hash written with this entry differs from the one recomputed"
        };
        return Err(VerifyError::new(Problem::Changed, Some(seq), None, detail));
    }
    Ok(())
}
