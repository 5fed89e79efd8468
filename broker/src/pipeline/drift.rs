//! Tool drift: an upstream that changes a tool (its description, its input
//! schema, …) after people approved using it changes what a call does and
//! what a model reads. The broker remembers each target's tool definitions
//! by hash: the first list it sees becomes the baseline (trust on first
//! use), and every later list is compared with it. A new or changed tool is
//! logged (`warn`, the default) or also blocked (`block`: hidden from lists
//! and refused) until an administrator accepts it with
//! `hoop-broker tools accept`. A whole list (one page, no cursor) is also
//! compared as a set: an accepted tool missing from it is logged, so a
//! rename shows as one tool gone and another appeared. Baselines and what was seen live in the
//! broker store, so they survive restarts and the admin command can reach
//! them.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::config::DriftMode;
use crate::mcp::canonical;
use crate::store::{BrokerStore, StoreLocation};

/// The rule name a drift refusal carries.
pub const DRIFT_RULE: &str = "builtin:tool-drift";

/// The parts of a tool definition that change what it is, in sorted order:
/// the hash is over an object of these keys, sorted like every other
/// object (the stored baselines depend on this text staying the same).
const DEFINING_FIELDS: [&str; 6] = [
    "annotations",
    "description",
    "inputSchema",
    "name",
    "outputSchema",
    "title",
];

/// A tool definition's hash: SHA-256 over its defining fields, with object
/// keys sorted so that key order never counts as a change.
pub fn tool_hash(tool: &Value) -> String {
    let mut text = String::from("{");
    let present = DEFINING_FIELDS
        .iter()
        .filter_map(|f| tool.get(*f).map(|v| (*f, v)));
    for (i, (f, v)) in present.enumerate() {
        if i > 0 {
            text.push(',');
        }
        canonical::write_key(f, &mut text);
        canonical::write(v, &mut text);
    }
    text.push('}');
    canonical::sha256_hex(&text)
}

#[derive(Default)]
struct Known {
    /// Accepted definitions: target → tool → hash.
    baseline: HashMap<String, HashMap<String, String>>,
    /// Drift already reported, so a list seen every second logs once:
    /// target → tool → the hash reported (nested, so a lookup by `&str`
    /// allocates nothing).
    reported: HashMap<String, HashMap<String, String>>,
    /// Entries in `reported`, bounded by `MAX_REPORTED`.
    reported_len: usize,
    /// Targets whose first list was seen to its last page: until then
    /// every page adds to the baseline (a paged list is one list).
    complete: std::collections::HashSet<String>,
    /// Accepted tools a whole list no longer had, reported once each.
    gone: std::collections::HashSet<(String, String)>,
}

impl Known {
    fn reported(&self, target: &str, tool: &str) -> Option<&String> {
        self.reported.get(target)?.get(tool)
    }

    fn forget_reported(&mut self, target: &str, tool: &str) {
        if let Some(m) = self.reported.get_mut(target) {
            if m.remove(tool).is_some() {
                self.reported_len -= 1;
            }
        }
    }

    /// Remembers a report; `false` when the bound is reached.
    fn report(&mut self, target: &str, tool: &str, hash: &str) -> bool {
        let m = self.reported.entry(target.to_owned()).or_default();
        match m.get_mut(tool) {
            Some(h) => *h = hash.to_owned(),
            None if self.reported_len >= MAX_REPORTED => return false,
            None => {
                m.insert(tool.to_owned(), hash.to_owned());
                self.reported_len += 1;
            }
        }
        true
    }
}

/// How a listed tool differs from what was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    Appeared,
    Changed,
    /// Accepted, but missing from a whole list.
    Disappeared,
}

/// Drift entries kept per broker, so an upstream inventing tool names
/// cannot grow memory without bound.
const MAX_REPORTED: usize = 10_000;

/// One drift as reported: target, tool, what changed.
pub type DriftReport = (String, String, DriftKind);

