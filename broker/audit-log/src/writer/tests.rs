use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use super::*;
use crate::checkpoint::{open_checkpoint, TrustedKeys};
use crate::store::{SearchQuery, StoreErrorKind, StoredCheckpoint, StoredEntry};
use crate::test_support::{event, TestDir};
use crate::tree;

fn config() -> LogConfig {
    LogConfig {
        durability: Durability::Os,
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(3600),
        // These are the writer's own tests; `journal/tests.rs` has the
        // journal's.
        journal: false,
        ..LogConfig::default()
    }
}

struct Opened {
    dir: TestDir,
    log: AuditLog,
}

impl Opened {
    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.db")
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("audit-signing.key")
    }

    fn reader(&self) -> SqliteStore {
        SqliteStore::open_read_only(&self.db()).unwrap()
    }
}

fn open(name: &str, config: LogConfig) -> Opened {
    let dir = TestDir::new(name);
    let log = AuditLog::open_sqlite(
        &dir.path().join("audit.db"),
        &dir.path().join("audit-signing.key"),
        config,
    )
    .unwrap();
    Opened { dir, log }
}

fn checkpoint_sizes(store: &dyn AuditStore) -> Vec<u64> {
    store
        .checkpoints(0..u64::MAX, 1000)
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_every_seq_once() {
    let o = open(
        "writer-concurrent",
        LogConfig {
            max_batch: 64,
            ..config()
        },
    );
    let mut tasks = Vec::new();
    for t in 0..100u64 {
        let log = o.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                seqs.push(log.append_indexed(event(t * 10 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        for seq in t.await.unwrap() {
            assert!(seen.insert(seq), "seq {seq} twice");
        }
    }
    assert_eq!(seen, (0..1000).collect());
    assert_eq!(o.log.health().tree_size, 1000);
    // Once append answered, the event is in the file for any reader.
    assert_eq!(o.reader().tree_size().unwrap(), 1000);
}

#[tokio::test]
async fn an_answered_append_is_in_the_file() {
    let o = open("writer-durable", config());
    let seq = o.log.append_indexed(event(0)).await.unwrap();
    let entries = o.reader().entries(seq..seq + 1).unwrap();
    assert!(entries[0].entry.starts_with(b"{\"seq\":0,\"v\":1,"));
}

#[tokio::test]
async fn a_bad_event_fails_alone() {
    let o = open("writer-bad-event", config());
    let mut bad = event(0);
    bad.fields = br#"{"seq":5}"#.to_vec();
    let err = o.log.append_indexed(bad).await.unwrap_err();
    assert_eq!(err, AppendError::Invalid(EntryError::HasSeq));
    assert!(err.to_string().starts_with("audit event refused:"), "{err}");
    assert_eq!(o.log.append_indexed(event(1)).await.unwrap(), 0);
    assert_eq!(o.log.health().degraded, None);
}

#[tokio::test]
async fn checkpoints_every_n_events_and_a_final_one_at_shutdown() {
    let o = open(
        "writer-every",
        LogConfig {
            checkpoint_every: 10,
            ..config()
        },
    );
    for i in 0..25 {
        o.log.append_indexed(event(i)).await.unwrap();
    }
    let health = o.log.health();
    assert_eq!(health.last_checkpoint_size, Some(20));
    let note = o
        .log
        .shutdown()
        .await
        .unwrap()
        .expect("events 20..25 needed a checkpoint");
    assert!(note.contains("\n25\n"), "{note}");
    assert_eq!(
        o.log.append_indexed(event(99)).await.unwrap_err(),
        AppendError::Closed
    );
    let store = o.reader();
    assert_eq!(checkpoint_sizes(&store), vec![10, 20, 25]);
    let keys = TrustedKeys::parse(&[o.log.verifier_key().to_owned()]).unwrap();
    for c in store.checkpoints(0..u64::MAX, 100).unwrap() {
        let opened = open_checkpoint(c.note.as_bytes(), &keys).unwrap();
        assert_eq!(opened.root, tree::root(&store, c.size).unwrap());
        assert_eq!(opened.origin, o.log.origin());
    }
}

#[tokio::test]
async fn checkpoints_on_a_timer_when_events_are_uncovered() {
    let o = open(
        "writer-timer",
        LogConfig {
            checkpoint_interval: Duration::from_millis(50),
            ..config()
        },
    );
    for i in 0..3 {
        o.log.append_indexed(event(i)).await.unwrap();
    }
    for _ in 0..100 {
        if o.log.health().last_checkpoint_size == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(checkpoint_sizes(&o.reader()), vec![3]);
    // Nothing new: no further checkpoint.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(checkpoint_sizes(&o.reader()), vec![3]);
}

#[tokio::test]
async fn checkpoint_now_signs_the_current_tree() {
    let o = open("writer-now", config());
    let empty = o.log.checkpoint_now().await.unwrap();
    assert!(empty.contains("\n0\n"), "{empty}");
    for i in 0..7 {
        o.log.append_indexed(event(i)).await.unwrap();
    }
    let note = o.log.checkpoint_now().await.unwrap();
    let keys = TrustedKeys::parse(&[o.log.verifier_key().to_owned()]).unwrap();
    let opened = open_checkpoint(note.as_bytes(), &keys).unwrap();
    assert_eq!(opened.size, 7);
    assert_eq!(opened.root, tree::root(&o.reader(), 7).unwrap());
    assert_eq!(o.log.health().last_checkpoint_size, Some(7));
    assert_eq!(
        o.log.shutdown().await.unwrap(),
        None,
        "nothing left to cover"
    );
}

#[tokio::test]
async fn origin_and_key_are_made_once_and_kept() {
    let o = open("writer-origin", config());
    let origin = o.log.origin().to_owned();
    let id = origin.strip_prefix("hoop.local/audit/").unwrap();
    assert_eq!(id.len(), 8);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let key = o.log.verifier_key().to_owned();
    assert!(key.starts_with(&format!("{origin}+")));
    o.log.append_indexed(event(0)).await.unwrap();
    o.log.shutdown().await.unwrap();

    let again = AuditLog::open_sqlite(&o.db(), &o.key(), config()).unwrap();
    assert_eq!(again.origin(), origin);
    assert_eq!(again.verifier_key(), key);
    assert_eq!(again.append_indexed(event(1)).await.unwrap(), 1);
    again.shutdown().await.unwrap();
    assert_eq!(
        o.reader().meta(meta_keys::VERIFIER_KEY).unwrap().as_deref(),
        Some(key.as_str())
    );

    let renamed = LogConfig {
        origin: Some("bank.example/audit".into()),
        ..config()
    };
    let err = AuditLog::open_sqlite(&o.db(), &o.key(), renamed)
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::OriginChanged { .. }), "{err}");
}

#[tokio::test]
async fn a_configured_origin_names_a_new_log() {
    let dir = TestDir::new("writer-named");
    let cfg = LogConfig {
        origin: Some("bank.example/hoop/audit".into()),
        ..config()
    };
    let log = AuditLog::open_sqlite(&dir.path().join("a.db"), &dir.path().join("k"), cfg).unwrap();
    assert_eq!(log.origin(), "bank.example/hoop/audit");
    let bad = LogConfig {
        origin: Some("has space".into()),
        ..config()
    };
    assert!(AuditLog::open_sqlite(&dir.path().join("b.db"), &dir.path().join("k2"), bad).is_err());
}

/// A store that fails every write while `failing` is set, as a full disk does.
struct Flaky {
    inner: SqliteStore,
    failing: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::new(
                StoreErrorKind::DiskFull,
                self.inner.location(),
                "free space",
            ))
        } else {
            Ok(())
        }
    }
}

