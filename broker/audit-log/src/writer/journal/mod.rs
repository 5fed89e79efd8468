//! The journal: where an event becomes durable before the store has it.
//!
//! An append to SQLite costs about ten page writes and a transaction; an
//! append here is one `write` of one record (and, at `fsync`, a share of
//! one `fdatasync` per group). The caller's task writes its record itself,
//! under a short lock, so no thread hop sits on the request path; the
//! writer thread then applies records to the store in batches, behind
//! (`thread.rs`), and records in the store, in the same transaction, the
//! position of the last record applied (`meta` key `journal_applied`).
//!
//! Files, in `<db>.journal/` (0700): `lock` (held while a broker writes
//! the log, so two cannot), and segments named by the position of their
//! first record (`00000000000000000000.seg`, 0600). A segment is removed
//! once every record in it is in the store and the store is synced. On
//! open, records past `journal_applied` are applied before anything else
//! happens: a kill of the broker loses nothing an append answered.
//!
//! The tree, the checkpoints and the sequence numbers are the store's, as
//! without the journal: a record carries the event's fields (without
//! `seq`), its bodies and index, never a seq, so another writer beside
//! the broker (`hoop-broker audit` on the host) interleaves safely.

mod record;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::store::{Durability, PendingEntry, StoreError, StoreErrorKind};
use record::{decode_segment, encode};

/// A segment is closed and a new one begun past this many bytes.
const SEGMENT_BYTES: u64 = 16 << 20;

/// Zeros are kept this far ahead of the records (see [`Journal::keep_room`]).
const ROOM_BYTES: u64 = 1 << 20;

/// [`Journal::keep_room`] tops the room up once less than this is left.
const ROOM_LOW: u64 = ROOM_BYTES / 2;

/// What zeros are written from: one chunk at a time, so an appender waits
/// at most one chunk's write for the lock.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The store's metadata key for the last position applied.
pub(crate) const APPLIED_KEY: &str = "journal_applied";

/// A journal position: the number of a record, from 0, across segments
/// and restarts.
pub(crate) type Position = u64;

/// The journal's folder for the log at `db`.
pub(crate) fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".journal");
    db.with_file_name(name)
}

/// What kind of failure an I/O error is, for the caller's message.
pub(crate) fn io_error(location: &Path, doing: &str, e: &std::io::Error) -> StoreError {
    StoreError::new(
        StoreErrorKind::of_io(e),
        location.display().to_string(),
        format!("{doing}: {e}"),
    )
}

/// The segments in a journal folder, ascending by first position.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(Position, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| io_error(dir, "listing the journal", &e))?;
    // Bounded by the folder's entries.
    for item in listing {
        let item = item.map_err(|e| io_error(dir, "listing the journal", &e))?;
        let name = item.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<Position>().ok())
        else {
            continue;
        };
        found.push((first, item.path()));
    }
    found.sort();
    Ok(found)
}

fn segment_path(dir: &Path, first: Position) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Opens the segment beginning at `first`, empty: a segment of that name
/// left by the last run holds no record (its records would be past
/// `first`), at most zeros written ahead.
fn create_segment(dir: &Path, first: Position) -> Result<File, StoreError> {
    let path = segment_path(dir, first);
    let mut options = OpenOptions::new();
    // Not append: records are written at their offset, over the zeros
    // written ahead of them.
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .map_err(|e| io_error(&path, "creating a journal segment", &e))
}

/// Syncs a directory so a file created or removed in it stays so.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "syncing the journal folder", &e))
}

