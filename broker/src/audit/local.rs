//! The audit log from the broker host: what `hoop-broker audit …` and the
//! other admin commands (`revoke`, `unrevoke`, `tools accept`) use to read
//! the log and to record themselves in it, beside a running broker.
//!
//! The store assigns sequence numbers inside each write transaction, so a
//! command appending here and the broker's writer never hand out the same
//! one. A command whose action cannot be recorded does not act.

use std::path::PathBuf;

use hoop_audit_log::{AuditStore, Durability, LogSigner};

use super::event::{Actor, Event, EventKind};
use super::reader::{self, AuditRequest};
use super::AuditLocation;

/// The log as this host reaches it, and its signing key's file.
pub struct LocalLog {
    pub location: AuditLocation,
    pub key_path: PathBuf,
}

impl LocalLog {
    pub fn new(location: AuditLocation, key_path: PathBuf) -> Self {
        Self { location, key_path }
    }

    fn must_exist(&self) -> anyhow::Result<()> {
        match self.location.sqlite_path() {
            Some(path) if !path.exists() => anyhow::bail!(
                "no audit log at {}: the broker creates it when it starts; point at the broker's own with --config FILE (its [audit] path or store) or --audit-log FILE (`hoop demo` prints where its log is: `audit log: …`)",
                path.display()
            ),
            // A PostgreSQL log without its tables says so when opened.
            _ => Ok(()),
        }
    }

    /// Records an event an administrator caused, as the operating-system
    /// user running the command.
    pub fn record(&self, kind: EventKind, detail: serde_json::Value) -> anyhow::Result<u64> {
        self.must_exist()?;
        let user = os_user();
        let mut e = Event::now(kind);
        e.actor = Some(Actor::local(&user));
        e.detail = Some(detail);
        let mut store = self.location.open(Durability::Fsync)?;
        let size = append_one(store.as_mut(), &e).map_err(|err| {
            anyhow::anyhow!("cannot record this in the audit log, so nothing was done: {err}")
        })?;
        Ok(size.saturating_sub(1))
    }

    /// Runs a read, recorded first. `keys`: the verifier keys to check
    /// checkpoints with (several across a key rotation); none: the log's own.
    pub fn read(
        &self,
        req: &AuditRequest,
        keys: &[String],
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        self.must_exist()?;
        let detail = serde_json::to_value(req)?;
        let user = os_user();
        let mut e = Event::now(EventKind::AuditRead);
        e.actor = Some(Actor::local(&user));
        e.method = Some(req.op());
        e.detail = Some(detail);
        let mut store = self.location.open(Durability::Fsync)?;
        append_one(store.as_mut(), &e).map_err(|err| {
            anyhow::anyhow!("cannot record this read in the audit log, so it is not served: {err}")
        })?;
        if let Some(path) = self.location.sqlite_path() {
            match hoop_audit_log::journal_unapplied(path, store.as_ref()) {
                Ok(0) => {}
                Ok(n) => eprintln!(
                    "note: the broker's journal holds {n} more event(s) not yet in {}: a broker that stopped without applying them applies them when it starts",
                    path.display()
                ),
                Err(e) => eprintln!("note: cannot read the broker's journal: {e}"),
            }
        }
        // The key signs an export's last checkpoint on the spot; without
        // it (another user's file) the export ends at a stored checkpoint.
        let signer = self.signer(store.as_ref()).ok();
        let keys: Vec<String> = if keys.is_empty() {
            self.verifier_key().into_iter().collect()
        } else {
            keys.to_vec()
        };
        reader::run(store.as_ref(), req, signer.as_ref(), &keys, out)
    }

    fn signer(&self, store: &dyn AuditStore) -> anyhow::Result<LogSigner> {
        let origin = store
            .meta(hoop_audit_log::store::meta_keys::ORIGIN)?
            .ok_or_else(|| anyhow::anyhow!("the audit log has no origin yet"))?;
        Ok(LogSigner::load(&self.key_path, &origin)?)
    }

    /// The verifier key: from the signing key itself when it is readable
    /// here (the source of truth), else as the log records it.
    pub fn verifier_key(&self) -> Option<String> {
        let store = self.location.open_read_only().ok()?;
        if let Ok(s) = self.signer(store.as_ref()) {
            return Some(s.verifier_key().to_owned());
        }
        store
            .meta(hoop_audit_log::store::meta_keys::VERIFIER_KEY)
            .ok()
            .flatten()
    }

    pub fn location(&self) -> &AuditLocation {
        &self.location
    }
}

/// Appends `e` alone, at once; the store's tree size after it, or why not.
fn append_one(store: &mut dyn AuditStore, e: &Event<'_>) -> Result<u64, String> {
    let entry = e.entry(None).map_err(|err| err.to_string())?;
    store
        .append_batch(&[entry.into_pending()])
        .map_err(|err| err.to_string())
}

/// Who is running an admin command on this host: the name of the real
/// user id, from the system's user database, never from `$USER` (which
/// anyone sets as they like); `uid:N` for an id with no name.
pub fn os_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}
