//! The test suite every backend must pass, written over `dyn AuditStore`
//! so PostgreSQL runs the same functions SQLite does. A backend provides a
//! [`Harness`] and invokes [`conformance_suite!`] with it.

use tlog_tiles::{check_record, check_tree, stored_hash_count, stored_hashes, tree_hash, Hash};

use super::*;
use crate::entry::entry_bytes;
use crate::test_support::{event, events};
use crate::tree;

/// What the suite needs from a backend besides the trait.
pub(crate) trait Harness {
    /// A new, empty store.
    fn fresh(&mut self) -> Box<dyn AuditStore>;
    /// The store `fresh` made last, opened again (its last handle dropped).
    fn reopen(&mut self) -> Result<Box<dyn AuditStore>, StoreError>;
    /// Deletes the last stored hash behind the store's back.
    fn drop_last_hash(&mut self);
}

/// One `#[test]` per suite function, for a harness made by `$make`.
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::store::tests::conformance_suite!(@each $make;
            append_assigns_consecutive_seqs,
            entries_are_the_sequenced_bytes,
            a_failed_batch_leaves_nothing,
            the_root_is_the_tree_of_its_entries,
            inclusion_and_consistency_proofs_check,
            bodies_are_kept_beside_their_leaves,
            every_checkpoint_is_kept,
            search_filters_and_pages,
            time_ranges_map_to_seqs,
            metadata_is_kept,
            a_reopened_store_goes_on,
            a_missing_hash_is_refused_on_open,
            hashes_are_read_exactly_as_asked,
            reads_are_bounded,
            retention_removes_old_entries_and_keeps_the_proofs,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let mut harness = $make;
                $crate::store::tests::$name(&mut harness);
            }
        )*
    };
}
pub(crate) use conformance_suite;

/// A tree kept in memory by tlog's own functions, to compare with.
use crate::test_support::MemoryHashes as MemoryTree;

trait BuildTree {
    fn of(events: &[PendingEntry]) -> Self;
}

impl BuildTree for MemoryTree {
    fn of(events: &[PendingEntry]) -> Self {
        let mut tree = MemoryTree(Vec::new());
        for (seq, e) in events.iter().enumerate() {
            let entry = entry_bytes(seq as u64, &e.fields).unwrap();
            let added = stored_hashes(seq as u64, &entry, &tree).unwrap();
            tree.0.extend(added);
        }
        tree
    }
}

/// Appends events `0..n` in batches of the sizes given, cycling.
fn fill(store: &mut dyn AuditStore, n: u64, batches: &[u64]) {
    let mut next = 0;
    for &b in batches.iter().cycle() {
        if next >= n {
            break;
        }
        let end = (next + b).min(n);
        assert_eq!(store.append_batch(&events(next..end)).unwrap(), end);
        next = end;
    }
}

pub(crate) fn append_assigns_consecutive_seqs(h: &mut dyn Harness) {
    let mut s = h.fresh();
    assert_eq!(s.tree_size().unwrap(), 0);
    assert_eq!(s.first_seq().unwrap(), 0);
    assert_eq!(s.append_batch(&events(0..3)).unwrap(), 3);
    assert_eq!(s.append_batch(&events(3..4)).unwrap(), 4);
    assert_eq!(s.append_batch(&[]).unwrap(), 4);
    assert_eq!(s.tree_size().unwrap(), 4);
    let seqs: Vec<u64> = s.entries(0..10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    assert_eq!(s.read_hashes(&[stored_hash_count(4) - 1]).unwrap().len(), 1);
    assert!(s.read_hashes(&[stored_hash_count(4)]).is_err());
}

pub(crate) fn entries_are_the_sequenced_bytes(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 9, &[4, 5]);
    for e in s.entries(0..9).unwrap() {
        assert_eq!(e.entry, entry_bytes(e.seq, &event(e.seq).fields).unwrap());
        assert_eq!(e.time_ns, 1_000 + e.seq as i64);
    }
}

