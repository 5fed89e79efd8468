//! hoop's audit log: an append-only, tamper-evident record that a third
//! party can verify offline with tools hoop did not write.
//!
//! (being written; see docs/audit.md for the formats)

pub mod store;
