//! The export (docs/audit.md, "Export format", JSON lines version 1): what
//! a third party verifies offline — with `verify_export`, or with Go's
//! `sumdb/note` and `sumdb/tlog` (tests/verifier-go) — without the store.
//!
//! Written as it is read from the store, page by page: memory holds one
//! page of entries and the list of checkpoint sizes, never the export.

use std::io::{BufWriter, Write};
use std::ops::Range;

use serde::Serialize;
use tlog_tiles::Hash;

use crate::checkpoint::{KeyError, LogSigner};
use crate::entry::hex;
use crate::store::{
    meta_keys, AuditStore, StoreError, MAX_CHECKPOINTS_PER_READ, MAX_ENTRIES_PER_READ,
};
use crate::tree;

/// Entries read from the store at a time.
const PAGE: u64 = 1_000;
const _: () = assert!(PAGE <= MAX_ENTRIES_PER_READ);

/// Which events to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportRange {
    /// Every event the store still holds.
    All,
    /// Events with `seq` in the range.
    Seqs(Range<u64>),
    /// Events from the first recorded at or after `since_ns` to the last
    /// recorded before `until_ns` (UTC nanoseconds), and every event
    /// between them in `seq` order.
    Time {
        since_ns: Option<i64>,
        until_ns: Option<i64>,
    },
}

/// What an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub origin: String,
    pub first_seq: u64,
    /// The last checkpoint's size: events `first_seq..tree_size` are in it.
    pub tree_size: u64,
    pub events: u64,
    pub checkpoints: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("audit export: {0}")]
    Store(#[from] StoreError),
    #[error("audit export: writing it failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("audit export: {0}")]
    Key(#[from] KeyError),
    #[error("audit export: no events {0}")]
    NoEvents(String),
    #[error("audit export: no checkpoint covers seq {last} yet: the broker signs one every few seconds; export again shortly, or on the broker host with its signing key")]
    NoCheckpoint { last: u64 },
    #[error("audit export: the signing key is for `{key}` but this log's origin is `{origin}`")]
    WrongKey { key: String, origin: String },
}

#[derive(Serialize)]
struct Header<'a> {
    hoop_audit_export: u32,
    origin: &'a str,
    key: &'a str,
    first_seq: u64,
    tree_size: u64,
    exported_at: String,
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    checkpoint: &'a str,
}

#[derive(Serialize)]
struct ConsistencyLine {
    consistency: Consistency,
}

#[derive(Serialize)]
struct Consistency {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

#[derive(Serialize)]
struct InclusionLine {
    inclusion: Inclusion,
}

#[derive(Serialize)]
struct Inclusion {
    seq: u64,
    tree_size: u64,
    proof: Vec<String>,
}

fn base64_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_string).collect()
}

