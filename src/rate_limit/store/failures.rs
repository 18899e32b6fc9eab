//! The login guard's failure counts in memory, and what both of its stores (memory and
//! Redis) answer: a charge, or the remaining lock.
//!
//! A table per dimension (accounts, IPs) with a key cap: a full table evicts the entries that
//! matter least, it never shares an entry (see `LoginGuardLayer`'s docs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;

use super::memory::sweep;
use crate::rate_limit::key::LimitKey;

/// A duration in nanoseconds of the guard's clock (saturating; 584 years fit).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) free_failures: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) window: Duration,
}

impl Backoff {
    /// The lock after the `failures`-th failure: none within the free allowance, then
    /// `base · 2^(failures - free - 1)`, capped.
    pub(crate) fn lock_after(&self, failures: u32) -> Duration {
        if failures <= self.free_failures {
            return Duration::ZERO;
        }
        let exp = (failures - self.free_failures - 1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FailState {
    failures: u32,
    last: u64,
    locked_until: u64,
}

impl FailState {
    /// Whether the failures are forgotten at `now`: one window after the last failure or
    /// after the end of the lock, whichever is later.
    fn forgotten(&self, now: u64, window: u64) -> bool {
        now.saturating_sub(self.last.max(self.locked_until)) > window
    }

    /// Eviction order: forgotten, then unlocked entries with the fewest failures, oldest
    /// first, then locked ones (the fewest failures first).
    fn eviction_rank(&self, now: u64, window: u64) -> (bool, u32, u64) {
        if self.forgotten(now, window) {
            return (false, 0, 0);
        }
        (self.locked_until > now, self.failures, self.last)
    }
}

/// One attempt charged as a failure before the credential check, to refund on success.
#[derive(Debug)]
pub(crate) struct Charge {
    /// The lock this charge started (zero within the free allowance).
    pub(crate) lock: Duration,
    pub(crate) receipt: Receipt,
}

/// Where a charge was made, and how to recognise the lock it started.
#[derive(Debug)]
pub(crate) enum Receipt {
    /// In memory: the lock's end this charge wrote, and the (expired) one it replaced.
    Memory { locked_until: u64, previous: u64 },
    /// In Redis: the value this charge wrote into the lock key (empty when none).
    #[cfg(feature = "redis")]
    Redis { token: String },
}

/// Each eviction pass frees this fraction of the cap.
const EVICTION_BATCH_DIVISOR: usize = 64;

/// Failure counts for one dimension (accounts or IPs), with a key cap (see the module docs:
/// a full table evicts, it never shares an entry).
pub(crate) struct FailureTable {
    map: DashMap<LimitKey, FailState>,
    len: AtomicUsize,
    max_keys: usize,
    pub(crate) backoff: Backoff,
    /// One eviction pass at a time.
    making_room: Mutex<()>,
}

impl FailureTable {
    pub(crate) fn new(max_keys: usize, backoff: Backoff) -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max_keys,
            backoff,
            making_room: Mutex::new(()),
        }
    }

    fn window(&self) -> u64 {
        nanos(self.backoff.window)
    }

    /// Remaining lock at `now`, if any. A key the table does not track is never locked.
    pub(crate) fn locked(&self, key: &LimitKey, now: u64) -> Option<Duration> {
        let state = self.map.get(key).map(|s| *s)?;
        (state.locked_until > now).then(|| Duration::from_nanos(state.locked_until - now))
    }

    /// Charges one attempt to `key` as a failure, unless it is locked (then the remaining
    /// lock, and nothing is charged). The check and the charge are one step under the
    /// entry's lock, so concurrent attempts cannot all pass the check.
    pub(crate) fn charge(&self, key: &LimitKey, now: u64) -> Result<Charge, Duration> {
        if !self.map.contains_key(key) && self.len.load(Ordering::Acquire) >= self.max_keys {
            self.make_room(now);
        }
        let mut entry = match self.map.entry(key.clone()) {
            dashmap::Entry::Occupied(entry) => entry.into_ref(),
            dashmap::Entry::Vacant(entry) => {
                self.len.fetch_add(1, Ordering::AcqRel);
                entry.insert(FailState::default())
            }
        };
        if entry.locked_until > now {
            return Err(Duration::from_nanos(entry.locked_until - now));
        }
        if entry.forgotten(now, self.window()) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        let previous = entry.locked_until;
        let lock = self.backoff.lock_after(entry.failures);
        if !lock.is_zero() {
            entry.locked_until = now.saturating_add(nanos(lock));
        }
        Ok(Charge {
            lock,
            receipt: Receipt::Memory {
                locked_until: entry.locked_until,
                previous,
            },
        })
    }

    /// Takes back one charge: one failure less, and the lock it started (if no later charge
    /// replaced it). An entry left without failures or lock is removed.
    pub(crate) fn refund(&self, key: &LimitKey, locked_until: u64, previous: u64, now: u64) {
        let empty = |s: &FailState| s.failures == 0 && s.locked_until <= now;
        let remove = match self.map.get_mut(key) {
            Some(mut state) => {
                state.failures = state.failures.saturating_sub(1);
                if state.locked_until == locked_until {
                    state.locked_until = previous;
                }
                empty(&state)
            }
            None => false,
        };
        if remove && self.map.remove_if(key, |_, s| empty(s)).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Makes room for a new key in a full table: evicts a batch of the entries that matter
    /// least ([`FailState::eviction_rank`]), so a newcomer always gets its own entry and the
    /// one scan is paid once per batch of new keys.
    fn make_room(&self, now: u64) {
        let _one_pass = self
            .making_room
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = self.len.load(Ordering::Acquire);
        if len < self.max_keys {
            return; // another pass made room meanwhile
        }
        let window = self.window();
        let mut ranked: Vec<((bool, u32, u64), LimitKey)> = self
            .map
            .iter()
            .map(|e| (e.value().eviction_rank(now, window), e.key().clone()))
            .collect();
        let batch = len - self.max_keys + self.max_keys.div_ceil(EVICTION_BATCH_DIVISOR);
        let batch = batch.min(ranked.len());
        if batch == 0 {
            return;
        }
        if batch < ranked.len() {
            ranked.select_nth_unstable_by_key(batch - 1, |(rank, _)| *rank);
        }
        for (rank, key) in ranked.into_iter().take(batch) {
            // Skip an entry charged since the scan: it may no longer rank among the least.
            if self
                .map
                .remove_if(&key, |_, s| s.eviction_rank(now, window) == rank)
                .is_some()
            {
                self.len.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    pub(crate) fn clear(&self, key: &LimitKey) {
        if self.map.remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn evict(&self, now: u64) {
        let window = self.window();
        sweep(&self.map, &self.len, |s| !s.forgotten(now, window));
    }

    pub(crate) fn tracked(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    fn backoff() -> Backoff {
        let window = Duration::from_secs(15 * 60);
        Backoff {
            free_failures: 5,
            base: Duration::from_secs(1),
            max: window,
            window,
        }
    }

    #[test]
    fn table_count_stays_exact_under_concurrent_fail_clear_and_evict() {
        // `clear` (a success) and new failures during a sweep must neither be subtracted twice
        // nor hide removals: a drifting count sends every new account to the overflow entry
        // (or wraps below zero).
        let table = FailureTable::new(1_000_000, backoff());
        let now = AtomicU64::new(1);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (table, now, done) = (&table, &now, &done);
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        let key = LimitKey::Text(format!("user{t}-{i}").into());
                        let _ = table.charge(&key, now.load(Ordering::Relaxed));
                        if i % 2 == 0 {
                            table.clear(&key);
                        }
                    }
                    done.store(true, Ordering::Release);
                });
            }
            let (table, now, done) = (&table, &now, &done);
            s.spawn(move || {
                for _ in 0..10_000 {
                    // Past the window: every entry not locked is idle.
                    let t = now.fetch_add(3_600_000_000_000, Ordering::Relaxed);
                    table.evict(t + 3_600_000_000_000);
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
        });
        assert_eq!(table.len.load(Ordering::Acquire), table.map.len());
        table.evict(u64::MAX);
        assert_eq!(table.len.load(Ordering::Acquire), 0);
        assert_eq!(table.map.len(), 0);
    }

    #[test]
    fn a_full_table_keeps_an_exact_count_while_threads_make_room_concurrently() {
        let table = FailureTable::new(100, backoff());
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let table = &table;
                s.spawn(move || {
                    for i in 0..5_000u32 {
                        let key = LimitKey::Text(format!("user{t}-{i}").into());
                        assert!(table.charge(&key, u64::from(i) + 1).is_ok());
                        if i % 3 == 0 {
                            table.clear(&key);
                        }
                    }
                });
            }
        });
        let len = table.len.load(Ordering::Acquire);
        assert_eq!(len, table.map.len());
        // A racer may insert between another's check and its pass: at most one per thread.
        assert!(len <= 102, "{len}");
    }
}
