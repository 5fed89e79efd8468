//! The masking key: the secret keyed-hash tokens (`[card:3f9a1c2b7d40]`)
//! are made with. 32 random bytes, hex, in a 0600 file beside the audit
//! log, made on first start and never overwritten, so tokens stay equal
//! across restarts, and across brokers given the same file.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use hoop_masking::HashKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the masking key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the masking key {path} is not 64 hex digits; restore it from a backup (tokens made with another key will not match), or remove it to make a new one")]
    Malformed { path: PathBuf },
    #[error("cannot create the masking key {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no random bytes for a new masking key")]
    Random,
}

/// The key at `path`, made on first start.
pub fn load_or_create_key(path: &Path) -> Result<HashKey, KeyError> {
    match fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(KeyError::Read {
                path: path.into(),
                source,
            })
        }
    }
    let bytes: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map_err(|_| KeyError::Random)?
        .expose();
    let create = |source| KeyError::Create {
        path: path.into(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(f) => f,
        // Another broker sharing the directory made it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.into(),
                source,
            })?;
            return parse(path, &text);
        }
        Err(e) => return Err(create(e)),
    };
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(format!("{hex}\n").as_bytes())
        .map_err(create)?;
    // Tokens in the audit log were made with it: it must survive a crash.
    file.sync_all().map_err(create)?;
    Ok(HashKey::from_bytes(bytes))
}

fn parse(path: &Path, text: &str) -> Result<HashKey, KeyError> {
    let hex = text.trim().as_bytes();
    let malformed = || KeyError::Malformed { path: path.into() };
    if hex.len() != 64 {
        return Err(malformed());
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).map_err(|_| malformed())?;
        bytes[i] = u8::from_str_radix(digits, 16).map_err(|_| malformed())?;
    }
    Ok(HashKey::from_bytes(bytes))
}
