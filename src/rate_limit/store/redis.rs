//! Redis: one limit shared by every instance, and the login guard's counters, through the
//! shared [`RedisStore`] connection.
//!
//! Rate limits run GCRA in one Lua script per request (one round trip; `EVALSHA`, loaded on
//! first use) that reads the **Redis server's clock** (`TIME`), so instances with skewed clocks
//! agree. Every quota of a limit is checked in the same script and charged only if all allow.
//! Keys expire (`PX`) when their quota has fully come back, so idle keys cost nothing.
//! Connections go through the redis crate's `ConnectionManager`, which reconnects on its own.
//!
//! This store only answers ([`Decision`] or [`StoreError`], a charge or the remaining lock);
//! what a refusal or a failure means for the request is decided by the layers.

use std::num::NonZeroU32;
use std::time::Duration;

use redis::Script;

use super::failures::{Backoff, Charge, Receipt};
use super::{Decision, StoreError};
use crate::rate_limit::key::LimitKey;
use crate::rate_limit::quota::Quota;
use crate::redis::RedisStore;

/// GCRA over every quota of a limit, in microseconds of the server clock. Every quota is
/// checked before any is charged; a refusal reports the refusing quota with the longest wait.
/// KEYS: one per quota. ARGV[1]: cost; then per quota: emission interval (µs), burst.
/// Returns {allowed, quota index, remaining, retry after µs, reset µs}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local tats = {}
local best_i, best_rem, best_reset = 1, -1, 0
local refused_i, refused_wait, refused_reset = 0, -1, 0
for i = 1, #KEYS do
  local T = tonumber(ARGV[2 * i])
  local tau = T * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + T * cost
  local allow_at = new_tat - tau
  if allow_at > now then
    if allow_at - now > refused_wait then
      refused_i, refused_wait, refused_reset = i, allow_at - now, tat - now
    end
  else
    tats[i] = new_tat
    local rem = math.floor((now + tau - new_tat) / T)
    if best_rem < 0 or rem < best_rem then
      best_i, best_rem, best_reset = i, rem, new_tat - now
    end
  end
end
if refused_wait >= 0 then
  return {0, refused_i - 1, 0, refused_wait, refused_reset}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX',
    math.floor((tats[i] - now) / 1000) + 1)
end
return {1, best_i - 1, best_rem, 0, best_reset}
"#;

fn script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(GCRA))
}

/// One quota of a limit as the GCRA script reads it, worked out when the layer is built.
pub(crate) struct RedisQuota {
    /// The quota's part of its Redis key.
    key: String,
    emission_us: u64,
    burst: u32,
}

impl RedisQuota {
    pub(crate) fn new(name: &str, quota: &Quota) -> Self {
        let emission_us = quota.emission_interval().as_micros().max(1) as u64;
        let burst = quota.burst();
        Self {
            // The quota is part of its key: two limits with the same name and window (two
            // unnamed per-IP limits, say a Shield-wide "100/minute" and a route's "2/minute")
            // must not share one GCRA state, which would charge each request to both.
            key: format!("{name}:{emission_us}x{burst}"),
            emission_us,
            burst,
        }
    }
}

fn limit_key(prefix: &str, limit: &str, key: &LimitKey) -> String {
    // One hash tag per client so every quota of a check lives in one cluster slot.
    format!("{prefix}:rl:{{{limit}|{key}}}")
}

/// Checks `cost` units for `key` against every quota of a tier of the limit `limit`, in one
/// script: charges them all, or none.
pub(crate) async fn check(
    store: &RedisStore,
    limit: &str,
    quotas: &[RedisQuota],
    key: &LimitKey,
    cost: NonZeroU32,
) -> Result<Decision, StoreError> {
    let base = limit_key(store.key_prefix(), limit, key);
    let mut invocation = script().prepare_invoke();
    invocation.arg(cost.get());
    for quota in quotas {
        invocation.key(format!("{base}:{}", quota.key));
        invocation.arg(quota.emission_us);
        invocation.arg(quota.burst);
    }
    let (allowed, index, remaining, retry, reset) = store
        .run::<(i64, i64, i64, i64, i64)>(&invocation)
        .await
        .map_err(|()| StoreError)?;
    let quota = usize::try_from(index)
        .unwrap_or(0)
        .min(quotas.len().saturating_sub(1));
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    Ok(if allowed == 1 {
        Decision::Allowed {
            quota,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset: micros(reset),
        }
    } else {
        Decision::Refused {
            quota,
            retry_after: micros(retry),
            reset: micros(reset),
        }
    })
}

