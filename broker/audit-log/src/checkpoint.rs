//! Checkpoints: the log's signing key, the checkpoint notes it signs, and
//! opening a note against the verifier keys a reader trusts.
//!
//! A checkpoint is a C2SP `tlog-checkpoint` body (`origin\nsize\nbase64
//! root\n`) in a C2SP `signed-note` signed with Ed25519, so Go's
//! `sumdb/note` and `sumdb/tlog` (and anything else following C2SP) can
//! check it. The key's name is the log's origin: C2SP asks for that, and it
//! stops a checkpoint of another log signed with the same key from being
//! taken for this one.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use signed_note::{
    is_key_name_valid, key_id, new_ed25519_verifier_key, Note, NoteError, Signer as _,
    StandardSigner, StandardVerifier, VerificationError, Verifier, VerifierList,
};
use tlog_tiles::{Checkpoint, Hash, EMPTY_HASH};

/// Ed25519 in signed-note's key encoding.
const ALG_ED25519: u8 = 1;

/// Largest tree size a checkpoint may state: Go's `tlog` counts in int64.
pub const MAX_CHECKPOINT_SIZE: u64 = i64::MAX as u64;

/// A key or origin problem, saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit signing key {path}: {source}; run the broker as the user owning it (it must stay readable by that user only, 0600)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no audit signing key at {path}: the broker creates it on its first start; sign on the broker host, or use the checkpoints the broker stored")]
    Missing { path: PathBuf },
    #[error("cannot create the audit signing key {path}: {source}; make its directory writable by the broker")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an audit signing key (one line PRIVATE+KEY+name+id+base64, as the broker writes it): restore it from backup; removing it makes the broker create a new key, which every verifier must then be given")]
    Malformed { path: PathBuf },
    #[error("the audit signing key {path} signs for `{key_name}`, but this log's origin is `{origin}`: use this log's own key, or set the origin to `{key_name}`")]
    NameMismatch {
        path: PathBuf,
        key_name: String,
        origin: String,
    },
    #[error("`{origin}` cannot be an audit log origin: {why}")]
    BadOrigin { origin: String, why: &'static str },
    #[error("verifier key `{key}` is not name+hexid+base64 of an Ed25519 key ({why}); give the key `hoop-broker audit pubkey` prints")]
    BadVerifierKey { key: String, why: String },
    #[error("no verifier key given: give the broker's, as `hoop-broker audit pubkey` prints it")]
    NoVerifierKey,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("signing a checkpoint failed: {0}")]
    Sign(String),
}

/// Checks an origin can be a signed-note key name and a checkpoint line.
pub fn check_origin(origin: &str) -> Result<(), KeyError> {
    let why = if origin.is_empty() {
        Some("it is empty")
    } else if !is_key_name_valid(origin) {
        Some("it has a space or a '+'")
    } else if origin.chars().any(char::is_control) {
        Some("it has a control character")
    } else if origin.len() > 255 {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(KeyError::BadOrigin {
            origin: origin.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// A new random log id: 8 hex digits.
pub fn new_log_id() -> Result<String, KeyError> {
    let mut id = [0u8; 4];
    OsRng
        .try_fill_bytes(&mut id)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(crate::entry::hex(&id))
}

/// The origin of a log nobody named: `hoop.local/audit/<log id>`.
pub fn default_origin(log_id: &str) -> String {
    format!("hoop.local/audit/{log_id}")
}

/// The log's signing key, named by the log's origin.
#[derive(Clone)]
pub struct LogSigner {
    signer: StandardSigner,
    verifier_key: String,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("verifier_key", &self.verifier_key)
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// A fresh key for `origin`, with its private key text
    /// (`PRIVATE+KEY+name+id+base64`) to keep.
    pub fn generate(origin: &str) -> Result<(Self, String), KeyError> {
        check_origin(origin)?;
        let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = [&[ALG_ED25519][..], signing.verifying_key().as_bytes()].concat();
        let private = [&[ALG_ED25519][..], &seed[..]].concat();
        let text = format!(
            "PRIVATE+KEY+{origin}+{:08x}+{}",
            key_id(origin, &public),
            base64::engine::general_purpose::STANDARD.encode(private)
        );
        let signer = Self::from_private_key(&text)
            .ok_or(KeyError::Sign("a generated key did not parse".into()))?;
        Ok((signer, text))
    }

    /// Parses `PRIVATE+KEY+name+id+base64` (Ed25519); `None` if it is not one.
    pub fn from_private_key(text: &str) -> Option<Self> {
        let text = text.trim_end();
        let signer = StandardSigner::new(text).ok()?;
        // PRIVATE+KEY+name+id+base64; base64 may itself hold '+'.
        let encoded = text.splitn(5, '+').nth(4)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let (&ALG_ED25519, seed) = key.split_first()? else {
            return None;
        };
        let seed: [u8; ed25519_dalek::SECRET_KEY_LENGTH] = seed.try_into().ok()?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let verifier_key = new_ed25519_verifier_key(signer.name(), &public);
        Some(Self {
            signer,
            verifier_key,
        })
    }

    /// The key at `path`, which must exist and be named `origin`.
    pub fn load(path: &Path, origin: &str) -> Result<Self, KeyError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(KeyError::Missing { path: path.into() })
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let signer = Self::from_private_key(&text)
            .ok_or_else(|| KeyError::Malformed { path: path.into() })?;
        if signer.origin() != origin {
            return Err(KeyError::NameMismatch {
                path: path.into(),
                key_name: signer.origin().to_owned(),
                origin: origin.to_owned(),
            });
        }
        Ok(signer)
    }

    /// The key at `path`, made on first start: written 0600 with
    /// `create_new`, so an existing key is never overwritten (two brokers
    /// starting at once: one writes, the other reads what it wrote).
    pub fn load_or_create(path: &Path, origin: &str) -> Result<Self, KeyError> {
        match Self::load(path, origin) {
            Err(KeyError::Missing { .. }) => {}
            other => return other,
        }
        let (signer, text) = Self::generate(origin)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let create = |source| KeyError::Create {
            path: path.into(),
            source,
        };
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Self::load(path, origin),
            Err(e) => return Err(create(e)),
        };
        file.write_all(format!("{text}\n").as_bytes())
            .map_err(create)?;
        // The key must outlive a power cut: checkpoints signed with it are.
        file.sync_all().map_err(create)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(create)?;
        }
        Ok(signer)
    }

    /// The key's name: the origin of every checkpoint it signs.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// `name+hexid+base64`, what verifiers are given.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The signed checkpoint note for a tree of `size` entries with `root`.
    pub fn sign(&self, size: u64, root: &Hash) -> Result<String, KeyError> {
        let mut note = Note::new(checkpoint_text(self.origin(), size, root)?.as_bytes(), &[])
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| KeyError::Sign(e.to_string()))
    }
}

