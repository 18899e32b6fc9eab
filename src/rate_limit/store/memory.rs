//! The in-memory store: GCRA over a key map with a hard key cap, room made at the cap by
//! forgetting the keys closest to refilled, and idle-key eviction by one background task.
//!
//! # Several quotas, one decision
//!
//! Each tier of a limit keeps one map whose entry holds the GCRA state of every quota of the
//! tier for that key. A request is checked against every quota first and charged to all of
//! them only if all allow, under the entry's lock (the map shard's write lock), as the Redis
//! script does in one `EVAL`: a refused request spends nothing. governor, whose GCRA this is
//! (same emission interval `t`, tolerance `τ = t·(burst − 1)` and arithmetic as its `Gcra`),
//! charges a quota as soon as that quota allows and has no way to look before charging, so the
//! few lines of arithmetic live here, over quanta's clock ([`LimiterClock`]).
//!
//! # The key cap
//!
//! Memory is bounded by `max_keys` per tier; what happens at the cap, and why, is in the
//! `rate_limit` module docs ("Memory"). [`Store::make_room`] implements the default policy.

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::Notify;

use super::Decision;
use crate::rate_limit::key::LimitKey;
use crate::rate_limit::quota::Quota;

/// Default maximum number of keys one in-memory limiter tracks.
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default interval of the idle-key eviction task.
pub(crate) const DEFAULT_EVICTION_INTERVAL: Duration = Duration::from_secs(60);

/// At the key cap, room is made for this fraction of the cap at once (at least one key).
const ROOM_FRACTION: usize = 16;
/// How often a new key may find its room taken by concurrent new keys before it falls back to
/// the shared overflow bucket.
const ROOM_ATTEMPTS: usize = 3;

/// What an in-memory limiter does with a new key once it tracks `max_keys` keys.
///
/// Whatever the policy, memory stays bounded at `max_keys` keys per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyCapPolicy {
    /// Make room (default): forget the keys closest to refilled, first those whose quotas have
    /// fully come back (nothing is lost), then those that owe the least time, and give the new
    /// key a fresh bucket of its own. A flood of new keys pushes out its own keys first, not
    /// the bucket of a client it has limited (see the
    /// [module docs](crate::rate_limit#memory): an attacker must spend close to the whole
    /// burst on each of `max_keys` keys to reset a bucket).
    #[default]
    Evict,
    /// New keys share one overflow bucket with the same quotas: a flood of new addresses is
    /// limited as one client, known clients keep their own buckets, but during the flood every
    /// new client shares the flood's bucket and is refused with it.
    SharedOverflow,
    /// New keys are not tracked and are allowed (fail open): availability over strictness.
    AllowUntracked,
}

/// The clock of an in-memory limiter (and of the login guard): nanoseconds since it was
/// built.
///
/// quanta's clock: the CPU's invariant time-stamp counter, scaled to nanoseconds against the
/// OS monotonic clock, or that clock itself when the CPU has no usable counter. Read on every
/// check: about 10 ns here, against 27 ns for `Instant::elapsed` on the same VM. Tests drive
/// it by hand with quanta's mock clock (`ManualClock`).
#[derive(Clone)]
pub(crate) struct LimiterClock {
    clock: quanta::Clock,
    start: u64,
}

impl LimiterClock {
    /// A monotonic clock reading zero now.
    pub(crate) fn monotonic() -> Self {
        Self::of(quanta::Clock::new())
    }

    fn of(clock: quanta::Clock) -> Self {
        let start = clock.raw();
        Self { clock, start }
    }

    /// Nanoseconds since the clock was made.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimiterClock")
    }
}

/// A clock for tests, advanced by hand (quanta's mock clock).
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct ManualClock {
    clock: quanta::Clock,
    mock: Arc<quanta::Mock>,
}

#[cfg(test)]
impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock")
            .field(&self.mock.value())
            .finish()
    }
}

#[cfg(test)]
impl Default for ManualClock {
    fn default() -> Self {
        let (clock, mock) = quanta::Clock::mock();
        Self { clock, mock }
    }
}

#[cfg(test)]
impl ManualClock {
    /// Moves the clock forward by `by`.
    pub(crate) fn advance(&self, by: Duration) {
        self.mock.increment(by);
    }

    /// A limiter clock reading zero now and driven by this clock.
    pub(crate) fn limiter_clock(&self) -> LimiterClock {
        LimiterClock::of(self.clock.clone())
    }
}

