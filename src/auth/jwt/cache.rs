//! A bounded cache of verified tokens, for asymmetric keys whose verification is costly.

use std::collections::HashMap;
use std::sync::Mutex;

use super::VerifiedToken;

/// Maps a token to its verified result. The key is the whole token, so a lookup can only hit
/// for the exact bytes that were verified (no digest collisions to reason about); memory is
/// bounded by `capacity` × the token size cap.
pub(crate) struct VerifiedCache {
    map: Mutex<HashMap<Box<str>, VerifiedToken>>,
    capacity: usize,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, VerifiedToken>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result if it is still within `exp` + leeway at `now`; expired entries are
    /// dropped.
    pub(crate) fn get(&self, key: &str, now: u64, leeway: u64) -> Option<VerifiedToken> {
        let mut map = self.lock();
        let hit = map.get(key)?;
        if now >= hit.exp.saturating_add(leeway) {
            map.remove(key);
            return None;
        }
        Some(hit.clone())
    }

    pub(crate) fn insert(&self, key: &str, token: VerifiedToken, now: u64) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, v| v.exp > now);
        }
        if map.len() >= self.capacity {
            // Still full of live tokens: drop an arbitrary one; the cache is only a speed-up.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(Box::from(key), token);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
