//! The in-memory store: governor's GCRA over a key map with a hard key cap and idle-key
//! eviction by one background task.

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::RateLimiter;
use serde::Deserialize;
use tokio::sync::Notify;

use super::key::LimitKey;
use super::quota::Quota;

/// Default maximum number of keys one in-memory limiter tracks.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default interval of the idle-key eviction task.
pub const DEFAULT_EVICTION_INTERVAL: Duration = Duration::from_secs(60);

/// What an in-memory limiter does with a new key once it tracks `max_keys` keys.
///
/// Either way memory stays bounded, and the eviction task is woken at once to free the keys
/// whose quota has fully come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyCapPolicy {
    /// New keys share one overflow bucket with the same quota (default): a flood of new
    /// addresses is limited as one client, known clients keep their own buckets.
    #[default]
    SharedOverflow,
    /// New keys are not tracked and are allowed (fail open): availability over strictness.
    AllowUntracked,
}

/// The clock of an in-memory limiter: a monotonic clock started when the limiter is built, or
/// a manual clock for tests.
#[derive(Clone)]
pub(crate) enum LimiterClock {
    /// quanta's clock (the one governor uses by default): the CPU's invariant time-stamp
    /// counter, scaled to nanoseconds against the OS monotonic clock, or that clock itself when
    /// the CPU has no usable counter. Read on every check: about 10 ns here, against 27 ns for
    /// `Instant::elapsed` on the same VM.
    Monotonic {
        clock: quanta::Clock,
        start: u64,
    },
    Manual(FakeRelativeClock),
}

impl LimiterClock {
    /// A monotonic clock reading zero now.
    pub(crate) fn monotonic() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        Self::Monotonic { clock, start }
    }
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Monotonic { .. } => f.write_str("Monotonic"),
            Self::Manual(_) => f.write_str("Manual"),
        }
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match self {
            Self::Monotonic { clock, start } => {
                Nanos::new(clock.delta_as_nanos(*start, clock.raw()))
            }
            Self::Manual(clock) => clock.now(),
        }
    }
}

/// One key's GCRA state: its theoretical arrival time in nanoseconds since the limiter
/// started (0 = fresh).
#[derive(Default)]
struct Cell(AtomicU64);

impl Cell {
    /// Governor's compare-and-swap loop (as in its `InMemoryState`).
    fn measure<T, E>(&self, f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>) -> Result<T, E> {
        let mut prev = self.0.load(Ordering::Acquire);
        let mut decision = f((prev != 0).then(|| Nanos::new(prev)));
        while let Ok((result, new)) = decision {
            match self.0.compare_exchange_weak(
                prev,
                new.as_u64(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(result),
                Err(next) => prev = next,
            }
            decision = f((prev != 0).then(|| Nanos::new(prev)));
        }
        decision.map(|(result, _)| result)
    }
}

pub(crate) struct StoreInner<K> {
    map: DashMap<K, Cell>,
    len: AtomicUsize,
    max_keys: usize,
    policy: KeyCapPolicy,
    overflow: Cell,
    full_warned: AtomicBool,
    wake: Arc<Notify>,
}

/// The governor state store: a `DashMap` (std SipHash, so chosen keys cannot collide on
/// purpose) with a hard cap on its length.
pub(crate) struct CappedStore<K>(Arc<StoreInner<K>>);

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let inner = &*self.0;
        if let Some(cell) = inner.map.get(key) {
            return cell.measure(f);
        }
        // A new key: reserve a slot first so that concurrent inserts never pass the cap.
        if inner.len.fetch_add(1, Ordering::AcqRel) >= inner.max_keys {
            inner.len.fetch_sub(1, Ordering::AcqRel);
            if !inner.full_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "axum_shield::rate_limit",
                    max_keys = inner.max_keys,
                    policy = ?inner.policy,
                    "rate limiter key cap reached; evicting idle keys now"
                );
            }
            inner.wake.notify_one();
            return match inner.policy {
                KeyCapPolicy::SharedOverflow => inner.overflow.measure(f),
                KeyCapPolicy::AllowUntracked => Cell::default().measure(f),
            };
        }
        let entry = inner.map.entry(key.clone());
        if matches!(entry, dashmap::Entry::Occupied(_)) {
            // Another request inserted it meanwhile: give the slot back.
            inner.len.fetch_sub(1, Ordering::AcqRel);
        }
        let cell = entry.or_default();
        cell.measure(f)
    }
}

