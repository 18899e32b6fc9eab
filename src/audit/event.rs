//! The security event type shared by every layer.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::Method;

use crate::auth::Principal;
use crate::client_ip::ClientIp;

/// The target every security event is emitted under, for filtering:
/// `RUST_LOG=axum_shield::security=info`.
pub const SECURITY_TARGET: &str = "axum_shield::security";

/// What happened, named with the OWASP Logging Vocabulary
/// (<https://cheatsheetseries.owasp.org/cheatsheets/Logging_Vocabulary_Cheat_Sheet.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityEventKind {
    /// `authn_login_success`: a user logged in.
    AuthnLoginSuccess,
    /// `authn_login_fail`: a login attempt failed.
    AuthnLoginFail,
    /// `authn_login_lock`: an account or address is locked out after repeated failures.
    AuthnLoginLock,
    /// `authn_token_created`: a token was issued.
    AuthnTokenCreated,
    /// `authn_token_missing`: a protected route was called without credentials.
    AuthnTokenMissing,
    /// `authn_token_invalid`: a token or API key was malformed, forged, expired or unknown.
    AuthnTokenInvalid,
    /// `authn_token_revoked`: a revoked token was presented.
    AuthnTokenRevoked,
    /// `authz_fail`: an authenticated principal lacked a scope or role.
    AuthzFail,
    /// `input_validation_fail`: input failed validation or the JSON guard.
    InputValidationFail,
    /// `excess_rate_limit_exceeded`: a rate limit refused a request.
    ExcessRateLimitExceeded,
    /// `malicious_header`: a request carried a header crafted to attack (for example an
    /// oversized or duplicated credential).
    MaliciousHeader,
    /// `sensitive_action`: a high-risk action was attempted, completed or failed.
    SensitiveAction,
    /// `data_exposure_blocked`: a response field was removed by the redaction layer.
    DataExposureBlocked,
    /// `sys_crash`: a handler panicked.
    SysCrash,
    /// `sys_dependency_fail`: a dependency such as Redis or a JWKS endpoint failed.
    SysDependencyFail,
}

impl SecurityEventKind {
    /// The event name in the OWASP vocabulary, e.g. `authn_token_invalid`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AuthnLoginSuccess => "authn_login_success",
            Self::AuthnLoginFail => "authn_login_fail",
            Self::AuthnLoginLock => "authn_login_lock",
            Self::AuthnTokenCreated => "authn_token_created",
            Self::AuthnTokenMissing => "authn_token_missing",
            Self::AuthnTokenInvalid => "authn_token_invalid",
            Self::AuthnTokenRevoked => "authn_token_revoked",
            Self::AuthzFail => "authz_fail",
            Self::InputValidationFail => "input_validation_fail",
            Self::ExcessRateLimitExceeded => "excess_rate_limit_exceeded",
            Self::MaliciousHeader => "malicious_header",
            Self::SensitiveAction => "sensitive_action",
            Self::DataExposureBlocked => "data_exposure_blocked",
            Self::SysCrash => "sys_crash",
            Self::SysDependencyFail => "sys_dependency_fail",
        }
    }

    /// The default level: client mistakes at `INFO`, attacks and failures at `WARN`,
    /// crashes at `ERROR`.
    pub const fn level(self) -> tracing::Level {
        match self {
            Self::AuthnLoginSuccess
            | Self::AuthnTokenCreated
            | Self::AuthnTokenMissing
            | Self::InputValidationFail
            | Self::SensitiveAction => tracing::Level::INFO,
            Self::AuthnLoginFail
            | Self::AuthnLoginLock
            | Self::AuthnTokenInvalid
            | Self::AuthnTokenRevoked
            | Self::AuthzFail
            | Self::ExcessRateLimitExceeded
            | Self::MaliciousHeader
            | Self::DataExposureBlocked
            | Self::SysDependencyFail => tracing::Level::WARN,
            Self::SysCrash => tracing::Level::ERROR,
        }
    }
}

impl fmt::Display for SecurityEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Receives every security event, for example to forward it to a SIEM.
///
/// Install sinks with [`Shield`](crate::Shield)'s builder; they are called synchronously on the
/// request path, so a sink that does I/O should hand the event to a channel.
pub trait SecurityEventSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &SecurityEvent);
}

impl<F> SecurityEventSink for F
where
    F: Fn(&SecurityEvent) + Send + Sync + 'static,
{
    fn record(&self, event: &SecurityEvent) {
        self(event)
    }
}

/// The sinks of a [`Shield`](crate::Shield), carried in request extensions so that route layers
/// and extractors reach them.
#[derive(Clone, Default)]
pub struct EventSinks(pub(crate) Arc<[Arc<dyn SecurityEventSink>]>);

