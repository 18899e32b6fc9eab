//! With the `metrics` feature, every security event increments
//! `axum_shield_security_events_total{event, route}`.
#![cfg(feature = "metrics")]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use axum_shield::audit::{SecurityEvent, SecurityEventKind};
use axum_shield::{Rejection, RejectionKind};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use support::audit::shielded;
use tower::ServiceExt;

/// The counter every security event increments (documented in `axum_shield::audit`).
const SECURITY_EVENTS_TOTAL: &str = "axum_shield_security_events_total";

type Counts = Arc<Mutex<BTreeMap<(String, Vec<(String, String)>), Arc<AtomicU64>>>>;

/// A minimal recorder that keeps counters in memory.
#[derive(Default)]
struct TestRecorder {
    counts: Counts,
}

struct Cell(Arc<AtomicU64>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let cell = self
            .counts
            .lock()
            .unwrap()
            .entry((key.name().to_owned(), labels))
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(Cell(cell)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl TestRecorder {
    fn count(&self, event: &str, route: &str) -> u64 {
        let labels = vec![
            ("event".to_owned(), event.to_owned()),
            ("route".to_owned(), route.to_owned()),
        ];
        self.counts
            .lock()
            .unwrap()
            .get(&(SECURITY_EVENTS_TOTAL.to_owned(), labels))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

async fn deny(req: Request, _next: Next) -> Response {
    SecurityEvent::for_request(
        SecurityEventKind::AuthnTokenMissing,
        req.method(),
        req.uri(),
        req.extensions(),
    )
    .reason("missing")
    .emit();
    Rejection::new(RejectionKind::MissingCredentials).into_response()
}

#[tokio::test(flavor = "current_thread")]
async fn security_events_are_counted_by_event_and_route_template() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    axum_shield::audit::describe_metrics();
    let app = shielded(
        Router::new()
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(from_fn(deny)),
    );
    for id in 0..3 {
        let req = http::Request::post(format!("/orders/{id}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(recorder.count("authn_token_missing", "/orders/{id}"), 3);

    // Outside a matched route the label is `unmatched`, never the raw path.
    SecurityEvent::new(SecurityEventKind::SysDependencyFail)
        .reason("redis_down")
        .emit();
    assert_eq!(recorder.count("sys_dependency_fail", "unmatched"), 1);
    let routes: Vec<String> = recorder
        .counts
        .lock()
        .unwrap()
        .keys()
        .flat_map(|(_, labels)| labels.iter().map(|(_, v)| v.clone()))
        .collect();
    assert!(!routes.iter().any(|r| r.starts_with("/orders/0")));
}
