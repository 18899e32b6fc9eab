//! Rate-limit benchmarks, always against a bare axum router in the same run.
//!
//! ```text
//! cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Also prints the memory per key of a flood of 1 000 000 distinct client IPs (counted by a
//! global allocator) before the criterion groups.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use axum_shield::rate_limit::{LimitKey, Quota, RateLimitLayer};
use criterion::{black_box, criterion_group, Criterion};
use http::Request;
use tower::Layer;
use tower::ServiceExt;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ip(n: u32) -> LimitKey {
    LimitKey::Ip(IpAddr::V4(Ipv4Addr::from(n)))
}

/// Memory of a flood of 1 000 000 distinct IPs: with the cap above the flood (bytes per
/// key) and with the default cap of 100 000 (the bound that holds).
fn memory_flood() {
    for (label, cap) in [
        ("cap 1 000 000", 1_000_000usize),
        ("default cap 100 000", 100_000),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let limit = RateLimitLayer::per_ip("100/hour")
            .max_keys(cap)
            .build()
            .unwrap();
        for n in 0..1_000_000u32 {
            let _ = limit.check(&ip(0x0A00_0000 + n));
        }
        let used = LIVE.load(Ordering::Relaxed) - before;
        let keys = limit.tracked_keys();
        println!(
            "memory flood 1 000 000 IPs, {label}: {keys} keys tracked, {:.1} MiB, {:.1} bytes/key",
            used as f64 / (1024.0 * 1024.0),
            used as f64 / keys as f64
        );
        drop(limit);
    }
}

fn request() -> Request<Body> {
    let mut req = Request::builder().uri("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
    req
}

/// The status one request gets from `svc` (sanity checks before measuring).
async fn status<S, B>(svc: &S) -> u16
where
    S: tower::Service<Request<Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    svc.clone()
        .oneshot(request())
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn bench_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_memory_check");
    let allowed = RateLimitLayer::per_ip(Quota::per_second(u32::MAX))
        .build()
        .unwrap();
    let key = ip(1);
    group.bench_function("hot_key_allowed", |b| {
        b.iter(|| black_box(allowed.check(black_box(&key))))
    });
    let refused = RateLimitLayer::per_ip("1/hour").build().unwrap();
    let _ = refused.check(&key);
    group.bench_function("hot_key_refused", |b| {
        b.iter(|| black_box(refused.check(black_box(&key))))
    });
    group.finish();
}

fn bench_layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // `with_state(())` turns handlers and layers into services once, as `axum::serve` does;
    // without it a `Router<()>` called directly re-applies its layers on every request.
    let routes: Router = Router::new().route("/", get(|| async { "ok" }));
    let bare = routes.clone().with_state(());
    let limited = routes
        .clone()
        .layer(
            RateLimitLayer::per_ip(Quota::per_second(u32::MAX))
                .build()
                .unwrap(),
        )
        .with_state(());
    let refusing = routes
        .clone()
        .layer(RateLimitLayer::per_ip("1/hour").build().unwrap())
        .with_state(());
    let governor_allowed = {
        let config = tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .unwrap();
        routes
            .clone()
            .layer(tower_governor::GovernorLayer::new(Arc::new(config)))
            .with_state(())
    };
    let governor_refusing = {
        let config = tower_governor::governor::GovernorConfigBuilder::default()
            .per_second(3600)
            .burst_size(1)
            .finish()
            .unwrap();
        routes
            .clone()
            .layer(tower_governor::GovernorLayer::new(Arc::new(config)))
            .with_state(())
    };
    // Spend the single unit of the refusing limiters.
    rt.block_on(async {
        assert_eq!(status(&refusing).await, 200);
        assert_eq!(status(&refusing).await, 429);
        assert_eq!(status(&governor_refusing).await, 200);
        assert_eq!(status(&governor_refusing).await, 429);
        let ok = limited.clone().oneshot(request()).await.unwrap();
        assert!(ok.headers().contains_key("ratelimit"));
    });

    let mut group = c.benchmark_group("layer");
    for (name, app) in [
        ("bare_router", &bare),
        ("shield_allowed_with_headers", &limited),
        ("shield_refused", &refusing),
        ("tower_governor_allowed", &governor_allowed),
        ("tower_governor_refused", &governor_refusing),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(app.clone().oneshot(request()).await.unwrap()) })
        });
    }
    group.finish();

    // The layer alone around a service that answers at once with a JSON-like response (as
    // `benches/headers.rs` does): no routing and no per-layer boxing by `Router::layer`, so
    // the difference is the limiter's own work.
    let inner = || {
        tower::service_fn(|_req: Request<Body>| async {
            let mut response = http::Response::new(Body::from("ok"));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, std::convert::Infallible>(response)
        })
    };
    let alone_allowed = RateLimitLayer::per_ip(Quota::per_second(u32::MAX))
        .build()
        .unwrap()
        .layer(inner());
    let alone_refusing = RateLimitLayer::per_ip("1/hour")
        .build()
        .unwrap()
        .layer(inner());
    rt.block_on(async {
        assert_eq!(status(&alone_refusing).await, 200);
        assert_eq!(status(&alone_refusing).await, 429);
    });
    let mut group = c.benchmark_group("layer_only");
    group.bench_function("bare_service", |b| {
        let svc = inner();
        b.to_async(&rt)
            .iter(|| async { black_box(svc.oneshot(request()).await.unwrap()) })
    });
    group.bench_function("allowed_with_headers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(alone_allowed.clone().oneshot(request()).await.unwrap()) })
    });
    group.bench_function("refused", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(alone_refusing.clone().oneshot(request()).await.unwrap()) })
    });
    // What the layer adds, measured in pairs: each iteration times one request to the bare
    // service and one through the layer, back to back, and reports the difference of the
    // totals. The two runs above are measured seconds apart, so machine drift between them
    // lands in their difference; here it hits both halves of every pair alike.
    group.bench_function("allowed_added_paired", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (svc, layered) = (inner(), alone_allowed.clone());
            async move {
                let (mut bare, mut with_layer) = (Duration::ZERO, Duration::ZERO);
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(svc.oneshot(request()).await.unwrap());
                    let middle = Instant::now();
                    black_box(layered.clone().oneshot(request()).await.unwrap());
                    with_layer += middle.elapsed();
                    bare += middle - start;
                }
                with_layer.saturating_sub(bare)
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_check, bench_layer);

/// Redis checks per second and latency percentiles on loopback, through the layer, against a
/// `redis-server` started here on a free port (feature `redis`).
#[cfg(feature = "redis")]
fn redis_numbers() {
    use axum_shield::rate_limit::FailureMode;
    use axum_shield::redis::RedisStore;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut child) = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        println!("redis: redis-server not found, skipped");
        return;
    };
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"))
            .await
            .unwrap();
        let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
            RateLimitLayer::per_ip(Quota::per_second(u32::MAX))
                .redis(store, FailureMode::Closed)
                .build()
                .unwrap(),
        );
        let _ = app.clone().oneshot(request()).await;
        let mut lat = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            let res = app.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.status(), 200);
            lat.push(t.elapsed());
        }
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "redis sequential: {:.0} checks/s, p50 {:?}, p99 {:?}",
            lat.len() as f64 / lat.iter().sum::<Duration>().as_secs_f64(),
            p(0.50),
            p(0.99)
        );
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..500 {
                    let _ = app.clone().oneshot(request()).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "redis 64 concurrent clients: {:.0} checks/s",
            32_000.0 / start.elapsed().as_secs_f64()
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    memory_flood();
    #[cfg(feature = "redis")]
    redis_numbers();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