fn json_line<W: Write, T: Serialize>(out: &mut W, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes the export of `range` to `out`. The last checkpoint is signed on
/// the spot with `signer` when the store has none at exactly the end of
/// the range (on the broker host); without a signer the export extends to
/// the smallest stored checkpoint past the range.
pub fn export_jsonl<W: Write>(
    store: &dyn AuditStore,
    range: ExportRange,
    signer: Option<&LogSigner>,
    out: W,
) -> Result<ExportSummary, ExportError> {
    let location = store.location().to_owned();
    let origin = store.meta(meta_keys::ORIGIN)?.ok_or_else(|| {
        StoreError::corrupt(
            &location,
            "it has no origin: is it an audit log the broker opened?",
        )
    })?;
    if let Some(signer) = signer.filter(|s| s.origin() != origin) {
        return Err(ExportError::WrongKey {
            key: signer.origin().to_owned(),
            origin,
        });
    }
    let key = match signer {
        Some(signer) => signer.verifier_key().to_owned(),
        None => store.meta(meta_keys::VERIFIER_KEY)?.unwrap_or_default(),
    };
    let (size, held_from) = (store.tree_size()?, store.first_seq()?);
    let wanted = match &range {
        ExportRange::All => held_from..size,
        ExportRange::Seqs(r) => r.start.max(held_from)..r.end.min(size),
        ExportRange::Time { since_ns, until_ns } => {
            match store.seq_range_for_time(*since_ns, *until_ns)? {
                Some(r) => r.start.max(held_from)..r.end.min(size),
                None => 0..0,
            }
        }
    };
    if wanted.is_empty() {
        return Err(ExportError::NoEvents(match range {
            ExportRange::All => "in the log".into(),
            ExportRange::Seqs(r) => format!(
                "with seq {} to {} in the log ({held_from} to {size} held)",
                r.start, r.end
            ),
            ExportRange::Time { .. } => "recorded in that time".into(),
        }));
    }
    let first = wanted.start;

    // The last checkpoint: a stored one at exactly the end, one signed now,
    // or the next stored one (the export then runs up to it).
    let after = store
        .checkpoints(wanted.end..u64::MAX, 1)?
        .into_iter()
        .next();
    let (tree_size, last_note) = match (after, signer) {
        (Some(c), _) if c.size == wanted.end => (c.size, c.note),
        (_, Some(signer)) => (
            wanted.end,
            signer.sign(wanted.end, &tree::root(store, wanted.end)?)?,
        ),
        (Some(c), None) => (c.size, c.note),
        (None, None) => {
            return Err(ExportError::NoCheckpoint {
                last: wanted.end - 1,
            })
        }
    };

    let mut out = BufWriter::with_capacity(1 << 16, out);
    let exported_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json_line(
        &mut out,
        &Header {
            hoop_audit_export: 1,
            origin: &origin,
            key: &key,
            first_seq: first,
            tree_size,
            exported_at,
        },
    )?;

    // Checkpoints the broker stored for sizes within the export, one per
    // size, ascending, then the last.
    let mut sizes: Vec<u64> = Vec::new();
    let mut cursor = first.max(1);
    while cursor < tree_size {
        let page = store.checkpoints(cursor..tree_size, MAX_CHECKPOINTS_PER_READ)?;
        let Some(last) = page.last().map(|c| c.size) else {
            break;
        };
        for (i, c) in page.iter().enumerate() {
            // The last stored note of a size stands for it.
            if page.get(i + 1).is_some_and(|n| n.size == c.size) {
                continue;
            }
            json_line(
                &mut out,
                &CheckpointLine {
                    checkpoint: &c.note,
                },
            )?;
            sizes.push(c.size);
        }
        cursor = last + 1;
    }
    json_line(
        &mut out,
        &CheckpointLine {
            checkpoint: &last_note,
        },
    )?;
    sizes.push(tree_size);

    for pair in sizes.windows(2) {
        let proof = tree::consistency_proof(store, pair[0], pair[1])?;
        json_line(
            &mut out,
            &ConsistencyLine {
                consistency: Consistency {
                    from: pair[0],
                    to: pair[1],
                    proof: base64_hashes(&proof),
                },
            },
        )?;
    }

    let proofs = tree::CachedHashes::new(store);
    let mut next = first;
    while next < tree_size {
        let end = next.saturating_add(PAGE).min(tree_size);
        let page = store.entries(next..end)?;
        for e in page {
            if e.seq != next {
                return Err(StoreError::corrupt(
                    &location,
                    format!("the entry of seq {next} is missing"),
                )
                .into());
            }
            out.write_all(&e.entry)?;
            out.write_all(b"\n")?;
            for sha in &e.bodies {
                let data = store.body(sha)?.ok_or_else(|| {
                    StoreError::corrupt(
                        &location,
                        format!("body {} of seq {next} is missing", hex(sha)),
                    )
                })?;
                write!(out, "{{\"body\":\"{}\",\"data\":\"", hex(sha))?;
                let mut encoder = base64::write::EncoderWriter::new(
                    &mut out,
                    &base64::engine::general_purpose::STANDARD,
                );
                encoder.write_all(&data)?;
                encoder.finish()?;
                drop(encoder);
                out.write_all(b"\"}\n")?;
            }
            json_line(
                &mut out,
                &InclusionLine {
                    inclusion: Inclusion {
                        seq: e.seq,
                        tree_size,
                        proof: base64_hashes(&proofs.inclusion_proof(e.seq, tree_size)?),
                    },
                },
            )?;
            next += 1;
        }
        if next < end {
            return Err(StoreError::corrupt(
                &location,
                format!("the entry of seq {next} is missing"),
            )
            .into());
        }
    }
    out.flush()?;
    Ok(ExportSummary {
        origin,
        first_seq: first,
        tree_size,
        events: tree_size - first,
        checkpoints: sizes.len() as u64,
    })
}