/// Charges one login attempt as a failure to one account or one IP, unless it is locked.
/// KEYS: the count and lock keys of that account or IP (one hash tag, so one cluster slot).
/// ARGV: free failures, base ms, max ms, window ms.
/// Returns {1, lock ms started (0 for none), lock token} when charged, or {0, remaining lock
/// ms, ''} when locked (nothing charged). The count lives one window past the end of the lock
/// (at least): a maximum lock equal to the window must not forget the count as it ends.
const LOGIN_CHARGE: &str = r#"
local remaining = redis.call('PTTL', KEYS[2])
if remaining > 0 then
  return {0, remaining, ''}
end
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local n = redis.call('INCR', KEYS[1])
local lock = 0
local token = ''
if n > free then
  lock = math.floor(math.min(base * 2 ^ math.min(n - free - 1, 30), max))
  local t = redis.call('TIME')
  token = t[1] .. '.' .. t[2] .. '.' .. n
  redis.call('SET', KEYS[2], token, 'PX', lock)
end
if redis.call('PTTL', KEYS[1]) < lock + window then
  redis.call('PEXPIRE', KEYS[1], lock + window)
end
return {1, lock, token}
"#;

/// Takes back one charge (a successful login, or an attempt refused on its other key).
/// KEYS: count and lock keys of one account or IP. ARGV: the charge's lock token ('' for
/// none). The lock goes only if it is still the one this charge set; before the charge there
/// was none (a locked key is never charged).
const LOGIN_REFUND: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('DECR', KEYS[1]) <= 0 then
  redis.call('DEL', KEYS[1])
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"#;

fn login_charge_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(LOGIN_CHARGE))
}

fn login_refund_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(LOGIN_REFUND))
}

/// The login guard's state in Redis. When Redis cannot answer, each call says so
/// ([`StoreError`]) and the guard falls back to memory.
///
/// Every script touches the two keys of one account or one IP, which share a hash tag, so
/// the guard works on Redis Cluster.
#[derive(Clone)]
pub(crate) struct RedisFailures {
    store: RedisStore,
    account: Backoff,
    ip: Backoff,
}

impl RedisFailures {
    pub(crate) fn new(store: RedisStore, account: Backoff, ip: Backoff) -> Self {
        Self { store, account, ip }
    }

    fn keys(&self, key: &LimitKey, account: bool) -> (String, String) {
        let scope = if account { "a" } else { "i" };
        let base = format!("{}:lg:{{{scope}|{key}}}", self.store.key_prefix());
        (format!("{base}:n"), format!("{base}:lock"))
    }

    /// The remaining lock of `key`, if any.
    pub(crate) async fn locked(
        &self,
        key: &LimitKey,
        account: bool,
    ) -> Result<Option<Duration>, StoreError> {
        let (_, lock) = self.keys(key, account);
        let ms = self
            .store
            .cmd::<i64>(redis::cmd("PTTL").arg(lock))
            .await
            .map_err(|()| StoreError)?;
        Ok(u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }

    /// Charges one attempt to `key` (see [`LOGIN_CHARGE`]): the charge, or the remaining
    /// lock (nothing charged).
    pub(crate) async fn charge(
        &self,
        key: &LimitKey,
        account: bool,
    ) -> Result<Result<Charge, Duration>, StoreError> {
        let (count, lock) = self.keys(key, account);
        let b = if account { self.account } else { self.ip };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut inv = login_charge_script().prepare_invoke();
        inv.key(count)
            .key(lock)
            .arg(b.free_failures)
            .arg(ms(b.base))
            .arg(ms(b.max))
            .arg(ms(b.window));
        let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        match self.store.run::<(i64, i64, String)>(&inv).await {
            Ok((1, lock_ms, token)) => Ok(Ok(Charge {
                lock: millis(lock_ms),
                receipt: Receipt::Redis { token },
            })),
            Ok((_, remaining, _)) => Ok(Err(millis(remaining.max(1)))),
            Err(()) => Err(StoreError),
        }
    }

    /// Takes back a charge made by [`charge`](Self::charge) (see [`LOGIN_REFUND`]).
    pub(crate) async fn refund(
        &self,
        key: &LimitKey,
        account: bool,
        token: &str,
    ) -> Result<(), StoreError> {
        let (count, lock) = self.keys(key, account);
        let mut inv = login_refund_script().prepare_invoke();
        inv.key(count).key(lock).arg(token);
        self.store
            .run::<i64>(&inv)
            .await
            .map(drop)
            .map_err(|()| StoreError)
    }

    /// Forgets the failures and the lock of `account` (a successful login).
    pub(crate) async fn clear(&self, account: &LimitKey) -> Result<(), StoreError> {
        let (n, l) = self.keys(account, true);
        self.store
            .cmd::<i64>(redis::cmd("DEL").arg(n).arg(l))
            .await
            .map(drop)
            .map_err(|()| StoreError)
    }
}
