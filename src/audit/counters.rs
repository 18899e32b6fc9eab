//! Security-event counters through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`).

/// The counter every emitted [`SecurityEvent`](super::SecurityEvent) increments (see the
/// module docs).
pub(crate) const SECURITY_EVENTS_TOTAL: &str = "axum_shield_security_events_total";

/// Registers the description of the counter `axum_shield_security_events_total` with the
/// installed `metrics` recorder (optional; call it once after installing the recorder).
///
/// Every emitted [`SecurityEvent`](super::SecurityEvent) increments that counter, with labels
/// `event` (the OWASP name, e.g. `authz_fail`) and `route` (the matched route template, or
/// `unmatched`, so scanners cannot create unbounded label values). Install any `metrics`
/// recorder (Prometheus exporter, StatsD…) and alert on it, e.g.
/// `rate(axum_shield_security_events_total{event="authn_token_invalid"}[5m])`.
pub fn describe_metrics() {
    ::metrics::describe_counter!(
        SECURITY_EVENTS_TOTAL,
        ::metrics::Unit::Count,
        "Security events emitted by axum-shield, by OWASP event name and route."
    );
}