/// How many records the journal of the log at `db` holds that `store`
/// (that log's file) does not yet: what a broker that stopped without
/// applying them (a crash) left, and applies when it starts. 0 when
/// there is no journal, and while a broker holds it (that broker applies
/// its records within moments).
pub fn unapplied(db: &Path, store: &dyn crate::store::AuditStore) -> Result<u64, StoreError> {
    let dir = dir_for(db);
    let Ok(lock) = File::open(dir.join("lock")) else {
        return Ok(0);
    };
    if lock.try_lock_shared().is_err() {
        return Ok(0);
    }
    // Not held while reading: a broker starting now must not find it taken.
    drop(lock);
    let applied = store
        .meta(APPLIED_KEY)?
        .and_then(|v| v.parse::<Position>().ok());
    let mut count = 0;
    for (first, path) in segments(&dir)? {
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, "reading the journal", &e))?;
        let segment = decode_segment(&bytes, first)
            .map_err(|e| StoreError::corrupt(path.display().to_string(), e))?;
        count += segment
            .records
            .iter()
            .filter(|(p, _)| applied.is_none_or(|a| *p > a))
            .count() as u64;
    }
    Ok(count)
}

/// The journal as the appenders share it.
pub(crate) struct Journal {
    dir: PathBuf,
    durability: Durability,
    state: Mutex<Writing>,
    /// `fsync` only: where waiters wait for the group's sync.
    syncs: Option<Arc<SyncQueue>>,
    /// Held until the writer thread is done with the store: one writer
    /// per log.
    lock: Mutex<Option<File>>,
}

struct Writing {
    file: Arc<File>,
    /// Length of the current segment up to its last whole record.
    len: u64,
    /// How far the file is known to hold zeros written ahead.
    room: u64,
    next: Position,
    /// A failed write could not be undone: the segment must be cut back
    /// to `len` before anything else is written.
    torn: bool,
    closed: bool,
    /// Reused for each record's bytes.
    buf: Vec<u8>,
    /// Set at each new segment: the writer thread may remove old ones.
    rotated: bool,
}

impl Journal {
    /// Opens the journal for the log at `db`, holding its lock. Returns
    /// the records past `applied` (the store's `journal_applied`), which
    /// the caller applies to the store before the first append, and then
    /// calls [`Journal::start`].
    pub(crate) fn open(
        db: &Path,
        durability: Durability,
        applied: Option<Position>,
    ) -> Result<(Recovered, Position), StoreError> {
        let dir = dir_for(db);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| io_error(&dir, "creating the journal folder", &e))?;
        let lock_path = dir.join("lock");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, "opening the journal's lock", &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::new(
                    StoreErrorKind::Busy,
                    db.display().to_string(),
                    format!(
                        "another broker writes this audit log (it holds {}): stop it, or give this one its own `[audit] path`",
                        lock_path.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error(&lock_path, "locking the journal", &e))
            }
        }
        let mut records = Vec::new();
        let mut next = applied.map_or(0, |a| a + 1);
        let found = segments(&dir)?;
        let last = found.len().saturating_sub(1);
        for (i, (first, path)) in found.iter().enumerate() {
            let bytes =
                std::fs::read(path).map_err(|e| io_error(path, "reading the journal", &e))?;
            let segment = decode_segment(&bytes, *first)
                .map_err(|e| StoreError::corrupt(path.display().to_string(), e))?;
            if !segment.clean_end {
                if i != last {
                    return Err(StoreError::corrupt(
                        path.display().to_string(),
                        format!(
                            "a damaged record at byte {} of a journal segment that is not the last: keep the folder and report it",
                            segment.good_len
                        ),
                    ));
                }
                // A record cut short by a crash or power cut mid-write: it
                // was never answered, so it is dropped.
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(segment.good_len as u64))
                    .map_err(|e| io_error(path, "cutting a torn journal record", &e))?;
            }
            for (position, entry) in segment.records {
                if applied.is_some_and(|a| position <= a) {
                    continue;
                }
                if position != next {
                    return Err(StoreError::corrupt(
                        path.display().to_string(),
                        format!("journal record {position} follows {next}: records are missing; keep the folder and check the log with `hoop-broker audit verify`"),
                    ));
                }
                records.push((position, entry));
                next += 1;
            }
            next = next.max(segment.next);
        }
        Ok((
            Recovered {
                dir,
                durability,
                lock,
                records,
                old_segments: found.into_iter().map(|(_, p)| p).collect(),
            },
            next,
        ))
    }
}