/// One quota's GCRA parameters, in nanoseconds (governor's `Gcra`): one unit comes back every
/// `t`, and `tau = t · (burst − 1)` is how far ahead of now the state may run.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    t: u64,
    tau: u64,
    burst: u32,
    period: Duration,
}

impl Gcra {
    fn new(quota: &Quota) -> Self {
        let t = u64::try_from(quota.emission_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            t,
            tau: t.saturating_mul(u64::from(quota.burst().saturating_sub(1))),
            burst: quota.burst(),
            period: quota.period(),
        }
    }
}

/// GCRA over every quota at `now`: `tats` are the key's theoretical arrival times (0 = never
/// charged). They are charged `cost` units each only if every quota allows; a refusal leaves
/// them untouched.
fn decide(gcras: &[Gcra], tats: &mut [u64], now: u64, cost: u32) -> Decision {
    let extra = u64::from(cost.saturating_sub(1));
    let mut refused: Option<Decision> = None;
    for (index, (g, &tat)) in gcras.iter().zip(tats.iter()).enumerate() {
        let additional = g.t.saturating_mul(extra);
        let wait = if additional > g.tau {
            // More than the burst can never pass (the builders refuse such a cost).
            Some((g.period, g.period))
        } else {
            let earliest = tat
                .max(now)
                .saturating_add(additional)
                .saturating_sub(g.tau);
            (now < earliest).then(|| {
                let wait = earliest - now;
                let reset = Duration::from_nanos(wait.max(g.t).saturating_add(additional));
                (Duration::from_nanos(wait), reset)
            })
        };
        if let Some((retry_after, reset)) = wait {
            if refused.is_none_or(|r| retry_after > r.retry_after()) {
                refused = Some(Decision::Refused {
                    quota: index,
                    retry_after,
                    reset,
                });
            }
        }
    }
    if let Some(refused) = refused {
        return refused;
    }
    let mut best: Option<Decision> = None;
    for (index, (g, tat)) in gcras.iter().zip(tats.iter_mut()).enumerate() {
        let next = (*tat)
            .max(now)
            .saturating_add(g.t)
            .saturating_add(g.t.saturating_mul(extra));
        *tat = next;
        let capacity = g.tau.saturating_add(g.t);
        let left = now
            .saturating_add(capacity)
            .saturating_sub(next)
            .min(capacity)
            / g.t;
        let remaining = u32::try_from(left).unwrap_or(u32::MAX);
        if best.is_none_or(|b| remaining < b.remaining()) {
            let used = g.burst.saturating_sub(remaining);
            best = Some(Decision::Allowed {
                quota: index,
                remaining,
                reset: Duration::from_nanos(g.t.saturating_mul(u64::from(used))),
            });
        }
    }
    best.unwrap_or(Decision::Allowed {
        quota: 0,
        remaining: 0,
        reset: Duration::ZERO,
    })
}

/// The GCRA states of one key: a theoretical arrival time per quota of its tier, in
/// nanoseconds of the limiter's clock (0 = never charged). A tier of one quota keeps a bare
/// `u64`, so the common single-quota key costs 8 bytes of state.
pub(crate) trait Tats: Send + Sync + 'static {
    fn fresh(quotas: usize) -> Self;
    fn tats(&self) -> &[u64];
    fn tats_mut(&mut self) -> &mut [u64];

    /// When every quota of the key will have fully come back.
    fn refilled_at(&self) -> u64 {
        self.tats().iter().copied().max().unwrap_or(0)
    }
}

impl Tats for u64 {
    fn fresh(_: usize) -> Self {
        0
    }
    fn tats(&self) -> &[u64] {
        std::slice::from_ref(self)
    }
    fn tats_mut(&mut self) -> &mut [u64] {
        std::slice::from_mut(self)
    }
}

impl Tats for Box<[u64]> {
    fn fresh(quotas: usize) -> Self {
        vec![0; quotas].into_boxed_slice()
    }
    fn tats(&self) -> &[u64] {
        self
    }
    fn tats_mut(&mut self) -> &mut [u64] {
        self
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key map of one tier, capped at `max_keys` entries.
struct Store<K, V> {
    /// std SipHash, so chosen keys cannot collide on purpose.
    map: DashMap<K, V>,
    /// The map's length, counted by reservations so that concurrent inserts never pass the
    /// cap.
    len: AtomicUsize,
    max_keys: usize,
    policy: KeyCapPolicy,
    quotas: usize,
    overflow: Mutex<V>,
    full_warned: AtomicBool,
    wake: Arc<Notify>,
    /// One request at a time makes room.
    making_room: Mutex<()>,
}

impl<K: Hash + Eq + Clone, V: Tats> Store<K, V> {
    fn new(quotas: usize, max_keys: usize, policy: KeyCapPolicy, wake: Arc<Notify>) -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max_keys,
            policy,
            quotas,
            overflow: Mutex::new(V::fresh(quotas)),
            full_warned: AtomicBool::new(false),
            wake,
            making_room: Mutex::new(()),
        }
    }

