//! The rate-limit response fields.
//!
//! - `RateLimit-Policy` and `RateLimit` as in the IETF draft
//!   [draft-ietf-httpapi-ratelimit-headers](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/)
//!   (revisions 08–11): both are RFC 9651 structured-field Lists of Items whose bare item is
//!   the policy name as a String, with parameters `q` (quota units), `w` (window in seconds)
//!   on the policy, and `r` (remaining units), `t` (seconds until the quota is back) on the
//!   current limit:
//!   `RateLimit-Policy: "ip-60s";q=5;w=60, "ip-86400s";q=100;w=86400` and
//!   `RateLimit: "ip-60s";r=0;t=12`.
//! - `Retry-After` (RFC 9110 §10.2.3) in delay-seconds, rounded **up** and at least 1, so a
//!   client that obeys it is never refused again for retrying too early.
//! - Optionally the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
//!   (reset as delta seconds) that older clients read.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::HeaderMap;

use super::quota::{ceil_secs, Quota};

/// `RateLimit-Policy`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Legacy `X-RateLimit-Limit`.
pub(crate) const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// Legacy `X-RateLimit-Remaining`.
pub(crate) const X_RATELIMIT_REMAINING: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining");
/// Legacy `X-RateLimit-Reset`.
pub(crate) const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The policy name of quota `index` of a limiter named `name`: `"{name}-{window}s"`, made unique.
pub(crate) fn policy_names(name: &str, quotas: &[Quota]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(quotas.len());
    for q in quotas {
        let mut candidate = format!("{name}-{}s", q.window_secs());
        let mut n = 2;
        while names.contains(&candidate) {
            candidate = format!("{name}-{}s-{n}", q.window_secs());
            n += 1;
        }
        names.push(candidate);
    }
    names
}

/// Whether `name` can be a structured-field String without escapes.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The `RateLimit-Policy` value for `quotas` named `names` (computed once at build time).
pub(crate) fn policy_value(names: &[String], quotas: &[Quota]) -> HeaderValue {
    let mut out = String::new();
    for (i, (name, q)) in names.iter().zip(quotas).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{name}\";q={};w={}", q.count(), q.window_secs());
    }
    // Copied into every response with the fields on: kept as a `'static` text.
    HeaderValue::from_str(&out)
        .map(crate::interned::header_value)
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// The `RateLimit` value for the reported policy. Written into a stack buffer and copied once
/// into the header's bytes: this runs on every allowed request.
pub(crate) fn limit_value(name: &str, remaining: u32, reset: Duration) -> HeaderValue {
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let parts: [&[u8]; 6] = [
        b"\"",
        name.as_bytes(),
        b"\";r=",
        r.format(remaining).as_bytes(),
        b";t=",
        t.format(ceil_secs(reset)).as_bytes(),
    ];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    // Policy names are at most 64 + 1 + 64 characters plus a window (`is_safe_name`), so the
    // stack buffer always fits in practice; the heap keeps longer ones correct anyway.
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    HeaderValue::from_bytes(buf).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// `Retry-After` in whole seconds, rounded up, never below 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// The fields to add to one response.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitFields {
    pub(crate) policy: HeaderValue,
    pub(crate) limit: HeaderValue,
    pub(crate) legacy: Option<(u32, u32, u64)>,
}

impl RateLimitFields {
    /// Adds the fields. `RateLimit-Policy` and `RateLimit` are structured-field Lists, so
    /// when an inner limit (e.g. a route's) already set them, this limit's members are added
    /// as further field lines (RFC 9110 §5.3) rather than replacing the inner, more specific
    /// ones; the single-valued legacy fields are left to the inner limit.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy);
        headers.append(RATELIMIT, self.limit);
        if let Some((limit, remaining, reset)) = self.legacy {
            if !headers.contains_key(&X_RATELIMIT_LIMIT) {
                headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
                headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
                headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
            }
        }
    }
}

pub(crate) fn retry_after_value(wait: Duration) -> (HeaderName, HeaderValue) {
    (RETRY_AFTER, seconds_value(retry_after_secs(wait)))
}

/// `secs` in decimal as a header value. Below 10 000 (2 h 46 min) it is a slice of one
/// `'static` text of 38 890 bytes, made on first use, so the refusals of a flood neither
/// allocate nor share a reference count; larger values are written out.
fn seconds_value(secs: u64) -> HeaderValue {
    const KEPT: u64 = 10_000;
    // "0123…99989999": every number below `KEPT`, one after the other.
    static TEXT: OnceLock<String> = OnceLock::new();
    if secs < KEPT {
        let text = TEXT.get_or_init(|| (0..KEPT).map(|n| n.to_string()).collect());
        // The first number of each width starts after all the shorter ones: 10 one-digit,
        // 90 two-digit and 900 three-digit numbers.
        let (start, width) = match secs {
            0..=9 => (secs, 1),
            10..=99 => (10 + (secs - 10) * 2, 2),
            100..=999 => (190 + (secs - 100) * 3, 3),
            _ => (2890 + (secs - 1000) * 4, 4),
        };
        let (start, end) = (start as usize, (start + width) as usize);
        if let Some(digits) = text.get(start..end) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_value_is_the_rounded_seconds() {
        assert_eq!(retry_after_value(Duration::from_millis(11_200)).1, "12");
        assert_eq!(retry_after_value(Duration::ZERO).1, "1");
        assert_eq!(retry_after_value(Duration::from_secs(3600)).1, "3600");
    }

    #[test]
    fn seconds_values_are_the_decimal_digits() {
        for secs in (0..10_100).chain([86_400, u64::MAX]) {
            assert_eq!(seconds_value(secs), secs.to_string().as_str(), "{secs}");
        }
    }

    #[test]
    fn retry_after_is_never_zero_and_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(12)), 12);
    }

    #[test]
    fn fields_use_the_draft_structured_syntax() {
        let quotas = [Quota::per_minute(5), Quota::per_day(100)];
        let names = policy_names("ip", &quotas);
        assert_eq!(
            policy_value(&names, &quotas),
            "\"ip-60s\";q=5;w=60, \"ip-86400s\";q=100;w=86400"
        );
        assert_eq!(
            limit_value("ip-60s", 0, Duration::from_millis(11_200)),
            "\"ip-60s\";r=0;t=12"
        );
        assert_eq!(
            limit_value("x", u32::MAX, Duration::ZERO),
            "\"x\";r=4294967295;t=0"
        );
        let same = [Quota::per_minute(5), Quota::per_minute(50)];
        assert_eq!(policy_names("x", &same), ["x-60s", "x-60s-2"]);
    }
}
