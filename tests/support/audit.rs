//! Shared helpers of the audit tests: capture everything a subscriber writes.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::Extension;
use axum::Router;
use serde_json::Value;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::format::FmtSpan;

/// Bytes written by a subscriber.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// A writer into this capture (for writers that take an `io::Write`).
    pub fn output(&self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }

    fn writer(&self) -> impl Fn() -> CaptureWriter + Send + Sync + 'static {
        let buf = self.0.clone();
        move || CaptureWriter(buf.clone())
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// JSON lines written so far.
    pub fn json(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    /// Security events (JSON) named `name`.
    pub fn events(&self, name: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|line| line["fields"]["event"] == name)
            .collect()
    }

    /// The one security event named `name`.
    pub fn event(&self, name: &str) -> Value {
        let events = self.events(name);
        assert_eq!(events.len(), 1, "expected one {name}: {}", self.text());
        events.into_iter().next().unwrap()
    }

    /// Access lines (JSON).
    pub fn access_lines(&self) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|line| line["fields"]["message"] == "request completed")
            .collect()
    }
}

/// A JSON subscriber at `max_level` for this thread, with the current span on every line.
pub fn json_capture(max_level: tracing::Level) -> (Capture, DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(max_level)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(capture.writer())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

/// A subscriber writing `axum_shield::audit::JsonLines` at `max_level` for this thread.
#[cfg(feature = "json-log")]
pub fn json_lines_capture(max_level: tracing::Level) -> (Capture, DefaultGuard) {
    use axum_shield::audit::{JsonLines, JsonLinesFields};
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .fmt_fields(JsonLinesFields::new())
        .event_format(JsonLines::new())
        .with_writer(capture.writer())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

/// A plain-text subscriber at `max_level` for this thread, logging span opens and closes.
pub fn text_capture(max_level: tracing::Level, ansi: bool) -> (Capture, DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .with_ansi(ansi)
        .with_span_events(FmtSpan::FULL)
        .with_writer(capture.writer())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

pub const CLIENT: &str = "203.0.113.9:40000";

/// `router` behind a default Shield, with a mock client address.
pub fn shielded(router: Router) -> Router {
    shielded_with(router, axum_shield::Shield::api())
}

/// `router` behind the Shield built from `builder`, with a mock client address.
///
/// (`MockConnectInfo` is not enough: `Shield` reads `ConnectInfo<SocketAddr>` itself.)
pub fn shielded_with(router: Router, builder: axum_shield::shield::ShieldBuilder) -> Router {
    let addr: SocketAddr = CLIENT.parse().unwrap();
    router
        .layer(builder.build().unwrap())
        .layer(Extension(ConnectInfo(addr)))
}
