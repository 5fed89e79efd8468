//! Test scaffolding: scratch directories under the system's temp dir,
//! removed when dropped, and events to append.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::store::{EntryIndex, PendingEntry};

/// Stored hashes in a plain list, as tlog's own tests keep them.
pub struct MemoryHashes(pub Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(*i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A directory only this test uses.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "hoop-audit-log-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Event `i`: a request by `alice` or `bob` to target `files` or `mail`,
/// at `1_000 + i` ns; every 7th carries a body stored beside it.
pub fn event(i: u64) -> PendingEntry {
    let subject = if i.is_multiple_of(2) { "alice" } else { "bob" };
    let target = if i.is_multiple_of(3) { "mail" } else { "files" };
    let decision = if i.is_multiple_of(5) { "deny" } else { "allow" };
    let mut bodies = Vec::new();
    let message = if i % 7 == 3 {
        let data = bytes::Bytes::from(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":\"big\"}}"
        ));
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let field = format!(
            "\"message_sha256\":\"{}\",\"message_bytes\":{}",
            crate::entry::hex(&sha),
            data.len()
        );
        bodies.push((sha, data));
        field
    } else {
        format!("\"message\":{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\"}}")
    };
    let fields = format!(
        "{{\"v\":1,\"type\":\"mcp.request\",\"exchange\":\"{i:016x}\",\"actor\":{{\"sub\":\"{subject}\"}},\"target\":\"{target}\",\"name\":\"read_file\",\"decision\":\"{decision}\",{message}}}"
    );
    PendingEntry {
        fields: fields.into_bytes(),
        bodies,
        index: EntryIndex {
            time_ns: 1_000 + i as i64,
            kind: "mcp.request".into(),
            subject: Some(subject.into()),
            target: Some(target.into()),
            name: Some("read_file".into()),
            decision: Some(decision.into()),
            exchange: Some(format!("{i:016x}")),
            session: (i.is_multiple_of(4)).then(|| "s1".to_owned()),
        },
    }
}

pub fn events(range: std::ops::Range<u64>) -> Vec<PendingEntry> {
    range.map(event).collect()
}
