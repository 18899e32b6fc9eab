//! A bounded cache of verified tokens, for asymmetric keys whose verification is costly.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::VerifiedToken;

/// Maps SHA-256(token) to its verified result. Keys are digests so that memory stays bounded
/// by the entry count, whatever the token sizes.
pub(crate) struct VerifiedCache {
    map: Mutex<HashMap<[u8; 32], VerifiedToken>>,
    capacity: usize,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], VerifiedToken>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result if it is still within `exp` + leeway at `now`; expired entries are
    /// dropped.
    pub(crate) fn get(&self, key: &[u8; 32], now: u64, leeway: u64) -> Option<VerifiedToken> {
        let mut map = self.lock();
        let hit = map.get(key)?;
        if now >= hit.exp.saturating_add(leeway) {
            map.remove(key);
            return None;
        }
        Some(hit.clone())
    }

    pub(crate) fn insert(&self, key: [u8; 32], token: VerifiedToken, now: u64) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, v| v.exp > now);
        }
        if map.len() >= self.capacity {
            // Still full of live tokens: drop an arbitrary one; the cache is only a speed-up.
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(key, token);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
