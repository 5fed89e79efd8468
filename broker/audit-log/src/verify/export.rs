//! The offline check of an export, line by line, in bounded memory: one
//! line (at most [`MAX_LINE_BYTES`]), the event awaiting its proof (at most
//! an entry) and one size and root per checkpoint.

use std::io::BufRead;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tlog_tiles::{check_record, check_tree, record_hash, Hash};

use super::lines::{
    leading_seq, read_line, ConsistencyProof, EventLine, HeaderLine, InclusionProof, LineError,
    OtherLine, MAX_LINE_BYTES,
};
use super::{Problem, Report, VerifyError, MAX_PROOF_HASHES};
use crate::checkpoint::{open_checkpoint, TrustedKeys, MAX_CHECKPOINT_SIZE};
use crate::entry::{hex, MAX_ENTRY_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Header,
    Checkpoints,
    Consistency,
    Events,
}

struct Checkpoint {
    size: u64,
    root: Hash,
}

/// An event line read, waiting for its bodies and inclusion proof.
struct Event {
    seq: u64,
    hash: Hash,
    entry: Vec<u8>,
    message_sha256: Option<String>,
    message_bytes: Option<u64>,
    bodies: Vec<(String, u64)>,
}

struct Verifier {
    keys: TrustedKeys,
    line: u64,
    section: Section,
    header: Option<HeaderLine>,
    checkpoints: Vec<Checkpoint>,
    proofs: usize,
    next: u64,
    event: Option<Event>,
    events: u64,
}

/// Verifies an export against the verifier keys given (several across a
/// key rotation): see docs/audit.md for the format and what is proved.
pub fn verify_export(mut reader: impl BufRead, keys: &[String]) -> Result<Report, VerifyError> {
    let keys = TrustedKeys::parse(keys)
        .map_err(|e| VerifyError::new(Problem::BadKey, None, None, e.to_string()))?;
    let mut v = Verifier {
        keys,
        line: 0,
        section: Section::Header,
        header: None,
        checkpoints: Vec::new(),
        proofs: 0,
        next: 0,
        event: None,
        events: 0,
    };
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf) {
            Ok(false) => break,
            Ok(true) => {
                v.line += 1;
                v.read(&buf)?;
            }
            Err(LineError::TooLong) => {
                return Err(v.fail(
                    Problem::TooLong,
                    v.blame(),
                    format!("longer than {MAX_LINE_BYTES} bytes"),
                ))
            }
            Err(LineError::Io(e)) => {
                return Err(v.fail(Problem::Truncated, v.blame(), format!("reading: {e}")))
            }
        }
    }
    v.finish()
}

impl Verifier {
    fn fail(&self, problem: Problem, seq: Option<u64>, detail: impl Into<String>) -> VerifyError {
        VerifyError::new(problem, seq, Some(self.line), detail)
    }

    /// The event a bad line belongs to: the one awaiting its proof, or in
    /// the events the one expected next.
    fn blame(&self) -> Option<u64> {
        match &self.event {
            Some(e) => Some(e.seq),
            None => (self.section == Section::Events).then_some(self.next),
        }
    }

    fn tree_size(&self) -> u64 {
        self.checkpoints.last().map_or(0, |c| c.size)
    }

