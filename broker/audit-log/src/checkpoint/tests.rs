use base64::Engine as _;
use ed25519_dalek::Verifier as _;

use super::*;
use crate::test_support::TestDir;

const ORIGIN: &str = "hoop.example/audit/0a1b2c3d";

fn root(byte: u8) -> Hash {
    Hash([byte; 32])
}

/// The note text byte for byte as C2SP tlog-checkpoint and signed-note
/// write it, and a signature Ed25519 itself (not signed_note) accepts.
#[test]
fn a_checkpoint_note_is_exactly_the_c2sp_format() {
    let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
    let note = signer.sign(42, &root(7)).unwrap();
    let root_b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let (body, sig_line) = note.split_once("\n\n").unwrap();
    assert_eq!(format!("{body}\n"), format!("{ORIGIN}\n42\n{root_b64}\n"));
    let sig_line = sig_line.strip_suffix('\n').unwrap();
    assert!(!sig_line.contains('\n'), "one signature line");
    let sig_b64 = sig_line
        .strip_prefix(&format!("\u{2014} {ORIGIN} "))
        .unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .unwrap();
    assert_eq!(sig.len(), 4 + 64);

    // Verifier key: name+hexid+base64(0x01 ‖ public key).
    let parts: Vec<&str> = signer.verifier_key().splitn(3, '+').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], ORIGIN);
    let public = base64::engine::general_purpose::STANDARD
        .decode(parts[2])
        .unwrap();
    assert_eq!(public[0], 1, "Ed25519");
    assert_eq!(
        u32::from_str_radix(parts[1], 16).unwrap(),
        u32::from_be_bytes(sig[..4].try_into().unwrap())
    );
    let key = ed25519_dalek::VerifyingKey::from_bytes(public[1..].try_into().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(sig[4..].try_into().unwrap());
    key.verify(format!("{body}\n").as_bytes(), &signature)
        .unwrap();
}

#[test]
fn a_checkpoint_opens_with_its_key_and_states_what_it_signed() {
    let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
    let keys = TrustedKeys::parse(&[signer.verifier_key().to_owned()]).unwrap();
    let opened = open_checkpoint(signer.sign(5, &root(1)).unwrap().as_bytes(), &keys).unwrap();
    assert_eq!(
        opened,
        OpenedCheckpoint {
            origin: ORIGIN.into(),
            size: 5,
            root: root(1)
        }
    );
}

#[test]
fn another_key_is_unknown_and_a_changed_body_is_a_bad_signature() {
    let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
    let (other, _) = LogSigner::generate(ORIGIN).unwrap();
    let note = signer.sign(5, &root(1)).unwrap();
    let theirs = TrustedKeys::parse(&[other.verifier_key().to_owned()]).unwrap();
    assert!(matches!(
        open_checkpoint(note.as_bytes(), &theirs),
        Err(CheckpointError::UnknownKey(_))
    ));
    let ours = TrustedKeys::parse(&[signer.verifier_key().to_owned()]).unwrap();
    let changed = note.replacen("\n5\n", "\n6\n", 1);
    assert!(matches!(
        open_checkpoint(changed.as_bytes(), &ours),
        Err(CheckpointError::BadSignature(_))
    ));
    assert!(matches!(
        open_checkpoint(b"not a note", &ours),
        Err(CheckpointError::Malformed(_))
    ));
}

#[test]
fn either_key_of_a_rotation_opens_its_checkpoints() {
    let (old, _) = LogSigner::generate(ORIGIN).unwrap();
    let (new, _) = LogSigner::generate(ORIGIN).unwrap();
    let keys = TrustedKeys::parse(&[
        old.verifier_key().to_owned(),
        new.verifier_key().to_owned(),
        new.verifier_key().to_owned(),
    ])
    .unwrap();
    assert_eq!(
        open_checkpoint(old.sign(1, &root(1)).unwrap().as_bytes(), &keys)
            .unwrap()
            .size,
        1
    );
    assert_eq!(
        open_checkpoint(new.sign(2, &root(2)).unwrap().as_bytes(), &keys)
            .unwrap()
            .size,
        2
    );
}

