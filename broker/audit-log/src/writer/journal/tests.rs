use std::io::Write as _;
use std::time::Duration;

use super::record::{decode_segment, encode};
use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::AuditStore;
use crate::test_support::{event, TestDir};
use crate::writer::{AuditLog, LogConfig};

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        durability,
        checkpoint_interval: Duration::from_secs(3600),
        ..LogConfig::default()
    }
}

fn open(dir: &TestDir, durability: Durability) -> AuditLog {
    AuditLog::open_sqlite(
        &dir.path().join("audit.db"),
        &dir.path().join("audit-signing.key"),
        config(durability),
    )
    .unwrap()
}

fn stored(dir: &TestDir) -> SqliteStore {
    SqliteStore::open_read_only(&dir.path().join("audit.db")).unwrap()
}

/// What a broker killed before its writer thread applied anything leaves:
/// records in the journal, none in the store.
fn journal_only(dir: &TestDir, count: u64) {
    journal_only_at(dir, count, Durability::Os)
}

fn journal_only_at(dir: &TestDir, count: u64, durability: Durability) {
    let db = dir.path().join("audit.db");
    drop(SqliteStore::open(&db, durability).unwrap());
    let (recovered, next) = Journal::open(&db, durability, None).unwrap();
    assert!(recovered.records.is_empty());
    let journal = recovered.start(next).unwrap();
    for i in 0..count {
        journal.append(event(i), |_, _| Ok(())).unwrap();
    }
    // As the writer thread does after a batch.
    journal.keep_room();
}

#[test]
fn a_record_reads_back_as_written_and_a_changed_byte_stops_the_reading() {
    let mut bytes = Vec::new();
    for i in 0..8 {
        encode(40 + i, &event(i), &mut bytes);
    }
    let segment = decode_segment(&bytes, 40).unwrap();
    assert_eq!(segment.good_len, bytes.len());
    assert_eq!(segment.next, 48);
    for ((position, entry), i) in segment.records.iter().zip(0..) {
        let want = event(i);
        assert_eq!(*position, 40 + i);
        assert_eq!(entry.fields, want.fields);
        assert_eq!(entry.bodies, want.bodies);
        assert_eq!(entry.index.kind, want.index.kind);
        assert_eq!(entry.index.session, want.index.session);
        assert_eq!(entry.index.decision, want.index.decision);
    }
    // A flipped byte in record 3: records 0..3 stand, the rest is unread.
    let mut third = Vec::new();
    for i in 0..3 {
        encode(40 + i, &event(i), &mut third);
    }
    let mut damaged = bytes.clone();
    damaged[third.len() + 30] ^= 1;
    let segment = decode_segment(&damaged, 40).unwrap();
    assert_eq!(segment.records.len(), 3);
    assert_eq!(segment.good_len, third.len());
    // Cut short anywhere: only whole records.
    for cut in [1, 11, 12, 13, 100] {
        let segment = decode_segment(&bytes[..third.len() + cut], 40).unwrap();
        assert_eq!(segment.records.len(), 3, "cut {cut}");
    }
    // A whole record out of order is damage no crash makes.
    assert!(decode_segment(&bytes, 41).is_err());
    assert!(segment_clean(&bytes));
}

fn segment_clean(bytes: &[u8]) -> bool {
    decode_segment(bytes, 40).unwrap().clean_end
}

#[test]
fn zeros_written_ahead_end_the_records_and_anything_else_there_is_not_clean() {
    let mut bytes = Vec::new();
    for i in 0..4 {
        encode(40 + i, &event(i), &mut bytes);
    }
    let records = bytes.len();
    bytes.resize(records + 5000, 0);
    let segment = decode_segment(&bytes, 40).unwrap();
    assert_eq!(segment.records.len(), 4);
    assert_eq!(segment.good_len, records);
    assert!(segment.clean_end);
    // A byte past the zeros' start: a record whose head was lost.
    bytes[records + 4000] = 7;
    let segment = decode_segment(&bytes, 40).unwrap();
    assert_eq!(segment.records.len(), 4);
    assert!(!segment.clean_end);
    // Half a record over the zeros: torn, not clean.
    let mut half = Vec::new();
    encode(44, &event(4), &mut half);
    bytes[records + 4000] = 0;
    bytes[records..records + half.len() / 2].copy_from_slice(&half[..half.len() / 2]);
    let segment = decode_segment(&bytes, 40).unwrap();
    assert_eq!(segment.records.len(), 4);
    assert!(!segment.clean_end);
}