/// The tlog-checkpoint body: `origin\nsize\nbase64(root)\n`.
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> Result<String, KeyError> {
    check_origin(origin)?;
    let body =
        Checkpoint::new(origin, size, *root, "").map_err(|e| KeyError::Sign(e.to_string()))?;
    String::from_utf8(body.to_bytes()).map_err(|e| KeyError::Sign(e.to_string()))
}

/// The verifier keys a reader trusts (several across a key rotation).
pub struct TrustedKeys {
    list: VerifierList,
}

impl TrustedKeys {
    pub fn parse(keys: &[String]) -> Result<Self, KeyError> {
        let mut seen: Vec<(String, u32)> = Vec::new();
        let mut list: Vec<Box<dyn Verifier>> = Vec::new();
        for key in keys {
            let key = key.trim();
            let verifier = StandardVerifier::new(key).map_err(|e| KeyError::BadVerifierKey {
                key: key.to_owned(),
                why: e.to_string(),
            })?;
            // The same key given twice must not read as two keys claiming
            // one name and id (signed_note calls that ambiguous).
            let id = (verifier.name().to_owned(), verifier.key_id());
            if !seen.contains(&id) {
                seen.push(id);
                list.push(Box::new(verifier));
            }
        }
        if list.is_empty() {
            return Err(KeyError::NoVerifierKey);
        }
        Ok(Self {
            list: VerifierList::new(list),
        })
    }
}

/// A checkpoint whose signature checked against a trusted key.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint note was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("not signed by any of the given keys (signed by {0})")]
    UnknownKey(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("not a tlog checkpoint: {0}")]
    Body(String),
    #[error("origin `{origin}` is not the name of the key that signed it ({signed_by})")]
    Origin { origin: String, signed_by: String },
}

/// Opens a signed checkpoint note: a good signature by a trusted key named
/// as its origin, and exactly the three lines of a tlog checkpoint.
pub fn open_checkpoint(
    note: &[u8],
    keys: &TrustedKeys,
) -> Result<OpenedCheckpoint, CheckpointError> {
    let note = Note::from_bytes(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let (verified, unverified) = note.verify(&keys.list).map_err(|e| match e {
        NoteError::UnverifiedNote => CheckpointError::UnknownKey(signers_of(&note)),
        NoteError::InvalidSignature { name, id } => CheckpointError::BadSignature(format!(
            "the signature by {name}+{id:08x} does not match the text"
        )),
        NoteError::VerificationError(VerificationError::AmbiguousKey { name, id }) => {
            CheckpointError::BadSignature(format!("two given keys are both {name}+{id:08x}"))
        }
        other => CheckpointError::BadSignature(other.to_string()),
    })?;
    drop(unverified);
    let body =
        Checkpoint::from_bytes(note.text()).map_err(|e| CheckpointError::Body(e.to_string()))?;
    if !body.extension().is_empty() {
        return Err(CheckpointError::Body(
            "more than three lines (origin, size, root hash)".into(),
        ));
    }
    let lines: Vec<&[u8]> = note.text().split(|b| *b == b'\n').collect();
    if lines.get(2).copied() != Some(body.hash().to_string().as_bytes()) {
        return Err(CheckpointError::Body(
            "the root hash is not canonical base64".into(),
        ));
    }
    if body.size() > MAX_CHECKPOINT_SIZE {
        return Err(CheckpointError::Body(format!(
            "tree size {} is too large",
            body.size()
        )));
    }
    if body.size() == 0 && *body.hash() != EMPTY_HASH {
        return Err(CheckpointError::Body(
            "a tree of size 0 must have root SHA-256(\"\")".into(),
        ));
    }
    if !verified.iter().any(|s| s.name() == body.origin()) {
        return Err(CheckpointError::Origin {
            origin: body.origin().to_owned(),
            signed_by: verified
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(OpenedCheckpoint {
        origin: body.origin().to_owned(),
        size: body.size(),
        root: *body.hash(),
    })
}

/// `name+id, …` of a note's signatures, for "signed by …".
fn signers_of(note: &Note) -> String {
    // Note keeps its signatures private; they are the lines after the blank
    // line of its encoding: `— name base64(id ‖ sig)`.
    let bytes = note.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let names: Vec<String> = text
        .rsplit_once("\n\n")
        .map(|(_, sigs)| sigs)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| signed_note::Signature::from_bytes(line.as_bytes()).ok())
        .map(|s| format!("{}+{:08x}", s.name(), s.id()))
        .collect();
    if names.is_empty() {
        "no key".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
