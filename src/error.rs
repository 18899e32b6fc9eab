//! Configuration errors reported by every builder in this crate.

use std::borrow::Cow;
use std::fmt;

/// A configuration mistake found while building a layer.
///
/// Every builder in this crate checks its settings in `build()` and returns this error
/// instead of panicking or failing later at request time. The message names the setting, says what is
/// wrong with it and how to fix it:
///
/// ```
/// use axum_shield::Shield;
///
/// let err = Shield::api().trusted_proxies(["10.0.0.0/33"]).build().unwrap_err();
/// assert_eq!(err.setting(), "trusted_proxies");
/// assert!(err.to_string().contains("CIDR"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: Cow<'static, str>,
    problem: String,
    fix: Cow<'static, str>,
}

impl ConfigError {
    /// Creates an error for `setting`, describing the `problem` and how to `fix` it.
    pub fn new(
        setting: impl Into<Cow<'static, str>>,
        problem: impl Into<String>,
        fix: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Parses a header name given for `setting`, or says it is not one and how to `fix` it.
    /// Shared by every builder that takes header names.
    pub(crate) fn header_name(
        setting: &'static str,
        name: &str,
        fix: &'static str,
    ) -> Result<http::HeaderName, Self> {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Self::new(setting, format!("{name:?} is not a valid header name"), fix))
    }

    /// The name of the setting that is wrong, as spelled in the builder or config file.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong with the setting.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// How to fix it.
    pub fn fix(&self) -> &str {
        &self.fix
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid `{}`: {}; {}",
            self.setting, self.problem, self.fix
        )
    }
}

impl std::error::Error for ConfigError {}
