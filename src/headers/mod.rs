//! Security response headers, HSTS, CSP with nonces, HTTPS redirects and safe CORS.
//!
//! [`SecurityHeadersLayer`] adds the headers of a preset to **every** response — including 401,
//! 413, 429 and 500 rejections, since [`Shield`](crate::Shield) places it outside every layer
//! that can refuse — and strips headers that reveal server software. Values are validated and
//! prepared once when the layer is built (a CR/LF or other invalid character is a
//! [`ConfigError`] at startup, never a panic); per request the layer only copies them.
//!
//! ```
//! use axum_shield::headers::{OnExisting, SecurityHeadersLayer};
//!
//! let layer = SecurityHeadersLayer::api()
//!     .set("referrer-policy", "strict-origin-when-cross-origin")
//!     .on_existing("x-frame-options", OnExisting::Keep)
//!     .unset("x-xss-protection")
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), axum_shield::ConfigError>(())
//! ```
//!
//! # The presets
//!
//! `api` is for JSON APIs (no HTML is ever rendered), `web` for HTML apps (values after
//! helmet's defaults). "Handler" says what happens when the handler already set the header:
//! **keep** its value or **override** it ([`OnExisting`]; change with
//! [`SecurityHeadersBuilder::on_existing`]).
//!
//! | header | `api` | `web` | handler | why | reference |
//! |---|---|---|---|---|---|
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` | `default-src 'self'; base-uri 'self'; font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests` | keep | a JSON response that is opened as a document can load and run nothing, and cannot be framed; for HTML, limits where scripts may come from (XSS) | [CSP Level 3](https://www.w3.org/TR/CSP3/), [OWASP CSP Cheat Sheet](https://cheatsheetseries.owasp.org/cheatsheets/Content_Security_Policy_Cheat_Sheet.html) |
//! | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains`, **only over HTTPS** | same | override | browsers refuse plain HTTP to the host for a year (SSL stripping); never sent over HTTP (RFC 6797 §7.2) | [RFC 6797](https://www.rfc-editor.org/rfc/rfc6797), [OWASP HSTS Cheat Sheet](https://cheatsheetseries.owasp.org/cheatsheets/HTTP_Strict_Transport_Security_Cheat_Sheet.html) |
//! | `Cache-Control` | `no-store` | — | keep | API responses often carry personal data; no shared or browser cache may keep them | [OWASP REST Security Cheat Sheet](https://cheatsheetseries.owasp.org/cheatsheets/REST_Security_Cheat_Sheet.html#security-headers), RFC 9111 §5.2.2.5 |
//! | `X-Content-Type-Options` | `nosniff` | `nosniff` | override | browsers must not guess a type (JSON sniffed as HTML/script) | [Fetch §X-Content-Type-Options](https://fetch.spec.whatwg.org/#x-content-type-options-header) |
//! | `X-Frame-Options` | `DENY` | `SAMEORIGIN` | override | clickjacking, for browsers without `frame-ancestors` | [RFC 7034](https://www.rfc-editor.org/rfc/rfc7034), [OWASP Clickjacking Cheat Sheet](https://cheatsheetseries.owasp.org/cheatsheets/Clickjacking_Defense_Cheat_Sheet.html) |
//! | `Referrer-Policy` | `no-referrer` | `no-referrer` | override | URLs with ids or tokens never leak to other sites | [Referrer Policy](https://www.w3.org/TR/referrer-policy/) |
//! | `Cross-Origin-Opener-Policy` | `same-origin` | `same-origin` | override | isolates the browsing context from cross-origin openers (XS-Leaks, Spectre) | [HTML §COOP](https://html.spec.whatwg.org/multipage/browsers.html#cross-origin-opener-policies) |
//! | `Cross-Origin-Resource-Policy` | `same-origin` | `same-origin` | keep | other sites cannot embed the response with `no-cors` requests (CORS requests are unaffected) | [Fetch §CORP](https://fetch.spec.whatwg.org/#cross-origin-resource-policy-header) |
//! | `Permissions-Policy` | every powerful feature `=()` | same | override | the response may not use camera, microphone, geolocation, payment… | [Permissions Policy](https://www.w3.org/TR/permissions-policy-1/) |
//! | `X-Permitted-Cross-Domain-Policies` | `none` | `none` | override | Flash/PDF clients may not load cross-domain policy files | [OWASP Secure Headers Project](https://owasp.org/www-project-secure-headers/) |
//! | `X-XSS-Protection` | `0` | `0` | override | the legacy XSS auditor is itself exploitable; `0` turns it off (never `1; mode=block`) | [OWASP Secure Headers Project](https://owasp.org/www-project-secure-headers/#x-xss-protection) |
//! | `Origin-Agent-Cluster` | — | `?1` | override | the origin gets its own agent cluster (no `document.domain` relaxing) | [HTML §Origin-Agent-Cluster](https://html.spec.whatwg.org/multipage/browsers.html#origin-keyed-agent-clusters) |
//! | `X-DNS-Prefetch-Control` | — | `off` | override | links in pages do not leak visited hosts through DNS prefetching | [MDN](https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/X-DNS-Prefetch-Control) |
//! | `X-Download-Options` | — | `noopen` | override | old IE opens downloads in the site's context otherwise | helmet |
//!
//! Removed from every response (the OWASP Secure Headers Project remove-list, 76 names):
//! `Server`, `X-Powered-By`, `X-AspNet-Version`, `X-Runtime`, … — whatever an inner service or
//! framework added. Let one through with [`SecurityHeadersBuilder::keep_header`].
//!
//! # HTTPS
//!
//! HSTS is sent only when [`is_https`] holds: a [`TlsConnection`] marker that your TLS
//! listener adds, or a trusted proxy's `X-Forwarded-Proto: https` (or `Forwarded:
//! proto=https`) as resolved by [`Shield`](crate::Shield). The URI scheme and an untrusted
//! peer's `X-Forwarded-Proto` are client-controlled and ignored.
//! [`ShieldBuilder::https_redirect`](crate::shield::ShieldBuilder::https_redirect) answers
//! plain-HTTP requests with a 308 to your canonical origin.
//!
//! # CORS
//!
//! [`CorsPolicy`] is a typed configuration that refuses unsafe combinations (credentials with
//! any origin, the `null` origin) when the stack is built; give it to
//! [`ShieldBuilder::cors`](crate::shield::ShieldBuilder::cors), which places CORS outside any
//! authentication layer so that preflights are answered first.

mod cors;
mod csp;
pub mod future;
mod https;
mod layer;
mod redirect;

pub use cors::CorsPolicy;
pub use csp::{ContentSecurityPolicy, CspNonce, Directive, Source};
pub use https::{is_https, Hsts, TlsConnection};
pub use layer::{SecurityHeaders, SecurityHeadersLayer};
pub(crate) use redirect::{HttpsRedirect, HttpsRedirectLayer, RedirectOrigin};

use std::collections::BTreeMap;

use http::header::{self, HeaderName, HeaderValue};
use serde::Deserialize;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Static(HeaderValue),
    Csp(ContentSecurityPolicy),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    pub(crate) value: Value,
    pub(crate) on_existing: OnExisting,
}

