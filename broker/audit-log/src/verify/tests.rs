//! Round trips through export and verification, and the tamper set: each
//! way of altering an export must fail and name the event it hit.

use super::*;
use crate::checkpoint::LogSigner;
use crate::export::{export_jsonl, ExportRange};
use crate::store::sqlite::SqliteStore;
use crate::store::{meta_keys, AuditStore, Durability};
use crate::test_support::{events, TestDir};
use crate::tree;

const ORIGIN: &str = "hoop.example/audit/00c0ffee";

struct Fixture {
    _dir: TestDir,
    store: SqliteStore,
    signer: LogSigner,
}

impl Fixture {
    /// `n` events, a checkpoint stored at each size of `checkpoints`.
    fn new(n: u64, checkpoints: &[u64]) -> Self {
        let dir = TestDir::new("verify");
        let mut store = SqliteStore::open(&dir.path().join("audit.db"), Durability::Os).unwrap();
        let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
        store.init_meta(meta_keys::ORIGIN, ORIGIN).unwrap();
        store
            .set_meta(meta_keys::VERIFIER_KEY, signer.verifier_key())
            .unwrap();
        let mut fixture = Self {
            _dir: dir,
            store,
            signer,
        };
        let mut size = 0;
        for &at in checkpoints.iter().chain(std::iter::once(&n)) {
            if at > size {
                fixture.store.append_batch(&events(size..at)).unwrap();
                size = at;
            }
            if checkpoints.contains(&at) {
                fixture.sign(at);
            }
        }
        fixture
    }

    fn sign(&mut self, size: u64) {
        let note = self
            .signer
            .sign(size, &tree::root(&self.store, size).unwrap())
            .unwrap();
        self.store.put_checkpoint(size, &note).unwrap();
    }

    fn key(&self) -> Vec<String> {
        vec![self.signer.verifier_key().to_owned()]
    }