impl AuditStore for Flaky {
    fn durability(&self) -> Durability {
        self.inner.durability()
    }
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn append_batch(&mut self, batch: &[PendingEntry]) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.append_batch(batch)
    }
    fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.tree_size()
    }
    fn first_seq(&self) -> Result<u64, StoreError> {
        self.inner.first_seq()
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, StoreError> {
        self.inner.read_hashes(indexes)
    }
    fn entries(&self, seqs: Range<u64>) -> Result<Vec<StoredEntry>, StoreError> {
        self.inner.entries(seqs)
    }
    fn body(&self, sha256: &[u8; 32]) -> Result<Option<bytes::Bytes>, StoreError> {
        self.inner.body(sha256)
    }
    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_checkpoint(size, note)
    }
    fn expire_before(&mut self, cut: u64) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.expire_before(cut)
    }
    fn checkpoints(
        &self,
        sizes: Range<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.checkpoints(sizes, limit)
    }
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn search(&self, query: &SearchQuery) -> Result<Vec<StoredEntry>, StoreError> {
        self.inner.search(query)
    }
    fn seq_range_for_time(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<Option<Range<u64>>, StoreError> {
        self.inner.seq_range_for_time(since, until)
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_meta(key, value)
    }
    fn init_meta(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        self.inner.init_meta(key, value)
    }
    fn reopen(&mut self) -> Result<(), StoreError> {
        self.reopened.fetch_add(1, Ordering::SeqCst);
        self.inner.reopen()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_its_waiters_and_writing_recovers() {
    let dir = TestDir::new("writer-flaky");
    let failing = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));
    let store = Flaky {
        inner: SqliteStore::open(&dir.path().join("audit.db"), Durability::Os).unwrap(),
        failing: failing.clone(),
        reopened: reopened.clone(),
    };
    let log = AuditLog::open(Box::new(store), &dir.path().join("k"), config()).unwrap();
    assert_eq!(log.append_indexed(event(0)).await.unwrap(), 0);

    failing.store(true, Ordering::SeqCst);
    let tasks: Vec<_> = (1..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append_indexed(event(i)).await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("audit log cannot be written: disk full ("),
            "{message}"
        );
        assert!(message.contains("audit.db"), "{message}");
    }
    let health = log.health();
    assert!(
        health
            .degraded
            .as_deref()
            .unwrap_or("")
            .contains("disk full"),
        "{health:?}"
    );
    assert_eq!(health.tree_size, 1);

    failing.store(false, Ordering::SeqCst);
    assert_eq!(
        log.append_indexed(event(20)).await.unwrap(),
        1,
        "no gap: the failed batch kept nothing"
    );
    assert_eq!(log.health().degraded, None);
    assert!(
        reopened.load(Ordering::SeqCst) >= 1,
        "the store was reopened before retrying"
    );
    log.shutdown().await.unwrap();
    let reader = SqliteStore::open_read_only(&dir.path().join("audit.db")).unwrap();
    assert_eq!(reader.tree_size().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded() {
    let o = open(
        "writer-bounded",
        LogConfig {
            max_batch: 2,
            ..config()
        },
    );
    let capacity = 8;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = o.log.clone();
            tokio::spawn(async move { log.append_indexed(event(i)).await })
        })
        .collect();
    let mut most = 0;
    for _ in 0..200 {
        most = most.max(o.log.health().queued);
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(most <= capacity, "{most} queued, bound {capacity}");
    assert_eq!(o.log.health().queued, 0);
}