pub(crate) fn a_failed_batch_leaves_nothing(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 5, &[5]);
    let root = tree::root(s.as_ref(), 5).unwrap();
    // Not an object: refused by the sequencer, after good entries of the
    // same batch were sequenced.
    // Event 10 of the batch carries a body: it must not be kept either.
    let mut bad = events(5..12);
    bad[6].fields = b"[1]".to_vec();
    let err = s.append_batch(&bad).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    assert_eq!(s.tree_size().unwrap(), 5);
    assert!(s.entries(5..12).unwrap().is_empty());
    assert!(
        s.read_hashes(&[stored_hash_count(5)]).is_err(),
        "no hash of the batch kept"
    );
    assert_eq!(s.body(&event(10).bodies[0].0).unwrap(), None);
    assert_eq!(s.append_batch(&events(5..6)).unwrap(), 6);
    assert_eq!(tree::root(s.as_ref(), 5).unwrap(), root);
}

pub(crate) fn the_root_is_the_tree_of_its_entries(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 70, &[1, 7, 2, 31]);
    let memory = MemoryTree::of(&events(0..70));
    for n in 0..=70 {
        assert_eq!(
            tree::root(s.as_ref(), n).unwrap(),
            tree_hash(n, &memory).unwrap(),
            "size {n}"
        );
    }
    assert!(
        tree::root(s.as_ref(), 71).is_err(),
        "no root beyond the tree"
    );
}

pub(crate) fn inclusion_and_consistency_proofs_check(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 40, &[3, 13]);
    let entries = s.entries(0..40).unwrap();
    for size in [1, 2, 3, 17, 32, 33, 40] {
        let root = tree::root(s.as_ref(), size).unwrap();
        for e in entries.iter().take(size as usize) {
            let proof = tree::inclusion_proof(s.as_ref(), e.seq, size).unwrap();
            check_record(&proof, size, root, e.seq, crate::entry::leaf_hash(&e.entry)).unwrap();
        }
        for from in [1, 2, 5, 16, size] {
            if from > size {
                continue;
            }
            let proof = tree::consistency_proof(s.as_ref(), from, size).unwrap();
            check_tree(
                &proof,
                size,
                root,
                from,
                tree::root(s.as_ref(), from).unwrap(),
            )
            .unwrap();
        }
    }
    assert!(tree::consistency_proof(s.as_ref(), 0, 40)
        .unwrap()
        .is_empty());
    assert!(tree::inclusion_proof(s.as_ref(), 40, 40).is_err());
}

pub(crate) fn bodies_are_kept_beside_their_leaves(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 12, &[12]);
    let with_body = event(3);
    let (sha, data) = with_body.bodies[0].clone();
    assert_eq!(s.body(&sha).unwrap(), Some(data));
    assert_eq!(s.body(&[9; 32]).unwrap(), None);
    let entries = s.entries(0..12).unwrap();
    assert_eq!(entries[3].bodies, vec![sha]);
    assert_eq!(entries[10].bodies, vec![event(10).bodies[0].0]);
    assert!(entries
        .iter()
        .filter(|e| e.seq % 7 != 3)
        .all(|e| e.bodies.is_empty()));
    let found = s
        .search(&SearchQuery {
            exchange: Some(format!("{:016x}", 3)),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found[0].bodies, vec![sha]);
}

pub(crate) fn retention_removes_old_entries_and_keeps_the_proofs(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 30, &[30]);
    let root_before = tree::root(s.as_ref(), 30).unwrap();
    let body_of_3 = event(3).bodies[0].0;
    assert_eq!(s.expire_before(20).unwrap(), 20);
    assert_eq!(s.first_seq().unwrap(), 20);
    assert_eq!(s.tree_size().unwrap(), 30, "the size stays");
    assert!(s.entries(0..20).unwrap().is_empty());
    assert_eq!(s.entries(20..30).unwrap().len(), 10);
    assert_eq!(
        s.body(&body_of_3).unwrap(),
        None,
        "a body only old entries named goes"
    );
    assert_eq!(
        tree::root(s.as_ref(), 30).unwrap(),
        root_before,
        "hashes are kept"
    );
    assert!(tree::inclusion_proof(s.as_ref(), 25, 30).is_ok());
    // The newest entry is never removed, whatever the cut.
    assert_eq!(s.expire_before(u64::MAX).unwrap(), 9);
    assert_eq!(s.first_seq().unwrap(), 29);
    assert_eq!(s.tree_size().unwrap(), 30);
    assert_eq!(
        s.append_batch(&events(30..32)).unwrap(),
        32,
        "appending goes on after a cut"
    );
}

