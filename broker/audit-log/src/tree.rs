//! The tree a store holds: its root at a size and the proofs an export
//! carries, read through [`AuditStore::read_hashes`]. All Merkle math is
//! `tlog_tiles`' (a port of Go's `sumdb/tlog`); this only adapts a store to
//! its [`HashReader`] and turns its failures back into [`StoreError`]s.

use std::cell::RefCell;

use tlog_tiles::{prove_record, prove_tree, tree_hash, Hash, HashReader};

use crate::store::{AuditStore, StoreError};

/// A store as a `HashReader`. tlog's errors cannot carry ours, so the
/// store's failure is kept here and handed back by [`Self::error`].
pub struct StoreHashes<'a> {
    store: &'a dyn AuditStore,
    failure: RefCell<Option<StoreError>>,
}

impl<'a> StoreHashes<'a> {
    pub fn new(store: &'a dyn AuditStore) -> Self {
        Self {
            store,
            failure: RefCell::new(None),
        }
    }

    /// The store's own failure if there was one, else tlog's refusal
    /// described as a corrupt store (the hashes it holds do not add up).
    pub fn error(&self, tlog: tlog_tiles::Error) -> StoreError {
        self.failure.borrow_mut().take().unwrap_or_else(|| {
            StoreError::corrupt(self.store.location(), format!("tree hashes: {tlog}"))
        })
    }
}

impl HashReader for StoreHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self.store.read_hashes(indexes) {
            Ok(hashes) if hashes.len() == indexes.len() => Ok(hashes),
            Ok(hashes) => {
                *self.failure.borrow_mut() = Some(StoreError::corrupt(
                    self.store.location(),
                    format!("asked for {} hashes, got {}", indexes.len(), hashes.len()),
                ));
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
            Err(e) => {
                *self.failure.borrow_mut() = Some(e);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
        }
    }
}

/// The root hash of the first `size` entries (RFC 6962; `SHA-256("")` for 0).
pub fn root(store: &dyn AuditStore, size: u64) -> Result<Hash, StoreError> {
    let reader = StoreHashes::new(store);
    tree_hash(size, &reader).map_err(|e| reader.error(e))
}

/// Proof that entry `seq` is leaf `seq` of the tree of `size` entries.
pub fn inclusion_proof(
    store: &dyn AuditStore,
    seq: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    if seq >= size {
        return Err(StoreError::invalid(
            store.location(),
            format!("no inclusion proof of seq {seq} in a tree of {size}"),
        ));
    }
    let reader = StoreHashes::new(store);
    prove_record(size, seq, &reader).map_err(|e| reader.error(e))
}

/// Proof that the tree of `from` entries is a prefix of the one of `to`
/// (empty from the empty tree, or between equal sizes).
pub fn consistency_proof(
    store: &dyn AuditStore,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    if from > to {
        return Err(StoreError::invalid(
            store.location(),
            format!("no consistency proof from size {from} to the smaller {to}"),
        ));
    }
    if from == 0 {
        return Ok(Vec::new());
    }
    let reader = StoreHashes::new(store);
    prove_tree(to, from, &reader).map_err(|e| reader.error(e))
}