#[tokio::test]
async fn dropping_every_handle_stops_the_writer_with_a_checkpoint() {
    let o = open("writer-drop", config());
    o.log.append_indexed(event(0)).await.unwrap();
    let path = o.db();
    drop(o.log);
    let store = SqliteStore::open_read_only(&path).unwrap();
    for _ in 0..100 {
        if !checkpoint_sizes(&store).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(checkpoint_sizes(&store), vec![1]);
}

#[test]
fn the_handle_is_cheap_to_share_and_stores_move_to_the_writer() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    fn movable<T: Send + 'static>() {}
    shared::<AuditLog>();
    movable::<SqliteStore>();
    movable::<Box<dyn AuditStore>>();
}

/// A record for `gather`, as an appender queues it.
fn queued(position: u64, permits: &Arc<tokio::sync::Semaphore>) -> Command {
    Command::Index(Unindexed {
        entry: event(position),
        position,
        reply: None,
        permit: permits.clone().try_acquire_owned().unwrap(),
    })
}

/// Under saturation the queue holds a full batch: the writer takes it
/// without sleeping (it would otherwise idle the cores the appenders are
/// waiting on), and a batch short of full still waits out the delay to
/// gather more. The full batch is given an hour's delay, so a wrong sleep
/// shows as no answer within a minute, not as a slower run.
#[test]
fn a_full_batch_is_taken_at_once_and_a_short_one_waits_for_more() {
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let (send, commands) = std::sync::mpsc::channel();
    for position in 0..10 {
        send.send(queued(position, &permits)).unwrap();
    }
    let (answer, answered) = std::sync::mpsc::channel();
    let commands = std::thread::spawn(move || {
        let Ok(Command::Index(first)) = commands.try_recv() else {
            unreachable!()
        };
        let hour = Duration::from_secs(3600);
        let (batch, held) =
            thread::gather(first, &commands, 4, (hour, hour), &AtomicBool::new(false));
        let positions: Vec<u64> = batch.iter().map(|r| r.position).collect();
        answer.send((positions, held.is_none())).unwrap();
        commands
    });
    let (positions, nothing_held) = answered
        .recv_timeout(Duration::from_secs(60))
        .expect("a full batch waited out the delay");
    assert!(nothing_held);
    assert_eq!(positions, [0, 1, 2, 3]);
    let commands = commands.join().unwrap();

    // Five queued behind a batch of at most 8: the writer sleeps the
    // delay, during which three more arrive, then takes all of them.
    let Command::Index(first) = commands.try_recv().unwrap() else {
        unreachable!()
    };
    let late = std::thread::spawn({
        let send = send.clone();
        let permits = permits.clone();
        move || {
            std::thread::sleep(Duration::from_millis(10));
            for position in 10..13 {
                send.send(queued(position, &permits)).unwrap();
            }
        }
    });
    let two = Duration::from_secs(2);
    let (batch, held) = thread::gather(first, &commands, 8, (two, two), &AtomicBool::new(false));
    late.join().unwrap();
    assert!(held.is_none());
    let positions: Vec<u64> = batch.iter().map(|r| r.position).collect();
    assert_eq!(positions, (4..12).collect::<Vec<_>>());
}