type Governor<K> = RateLimiter<K, CappedStore<K>, LimiterClock, StateInformationMiddleware>;

/// The outcome of one check of one quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    /// Requests left after this one (0 when refused).
    pub(crate) remaining: u32,
    /// Time until the quota is fully back.
    pub(crate) reset: Duration,
    /// Time until the refused request would be allowed (zero when allowed).
    pub(crate) retry_after: Duration,
}

/// One quota over many keys, in memory.
pub(crate) struct MemoryLimiter<K: Hash + Eq + Clone = LimitKey> {
    governor: Governor<K>,
    store: Arc<StoreInner<K>>,
    clock: LimiterClock,
    /// Our reading of the clock taken right after governor's, so `now - start` never exceeds
    /// governor's own elapsed time: eviction is never early.
    start: Nanos,
    quota: Quota,
    /// `quota.emission_interval()`, kept: it divides, and every check needs it.
    emission: Duration,
}

impl<K: Hash + Eq + Clone> fmt::Debug for MemoryLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("quota", &self.quota)
            .field("keys", &self.len())
            .field("max_keys", &self.store.max_keys)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> MemoryLimiter<K> {
    pub(crate) fn new(
        quota: Quota,
        max_keys: usize,
        policy: KeyCapPolicy,
        clock: LimiterClock,
        wake: Arc<Notify>,
    ) -> Self {
        let store = Arc::new(StoreInner {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max_keys,
            policy,
            overflow: Cell::default(),
            full_warned: AtomicBool::new(false),
            wake,
        });
        let governor: Governor<K> = RateLimiter::<
            K,
            CappedStore<K>,
            LimiterClock,
            governor::middleware::NoOpMiddleware<Nanos>,
        >::new(
            quota.to_governor(),
            CappedStore(store.clone()),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        let start = clock.now();
        Self {
            governor,
            store,
            clock,
            start,
            quota,
            emission: quota.emission_interval(),
        }
    }

    /// Checks `cost` units for `key`.
    #[inline]
    pub(crate) fn check(&self, key: &K, cost: NonZeroU32) -> Outcome {
        let t = self.emission;
        let result = if cost.get() == 1 {
            Ok(self.governor.check_key(key))
        } else {
            self.governor.check_key_n(key, cost)
        };
        match result {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.quota.burst().saturating_sub(remaining);
                Outcome {
                    allowed: true,
                    remaining,
                    reset: t.saturating_mul(used),
                    retry_after: Duration::ZERO,
                }
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Outcome {
                    allowed: false,
                    remaining: 0,
                    reset: wait
                        .max(t)
                        .saturating_add(t.saturating_mul(cost.get().saturating_sub(1))),
                    retry_after: wait,
                }
            }
            // `cost` exceeds the burst: it can never pass (builders refuse such a cost).
            Err(_) => Outcome {
                allowed: false,
                remaining: 0,
                reset: self.quota.period(),
                retry_after: self.quota.period(),
            },
        }
    }

    /// Number of keys tracked.
    pub(crate) fn len(&self) -> usize {
        self.store.len.load(Ordering::Acquire)
    }

    /// Forgets every key whose quota has fully come back (indistinguishable from a new key).
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.clock.now().saturating_sub(self.start).as_u64();
        let removed = sweep(&self.store.map, &self.store.len, |cell| {
            cell.0.load(Ordering::Acquire) > now
        });
        if removed > 0 {
            self.store.map.shrink_to_fit();
            self.store.full_warned.store(false, Ordering::Relaxed);
        }
        removed
    }
}

