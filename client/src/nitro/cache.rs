//! Bounded, thread-safe caches of verified certificates: CA chains (cabundle) and leaves.
//!
//! AWS reuses the root, regional, zonal and instance certificates across many documents,
//! and a leaf across the documents of its 3-hour life, so their signature checks are done
//! once per distinct certificate. The caches store only results of checks that do not
//! depend on time, keyed by the exact DER bytes checked; validity windows are stored and
//! re-checked on every verification, and the COSE signature is never cached, so a cached
//! verification always returns the same verdict as an uncached one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

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

/// Cache key of a leaf under a verified chain: the chain's key and the leaf's DER.
pub(crate) fn leaf_key(chain: &ChainKey, leaf: &[u8]) -> ChainKey {
    let mut hasher = Sha256::new();
    hasher.update(chain);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Verified values by key. When full, an arbitrary entry is evicted: simple, bounded,
/// and any eviction only costs a re-verification.
pub(crate) struct BoundedCache<V> {
    capacity: usize,
    entries: Mutex<HashMap<ChainKey, Arc<V>>>,
}

impl<V> BoundedCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &ChainKey) -> Option<Arc<V>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still a valid map of fully verified entries.
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: ChainKey, value: Arc<V>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(key, value);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
