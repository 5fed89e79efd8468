//! hoop's audit log: an append-only, tamper-evident record that a third
//! party can verify offline with tools hoop did not write.

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod store;
pub mod tree;
pub mod verify;

#[cfg(test)]
mod test_support;
pub mod writer;
