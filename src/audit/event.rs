//! The security event type shared by every layer.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::MatchedPath;
use http::Method;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::escape::{escape, escape_owned, LogText};
use super::pseudonym::{Pseudonym, Pseudonymizer};
use super::SECURITY_TARGET;
use crate::client_ip::ClientIp;
use crate::principal::Principal;

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
/// request path, so a sink that does I/O should hand the event to a channel:
/// [`ChannelSink`](super::ChannelSink) does that without ever blocking. Events reach the sinks
/// already escaped and, when configured, pseudonymized; [`SecurityEvent`] serializes to the
/// documented JSON schema.
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
pub(crate) struct EventSinks(pub(crate) Arc<[Arc<dyn SecurityEventSink>]>);

impl EventSinks {
    /// Sinks from a list.
    pub(crate) fn new(sinks: Vec<Arc<dyn SecurityEventSink>>) -> Self {
        Self(sinks.into())
    }

    /// Whether there are no sinks.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for EventSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSinks({})", self.0.len())
    }
}

/// Whether a high-risk action (a [`SecurityEventKind::SensitiveAction`] event) was attempted,
/// completed or failed. See [`Audit`](super::Audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionOutcome {
    /// `attempted`: the handler is about to perform the action.
    Attempted,
    /// `completed`: the action succeeded.
    Completed,
    /// `failed`: the action failed or was abandoned.
    Failed,
}

impl ActionOutcome {
    /// `attempted`, `completed` or `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Attempted => "attempted",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for ActionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One security event: what happened, to which request, and why.
///
/// Build it with [`SecurityEvent::new`] or, inside a layer or handler,
/// [`SecurityEvent::for_request`] / [`for_parts`](Self::for_parts) (which capture request id,
/// client IP, principal, method, matched route and the sinks of the [`Shield`](crate::Shield)),
/// add a `reason`, then [`emit`](Self::emit) it.
///
/// Fields are values, never formatted into the message. Every user-controlled string
/// (principal, user name, route, reason when not static, extra fields) is
/// escaped when it enters the event (see the [module docs](super#formatters)), so CR/LF or ANSI sequences cannot forge
/// or hide log lines in any format or sink; when the [`Shield`](crate::Shield) pseudonymizes,
/// the client IP, principal and user name are replaced by keyed pseudonyms here too. Never put
/// tokens, passwords, cookies or API keys into an event.
///
/// The field schema is stable and documented in the [module docs](super#security-events).
///
/// ```
/// use axum_shield::audit::{SecurityEvent, SecurityEventKind};
///
/// SecurityEvent::new(SecurityEventKind::AuthnLoginFail)
///     .reason("bad_password")
///     .username("alice")
///     .emit();
/// ```
///
/// Inside a layer, from the request (this is how the authentication layers report):
///
/// ```
/// use axum_shield::audit::{SecurityEvent, SecurityEventKind};
///
/// fn refuse(parts: &http::request::Parts) {
///     SecurityEvent::for_parts(SecurityEventKind::AuthnTokenInvalid, parts)
///         .reason("expired")
///         .emit();
/// }
/// # let (parts, _) = http::Request::new(()).into_parts();
/// # refuse(&parts);
/// ```
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    kind: SecurityEventKind,
    level: tracing::Level,
    reason: Cow<'static, str>,
    timestamp: SystemTime,
    request_id: Option<Arc<str>>,
    client_ip: Option<IpAddr>,
    client_pseudonym: Option<Pseudonym>,
    principal: Option<Arc<str>>,
    method: Option<Method>,
    route: Option<Arc<str>>,
    route_matched: bool,
    username: Option<Arc<str>>,
    action: Option<Cow<'static, str>>,
    outcome: Option<ActionOutcome>,
    fields: Vec<(&'static str, String)>,
    sinks: EventSinks,
    pseudonymizer: Option<Pseudonymizer>,
}

impl SecurityEvent {
    /// An event of `kind` with no request context, at the kind's default level.
    pub fn new(kind: SecurityEventKind) -> Self {
        Self {
            kind,
            level: kind.level(),
            reason: Cow::Borrowed(""),
            timestamp: SystemTime::now(),
            request_id: None,
            client_ip: None,
            client_pseudonym: None,
            principal: None,
            method: None,
            route: None,
            route_matched: false,
            username: None,
            action: None,
            outcome: None,
            fields: Vec::new(),
            sinks: EventSinks::default(),
            pseudonymizer: None,
        }
    }

