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
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// The `RateLimit` value for the reported policy (written on every allowed request; the
/// text becomes the header's bytes without a copy).
pub(crate) fn limit_value(name: &str, remaining: u32, reset: Duration) -> HeaderValue {
    let text = format!("\"{name}\";r={remaining};t={}", ceil_secs(reset));
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
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

/// The `Retry-After` field for `wait`: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_value(wait: Duration) -> (HeaderName, HeaderValue) {
    (RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)))
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
    fn retry_after_values_are_the_decimal_digits_of_the_rounded_up_seconds() {
        for secs in (1..10_100).chain([86_400, u64::MAX / 2]) {
            let wait = Duration::from_secs(secs) - Duration::from_millis(1);
            assert_eq!(
                retry_after_value(wait).1,
                secs.to_string().as_str(),
                "{secs}"
            );
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
