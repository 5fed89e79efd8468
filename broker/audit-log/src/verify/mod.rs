//! Verification. Offline ([`verify_export`]): an export checked against
//! verifier keys the reader trusts, trusting nothing else in it — the same
//! checks as tests/verifier-go/hoopverify.go, which uses Go's reference
//! code instead of ours. Online ([`verify_store`]): a whole store, every
//! leaf and stored hash recomputed from the entries, every checkpoint
//! checked against the recomputed tree.
//!
//! Every failure names the first bad `seq` when one is to blame, and says
//! in words what is wrong: so one byte changed, a line deleted, inserted
//! or swapped fails with the event it hit.

mod export;
mod lines;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;

pub use export::verify_export;
pub use lines::MAX_LINE_BYTES;
pub use store::verify_store;

use crate::checkpoint::CheckpointError;

/// Most hashes a proof may hold: a tree of 2^63 entries needs 63.
pub const MAX_PROOF_HASHES: usize = 64;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub origin: String,
    /// Events checked.
    pub events: u64,
    pub checkpoints: u64,
    pub first_seq: u64,
    /// `None` when there were no events.
    pub last_seq: Option<u64>,
    pub tree_size: u64,
    /// Base64 root hash of the tree of `tree_size`.
    pub root: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OK {}: {} events", self.origin, self.events)?;
        if let Some(last) = self.last_seq {
            write!(f, " (seq {} to {last})", self.first_seq)?;
        }
        write!(
            f,
            ", {} checkpoints, tree size {}, root {}",
            self.checkpoints, self.tree_size, self.root
        )
    }
}

/// What is wrong, in a word or two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not the JSON this line should be.
    Malformed,
    /// A line longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// The header is missing, of another version or contradicts the rest.
    Header,
    /// A checkpoint's signature does not match its text.
    BadSignature,
    /// A checkpoint signed by none of the given keys.
    UnknownKey,
    /// A key given to verify with is malformed.
    BadKey,
    /// A checkpoint of another log, or not named by its key.
    WrongOrigin,
    /// A checkpoint is not a prefix of the next (history rewritten).
    Inconsistent,
    /// The event (or its proof) is not what the checkpoint signed.
    Changed,
    /// An event expected here is not.
    Missing,
    /// An event line that does not belong here (repeated, or extra).
    Inserted,
    /// Events or checkpoints out of order.
    OutOfOrder,
    /// An event without its inclusion proof.
    MissingProof,
    /// A proof for another event or tree, or of an impossible length.
    BadProof,
    /// A body that is not what its event names.
    BadBody,
    /// A body an event names is not there.
    MissingBody,
    /// The input ends too early.
    Truncated,
    /// The store could not be read.
    Store,
}

impl Problem {
    /// A stable name for machines (`--json`): `bad_signature`, `changed`, …
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::Header => "header",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::BadKey => "bad_key",
            Self::WrongOrigin => "wrong_origin",
            Self::Inconsistent => "inconsistent",
            Self::Changed => "changed",
            Self::Missing => "missing",
            Self::Inserted => "inserted",
            Self::OutOfOrder => "out_of_order",
            Self::MissingProof => "missing_proof",
            Self::BadProof => "bad_proof",
            Self::BadBody => "bad_body",
            Self::MissingBody => "missing_body",
            Self::Truncated => "truncated",
            Self::Store => "store",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLong => "line too long",
            Self::Header => "bad header",
            Self::BadSignature => "bad signature",
            Self::UnknownKey => "unknown key",
            Self::BadKey => "bad verifier key",
            Self::WrongOrigin => "wrong origin",
            Self::Inconsistent => "inconsistent",
            Self::Changed => "changed",
            Self::Missing => "missing",
            Self::Inserted => "inserted",
            Self::OutOfOrder => "out of order",
            Self::MissingProof => "missing inclusion proof",
            Self::BadProof => "bad proof",
            Self::BadBody => "body changed",
            Self::MissingBody => "missing body",
            Self::Truncated => "truncated",
            Self::Store => "store",
        }
    }
}

/// A verification failure: `seq 3: line 12: changed: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// The first bad sequence number, when an event is to blame.
    pub seq: Option<u64>,
    /// The line of the export (from 1), for an export.
    pub line: Option<u64>,
    pub problem: Problem,
    pub detail: String,
}

impl VerifyError {
    fn new(
        problem: Problem,
        seq: Option<u64>,
        line: Option<u64>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            seq,
            line,
            problem,
            detail: detail.into(),
        }
    }

    /// A checkpoint that did not open, as the problem it is.
    fn checkpoint(line: Option<u64>, which: &str, e: CheckpointError) -> Self {
        let problem = match &e {
            CheckpointError::UnknownKey(_) => Problem::UnknownKey,
            CheckpointError::BadSignature(_) => Problem::BadSignature,
            CheckpointError::Origin { .. } => Problem::WrongOrigin,
            CheckpointError::Malformed(_) | CheckpointError::Body(_) => Problem::Malformed,
        };
        Self::new(problem, None, line, format!("{which}: {e}"))
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.problem.words(), self.detail)
    }
}

impl std::error::Error for VerifyError {}