/// Builder of a [`SecurityHeadersLayer`]: the headers of a preset, changed by the setters
/// in the order they are called. Setters only record; [`build`](Self::build) checks every
/// name and value and reports the first problem. See the [module docs](self) for the presets.
///
/// ```
/// use axum_shield::headers::SecurityHeadersLayer;
///
/// let layer = SecurityHeadersLayer::api()
///     .set("referrer-policy", "strict-origin-when-cross-origin")
///     .build()?;
/// assert!(SecurityHeadersLayer::api().set("x-custom", "a\r\nSet-Cookie: x").build().is_err());
/// # let _ = layer;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the layer"]
pub struct SecurityHeadersBuilder {
    preset: Preset,
    changes: Vec<Change>,
}

/// One recorded setter call, applied and checked in [`SecurityHeadersBuilder::build`].
#[derive(Debug, Clone)]
enum Change {
    Set(String, String, OnExisting),
    OnExisting(String, OnExisting),
    Unset(String),
    Csp(ContentSecurityPolicy),
    CspReportOnly(ContentSecurityPolicy),
    ReportingEndpoint(String, String),
    Hsts(Hsts),
    RemoveHeader(String),
    KeepHeader(String),
}

/// A checked set of headers: what [`SecurityHeadersLayer`] prepares.
#[derive(Debug, Clone)]
pub(crate) struct HeaderSet {
    pub(crate) entries: Vec<Entry>,
    pub(crate) hsts: Option<(HeaderValue, OnExisting)>,
    pub(crate) remove: Vec<HeaderName>,
}

