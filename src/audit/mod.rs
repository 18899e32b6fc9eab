//! Security events and the security log.
//!
//! Every layer reports what it refused as a [`SecurityEvent`], named with the OWASP logging
//! vocabulary and emitted as a structured `tracing` event under one target
//! ([`SECURITY_TARGET`]), and to any [`SecurityEventSink`] you install on
//! [`Shield`](crate::Shield). [`Shield`](crate::Shield) also opens one span per request
//! ([`MakeRequestSpan`]) so that every line logged while serving it carries its request id,
//! client IP, method and path.

mod event;
mod span;

pub use event::{EventSinks, SecurityEvent, SecurityEventKind, SecurityEventSink, SECURITY_TARGET};
pub use span::{MakeRequestSpan, OnRequestEnd, REQUEST_TARGET};