    fn export(&self, range: ExportRange) -> String {
        let mut out = Vec::new();
        export_jsonl(&self.store, range, None, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn verify(&self, export: &str) -> Result<Report, VerifyError> {
        verify_export(export.as_bytes(), &self.key())
    }
}

/// Ten events (event 3 with a body), checkpoints of size 6 and 10.
fn ten() -> (Fixture, Vec<String>) {
    let f = Fixture::new(10, &[6, 10]);
    let lines = f
        .export(ExportRange::All)
        .lines()
        .map(str::to_owned)
        .collect();
    (f, lines)
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn event_line(lines: &[String], seq: u64) -> usize {
    let prefix = format!("{{\"seq\":{seq},");
    lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
}

fn proof_line(lines: &[String], seq: u64) -> usize {
    let prefix = format!("{{\"inclusion\":{{\"seq\":{seq},");
    lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
}

/// Flips the byte at `at` of `line` to another printable byte.
fn flip(line: &str, at: usize) -> String {
    let mut bytes = line.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[track_caller]
fn fails(f: &Fixture, lines: &[String], seq: Option<u64>, problem: Problem) -> VerifyError {
    let err = f
        .verify(&joined(lines))
        .expect_err("a tampered export must fail");
    assert_eq!((err.seq, err.problem), (seq, problem), "{err}");
    err
}

#[test]
fn an_export_verifies_and_reports_what_it_holds() {
    let (f, lines) = ten();
    assert!(lines[0]
        .starts_with(r#"{"hoop_audit_export":1,"origin":"hoop.example/audit/00c0ffee","key":""#));
    let report = f.verify(&joined(&lines)).unwrap();
    assert_eq!(
        report,
        Report {
            origin: ORIGIN.into(),
            events: 10,
            checkpoints: 2,
            first_seq: 0,
            last_seq: Some(9),
            tree_size: 10,
            root: tree::root(&f.store, 10).unwrap().to_string(),
        }
    );
    assert!(report
        .to_string()
        .starts_with("OK hoop.example/audit/00c0ffee: 10 events (seq 0 to 9), 2 checkpoints"));
    // Each event line is the stored entry, byte for byte.
    for e in f.store.entries(0..10).unwrap() {
        assert_eq!(lines[event_line(&lines, e.seq)].as_bytes(), &e.entry[..]);
    }
}

#[test]
fn one_byte_changed_in_an_event_names_it() {
    let (f, mut lines) = ten();
    let i = event_line(&lines, 3);
    let at = lines[i].find("read_file").unwrap();
    lines[i] = flip(&lines[i], at);
    let err = fails(&f, &lines, Some(3), Problem::Changed);
    assert!(err.to_string().starts_with("seq 3: line"), "{err}");
}

#[test]
fn any_byte_changed_in_any_event_names_that_event() {
    let (f, lines) = ten();
    for seq in 0..10 {
        let i = event_line(&lines, seq);
        let len = lines[i].len();
        for at in [2, 7, 9, len / 3, len / 2, len - 2, len - 1] {
            let mut changed = lines.clone();
            changed[i] = flip(&changed[i], at);
            let err = f.verify(&joined(&changed)).expect_err("changed");
            assert_eq!(err.seq, Some(seq), "byte {at} of seq {seq}: {err}");
        }
    }
}

#[test]
fn a_deleted_event_line_is_missing() {
    let (f, mut lines) = ten();
    lines.remove(event_line(&lines, 4));
    fails(&f, &lines, Some(4), Problem::Missing);
}

#[test]
fn a_deleted_event_with_its_body_and_proof_is_missing() {
    let (f, mut lines) = ten();
    let (from, to) = (event_line(&lines, 3), proof_line(&lines, 3));
    lines.drain(from..=to);
    let err = fails(&f, &lines, Some(3), Problem::Missing);
    assert!(err.detail.contains("seq 4 is in its place"), "{err}");
}

#[test]
fn a_deleted_proof_line_names_its_event() {
    let (f, mut lines) = ten();
    lines.remove(proof_line(&lines, 5));
    fails(&f, &lines, Some(5), Problem::MissingProof);
}

#[test]
fn a_duplicated_event_line_is_inserted() {
    let (f, mut lines) = ten();
    let i = event_line(&lines, 2);
    lines.insert(i + 1, lines[i].clone());
    fails(&f, &lines, Some(2), Problem::Inserted);
    // And a copy further on, after its own proof.
    let (f, mut lines) = ten();
    let copy = lines[event_line(&lines, 2)].clone();
    lines.insert(proof_line(&lines, 6) + 1, copy);
    fails(&f, &lines, Some(2), Problem::Inserted);
}

#[test]
fn swapped_event_lines_name_the_first() {
    let (f, mut lines) = ten();
    let (a, b) = (event_line(&lines, 6), event_line(&lines, 7));
    lines.swap(a, b);
    fails(&f, &lines, Some(6), Problem::Missing);
    // Whole events swapped, each with its proof.
    let (f, mut lines) = ten();
    let (a, b) = (event_line(&lines, 6), event_line(&lines, 7));
    lines.swap(a, b);
    lines.swap(a + 1, b + 1);
    fails(&f, &lines, Some(6), Problem::Missing);
}

#[test]
fn a_changed_checkpoint_is_a_bad_signature() {
    let (f, mut lines) = ten();
    lines[1] = lines[1].replacen("\\n6\\n", "\\n7\\n", 1);
    let err = fails(&f, &lines, None, Problem::BadSignature);
    assert!(
        err.to_string()
            .starts_with("line 2: bad signature: checkpoint 1"),
        "{err}"
    );
    // A byte of the signature itself.
    let (f, mut lines) = ten();
    let len = lines[2].len();
    lines[2] = flip(&lines[2], len - 10);
    let err = f.verify(&joined(&lines)).unwrap_err();
    assert!(
        matches!(err.problem, Problem::BadSignature | Problem::UnknownKey),
        "{err}"
    );
    assert_eq!(err.seq, None);
}

#[test]
fn another_key_is_unknown() {
    let (_f, lines) = ten();
    let (other, _) = LogSigner::generate(ORIGIN).unwrap();
    let err = verify_export(
        joined(&lines).as_bytes(),
        &[other.verifier_key().to_owned()],
    )
    .unwrap_err();
    assert_eq!((err.seq, err.problem), (None, Problem::UnknownKey), "{err}");
    let err = verify_export(joined(&lines).as_bytes(), &["garbage".to_owned()]).unwrap_err();
    assert_eq!(err.problem, Problem::BadKey);
}

#[test]
fn bodies_must_be_there_and_unchanged() {
    let (f, mut lines) = ten();
    let i = event_line(&lines, 3) + 1;
    assert!(lines[i].starts_with("{\"body\":"));
    let at = lines[i].find("\"data\":\"").unwrap() + 12;
    lines[i] = flip(&lines[i], at);
    fails(&f, &lines, Some(3), Problem::BadBody);
    let (f, mut lines) = ten();
    lines.remove(event_line(&lines, 3) + 1);
    fails(&f, &lines, Some(3), Problem::MissingBody);
}

#[test]
fn a_changed_proof_names_its_event() {
    let (f, mut lines) = ten();
    let i = proof_line(&lines, 5);
    let at = lines[i].find("\"proof\":[\"").unwrap() + 10;
    lines[i] = flip(&lines[i], at);
    fails(&f, &lines, Some(5), Problem::Changed);
    let (f, mut lines) = ten();
    let i = lines
        .iter()
        .position(|l| l.starts_with("{\"consistency\":"))
        .unwrap();
    let at = lines[i].find("\"proof\":[\"").unwrap() + 10;
    lines[i] = flip(&lines[i], at);
    fails(&f, &lines, None, Problem::Inconsistent);
}

#[test]
fn a_carriage_return_changes_the_event() {
    let (f, mut lines) = ten();
    let i = event_line(&lines, 1);
    lines[i].push('\r');
    fails(&f, &lines, Some(1), Problem::Changed);
}

#[test]
fn a_cut_short_export_names_the_first_event_it_lacks() {
    let (f, mut lines) = ten();
    lines.truncate(event_line(&lines, 9));
    fails(&f, &lines, Some(9), Problem::Missing);
    let (f, mut lines) = ten();
    lines.truncate(event_line(&lines, 9) + 1);
    fails(&f, &lines, Some(9), Problem::MissingProof);
    let err = f.verify("").unwrap_err();
    assert_eq!(err.problem, Problem::Truncated);
}

#[test]
fn a_changed_seq_member_is_caught_at_that_position() {
    let (f, mut lines) = ten();
    let i = event_line(&lines, 4);
    lines[i] = lines[i].replacen("{\"seq\":4,", "{\"seq\":5,", 1);
    fails(&f, &lines, Some(4), Problem::Missing);
    let (f, mut lines) = ten();
    let i = event_line(&lines, 4);
    lines[i] = lines[i].replacen("{\"seq\":4,", "{\"v\":1,\"seq\":4,", 1);
    fails(&f, &lines, Some(4), Problem::Malformed);
}

#[test]
fn the_header_must_agree_with_the_checkpoints() {
    let (f, mut lines) = ten();
    lines[0] = lines[0].replacen("\"tree_size\":10", "\"tree_size\":11", 1);
    fails(&f, &lines, None, Problem::Header);
    let (f, mut lines) = ten();
    lines[0] = lines[0].replacen("\"hoop_audit_export\":1", "\"hoop_audit_export\":2", 1);
    fails(&f, &lines, None, Problem::Header);
    let (f, mut lines) = ten();
    lines[0] = lines[0].replacen(ORIGIN, "other.example/audit", 1);
    fails(&f, &lines, None, Problem::WrongOrigin);
}

#[test]
fn stray_and_overlong_lines_are_refused() {
    let (f, mut lines) = ten();
    lines.insert(proof_line(&lines, 2) + 1, "{\"what\":1}".into());
    fails(&f, &lines, Some(3), Problem::Malformed);
    let (f, mut lines) = ten();
    lines.insert(proof_line(&lines, 2) + 1, "x".repeat(MAX_LINE_BYTES + 1));
    fails(&f, &lines, Some(3), Problem::TooLong);
}

#[test]
fn every_line_deleted_or_swapped_with_the_next_fails() {
    let (f, lines) = ten();
    for i in 0..lines.len() {
        let mut deleted = lines.clone();
        deleted.remove(i);
        assert!(
            f.verify(&joined(&deleted)).is_err(),
            "line {} deleted",
            i + 1
        );
        if i + 1 < lines.len() {
            let mut swapped = lines.clone();
            swapped.swap(i, i + 1);
            assert!(
                f.verify(&joined(&swapped)).is_err(),
                "lines {} and {} swapped",
                i + 1,
                i + 2
            );
        }
    }
}

#[test]
fn checkpoints_across_a_key_rotation_verify_with_both_keys() {
    let mut f = Fixture::new(8, &[4]);
    let old_key = f.key();
    let (new, _) = LogSigner::generate(ORIGIN).unwrap();
    f.signer = new;
    f.sign(8);
    let export = f.export(ExportRange::All);
    let both = [old_key.clone(), f.key()].concat();
    assert_eq!(
        verify_export(export.as_bytes(), &both).unwrap().checkpoints,
        2
    );
    let err = verify_export(export.as_bytes(), &f.key()).unwrap_err();
    assert_eq!(err.problem, Problem::UnknownKey, "{err}");
}

#[test]
fn a_seq_range_export_holds_its_range_and_verifies() {
    let f = Fixture::new(30, &[10, 20, 25, 30]);
    let export = f.export(ExportRange::Seqs(12..20));
    let report = f.verify(&export).unwrap();
    assert_eq!(
        (report.first_seq, report.tree_size, report.events),
        (12, 20, 8)
    );
    assert_eq!(
        report.checkpoints, 1,
        "only the one at 20: none lies inside"
    );
    // No stored checkpoint at 23: without a signer it runs up to 25.
    let report = f.verify(&f.export(ExportRange::Seqs(12..23))).unwrap();
    assert_eq!(
        (report.first_seq, report.tree_size, report.checkpoints),
        (12, 25, 2)
    );
    // With the signer it ends at 23, signed on the spot.
    let mut out = Vec::new();
    let summary = export_jsonl(
        &f.store,
        ExportRange::Seqs(12..23),
        Some(&f.signer),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        (summary.first_seq, summary.tree_size, summary.events),
        (12, 23, 11)
    );
    assert_eq!(
        f.verify(std::str::from_utf8(&out).unwrap())
            .unwrap()
            .tree_size,
        23
    );
}

#[test]
fn a_time_range_export_maps_to_seqs() {
    let f = Fixture::new(30, &[30]);
    let export = f.export(ExportRange::Time {
        since_ns: Some(1_005),
        until_ns: Some(1_007),
    });
    let report = f.verify(&export).unwrap();
    assert_eq!(report.first_seq, 5);
    assert_eq!(report.tree_size, 30, "extended to the checkpoint");
}

#[test]
fn an_export_without_a_covering_checkpoint_says_so() {
    let f = Fixture::new(12, &[10]);
    let err = export_jsonl(&f.store, ExportRange::All, None, Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("no checkpoint covers seq 11"),
        "{err}"
    );
    let err = export_jsonl(&f.store, ExportRange::Seqs(50..60), None, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no events"), "{err}");
}

#[test]
fn a_whole_store_verifies() {
    let f = Fixture::new(40, &[10, 33, 40]);
    let report = verify_store(&f.store, &f.key()).unwrap();
    assert_eq!(
        (report.events, report.checkpoints, report.tree_size),
        (40, 3, 40)
    );
    assert_eq!(report.last_seq, Some(39));
}

#[test]
fn a_changed_entry_in_the_store_is_named() {
    let f = Fixture::new(40, &[40]);
    f.store
        .connection()
        .execute("UPDATE entries SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'read_file', 'rm_rf') AS BLOB) WHERE seq = 17", [])
        .unwrap();
    let err = verify_store(&f.store, &f.key()).unwrap_err();
    assert_eq!(
        (err.seq, err.problem),
        (Some(17), Problem::Changed),
        "{err}"
    );
}

#[test]
fn a_changed_stored_hash_is_named() {
    let f = Fixture::new(40, &[40]);
    // Stored hashes 0, 1: leaves 0, 1; 2: their node; 3, 4: leaves 2, 3;
    // 5: the node over leaves 2 and 3, written with seq 3.
    let zero = |idx: i64| {
        f.store
            .connection()
            .execute(
                "UPDATE hashes SET hash = zeroblob(32) WHERE idx = ?1",
                [idx],
            )
            .unwrap();
    };
    zero(5);
    let err = verify_store(&f.store, &f.key()).unwrap_err();
    assert_eq!((err.seq, err.problem), (Some(3), Problem::Changed), "{err}");
    assert!(err.detail.contains("interior"), "{err}");
    zero(4);
    let err = verify_store(&f.store, &f.key()).unwrap_err();
    assert_eq!((err.seq, err.problem), (Some(3), Problem::Changed), "{err}");
    assert!(err.detail.contains("leaf hash"), "{err}");
}

#[test]
fn a_deleted_entry_in_the_store_is_named() {
    let f = Fixture::new(40, &[40]);
    f.store
        .connection()
        .execute("DELETE FROM entries WHERE seq = 21", [])
        .unwrap();
    let err = verify_store(&f.store, &f.key()).unwrap_err();
    assert_eq!(
        (err.seq, err.problem),
        (Some(21), Problem::Missing),
        "{err}"
    );
}

/// Entries and hashes rewritten together so they agree: only the signed
/// checkpoints can tell, and do.
#[test]
fn a_rewritten_history_contradicts_its_checkpoints() {
    let mut f = Fixture::new(20, &[5, 12, 20]);
    let conn = f.store.connection();
    conn.execute("DELETE FROM entries WHERE seq >= 8", [])
        .unwrap();
    conn.execute(
        "DELETE FROM hashes WHERE idx >= ?1",
        [tlog_tiles::stored_hash_count(8) as i64],
    )
    .unwrap();
    let mut rewritten = events(8..20);
    rewritten[0].fields = rewritten[0].fields.replace_all_read_file();
    f.store.append_batch(&rewritten).unwrap();
    let err = verify_store(&f.store, &f.key()).unwrap_err();
    assert_eq!(
        (err.seq, err.problem),
        (None, Problem::Inconsistent),
        "{err}"
    );
    assert!(err.detail.contains("from seq 5 to 11"), "{err}");
}

trait ReplaceReadFile {
    fn replace_all_read_file(&self) -> Vec<u8>;
}

impl ReplaceReadFile for Vec<u8> {
    fn replace_all_read_file(&self) -> Vec<u8> {
        String::from_utf8_lossy(self)
            .replace("read_file", "rm_rf")
            .into_bytes()
    }
}

#[test]
fn a_store_checkpoint_by_another_key_is_unknown() {
    let mut f = Fixture::new(10, &[10]);
    let (other, _) = LogSigner::generate(ORIGIN).unwrap();
    let original = std::mem::replace(&mut f.signer, other);
    f.sign(5);
    let err = verify_store(&f.store, &[original.verifier_key().to_owned()]).unwrap_err();
    assert_eq!(err.problem, Problem::UnknownKey, "{err}");
}

/// Whatever is done to an export, verifying it returns: hundreds of
/// random edits (bytes changed, cut out, copied, lines shuffled), no panic.
#[test]
fn random_damage_never_panics_and_content_damage_never_passes() {
    let (f, lines) = ten();
    let good = joined(&lines);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    // Everything after the header is signed, proved or hashed.
    let after_header = good.find('\n').unwrap() + 1;
    // Few rounds: each checks two Ed25519 signatures, slow in a debug build.
    for round in 0..400 {
        let mut bytes = good.clone().into_bytes();
        let edits = 1 + next(3);
        for _ in 0..edits {
            if bytes.len() <= after_header {
                break;
            }
            let at = after_header + next(bytes.len() - after_header);
            match next(4) {
                0 => {
                    let alphabet = b" \"{}[],:0123456789abcdefAZ\\\n\r";
                    bytes[at] = alphabet[next(alphabet.len())];
                }
                1 => {
                    let end = (at + 1 + next(200)).min(bytes.len());
                    bytes.drain(at..end);
                }
                2 => {
                    let end = (at + 1 + next(200)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = after_header + next(bytes.len() - after_header + 1);
                    bytes.splice(to..to, copy);
                }
                _ => bytes.truncate(at),
            }
        }
        let result = verify_export(bytes.as_slice(), &f.key());
        if bytes != good.as_bytes() {
            // Some edits undo themselves or hit nothing that matters (a
            // JSON escape for the same text); everything else must fail.
            if let Ok(report) = &result {
                let text = String::from_utf8_lossy(&bytes);
                let events: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("{\"seq\":"))
                    .collect();
                let original: Vec<&str> = lines
                    .iter()
                    .map(String::as_str)
                    .filter(|l| l.starts_with("{\"seq\":"))
                    .collect();
                assert_eq!(
                    events, original,
                    "round {round}: changed events passed: {report}"
                );
            }
        }
    }
}

#[test]
fn an_ocsf_file_is_named_as_such_instead_of_a_bad_header() {
    let (f, _) = ten();
    let ocsf = vec![r#"{"class_uid":6003,"activity_id":1,"metadata":{"sequence":0}}"#.to_owned()];
    let e = fails(&f, &ocsf, None, Problem::Header);
    assert!(e.detail.contains("OCSF export"), "{e}");
    assert!(e.detail.contains("--format jsonl"), "{e}");
}
