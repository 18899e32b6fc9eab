//! Two instances of one API sharing a rate limit through Redis.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! REDIS_URL=redis://127.0.0.1:6379/ PORT_A=3001 PORT_B=3002 \
//!     cargo run --example distributed_rate_limit --features redis
//! for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:300$((i % 2 + 1))/; done
//! # → 200 200 200 200 200 429: five requests per minute per client, whichever instance answers
//! ```
//!
//! If Redis goes away each instance falls back to its own in-memory limiter
//! (`FailureMode::Local`) and logs a `sys_dependency_fail` event per request; it goes back to
//! the shared limit as soon as Redis answers again.

use std::net::SocketAddr;

use axum::{routing::get, Router};
use axum_shield::rate_limit::{FailureMode, RateLimitLayer};
use axum_shield::redis::RedisStore;
use axum_shield::Shield;

async fn instance(
    name: &'static str,
    port: u16,
    redis: RedisStore,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let shield = Shield::api()
        .rate_limit(
            RateLimitLayer::per_ip("5/minute")
                .legacy_headers(true)
                .redis(redis, FailureMode::Local)
                .build()?,
        )
        .build()?;
    let app = Router::new()
        .route(
            "/",
            get(move || async move { format!("hello from instance {name}\n") }),
        )
        .layer(shield);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(
        "instance {name} listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    // Each instance has its own connection, as two processes would.
    let a = tokio::spawn(instance(
        "A",
        port("PORT_A", 3001),
        RedisStore::connect(&url).await?,
    ));
    let b = tokio::spawn(instance(
        "B",
        port("PORT_B", 3002),
        RedisStore::connect(&url).await?,
    ));
    let (a, b) = tokio::try_join!(a, b)?;
    a?;
    b?;
    Ok(())
}
