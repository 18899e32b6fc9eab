//! Security events, the per-request log span, and the audit trail.
//!
//! What a security team gets from a [`Shield`](crate::Shield)ed API, following the OWASP
//! Logging Cheat Sheet and Logging Vocabulary:
//!
//! - **one span per request** (target `axum_shield::request`) with the request
//!   id, client IP, method, matched route, principal once authenticated, status and latency,
//!   and one INFO access line per request (switch it off with
//!   [`ShieldBuilder::access_log`](crate::shield::ShieldBuilder::access_log));
//! - **one [`SecurityEvent`] for every refusal** any layer makes, named with the OWASP
//!   vocabulary ([`SecurityEventKind`]), emitted under one target (`axum_shield::security`) at a
//!   level chosen per kind (client mistakes at INFO, attacks at WARN, crashes at ERROR), to
//!   your [`SecurityEventSink`]s (e.g. a non-blocking [`ChannelSink`] to a SIEM) and, with the
//!   `metrics` feature, to the counter `axum_shield_security_events_total{event, route}`
//!   (see `describe_metrics`);
//! - **high-risk actions** recorded from handlers with [`Audit`]: attempted, then completed or
//!   failed, with principal and request id;
//! - **output you can trust**: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
//!   `X-Api-Key` and your API-key headers are marked sensitive around the request span; query
//!   strings are not logged unless you ask; every user-controlled string is escaped
//!   ([below](#formatters)) so CR/LF or ANSI sequences cannot forge or hide lines; client IPs, principals and user
//!   names can be replaced by keyed pseudonyms ([`Pseudonymizer`],
//!   [`ShieldBuilder::pseudonymize`](crate::shield::ShieldBuilder::pseudonymize)).
//!
//! # The request span
//!
//! Span `request`, target `axum_shield::request`, level INFO. Its fields:
//!
//! | field | type | when | meaning |
//! |---|---|---|---|
//! | `request_id` | string | always under Shield | the `x-request-id` echoed to the client |
//! | `client_ip` | string | always under Shield | client address from the trusted-proxy resolver, or its 32-hex pseudonym |
//! | `method` | string | always | HTTP method |
//! | `route` | string | always | matched route template (`/users/{id}`), else the path without query |
//! | `query` | string | only with `log_query(true)` | the escaped query string |
//! | `principal` | string | once authenticated | principal id (JWT `sub`, API-key id) or its pseudonym |
//! | `status` | integer | at response, access line off | final status code, including rejections and panics |
//! | `latency_ms` | float | at response, access line off | time to the response head, in milliseconds (µs precision) |
//!
//! The access line is the event `request completed` (target `axum_shield::request`, INFO)
//! with `status` and `latency_ms`, inside the span. When it is on, `status` and `latency_ms`
//! are on it rather than recorded on the span too (that re-serializes the span's fields in
//! JSON subscribers and cost about half of the log's overhead). Authentication layers record
//! the principal with [`record_principal`].
//!
//! # Security events
//!
//! Event message `security event`, target `axum_shield::security`. Its fields (absent ones
//! are omitted):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `event` | string | OWASP name: `authn_login_success`, `authn_login_fail`, `authn_login_lock`, `authn_token_created`, `authn_token_missing`, `authn_token_invalid`, `authn_token_revoked`, `authz_fail`, `input_validation_fail`, `excess_rate_limit_exceeded`, `malicious_header`, `sensitive_action`, `data_exposure_blocked`, `sys_crash`, `sys_dependency_fail` |
//! | `reason` | string | short machine-readable cause: `missing`, `expired`, `bad_signature`, `insufficient_scope`, `panic`… |
//! | `request_id` | string | as in the span |
//! | `client_ip` | string | as in the span |
//! | `principal` | string | authenticated principal or its pseudonym |
//! | `username` | string | user name of a login attempt, escaped or pseudonymized |
//! | `method` | string | HTTP method |
//! | `route` | string | matched route template, else path without query |
//! | `action` | string | high-risk action name (`sensitive_action` only) |
//! | `outcome` | string | `attempted`, `completed` or `failed` (`sensitive_action` only) |
//! | `fields` | string | other details as one JSON object, e.g. `{"scope":"orders:write"}` |
//!
//! Sinks receive the [`SecurityEvent`]; serialized with serde it is one JSON object with the
//! same names plus `level` and `timestamp_ms`, and `fields` as a nested object.
//!
//! Levels: `authn_login_success`, `authn_token_created`, `authn_token_missing`,
//! `input_validation_fail`, `sensitive_action` at INFO (a failed action at WARN);
//! `sys_crash` at ERROR; the others at WARN.
//!
//! # Formatters
//!
//! `tracing-subscriber`'s `fmt` (checked with 0.3.23) writes `%` values verbatim and only
//! sanitises ANSI in messages, so this crate escapes values itself before they reach any
//! subscriber: a user name `"x\r\n\x1b[2K"` is logged as `x\r\n\u{1b}[2K` on one line.
//! In its text formats, a user-controlled value (user name, principal, route, query, reason,
//! action, `fields`) that holds whitespace, `=` or `"` is also quoted, `"` and `\` escaped
//! inside, so it cannot print forged `key=value` pairs: `username="bob reason=ok"`, not
//! `username=bob reason=ok`. Other values stay bare (`username=alice`); JSON output carries
//! the same string values either way.
//!
//! For JSON lines, the `json-log` feature (off by default: it adds `tracing-subscriber` to
//! the dependencies) adds `JsonLines` and `JsonLinesFields`, a formatter for
//! `tracing-subscriber`'s `fmt` layer that writes the same line shape as its
//! `.json().with_current_span(true).with_span_list(false)` at a fraction of the cost: span
//! fields are serialized once, not re-parsed for every line. It also adds `LogWriter`, a
//! non-blocking writer for the `fmt` layer that appends each line to a shared buffer and
//! writes the lines in batches from one worker thread (no allocation and no thread wake-up
//! per line, unlike `tracing-appender`'s `non_blocking`). Without the feature,
//! `tracing-subscriber`'s own `.json()` writes the same fields.

mod action;
#[cfg(feature = "metrics")]
mod counters;
mod escape;
mod event;
#[cfg(feature = "json-log")]
mod json;
mod layer;
mod pseudonym;
mod sink;
mod span;
#[cfg(feature = "json-log")]
mod writer;

pub use action::{Audit, AuditedAction};
#[cfg(feature = "metrics")]
pub use counters::describe_metrics;
pub(crate) use event::EventSinks;
pub use event::{ActionOutcome, SecurityEvent, SecurityEventKind, SecurityEventSink};
#[cfg(feature = "json-log")]
pub use json::{json_lines_layer, JsonLines, JsonLinesFields};
pub(crate) use layer::{
    mark_sensitive, LogSettings, PanicMessage, RequestAuditLayer, DEFAULT_SENSITIVE_HEADERS,
};
pub use pseudonym::{Pseudonym, Pseudonymizer};
pub use sink::ChannelSink;
pub use span::record_principal;
pub(crate) use span::OnRequestEnd;
#[cfg(feature = "json-log")]
pub use writer::{LogWriter, LogWriterBuilder, LogWriterGuard};

/// The target every security event is emitted under, for filtering:
/// `RUST_LOG=axum_shield::security=info`.
pub(crate) const SECURITY_TARGET: &str = "axum_shield::security";