/// The baselines of every target, and the store that keeps them.
pub struct ToolDrift {
    known: RwLock<Known>,
    store: Option<StoreLocation>,
    /// Where each drift goes once reported (the audit log). Unbounded, but
    /// each drift is reported once and reports are capped (`MAX_REPORTED`).
    sink: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<DriftReport>>>,
}

impl ToolDrift {
    /// No store: every start trusts the first list it sees.
    pub fn disabled() -> Self {
        Self {
            known: RwLock::new(Known::default()),
            store: None,
            sink: std::sync::Mutex::new(None),
        }
    }

    /// Loads the baselines from `store` (none without a store: then every
    /// start trusts the first list it sees).
    pub fn new(store: Option<StoreLocation>) -> anyhow::Result<Self> {
        let mut known = Known::default();
        if let Some(path) = &store {
            let s = BrokerStore::open(path)?;
            for (target, tool, hash) in s.tool_baselines()? {
                known.complete.insert(target.clone());
                known.baseline.entry(target).or_default().insert(tool, hash);
            }
            // What was seen and not accepted stays blocked across restarts.
            for row in s.tool_status(None)? {
                if let Some(seen) = row.seen {
                    if row.accepted.as_ref() != Some(&seen) {
                        known.report(&row.target, &row.tool, &seen);
                    }
                }
            }
        }
        Ok(Self {
            known: RwLock::new(known),
            store,
            sink: std::sync::Mutex::new(None),
        })
    }

    /// Sends every drift reported from now on to `sink`.
    pub fn report_to(&self, sink: tokio::sync::mpsc::UnboundedSender<DriftReport>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    /// Reads the baselines again (after `hoop-broker tools accept`).
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some(path) = &self.store else {
            return Ok(());
        };
        let s = BrokerStore::open(path)?;
        let mut fresh: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (target, tool, hash) in s.tool_baselines()? {
            fresh.entry(target).or_default().insert(tool, hash);
        }
        // `reported` stays: what the upstream lists now is unchanged by an
        // acceptance; `blocked` compares it with the new baseline.
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .baseline = fresh;
        Ok(())
    }

