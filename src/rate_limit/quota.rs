//! Quotas: "N requests per period", typed or parsed from strings at build time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ConfigError;

/// A limit of `count` requests per `period`, with an optional burst.
///
/// The quota is enforced with GCRA (the generic cell rate algorithm): one unit of the quota
/// comes back every `period / count`, and up to `burst` units (default: `count`) may be spent at
/// once. `Quota::per_second(10)` therefore means ten requests per second — not one request every
/// ten seconds.
///
/// ```
/// use std::time::Duration;
/// use axum_shield::rate_limit::Quota;
///
/// let login = Quota::per_minute(5);
/// assert_eq!(login.count(), 5);
/// assert_eq!(login.period(), Duration::from_secs(60));
///
/// let parsed: Quota = "10 per 30 seconds".parse()?;
/// assert_eq!(parsed, Quota::new(10, Duration::from_secs(30))?);
///
/// // 100 per hour, but never more than 10 at once.
/// let smooth = Quota::per_hour(100).with_burst(10)?;
/// assert_eq!(smooth.burst(), 10);
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Zero only from the infallible constructors (`Quota::per_minute(0)`): such a quota is a
    /// configuration error when a limit is built.
    count: u32,
    period: Duration,
    /// At least 1 unless `count` is 0.
    burst: u32,
}

/// The longest a quota may take to refill its whole burst (`period / count · burst`): ten
/// years. Longer ones are configuration mistakes, and the GCRA state counts nanoseconds in a
/// `u64` (584 years), which a longer tolerance plus the clock's reading could overflow.
pub(crate) const MAX_REFILL: Duration = Duration::from_secs(10 * 365 * 86_400);

fn too_long(what: String) -> ConfigError {
    ConfigError::new(
        "quota",
        format!("{what} is longer than ten years"),
        "use a shorter period or a smaller burst, such as \"100/day\"",
    )
}

fn zero_quota() -> ConfigError {
    ConfigError::new(
        "quota",
        "a quota of 0 requests refuses everything",
        "allow at least 1 request per period, or remove the limit",
    )
}

/// Checks that no quota allows 0 requests (`Quota::per_minute(0)` builds, but no limit does).
pub(crate) fn check_counts(quotas: &[Quota]) -> Result<(), ConfigError> {
    match quotas.iter().any(|q| q.count == 0) {
        true => Err(zero_quota()),
        false => Ok(()),
    }
}