    fn read(&mut self, line: &[u8]) -> Result<(), VerifyError> {
        if self.section == Section::Header {
            return self.header(line);
        }
        if line.starts_with(br#"{"seq":"#) {
            self.start_events()?;
            return self.event_line(line);
        }
        // A line that is nothing it could be: checkpoints and proofs read
        // so far must stand on their own; after them it is in the events'
        // place (a changed event line, most likely) and blames the event.
        let other: OtherLine = match serde_json::from_slice(line) {
            Ok(other) => other,
            Err(e) => {
                self.start_events()?;
                return Err(self.fail(
                    Problem::Malformed,
                    self.blame(),
                    format!("not a line of the export: {e}"),
                ));
            }
        };
        if other.seq.is_some() {
            self.start_events()?;
            return Err(self.fail(
                Problem::Malformed,
                self.blame(),
                "an event whose first member is not \"seq\"",
            ));
        }
        match other {
            OtherLine {
                checkpoint: Some(note),
                ..
            } if self.section == Section::Checkpoints => self.checkpoint(&note),
            OtherLine {
                consistency: Some(proof),
                ..
            } if self.section <= Section::Consistency => self.consistency(proof),
            OtherLine {
                body: Some(body),
                data: Some(data),
                ..
            } => {
                self.start_events()?;
                self.body(&body, &data)
            }
            OtherLine {
                inclusion: Some(proof),
                ..
            } => {
                self.start_events()?;
                self.inclusion(proof)
            }
            _ => {
                self.start_events()?;
                Err(self.fail(
                    Problem::Malformed,
                    self.blame(),
                    "an unknown or misplaced line",
                ))
            }
        }
    }