    /// Runs `f` on the states of `key`, alone (under the map shard's write lock): a new key
    /// within the cap gets fresh states, at the cap the policy decides.
    fn with<R>(&self, key: &K, now: u64, f: impl FnOnce(&mut [u64]) -> R) -> R {
        if let Some(mut states) = self.map.get_mut(key) {
            return f(states.tats_mut());
        }
        for _ in 0..ROOM_ATTEMPTS {
            // Reserve a slot first so that concurrent inserts never pass the cap.
            let reserved = self.reserve() || {
                self.warn_full();
                match self.policy {
                    KeyCapPolicy::Evict => self.make_room(now),
                    KeyCapPolicy::SharedOverflow => {
                        self.wake.notify_one();
                        return f(lock(&self.overflow).tats_mut());
                    }
                    KeyCapPolicy::AllowUntracked => {
                        self.wake.notify_one();
                        return f(V::fresh(self.quotas).tats_mut());
                    }
                }
            };
            if reserved {
                let entry = self.map.entry(key.clone());
                if matches!(entry, dashmap::Entry::Occupied(_)) {
                    // Another request inserted it meanwhile: give the slot back.
                    self.len.fetch_sub(1, Ordering::AcqRel);
                }
                let mut states = entry.or_insert_with(|| V::fresh(self.quotas));
                return f(states.tats_mut());
            }
        }
        // No key could be forgotten, again and again (every key was charged between the scan
        // and the removal): the shared overflow bucket, which a flood cannot multiply.
        f(lock(&self.overflow).tats_mut())
    }

    /// Reserves a slot for a new key, if the map is below the cap.
    fn reserve(&self) -> bool {
        if self.len.fetch_add(1, Ordering::AcqRel) < self.max_keys {
            return true;
        }
        self.len.fetch_sub(1, Ordering::AcqRel);
        false
    }

    #[cold]
    fn warn_full(&self) {
        if !self.full_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "axum_shield::rate_limit",
                max_keys = self.max_keys,
                policy = ?self.policy,
                "rate limiter key cap reached"
            );
        }
    }

    /// Reserves a slot for a new key at the cap, making room: forgets at least a sixteenth of
    /// the cap (at least one key), every key whose quotas have all come back, then the keys
    /// that owe the least time (`rate_limit` module docs, "Memory"). One scan of the map, paid
    /// once per that many new keys. One of the freed slots is the caller's, so concurrent new
    /// keys cannot take all of them; `false` only when no key could be forgotten.
    #[cold]
    fn make_room(&self, now: u64) -> bool {
        let _alone = lock(&self.making_room);
        if self.reserve() {
            return true; // room was made meanwhile
        }
        let mut owed: Vec<u64> = self
            .map
            .iter()
            .map(|entry| entry.value().refilled_at().saturating_sub(now))
            .collect();
        if owed.is_empty() {
            return false;
        }
        let room = (self.max_keys / ROOM_FRACTION).clamp(1, owed.len());
        let (_, &mut threshold, _) = owed.select_nth_unstable(room - 1);
        let below = owed.iter().filter(|&&o| o < threshold).count();
        let mut ties = room - below;
        drop(owed);
        let mut removed = 0;
        self.map.retain(|_, states| {
            let owes = states.refilled_at().saturating_sub(now);
            let forget = owes == 0 || owes < threshold || (owes == threshold && ties > 0);
            if forget {
                ties = ties.saturating_sub(usize::from(owes == threshold && owes > 0));
                removed += 1;
            }
            !forget
        });
        if removed == 0 {
            return false;
        }
        // Counted inside the scan, as in `sweep`; one freed slot stays reserved for the caller.
        self.len.fetch_sub(removed - 1, Ordering::AcqRel);
        true
    }

    fn evict_idle(&self, now: u64) -> usize {
        let removed = sweep(&self.map, &self.len, |states| states.refilled_at() > now);
        if removed > 0 {
            self.map.shrink_to_fit();
            self.full_warned.store(false, Ordering::Relaxed);
        }
        removed
    }
}

