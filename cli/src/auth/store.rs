//! Where a profile's tokens live between commands: the OS keyring (service
//! `hoop`, account `<profile>|<issuer>`, one JSON blob), or, where no keyring
//! service exists (headless Linux, CI) or `HOOP_KEYRING=file` asks for it, a
//! file `<data dir>/tokens/<profile>.json` with mode 0600 in a 0700
//! directory. A keyring login also leaves `<profile>.keyring` beside it,
//! holding only the issuer, because a keyring cannot be listed and the
//! account name needs it.
//!
//! Whatever holds the secret, `<profile>.lock` beside those files (0600,
//! never deleted) is the cross-process lock that serialises reload →
//! refresh → save ([`TokenStore::lock`]): providers rotate refresh tokens
//! and treat a replay of a spent one as theft, revoking the whole grant.
//!
//! Calls here block (the keyring talks D-Bus); async callers run them on
//! `spawn_blocking`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::AuthError;

pub const KEYRING_SERVICE: &str = "hoop";

/// Everything a later command needs to use, refresh and revoke the tokens
/// without asking the provider's discovery document again.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTokens {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    /// Unix seconds; `None` when the provider said nothing and the access
    /// token is not a JWT with `exp`.
    #[serde(default)]
    pub expires_at: Option<u64>,
    pub issuer: String,
    pub client_id: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub resource: Option<String>,
}

// Tokens must never reach a log line or an error message.
impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("StoredTokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &redact(&self.refresh_token))
            .field("id_token", &redact(&self.id_token))
            .field("expires_at", &self.expires_at)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .field("revocation_endpoint", &self.revocation_endpoint)
            .field("scopes", &self.scopes)
            .field("resource", &self.resource)
            .finish()
    }
}

/// Where tokens were found or put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Keyring,
    File(PathBuf),
}

impl Location {
    /// `keyring` or `file:<path>`, as `hoop whoami --json` reports it.
    pub fn describe(&self) -> String {
        match self {
            Self::Keyring => "keyring".into(),
            Self::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// The outcome of [`TokenStore::save`].
#[derive(Debug, Clone)]
pub struct Saved {
    pub location: Location,
    /// Why the keyring was not used, when the tokens went to a file.
    pub fallback_reason: Option<String>,
}

impl Saved {
    /// The one-line note a person should see when tokens went to a file.
    pub fn note(&self) -> Option<String> {
        match (&self.location, &self.fallback_reason) {
            (Location::File(p), Some(reason)) => Some(format!(
                "no OS keyring available ({reason}); tokens stored in {} (mode 0600)",
                p.display()
            )),
            _ => None,
        }
    }
}

/// One profile's token store.
#[derive(Debug, Clone)]
pub struct TokenStore {
    profile: String,
    dir: PathBuf,
    /// Why the keyring cannot be used (`None`: it can).
    keyring_unavailable: Option<String>,
}

impl TokenStore {
    /// The store for `profile` under `data_dir`, probing the keyring once
    /// unless `HOOP_KEYRING=file` says to use the file.
    pub fn open(profile: &str, data_dir: &Path) -> Result<Self, AuthError> {
        if !super::valid_profile_name(profile) {
            return Err(AuthError::Config(format!(
                "profile name {profile:?} cannot name a token store: use letters, digits, '-', '_' or '.'"
            )));
        }
        let keyring_unavailable = match std::env::var("HOOP_KEYRING").ok().as_deref() {
            Some("file") => Some("HOOP_KEYRING=file".to_owned()),
            None | Some("") | Some("auto") => probe_keyring().err(),
            Some(other) => {
                return Err(AuthError::Config(format!(
                    "HOOP_KEYRING={other:?} is not understood: use `file` (or leave it unset)"
                )))
            }
        };
        Ok(Self {
            profile: profile.to_owned(),
            dir: data_dir.join("tokens"),
            keyring_unavailable,
        })
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// Whether the "no OS keyring" note is news here: true the first time
    /// it is asked in this store (a marker file beside the tokens records
    /// that it was said), so a person reads it once, not at every login.
    pub fn first_file_note(&self) -> bool {
        let marker = self.dir.join(".file-store-noted");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Any error but "already there" says the note again: better twice
        // than never.
        !matches!(opts.open(&marker), Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists)
    }

    /// The fallback file of this profile.
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.profile))
    }

    fn pointer_path(&self) -> PathBuf {
        self.dir.join(format!("{}.keyring", self.profile))
    }

    /// The cross-process lock file of this profile.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.profile))
    }