pub(crate) fn every_checkpoint_is_kept(h: &mut dyn Harness) {
    let mut s = h.fresh();
    assert_eq!(s.latest_checkpoint().unwrap(), None);
    s.put_checkpoint(10, "ten\n").unwrap();
    s.put_checkpoint(3, "three\n").unwrap();
    s.put_checkpoint(10, "ten\n").unwrap();
    s.put_checkpoint(10, "ten, by another key\n").unwrap();
    s.put_checkpoint(20, "twenty\n").unwrap();
    let all = s.checkpoints(0..u64::MAX, 100).unwrap();
    let listed: Vec<(u64, &str)> = all.iter().map(|c| (c.size, c.note.as_str())).collect();
    assert_eq!(
        listed,
        vec![
            (3, "three\n"),
            (10, "ten\n"),
            (10, "ten, by another key\n"),
            (20, "twenty\n")
        ]
    );
    assert_eq!(s.checkpoints(4..20, 100).unwrap().len(), 2);
    assert_eq!(s.checkpoints(11..u64::MAX, 1).unwrap()[0].size, 20);
    assert_eq!(s.checkpoints(0..u64::MAX, 1).unwrap().len(), 1);
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().size, 20);
}

pub(crate) fn search_filters_and_pages(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 60, &[25]);
    let find =
        |q: SearchQuery| -> Vec<u64> { s.search(&q).unwrap().iter().map(|e| e.seq).collect() };
    let all = |f: fn(u64) -> bool| -> Vec<u64> { (0..60).filter(|i| f(*i)).collect() };
    let q = |f: fn(&mut SearchQuery)| {
        let mut q = SearchQuery {
            limit: 1000,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(
        find(q(|q| q.subject = Some("alice".into()))),
        all(|i| i.is_multiple_of(2))
    );
    assert_eq!(
        find(q(|q| q.target = Some("mail".into()))),
        all(|i| i.is_multiple_of(3))
    );
    assert_eq!(
        find(q(|q| q.decision = Some("deny".into()))),
        all(|i| i.is_multiple_of(5))
    );
    assert_eq!(
        find(q(|q| q.session = Some("s1".into()))),
        all(|i| i.is_multiple_of(4))
    );
    assert_eq!(
        find(q(|q| q.exchange = Some(format!("{:016x}", 42)))),
        vec![42]
    );
    assert_eq!(find(q(|q| q.kind = Some("mcp.request".into()))).len(), 60);
    assert!(find(q(|q| q.kind = Some("auth.failure".into()))).is_empty());
    assert_eq!(find(q(|q| q.name = Some("read_file".into()))).len(), 60);
    assert_eq!(
        find(q(|q| {
            q.subject = Some("bob".into());
            q.target = Some("mail".into());
        })),
        all(|i| i % 2 == 1 && i.is_multiple_of(3))
    );
    assert_eq!(
        find(q(|q| {
            q.since_ns = Some(1_010);
            q.until_ns = Some(1_013);
        })),
        vec![10, 11, 12]
    );
    // Paging: after_seq and limit.
    let first = find(q(|q| {
        q.subject = Some("alice".into());
        q.limit = 4;
    }));
    assert_eq!(first, vec![0, 2, 4, 6]);
    let next = find(q(|q| {
        q.subject = Some("alice".into());
        q.after_seq = Some(6);
        q.limit = 4;
    }));
    assert_eq!(next, vec![8, 10, 12, 14]);
    assert!(find(q(|q| q.limit = 0)).is_empty());
    let hit = &s
        .search(&SearchQuery {
            exchange: Some(format!("{:016x}", 5)),
            limit: 1,
            ..Default::default()
        })
        .unwrap()[0];
    assert_eq!(hit.entry, entry_bytes(5, &event(5).fields).unwrap());
}

pub(crate) fn time_ranges_map_to_seqs(h: &mut dyn Harness) {
    let mut s = h.fresh();
    assert_eq!(s.seq_range_for_time(None, None).unwrap(), None);
    fill(s.as_mut(), 20, &[20]);
    assert_eq!(s.seq_range_for_time(None, None).unwrap(), Some(0..20));
    assert_eq!(
        s.seq_range_for_time(Some(1_005), Some(1_009)).unwrap(),
        Some(5..9)
    );
    assert_eq!(
        s.seq_range_for_time(Some(1_015), None).unwrap(),
        Some(15..20)
    );
    assert_eq!(s.seq_range_for_time(Some(5_000), None).unwrap(), None);
}

pub(crate) fn metadata_is_kept(h: &mut dyn Harness) {
    let mut s = h.fresh();
    assert_eq!(s.meta(meta_keys::ORIGIN).unwrap(), None);
    assert_eq!(
        s.init_meta(meta_keys::ORIGIN, "a.example/log").unwrap(),
        "a.example/log"
    );
    assert_eq!(
        s.init_meta(meta_keys::ORIGIN, "b.example/log").unwrap(),
        "a.example/log"
    );
    s.set_meta(meta_keys::VERIFIER_KEY, "k1").unwrap();
    s.set_meta(meta_keys::VERIFIER_KEY, "k2").unwrap();
    assert_eq!(
        s.meta(meta_keys::VERIFIER_KEY).unwrap().as_deref(),
        Some("k2")
    );
    drop(s);
    let s = h.reopen().unwrap();
    assert_eq!(
        s.meta(meta_keys::ORIGIN).unwrap().as_deref(),
        Some("a.example/log")
    );
}

pub(crate) fn a_reopened_store_goes_on(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 10, &[4]);
    s.put_checkpoint(10, "note\n").unwrap();
    let root = tree::root(s.as_ref(), 10).unwrap();
    drop(s);
    let mut s = h.reopen().unwrap();
    assert_eq!(s.tree_size().unwrap(), 10);
    assert_eq!(tree::root(s.as_ref(), 10).unwrap(), root);
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().size, 10);
    assert_eq!(s.append_batch(&events(10..12)).unwrap(), 12);
    assert_eq!(
        tree::root(s.as_ref(), 12).unwrap(),
        tree_hash(12, &MemoryTree::of(&events(0..12))).unwrap()
    );
    s.reopen().unwrap();
    assert_eq!(s.tree_size().unwrap(), 12);
}

pub(crate) fn a_missing_hash_is_refused_on_open(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 8, &[8]);
    drop(s);
    h.drop_last_hash();
    let err = h
        .reopen()
        .err()
        .expect("a store missing a hash must not open");
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("stored hashes"), "{err}");
}

pub(crate) fn hashes_are_read_exactly_as_asked(h: &mut dyn Harness) {
    let mut s = h.fresh();
    fill(s.as_mut(), 16, &[16]);
    let memory = MemoryTree::of(&events(0..16));
    let ask = [7, 2, 3, 4, 30, 0];
    let want: Vec<Hash> = ask.iter().map(|i| memory.0[*i as usize]).collect();
    assert_eq!(s.read_hashes(&ask).unwrap(), want);
    assert!(s.read_hashes(&[1, stored_hash_count(16)]).is_err());
    assert!(s.read_hashes(&[u64::MAX]).is_err());
    assert!(s.read_hashes(&[]).unwrap().is_empty());
}

pub(crate) fn reads_are_bounded(h: &mut dyn Harness) {
    let s = h.fresh();
    let err = s.entries(0..MAX_ENTRIES_PER_READ + 1).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
    assert!(s.entries(0..MAX_ENTRIES_PER_READ).unwrap().is_empty());
}