/// The broker's path: a built entry is appended as it was built, `seq`
/// spliced in first as for any other.
#[tokio::test]
async fn a_built_entry_is_appended_as_built() {
    #[derive(serde::Serialize)]
    struct Head {
        v: u8,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    let o = open("writer-built", config());
    let mut b = crate::entry::EntryBuilder::new(&Head { v: 1, kind: "x" }).unwrap();
    b.json_member("message", br#"{"id":7}"#).unwrap();
    let built = b.finish(Default::default()).unwrap();
    o.log.append_built(built).await.unwrap();
    o.log.flush().await.unwrap();
    let entries = o.reader().entries(0..1).unwrap();
    assert_eq!(
        entries[0].entry,
        br#"{"seq":0,"v":1,"type":"x","message":{"id":7}}"#
    );
}

/// With the journal, an hour's `index_delay` and an hour between looks at
/// the queue: what someone waits for ends the writer's wait at once.
fn waiting_an_hour() -> LogConfig {
    LogConfig {
        journal: true,
        index_delay: Duration::from_secs(3600),
        index_quiet: Duration::from_secs(3600),
        ..config()
    }
}

#[tokio::test]
async fn an_idle_logs_records_reach_the_file_without_waiting_out_the_delay() {
    let o = open(
        "writer-quiet",
        LogConfig {
            index_quiet: Duration::from_millis(20),
            ..waiting_an_hour()
        },
    );
    o.log.append(event(0)).await.unwrap();
    o.log.append(event(1)).await.unwrap();
    // No flush: a reader beside the log (`hoop-broker audit search` on
    // the broker's host) finds them once the writer sees calls pause.
    let reader = o.reader();
    let mut size = 0;
    for _ in 0..500 {
        size = reader.tree_size().unwrap();
        if size == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(size, 2, "the records waited for the writer's hour");
}

#[tokio::test]
async fn a_flush_ends_the_writers_wait_for_more_records() {
    let o = open("writer-flush-wakes", waiting_an_hour());
    o.log.append(event(0)).await.unwrap();
    o.log.append(event(1)).await.unwrap();
    // The writer takes them and parks for its hour.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(60), o.log.flush())
        .await
        .expect("the flush waited out the writer's hour")
        .unwrap();
    assert_eq!(o.reader().tree_size().unwrap(), 2);
    tokio::time::timeout(Duration::from_secs(60), o.log.shutdown())
        .await
        .expect("shutdown waited out the writer's hour")
        .unwrap();
}

#[tokio::test]
async fn a_full_queue_ends_the_writers_wait_for_more_records() {
    let o = open(
        "writer-full-wakes",
        LogConfig {
            max_batch: 4,
            ..waiting_an_hour()
        },
    );
    // The writer takes the first and parks for its hour; fifteen more fill
    // the queue (four batches of four); the next finds it full and wakes
    // the writer rather than wait an hour for room.
    o.log.append(event(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let appends = async {
        for i in 0..40 {
            o.log.append(event(i)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), appends)
        .await
        .expect("appends to a full queue waited out the writer's hour");
}

#[tokio::test]
async fn dropping_every_handle_ends_the_writers_wait_for_more_records() {
    let o = open("writer-drop-wakes", waiting_an_hour());
    o.log.append(event(0)).await.unwrap();
    // The writer takes it and parks for its hour.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = o.db();
    drop(o.log);
    // The writer applies its record, signs, and lets the journal go: a new
    // log opens on the same file (it would be refused while the old writer
    // held the journal's lock).
    let mut reopened = None;
    for _ in 0..500 {
        let key = o.dir.path().join("audit-signing.key");
        match AuditLog::open_sqlite(&path, &key, waiting_an_hour()) {
            Ok(log) => {
                reopened = Some(log);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let log = reopened.expect("the dropped log's writer still held the file after 10 s");
    assert_eq!(log.append_indexed(event(1)).await.unwrap(), 1);
}

#[tokio::test]
async fn waiting_for_a_seq_ends_the_writers_wait_for_more_records() {
    let o = open("writer-seq-wakes", waiting_an_hour());
    for i in 0..3 {
        let seq = tokio::time::timeout(Duration::from_secs(60), o.log.append_indexed(event(i)))
            .await
            .expect("append_indexed waited out the writer's hour")
            .unwrap();
        assert_eq!(seq, i);
    }
}

/// A raised flag and an unpark end the wait, however long it was to be;
/// a record sent before the flag was raised is in the batch.
#[test]
fn a_raised_wake_flag_ends_the_wait_and_takes_the_wakers_record() {
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let (send, commands) = std::sync::mpsc::channel();
    send.send(queued(0, &permits)).unwrap();
    let wake = Arc::new(AtomicBool::new(false));
    let (answer, answered) = std::sync::mpsc::channel();
    let writer = std::thread::spawn({
        let wake = wake.clone();
        move || {
            let Ok(Command::Index(first)) = commands.try_recv() else {
                unreachable!()
            };
            let hour = Duration::from_secs(3600);
            let (batch, _) = thread::gather(first, &commands, 8, (hour, hour), &wake);
            answer
                .send(batch.iter().map(|r| r.position).collect::<Vec<u64>>())
                .unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    // As `Shared::wake_writer` after an `append_indexed`: the record, then
    // the flag, then the unpark.
    send.send(queued(1, &permits)).unwrap();
    wake.store(true, Ordering::Release);
    writer.thread().unpark();
    let positions = answered
        .recv_timeout(Duration::from_secs(60))
        .expect("the raised flag did not end the writer's hour");
    assert_eq!(positions, [0, 1]);
    writer.join().unwrap();
}
