//! Cost of the security headers layer per request, against a bare axum router in the same run.
//!
//! ```text
//! cargo bench --bench headers -- --warm-up-time 1 --measurement-time 3
//! ```

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_shield::headers::{
    ContentSecurityPolicy, Directive, SecurityHeadersLayer, Source, TlsConnection,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::convert::Infallible;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use tower::Layer;
use tower::ServiceExt;

fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn request(tls: bool) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    if tls {
        req.extensions_mut().insert(TlsConnection);
    }
    req
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let api = bare().layer(SecurityHeadersLayer::api().build().unwrap());
    let nonce_csp = ContentSecurityPolicy::web()
        .directive(Directive::ScriptSrc, [Source::Nonce, Source::StrictDynamic]);
    let web_nonce = bare().layer(SecurityHeadersLayer::web().csp(nonce_csp).build().unwrap());

    let mut group = c.benchmark_group("headers");
    for (name, app, tls) in [
        ("bare_router", bare(), false),
        ("api_preset_http", api.clone(), false),
        ("api_preset_https_hsts", api, true),
        ("web_preset_with_nonce", web_nonce, false),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| app.clone().oneshot(request(tls)));
        });
    }
    group.finish();

    // The layer alone around a service that returns a fresh JSON-like response: no routing,
    // no boxing, so the difference is the header work itself.
    let inner = || {
        tower::service_fn(|_req: Request<Body>| async {
            let mut res = Response::new(Body::empty());
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(res)
        })
    };
    let layer = SecurityHeadersLayer::api().build().unwrap();
    let wrapped = layer.layer(inner());
    let mut group = c.benchmark_group("layer_only");
    group.bench_function("bare_service", |b| {
        let svc = inner();
        b.to_async(&rt).iter(|| svc.oneshot(request(false)));
    });
    group.bench_function("api_preset", |b| {
        b.to_async(&rt)
            .iter(|| wrapped.clone().oneshot(request(false)));
    });
    group.bench_function("bare_service_again", |b| {
        let svc = inner();
        b.to_async(&rt).iter(|| svc.oneshot(request(false)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
