//! Precision and recall per type on the labelled corpus of
//! `tests/corpus/corpus.jsonl` (made by `tests/corpus/generate.py`; the
//! figures are published in docs/masking.md). Print the table with
//! `cargo test -p hoop-masking --test corpus -- --nocapture`.
//!
//! Text documents are scored by span: a labelled value is found when a
//! finding of the same type covers all of it; a finding that overlaps no
//! labelled value of its type is a false positive. JSON records are scored
//! by leaf, after masking the whole record with every type redacted: a
//! labelled leaf must come out as `[MASKED:type]` and hold nothing of the
//! raw value; any other leaf that comes out changed is a false positive.

use std::collections::BTreeMap;

use hoop_masking::{Context, HashKey, MaskReport, MaskingProfile, ProfileConfig};
use serde_json::Value;

/// Types whose detectors validate a checksum (and, for cards, the issuer's
/// ranges): the aim, held here so a regression fails the build.
/// An SSN has no checksum; written bare it needs a context word, like the
/// other context-based types.
const VALIDATED: &[&str] = &["card", "iban", "routing"];
const VALIDATED_RECALL: f64 = 0.995;
const VALIDATED_PRECISION: f64 = 0.99;
/// Types found by shape and context: below the aim, said plainly in
/// docs/masking.md; these floors only catch a regression.
const CONTEXT_FLOOR: f64 = 0.90;

#[derive(Default, Debug, Clone, Copy)]
struct Score {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Score {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            return 1.0;
        }
        f64::from(self.tp) / f64::from(self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            return 1.0;
        }
        f64::from(self.tp) / f64::from(self.tp + self.fn_)
    }
}

fn corpus() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/corpus.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("tests/corpus/corpus.jsonl is readable");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a corpus line is JSON"))
        .collect()
}

fn profile() -> MaskingProfile {
    // Every type redacted, so a masked leaf says which type masked it.
    let config: ProfileConfig = toml::from_str(
        "styles = { card = \"redact\", ssn = \"redact\", iban = \"redact\", routing = \"redact\", \
         account = \"redact\", email = \"redact\", phone = \"redact\", secret = \"redact\" }",
    )
    .expect("profile parses");
    MaskingProfile::compile("corpus", &config, HashKey::from_bytes([1; 32])).expect("compiles")
}

fn score_text(
    p: &MaskingProfile,
    doc: &Value,
    scores: &mut BTreeMap<String, Score>,
    misses: &mut Vec<String>,
) {
    let text = doc["text"].as_str().expect("text");
    let truth: Vec<(usize, usize, &str)> = doc["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| {
            (
                l[0].as_u64().expect("start") as usize,
                l[1].as_u64().expect("end") as usize,
                l[2].as_str().expect("type"),
            )
        })
        .collect();
    let found: Vec<(usize, usize, &str)> = p
        .findings(text, Context::default())
        .into_iter()
        .map(|f| (f.start, f.end, p.label(f.detector)))
        .collect();
    for &(s, e, t) in &truth {
        // Punctuation around a value (a phone's `+` or parentheses) need
        // not be covered: it is not the protected part.
        let (s, e) = alnum_bounds(text, s, e);
        let hit = found
            .iter()
            .any(|&(fs, fe, ft)| ft == t && fs <= s && fe >= e);
        let score = scores.entry(t.to_owned()).or_default();
        if hit {
            score.tp += 1;
        } else {
            score.fn_ += 1;
            misses.push(format!("{}: missed {t} {:?}", doc["id"], &text[s..e]));
        }
    }
    for &(fs, fe, ft) in &found {
        let labelled = truth.iter().any(|&(s, e, t)| t == ft && fs < e && s < fe);
        if !labelled {
            scores.entry(ft.to_owned()).or_default().fp += 1;
            misses.push(format!("{}: false {ft} {:?}", doc["id"], &text[fs..fe]));
        }
    }
}