impl Quota {
    /// `count` requests per `period`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `count` is zero, or `period` is shorter than one millisecond,
    /// shorter than one nanosecond per request, or longer than ten years.
    pub fn new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        if count == 0 {
            return Err(zero_quota());
        }
        if period < Duration::from_millis(1) || period / count == Duration::ZERO {
            return Err(ConfigError::new(
                "quota",
                format!("the period {period:?} is too short for {count} requests"),
                "use a period of at least one millisecond, such as \"100/second\"",
            ));
        }
        if period > MAX_REFILL {
            return Err(too_long(format!("the period {period:?}")));
        }
        Ok(Self {
            count,
            period,
            burst: count,
        })
    }

    /// `count` requests per second. A count of 0 is a [`ConfigError`] when the limit is
    /// built (it would refuse everything).
    pub fn per_second(count: u32) -> Self {
        Self::fixed(count, 1)
    }

    /// `count` requests per minute (0: a [`ConfigError`] when the limit is built).
    pub fn per_minute(count: u32) -> Self {
        Self::fixed(count, 60)
    }

    /// `count` requests per hour (0: a [`ConfigError`] when the limit is built).
    pub fn per_hour(count: u32) -> Self {
        Self::fixed(count, 3600)
    }

    /// `count` requests per day (0: a [`ConfigError`] when the limit is built).
    pub fn per_day(count: u32) -> Self {
        Self::fixed(count, 86_400)
    }

    fn fixed(count: u32, secs: u64) -> Self {
        Self {
            count,
            period: Duration::from_secs(secs),
            burst: count,
        }
    }

    /// Sets how many requests may be made at once (default: the whole `count`). The long-run
    /// rate stays `count` per `period`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `burst` is zero, or when refilling it (`period / count · burst`)
    /// would take longer than ten years.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::new(
                "burst",
                "a burst of 0 refuses every request",
                "set a burst of at least 1 (the default is the quota's count)",
            ));
        }
        self.burst = burst;
        match self.emission_interval().checked_mul(burst) {
            Some(refill) if refill <= MAX_REFILL => Ok(self),
            _ => Err(too_long(format!(
                "refilling a burst of {burst} at {} per {:?}",
                self.count, self.period
            ))),
        }
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time for one unit of the quota to come back: `period / count`.
    pub fn emission_interval(&self) -> Duration {
        (self.period / self.count.max(1)).max(Duration::from_nanos(1))
    }

    /// The period in whole seconds, rounded up (the `w` of the `RateLimit-Policy` field).
    pub fn window_secs(&self) -> u64 {
        ceil_secs(self.period)
    }

    /// Parses one quota such as `"100/hour"`, `"5 per minute"` or `"10 per 30 seconds"`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the text that could not be read and the expected form.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        parse_one(text)
    }

    /// Parses one or more quotas separated by `;` or `,`, e.g. `"5/minute; 100/day"`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first part that does not parse, or for an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, ConfigError> {
        let quotas = text
            .split([';', ','])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()?;
        if quotas.is_empty() {
            return Err(bad_quota(text));
        }
        Ok(quotas)
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn bad_quota(text: &str) -> ConfigError {
    let shown: String = text.chars().take(60).collect();
    ConfigError::new(
        "quota",
        format!("{shown:?} is not a quota"),
        "write quotas like \"100/hour\", \"5 per minute\", \"10 per 30 seconds\" or \
         \"5/minute; 100/day\" (units: second, minute, hour, day)",
    )
}

fn unit_secs(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return None,
    })
}

fn parse_one(text: &str) -> Result<Quota, ConfigError> {
    let err = || bad_quota(text);
    let trimmed = text.trim();
    let (count, rest) = if let Some((count, rest)) = trimmed.split_once('/') {
        (count.trim(), rest.trim())
    } else {
        let mut words = trimmed.splitn(2, char::is_whitespace);
        let count = words.next().ok_or_else(err)?;
        let rest = words.next().ok_or_else(err)?.trim_start();
        // "per" in any case, then any whitespace.
        let (per, rest) = rest.split_once(char::is_whitespace).ok_or_else(err)?;
        if !per.eq_ignore_ascii_case("per") {
            return Err(err());
        }
        (count, rest.trim())
    };
    let count: u32 = count.parse().map_err(|_| err())?;
    let mut words = rest.split_whitespace();
    let first = words.next().ok_or_else(err)?;
    let (multiplier, unit) = match first.parse::<u64>() {
        Ok(n) => (n, words.next().ok_or_else(err)?),
        Err(_) => (1, first),
    };
    if words.next().is_some() || multiplier == 0 {
        return Err(err());
    }
    let secs = unit_secs(unit)
        .and_then(|s| s.checked_mul(multiplier))
        .ok_or_else(err)?;
    Quota::new(count, Duration::from_secs(secs))
}

impl FromStr for Quota {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_one(s)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {} seconds", self.count, self.window_secs())?;
        if self.burst != self.count {
            write!(f, " (burst {})", self.burst)?;
        }
        Ok(())
    }
}

/// Anything that names one or more quotas: a [`Quota`], a list of them, or a string parsed with
/// [`Quota::parse_list`].
pub trait IntoQuotas {
    /// Converts into a non-empty list of quotas.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for unparsable text or an empty list.
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError>;
}

impl IntoQuotas for Quota {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        Ok(vec![self])
    }
}

impl IntoQuotas for &str {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        Quota::parse_list(self)
    }
}

impl IntoQuotas for String {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        Quota::parse_list(&self)
    }
}

impl IntoQuotas for &String {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        Quota::parse_list(self)
    }
}