/// Removes the entries `keep` refuses and takes them off `len`, the map's counted length;
/// returns how many went. Removals are counted inside the sweep, not as the length before
/// minus after: entries inserted (or removed) by requests meanwhile would hide or double
/// them, and the count would drift until every new key counted as over the cap.
pub(crate) fn sweep<K: Hash + Eq, V>(
    map: &DashMap<K, V>,
    len: &AtomicUsize,
    mut keep: impl FnMut(&V) -> bool,
) -> usize {
    let mut removed = 0;
    map.retain(|_, value| {
        let kept = keep(value);
        removed += usize::from(!kept);
        kept
    });
    len.fetch_sub(removed, Ordering::AcqRel);
    removed
}

/// Anything the eviction task can sweep.
pub(crate) trait Evict: Send + Sync + 'static {
    fn evict(&self);
}

/// Starts an owner's eviction task once, as soon as a Tokio runtime is running: at build time
/// if one is, otherwise on the first request (owners built before `#[tokio::main]` starts
/// its runtime, or in a synchronous `main`).
#[derive(Debug)]
pub(crate) struct EvictorStart {
    started: AtomicBool,
    interval: Duration,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
}

impl EvictorStart {
    /// `wake` makes the task sweep at once (a limiter at its key cap).
    pub(crate) fn new(interval: Duration, wake: Arc<Notify>) -> Self {
        Self {
            started: AtomicBool::new(false),
            interval,
            wake,
            stop: Arc::new(Notify::new()),
        }
    }

    /// Whether the task has been spawned.
    #[cfg(test)]
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Tells the task to end (the owner's `Drop`).
    pub(crate) fn stop(&self) {
        self.stop.notify_one();
    }

    /// Spawns the task for `owner` unless it runs already; a no-op without a runtime.
    #[inline]
    pub(crate) fn ensure<T: Evict>(&self, owner: &Arc<T>) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        self.start(owner);
    }

    #[cold]
    fn start<T: Evict>(&self, owner: &Arc<T>) {
        // Only one caller wins the right to spawn.
        if self
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && !spawn_evictor(
                Arc::downgrade(owner),
                self.interval,
                self.wake.clone(),
                self.stop.clone(),
            )
        {
            // No runtime yet: try again on a later call.
            self.started.store(false, Ordering::Release);
        }
    }
}