    fn header(&mut self, line: &[u8]) -> Result<(), VerifyError> {
        let header: HeaderLine = serde_json::from_slice(line).map_err(|e| {
            // An OCSF export starts with a record: say which file to check.
            let ocsf = serde_json::from_slice::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("class_uid").is_some());
            let detail = if ocsf {
                "this is an OCSF export (--format ocsf), which carries no proofs: verify the JSON-lines export of the same range (--format jsonl)".to_owned()
            } else {
                format!("the first line is not the export header: {e}")
            };
            self.fail(Problem::Header, None, detail)
        })?;
        if header.hoop_audit_export != 1 {
            return Err(self.fail(
                Problem::Header,
                None,
                format!(
                    "export format version {}, this checks version 1",
                    header.hoop_audit_export
                ),
            ));
        }
        self.header = Some(header);
        self.section = Section::Checkpoints;
        Ok(())
    }

    fn checkpoint(&mut self, note: &str) -> Result<(), VerifyError> {
        let which = format!("checkpoint {}", self.checkpoints.len() + 1);
        let opened = open_checkpoint(note.as_bytes(), &self.keys)
            .map_err(|e| VerifyError::checkpoint(Some(self.line), &which, e))?;
        let origin = self.header.as_ref().map_or("", |h| h.origin.as_str());
        if opened.origin != origin {
            return Err(self.fail(
                Problem::WrongOrigin,
                None,
                format!(
                    "{which} is of `{}`, the header says `{origin}`",
                    opened.origin
                ),
            ));
        }
        if opened.size < self.tree_size() {
            return Err(self.fail(
                Problem::OutOfOrder,
                None,
                format!(
                    "{which} (size {}) after one of size {}",
                    opened.size,
                    self.tree_size()
                ),
            ));
        }
        self.checkpoints.push(Checkpoint {
            size: opened.size,
            root: opened.root,
        });
        Ok(())
    }

    fn consistency(&mut self, c: ConsistencyProof) -> Result<(), VerifyError> {
        self.section = Section::Consistency;
        let i = self.proofs;
        let (Some(old), Some(new)) = (self.checkpoints.get(i), self.checkpoints.get(i + 1)) else {
            return Err(self.fail(
                Problem::Malformed,
                None,
                "more consistency proofs than pairs of checkpoints",
            ));
        };
        if (c.from, c.to) != (old.size, new.size) {
            return Err(self.fail(
                Problem::Inconsistent,
                None,
                format!(
                    "consistency proof {}->{}, checkpoints {} and {} have sizes {} and {}",
                    c.from,
                    c.to,
                    i + 1,
                    i + 2,
                    old.size,
                    new.size
                ),
            ));
        }
        let checked = if c.proof.len() > MAX_PROOF_HASHES {
            Err(format!(
                "{} hashes, no tree needs more than {MAX_PROOF_HASHES}",
                c.proof.len()
            ))
        } else if old.size == 0 {
            // Every tree extends the empty one.
            (c.proof.is_empty())
                .then_some(())
                .ok_or_else(|| "a proof from the empty tree must be empty".into())
        } else {
            check_tree(&c.proof, new.size, new.root, old.size, old.root).map_err(|e| e.to_string())
        };
        if let Err(why) = checked {
            return Err(self.fail(
                Problem::Inconsistent,
                None,
                format!(
                    "the checkpoint of size {} is not a prefix of the one of size {}: {why}",
                    old.size, new.size
                ),
            ));
        }
        self.proofs += 1;
        Ok(())
    }

    /// Once, at the first event-section line: what the checkpoints and the
    /// header say must agree before any event is checked against them.
    fn start_events(&mut self) -> Result<(), VerifyError> {
        if self.section == Section::Events {
            return Ok(());
        }
        self.section = Section::Events;
        if self.checkpoints.is_empty() {
            return Err(self.fail(Problem::Missing, None, "no checkpoint before the events"));
        }
        if self.proofs + 1 != self.checkpoints.len() {
            return Err(self.fail(
                Problem::Inconsistent,
                None,
                format!(
                    "{} consistency proofs for {} checkpoints",
                    self.proofs,
                    self.checkpoints.len()
                ),
            ));
        }
        let (first, size) = self
            .header
            .as_ref()
            .map_or((0, 0), |h| (h.first_seq, h.tree_size));
        if size != self.tree_size() {
            return Err(self.fail(
                Problem::Header,
                None,
                format!(
                    "header tree_size {size}, the last checkpoint has {}",
                    self.tree_size()
                ),
            ));
        }
        if first > size || size > MAX_CHECKPOINT_SIZE {
            return Err(self.fail(
                Problem::Header,
                None,
                format!("first_seq {first} outside the tree of {size}"),
            ));
        }
        self.next = first;
        Ok(())
    }

    fn event_line(&mut self, line: &[u8]) -> Result<(), VerifyError> {
        let Some(seq) = leading_seq(line) else {
            return Err(self.fail(
                Problem::Malformed,
                self.blame(),
                "an event whose first member is not \"seq\" with an integer",
            ));
        };
        if let Some(waiting) = &self.event {
            return Err(if waiting.seq == seq {
                self.fail(Problem::Inserted, Some(seq), "a second line for this event")
            } else {
                self.fail(
                    Problem::MissingProof,
                    Some(waiting.seq),
                    format!("no inclusion proof before the next event line (seq {seq})"),
                )
            });
        }
        let size = self.tree_size();
        if seq < self.next {
            return Err(self.fail(
                Problem::Inserted,
                Some(seq),
                format!(
                    "seq {seq} again, or out of order, where seq {} belongs",
                    self.next
                ),
            ));
        }
        if self.next >= size {
            return Err(self.fail(
                Problem::Inserted,
                Some(seq),
                format!("beyond the last checkpoint (tree size {size})"),
            ));
        }
        if seq > self.next {
            return Err(self.fail(
                Problem::Missing,
                Some(self.next),
                format!(
                    "not where it should be (deleted, or moved later): seq {seq} is in its place"
                ),
            ));
        }
        if line.len() > MAX_ENTRY_BYTES {
            return Err(self.fail(
                Problem::Malformed,
                Some(seq),
                format!(
                    "the event is {} bytes, over the {MAX_ENTRY_BYTES}-byte limit",
                    line.len()
                ),
            ));
        }
        let parsed: EventLine = serde_json::from_slice(line).map_err(|e| {
            self.fail(
                Problem::Changed,
                Some(seq),
                format!("the event is not the JSON it was: {e}"),
            )
        })?;
        if parsed.seq != seq {
            return Err(self.fail(Problem::Malformed, Some(seq), "two values of \"seq\""));
        }
        self.event = Some(Event {
            seq,
            hash: record_hash(line),
            entry: line.to_vec(),
            message_sha256: parsed.message_sha256,
            message_bytes: parsed.message_bytes,
            bodies: Vec::new(),
        });
        Ok(())
    }

    fn body(&mut self, body: &str, data: &str) -> Result<(), VerifyError> {
        let line = self.line;
        let fail =
            |problem, seq, detail: String| VerifyError::new(problem, seq, Some(line), detail);
        let next = self.next;
        let Some(event) = self.event.as_mut() else {
            return Err(fail(
                Problem::Missing,
                Some(next),
                "a body line without its event line: the event line is missing".into(),
            ));
        };
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| {
                fail(
                    Problem::BadBody,
                    Some(event.seq),
                    format!("the body is not base64: {e}"),
                )
            })?;
        let sha = hex(&Sha256::digest(&data));
        if sha != body {
            return Err(fail(
                Problem::BadBody,
                Some(event.seq),
                format!("the body's SHA-256 is {sha}, the line says {body}"),
            ));
        }
        let quoted = format!("\"{sha}\"");
        if !event
            .entry
            .windows(quoted.len())
            .any(|w| w == quoted.as_bytes())
        {
            return Err(fail(
                Problem::BadBody,
                Some(event.seq),
                format!("body {sha} is not named in its event"),
            ));
        }
        event.bodies.push((sha, data.len() as u64));
        Ok(())
    }

    fn inclusion(&mut self, p: InclusionProof) -> Result<(), VerifyError> {
        let size = self.tree_size();
        let root = self.checkpoints.last().map_or(Hash::default(), |c| c.root);
        let Some(event) = self.event.take() else {
            return Err(self.fail(
                Problem::Missing,
                Some(self.next),
                "an inclusion proof without its event line: the event line is missing",
            ));
        };
        let seq = event.seq;
        if p.seq != seq || p.tree_size != size {
            return Err(self.fail(
                Problem::BadProof,
                Some(seq),
                format!(
                    "the inclusion proof is for seq {} in a tree of {}, not seq {seq} in {size}",
                    p.seq, p.tree_size
                ),
            ));
        }
        if p.proof.len() > MAX_PROOF_HASHES {
            return Err(self.fail(
                Problem::BadProof,
                Some(seq),
                format!("{} hashes in the proof", p.proof.len()),
            ));
        }
        if let Err(e) = check_record(&p.proof, size, root, seq, event.hash) {
            return Err(self.fail(
                Problem::Changed,
                Some(seq),
                format!("the event is not leaf {seq} of the tree the last checkpoint signed (size {size}): the event line or its proof was altered ({e})"),
            ));
        }
        if let Some(sha) = &event.message_sha256 {
            let Some((_, len)) = event.bodies.iter().find(|(s, _)| s == sha) else {
                return Err(self.fail(
                    Problem::MissingBody,
                    Some(seq),
                    format!("no body line for message_sha256 {sha}"),
                ));
            };
            if event.message_bytes.is_some_and(|n| n != *len) {
                return Err(self.fail(
                    Problem::BadBody,
                    Some(seq),
                    format!(
                        "the body is {len} bytes, message_bytes says {}",
                        event.message_bytes.unwrap_or(0)
                    ),
                ));
            }
        }
        self.next += 1;
        self.events += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<Report, VerifyError> {
        if self.section == Section::Header {
            return Err(VerifyError::new(
                Problem::Truncated,
                None,
                None,
                "empty: no header",
            ));
        }
        self.start_events()?;
        if let Some(event) = &self.event {
            return Err(self.fail(
                Problem::MissingProof,
                Some(event.seq),
                "the export ends before this event's inclusion proof",
            ));
        }
        let size = self.tree_size();
        if self.next != size {
            return Err(self.fail(
                Problem::Missing,
                Some(self.next),
                format!("the export ends before this event (the tree has {size})"),
            ));
        }
        let (origin, first_seq) = self
            .header
            .map_or((String::new(), 0), |h| (h.origin, h.first_seq));
        Ok(Report {
            origin,
            events: self.events,
            checkpoints: self.checkpoints.len() as u64,
            first_seq,
            last_seq: size.checked_sub(1).filter(|_| self.events > 0),
            tree_size: size,
            root: self
                .checkpoints
                .last()
                .map(|c| c.root.to_string())
                .unwrap_or_default(),
        })
    }
}
