//! Reading the audit log: the operations `hoop audit` asks the broker for
//! over the tunnel (stream kind `Audit`) and `hoop-broker audit` runs on the
//! broker host against the same file. Both run [`run`], so they answer
//! alike.
//!
//! Every answer is JSON lines: search and replay give the matching events
//! exactly as stored (the bytes their leaves hash); export gives the export
//! file (docs/audit.md); verify gives one report line; key gives the
//! verifier key.

use std::io::Write;

use hoop_audit_log::{export_jsonl, verify_store, AuditStore, ExportRange, LogSigner, SearchQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Most events one search or replay returns.
pub const MAX_RESULTS: usize = 10_000;

/// What `hoop audit` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuditRequest {
    Search(SearchArgs),
    /// The timeline of one exchange or one MCP session, by its id.
    Replay {
        id: String,
    },
    Export {
        #[serde(default)]
        since_ns: Option<i64>,
        #[serde(default)]
        until_ns: Option<i64>,
        #[serde(default)]
        format: ExportFormat,
    },
    /// Checks the whole log: every leaf, every stored hash, every checkpoint.
    Verify,
    /// The log's verifier key and origin.
    Key,
}

impl AuditRequest {
    /// The op's name, for the `audit.read` event.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Search(_) => "search",
            Self::Replay { .. } => "replay",
            Self::Export { .. } => "export",
            Self::Verify => "verify",
            Self::Key => "key",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// docs/audit.md: events, checkpoints and proofs; verifies on its own.
    #[default]
    Jsonl,
    /// OCSF API Activity (class 6003), one record per event, each carrying
    /// its hoop entry so it can be matched to the verified log.
    Ocsf,
}

/// `hoop audit search` filters; every one given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The event type (`mcp.request`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The search filters on the command line (`hoop audit search` and
/// `hoop-broker audit search` take the same).
#[derive(Debug, Clone, clap::Args)]
pub struct SearchFlags {
    /// Subject (`sub`, or `workload:NAME`).
    #[arg(long)]
    pub user: Option<String>,
    /// Target (a name from the broker's config).
    #[arg(long)]
    pub target: Option<String>,
    /// Tool, prompt, resource URI or task id.
    #[arg(long)]
    pub tool: Option<String>,
    /// The policy's decision.
    #[arg(long, value_parser = ["allow", "deny", "approve"])]
    pub decision: Option<String>,
    /// Event type (docs/audit.md lists what each records).
    #[arg(long = "type", value_parser = clap::builder::PossibleValuesParser::new(super::event::EVENT_TYPES))]
    pub kind: Option<String>,
    /// From (RFC 3339, a date, or a span back: 15m, 8h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Until (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events (1 to 10000).
    #[arg(long, default_value_t = 100, value_parser = parse_limit)]
    pub limit: usize,
    /// Only events after this sequence number: the next page, where a
    /// search said more events match.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
}

fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_RESULTS).contains(&n) => Ok(n),
        _ => Err(format!("a number from 1 to {MAX_RESULTS}")),
    }
}

impl SearchFlags {
    pub fn request(&self, now_ns: i64) -> Result<AuditRequest, String> {
        let (since_ns, until_ns) = time_range(&self.since, &self.until, now_ns)?;
        Ok(AuditRequest::Search(SearchArgs {
            user: self.user.clone(),
            target: self.target.clone(),
            tool: self.tool.clone(),
            decision: self.decision.clone(),
            kind: self.kind.clone(),
            since_ns,
            until_ns,
            after_seq: self.after,
            limit: Some(self.limit),
        }))
    }
}

/// The export's range and form on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportFlags {
    /// From (RFC 3339, a date, or a span back: 15m, 8h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Until (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// `jsonl`: events, checkpoints and proofs, verifiable offline;
    /// `ocsf`: OCSF API Activity (6003) for a SIEM, not verifiable.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// The file to write (`-` for standard output); never overwritten.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