/// A tier's key map: a bare state per key for one quota, a boxed slice for several.
enum States<K> {
    One(Store<K, u64>),
    Many(Store<K, Box<[u64]>>),
}

/// Every quota of one tier over many keys, in memory.
pub(crate) struct MemoryLimiter<K: Hash + Eq + Clone = LimitKey> {
    states: States<K>,
    gcras: Box<[Gcra]>,
    quotas: Vec<Quota>,
    max_keys: usize,
    clock: LimiterClock,
}

impl<K: Hash + Eq + Clone> fmt::Debug for MemoryLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("quotas", &self.quotas)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> MemoryLimiter<K> {
    pub(crate) fn new(
        quotas: &[Quota],
        max_keys: usize,
        policy: KeyCapPolicy,
        clock: LimiterClock,
        wake: Arc<Notify>,
    ) -> Self {
        let states = if quotas.len() == 1 {
            States::One(Store::new(1, max_keys, policy, wake))
        } else {
            States::Many(Store::new(quotas.len(), max_keys, policy, wake))
        };
        Self {
            states,
            gcras: quotas.iter().map(Gcra::new).collect(),
            quotas: quotas.to_vec(),
            max_keys,
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Checks `cost` units for `key` against every quota; charges them all, or none.
    #[inline]
    pub(crate) fn check(&self, key: &K, cost: NonZeroU32) -> Decision {
        let now = self.now();
        let decide = |tats: &mut [u64]| decide(&self.gcras, tats, now, cost.get());
        match &self.states {
            States::One(store) => store.with(key, now, decide),
            States::Many(store) => store.with(key, now, decide),
        }
    }

    /// Number of keys tracked.
    pub(crate) fn len(&self) -> usize {
        match &self.states {
            States::One(store) => store.len.load(Ordering::Acquire),
            States::Many(store) => store.len.load(Ordering::Acquire),
        }
    }

    /// Forgets every key whose quotas have all fully come back (indistinguishable from a new
    /// key).
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.now();
        match &self.states {
            States::One(store) => store.evict_idle(now),
            States::Many(store) => store.evict_idle(now),
        }
    }

    #[cfg(test)]
    fn map_len(&self) -> usize {
        match &self.states {
            States::One(store) => store.map.len(),
            States::Many(store) => store.map.len(),
        }
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
    ) -> (MemoryLimiter, ManualClock) {
        let clock = ManualClock::default();
        limiter_of(&[quota], max_keys, policy, clock)
    }

    fn limiter_of(
        quotas: &[Quota],
        max_keys: usize,
        policy: KeyCapPolicy,
        clock: ManualClock,
    ) -> (MemoryLimiter, ManualClock) {
        let l = MemoryLimiter::new(
            quotas,
            max_keys,
            policy,
            clock.limiter_clock(),
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
                        if l.check(&ip(1), ONE).is_allowed() {
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
            assert!(o.is_allowed());
            assert_eq!(o.remaining(), left);
        }
        let refused = l.check(&ip(1), ONE);
        assert!(!refused.is_allowed());
        assert_eq!(refused.retry_after(), Duration::from_secs(12));
        clock.advance(Duration::from_secs(12));
        assert!(l.check(&ip(1), ONE).is_allowed());
        assert!(!l.check(&ip(1), ONE).is_allowed());
    }

    #[test]
    fn cost_spends_several_units() {
        let (l, _) = limiter(Quota::per_minute(10), 10, KeyCapPolicy::SharedOverflow);
        let three = NonZeroU32::new(3).unwrap();
        assert!(l.check(&ip(1), three).is_allowed());
        assert!(l.check(&ip(1), three).is_allowed());
        assert!(l.check(&ip(1), three).is_allowed());
        assert!(!l.check(&ip(1), three).is_allowed());
        assert!(l.check(&ip(1), ONE).is_allowed());
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
        assert_eq!(l.map_len(), 1000);
        // The flood beyond the cap shares one overflow bucket: it is limited as one client.
        assert!(!l.check(&ip(99_999_999), ONE).is_allowed());
        // Making room instead: the cap holds just as well.
        let (l, _) = limiter(Quota::per_minute(2), 1000, KeyCapPolicy::Evict);
        let l = Arc::new(l);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..10_000u32 {
                        assert!(l.check(&ip(t * 1_000_000 + i), ONE).is_allowed());
                    }
                });
            }
        });
        assert!(l.len() <= 1000, "{}", l.len());
        assert_eq!(l.len(), l.map_len());
        // A key tracked before the cap keeps its own bucket.
        let (l, _) = limiter(Quota::per_minute(2), 1, KeyCapPolicy::AllowUntracked);
        l.check(&ip(1), ONE);
        for i in 2..100 {
            assert!(l.check(&ip(i), ONE).is_allowed());
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
        assert_eq!(l.len(), l.map_len());
        clock.advance(Duration::from_secs(2));
        l.evict_idle();
        assert_eq!(l.len(), 0);
        assert_eq!(l.map_len(), 0);
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
    /// Issue 16, item 7, on the store itself: "10/day; 1/minute", one request served and nine
    /// refused; 61 s later the client is served again, having spent two of the day's ten.
    #[test]
    fn refused_requests_charge_none_of_the_quotas() {
        let clock = ManualClock::default();
        let quotas = [Quota::per_day(10), Quota::per_minute(1)];
        let (l, clock) = limiter_of(&quotas, 10, KeyCapPolicy::Evict, clock);
        assert!(l.check(&ip(1), ONE).is_allowed());
        for _ in 0..9 {
            let refused = l.check(&ip(1), ONE);
            assert!(!refused.is_allowed());
            assert_eq!(refused.quota(), 1, "the minute refuses");
            assert_eq!(refused.retry_after(), Duration::from_secs(60));
        }
        clock.advance(Duration::from_secs(61));
        let served = l.check(&ip(1), ONE);
        assert!(served.is_allowed(), "{served:?}");
        // Eight of the day's ten remain, but the minute's 0 is the fewest.
        assert_eq!((served.quota(), served.remaining()), (1, 0));
        for _ in 0..8 {
            clock.advance(Duration::from_secs(60));
            assert!(l.check(&ip(1), ONE).is_allowed());
        }
        clock.advance(Duration::from_secs(60));
        let refused = l.check(&ip(1), ONE);
        assert!(!refused.is_allowed());
        assert_eq!(refused.quota(), 0, "now the day refuses");
    }

    #[test]
    fn several_quotas_stay_exact_under_concurrency() {
        let clock = ManualClock::default();
        let quotas = [Quota::per_minute(40), Quota::per_hour(25)];
        let (l, _clock) = limiter_of(&quotas, 10, KeyCapPolicy::Evict, clock);
        let allowed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if l.check(&ip(1), ONE).is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 25);
    }

    /// Issue 16, item 13, on the store: under a flood of fresh keys at the cap, every new key
    /// gets a fresh bucket, the map never passes the cap, and the keys the flood pushes out
    /// are its own, not the bucket of a client that was refused.
    #[test]
    fn flood_of_fresh_keys_at_the_cap_cannot_reset_a_limited_client() {
        let (l, clock) = limiter(Quota::per_minute(2), 64, KeyCapPolicy::Evict);
        let limited = ip(7);
        assert!(l.check(&limited, ONE).is_allowed());
        assert!(l.check(&limited, ONE).is_allowed());
        assert!(!l.check(&limited, ONE).is_allowed());
        for i in 0..20_000u32 {
            if i % 100 == 0 {
                clock.advance(Duration::from_millis(100));
            }
            let fresh = ip(1_000_000 + i);
            let first = l.check(&fresh, ONE);
            assert!(
                first.is_allowed() && first.remaining() == 1,
                "{i}: {first:?}"
            );
            assert!(l.len() <= 64 && l.map_len() <= 64);
        }
        assert!(!l.check(&limited, ONE).is_allowed(), "still limited");
    }

    #[test]
    fn room_is_made_first_from_keys_that_have_fully_come_back() {
        let (l, clock) = limiter(Quota::per_minute(1), 4, KeyCapPolicy::Evict);
        assert!(l.check(&ip(1), ONE).is_allowed());
        clock.advance(Duration::from_secs(60));
        // Key 1 is fully back; keys 2 to 4 owe almost a minute.
        for i in 2..=4 {
            assert!(l.check(&ip(i), ONE).is_allowed());
        }
        assert!(l.check(&ip(5), ONE).is_allowed());
        assert_eq!(l.len(), 4);
        for i in 2..=5 {
            assert!(!l.check(&ip(i), ONE).is_allowed(), "key {i} was kept");
        }
    }
}
