//! Where limits and login failures are counted: in memory (always) and in Redis (feature
//! `redis`, shared by every instance).
//!
//! Stores count and answer; they never decide what an answer means for the request. A rate
//! limit's stores answer in one type, [`Decision`] (a Redis store also with [`StoreError`]
//! when it cannot answer in time); the login guard's answer in [`failures::Charge`] or the
//! remaining lock. The layers (`RateLimitLayer`, `LoginGuardLayer`) alone apply the failure
//! mode and render 429s and 503s. Nothing here imports a layer.

use std::time::Duration;

pub(crate) mod failures;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// A store's answer for one request against every quota of a limit (its tier), about the
/// quota it reports: every quota is checked before any is charged, so a refused request
/// spends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Every quota allows; the request has been charged. `quota` is the index of the quota
    /// with the fewest units left (the first of equals).
    Allowed {
        quota: usize,
        /// Units left after this request.
        remaining: u32,
        /// Time until the reported quota is fully back.
        reset: Duration,
    },
    /// A quota refuses; nothing has been charged. `quota` is the index of the refusing quota
    /// with the longest wait.
    Refused {
        quota: usize,
        /// Time until every quota would allow the request.
        retry_after: Duration,
        /// Time until the reported quota is fully back.
        reset: Duration,
    },
}

impl Decision {
    pub(crate) fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// The index of the reported quota.
    pub(crate) fn quota(&self) -> usize {
        match *self {
            Self::Allowed { quota, .. } | Self::Refused { quota, .. } => quota,
        }
    }

    /// Units left (0 when refused).
    pub(crate) fn remaining(&self) -> u32 {
        match *self {
            Self::Allowed { remaining, .. } => remaining,
            Self::Refused { .. } => 0,
        }
    }

    /// Time until the reported quota is fully back.
    pub(crate) fn reset(&self) -> Duration {
        match *self {
            Self::Allowed { reset, .. } | Self::Refused { reset, .. } => reset,
        }
    }

    /// Time until the request would be allowed (zero when allowed).
    pub(crate) fn retry_after(&self) -> Duration {
        match *self {
            Self::Allowed { .. } => Duration::ZERO,
            Self::Refused { retry_after, .. } => retry_after,
        }
    }
}

/// A store could not answer: Redis was unreachable, failed, or slower than its timeout. What
/// happens then is the layer's failure mode. (The in-memory store always answers.)
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreError;