    /// Takes this profile's cross-process lock, waiting at most `timeout`
    /// for another hoop process to release it. Blocks (polls every 50 ms);
    /// async callers run it on `spawn_blocking`. Released when the guard is
    /// dropped, or by the OS when the process dies.
    pub fn lock(&self, timeout: Duration) -> Result<StoreLock, AuthError> {
        let path = self.lock_path();
        create_private_dir(&self.dir)
            .map_err(|e| AuthError::Store(format!("cannot create {}: {e}", self.dir.display())))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| AuthError::Store(format!("cannot open {}: {e}", path.display())))?;
        let started = Instant::now();
        let mut logged = false;
        loop {
            let attempt = file.try_lock();
            match attempt {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(AuthError::Store(format!(
                        "cannot lock {}: {e}",
                        path.display()
                    )))
                }
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(AuthError::Store(format!(
                    "another hoop process has held the token lock of profile {} for over {}s ({}); try again, or end the stuck hoop process",
                    self.profile,
                    timeout.as_secs(),
                    path.display()
                )));
            }
            if !logged {
                tracing::debug!(profile = %self.profile, "waiting for another hoop process to finish refreshing");
                logged = true;
            }
            std::thread::sleep(LOCK_POLL.min(timeout - waited));
        }
    }

    fn entry(&self, issuer: &str) -> Result<keyring::Entry, keyring::Error> {
        keyring::Entry::new(KEYRING_SERVICE, &format!("{}|{issuer}", self.profile))
    }

    /// The stored tokens, if this profile is logged in.
    pub fn load(&self) -> Result<Option<(StoredTokens, Location)>, AuthError> {
        let file = self.file_path();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let t = serde_json::from_slice(&bytes).map_err(|e| {
                    AuthError::Store(format!(
                        "{} is damaged ({e}); delete it and run `hoop login`",
                        file.display()
                    ))
                })?;
                return Ok(Some((t, Location::File(file))));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AuthError::Store(format!(
                    "cannot read {}: {e}",
                    file.display()
                )))
            }
        }
        let issuer = match std::fs::read_to_string(self.pointer_path()) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => return Ok(None),
        };
        if let Some(reason) = &self.keyring_unavailable {
            return Err(AuthError::KeyringUnreadable {
                profile: self.profile.clone(),
                reason: format!("not available: {reason}"),
            });
        }
        let secret = self
            .entry(&issuer)
            .and_then(|e| e.get_password())
            .map(Some)
            .or_else(|e| match e {
                keyring::Error::NoEntry => Ok(None),
                e => Err(e),
            })
            .map_err(|e| AuthError::KeyringUnreadable {
                profile: self.profile.clone(),
                reason: short(&e.to_string()),
            })?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let t = serde_json::from_str(&secret).map_err(|e| {
            AuthError::Store(format!(
                "the keyring entry of profile {} is damaged ({e}); run `hoop logout` then `hoop login`",
                self.profile
            ))
        })?;
        Ok(Some((t, Location::Keyring)))
    }

    /// Stores `tokens`, in the keyring when it works, else in the file.
    pub fn save(&self, tokens: &StoredTokens) -> Result<Saved, AuthError> {
        let json = serde_json::to_string(tokens)
            .map_err(|e| AuthError::Store(format!("cannot encode tokens: {e}")))?;
        let mut reason = self.keyring_unavailable.clone();
        if reason.is_none() {
            match self
                .entry(&tokens.issuer)
                .and_then(|e| e.set_password(&json))
            {
                Ok(()) => {
                    write_private(&self.dir, &self.pointer_path(), tokens.issuer.as_bytes())?;
                    // A file left by an earlier fallback would win on load
                    // and hold stale secrets.
                    let _ = std::fs::remove_file(self.file_path());
                    return Ok(Saved {
                        location: Location::Keyring,
                        fallback_reason: None,
                    });
                }
                // E.g. a locked collection, or a blob over the platform's size limit.
                Err(e) => reason = Some(format!("the keyring refused the tokens: {e}")),
            }
        }
        let path = self.file_path();
        write_private(&self.dir, &path, json.as_bytes())?;
        Ok(Saved {
            location: Location::File(path),
            fallback_reason: reason,
        })
    }

    /// Removes the stored tokens wherever they are; whether any existed.
    /// When they are in a keyring that cannot be reached now, nothing is
    /// deleted (the pointer to the secret stays) and the error says so.
    pub fn delete(&self) -> Result<bool, AuthError> {
        let mut found = false;
        let file = self.file_path();
        match std::fs::remove_file(&file) {
            Ok(()) => found = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AuthError::Store(format!(
                    "cannot delete {}: {e}",
                    file.display()
                )))
            }
        }
        let pointer = match std::fs::read_to_string(self.pointer_path()) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        };
        if let Some(issuer) = pointer {
            // The pointer stays whenever the secret may: it is how a later
            // logout finds it (a keyring cannot be listed).
            let kept = |why: String| {
                let done = if found {
                    format!("deleted {}, but ", file.display())
                } else {
                    "nothing was deleted: ".to_owned()
                };
                AuthError::Keyring(format!(
                    "cannot log out: the tokens of profile {} are in the OS keyring, which {why}; {done}run `hoop logout` again where the keyring works",
                    self.profile
                ))
            };
            if let Some(reason) = &self.keyring_unavailable {
                return Err(kept(format!(
                    "cannot be read now (not available: {reason})"
                )));
            }
            match self.entry(&issuer).and_then(|e| e.delete_credential()) {
                Ok(()) => found = true,
                Err(keyring::Error::NoEntry) => {}
                Err(e) => {
                    return Err(kept(format!(
                        "refused to delete them ({})",
                        short(&e.to_string())
                    )))
                }
            }
        }
        // Also an empty pointer left by an interrupted write.
        let _ = std::fs::remove_file(self.pointer_path());
        Ok(found)
    }
}