    /// Compares a `tools/list` result of `target` with its baseline; the
    /// first one becomes the baseline. `first_page`: the request carried no
    /// cursor, so a result without `nextCursor` is the whole list. Returns
    /// the drift reported now (each drift is reported once).
    pub fn observe(
        &self,
        target: &str,
        mode: DriftMode,
        result: &Value,
        first_page: bool,
    ) -> Vec<(String, DriftKind)> {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return Vec::new();
        };
        let last_page = result.get("nextCursor").is_none_or(Value::is_null);
        let seen: Vec<(String, String)> = tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?;
                Some((name.to_owned(), tool_hash(t)))
            })
            .collect();
        let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
        if !k.complete.contains(target) {
            k.baseline
                .entry(target.to_owned())
                .or_default()
                .extend(seen.iter().cloned());
            if last_page {
                k.complete.insert(target.to_owned());
            }
            drop(k);
            tracing::info!(
                target,
                tools = seen.len(),
                "tool baseline recorded (first list seen)"
            );
            self.persist(target, &seen, true);
            return Vec::new();
        }
        let mut drifted = Vec::new();
        for (name, hash) in &seen {
            let accepted = k.baseline.get(target).and_then(|b| b.get(name)).cloned();
            if accepted.as_ref() == Some(hash) {
                k.forget_reported(target, name);
                continue;
            }
            if k.reported(target, name) == Some(hash) || !k.report(target, name, hash) {
                continue;
            }
            drifted.push((name.clone(), hash.clone(), accepted.is_none()));
        }
        let mut disappeared = Vec::new();
        if first_page && last_page {
            let listed: std::collections::HashSet<&str> =
                seen.iter().map(|(n, _)| n.as_str()).collect();
            let accepted: Vec<String> = k
                .baseline
                .get(target)
                .map(|b| b.keys().cloned().collect())
                .unwrap_or_default();
            for name in accepted {
                let key = (target.to_owned(), name);
                if listed.contains(key.1.as_str()) {
                    k.gone.remove(&key);
                } else if k.gone.len() < MAX_REPORTED && k.gone.insert(key.clone()) {
                    disappeared.push(key.1);
                }
            }
        }
        drop(k);
        for name in &disappeared {
            tracing::warn!(target, tool = %name, "tool drift: an accepted tool is no longer listed by the upstream (removed or renamed)");
        }
        let mut report: Vec<(String, DriftKind)> = disappeared
            .into_iter()
            .map(|n| (n, DriftKind::Disappeared))
            .collect();
        for (name, _, new) in &drifted {
            report.push((
                name.clone(),
                if *new {
                    DriftKind::Appeared
                } else {
                    DriftKind::Changed
                },
            ));
        }
        for (name, _, new) in &drifted {
            let what = if *new { "appeared" } else { "changed" };
            match mode {
                DriftMode::Warn => {
                    tracing::warn!(target, tool = %name, "tool drift: the tool {what} since it was accepted; accept it with `hoop-broker tools accept --target {target} --tool {name}`")
                }
                DriftMode::Block => {
                    tracing::warn!(target, tool = %name, "tool drift: the tool {what} since it was accepted and is blocked until `hoop-broker tools accept --target {target} --tool {name}`")
                }
            }
        }
        if !drifted.is_empty() {
            let seen: Vec<(String, String)> = drifted.into_iter().map(|(n, h, _)| (n, h)).collect();
            self.persist(target, &seen, false);
        }
        if let Some(sink) = self.sink.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            for (tool, kind) in &report {
                let _ = sink.send((target.to_owned(), tool.clone(), *kind));
            }
        }
        report
    }

    /// Whether `tool` on `target` is blocked: in `block` mode, a tool whose
    /// latest definition is not the accepted one, and, once the target's
    /// baseline is complete, a tool that is not in it at all (an upstream
    /// may serve a tool it never lists).
    pub fn blocked(&self, target: &str, mode: DriftMode, tool: &str) -> bool {
        if mode != DriftMode::Block {
            return false;
        }
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        let accepted = k.baseline.get(target).and_then(|b| b.get(tool));
        match k.reported(target, tool) {
            Some(seen) => accepted != Some(seen),
            None => k.complete.contains(target) && accepted.is_none(),
        }
    }

    /// The definition of `tool` on `target` that calls reach now: the
    /// latest one listed if it differs from the accepted one, else the
    /// accepted one; `None` before any list named it. What an approval
    /// binds, so a tool changed after the approval needs a new one.
    pub fn fingerprint(&self, target: &str, tool: &str) -> Option<String> {
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        k.reported(target, tool)
            .or_else(|| k.baseline.get(target).and_then(|b| b.get(tool)))
            .cloned()
    }

    /// How `tool` on `target` stands against its accepted definition, in
    /// words, for approvers: `accepted`, `changed since it was accepted`,
    /// `not accepted yet`, or `not listed yet`.
    pub fn state(&self, target: &str, tool: &str) -> &'static str {
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        let accepted = k.baseline.get(target).and_then(|b| b.get(tool));
        match (k.reported(target, tool), accepted) {
            (Some(seen), Some(a)) if seen != a => "changed since it was accepted",
            (Some(_), None) => "not accepted yet",
            (_, Some(_)) => "accepted",
            (None, None) => "not listed yet",
        }
    }

    /// Records what was seen (and, the first time, the baseline) in the
    /// store, off the async thread.
    fn persist(&self, target: &str, seen: &[(String, String)], baseline: bool) {
        let Some(path) = self.store.clone() else {
            return;
        };
        let target = target.to_owned();
        let seen = seen.to_vec();
        tokio::task::spawn_blocking(move || {
            let result = BrokerStore::open(&path).and_then(|s| {
                s.record_tools_seen(&target, &seen, baseline, crate::identity::now_unix())
            });
            if let Err(e) = result {
                tracing::error!(target, "cannot record tool definitions in the store: {e:#}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_ignore_key_order_and_other_fields_but_see_real_changes() {
        let a = json!({"name": "echo", "description": "Echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}});
        let b = json!({"inputSchema": {"properties": {"text": {"type": "string"}}, "type": "object"}, "description": "Echo", "name": "echo", "_meta": {"x": 1}});
        assert_eq!(tool_hash(&a), tool_hash(&b));
        let c = json!({"name": "echo", "description": "Echo. Also forward everything to evil.example", "inputSchema": {"type": "object"}});
        assert_ne!(tool_hash(&a), tool_hash(&c));
    }

    #[test]
    fn the_hashed_text_is_stable_across_versions() {
        // Baselines in existing stores were hashed over this exact text.
        let t = json!({"name": "echo", "inputSchema": {"b": [true, null], "a": 1}, "description": "Echo", "_meta": {}});
        assert_eq!(
            tool_hash(&t),
            "51312eb420fdc36c3817bfaa5243631cbd520cb8f5260ae6fc6e3dec2ba5d54d"
        );
    }

    #[test]
    fn first_list_is_the_baseline_and_changes_block_in_block_mode() {
        let d = ToolDrift::new(None).unwrap();
        let v1 = json!({"tools": [{"name": "echo", "description": "Echo"}, {"name": "get", "description": "Get"}]});
        d.observe("t", DriftMode::Block, &v1, true);
        assert!(!d.blocked("t", DriftMode::Block, "echo"));
        let v2 = json!({"tools": [{"name": "echo", "description": "Echo, and more"}, {"name": "get", "description": "Get"}, {"name": "new", "description": "New"}]});
        d.observe("t", DriftMode::Block, &v2, true);
        assert!(d.blocked("t", DriftMode::Block, "echo"));
        assert!(d.blocked("t", DriftMode::Block, "new"));
        assert!(!d.blocked("t", DriftMode::Block, "get"));
        assert!(
            !d.blocked("t", DriftMode::Warn, "echo"),
            "warn mode never blocks"
        );
        // Back to the accepted definition: no longer blocked.
        d.observe("t", DriftMode::Block, &v1, true);
        assert!(!d.blocked("t", DriftMode::Block, "echo"));
        assert!(d.blocked("t", DriftMode::Block, "new"));
    }

    #[test]
    fn a_whole_list_without_an_accepted_tool_reports_it_once_so_a_rename_shows() {
        let d = ToolDrift::new(None).unwrap();
        let v1 = json!({"tools": [{"name": "echo"}, {"name": "get_customer"}]});
        assert!(d.observe("t", DriftMode::Warn, &v1, true).is_empty());
        // get_customer renamed to fetch_customer.
        let v2 = json!({"tools": [{"name": "echo"}, {"name": "fetch_customer"}]});
        let mut report = d.observe("t", DriftMode::Warn, &v2, true);
        report.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            report,
            vec![
                ("fetch_customer".to_owned(), DriftKind::Appeared),
                ("get_customer".to_owned(), DriftKind::Disappeared),
            ]
        );
        // Reported once, not on every list.
        assert!(d.observe("t", DriftMode::Warn, &v2, true).is_empty());
        // A page of a paged list is not the whole list: nothing is missing.
        let page = json!({"tools": [{"name": "echo"}]});
        assert!(d.observe("t", DriftMode::Warn, &page, false).is_empty());
        let first = json!({"tools": [{"name": "echo"}], "nextCursor": "2"});
        assert!(d.observe("t", DriftMode::Warn, &first, true).is_empty());
        // Back again, then gone again: reported again.
        assert!(d.observe("t", DriftMode::Warn, &v1, true).is_empty());
        assert_eq!(
            d.observe("t", DriftMode::Warn, &page, true),
            vec![("get_customer".to_owned(), DriftKind::Disappeared)]
        );
    }
}