/// Which preset a [`SecurityHeadersConfig`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Preset {
    /// [`SecurityHeadersLayer::api`] (default).
    #[default]
    Api,
    /// [`SecurityHeadersLayer::web`].
    Web,
    /// [`SecurityHeadersLayer::none`].
    None,
}

/// Security-header settings loadable with serde, for operators tuning from a file.
///
/// ```
/// use axum_shield::headers::{SecurityHeadersConfig, SecurityHeadersLayer};
///
/// let config: SecurityHeadersConfig = toml::from_str(r#"
///     preset = "api"
///     unset = ["x-xss-protection"]
///     keep_handler_value = ["x-frame-options"]
///     [set]
///     referrer-policy = "strict-origin-when-cross-origin"
///     [hsts]
///     max_age_secs = 63072000
///     include_subdomains = true
///     preload = true
/// "#).unwrap();
/// let layer = SecurityHeadersLayer::from_config(config).build()?;
/// # let _ = layer;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SecurityHeadersConfig {
    /// The starting preset. Default `api`.
    pub preset: Preset,
    /// HSTS settings replacing the preset's.
    pub hsts: Option<Hsts>,
    /// Headers to set (overriding a handler's value), by name.
    pub set: BTreeMap<String, String>,
    /// Headers of the preset not to send.
    pub unset: Vec<String>,
    /// Headers whose handler-set value wins.
    pub keep_handler_value: Vec<String>,
    /// Headers whose preset value wins over the handler's.
    pub override_handler_value: Vec<String>,
}

/// Headers that reveal server software, versions or internal topology: the OWASP Secure
/// Headers Project remove-list (`ci/headers_remove.json`), lowercase.
const LEAKING_HEADERS: &[&str] = &[
    "$wsep",
    "host-header",
    "k-proxy-request",
    "liferay-portal",
    "oraclecommercecloud-version",
    "pega-host",
    "powered-by",
    "product",
    "server",
    "sourcemap",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-atmosphere-error",
    "x-atmosphere-first-request",
    "x-atmosphere-tracking-id",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-spanid",
    "x-b3-traceid",
    "x-backend-server",
    "x-beserver",
    "x-backside-transport",
    "x-cf-powered-by",
    "x-cms",
    "x-calculatedbetarget",
    "x-cocoon-version",
    "x-content-encoded-by",
    "x-diaginfo",
    "x-drupal-cache",
    "x-drupal-dynamic-cache",
    "x-envoy-attempt-count",
    "x-envoy-external-address",
    "x-envoy-internal",
    "x-envoy-original-dst-host",
    "x-envoy-upstream-service-time",
    "x-feserver",
    "x-framework",
    "x-generated-by",
    "x-generator",
    "x-jitsi-release",
    "x-joomla-version",
    "x-kubernetes-pf-flowschema-uid",
    "x-kubernetes-pf-prioritylevel-uid",
    "x-litespeed-cache",
    "x-litespeed-purge",
    "x-litespeed-tag",
    "x-litespeed-vary",
    "x-litespeed-cache-control",
    "x-mod-pagespeed",
    "x-nextjs-cache",
    "x-nextjs-matched-path",
    "x-nextjs-page",
    "x-nextjs-redirect",
    "x-owa-version",
    "x-old-content-length",
    "x-oneagent-js-injection",
    "x-page-speed",
    "x-php-version",
    "x-powered-by",
    "x-powered-by-plesk",
    "x-powered-cms",
    "x-redirect-by",
    "x-runtime",
    "x-server-powered-by",
    "x-served-by",
    "x-sourcefiles",
    "x-sourcemap",
    "x-turbo-charged-by",
    "x-umbraco-version",
    "x-varnish-backend",
    "x-varnish-server",
    "x-version",
    "x-dtagentid",
    "x-dthealthcheck",
    "x-dtinjectedservlet",
    "x-ruxit-js-agent",
];

