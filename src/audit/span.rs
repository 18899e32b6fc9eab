//! The per-request security log span.

use std::time::Duration;

use http::{Request, Response};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::client_ip::ClientIp;
use crate::request_id;

/// The `tracing` target of the per-request span and its access line.
pub const REQUEST_TARGET: &str = "axum_shield::request";

/// Makes one span per request with the request id, client IP, method and path (never the
/// query string, which often carries secrets); `status`, `latency_ms` and `principal` are
/// recorded when known.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestSpan;

impl<B> MakeSpan<B> for MakeRequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        tracing::info_span!(
            target: REQUEST_TARGET,
            "request",
            request_id = request_id::of(request.extensions()).map(tracing::field::debug),
            client_ip = request.extensions().get::<ClientIp>().map(tracing::field::display),
            method = %request.method(),
            path = ?request.uri().path(),
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            principal = tracing::field::Empty,
        )
    }
}

/// Records status and latency on the request span and writes one access line.
#[derive(Debug, Clone, Copy)]
pub struct OnRequestEnd {
    pub(crate) access_log: bool,
}

impl<B> OnResponse<B> for OnRequestEnd {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        span.record("status", status);
        span.record("latency_ms", latency_ms);
        if self.access_log {
            tracing::info!(target: REQUEST_TARGET, status, latency_ms, "request completed");
        }
    }
}