fn alnum_bounds(text: &str, s: usize, e: usize) -> (usize, usize) {
    let b = text.as_bytes();
    let (mut s, mut e) = (s, e);
    while s < e && !b[s].is_ascii_alphanumeric() {
        s += 1;
    }
    while e > s && !b[e - 1].is_ascii_alphanumeric() {
        e -= 1;
    }
    (s, e)
}

fn masked_labels(s: &str) -> Vec<&str> {
    s.split("[MASKED:")
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .collect()
}

fn score_json(
    p: &MaskingProfile,
    doc: &Value,
    scores: &mut BTreeMap<String, Score>,
    misses: &mut Vec<String>,
) {
    let before = &doc["value"];
    let mut after = before.clone();
    p.mask_value(&mut after, &[], &mut MaskReport::default())
        .expect("a corpus record masks");
    let truth: BTreeMap<&str, &str> = doc["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| {
            (
                l[0].as_str().expect("pointer"),
                l[1].as_str().expect("type"),
            )
        })
        .collect();
    let mut leaves = Vec::new();
    leaves_of(before, String::new(), &mut leaves);
    for (ptr, raw) in leaves {
        let out = after.pointer(&ptr).cloned().unwrap_or(Value::Null);
        let out_text = match &out {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let labels = masked_labels(&out_text);
        match truth.get(ptr.as_str()) {
            Some(t) => {
                let score = scores.entry((*t).to_owned()).or_default();
                if labels.contains(t) && !out_text.contains(raw.as_str()) {
                    score.tp += 1;
                } else {
                    score.fn_ += 1;
                    misses.push(format!(
                        "{}: missed {t} at {ptr}: {raw:?} -> {out_text:?}",
                        doc["id"]
                    ));
                }
                for l in labels.iter().filter(|l| *l != t) {
                    scores.entry((*l).to_owned()).or_default().fp += 1;
                }
            }
            None if out != Value::String(raw.clone()) && !matches!(out, Value::Number(_)) => {
                for l in &labels {
                    scores.entry((*l).to_owned()).or_default().fp += 1;
                }
                misses.push(format!(
                    "{}: false at {ptr}: {raw:?} -> {out_text:?}",
                    doc["id"]
                ));
            }
            None => {}
        }
    }
}

fn leaves_of(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                leaves_of(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves_of(v, format!("{at}/{i}"), out);
            }
        }
        Value::String(s) => out.push((at, s.clone())),
        _ => {}
    }
}

#[test]
fn precision_and_recall_per_type_on_the_labelled_corpus() {
    let p = profile();
    let docs = corpus();
    assert!(
        docs.len() >= 500,
        "the corpus is the one generate.py writes"
    );
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    for doc in &docs {
        if doc["kind"] == "json" {
            score_json(&p, doc, &mut scores, &mut misses);
        } else {
            score_text(&p, doc, &mut scores, &mut misses);
        }
    }
    println!("| type | labelled | found | missed | false positives | precision | recall |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (t, s) in &scores {
        println!(
            "| {t} | {} | {} | {} | {} | {:.2} % | {:.2} % |",
            s.tp + s.fn_,
            s.tp,
            s.fn_,
            s.fp,
            100.0 * s.precision(),
            100.0 * s.recall()
        );
    }
    for m in &misses {
        println!("  {m}");
    }
    for (t, s) in &scores {
        let (recall, precision) = if VALIDATED.contains(&t.as_str()) {
            (VALIDATED_RECALL, VALIDATED_PRECISION)
        } else {
            (CONTEXT_FLOOR, CONTEXT_FLOOR)
        };
        assert!(s.tp + s.fn_ > 0 || s.fp > 0, "{t}: nothing labelled");
        assert!(
            s.recall() >= recall,
            "{t}: recall {:.4} < {recall} ({s:?})",
            s.recall()
        );
        assert!(
            s.precision() >= precision,
            "{t}: precision {:.4} < {precision} ({s:?})",
            s.precision()
        );
    }
}