/// Denies every powerful browser feature to the response's document.
const PERMISSIONS_DENY_ALL: &str = "accelerometer=(), autoplay=(), camera=(), \
    display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), \
    magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), \
    publickey-credentials-get=(), screen-wake-lock=(), serial=(), usb=(), web-share=(), \
    xr-spatial-tracking=()";

const NAME_FIX: &str = "use a lowercase token such as \"referrer-policy\"";

fn invalid_name(name: &str) -> ConfigError {
    ConfigError::new(
        "security_headers",
        format!("{name:?} is not a valid header name"),
        NAME_FIX,
    )
}

fn parse_name(name: &str) -> Result<HeaderName, ConfigError> {
    ConfigError::header_name("security_headers", name, NAME_FIX)
}

impl SecurityHeadersLayer {
    /// The preset for JSON APIs (OWASP REST Security Cheat Sheet and Secure Headers Project);
    /// see the [module docs](self) for every value and why.
    pub fn api() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::new(Preset::Api)
    }

    /// The preset for HTML apps (helmet's defaults, with a deny-all `Permissions-Policy`); see
    /// the [module docs](self).
    pub fn web() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::new(Preset::Web)
    }

    /// An empty set: adds nothing, removes nothing, no HSTS.
    pub fn none() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::new(Preset::None)
    }

    /// A builder from loaded settings (see [`SecurityHeadersConfig`]), checked in
    /// [`build`](SecurityHeadersBuilder::build) like the setters.
    pub fn from_config(config: SecurityHeadersConfig) -> SecurityHeadersBuilder {
        let mut builder = SecurityHeadersBuilder::new(config.preset);
        if let Some(hsts) = config.hsts {
            builder = builder.hsts(hsts);
        }
        for name in config.unset {
            builder = builder.unset(&name);
        }
        for (name, value) in &config.set {
            builder = builder.set(name, value);
        }
        for name in &config.keep_handler_value {
            builder = builder.on_existing(name, OnExisting::Keep);
        }
        for name in &config.override_handler_value {
            builder = builder.on_existing(name, OnExisting::Override);
        }
        builder
    }
}

impl SecurityHeadersBuilder {
    fn new(preset: Preset) -> Self {
        Self {
            preset,
            changes: Vec::new(),
        }
    }

