//! A bounded cache of verified tokens, for asymmetric keys whose verification is costly.

use std::collections::HashMap;
use std::sync::Mutex;

use super::token::VerifiedToken;

/// A verified token and the generation of the key set that verified it.
struct Entry {
    token: VerifiedToken,
    generation: u64,
}

/// Maps a token to its verified result. The key is the whole token, so a lookup can only hit
/// for the exact bytes that were verified (no digest collisions to reason about); memory is
/// bounded by `capacity` × the token size cap.
///
/// Each entry remembers the generation of the key set it was verified with (a JWKS key set
/// starts a new generation on every refresh; a static key set never does). A lookup under
/// another generation is a miss, so a token is never admitted from the cache after its key
/// left the key set: it is verified again against the keys held now.
pub(crate) struct VerifiedCache {
    map: Mutex<HashMap<Box<str>, Entry>>,
    capacity: usize,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result if it was verified with the key-set `generation` and is still within
    /// `exp` + leeway at `now`; expired entries and entries of another generation are dropped.
    pub(crate) fn get(
        &self,
        key: &str,
        now: u64,
        leeway: u64,
        generation: u64,
    ) -> Option<VerifiedToken> {
        let mut map = self.lock();
        let hit = map.get(key)?;
        if hit.generation != generation || now >= hit.token.exp.saturating_add(leeway) {
            map.remove(key);
            return None;
        }
        Some(hit.token.clone())
    }

    /// Caches `token`, verified with the key-set `generation`.
    pub(crate) fn insert(&self, key: &str, token: VerifiedToken, now: u64, generation: u64) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, v| v.generation == generation && v.token.exp > now);
        }
        if map.len() >= self.capacity {
            // Still full of live tokens: drop an arbitrary one; the cache is only a speed-up.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(Box::from(key), Entry { token, generation });
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