/// An opened journal whose leftover records are not applied yet.
pub(crate) struct Recovered {
    dir: PathBuf,
    durability: Durability,
    lock: File,
    /// Records past the store's `journal_applied`, in order.
    pub(crate) records: Vec<(Position, PendingEntry)>,
    old_segments: Vec<PathBuf>,
}

impl Recovered {
    /// Once the leftover records are in the store and the store is
    /// synced: removes the old segments and starts a new one at `next`.
    pub(crate) fn start(self, next: Position) -> Result<Journal, StoreError> {
        let file = create_segment(&self.dir, next)?;
        let keep = segment_path(&self.dir, next);
        for old in self.old_segments.iter().filter(|p| **p != keep) {
            std::fs::remove_file(old)
                .map_err(|e| io_error(old, "removing an applied journal segment", &e))?;
        }
        sync_dir(&self.dir)?;
        let syncs = (self.durability == Durability::Fsync).then(|| {
            Arc::new(SyncQueue {
                dir: self.dir.clone(),
                pending: Mutex::default(),
                wake: Condvar::new(),
            })
        });
        let journal = Journal {
            dir: self.dir,
            durability: self.durability,
            state: Mutex::new(Writing {
                file: Arc::new(file),
                len: 0,
                room: 0,
                next,
                torn: false,
                closed: false,
                buf: Vec::with_capacity(4096),
                rotated: false,
            }),
            syncs,
            lock: Mutex::new(Some(self.lock)),
        };
        if let Some(syncs) = &journal.syncs {
            let syncs = syncs.clone();
            std::thread::Builder::new()
                .name("audit-journal-sync".into())
                .spawn(move || syncs.run())
                .map_err(|e| io_error(&journal.dir, "starting the journal's sync thread", &e))?;
        }
        Ok(journal)
    }
}

impl Writing {
    /// The appender's fallback when [`Journal::keep_room`] has not kept
    /// ahead (a new segment, a burst): zeros for this record and one chunk
    /// more. A failure here is left to the record's own write to meet (a
    /// full disk): zeros past the records are harmless.
    fn make_room(&mut self, record: u64) {
        if self.len + record <= self.room {
            return;
        }
        let from = self.room.max(self.len);
        let to = self.len + record + ZEROS.len() as u64;
        let mut at = from;
        // Bounded: each pass writes up to one chunk of the span, or stops.
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            if write_at(&self.file, &ZEROS[..n], at).is_err() {
                break;
            }
            at += n as u64;
        }
        self.room = at;
    }
}

/// One positioned write of all of `buf` at `offset`.
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(buf)
    }
}

/// What the caller awaits after [`Journal::append`]: nothing at `os`, the
/// group's fsync at `fsync`.
pub(crate) enum Durable {
    Now,
    AfterSync(oneshot::Receiver<Result<(), StoreError>>),
}