    fn change(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    /// Sets (or replaces) one header, overriding a handler's value.
    ///
    /// Setting `strict-transport-security` replaces the HSTS value, which is still sent
    /// over HTTPS only. [`build`](Self::build) refuses a name or value that is not a valid
    /// header (for example a value with CR or LF, RFC 9110 §5.5).
    pub fn set(self, name: &str, value: &str) -> Self {
        self.set_with(name, value, OnExisting::Override)
    }

    /// Sets (or replaces) one header with an explicit policy for handler-set values; checked
    /// as [`set`](Self::set).
    pub fn set_with(self, name: &str, value: &str, on_existing: OnExisting) -> Self {
        self.change(Change::Set(name.to_owned(), value.to_owned(), on_existing))
    }

    /// Changes whether a handler's own value of `name` is kept or overridden.
    /// [`build`](Self::build) refuses a `name` this set does not send at that point (a typo
    /// would otherwise be silent).
    pub fn on_existing(self, name: &str, on_existing: OnExisting) -> Self {
        self.change(Change::OnExisting(name.to_owned(), on_existing))
    }

    /// Stops sending `name` (HSTS included).
    pub fn unset(self, name: &str) -> Self {
        self.change(Change::Unset(name.to_owned()))
    }

    /// Replaces the `Content-Security-Policy` (the handler's own CSP is kept by default).
    /// [`build`](Self::build) refuses an empty policy or an invalid source, report group or
    /// report URI.
    pub fn csp(self, policy: ContentSecurityPolicy) -> Self {
        self.change(Change::Csp(policy))
    }

    /// Sends `policy` as `Content-Security-Policy-Report-Only`: browsers report violations
    /// but block nothing — the way to try a stricter policy next to the enforced one. Checked
    /// as [`csp`](Self::csp).
    pub fn csp_report_only(self, policy: ContentSecurityPolicy) -> Self {
        self.change(Change::CspReportOnly(policy))
    }

    /// Declares a reporting endpoint for `report-to` (`Reporting-Endpoints: name="url"`,
    /// W3C Reporting API §3.2); call it once per endpoint. [`build`](Self::build) refuses a
    /// `name` that is not a token or a `url` that is not an `https://` URL.
    pub fn reporting_endpoint(self, name: &str, url: &str) -> Self {
        self.change(Change::ReportingEndpoint(name.to_owned(), url.to_owned()))
    }

    /// Replaces the HSTS settings (sent only over HTTPS, see [`Hsts`]).
    /// [`build`](Self::build) refuses `preload` without its requirements.
    pub fn hsts(self, hsts: Hsts) -> Self {
        self.change(Change::Hsts(hsts))
    }

    /// Adds `name` to the headers removed from responses; [`build`](Self::build) refuses an
    /// invalid header name.
    pub fn remove_header(self, name: &str) -> Self {
        self.change(Change::RemoveHeader(name.to_owned()))
    }

    /// Stops removing `name` (for example to let a deliberate `Server` header through).
    pub fn keep_header(self, name: &str) -> Self {
        self.change(Change::KeepHeader(name.to_owned()))
    }

    /// Checks every setting, prepares the values and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first invalid setting, in the order the setters were
    /// called (see each setter), or when the OS random generator needed to seed the nonce
    /// generator fails.
    pub fn build(self) -> Result<SecurityHeadersLayer, ConfigError> {
        let mut set = HeaderSet::preset(self.preset);
        for change in self.changes {
            set.apply(change)?;
        }
        SecurityHeadersLayer::new(set)
    }
}

impl HeaderSet {
    fn preset(preset: Preset) -> Self {
        use OnExisting::{Keep, Override};
        match preset {
            Preset::None => Self::empty(),
            Preset::Api => Self::with(
                &[
                    (header::CACHE_CONTROL, "no-store", Keep),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff", Override),
                    (header::X_FRAME_OPTIONS, "DENY", Override),
                    (header::REFERRER_POLICY, "no-referrer", Override),
                    (COOP, "same-origin", Override),
                    (CORP, "same-origin", Keep),
                    (PERMISSIONS_POLICY, PERMISSIONS_DENY_ALL, Override),
                    (X_PERMITTED_CDP, "none", Override),
                    (header::X_XSS_PROTECTION, "0", Override),
                ],
                ContentSecurityPolicy::api(),
            ),
            Preset::Web => Self::with(
                &[
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff", Override),
                    (header::X_FRAME_OPTIONS, "SAMEORIGIN", Override),
                    (header::REFERRER_POLICY, "no-referrer", Override),
                    (COOP, "same-origin", Override),
                    (CORP, "same-origin", Keep),
                    (ORIGIN_AGENT_CLUSTER, "?1", Override),
                    (PERMISSIONS_POLICY, PERMISSIONS_DENY_ALL, Override),
                    (header::X_DNS_PREFETCH_CONTROL, "off", Override),
                    (X_DOWNLOAD_OPTIONS, "noopen", Override),
                    (X_PERMITTED_CDP, "none", Override),
                    (header::X_XSS_PROTECTION, "0", Override),
                ],
                ContentSecurityPolicy::web(),
            ),
        }
    }

    fn empty() -> Self {
        Self {
            entries: Vec::new(),
            hsts: None,
            remove: Vec::new(),
        }
    }