    /// An event of `kind` about the request described by `method`, `uri` and `extensions`.
    ///
    /// It captures the request id, the client IP (as resolved by [`Shield`](crate::Shield)),
    /// the [`Principal`] if one is authenticated, the method, the matched route template
    /// ([`MatchedPath`]; the path without query string when no route matched), and the
    /// Shield's sinks and pseudonymization key. The query string is never captured.
    pub fn for_request(
        kind: SecurityEventKind,
        method: &Method,
        uri: &http::Uri,
        extensions: &http::Extensions,
    ) -> Self {
        let mut event = Self::new(kind);
        event.pseudonymizer = extensions.get::<Pseudonymizer>().cloned();
        event.request_id = crate::request_id::of(extensions).map(|id| Arc::from(escape(id)));
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            event = event.with_client_ip(*ip);
        }
        if let Some(principal) = extensions.get::<Principal>() {
            event = event.principal(principal.id());
        }
        event.method = Some(method.clone());
        match extensions.get::<MatchedPath>() {
            Some(matched) => {
                event.route = Some(Arc::from(escape(matched.as_str())));
                event.route_matched = true;
            }
            None => event.route = Some(Arc::from(escape(uri.path()))),
        }
        if let Some(sinks) = extensions.get::<EventSinks>() {
            event.sinks = sinks.clone();
        }
        event
    }

    /// Whether an event of `kind` for a request with these `extensions` would reach anyone:
    /// a `tracing` subscriber listening at the kind's level on the target
    /// `axum_shield::security`, a sink
    /// that [`Shield`](crate::Shield) put in the extensions, or (feature `metrics`) the
    /// counter. Hot refusal paths check it before building an event, as `tracing` does for
    /// its own macros, so that refusing a flood costs no more than serving it.
    pub fn is_wanted(kind: SecurityEventKind, extensions: &http::Extensions) -> bool {
        if cfg!(feature = "metrics") {
            return true;
        }
        if extensions
            .get::<EventSinks>()
            .is_some_and(|s| !s.is_empty())
        {
            return true;
        }
        match kind.level() {
            tracing::Level::ERROR => {
                tracing::enabled!(target: SECURITY_TARGET, tracing::Level::ERROR)
            }
            tracing::Level::WARN => {
                tracing::enabled!(target: SECURITY_TARGET, tracing::Level::WARN)
            }
            tracing::Level::INFO => {
                tracing::enabled!(target: SECURITY_TARGET, tracing::Level::INFO)
            }
            tracing::Level::DEBUG => {
                tracing::enabled!(target: SECURITY_TARGET, tracing::Level::DEBUG)
            }
            _ => tracing::enabled!(target: SECURITY_TARGET, tracing::Level::TRACE),
        }
    }

    /// A copy of the request extensions [`for_request`](Self::for_request) reads (request id,
    /// client IP, principal, matched route, sinks, pseudonymization key), for a layer or
    /// extractor that consumes the request but may report about it later.
    pub(crate) fn context_of(extensions: &http::Extensions) -> http::Extensions {
        let mut context = http::Extensions::new();
        if let Some(id) = extensions.get::<crate::request_id::RequestId>() {
            context.insert(id.clone());
        }
        if let Some(ip) = extensions.get::<ClientIp>() {
            context.insert(*ip);
        }
        if let Some(principal) = extensions.get::<Principal>() {
            context.insert(principal.clone());
        }
        if let Some(route) = extensions.get::<MatchedPath>() {
            context.insert(route.clone());
        }
        if let Some(sinks) = extensions.get::<EventSinks>() {
            context.insert(sinks.clone());
        }
        if let Some(p) = extensions.get::<Pseudonymizer>() {
            context.insert(p.clone());
        }
        context
    }

    /// Like [`for_request`](Self::for_request), from request parts.
    pub fn for_parts(kind: SecurityEventKind, parts: &http::request::Parts) -> Self {
        Self::for_request(kind, &parts.method, &parts.uri, &parts.extensions)
    }

