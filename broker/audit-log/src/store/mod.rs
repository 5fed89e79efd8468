//! The audit log's storage interface: one small trait, one folder per
//! backend (`sqlite/` today, PostgreSQL next), one shared test suite every
//! backend must pass.

/// One event ready to append: its JSON without `seq`, the bodies stored
/// beside its leaf, and what search indexes.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    /// The event as compact JSON object text, `{"v":1,...}`, without `seq`.
    /// The sequencer turns it into the entry `{"seq":N,"v":1,...}`.
    pub fields: Vec<u8>,
    /// Bodies stored beside the leaf (the leaf carries their SHA-256).
    pub bodies: Vec<([u8; 32], bytes::Bytes)>,
    /// Columns the store indexes for `hoop audit search` and `replay`.
    pub index: EntryIndex,
}

/// What an entry is searched by; the entry itself stays the source of truth.
#[derive(Debug, Clone, Default)]
pub struct EntryIndex {
    /// UTC nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The event type (`mcp.request`, `connection.open`, …).
    pub kind: &'static str,
    pub subject: Option<String>,
    pub target: Option<String>,
    /// Tool, prompt, resource URI or task id.
    pub name: Option<String>,
    /// `allow`, `deny`, `approve`.
    pub decision: Option<&'static str>,
    pub exchange: Option<String>,
    pub session: Option<String>,
}
