//! A bounded, thread-safe cache of verified CA chains (cabundle).
//!
//! AWS reuses the root, regional, zonal and instance certificates across many documents,
//! so their four signature checks are done once per distinct cabundle. The cache stores
//! only results of checks that do not depend on time; validity windows are stored and
//! re-checked on every verification, and the leaf and COSE checks are never cached, so a
//! cached verification always returns the same verdict as an uncached one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::chain::ValidatedChain;

/// Default number of distinct cabundles kept.
pub const DEFAULT_CHAIN_CACHE_CAPACITY: usize = 1024;

/// Cache key: SHA-256 over the length-prefixed DER of every cabundle certificate.
pub(crate) type ChainKey = [u8; 32];

pub(crate) fn chain_key(cabundle: &[Vec<u8>]) -> ChainKey {
    let mut hasher = Sha256::new();
    for der in cabundle {
        hasher.update((der.len() as u64).to_be_bytes());
        hasher.update(der);
    }
    hasher.finalize().into()
}

/// Verified chains by key. When full, an arbitrary entry is evicted: simple, bounded,
/// and any eviction only costs a re-verification.
pub(crate) struct ChainCache {
    capacity: usize,
    entries: Mutex<HashMap<ChainKey, Arc<ValidatedChain>>>,
}

impl ChainCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ChainCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &ChainKey) -> Option<Arc<ValidatedChain>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still a valid map of fully verified entries.
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: ChainKey, chain: Arc<ValidatedChain>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(key, chain);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
