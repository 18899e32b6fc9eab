//! Cost of the security log: the Shield stack with an INFO JSON subscriber writing through a
//! non-blocking writer into `io::sink()`, against the same stack with logging off and a bare
//! router, in the same run; with tracing-subscriber's `.json()` formatter and with this
//! crate's `audit::JsonLines` through `tracing-appender`'s `non_blocking`, with
//! `audit::JsonLines` through this crate's batching `audit::LogWriter`, and each formatter
//! alone (`_sync_sink`: written on the request's thread, without a non-blocking writer).
//!
//! ```text
//! cargo bench --bench logging -- --warm-up-time 1 --measurement-time 3
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum_shield::audit::{JsonLines, JsonLinesFields, LogWriter, SecurityEvent, SecurityEventKind};
use axum_shield::{Rejection, RejectionKind, Shield};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;

fn routes() -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .route(
            "/refused",
            get(|req: axum::extract::Request| async move {
                SecurityEvent::for_request(
                    SecurityEventKind::AuthnTokenMissing,
                    req.method(),
                    req.uri(),
                    req.extensions(),
                )
                .reason("missing")
                .emit();
                Rejection::new(RejectionKind::MissingCredentials).into_response()
            }),
        )
}

fn request(uri: &'static str) -> Request<Body> {
    let addr: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// An INFO subscriber writing to `writer` with tracing-subscriber's JSON formatter (`"json"`)
/// or with `audit::JsonLines` (`"json_lines"`), both with the current span on every line.
fn subscriber<W>(formatter: &str, writer: W) -> tracing::Dispatch
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(writer);
    if formatter == "json" {
        tracing::Dispatch::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        )
    } else {
        tracing::Dispatch::new(
            builder
                .fmt_fields(JsonLinesFields::new())
                .event_format(JsonLines::new())
                .finish(),
        )
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = routes();
    let shielded = routes().layer(Shield::api().build().unwrap());
    // The floor: the bare router with tower-http's TraceLayer, one INFO span with one field
    // and one INFO line per request — what any request log costs with this subscriber.
    let floor = routes().layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(
                |req: &Request<Body>| tracing::info_span!("request", method = %req.method()),
            )
            .on_response(
                |res: &Response, latency: std::time::Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), ?latency, "done")
                },
            ),
    );
    let quiet = routes().layer(Shield::api().access_log(false).build().unwrap());
    let pseudonymized = routes().layer(Shield::api().pseudonymize([7u8; 32]).build().unwrap());
    let run = |app: &Router, uri: &'static str| {
        let app = app.clone();
        async move {
            let response: Response = app.oneshot(request(uri)).await.unwrap();
            assert!(response.status().as_u16() < 500);
            response
        }
    };

    let mut group = c.benchmark_group("logging");
    // No subscriber has been installed yet: this is logging off.
    group.bench_function("bare_router", |b| {
        b.to_async(&rt).iter(|| run(&bare, "/orders/7"))
    });
    group.bench_function("shield_logging_off", |b| {
        b.to_async(&rt).iter(|| run(&shielded, "/orders/7"))
    });
    group.bench_function("shield_logging_off_refused", |b| {
        b.to_async(&rt).iter(|| run(&shielded, "/refused"))
    });

    // The same requests under each JSON formatter, each writing into `io::sink()` through a
    // non-blocking writer: tracing-subscriber's `.json()` (suffix `json`) and this crate's
    // `audit::JsonLines` (suffix `json_lines`) through tracing-appender's `non_blocking`, and
    // `audit::JsonLines` through this crate's `audit::LogWriter` (suffix
    // `json_lines_log_writer`).
    let mut writers: Vec<(&str, tracing::Dispatch, Box<dyn std::any::Any>)> = Vec::new();
    for formatter in ["json", "json_lines"] {
        let (writer, worker) = tracing_appender::non_blocking(std::io::sink());
        writers.push((formatter, subscriber(formatter, writer), Box::new(worker)));
    }
    let (writer, worker) = LogWriter::new(std::io::sink());
    writers.push((
        "json_lines_log_writer",
        subscriber("json_lines", writer),
        Box::new(worker),
    ));
    for (name, dispatch, _worker) in &writers {
        let _guard = tracing::dispatcher::set_default(dispatch);
        group.bench_function(format!("bare_router_min_trace_info_{name}"), |b| {
            b.to_async(&rt).iter(|| run(&floor, "/orders/7"))
        });
        group.bench_function(format!("shield_info_{name}"), |b| {
            b.to_async(&rt).iter(|| run(&shielded, "/orders/7"))
        });
        group.bench_function(format!("shield_info_{name}_no_access_line"), |b| {
            b.to_async(&rt).iter(|| run(&quiet, "/orders/7"))
        });
        group.bench_function(format!("shield_info_{name}_refused"), |b| {
            b.to_async(&rt).iter(|| run(&shielded, "/refused"))
        });
        group.bench_function(format!("shield_info_{name}_pseudonymized"), |b| {
            b.to_async(&rt).iter(|| run(&pseudonymized, "/orders/7"))
        });
    }
    // The formatter alone: the same subscriber writing into `io::sink()` on the request's
    // thread, without the non-blocking writer's channel and worker thread.
    for formatter in ["json", "json_lines"] {
        let dispatch = subscriber(formatter, std::io::sink);
        let _guard = tracing::dispatcher::set_default(&dispatch);
        group.bench_function(format!("shield_info_{formatter}_sync_sink"), |b| {
            b.to_async(&rt).iter(|| run(&shielded, "/orders/7"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
