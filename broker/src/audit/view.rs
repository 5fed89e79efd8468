//! How audit events look to a person: the table `audit search` prints, the
//! timeline `audit replay` prints (like `tsh play`: each call, its
//! decision, what came back, timings), and the times both commands take.
//! Shared by `hoop audit` and `hoop-broker audit`, so both read alike.

use serde_json::Value;

/// A time given on the command line, as UTC nanoseconds: RFC 3339
/// (`2026-12-03T09:00:00Z`), a date (`2026-12-03`, midnight UTC), or a
/// span back from `now_ns` (`90s`, `15m`, `8h`, `7d`).
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, String> {
    let t = text.trim();
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(dt) = time::OffsetDateTime::parse(t, rfc3339) {
        return i64::try_from(dt.unix_timestamp_nanos())
            .map_err(|_| format!("{t:?} is out of range"));
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, date) {
        let dt = d.midnight().assume_utc();
        return i64::try_from(dt.unix_timestamp_nanos())
            .map_err(|_| format!("{t:?} is out of range"));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let secs: i64 = match (num.parse::<i64>(), unit) {
        (Ok(n), "s") => n,
        (Ok(n), "m") => n.saturating_mul(60),
        (Ok(n), "h") => n.saturating_mul(3600),
        (Ok(n), "d") => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "{t:?} is not a time: use RFC 3339 (2026-12-03T09:00:00Z), a date (2026-12-03) or a span back from now (15m, 8h, 7d)"
            ))
        }
    };
    Ok(now_ns.saturating_sub(secs.saturating_mul(1_000_000_000)))
}

/// A member as text safe for a terminal: control characters (which could
/// rewrite what an auditor sees) are shown escaped.
fn s(v: &Value, k: &str) -> String {
    safe(v.get(k).and_then(Value::as_str).unwrap_or(""))
}

