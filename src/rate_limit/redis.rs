//! Redis: one limit shared by every instance, and the login guard's counters, through the
//! shared [`RedisStore`] connection.
//!
//! Rate limits run GCRA in one Lua script per request (one round trip; `EVALSHA`, loaded on
//! first use) that reads the **Redis server's clock** (`TIME`), so instances with skewed clocks
//! agree. Every quota of a limit is checked in the same script and charged only if all allow.
//! Keys expire (`PX`) when their quota has fully come back, so idle keys cost nothing.
//! Connections go through the redis crate's `ConnectionManager`, which reconnects on its own.

use std::time::Duration;

use axum::response::IntoResponse;
use http::header::RETRY_AFTER;
use http::request::Parts;
use http::HeaderValue;
use redis::Script;
use serde::Deserialize;

use super::key::LimitKey;
use super::layer::{Decision, Shared, Tier, Verdict};
use super::login_guard::{Backoff, Charge, Receipt};
use super::quota::Quota;
use crate::audit::{SecurityEvent, SecurityEventKind};
use crate::redis::RedisStore;
use crate::rejection::{Rejection, RejectionKind};

/// What a Redis-backed limit does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureMode {
    /// Refuse with 503 problem+json (`Retry-After: 1`): the limit is never bypassed.
    Closed,
    /// Allow the request and emit a `sys_dependency_fail` event: availability first.
    Open,
    /// Fall back to this instance's in-memory limiter (default): limits stay per instance
    /// until Redis is back.
    #[default]
    Local,
}

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

#[derive(Clone)]
pub(crate) struct RedisBackendConfig {
    pub(crate) store: RedisStore,
    pub(crate) on_failure: FailureMode,
}

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

pub(crate) async fn decide(
    shared: &Shared,
    cfg: &RedisBackendConfig,
    parts: &Parts,
    tier: &Tier,
    key: &LimitKey,
) -> Verdict {
    let base = limit_key(cfg.store.key_prefix(), &shared.name, key);
    let mut invocation = script().prepare_invoke();
    invocation.arg(shared.cost.get());
    for quota in &tier.redis {
        invocation.key(format!("{base}:{}", quota.key));
        invocation.arg(quota.emission_us);
        invocation.arg(quota.burst);
    }
    match cfg
        .store
        .run::<(i64, i64, i64, i64, i64)>(&invocation)
        .await
    {
        Ok((allowed, index, remaining, retry, reset)) => {
            let index = usize::try_from(index)
                .unwrap_or(0)
                .min(tier.quotas.len() - 1);
            let d = Decision {
                allowed: allowed == 1,
                index,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                reset: Duration::from_micros(reset.max(0) as u64),
                retry_after: Duration::from_micros(retry.max(0) as u64),
            };
            shared.verdict(parts, tier, d)
        }
        Err(()) => {
            SecurityEvent::for_parts(SecurityEventKind::SysDependencyFail, parts)
                .reason("redis_unavailable")
                .field("limit", shared.name.to_string())
                .field(
                    "failure_mode",
                    format!("{:?}", cfg.on_failure).to_lowercase(),
                )
                .emit();
            match cfg.on_failure {
                FailureMode::Closed => Verdict::Refuse(
                    Rejection::new(RejectionKind::ServiceUnavailable)
                        .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
                        .into_response(),
                ),
                FailureMode::Open => Verdict::Pass(None),
                FailureMode::Local => {
                    let d = shared.decide_memory(tier, key);
                    shared.verdict(parts, tier, d)
                }
            }
        }
    }
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

/// The login guard's state in Redis; on failure the guard falls back to memory.
///
/// Every script touches the two keys of one account or one IP, which share a hash tag, so
/// the guard works on Redis Cluster.
#[derive(Clone)]
pub(crate) struct RedisGuard {
    store: RedisStore,
    account: Backoff,
    ip: Backoff,
}

impl RedisGuard {
    pub(crate) fn new(store: RedisStore, account: Backoff, ip: Backoff) -> Self {
        Self { store, account, ip }
    }

    fn keys(&self, key: &LimitKey, account: bool) -> (String, String) {
        let scope = if account { "a" } else { "i" };
        let base = format!("{}:lg:{{{scope}|{key}}}", self.store.key_prefix());
        (format!("{base}:n"), format!("{base}:lock"))
    }

    fn failed(&self, event: &SecurityEvent) {
        event
            .clone()
            .reason("redis_unavailable")
            .field("use", "login_guard")
            .emit();
    }

    /// `None` when Redis failed (use memory), else the remaining lock.
    pub(crate) async fn locked(
        &self,
        key: &LimitKey,
        account: bool,
        event: &SecurityEvent,
    ) -> Option<Option<Duration>> {
        let (_, lock) = self.keys(key, account);
        match self.store.cmd::<i64>(redis::cmd("PTTL").arg(lock)).await {
            Ok(ms) if ms > 0 => Some(Some(Duration::from_millis(ms as u64))),
            Ok(_) => Some(None),
            Err(()) => {
                self.failed(event);
                None
            }
        }
    }

    /// Charges one attempt to `key` (see [`LOGIN_CHARGE`]): `None` when Redis failed (use
    /// memory), else the charge or the remaining lock.
    pub(crate) async fn charge(
        &self,
        key: &LimitKey,
        account: bool,
        event: &SecurityEvent,
    ) -> Option<Result<Charge, Duration>> {
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
        match self.store.run::<(i64, i64, String)>(&inv).await {
            Ok((1, lock_ms, token)) => Some(Ok(Charge {
                lock: Duration::from_millis(lock_ms.max(0) as u64),
                receipt: Receipt::Redis { token },
            })),
            Ok((_, remaining, _)) => Some(Err(Duration::from_millis(remaining.max(1) as u64))),
            Err(()) => {
                self.failed(event);
                None
            }
        }
    }

    /// Takes back a charge made by [`charge`](Self::charge) (see [`LOGIN_REFUND`]).
    pub(crate) async fn refund(
        &self,
        key: &LimitKey,
        account: bool,
        token: &str,
        event: &SecurityEvent,
    ) {
        let (count, lock) = self.keys(key, account);
        let mut inv = login_refund_script().prepare_invoke();
        inv.key(count).key(lock).arg(token);
        if self.store.run::<i64>(&inv).await.is_err() {
            self.failed(event);
        }
    }

    pub(crate) async fn clear(&self, account: &LimitKey, event: &SecurityEvent) {
        let (n, l) = self.keys(account, true);
        if self
            .store
            .cmd::<i64>(redis::cmd("DEL").arg(n).arg(l))
            .await
            .is_err()
        {
            self.failed(event);
        }
    }
}
