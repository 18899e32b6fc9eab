//! JSON guard vs plain `axum::Json`, and the redaction layer vs a bare router.
//!
//! cargo bench --bench validate -- --warm-up-time 1 --measurement-time 3

use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::validate::redact::RedactFieldsLayer;
use axum_shield::validate::{GuardedJson, JsonGuardLayer, Valid};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Batch {
    #[validate(length(max = 100000))]
    #[validate(nested)]
    items: Vec<Item>,
}

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Item {
    id: u64,
    #[validate(length(max = 64))]
    name: String,
    tags: Vec<String>,
    active: bool,
    score: f64,
}

fn body_of_size(target: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut len = 0;
    let mut id = 0;
    while len < target {
        let item = Item {
            id,
            name: format!("item number {id}"),
            tags: vec!["alpha".into(), "beta \"quoted\"".into()],
            active: id % 2 == 0,
            score: id as f64 * 1.5,
        };
        len += serde_json::to_vec(&item).unwrap().len() + 1;
        items.push(item);
        id += 1;
    }
    serde_json::to_vec(&Batch { items }).unwrap()
}

fn json_request(body: &[u8]) -> Request<Body> {
    Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn extraction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let guard = JsonGuardLayer::builder()
        .max_array_len(100_000)
        .build()
        .unwrap();
    let plain = Router::new()
        .route(
            "/",
            post(|Json(b): Json<Batch>| async move { b.items.len().to_string() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20));
    let guarded = Router::new()
        .route(
            "/",
            post(|GuardedJson(b): GuardedJson<Batch>| async move { b.items.len().to_string() }),
        )
        .layer(guard.clone())
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20));
    let valid = Router::new()
        .route(
            "/",
            post(|Valid(Json(b)): Valid<Json<Batch>>| async move { b.items.len().to_string() }),
        )
        .layer(guard.clone())
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20));

    let mut group = c.benchmark_group("json_extraction");
    for (label, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let body = body_of_size(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("serde_json_from_slice", label),
            &body,
            |b, body| b.iter(|| serde_json::from_slice::<Batch>(body).unwrap()),
        );
        for (name, app) in [
            ("axum_Json", &plain),
            ("GuardedJson", &guarded),
            ("Valid_Json", &valid),
        ] {
            group.bench_with_input(BenchmarkId::new(name, label), &body, |b, body| {
                b.to_async(&rt).iter(|| async {
                    let response = app.clone().oneshot(json_request(body)).await.unwrap();
                    assert!(response.status().is_success());
                })
            });
        }
    }
    group.finish();
}

fn redaction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let json_body = String::from_utf8(body_of_size(64 << 10)).unwrap();
    let text_body = "x".repeat(64 << 10);
    let routes = move || {
        let json_body = json_body.clone();
        let text_body = text_body.clone();
        Router::new()
            .route(
                "/json",
                get(move || {
                    let body = json_body.clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            )
            .route(
                "/text",
                get(move || {
                    let body = text_body.clone();
                    async move { body }
                }),
            )
    };
    let bare = routes();
    let redacted = routes().layer(RedactFieldsLayer::default());

    let mut group = c.benchmark_group("redaction");
    for path in ["/json", "/text"] {
        for (name, app) in [("bare", &bare), ("RedactFieldsLayer", &redacted)] {
            group.bench_function(BenchmarkId::new(name, &path[1..]), |b| {
                b.to_async(&rt).iter(|| async {
                    let response = app
                        .clone()
                        .oneshot(Request::get(path).body(Body::empty()).unwrap())
                        .await
                        .unwrap();
                    axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, extraction, redaction);
criterion_main!(benches);