/// How often [`TokenStore::lock`] tries again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// A held cross-process lock of one profile's tokens (released on drop).
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

/// Whether the platform keyring answers at all (no entry is fine).
fn probe_keyring() -> Result<(), String> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, "hoop-keyring-probe")
        .map_err(|e| short(&e.to_string()))?;
    match entry.get_password() {
        Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(short(&e.to_string())),
    }
}

/// Platform errors can be long D-Bus dumps; the note stays one line.
fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    line.chars().take(160).collect()
}

/// Writes `bytes` to `path` with mode 0600, in `dir` (created 0700), via a
/// temporary file and a rename so a crash never leaves half a token file.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let err = |what: &str, p: &Path, e: std::io::Error| {
        AuthError::Store(format!("cannot {what} {}: {e}", p.display()))
    };
    create_private_dir(dir).map_err(|e| err("create", dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| err("create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err("write", path, e)
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        b.mode(0o700);
        b.create(dir)?;
        // An existing directory keeps its mode through `create`; tighten it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        b.create(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> StoredTokens {
        StoredTokens {
            access_token: "at-s3cret".into(),
            refresh_token: Some("rt-s3cret".into()),
            id_token: Some("id-s3cret".into()),
            expires_at: Some(1_900_000_000),
            issuer: "http://127.0.0.1:1".into(),
            client_id: "hoop-cli".into(),
            token_endpoint: "http://127.0.0.1:1/token".into(),
            revocation_endpoint: Some("http://127.0.0.1:1/token/revocation".into()),
            scopes: vec!["openid".into()],
            resource: None,
        }
    }

    fn file_store(dir: &Path) -> TokenStore {
        TokenStore {
            profile: "alice".into(),
            dir: dir.join("tokens"),
            keyring_unavailable: Some("test".into()),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hoop-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn debug_redacts_every_token() {
        let s = format!("{:?}", sample());
        for secret in ["at-s3cret", "rt-s3cret", "id-s3cret"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("<redacted>") && s.contains("127.0.0.1:1"), "{s}");
    }

    #[test]
    fn file_round_trip_with_private_modes() {
        let dir = scratch("round");
        let store = file_store(&dir);
        assert!(store.load().unwrap().is_none());
        let saved = store.save(&sample()).unwrap();
        assert_eq!(saved.location, Location::File(store.file_path()));
        let note = saved.note().unwrap();
        assert!(note.starts_with("no OS keyring available (test); tokens stored in "));
        assert!(note.ends_with("(mode 0600)"), "{note}");
        let (t, loc) = store.load().unwrap().unwrap();
        assert_eq!(t, sample());
        assert_eq!(
            loc.describe(),
            format!("file:{}", store.file_path().display())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.file_path()), 0o600);
            assert_eq!(mode(&dir.join("tokens")), 0o700);
        }
        // Saving again replaces the file in place.
        let mut next = sample();
        next.access_token = "at-2".into();
        store.save(&next).unwrap();
        assert_eq!(store.load().unwrap().unwrap().0.access_token, "at-2");
        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
        assert!(store.load().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_lock_is_exclusive_private_and_bounded() {
        let dir = scratch("lock");
        let store = file_store(&dir);
        let held = store.lock(Duration::from_secs(1)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.lock_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second holder (another open file, as another process has)
        // waits, then gives up with words a person can act on.
        let started = Instant::now();
        let e = store.lock(Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(e, AuthError::Store(_)), "{e}");
        assert!(e.to_string().contains("another hoop process"), "{e}");
        // Released on drop; a waiter then gets it.
        let waiter = {
            let store = store.clone();
            std::thread::spawn(move || store.lock(Duration::from_secs(5)).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        waiter.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn logout_with_the_keyring_unavailable_keeps_the_pointer() {
        let dir = scratch("keyring-gone");
        let store = file_store(&dir);
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(store.pointer_path(), "http://127.0.0.1:1").unwrap();

        let e = store.load().unwrap_err();
        assert!(matches!(e, AuthError::KeyringUnreadable { .. }), "{e}");
        assert!(e.to_string().contains("OS keyring"), "{e}");

        let e = store.delete().unwrap_err();
        assert!(matches!(e, AuthError::Keyring(_)), "{e}");
        assert!(e.to_string().contains("nothing was deleted"), "{e}");
        assert_eq!(e.exit_code(), 1);
        assert!(store.pointer_path().exists());

        // A fallback file beside it (a later login without the keyring) is
        // deleted, and the error says the keyring still holds tokens.
        store.save(&sample()).unwrap();
        let e = store.delete().unwrap_err().to_string();
        assert!(e.contains("deleted ") && e.contains(", but "), "{e}");
        assert!(!store.file_path().exists());
        assert!(store.pointer_path().exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_says_what_to_do() {
        let dir = scratch("damaged");
        let store = file_store(&dir);
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(store.file_path(), "{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("hoop login"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