/// Starts the one eviction task of a layer. It holds only a weak reference, sweeps every
/// `interval` (or at once when a limiter hits its key cap), and ends when `stop` fires — which
/// the layer's shared state does in its `Drop`.
fn spawn_evictor<T: Evict>(
    target: Weak<T>,
    interval: Duration,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) -> bool {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    handle.spawn(async move {
        use futures_util::future::{select, Either};
        loop {
            let tick = Box::pin(async {
                let sleep = Box::pin(tokio::time::sleep(interval));
                let woken = Box::pin(wake.notified());
                select(sleep, woken).await;
            });
            let stopped = Box::pin(stop.notified());
            if let Either::Right(_) = select(tick, stopped).await {
                break;
            }
            match target.upgrade() {
                Some(target) => target.evict(),
                None => break,
            }
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn limiter(
        quota: Quota,
        max_keys: usize,
        policy: KeyCapPolicy,
    ) -> (MemoryLimiter, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l = MemoryLimiter::new(
            quota,
            max_keys,
            policy,
            LimiterClock::Manual(clock.clone()),
            Arc::new(Notify::new()),
        );
        (l, clock)
    }

    fn ip(n: u32) -> LimitKey {
        LimitKey::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    const ONE: NonZeroU32 = NonZeroU32::MIN;

    #[test]
    fn quota_is_exact_under_concurrency_with_a_fake_clock() {
        let (l, _clock) = limiter(Quota::per_minute(50), 10, KeyCapPolicy::SharedOverflow);
        let l = Arc::new(l);
        let allowed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if l.check(&ip(1), ONE).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn quota_comes_back_at_the_emission_interval() {
        let (l, clock) = limiter(Quota::per_minute(5), 10, KeyCapPolicy::SharedOverflow);
        for left in (0..5).rev() {
            let o = l.check(&ip(1), ONE);
            assert!(o.allowed);
            assert_eq!(o.remaining, left);
        }
        let refused = l.check(&ip(1), ONE);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(12));
        clock.advance(Duration::from_secs(12));
        assert!(l.check(&ip(1), ONE).allowed);
        assert!(!l.check(&ip(1), ONE).allowed);
    }

    #[test]
    fn cost_spends_several_units() {
        let (l, _) = limiter(Quota::per_minute(10), 10, KeyCapPolicy::SharedOverflow);
        let three = NonZeroU32::new(3).unwrap();
        assert!(l.check(&ip(1), three).allowed);
        assert!(l.check(&ip(1), three).allowed);
        assert!(l.check(&ip(1), three).allowed);
        assert!(!l.check(&ip(1), three).allowed);
        assert!(l.check(&ip(1), ONE).allowed);
    }

    #[test]
    fn key_cap_holds_under_a_flood_of_distinct_keys() {
        let (l, _) = limiter(Quota::per_minute(2), 1000, KeyCapPolicy::SharedOverflow);
        let l = Arc::new(l);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..10_000u32 {
                        l.check(&ip(t * 1_000_000 + i), ONE);
                    }
                });
            }
        });
        assert_eq!(l.len(), 1000);
        assert_eq!(l.store.map.len(), 1000);
        // The flood beyond the cap shares one overflow bucket: it is limited as one client.
        assert!(!l.check(&ip(99_999_999), ONE).allowed);
        // A key tracked before the cap keeps its own bucket.
        let (l, _) = limiter(Quota::per_minute(2), 1, KeyCapPolicy::AllowUntracked);
        l.check(&ip(1), ONE);
        for i in 2..100 {
            assert!(l.check(&ip(i), ONE).allowed);
        }
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn key_count_stays_exact_when_keys_arrive_during_a_sweep() {
        // Keys inserted while `evict_idle` runs must not hide its removals: if they did, the
        // counter would creep up until every new client counted as over the cap.
        let (l, clock) = limiter(
            Quota::per_second(1),
            1_000_000,
            KeyCapPolicy::SharedOverflow,
        );
        let l = Arc::new(l);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (l, done) = (&l, &done);
                s.spawn(move || {
                    for i in 0..50_000u32 {
                        l.check(&ip(t * 1_000_000 + i), ONE);
                    }
                    done.store(true, Ordering::Release);
                });
            }
            let (l, clock, done) = (&l, &clock, &done);
            s.spawn(move || {
                for _ in 0..10_000 {
                    clock.advance(Duration::from_secs(2));
                    l.evict_idle();
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
        });
        assert_eq!(l.len(), l.store.map.len());
        clock.advance(Duration::from_secs(2));
        l.evict_idle();
        assert_eq!(l.len(), 0);
        assert_eq!(l.store.map.len(), 0);
    }

    #[test]
    fn idle_keys_are_evicted() {
        let (l, clock) = limiter(Quota::per_minute(6), 100, KeyCapPolicy::SharedOverflow);
        for i in 0..50 {
            l.check(&ip(i), ONE);
        }
        clock.advance(Duration::from_secs(5));
        l.check(&ip(1), ONE);
        l.check(&ip(1), ONE);
        assert_eq!(l.evict_idle(), 0, "nothing is idle yet");
        clock.advance(Duration::from_secs(6));
        // One unit (10 s) has come back for the 49 others; key 1 still owes time.
        assert_eq!(l.evict_idle(), 49);
        assert_eq!(l.len(), 1);
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.evict_idle(), 1);
        assert_eq!(l.len(), 0);
    }
}
