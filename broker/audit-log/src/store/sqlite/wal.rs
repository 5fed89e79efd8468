//! The WAL checkpointer: a thread with its own connection that copies the
//! write-ahead log back into the database file, so the writer only ever
//! appends to the WAL. Left to the writer (SQLite's auto-checkpoint),
//! copying took a third of its time, all of it while appends waited.
//!
//! PASSIVE checkpoints never block the writer or readers. When one has
//! copied everything, the writer's next transaction starts the WAL over
//! from its beginning, so it stays small. Should this thread fall behind
//! or fail, the writer's own auto-checkpoint (at a much larger WAL) still
//! bounds the file.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How often the checkpointer copies the WAL back. Copying after every
/// commit cost each call of a lightly loaded broker a WAL merge and a sync
/// (measured: docs/benchmarks.md); once per period it is shared by every
/// commit in between, and the WAL stays a period's worth of batches long.
const IDLE_PERIOD: Duration = Duration::from_millis(500);

/// Commits between nudges: under heavy load the WAL is copied back sooner
/// than the period, so it does not grow past a few MiB.
pub const COMMITS_PER_NUDGE: u64 = 256;

/// WAL pages at which the writer checkpoints by itself (256 MiB of 4 KiB
/// pages): only reached if this thread cannot keep up.
pub const WRITER_FALLBACK_PAGES: i64 = 65_536;

/// Owns the thread; dropping it stops the thread and waits for it, so the
/// file is closed once the store is dropped.
pub struct Checkpointer {
    nudge: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection with the writer's
    /// `synchronous` (so checkpoints sync as the writer's commits do).
    /// `None` if it cannot: the writer's auto-checkpoint then does the work.
    pub fn start(path: &Path, synchronous: &'static str) -> Option<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.pragma_update(None, "synchronous", synchronous).ok()?;
        // One pending nudge is enough: it means "look again".
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let db = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("audit-wal".into())
            .spawn(move || {
                // PASSIVE: nothing ever waits for it (see `background`).
                crate::background::step_aside("audit-wal");
                run(&conn, &db, &nudged)
            })
            .ok()?;
        Some(Self {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Tells the thread a batch was committed.
    pub fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

fn run(conn: &Connection, db: &Path, nudged: &mpsc::Receiver<()>) {
    loop {
        match nudged.recv_timeout(IDLE_PERIOD) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {
                // A failure (say the disk is full) is retried next time; the
                // WAL keeps everything meanwhile. Not at all while the
                // shared memory cannot be written (see there).
                if shared_memory_writable(db).is_ok() {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Whether SQLite's shared-memory file beside `db` (`<db>-shm`) may be
/// written, asked of the kernel without writing it. SQLite writes that file
/// through a shared mapping, and once its file system turns read-only (or
/// the file immutable) the kernel answers such a write with SIGBUS, which
/// ends the broker. Asked before every transaction and checkpoint, the
/// question turns that into an error the writer retries, and the broker
/// recovers by itself once the file is writable; only a change landing
/// between the question and the write (microseconds) still stops it. A
/// missing file is fine: SQLite makes it when it opens the log.
///
/// `access(2)`, not an `open`: closing any descriptor of a file drops every
/// POSIX lock this process holds on it, SQLite's on `-shm` included.
#[cfg(unix)]
pub fn shared_memory_writable(db: &Path) -> std::io::Result<()> {
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    match nix::unistd::access(Path::new(&shm), nix::unistd::AccessFlags::W_OK) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Elsewhere SQLite's shared memory is not a mapping that faults.
#[cfg(not(unix))]
pub fn shared_memory_writable(_db: &Path) -> std::io::Result<()> {
    Ok(())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