    fn with(
        statics: &[(HeaderName, &'static str, OnExisting)],
        csp: ContentSecurityPolicy,
    ) -> Self {
        let mut this = Self::empty();
        this.entries.push(Entry {
            name: header::CONTENT_SECURITY_POLICY,
            value: Value::Csp(csp),
            on_existing: OnExisting::Keep,
        });
        for (name, value, on_existing) in statics {
            this.entries.push(Entry {
                name: name.clone(),
                value: Value::Static(HeaderValue::from_static(value)),
                on_existing: *on_existing,
            });
        }
        this.hsts = Some((
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            OnExisting::Override,
        ));
        this.remove = LEAKING_HEADERS
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect();
        this
    }

    fn apply(&mut self, change: Change) -> Result<(), ConfigError> {
        match change {
            Change::Set(name, value, on_existing) => self.set(&name, &value, on_existing),
            Change::OnExisting(name, on_existing) => self.on_existing(&name, on_existing),
            Change::Unset(name) => {
                self.unset(&name);
                Ok(())
            }
            Change::Csp(policy) => self.csp(policy),
            Change::CspReportOnly(policy) => {
                policy.template()?;
                self.put(
                    header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
                    Value::Csp(policy),
                    OnExisting::Keep,
                );
                Ok(())
            }
            Change::ReportingEndpoint(name, url) => self.reporting_endpoint(&name, &url),
            Change::Hsts(hsts) => {
                self.hsts = Some((hsts.header_value()?, OnExisting::Override));
                Ok(())
            }
            Change::RemoveHeader(name) => {
                let name = parse_name(&name)?;
                if !self.remove.contains(&name) {
                    self.remove.push(name);
                }
                Ok(())
            }
            Change::KeepHeader(name) => {
                self.remove
                    .retain(|n| !n.as_str().eq_ignore_ascii_case(&name));
                Ok(())
            }
        }
    }

    fn set(&mut self, name: &str, value: &str, on_existing: OnExisting) -> Result<(), ConfigError> {
        let name = parse_name(name)?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                "security_headers",
                format!("the value for {name} contains characters not allowed in a header"),
                "remove CR, LF and other control characters from the value",
            )
        })?;
        // Copied into every response: kept as a `'static` text.
        let value = crate::interned::header_value(value);
        if name == header::STRICT_TRANSPORT_SECURITY {
            self.hsts = Some((value, on_existing));
            return Ok(());
        }
        self.put(name, Value::Static(value), on_existing);
        Ok(())
    }

    fn put(&mut self, name: HeaderName, value: Value, on_existing: OnExisting) {
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(entry) => {
                entry.value = value;
                entry.on_existing = on_existing;
            }
            None => self.entries.push(Entry {
                name,
                value,
                on_existing,
            }),
        }
    }

    fn on_existing(&mut self, name: &str, on_existing: OnExisting) -> Result<(), ConfigError> {
        let name = parse_name(name)?;
        if name == header::STRICT_TRANSPORT_SECURITY {
            if let Some(hsts) = &mut self.hsts {
                hsts.1 = on_existing;
                return Ok(());
            }
        } else if let Some(entry) = self.entries.iter_mut().find(|e| e.name == name) {
            entry.on_existing = on_existing;
            return Ok(());
        }
        Err(ConfigError::new(
            "security_headers",
            format!("{name} is not among the headers sent"),
            "set the header first, or check its spelling",
        ))
    }

    fn unset(&mut self, name: &str) {
        if name.eq_ignore_ascii_case(header::STRICT_TRANSPORT_SECURITY.as_str()) {
            self.hsts = None;
        }
        self.entries
            .retain(|e| !e.name.as_str().eq_ignore_ascii_case(name));
    }

    fn csp(&mut self, policy: ContentSecurityPolicy) -> Result<(), ConfigError> {
        policy.template()?;
        let on_existing = self
            .entries
            .iter()
            .find(|e| e.name == header::CONTENT_SECURITY_POLICY)
            .map_or(OnExisting::Keep, |e| e.on_existing);
        self.put(
            header::CONTENT_SECURITY_POLICY,
            Value::Csp(policy),
            on_existing,
        );
        Ok(())
    }

    fn reporting_endpoint(&mut self, name: &str, url: &str) -> Result<(), ConfigError> {
        if !csp::is_token(name) {
            return Err(ConfigError::new(
                "reporting_endpoint",
                format!("{name:?} is not an endpoint name"),
                "use letters, digits, '-' or '_' such as \"csp\"",
            ));
        }
        let valid_url = url.starts_with("https://")
            && url.len() > 8
            && url
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"\\,;".contains(&b));
        if !valid_url {
            return Err(ConfigError::new(
                "reporting_endpoint",
                format!("{url:?} is not a usable https:// URL"),
                "reports must go to a potentially trustworthy (https://) URL without quotes, ',' or ';'",
            ));
        }
        let name_header = HeaderName::from_static("reporting-endpoints");
        let mut text = match self.entries.iter().find(|e| e.name == name_header) {
            Some(Entry {
                value: Value::Static(v),
                ..
            }) => format!("{}, ", v.to_str().unwrap_or_default()),
            _ => String::new(),
        };
        text.push_str(&format!("{name}=\"{url}\""));
        let value = HeaderValue::try_from(text)
            .map(crate::interned::header_value)
            .map_err(|_| invalid_name(name))?;
        self.put(name_header, Value::Static(value), OnExisting::Override);
        Ok(())
    }
}