impl EventSinks {
    /// Sinks from a list.
    pub fn new(sinks: Vec<Arc<dyn SecurityEventSink>>) -> Self {
        Self(sinks.into())
    }

    /// Whether there are no sinks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for EventSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSinks({})", self.0.len())
    }
}

/// One security event: what happened, to which request, and why.
///
/// Build it with [`SecurityEvent::new`] or, inside a layer or handler,
/// [`SecurityEvent::for_request`] (which captures request id, client IP, principal, method,
/// path without query string and the sinks), add a `reason`, then [`emit`](Self::emit) it.
///
/// Fields are values, never formatted into the message, and user-controlled text is
/// escaped when logged, so CR/LF or ANSI sequences cannot forge or hide log lines. Never put
/// tokens, passwords, cookies or API keys into an event.
///
/// ```
/// use axum_shield::audit::{SecurityEvent, SecurityEventKind};
///
/// SecurityEvent::new(SecurityEventKind::AuthnLoginFail)
///     .reason("bad_password")
///     .field("username", "alice")
///     .emit();
/// ```
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    kind: SecurityEventKind,
    reason: Cow<'static, str>,
    request_id: Option<Arc<str>>,
    client_ip: Option<IpAddr>,
    principal: Option<Arc<str>>,
    method: Option<Method>,
    path: Option<Arc<str>>,
    fields: Vec<(&'static str, String)>,
    sinks: EventSinks,
}

impl SecurityEvent {
    /// An event of `kind` with no request context.
    pub fn new(kind: SecurityEventKind) -> Self {
        Self {
            kind,
            reason: Cow::Borrowed(""),
            request_id: None,
            client_ip: None,
            principal: None,
            method: None,
            path: None,
            fields: Vec::new(),
            sinks: EventSinks::default(),
        }
    }

    /// An event of `kind` about the request described by `method`, `uri` and `extensions`.
    pub fn for_request(
        kind: SecurityEventKind,
        method: &Method,
        uri: &http::Uri,
        extensions: &http::Extensions,
    ) -> Self {
        let mut event = Self::new(kind);
        event.request_id = crate::request_id::of(extensions).map(Arc::from);
        event.client_ip = extensions.get::<ClientIp>().map(|ip| ip.0);
        event.principal = extensions.get::<Principal>().map(|p| Arc::from(p.id()));
        event.method = Some(method.clone());
        event.path = Some(Arc::from(uri.path()));
        if let Some(sinks) = extensions.get::<EventSinks>() {
            event.sinks = sinks.clone();
        }
        event
    }

    /// Like [`for_request`](Self::for_request), from request parts.
    pub fn for_parts(kind: SecurityEventKind, parts: &http::request::Parts) -> Self {
        Self::for_request(kind, &parts.method, &parts.uri, &parts.extensions)
    }

    /// A short machine-readable reason, e.g. `expired` or `bad_signature`.
    pub fn reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the principal id (when it is not yet in the request extensions, e.g. at login).
    pub fn principal(mut self, id: impl Into<Arc<str>>) -> Self {
        self.principal = Some(id.into());
        self
    }

    /// Adds a named field. Its value is escaped when logged.
    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// The kind of event.
    pub fn kind(&self) -> SecurityEventKind {
        self.kind
    }

    /// The reason, empty when none was given.
    pub fn reason_text(&self) -> &str {
        &self.reason
    }

    /// The request id, when known.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The client IP, when known.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The principal id, when known.
    pub fn principal_id(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The request method, when known.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The request path without query string, when known.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Extra fields.
    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.fields
    }

    /// Sends the event to `tracing` (target [`SECURITY_TARGET`]) and to every sink.
    pub fn emit(self) {
        macro_rules! log {
            ($level:expr) => {
                tracing::event!(
                    target: SECURITY_TARGET,
                    $level,
                    event = self.kind.name(),
                    reason = %self.reason,
                    request_id = self.request_id.as_deref().map(tracing::field::debug),
                    client_ip = self.client_ip.map(tracing::field::display),
                    principal = self.principal.as_deref().map(tracing::field::debug),
                    method = self.method.as_ref().map(tracing::field::display),
                    path = self.path.as_deref().map(tracing::field::debug),
                    fields = (!self.fields.is_empty()).then_some(tracing::field::debug(&self.fields)),
                    "security event"
                )
            };
        }
        match self.kind.level() {
            tracing::Level::ERROR => log!(tracing::Level::ERROR),
            tracing::Level::WARN => log!(tracing::Level::WARN),
            tracing::Level::INFO => log!(tracing::Level::INFO),
            tracing::Level::DEBUG => log!(tracing::Level::DEBUG),
            _ => log!(tracing::Level::TRACE),
        }
        for sink in self.sinks.0.iter() {
            sink.record(&self);
        }
    }
}