impl ExportFlags {
    pub fn request(&self, now_ns: i64) -> Result<AuditRequest, String> {
        let (since_ns, until_ns) = time_range(&self.since, &self.until, now_ns)?;
        Ok(AuditRequest::Export {
            since_ns,
            until_ns,
            format: self.format,
        })
    }
}

/// `--since` and `--until` as times, the first before the second (a span
/// back counts from now: `--since 1h --until 2h` is the wrong way round).
fn time_range(
    since: &Option<String>,
    until: &Option<String>,
    now_ns: i64,
) -> Result<(Option<i64>, Option<i64>), String> {
    let since_ns = flag_time(since.as_deref(), "--since", now_ns)?;
    let until_ns = flag_time(until.as_deref(), "--until", now_ns)?;
    if let (Some(s), Some(u)) = (since_ns, until_ns) {
        if s >= u {
            return Err(format!(
                "--since {} is not before --until {}: a span counts back from now, so the older end is the longer span (--since 2h --until 1h)",
                since.as_deref().unwrap_or(""),
                until.as_deref().unwrap_or("")
            ));
        }
    }
    Ok((since_ns, until_ns))
}

fn flag_time(t: Option<&str>, flag: &str, now_ns: i64) -> Result<Option<i64>, String> {
    t.map(|t| super::view::parse_time(t, now_ns))
        .transpose()
        .map_err(|e| format!("{flag}: {e}"))
}

/// Runs `req` against `store`, writing the answer's lines to `out`.
/// `signer`: the log's key, where it is at hand (the broker host), so an
/// export ends at exactly the last event asked for.
pub fn run(
    store: &dyn AuditStore,
    req: &AuditRequest,
    signer: Option<&LogSigner>,
    keys: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match req {
        AuditRequest::Search(a) => {
            let query = SearchQuery {
                kind: a.kind.clone(),
                subject: a.user.clone(),
                target: a.target.clone(),
                name: a.tool.clone(),
                decision: a.decision.clone(),
                since_ns: a.since_ns,
                until_ns: a.until_ns,
                after_seq: a.after_seq,
                limit: a.limit.unwrap_or(1000).min(MAX_RESULTS),
                ..SearchQuery::default()
            };
            write_entries(store, &query, out)
        }
        AuditRequest::Replay { id } => {
            let probe = SearchQuery {
                exchange: Some(id.clone()),
                limit: 1,
                ..SearchQuery::default()
            };
            let mut query = SearchQuery {
                limit: MAX_RESULTS,
                ..probe.clone()
            };
            if !store.search(&probe)?.is_empty() {
                return write_entries(store, &query, out);
            }
            query.exchange = None;
            query.session = Some(id.clone());
            write_session(store, &query, out)
        }
        AuditRequest::Export {
            since_ns,
            until_ns,
            format,
        } => {
            let range = match (since_ns, until_ns) {
                (None, None) => ExportRange::All,
                _ => ExportRange::Time {
                    since_ns: *since_ns,
                    until_ns: *until_ns,
                },
            };
            match format {
                ExportFormat::Jsonl => {
                    export_jsonl(store, range, signer, &mut *out)?;
                }
                ExportFormat::Ocsf => {
                    let mut ocsf = super::ocsf::OcsfLines::new(&mut *out);
                    export_jsonl(store, range, signer, &mut ocsf)?;
                    ocsf.finish()?;
                }
            }
            Ok(())
        }
        AuditRequest::Verify => {
            let keys = if keys.is_empty() {
                store_key(store)?.into_iter().collect()
            } else {
                keys.to_vec()
            };
            let line = match verify_store(store, &keys) {
                Ok(r) => json!({
                    "ok": true,
                    "origin": r.origin,
                    "events": r.events,
                    "checkpoints": r.checkpoints,
                    "first_seq": r.first_seq,
                    "last_seq": r.last_seq,
                    "tree_size": r.tree_size,
                    "root": r.root,
                    "summary": r.to_string(),
                }),
                Err(e) => json!({
                    "ok": false,
                    "seq": e.seq,
                    "problem": e.problem.code(),
                    "detail": e.detail,
                    "summary": format!("FAIL {e}"),
                }),
            };
            writeln!(out, "{line}")?;
            Ok(())
        }
        AuditRequest::Key => {
            let key = store_key(store)?;
            let origin = store.meta(hoop_audit_log::store::meta_keys::ORIGIN)?;
            writeln!(out, "{}", json!({"key": key, "origin": origin}))?;
            Ok(())
        }
    }
}

