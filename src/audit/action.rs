//! [`Audit`]: record high-risk actions from handlers.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;

use axum::extract::{FromRequestParts, MatchedPath};
use http::request::Parts;
use http::{Method, Uri};

use super::event::{ActionOutcome, EventSinks, SecurityEvent, SecurityEventKind};
use super::pseudonym::Pseudonymizer;
use crate::client_ip::ClientIp;
use crate::principal::Principal;
use crate::request_id::RequestId;

/// Extractor that records high-risk actions (and other security events) of a request with its
/// request id, client IP, principal, method and route.
///
/// The guide's example logs `format!("sensitive action attempted by {user}")`: a user name
/// with CR/LF forges a line, and nothing records whether the action then succeeded. With
/// `Audit` every attempt gets exactly one outcome — `completed`, `failed`, or `failed` with
/// reason `abandoned` if the handler returns early or the client disconnects — as
/// `sensitive_action` events with structured, escaped fields (OWASP Logging Vocabulary,
/// `sensitive_*`; OWASP Logging Cheat Sheet: log "use of higher-risk functionality").
///
/// ```
/// use axum::{http::StatusCode, routing::post, Router};
/// use axum_shield::audit::Audit;
///
/// async fn delete_account(audit: Audit) -> StatusCode {
///     let action = audit.attempt("delete_account");   // sensitive_action outcome=attempted
///     match remove_everything().await {
///         Ok(()) => {
///             action.completed();                       // outcome=completed
///             StatusCode::NO_CONTENT
///         }
///         Err(_) => {
///             action.failed("storage_error");           // outcome=failed, at WARN
///             StatusCode::SERVICE_UNAVAILABLE
///         }
///     }
/// }
/// # async fn remove_everything() -> Result<(), ()> { Ok(()) }
/// let app: Router = Router::new().route("/account/delete", post(delete_account));
/// ```
///
/// Or in one call around a fallible future: [`Audit::run`].
#[derive(Debug, Clone)]
pub struct Audit {
    method: Method,
    uri: Uri,
    extensions: http::Extensions,
}

impl Audit {
    /// The audit context of a request, from its parts.
    pub fn from_parts(parts: &Parts) -> Self {
        let source = &parts.extensions;
        let mut extensions = http::Extensions::new();
        macro_rules! copy {
            ($($ty:ty),*) => {$(
                if let Some(value) = source.get::<$ty>() {
                    extensions.insert(value.clone());
                }
            )*};
        }
        copy!(
            RequestId,
            ClientIp,
            Principal,
            MatchedPath,
            EventSinks,
            Pseudonymizer
        );
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            extensions,
        }
    }

    /// A security event of `kind` about this request (e.g. `authn_login_success` from a
    /// login handler); add a reason or user name and [`emit`](SecurityEvent::emit) it.
    pub fn event(&self, kind: SecurityEventKind) -> SecurityEvent {
        SecurityEvent::for_request(kind, &self.method, &self.uri, &self.extensions)
    }

    /// Records that `action` is attempted and returns the guard on which to record its
    /// outcome. Dropping the guard without an outcome records `failed` / `abandoned`.
    pub fn attempt(&self, action: impl Into<Cow<'static, str>>) -> AuditedAction {
        let action = action.into();
        self.event(SecurityEventKind::SensitiveAction)
            .action(action.clone(), ActionOutcome::Attempted)
            .emit();
        AuditedAction {
            audit: Some(self.clone()),
            action,
            fields: Vec::new(),
        }
    }

    /// Runs `work` as the high-risk `action`: records `attempted`, then `completed` on `Ok`
    /// or `failed` (reason `error`) on `Err`. The error itself is not logged, since it may
    /// hold user data; log it yourself if it is safe.
    ///
    /// # Errors
    ///
    /// Returns `work`'s error unchanged.
    pub async fn run<T, E, F>(&self, action: impl Into<Cow<'static, str>>, work: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let guard = self.attempt(action);
        let result = work.await;
        match &result {
            Ok(_) => guard.completed(),
            Err(_) => guard.failed("error"),
        }
        result
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

/// A high-risk action in progress, from [`Audit::attempt`]. Record its outcome with
/// [`completed`](Self::completed) or [`failed`](Self::failed); if it is dropped without one,
/// `failed` with reason `abandoned` is recorded.
#[derive(Debug)]
#[must_use = "record the outcome with .completed() or .failed(reason)"]
pub struct AuditedAction {
    audit: Option<Audit>,
    action: Cow<'static, str>,
    fields: Vec<(&'static str, String)>,
}

impl AuditedAction {
    /// Adds a field to the outcome event (escaped; never a credential or submitted secret).
    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// Records `completed` (INFO).
    pub fn completed(mut self) {
        self.finish(ActionOutcome::Completed, Cow::Borrowed(""));
    }

    /// Records `failed` (WARN) with a short machine-readable `reason`.
    pub fn failed(mut self, reason: impl Into<Cow<'static, str>>) {
        self.finish(ActionOutcome::Failed, reason.into());
    }

    fn finish(&mut self, outcome: ActionOutcome, reason: Cow<'static, str>) {
        let Some(audit) = self.audit.take() else {
            return;
        };
        let mut event = audit
            .event(SecurityEventKind::SensitiveAction)
            .action(self.action.clone(), outcome)
            .reason(reason);
        if outcome == ActionOutcome::Failed {
            event = event.at_level(tracing::Level::WARN);
        }
        for (name, value) in self.fields.drain(..) {
            event = event.field(name, value);
        }
        event.emit();
    }
}

impl Drop for AuditedAction {
    fn drop(&mut self) {
        self.finish(ActionOutcome::Failed, Cow::Borrowed("abandoned"));
    }
}