#[tokio::test]
async fn zeros_are_written_ahead_and_a_killed_brokers_records_still_apply() {
    for durability in [Durability::Fsync, Durability::Os] {
        let dir = TestDir::new(&format!("journal-room-{}", durability.as_str()));
        journal_only_at(&dir, 5, durability);
        let jdir = dir_for(&dir.path().join("audit.db"));
        let (_, path) = segments(&jdir).unwrap().pop().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let segment = decode_segment(&bytes, 0).unwrap();
        assert_eq!(segment.records.len(), 5);
        assert!(
            bytes.len() as u64 >= segment.good_len as u64 + ROOM_BYTES,
            "{durability:?}: {} bytes for {} of records",
            bytes.len(),
            segment.good_len
        );
        // A sixth record torn over the zeros, as a power cut mid-write leaves.
        let mut half = Vec::new();
        encode(5, &event(5), &mut half);
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &half[..half.len() / 2],
            segment.good_len as u64,
        )
        .unwrap();
        file.flush().unwrap();
        drop(file);
        let log = open(&dir, durability);
        assert_eq!(log.health().tree_size, 5);
        log.append(event(6)).await.unwrap();
        log.shutdown().await.unwrap();
        assert_eq!(stored(&dir).tree_size().unwrap(), 6);
    }
}

#[test]
fn an_append_past_the_room_makes_its_own_and_keep_room_tops_up_only_when_low() {
    let dir = TestDir::new("journal-room-fallback");
    let db = dir.path().join("audit.db");
    drop(SqliteStore::open(&db, Durability::Os).unwrap());
    let (recovered, next) = Journal::open(&db, Durability::Os, None).unwrap();
    let journal = recovered.start(next).unwrap();
    let jdir = dir_for(&db);
    let file_len = || {
        let (_, path) = segments(&jdir).unwrap().pop().unwrap();
        std::fs::metadata(path).unwrap().len()
    };
    let room = |j: &Journal| {
        let w = j.state.lock().unwrap();
        (w.len, w.room)
    };
    // No writer thread has run: the append writes one chunk of zeros past
    // its record, and the record itself over them.
    journal.append(event(0), |_, _| Ok(())).unwrap();
    let (len, ahead) = room(&journal);
    assert_eq!(ahead, len + ZEROS.len() as u64);
    assert_eq!(file_len(), ahead);
    // Low: topped up to a full room.
    journal.keep_room();
    let (len, ahead) = room(&journal);
    assert!(ahead >= len + ROOM_BYTES, "{ahead} for {len}");
    assert_eq!(file_len(), ahead);
    // Not low: left alone.
    journal.append(event(1), |_, _| Ok(())).unwrap();
    journal.keep_room();
    assert_eq!(room(&journal).1, ahead);
    assert_eq!(file_len(), ahead);
}

#[tokio::test]
async fn zeros_ahead_in_a_segment_before_the_last_are_not_damage() {
    let dir = TestDir::new("journal-room-older");
    journal_only_at(&dir, 3, Durability::Fsync);
    let jdir = dir_for(&dir.path().join("audit.db"));
    // A later, empty segment: the zero-tailed one is not the last any more.
    std::fs::write(segment_path(&jdir, 3), b"").unwrap();
    let log = open(&dir, Durability::Fsync);
    assert_eq!(log.health().tree_size, 3);
    log.shutdown().await.unwrap();
}