/// A checkpoint of another origin, even signed by our key, is not ours.
#[test]
fn the_origin_must_be_the_signing_keys_name() {
    let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
    let keys = TrustedKeys::parse(&[signer.verifier_key().to_owned()]).unwrap();
    let text = checkpoint_text("elsewhere.example/log", 3, &root(3)).unwrap();
    let mut note = Note::new(text.as_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer.signer]).unwrap();
    assert!(matches!(
        open_checkpoint(&note.to_bytes(), &keys),
        Err(CheckpointError::Origin { .. })
    ));
}

#[test]
fn extension_lines_and_odd_roots_are_refused() {
    let (signer, _) = LogSigner::generate(ORIGIN).unwrap();
    let keys = TrustedKeys::parse(&[signer.verifier_key().to_owned()]).unwrap();
    let signed = |text: String| {
        let mut note = Note::new(text.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&signer.signer]).unwrap();
        note.to_bytes()
    };
    let base = checkpoint_text(ORIGIN, 3, &root(3)).unwrap();
    let extended = signed(format!("{base}extra line\n"));
    assert!(matches!(
        open_checkpoint(&extended, &keys),
        Err(CheckpointError::Body(_))
    ));
    let empty_wrong_root = signed(checkpoint_text(ORIGIN, 0, &root(3)).unwrap());
    assert!(matches!(
        open_checkpoint(&empty_wrong_root, &keys),
        Err(CheckpointError::Body(_))
    ));
    let empty = signed(checkpoint_text(ORIGIN, 0, &EMPTY_HASH).unwrap());
    assert_eq!(open_checkpoint(&empty, &keys).unwrap().size, 0);
}

#[test]
fn the_key_file_is_made_once_0600_and_never_overwritten() {
    let dir = TestDir::new("key-file");
    let path = dir.path().join("audit-signing.key");
    let first = LogSigner::load_or_create(&path, ORIGIN).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!("PRIVATE+KEY+{ORIGIN}+")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = LogSigner::load_or_create(&path, ORIGIN).unwrap();
    assert_eq!(again.verifier_key(), first.verifier_key());
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn key_file_errors_say_what_to_do() {
    let dir = TestDir::new("key-errors");
    let path = dir.path().join("audit-signing.key");
    let missing = LogSigner::load(&path, ORIGIN).unwrap_err();
    assert!(matches!(missing, KeyError::Missing { .. }), "{missing}");
    fs::write(&path, "PRIVATE+KEY+garbage\n").unwrap();
    let malformed = LogSigner::load_or_create(&path, ORIGIN).unwrap_err();
    assert!(matches!(malformed, KeyError::Malformed { .. }));
    assert!(
        malformed.to_string().contains("restore it from backup"),
        "{malformed}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "PRIVATE+KEY+garbage\n",
        "left as it was"
    );

    let (_, text) = LogSigner::generate("other.example/log").unwrap();
    fs::write(&path, text).unwrap();
    let mismatch = LogSigner::load_or_create(&path, ORIGIN).unwrap_err();
    assert!(
        matches!(mismatch, KeyError::NameMismatch { .. }),
        "{mismatch}"
    );
    assert!(
        mismatch.to_string().contains("other.example/log"),
        "{mismatch}"
    );

    let nowhere = dir.path().join("no-such-dir").join("k");
    assert!(matches!(
        LogSigner::load_or_create(&nowhere, ORIGIN),
        Err(KeyError::Create { .. })
    ));
}

#[test]
fn origins_must_be_key_names() {
    check_origin("hoop.local/audit/0123abcd").unwrap();
    for bad in ["", "a b", "a+b", "a\u{7}b"] {
        assert!(check_origin(bad).is_err(), "{bad:?}");
    }
    let id = new_log_id().unwrap();
    assert_eq!(id.len(), 8);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    check_origin(&default_origin(&id)).unwrap();
}

#[test]
fn malformed_verifier_keys_are_refused_with_the_key_named() {
    let err = TrustedKeys::parse(&["nope".to_owned()]).err().unwrap();
    assert!(err.to_string().contains("`nope`"), "{err}");
    assert!(matches!(
        TrustedKeys::parse(&[]),
        Err(KeyError::NoVerifierKey)
    ));
}
