//! The cost of `Shield::api()` over a bare axum router, in process (`oneshot`).
//!
//! ```text
//! cargo bench --bench stack
//! ```
//!
//! Both routers serve the same handler; the difference is the stack. Read the results as a
//! ratio (and an absolute difference) between the two lines of the same run: the machines this
//! runs on are shared and noisy.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::routing::get;
use axum::Router;
use axum_shield::Shield;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;

fn routes() -> Router {
    Router::new().route("/health", get(|| async { "ok" }))
}

fn request() -> Request<Body> {
    Request::get("/health")
        .header("user-agent", "bench")
        .body(Body::empty())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)));
    // `with_state(())` turns handlers into services once, as `axum::serve` does; without it a
    // `Router<()>` called directly re-applies its layers on every request.
    let bare = routes().layer(peer).with_state(());
    let shield = routes()
        .layer(Shield::api().access_log(false).build().unwrap())
        .layer(peer)
        .with_state(());

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare_router", |b| {
        b.to_async(&rt).iter(|| async {
            let response = bare.clone().oneshot(request()).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    group.bench_function("shield_api", |b| {
        b.to_async(&rt).iter(|| async {
            let response = shield.clone().oneshot(request()).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    group.bench_function("shield_api_404_problem", |b| {
        b.to_async(&rt).iter(|| async {
            let response = shield
                .clone()
                .oneshot(Request::get("/missing").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), 404);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