#[tokio::test]
async fn records_a_killed_broker_left_are_applied_on_open() {
    let dir = TestDir::new("journal-recover");
    journal_only(&dir, 12);
    assert_eq!(stored(&dir).tree_size().unwrap(), 0);
    let db = dir.path().join("audit.db");
    assert_eq!(unapplied(&db, &stored(&dir)).unwrap(), 12);
    let log = open(&dir, Durability::Os);
    assert_eq!(log.health().tree_size, 12);
    log.append(event(12)).await.unwrap();
    log.shutdown().await.unwrap();
    let store = stored(&dir);
    assert_eq!(store.tree_size().unwrap(), 13);
    let entries = store.entries(0..13).unwrap();
    for (e, i) in entries.iter().zip(0u64..) {
        let fields = event(i).fields;
        assert_eq!(&e.entry[e.entry.len() - (fields.len() - 1)..], &fields[1..]);
    }
    let report = crate::verify_store(&store, &[log.verifier_key().to_owned()]).unwrap();
    assert_eq!((report.events, report.tree_size), (13, 13));
    assert_eq!(unapplied(&db, &stored(&dir)).unwrap(), 0);
    // Opened again, nothing is applied twice.
    let again = open(&dir, Durability::Os);
    assert_eq!(again.health().tree_size, 13);
    again.shutdown().await.unwrap();
    assert_eq!(
        segments(&dir_for(&dir.path().join("audit.db")))
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_record_torn_by_a_crash_is_dropped_and_the_rest_applied() {
    let dir = TestDir::new("journal-torn");
    journal_only(&dir, 5);
    let jdir = dir_for(&dir.path().join("audit.db"));
    let (_, path) = segments(&jdir).unwrap().pop().unwrap();
    let mut half = Vec::new();
    encode(5, &event(5), &mut half);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&half[..half.len() / 2]).unwrap();
    drop(file);
    let torn = decode_segment(&std::fs::read(&path).unwrap(), 0).unwrap();
    assert_eq!((torn.records.len(), torn.clean_end), (5, false));
    let log = open(&dir, Durability::Os);
    assert_eq!(log.health().tree_size, 5);
    log.append(event(6)).await.unwrap();
    log.shutdown().await.unwrap();
    assert_eq!(stored(&dir).tree_size().unwrap(), 6);
}

#[tokio::test]
async fn damage_before_the_last_segment_refuses_to_open() {
    let dir = TestDir::new("journal-damaged");
    journal_only(&dir, 3);
    let jdir = dir_for(&dir.path().join("audit.db"));
    let (_, path) = segments(&jdir).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // A later segment: the damaged one is not the last any more.
    std::fs::write(segment_path(&jdir, 3), b"").unwrap();
    let err = AuditLog::open_sqlite(
        &dir.path().join("audit.db"),
        &dir.path().join("audit-signing.key"),
        config(Durability::Os),
    )
    .err()
    .expect("a damaged journal must not open");
    assert!(err.to_string().contains("damaged record"), "{err}");
}

#[tokio::test]
async fn a_second_writer_is_refused_while_the_first_holds_the_journal() {
    let dir = TestDir::new("journal-lock");
    let first = open(&dir, Durability::Os);
    let err = AuditLog::open_sqlite(
        &dir.path().join("audit.db"),
        &dir.path().join("audit-signing.key"),
        config(Durability::Os),
    )
    .err()
    .expect("two writers");
    assert!(err.to_string().contains("another broker"), "{err}");
    first.shutdown().await.unwrap();
    drop(first);
    open(&dir, Durability::Os).shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_each_durability_reach_the_store_in_one_order() {
    for durability in [Durability::Os, Durability::Fsync] {
        let dir = TestDir::new("journal-concurrent");
        let log = open(&dir, durability);
        assert_eq!(log.health().durability, durability);
        let mut tasks = Vec::new();
        for t in 0..50u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    log.append(event(t * 20 + i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        log.flush().await.unwrap();
        // Once flushed, a reader of the file sees every event.
        let store = stored(&dir);
        assert_eq!(store.tree_size().unwrap(), 1000);
        let mut exchanges: Vec<String> = store
            .entries(0..1000)
            .unwrap()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.entry).into_owned())
            .collect();
        exchanges.sort();
        exchanges.dedup();
        assert_eq!(exchanges.len(), 1000);
        let note = log.checkpoint_now().await.unwrap();
        assert!(note.contains("\n1000\n"), "{note}");
        log.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn append_indexed_answers_with_the_seq_the_store_gave() {
    let dir = TestDir::new("journal-indexed");
    let log = open(&dir, Durability::Os);
    assert_eq!(log.append_indexed(event(0)).await.unwrap(), 0);
    log.append(event(1)).await.unwrap();
    assert_eq!(log.append_indexed(event(2)).await.unwrap(), 2);
    log.shutdown().await.unwrap();
    // Shut down, the journal refuses; nothing is written.
    assert!(log.append(event(3)).await.is_err());
    assert_eq!(stored(&dir).tree_size().unwrap(), 3);
}

#[tokio::test]
async fn full_segments_are_removed_once_the_store_holds_them() {
    let dir = TestDir::new("journal-rotate");
    let log = open(&dir, Durability::Os);
    let jdir = dir_for(&dir.path().join("audit.db"));
    // Events of about 1 KiB: 20,000 of them fill a 16 MiB segment.
    let mut big = event(0);
    let pad = "x".repeat(1000);
    big.fields = format!("{{\"v\":1,\"type\":\"mcp.request\",\"pad\":\"{pad}\"}}").into_bytes();
    big.bodies.clear();
    for _ in 0..20_000 {
        log.append(big.clone()).await.unwrap();
    }
    log.flush().await.unwrap();
    let left = segments(&jdir).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].0 > 0, "the first segment is gone: {left:?}");
    log.shutdown().await.unwrap();
    assert_eq!(stored(&dir).tree_size().unwrap(), 20_000);
}