impl Journal {
    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `entry` as the next record and, still in order under the
    /// lock, hands it with its position to `then` (which queues it for the
    /// store). On `Err` from the write nothing was written and `then` was
    /// not called.
    pub(crate) fn append<T>(
        &self,
        entry: PendingEntry,
        then: impl FnOnce(Position, PendingEntry) -> Result<T, StoreError>,
    ) -> Result<(T, Durable), StoreError> {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if w.closed {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                self.dir.display().to_string(),
                "the audit log is shut down",
            ));
        }
        if w.torn {
            w.file
                .set_len(w.len)
                .map_err(|e| io_error(&self.dir, "cutting back a failed journal write", &e))?;
            w.torn = false;
        }
        let position = w.next;
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        encode(position, &entry, &mut buf);
        let len = buf.len() as u64;
        w.make_room(len);
        let written = write_at(&w.file, &buf, w.len);
        w.buf = buf;
        if let Err(e) = written {
            // Part of the record may be in the file: cut it off, or make
            // the next append do so before it writes.
            w.torn = w.file.set_len(w.len).is_err();
            w.room = w.len;
            return Err(io_error(&self.dir, "writing the journal", &e));
        }
        w.len += len;
        w.next += 1;
        let queued = then(position, entry)?;
        let durable = match &self.syncs {
            None => Durable::Now,
            Some(syncs) => Durable::AfterSync(syncs.wait_for(&w.file)),
        };
        if w.len >= SEGMENT_BYTES {
            self.rotate(&mut w);
        }
        Ok((queued, durable))
    }

    /// Begins a new segment. At `fsync` the old one is synced first, so
    /// the sync thread only ever syncs the current one. A failure leaves
    /// the current segment in use.
    fn rotate(&self, w: &mut Writing) {
        if self.durability == Durability::Fsync && w.file.sync_data().is_err() {
            return;
        }
        if let Ok(file) = create_segment(&self.dir, w.next) {
            w.file = Arc::new(file);
            w.len = 0;
            w.room = 0;
            w.rotated = true;
            let _ = sync_dir(&self.dir);
        }
    }

    /// Whether a segment was begun since the last call.
    pub(crate) fn take_rotated(&self) -> bool {
        std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .rotated,
        )
    }

    /// Keeps zeros written ahead of the records, so that an append
    /// overwrites blocks the file already has instead of growing it. Run
    /// by the writer thread between batches, off the request path.
    ///
    /// Growing a file costs each write the file system's block allocation
    /// and a size update (about half of a journal append's time here,
    /// docs/benchmarks.md); at `fsync` it also makes each group's
    /// `fdatasync` commit the file system's own journal, a second disk
    /// flush. The zeros reach the disk with the next group's sync.
    pub(crate) fn keep_room(&self) {
        let chunk = ZEROS.len() as u64;
        {
            let w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if w.room >= w.len + ROOM_LOW {
                return;
            }
        }
        // Bounded: ROOM_BYTES / chunk writes at most, the lock taken for
        // one at a time.
        for _ in 0..ROOM_BYTES / chunk {
            let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if w.closed || w.torn || w.room >= w.len + ROOM_BYTES {
                return;
            }
            let at = w.room.max(w.len);
            if write_at(&w.file, &ZEROS, at).is_err() {
                return;
            }
            w.room = at + chunk;
        }
    }

    /// Refuses further appends (shutdown).
    pub(crate) fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
    }

    /// Lets another writer open the log: once the writer thread has
    /// applied its last record.
    pub(crate) fn release(&self) {
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Removes the segments whose every record is at or below `applied`,
    /// once the store holding them is synced. The current segment stays.
    /// Returns how many segments are left.
    pub(crate) fn remove_applied(&self, applied: Position) -> Result<usize, StoreError> {
        let found = segments(&self.dir)?;
        let total = found.len();
        let mut removed = 0;
        for pair in found.windows(2) {
            let [(_, path), (next_first, _)] = pair else {
                continue;
            };
            if *next_first <= applied + 1 {
                std::fs::remove_file(path)
                    .map_err(|e| io_error(path, "removing an applied journal segment", &e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(total - removed)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(syncs) = &self.syncs {
            syncs.stop();
        }
    }
}

/// Group commit for `fsync`: appenders register after their write; the
/// sync thread takes every waiter registered so far, runs one
/// `fdatasync`, and answers them all with its result.
struct SyncQueue {
    dir: PathBuf,
    pending: Mutex<SyncPending>,
    wake: Condvar,
}

#[derive(Default)]
struct SyncPending {
    file: Option<Arc<File>>,
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
    stop: bool,
}

impl SyncQueue {
    fn wait_for(&self, file: &Arc<File>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.file = Some(file.clone());
        p.waiters.push(tx);
        drop(p);
        self.wake.notify_one();
        rx
    }

    fn stop(&self) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            let (file, waiters) = {
                let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                // Bounded: each wait ends with a waiter or the stop.
                while p.waiters.is_empty() && !p.stop {
                    p = self.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                if p.waiters.is_empty() {
                    return;
                }
                (p.file.clone(), std::mem::take(&mut p.waiters))
            };
            // Every waiter wrote before registering, into this file or an
            // older segment synced when it was closed.
            let result = match file {
                Some(file) => file
                    .sync_data()
                    .map_err(|e| io_error(&self.dir, "syncing the journal", &e)),
                None => Ok(()),
            };
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }
}
