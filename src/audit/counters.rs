//! Security-event counters through the [`metrics`](https://docs.rs/metrics) facade.

/// The counter every emitted [`SecurityEvent`](super::SecurityEvent) increments, with labels
/// `event` (the OWASP name, e.g. `authz_fail`) and `route` (the matched route template, or
/// `unmatched`, so scanners cannot create unbounded label values).
///
/// Install any `metrics` recorder (Prometheus exporter, StatsD…) and alert on it, e.g.
/// `rate(axum_shield_security_events_total{event="authn_token_invalid"}[5m])`.
pub const SECURITY_EVENTS_TOTAL: &str = "axum_shield_security_events_total";

#[cfg(feature = "metrics")]
/// Registers the description of [`SECURITY_EVENTS_TOTAL`] with the installed recorder
/// (optional; call it once after installing the recorder).
pub fn describe_metrics() {
    ::metrics::describe_counter!(
        SECURITY_EVENTS_TOTAL,
        ::metrics::Unit::Count,
        "Security events emitted by axum-shield, by OWASP event name and route."
    );
}
