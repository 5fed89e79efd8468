use super::*;
use crate::store::tests::{conformance_suite, Harness};
use crate::test_support::{events, TestDir};

/// SQLite files in a scratch directory, one per `fresh`.
struct SqliteHarness {
    dir: TestDir,
    made: u32,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            dir: TestDir::new("sqlite-suite"),
            made: 0,
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.path().join(format!("audit-{}.db", self.made))
    }
}

impl Harness for SqliteHarness {
    fn fresh(&mut self) -> Box<dyn AuditStore> {
        self.made += 1;
        Box::new(SqliteStore::open(&self.current(), Durability::Os).unwrap())
    }

    fn reopen(&mut self) -> Result<Box<dyn AuditStore>, StoreError> {
        Ok(Box::new(SqliteStore::open(
            &self.current(),
            Durability::Fsync,
        )?))
    }

    fn drop_last_hash(&mut self) {
        let conn = Connection::open(self.current()).unwrap();
        conn.execute(
            "DELETE FROM hashes WHERE idx = (SELECT MAX(idx) FROM hashes)",
            [],
        )
        .unwrap();
    }
}

mod conformance {
    use super::*;
    conformance_suite!(SqliteHarness::new());
}

#[test]
fn the_file_is_private_and_in_wal_mode() {
    let dir = TestDir::new("sqlite-file");
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path, Durability::Fsync).unwrap();
    store.append_batch(&events(0..2)).unwrap();
    let mode: String = store
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .connection()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["audit.db", "audit.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    drop(store);
    let os = SqliteStore::open(&path, Durability::Os).unwrap();
    let sync: i64 = os
        .connection()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
}

#[test]
fn a_full_disk_is_reported_as_one_and_writing_resumes() {
    let dir = TestDir::new("sqlite-full");
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path, Durability::Os).unwrap();
    store.append_batch(&events(0..5)).unwrap();
    let pages: i64 = store
        .connection()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    store.limit_pages(pages as u64);
    let big: Vec<_> = (5..400).map(crate::test_support::event).collect();
    let err = store.append_batch(&big).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::DiskFull, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("disk full ({})", path.display())),
        "{message}"
    );
    assert!(message.contains("free space"), "{message}");
    assert_eq!(store.tree_size().unwrap(), 5);
    store.limit_pages(1 << 30);
    assert_eq!(store.append_batch(&big).unwrap(), 400);
}

#[test]
fn a_reader_beside_the_writer_sees_commits_and_cannot_write() {
    let dir = TestDir::new("sqlite-reader");
    let path = dir.path().join("audit.db");
    let mut writer = SqliteStore::open(&path, Durability::Fsync).unwrap();
    writer.append_batch(&events(0..3)).unwrap();
    let mut reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(reader.tree_size().unwrap(), 3);
    writer.append_batch(&events(3..5)).unwrap();
    assert_eq!(reader.tree_size().unwrap(), 5);
    let err = reader.append_batch(&events(5..6)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::ReadOnly, "{err}");
    assert_eq!(
        reader.set_meta("k", "v").unwrap_err().kind(),
        StoreErrorKind::ReadOnly
    );
    assert_eq!(
        reader.put_checkpoint(5, "n").unwrap_err().kind(),
        StoreErrorKind::ReadOnly
    );
}

#[test]
fn the_read_only_opener_refuses_what_is_not_a_log() {
    let dir = TestDir::new("sqlite-not-a-log");
    let missing = SqliteStore::open_read_only(&dir.path().join("none.db"))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("no such file"), "{missing}");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).unwrap();
    let err = SqliteStore::open_read_only(&junk).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    let err = SqliteStore::open(&junk, Durability::Fsync).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TestDir::new("sqlite-newer");
    let path = dir.path().join("audit.db");
    drop(SqliteStore::open(&path, Durability::Fsync).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path, Durability::Fsync).err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Version, "{err}");
    assert_eq!(
        SqliteStore::open_read_only(&path).err().unwrap().kind(),
        StoreErrorKind::Version
    );
}

#[test]
fn a_missing_directory_is_named() {
    let dir = TestDir::new("sqlite-nodir");
    let path = dir.path().join("gone").join("audit.db");
    let err = SqliteStore::open(&path, Durability::Fsync).err().unwrap();
    assert!(err.to_string().contains("gone/audit.db"), "{err}");
    assert!(err.to_string().contains("directory exists"), "{err}");
}

/// The checkpointer thread copies the WAL into the file while the writer
/// only appends (the writer alone would wait for a 256 MiB WAL).
#[test]
fn the_wal_is_copied_back_beside_the_writer() {
    let dir = TestDir::new("sqlite-wal");
    let path = dir.path().join("audit.db");
    let mut store = SqliteStore::open(&path, Durability::Os).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for start in (0..3000).step_by(500) {
        store.append_batch(&events(start..start + 500)).unwrap();
    }
    let mut grown = 0;
    for _ in 0..100 {
        grown = std::fs::metadata(&path).unwrap().len();
        if grown > before + 1_000_000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        grown > before + 1_000_000,
        "the file stayed at {grown} bytes"
    );
    let fallback: i64 = store
        .connection()
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fallback, wal::WRITER_FALLBACK_PAGES);
    drop(store);
    assert_eq!(
        SqliteStore::open_read_only(&path)
            .unwrap()
            .tree_size()
            .unwrap(),
        3000
    );
}