fn safe(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn who(v: &Value) -> String {
    safe(
        v.pointer("/actor/sub")
            .and_then(Value::as_str)
            .unwrap_or("-"),
    )
}

/// One line per event: what `audit search` prints.
pub fn table(events: &[Value]) -> String {
    // Every column is cut to its width (…), so a long method or name
    // cannot push the ones after it out of line. The exchange is what
    // `audit replay` takes; the time is to the millisecond here (the
    // event, in --json, has it to the nanosecond).
    let mut out = format!(
        "{:<6} {:<24} {:<19} {:<16} {:<10} {:<24} {:<20} {:<8} {:<16} {}\n",
        "SEQ", "TIME", "TYPE", "WHO", "TARGET", "METHOD", "NAME", "DECISION", "EXCHANGE", "OUTCOME"
    );
    for e in events {
        let outcome = match (s(e, "outcome").as_str(), e.get("error_code")) {
            ("", _) => String::new(),
            (o, Some(code)) => format!("{o} ({code})"),
            (o, None) => o.to_owned(),
        };
        out.push_str(&format!(
            "{:<6} {:<24} {:<19} {:<16} {:<10} {:<24} {:<20} {:<8} {:<16} {}\n",
            e.get("seq").map(Value::to_string).unwrap_or_default(),
            to_millis(&s(e, "time")),
            truncate(&s(e, "type"), 19),
            truncate(&who(e), 16),
            truncate(&s(e, "target"), 10),
            truncate(&s(e, "method"), 24),
            truncate(&s(e, "name"), 20),
            truncate(&s(e, "decision"), 8),
            truncate(&s(e, "exchange"), 16),
            outcome
        ));
    }
    out
}

/// The events of one exchange or session as a timeline: offsets from the
/// first event, each call with its decision, each answer with its outcome
/// and latency, and the messages themselves (shortened).
pub fn timeline(events: &[Value]) -> String {
    let Some(first) = events.first() else {
        return "no events\n".into();
    };
    let t0 = time_ns(first);
    let mut out = format!(
        "{}, from {} ({} on {})\n",
        count(events.len(), "event"),
        s(first, "time"),
        who(first),
        s(first, "target"),
    );
    for e in events {
        let offset_ms = (time_ns(e) - t0) as f64 / 1e6;
        let what = match s(e, "type").as_str() {
            "mcp.request" => {
                let why = match (s(e, "decision").as_str(), s(e, "rule").as_str()) {
                    ("", _) => String::new(),
                    (d, "") => format!("  [{d}]"),
                    (d, r) => format!("  [{d} by {r}]"),
                };
                let name = s(e, "name");
                let sep = if name.is_empty() { "" } else { " " };
                format!("→ {}{sep}{name}{why}", s(e, "method"))
            }
            "mcp.response" => format!(
                "← {}{}  after {}",
                s(e, "outcome"),
                e.get("error_code")
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
                latency(e)
            ),
            "mcp.server_message" => format!("← {} (server)", s(e, "method")),
            "mcp.refused" => format!(
                "✗ {} {} refused: {}",
                s(e, "method"),
                s(e, "name"),
                s(e, "reason")
            ),
            "mcp.upstream_failed" => format!("✗ upstream failed: {}", s(e, "reason")),
            kind if kind.starts_with("approval.") => approval_line(e),
            other => other.to_owned(),
        };
        out.push_str(&format!(
            "{:>10.3} ms  #{:<6} {what}\n",
            offset_ms,
            e.get("seq").map(Value::to_string).unwrap_or_default()
        ));
        if let Some(m) = e.get("message") {
            out.push_str(&format!(
                "              {}\n",
                truncate(&safe(&m.to_string()), 200)
            ));
        } else if let Some(sha) = e.get("message_sha256").and_then(Value::as_str) {
            out.push_str(&format!(
                "              (message of {} bytes stored beside the log entry, sha256 {sha})\n",
                e.get("message_bytes")
                    .map(Value::to_string)
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// `1 event`, `2 events`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Prints an answer's events: as recorded (`json`: one JSON line each),
/// or rendered. Whether more matched, or none did, goes to stderr, so
/// standard output holds events only.
pub fn print_lines(lines: &[u8], json: bool, render: fn(&[Value]) -> String) -> anyhow::Result<()> {
    let mut events = Vec::new();
    let mut raw = Vec::with_capacity(lines.len());
    let mut more = None;
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if v.get("more") == Some(&Value::Bool(true)) {
            more = v.get("after_seq").and_then(Value::as_u64);
            continue;
        }
        raw.extend_from_slice(line);
        raw.push(b'\n');
        events.push(v);
    }
    if json {
        write_stdout(&raw)?;
    } else if events.is_empty() {
        eprintln!("no events match");
    } else {
        write_stdout(render(&events).as_bytes())?;
    }
    if let Some(after) = more {
        eprintln!(
            "more events match than the {} shown: add --after {after} for the next page, or narrow with --since, --until or other filters",
            count(events.len(), "event")
        );
    }
    Ok(())
}

/// Standard output, where a reader that left early (`| head`) is not an
/// error: what it wanted, it read.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes an export to a new file (`-`: standard output). An existing file
/// is never overwritten: an export is evidence.
pub fn write_export(path: &std::path::Path, text: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if path.as_os_str() == "-" {
        return write_stdout(text);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // It holds what was called and what came back: owner-only, like the log.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {}: {e} (an existing export is never overwritten)",
            path.display()
        )
    })?;
    f.write_all(text)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let lines = text.split(|b| *b == b'\n');
    let ocsf = lines
        .clone()
        .filter(|l| l.starts_with(b"{\"activity_id\""))
        .count();
    if ocsf > 0 {
        eprintln!(
            "wrote {} ({} as OCSF API Activity, for a SIEM; the export that proves itself is --format jsonl)",
            path.display(),
            count(ocsf, "event")
        );
    } else {
        let events = lines.filter(|l| l.starts_with(b"{\"seq\":")).count();
        eprintln!(
            "wrote {} ({}); check it with `hoop audit verify {} --key KEY` (KEY: from the broker's operator, `hoop-broker audit pubkey`, or `hoop audit key`)",
            path.display(),
            count(events, "event"),
            path.display()
        );
    }
    Ok(())
}

fn latency(e: &Value) -> String {
    match e.get("latency_us").and_then(Value::as_u64) {
        Some(us) if us >= 1000 => format!("{:.1} ms", us as f64 / 1000.0),
        Some(us) => format!("{us} µs"),
        None => "?".into(),
    }
}

fn time_ns(e: &Value) -> i64 {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(&s(e, "time"), rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .unwrap_or(0)
}

/// `2026-12-03T09:25:53.123456789Z` as `2026-12-03T09:25:53.123Z`;
/// anything else as it is.
fn to_millis(time: &str) -> String {
    match (time.find('.'), time.strip_suffix('Z')) {
        (Some(dot), Some(_)) if time.len() > dot + 4 => format!("{}Z", &time[..dot + 4]),
        _ => time.to_owned(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// An `approval.*` event in a timeline: which approval, who, and why.
fn approval_line(e: &Value) -> String {
    let id = e.get("approval").map(Value::to_string).unwrap_or_default();
    let reason = match s(e, "reason") {
        r if r.is_empty() => String::new(),
        r => format!(": {r}"),
    };
    match s(e, "type").as_str() {
        "approval.requested" => format!("⏸ approval #{id} requested by {}{reason}", who(e)),
        "approval.decided" => format!(
            "✓ approval #{id} {} by {}{reason}",
            s(e, "decision"),
            who(e)
        ),
        "approval.released" => format!("▶ approval #{id} released the call"),
        "approval.expired" => format!("✗ approval #{id} expired"),
        "approval.cancelled" => format!("✗ approval #{id} withdrawn by {}", who(e)),
        other => format!("{other} #{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_timeline_says_who_approved_and_why() {
        let events = [
            json!({"seq": 6, "time": "2026-12-03T09:00:00.000000000Z", "type": "approval.requested", "approval": 1, "actor": {"sub": "alice"}, "reason": "release 7"}),
            json!({"seq": 15, "time": "2026-12-03T09:00:03.000000000Z", "type": "approval.decided", "approval": 1, "actor": {"sub": "bob"}, "decision": "granted", "reason": "CHG-1234"}),
            json!({"seq": 16, "time": "2026-12-03T09:00:03.001000000Z", "type": "approval.released", "approval": 1, "actor": {"sub": "alice"}}),
        ];
        let t = timeline(&events);
        assert!(
            t.contains("approval #1 requested by alice: release 7"),
            "{t}"
        );
        assert!(t.contains("approval #1 granted by bob: CHG-1234"), "{t}");
        assert!(t.contains("approval #1 released the call"), "{t}");
    }

    #[test]
    fn times_are_rfc3339_dates_or_spans_back() {
        let now = 1_000_000 * 1_000_000_000;
        assert_eq!(parse_time("15m", now), Ok(now - 900 * 1_000_000_000));
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400 * 1_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z", now), Ok(1_500_000_000));
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn a_timeline_shows_the_call_its_decision_and_the_answer() {
        let events = [
            json!({"seq": 1, "time": "2026-12-03T09:00:00.000000000Z", "type": "mcp.request", "actor": {"sub": "alice"}, "target": "demo", "method": "tools/call", "name": "echo", "decision": "allow", "rule": "eng-read", "message": {"id": 1}}),
            json!({"seq": 2, "time": "2026-12-03T09:00:00.002500000Z", "type": "mcp.response", "outcome": "ok", "latency_us": 2500}),
        ];
        let t = timeline(&events);
        assert!(t.contains("→ tools/call echo  [allow by eng-read]"), "{t}");
        assert!(t.contains("2.500 ms"), "{t}");
        assert!(t.contains("← ok  after 2.5 ms"), "{t}");
        assert!(table(&events).contains("alice"));
    }

    #[test]
    fn a_request_without_a_decision_shows_none_and_long_cells_keep_the_columns() {
        let events = [
            json!({"seq": 3, "time": "2026-12-03T09:00:00.000000000Z", "type": "mcp.request", "method": "listen", "exchange": "00000000000000a1"}),
            json!({"seq": 4, "time": "2026-12-03T09:00:00.001000000Z", "type": "mcp.request", "method": "notifications/initialized", "name": "x", "decision": "allow", "exchange": "00000000000000a2"}),
        ];
        let t = timeline(&events);
        assert!(t.contains("→ listen\n"), "{t}");
        assert!(t.contains("→ notifications/initialized x  [allow]"), "{t}");
        let table = table(&events);
        let lines: Vec<&str> = table.lines().collect();
        // In characters: a cut cell ends in a three-byte `…`.
        let col = |line: &str, what: &str| line[..line.find(what).unwrap()].chars().count();
        // The decision and the exchange sit under their headings.
        assert_eq!(col(lines[2], "allow"), col(lines[0], "DECISION"), "{table}");
        assert_eq!(
            col(lines[2], "00000000000000a2"),
            col(lines[0], "EXCHANGE"),
            "{table}"
        );
        assert!(lines[1].contains("2026-12-03T09:00:00.000Z"), "{table}");
    }
}