    /// A short machine-readable reason, e.g. `expired` or `bad_signature` (escaped unless it
    /// is a `&'static str`).
    pub fn reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = match reason.into() {
            Cow::Borrowed(text) => Cow::Borrowed(text),
            Cow::Owned(text) => Cow::Owned(escape_owned(text)),
        };
        self
    }

    /// Overrides the level the event is logged at (default: [`SecurityEventKind::level`]).
    pub fn at_level(mut self, level: tracing::Level) -> Self {
        self.level = level;
        self
    }

    /// Sets the client IP (pseudonymized when the Shield has a key).
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        match &self.pseudonymizer {
            Some(p) => {
                self.client_pseudonym = Some(p.ip(ip));
                self.client_ip = None;
            }
            None => self.client_ip = Some(ip),
        }
        self
    }

    /// Sets the principal id (when it is not yet in the request extensions, e.g. at login);
    /// escaped, and pseudonymized when the Shield has a key.
    pub fn principal(mut self, id: impl AsRef<str>) -> Self {
        self.principal = Some(self.user_text(id.as_ref()));
        self
    }

    /// Sets the user name a login or action was attempted for; escaped, and pseudonymized
    /// when the Shield has a key. Use it instead of a free field so privacy settings apply.
    pub fn username(mut self, name: impl AsRef<str>) -> Self {
        self.username = Some(self.user_text(name.as_ref()));
        self
    }

    /// Names the high-risk action and its outcome (for [`SecurityEventKind::SensitiveAction`];
    /// [`Audit`](super::Audit) sets both).
    pub fn action(mut self, action: impl Into<Cow<'static, str>>, outcome: ActionOutcome) -> Self {
        self.action = Some(match action.into() {
            Cow::Borrowed(text) => Cow::Borrowed(text),
            Cow::Owned(text) => Cow::Owned(escape_owned(text)),
        });
        self.outcome = Some(outcome);
        self
    }

    /// Adds a named field, e.g. `("scope", "orders:write")`. Its value is escaped now.
    /// Never pass a credential or a submitted value.
    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, escape_owned(value.into())));
        self
    }

    /// Uses `pseudonymizer` for the identities set from now on (set by
    /// [`for_request`](Self::for_request) when the Shield has a key).
    pub fn pseudonymize_with(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    fn user_text(&self, text: &str) -> Arc<str> {
        match &self.pseudonymizer {
            Some(p) => Arc::from(p.user(text).as_str()),
            None => Arc::from(escape(text)),
        }
    }

    /// The kind of event.
    pub fn kind(&self) -> SecurityEventKind {
        self.kind
    }

    /// The level the event is logged at.
    pub fn level(&self) -> tracing::Level {
        self.level
    }

    /// When the event was created.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// The reason, empty when none was given.
    pub fn reason_text(&self) -> &str {
        &self.reason
    }

    /// The request id, when known.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The client IP, when known and not pseudonymized.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The client IP as logged: the address, or its pseudonym.
    pub fn client_ip_text(&self) -> Option<String> {
        match (&self.client_pseudonym, self.client_ip) {
            (Some(p), _) => Some(p.as_str().to_owned()),
            (None, Some(ip)) => Some(ip.to_string()),
            (None, None) => None,
        }
    }

    /// The principal id (or its pseudonym), when known.
    pub fn principal_id(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The user name (or its pseudonym), when set.
    pub fn username_text(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The request method, when known.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The matched route template (e.g. `/users/{id}`), or the path without query string when
    /// no route matched; `None` outside a request.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The route used as a metrics label: the matched template, or `unmatched` (raw paths
    /// would let a scanner create unbounded label values).
    pub fn route_label(&self) -> &str {
        match (&self.route, self.route_matched) {
            (Some(route), true) => route,
            _ => "unmatched",
        }
    }

    /// The high-risk action, when this is a [`SecurityEventKind::SensitiveAction`].
    pub fn action_name(&self) -> Option<&str> {
        self.action.as_deref()
    }

    /// The outcome of the high-risk action.
    pub fn outcome(&self) -> Option<ActionOutcome> {
        self.outcome
    }

    /// Extra fields (values escaped).
    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.fields
    }

    /// Sends the event to `tracing` (target `axum_shield::security`), to the `metrics` counter
    /// `axum_shield_security_events_total{event, route}` (with the `metrics` feature) and to
    /// every sink.
    ///
    /// Every string field was escaped on entry, so it holds no control character. In
    /// `tracing-subscriber`'s text formats a user-controlled value that holds whitespace, `=`
    /// or `"` is also quoted (it is recorded as a string, which those formats quote and
    /// escape), so a user name like `bob reason=ok` cannot print a forged `reason=ok` pair;
    /// other values are written bare (recorded with `Display`). `fields` is JSON, always
    /// quoted there. JSON formatters write the same strings either way.
    pub fn emit(self) {
        let client_ip = self.client_ip_display();
        let fields = (!self.fields.is_empty()).then_some(FieldsJson(&self.fields));
        macro_rules! log {
            ($level:expr) => {
                tracing::event!(
                    target: SECURITY_TARGET,
                    $level,
                    event = display(self.kind.name()),
                    reason = (!self.reason.is_empty())
                        .then(|| LogText::new(&self.reason))
                        .as_ref()
                        .map(LogText::value),
                    request_id = self.request_id.as_deref().map(LogText::new).as_ref().map(LogText::value),
                    client_ip = client_ip.as_ref().map(display),
                    principal = self.principal.as_deref().map(LogText::new).as_ref().map(LogText::value),
                    username = self.username.as_deref().map(LogText::new).as_ref().map(LogText::value),
                    method = self.method.as_ref().map(|m| display(m.as_str())),
                    route = self.route.as_deref().map(LogText::new).as_ref().map(LogText::value),
                    action = self.action.as_deref().map(LogText::new).as_ref().map(LogText::value),
                    outcome = self.outcome.map(|o| display(o.as_str())),
                    fields = fields.as_ref().map(ToString::to_string),
                    "security event"
                )
            };
        }
        match self.level {
            tracing::Level::ERROR => log!(tracing::Level::ERROR),
            tracing::Level::WARN => log!(tracing::Level::WARN),
            tracing::Level::INFO => log!(tracing::Level::INFO),
            tracing::Level::DEBUG => log!(tracing::Level::DEBUG),
            _ => log!(tracing::Level::TRACE),
        }
        #[cfg(feature = "metrics")]
        metrics::counter!(
            super::counters::SECURITY_EVENTS_TOTAL,
            "event" => self.kind.name(),
            "route" => self.route_label().to_owned(),
        )
        .increment(1);
        for sink in self.sinks.0.iter() {
            sink.record(&self);
        }
    }

    fn client_ip_display(&self) -> Option<ClientIpDisplay> {
        match (self.client_pseudonym, self.client_ip) {
            (Some(p), _) => Some(ClientIpDisplay::Pseudonym(p)),
            (None, Some(ip)) => Some(ClientIpDisplay::Ip(ip)),
            (None, None) => None,
        }
    }
}

enum ClientIpDisplay {
    Ip(IpAddr),
    Pseudonym(Pseudonym),
}

impl fmt::Display for ClientIpDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => fmt::Display::fmt(ip, f),
            Self::Pseudonym(p) => f.write_str(p.as_str()),
        }
    }
}

