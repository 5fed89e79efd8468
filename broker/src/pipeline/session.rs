//! MCP sessions (handshake era), minted by the broker and bound to the
//! identity that created them.
//!
//! The client never sees the upstream's `Mcp-Session-Id` (or which child
//! process serves it): it gets a broker id, and presenting that id as
//! another subject, or on another target, finds nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand::RngCore;

use crate::identity::{now_unix, Identity};
use crate::mcp::error::{codes, McpError};

/// Open handshake-era sessions one caller may hold on one target.
pub const MAX_SESSIONS_PER_CALLER: usize = 64;
use crate::upstream::UpstreamSession;

pub struct BrokerSession {
    pub id: Arc<str>,
    pub subject: String,
    pub issuer: String,
    pub target: String,
    pub upstream: UpstreamSession,
    /// Negotiated in `initialize`; known once its result passes by.
    protocol_version: Mutex<Option<String>>,
    last_used: AtomicU64,
    /// Exchanges of this session still streaming (a long call, a GET
    /// stream): the idle sweep leaves such a session alone.
    active: Arc<AtomicUsize>,
}

/// Marks a session as in use while an exchange of it is open.
pub struct InUse(Arc<AtomicUsize>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BrokerSession {
    pub fn protocol_version(&self) -> Option<String> {
        self.protocol_version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn in_use(&self) -> InUse {
        self.active.fetch_add(1, Ordering::AcqRel);
        InUse(self.active.clone())
    }

    pub fn set_protocol_version(&self, v: &str) {
        *self
            .protocol_version
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(v.to_owned());
    }
}

#[derive(Default)]
pub struct SessionTable {
    map: RwLock<HashMap<Arc<str>, Arc<BrokerSession>>>,
}

impl SessionTable {
    pub fn create(
        &self,
        subject: &str,
        issuer: &str,
        target: &str,
        upstream: UpstreamSession,
    ) -> Arc<BrokerSession> {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let s = Arc::new(BrokerSession {
            id: id.into(),
            subject: subject.to_owned(),
            issuer: issuer.to_owned(),
            target: target.to_owned(),
            upstream,
            protocol_version: Mutex::new(None),
            last_used: AtomicU64::new(now_unix()),
            active: Arc::new(AtomicUsize::new(0)),
        });
        self.write().insert(s.id.clone(), s.clone());
        s
    }

    /// The session `id` if it exists, is the caller's and is on `target`.
    /// All failures look alike to the caller (HTTP 404, as the MCP spec
    /// asks for unknown sessions, which makes the client start afresh).
    pub fn get(
        &self,
        id: &str,
        subject: &str,
        issuer: &str,
        target: &str,
    ) -> Result<Arc<BrokerSession>, McpError> {
        let found = self.read().get(id).cloned();
        match found {
            Some(s) if s.subject == subject && s.issuer == issuer && s.target == target => {
                s.last_used.store(now_unix(), Ordering::Relaxed);
                Ok(s)
            }
            Some(s) => {
                let prefix: String = s.id.chars().take(8).collect();
                tracing::warn!(session_prefix = %prefix, owner = %s.subject, presented_by = %subject,
                    "refused a session id presented by another identity or on another target");
                Err(not_found())
            }
            None => Err(not_found()),
        }
    }

    /// Layer 3: the session a message presents (`Mcp-Session-Id`), which
    /// must be `identity`'s own on `target`; `None` when it presents none.
    pub fn presented(
        &self,
        id: Option<&str>,
        identity: &Identity,
        target: &str,
    ) -> Result<Option<Arc<BrokerSession>>, McpError> {
        match id {
            Some(id) => self
                .get(id, &identity.subject, &identity.issuer, target)
                .map(Some),
            None => Ok(None),
        }
    }

    /// Refuses a new session past [`MAX_SESSIONS_PER_CALLER`] for one
    /// caller on one target.
    pub fn room_for(&self, identity: &Identity, target: &str) -> Result<(), McpError> {
        let open = self.count_for(&identity.subject, &identity.issuer, target);
        if open < MAX_SESSIONS_PER_CALLER {
            return Ok(());
        }
        Err(McpError::new(
            codes::INVALID_REQUEST,
            format!(
                "too many open MCP sessions ({open}) for {} on target {target}: end some (DELETE) or wait for idle ones to expire",
                identity.subject
            ),
        ))
    }

    /// Sessions one caller holds on one target.
    pub fn count_for(&self, subject: &str, issuer: &str, target: &str) -> usize {
        self.read()
            .values()
            .filter(|s| s.subject == subject && s.issuer == issuer && s.target == target)
            .count()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<BrokerSession>> {
        self.write().remove(id)
    }

    /// Sessions idle for longer than `max_idle_secs`, removed from the table.
    pub fn take_idle(&self, max_idle_secs: u64) -> Vec<Arc<BrokerSession>> {
        let cutoff = now_unix().saturating_sub(max_idle_secs);
        let mut map = self.write();
        let idle: Vec<Arc<str>> = map
            .iter()
            .filter(|(_, s)| {
                s.last_used.load(Ordering::Relaxed) < cutoff
                    && s.active.load(Ordering::Acquire) == 0
            })
            .map(|(k, _)| k.clone())
            .collect();
        idle.iter().filter_map(|k| map.remove(k)).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<BrokerSession>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<BrokerSession>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found() -> McpError {
    McpError::new(
        codes::SESSION_NOT_FOUND,
        "MCP session not found: it ended, expired, or the broker restarted; start a new session (initialize)",
    )
}