const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const X_PERMITTED_CDP: HeaderName = HeaderName::from_static("x-permitted-cross-domain-policies");
const ORIGIN_AGENT_CLUSTER: HeaderName = HeaderName::from_static("origin-agent-cluster");
const X_DOWNLOAD_OPTIONS: HeaderName = HeaderName::from_static("x-download-options");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr_lf_header_value_is_rejected_at_build_time() {
        for value in ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "nul\0"] {
            let err = SecurityHeadersLayer::api()
                .set("x-test", value)
                .build()
                .unwrap_err();
            assert_eq!(err.setting(), "security_headers");
            assert!(err.to_string().contains("CR, LF"), "{err}");
        }
    }

    #[test]
    fn invalid_header_name_is_rejected_at_build_time() {
        for name in ["bad name", "x:y", "", "é"] {
            assert!(
                SecurityHeadersLayer::api().set(name, "v").build().is_err(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn on_existing_for_an_unknown_header_is_an_error() {
        assert!(SecurityHeadersLayer::api()
            .on_existing("x-frame-option", OnExisting::Keep)
            .build()
            .is_err());
        assert!(SecurityHeadersLayer::api()
            .on_existing("strict-transport-security", OnExisting::Keep)
            .build()
            .is_ok());
        // Applied in order: a header set later is not yet sent.
        assert!(SecurityHeadersLayer::none()
            .on_existing("x-note", OnExisting::Keep)
            .set("x-note", "1")
            .build()
            .is_err());
    }

    #[test]
    fn reporting_endpoint_is_validated_and_accumulates() {
        let mut h = HeaderSet::preset(Preset::Api);
        h.reporting_endpoint("csp", "https://r.example/csp")
            .unwrap();
        h.reporting_endpoint("nel", "https://r.example/nel")
            .unwrap();
        let entry = h
            .entries
            .iter()
            .find(|e| e.name == "reporting-endpoints")
            .unwrap();
        assert_eq!(
            entry.value,
            Value::Static(HeaderValue::from_static(
                "csp=\"https://r.example/csp\", nel=\"https://r.example/nel\""
            ))
        );
        assert!(SecurityHeadersLayer::api()
            .reporting_endpoint("csp", "http://r.example")
            .build()
            .is_err());
        assert!(SecurityHeadersLayer::api()
            .reporting_endpoint("csp", "https://r.example/\"x")
            .build()
            .is_err());
    }

    #[test]
    fn leaking_list_has_no_duplicates_and_is_valid() {
        let mut names: Vec<&str> = LEAKING_HEADERS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LEAKING_HEADERS.len());
        for name in LEAKING_HEADERS {
            assert!(HeaderName::from_bytes(name.as_bytes()).is_ok(), "{name}");
        }
    }
}