/// Extra fields as one JSON object, e.g. `{"scope":"orders:write"}`.
struct FieldsJson<'a>(&'a [(&'static str, String)]);

impl fmt::Display for FieldsJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
            .collect();
        f.write_str(&serde_json::Value::Object(map).to_string())
    }
}

/// The event as one JSON object with the documented schema (absent values are omitted;
/// `timestamp_ms` is milliseconds since the Unix epoch), for sinks that forward events.
impl Serialize for SecurityEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event", self.kind.name())?;
        map.serialize_entry("level", self.level.as_str())?;
        let millis = self
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        map.serialize_entry("timestamp_ms", &millis)?;
        if !self.reason.is_empty() {
            map.serialize_entry("reason", &*self.reason)?;
        }
        if let Some(id) = &self.request_id {
            map.serialize_entry("request_id", &**id)?;
        }
        if let Some(ip) = self.client_ip_display() {
            map.serialize_entry("client_ip", &ip.to_string())?;
        }
        if let Some(principal) = &self.principal {
            map.serialize_entry("principal", &**principal)?;
        }
        if let Some(username) = &self.username {
            map.serialize_entry("username", &**username)?;
        }
        if let Some(method) = &self.method {
            map.serialize_entry("method", method.as_str())?;
        }
        if let Some(route) = &self.route {
            map.serialize_entry("route", &**route)?;
        }
        if let Some(action) = &self.action {
            map.serialize_entry("action", &**action)?;
        }
        if let Some(outcome) = self.outcome {
            map.serialize_entry("outcome", outcome.as_str())?;
        }
        if !self.fields.is_empty() {
            let fields: serde_json::Map<String, serde_json::Value> = self
                .fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
                .collect();
            map.serialize_entry("fields", &fields)?;
        }
        map.end()
    }
}