impl IntoQuotas for Vec<Quota> {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        if self.is_empty() {
            return Err(bad_quota(""));
        }
        Ok(self)
    }
}

impl<const N: usize> IntoQuotas for [Quota; N] {
    fn into_quotas(self) -> Result<Vec<Quota>, ConfigError> {
        self.to_vec().into_quotas()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_in_the_usual_styles_parse() {
        assert_eq!(Quota::parse("100/hour").unwrap(), Quota::per_hour(100));
        assert_eq!(Quota::parse("5 per minute").unwrap(), Quota::per_minute(5));
        assert_eq!(
            Quota::parse("10 per 30 seconds").unwrap(),
            Quota::new(10, Duration::from_secs(30)).unwrap()
        );
        assert_eq!(Quota::parse(" 1/s ").unwrap(), Quota::per_second(1));
        assert_eq!(
            Quota::parse("7/2 days").unwrap().period().as_secs(),
            172_800
        );
        let list = Quota::parse_list("5/minute; 100/day").unwrap();
        assert_eq!(list, vec![Quota::per_minute(5), Quota::per_day(100)]);
    }

    #[test]
    fn bad_strings_fail_at_build_time_with_a_message() {
        for bad in [
            "",
            "abc",
            "5",
            "5/",
            "/minute",
            "5/fortnight",
            "0/minute",
            "-1/minute",
            "5 minute",
            "5 per 0 seconds",
            "5/minute extra",
            "99999999999/s",
            ";",
            "1 per 300000 days",
            "1 per 18446744073709551615 seconds",
            "5 por minute",
        ] {
            let err = Quota::parse_list(bad).unwrap_err();
            assert_eq!(err.setting(), "quota", "{bad:?}");
            assert!(!err.fix().is_empty());
        }
        assert!(Quota::per_minute(5).with_burst(0).is_err());
    }

    #[test]
    fn periods_and_bursts_too_long_to_refill_fail_at_build_time() {
        // Each of these used to panic inside governor or wrap silently in release builds.
        assert!(Quota::new(1, Duration::MAX).is_err());
        assert!(Quota::new(1, MAX_REFILL + Duration::from_secs(1)).is_err());
        let err = Quota::per_hour(10).with_burst(100_000_000).unwrap_err();
        assert_eq!(err.setting(), "quota");
        assert!(err.to_string().contains("ten years"), "{err}");
        // Just inside the bound still builds, and a layer over it checks requests.
        let longest = Quota::new(1, MAX_REFILL).unwrap();
        assert_eq!(longest.burst(), 1);
        assert!(Quota::per_hour(10).with_burst(87_600).is_ok());
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn per_is_read_in_any_case_and_after_any_whitespace() {
        let five = Quota::per_minute(5);
        for text in [
            "5 per minute",
            "5 Per minute",
            "5 PER minute",
            "5 per\tminute",
            "5  per   minute",
        ] {
            assert_eq!(Quota::parse(text).unwrap(), five, "{text:?}");
        }
    }

    #[test]
    fn per_second_means_n_per_second() {
        let q = Quota::per_second(10);
        assert_eq!(q.emission_interval(), Duration::from_millis(100));
        assert_eq!(q.burst(), 10);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any text: a quota or a `ConfigError`, never a panic or a zero quota.
            #[test]
            fn any_quota_text_parses_or_fails_cleanly(text in "\\PC{0,40}") {
                match Quota::parse_list(&text) {
                    Ok(list) => prop_assert!(!list.is_empty()),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
                let _ = Quota::parse(&text);
            }

            /// Well-formed texts round-trip to the count and period they name.
            #[test]
            fn well_formed_quotas_mean_what_they_say(n in 1u32..100_000, secs in 1u64..100_000) {
                let quota = Quota::parse(&format!("{n} per {secs} seconds")).unwrap();
                prop_assert_eq!(quota, Quota::new(n, Duration::from_secs(secs)).unwrap());
                prop_assert_eq!(quota.period(), Duration::from_secs(secs));
            }
        }
    }
}
