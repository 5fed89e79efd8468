//! hoop's side of `tests/bench/masking_peer.sh`: the labelled corpus
//! through the engine, once for what it finds and then repeatedly for how
//! fast, so the script can score hoop and Presidio with one scorer and put
//! both in one table.
//!
//! Usage: `cargo run --release -p hoop-masking --example corpus_run -- CORPUS.jsonl`
//!
//! Prints one JSON line per document, `{"id", "found": [[start, end,
//! type], …]}` for a text document (byte offsets) or `{"id", "masked":
//! VALUE}` for a JSON record (every type redacted, so a masked leaf says
//! which type masked it), then `{"bytes", "seconds", "passes"}`: the
//! corpus's bytes (text, and each record as compact JSON) and the time the
//! engine took over `passes` passes on one thread.

use std::io::Write;
use std::time::{Duration, Instant};

use hoop_masking::{Context, HashKey, MaskReport, MaskingProfile, ProfileConfig};
use serde_json::{json, Value};

/// Enough passes for a stable figure, bounded either way.
const MIN_TIME: Duration = Duration::from_secs(2);
const MAX_PASSES: u32 = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: corpus_run CORPUS.jsonl")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let docs: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: not JSON lines: {e}"))?;
    let config: ProfileConfig = toml::from_str(
        "styles = { card = \"redact\", ssn = \"redact\", iban = \"redact\", routing = \"redact\", \
         account = \"redact\", email = \"redact\", phone = \"redact\", secret = \"redact\" }",
    )?;
    let p = MaskingProfile::compile("corpus", &config, HashKey::from_bytes([1; 32]))?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut bytes = 0usize;
    for doc in &docs {
        let id = &doc["id"];
        if doc["kind"] == "json" {
            bytes += doc["value"].to_string().len();
            let mut v = doc["value"].clone();
            p.mask_value(&mut v, &[], &mut MaskReport::default())?;
            writeln!(out, "{}", json!({"id": id, "masked": v}))?;
        } else {
            let t = doc["text"].as_str().ok_or("a text document without text")?;
            bytes += t.len();
            let found: Vec<Value> = p
                .findings(t, Context::default())
                .into_iter()
                .map(|f| json!([f.start, f.end, p.label(f.detector)]))
                .collect();
            writeln!(out, "{}", json!({"id": id, "found": found}))?;
        }
    }

    // The timed passes: what a tool result costs, a record's copy included
    // (the broker masks the message it owns; here the corpus stays whole).
    let started = Instant::now();
    let mut passes = 0;
    while passes < MAX_PASSES && (passes == 0 || started.elapsed() < MIN_TIME) {
        for doc in &docs {
            if doc["kind"] == "json" {
                let mut v = doc["value"].clone();
                p.mask_value(&mut v, &[], &mut MaskReport::default())?;
                std::hint::black_box(v);
            } else if let Some(t) = doc["text"].as_str() {
                std::hint::black_box(p.findings(t, Context::default()));
            }
        }
        passes += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "{}",
        json!({"bytes": bytes, "seconds": seconds, "passes": passes})
    )?;
    Ok(())
}
