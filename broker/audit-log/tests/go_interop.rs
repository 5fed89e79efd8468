//! Interop with Go's reference code (golang.org/x/mod/sumdb/note and
//! sumdb/tlog, via tests/verifier-go): an export this crate writes must
//! pass Go's `hoopverify`, tampered copies must fail there with the same
//! seq our verifier names, and Go's own fixture must pass our verifier.
//! Skipped (with a note) where Go and Debian's x/mod sources are missing.

#![allow(clippy::unwrap_used)] // a test: a failed expectation should panic

use std::path::{Path, PathBuf};
use std::process::Command;

use hoop_audit_log::{
    export_jsonl, verify_export, AuditLog, Durability, EntryIndex, ExportRange, LogConfig,
    PendingEntry, SqliteStore,
};
use sha2::{Digest, Sha256};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "hoop-audit-go-interop-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn verifier_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/verifier-go")
}

/// Builds hoopverify and mkfixture, or says why not.
fn build_go(into: &Path) -> Option<PathBuf> {
    let have_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_xmod = Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog/tlog.go").exists();
    if !have_go || !have_xmod {
        eprintln!("skipped: needs `go` and Debian's golang-golang-x-mod-dev");
        return None;
    }
    let bin = into.join("bin");
    let out = Command::new(verifier_dir().join("run.sh"))
        .arg("--out")
        .arg(&bin)
        .arg("--build-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building hoopverify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// `hoopverify`'s verdict line: "OK …", "FAIL seq N: …" or "FAIL: …".
fn go_verdict(bin: &Path, key: &str, export: &Path) -> String {
    let out = Command::new(bin.join("hoopverify"))
        .arg("-key")
        .arg(key)
        .arg(export)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn event(i: u64) -> PendingEntry {
    let mut bodies = Vec::new();
    let message = if i % 5 == 2 {
        let data = bytes::Bytes::from(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"text\":\"large\"}}}}"
        ));
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        let field = format!(
            "\"message_sha256\":\"{hex}\",\"message_bytes\":{}",
            data.len()
        );
        bodies.push((sha, data));
        field
    } else {
        format!("\"message\":{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"read_file\"}}}}")
    };
    PendingEntry {
        fields: format!(
            "{{\"v\":1,\"time\":\"2026-12-03T09:25:53.{i:09}Z\",\"type\":\"mcp.request\",\"actor\":{{\"sub\":\"alice\",\"kind\":\"human\"}},\"target\":\"files\",{message}}}"
        )
        .into_bytes(),
        bodies,
        index: EntryIndex {
            time_ns: i as i64,
            kind: "mcp.request".into(),
            subject: Some("alice".into()),
            ..Default::default()
        },
    }
}

/// Our verifier's verdict in hoopverify's words, to compare.
fn our_verdict(key: &str, export: &[u8]) -> String {
    match verify_export(export, &[key.to_owned()]) {
        Ok(_) => "OK".into(),
        Err(e) => match e.seq {
            Some(seq) => format!("FAIL seq {seq}:"),
            None => "FAIL:".into(),
        },
    }
}

#[tokio::test]
async fn go_reference_code_agrees_with_our_export_and_verifier() {
    let dir = TempDir::new();
    let Some(bin) = build_go(&dir.0) else {
        return;
    };
    let config = LogConfig {
        durability: Durability::Os,
        checkpoint_every: 10,
        ..LogConfig::default()
    };
    let db = dir.0.join("audit.db");
    let log = AuditLog::open_sqlite(&db, &dir.0.join("audit-signing.key"), config).unwrap();
    for i in 0..25 {
        log.append_indexed(event(i)).await.unwrap();
    }
    log.shutdown().await.unwrap();
    let key = log.verifier_key().to_owned();
    let store = SqliteStore::open_read_only(&db).unwrap();
    let mut export = Vec::new();
    export_jsonl(&store, ExportRange::All, None, &mut export).unwrap();
    let good = dir.0.join("good.jsonl");
    std::fs::write(&good, &export).unwrap();
    let verdict = go_verdict(&bin, &key, &good);
    assert!(verdict.starts_with("OK "), "Go's hoopverify: {verdict}");
    assert!(
        verdict.contains("25 events (seq 0 to 24), 3 checkpoints, tree size 25"),
        "{verdict}"
    );

    // Tampered copies: both verifiers fail, naming the same seq.
    let text = String::from_utf8(export.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let find = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap();
    let flip = |line: &str, at: usize| {
        let mut b = line.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let mut cases: Vec<(&str, Vec<String>, &str)> = Vec::new();
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let mut byte = owned();
    let i = find("{\"seq\":3,");
    byte[i] = flip(&byte[i], byte[i].find("alice").unwrap());
    cases.push(("byte of event 3", byte, "FAIL seq 3:"));
    let mut deleted = owned();
    deleted.remove(find("{\"seq\":4,"));
    cases.push(("event 4 deleted", deleted, "FAIL seq 4:"));
    let mut dup = owned();
    let i = find("{\"seq\":2,");
    dup.insert(i + 1, dup[i].clone());
    cases.push(("event 2 twice", dup, "FAIL seq 2:"));
    let mut swapped = owned();
    swapped.swap(find("{\"seq\":6,"), find("{\"seq\":8,"));
    cases.push(("events 6 and 8 swapped", swapped, "FAIL seq 6:"));
    let mut body = owned();
    let i = find("{\"body\":");
    body[i] = flip(&body[i], body[i].find("\"data\":\"").unwrap() + 12);
    cases.push(("body of event 2", body, "FAIL seq 2:"));
    let mut checkpoint = owned();
    checkpoint[1] = checkpoint[1].replacen("\\n10\\n", "\\n11\\n", 1);
    cases.push(("checkpoint size", checkpoint, "FAIL:"));
    let mut cr = owned();
    let i = find("{\"seq\":1,");
    cr[i].push('\r');
    cases.push(("CR on event 1", cr, "FAIL seq 1:"));
    let mut cut = owned();
    cut.truncate(find("{\"seq\":24,"));
    cases.push(("cut before event 24", cut, "FAIL seq 24:"));

    for (name, lines, want) in cases {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let path = dir.0.join("tampered.jsonl");
        std::fs::write(&path, &text).unwrap();
        let go = go_verdict(&bin, &key, &path);
        assert!(go.starts_with(want), "{name}: Go says {go}, want {want}");
        assert_eq!(
            our_verdict(&key, text.as_bytes()),
            want,
            "{name}: Go says {go}"
        );
    }

    // Go's own fixture, made by Go's note and tlog, passes our verifier.
    let fixture = dir.0.join("go-fixture.jsonl");
    let out = Command::new(bin.join("mkfixture"))
        .arg("-o")
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(out.status.success());
    let go_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let report = verify_export(std::fs::read(&fixture).unwrap().as_slice(), &[go_key]).unwrap();
    assert_eq!(
        (report.events, report.checkpoints, report.tree_size),
        (10, 2, 10)
    );
}
