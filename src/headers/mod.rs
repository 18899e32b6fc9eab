//! Security response headers.
//!
//! [`SecurityHeaders::api`] is the preset for JSON APIs. Header values are validated and
//! prepared once when the layer is built; per request the layer only copies them.

mod layer;

pub use layer::{SecurityHeadersLayer, SecurityHeadersService};

use http::header::{self, HeaderName, HeaderValue};

use crate::ConfigError;

/// What to do when the handler already set a header the preset also sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExisting {
    /// Keep the handler's value.
    Keep,
    /// Replace it with the preset's value.
    Override,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
    pub(crate) on_existing: OnExisting,
}

/// A set of security headers to add to every response, and information-leaking headers to
/// remove from it.
///
/// ```
/// use axum_shield::headers::SecurityHeaders;
///
/// let headers = SecurityHeaders::api()
///     .set("referrer-policy", "strict-origin-when-cross-origin")
///     .unwrap();
/// # let _ = headers;
/// ```
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    pub(crate) entries: Vec<Entry>,
    pub(crate) remove: Vec<HeaderName>,
}

/// Headers that reveal server software and versions (OWASP Secure Headers Project,
/// "headers to remove").
pub const LEAKING_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
    "x-drupal-cache",
    "x-drupal-dynamic-cache",
    "x-runtime",
    "x-version",
    "x-backend-server",
    "x-served-by",
    "x-sourcemap",
    "sourcemap",
    "liferay-portal",
    "x-nextjs-cache",
    "x-nextjs-matched-path",
    "x-nextjs-page",
    "x-nextjs-redirect",
    "x-mod-pagespeed",
    "x-page-speed",
    "x-varnish-backend",
    "x-umbraco-version",
    "x-atmosphere-error",
    "x-atmosphere-first-request",
    "x-atmosphere-tracking-id",
    "x-cf-powered-by",
    "x-aspnetmvc-version",
];

impl SecurityHeaders {
    /// An empty set: adds nothing, removes nothing.
    pub fn none() -> Self {
        Self {
            entries: Vec::new(),
            remove: Vec::new(),
        }
    }

    /// The preset for JSON APIs (OWASP REST Security and Secure Headers cheat sheets).
    pub fn api() -> Self {
        let mut this = Self::none();
        for (name, value, on_existing) in [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
                OnExisting::Keep,
            ),
            (header::CACHE_CONTROL, "no-store", OnExisting::Keep),
            (header::X_FRAME_OPTIONS, "DENY", OnExisting::Override),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                "nosniff",
                OnExisting::Override,
            ),
            (header::REFERRER_POLICY, "no-referrer", OnExisting::Keep),
        ] {
            this.entries.push(Entry {
                name,
                value: HeaderValue::from_static(value),
                on_existing,
            });
        }
        this.remove = LEAKING_HEADERS
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect();
        this.remove.dedup();
        this
    }

    /// Sets (or replaces) one header, overriding a handler's value.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the name or value is not a valid header (for example contains
    /// CR/LF).
    pub fn set(self, name: &str, value: &str) -> Result<Self, ConfigError> {
        self.set_with(name, value, OnExisting::Override)
    }

    /// Sets (or replaces) one header with an explicit policy for handler-set values.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the name or value is not a valid header.
    pub fn set_with(
        mut self,
        name: &str,
        value: &str,
        on_existing: OnExisting,
    ) -> Result<Self, ConfigError> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::new(
                "security_headers",
                format!("{name:?} is not a valid header name"),
                "use a lowercase token such as \"referrer-policy\"",
            )
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                "security_headers",
                format!("the value for {name} contains characters not allowed in a header"),
                "remove CR, LF and other control characters from the value",
            )
        })?;
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry {
            name,
            value,
            on_existing,
        });
        Ok(self)
    }

    /// Stops sending `name`.
    pub fn unset(mut self, name: &str) -> Self {
        self.entries
            .retain(|e| !e.name.as_str().eq_ignore_ascii_case(name));
        self
    }

    /// Builds the layer.
    pub fn layer(self) -> SecurityHeadersLayer {
        SecurityHeadersLayer::new(self)
    }
}
