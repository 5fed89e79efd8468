//! The tree a store holds: its root at a size and the proofs an export
//! carries, read through [`AuditStore::read_hashes`]. All Merkle math is
//! `tlog_tiles`' (a port of Go's `sumdb/tlog`); this only adapts a store to
//! its [`HashReader`] and turns its failures back into [`StoreError`]s.

use std::cell::RefCell;
use std::collections::HashMap;

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

/// Most hashes a [`CachedHashes`] keeps before starting over (~2.5 MiB).
const CACHE_LIMIT: usize = 1 << 16;

/// A store's hashes with a bounded cache in front, for the many proofs of
/// an export: consecutive entries' inclusion proofs share most hashes.
pub struct CachedHashes<'a> {
    store: StoreHashes<'a>,
    cache: RefCell<HashMap<u64, Hash>>,
    limit: usize,
}

impl<'a> CachedHashes<'a> {
    pub fn new(store: &'a dyn AuditStore) -> Self {
        Self::with_limit(store, CACHE_LIMIT)
    }

    fn with_limit(store: &'a dyn AuditStore, limit: usize) -> Self {
        Self {
            store: StoreHashes::new(store),
            cache: RefCell::new(HashMap::new()),
            limit,
        }
    }

    /// Proof that entry `seq` is leaf `seq` of the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        if seq >= size {
            return Err(StoreError::invalid(
                self.store.store.location(),
                format!("no inclusion proof of seq {seq} in a tree of {size}"),
            ));
        }
        prove_record(size, seq, self).map_err(|e| self.store.error(e))
    }
}

impl HashReader for CachedHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut cache = self.cache.borrow_mut();
        // Start over before looking, so every hash asked is there after.
        if cache.len() + indexes.len() > self.limit {
            cache.clear();
        }
        let mut missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| !cache.contains_key(i))
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let read = self.store.read_hashes(&missing)?;
            cache.extend(missing.into_iter().zip(read));
        }
        indexes
            .iter()
            .map(|i| {
                cache
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::Durability;
    use crate::test_support::{events, TestDir};

    #[test]
    fn cached_proofs_are_the_proofs_even_as_the_cache_starts_over() {
        let dir = TestDir::new("tree-cache");
        let mut store = SqliteStore::open(&dir.path().join("a.db"), Durability::Os).unwrap();
        store.append_batch(&events(0..100)).unwrap();
        for limit in [8, 20, CACHE_LIMIT] {
            let cached = CachedHashes::with_limit(&store, limit);
            for seq in 0..100 {
                assert_eq!(
                    cached.inclusion_proof(seq, 100).unwrap(),
                    inclusion_proof(&store, seq, 100).unwrap(),
                    "seq {seq}, limit {limit}"
                );
                assert!(cached.cache.borrow().len() <= limit.max(8));
            }
        }
        assert!(CachedHashes::new(&store).inclusion_proof(100, 100).is_err());
    }
}