/// The verifier key the log keeps for readers without the private key.
fn store_key(store: &dyn AuditStore) -> anyhow::Result<Option<String>> {
    Ok(store.meta(hoop_audit_log::store::meta_keys::VERIFIER_KEY)?)
}

/// The matching entries, then, if more match than were asked for, a last
/// line `{"more":true,"after_seq":N}` (N: the last seq sent).
fn write_entries(
    store: &dyn AuditStore,
    query: &SearchQuery,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (found, asked) = search_page(store, query)?;
    write_found(Vec::new(), found, asked, out)
}

/// The entries `query` asks for and one more (to tell whether more match),
/// with the number asked.
fn search_page(
    store: &dyn AuditStore,
    query: &SearchQuery,
) -> anyhow::Result<(Vec<hoop_audit_log::StoredEntry>, usize)> {
    let mut page = query.clone();
    page.limit = query.limit.saturating_add(1);
    Ok((store.search(&page)?, query.limit))
}

/// A session's events, from the request that opened it: a handshake-era
/// `initialize` is recorded before the upstream's answer gives the
/// session its id, so it carries none, but it shares its exchange with
/// the session's first event (that answer).
fn write_session(
    store: &dyn AuditStore,
    query: &SearchQuery,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (found, asked) = search_page(store, query)?;
    let opening = found.first().and_then(|first| {
        let v: Value = serde_json::from_slice(&first.entry).ok()?;
        Some((first.seq, v.get("exchange")?.as_str()?.to_owned()))
    });
    let mut earlier = Vec::new();
    // Only on the first page: a later one (--after) starts mid-session.
    if let (Some((first_seq, exchange)), None) = (opening, query.after_seq) {
        earlier = store
            .search(&SearchQuery {
                exchange: Some(exchange),
                limit: 100,
                ..SearchQuery::default()
            })?
            .into_iter()
            .filter(|e| e.seq < first_seq)
            .collect();
    }
    write_found(earlier, found, asked, out)
}

/// The first `asked` of `found` (asked plus one were read), then, if
/// there were more, a last line `{"more":true,"after_seq":N}`; `opening`:
/// events written before them (a session's opening request).
fn write_found(
    opening: Vec<hoop_audit_log::StoredEntry>,
    found: Vec<hoop_audit_log::StoredEntry>,
    asked: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let more = found.len() > asked;
    let mut last = None;
    for e in opening.iter().chain(found.iter().take(asked)) {
        out.write_all(&e.entry)?;
        out.write_all(b"\n")?;
        last = Some(e.seq);
    }
    if let (true, Some(last)) = (more, last) {
        writeln!(out, "{}", json!({"more": true, "after_seq": last}))?;
    }
    Ok(())
}

/// The events of an answer that are events (search, replay), parsed.
pub fn events(lines: &[Value]) -> impl Iterator<Item = &Value> {
    lines.iter().filter(|l| l.get("seq").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_the_wrong_way_round_is_refused_with_the_way_round() {
        let now = 1_000_000 * 1_000_000_000;
        let range = |since: &str, until: &str| {
            time_range(&Some(since.to_owned()), &Some(until.to_owned()), now)
        };
        let e = range("1h", "2h").unwrap_err();
        assert!(e.contains("--since 2h --until 1h"), "{e}");
        assert!(range("1h", "1h").is_err());
        assert_eq!(
            range("2h", "1h"),
            Ok((
                Some(now - 7200 * 1_000_000_000),
                Some(now - 3600 * 1_000_000_000)
            ))
        );
        assert_eq!(
            time_range(&None, &Some("1h".into()), now).map(|r| r.0),
            Ok(None)
        );
    }
}
