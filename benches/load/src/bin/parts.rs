//! One part of the quickstart stack at a time, to see what each costs under load (the
//! in-process criterion numbers understate it: with loopback TCP and `wrk` sharing the cores,
//! caches are cold and every instruction costs more).
//!
//! ```text
//! PART=shield|rate-limit|jwt|all JWT_SECRET=… PORT=8080 target/release/parts
//! ```
//! Every part serves the same `GET /me` as `bare` (the `jwt` and `all` parts read the token's
//! claims, as the peer and `jwt-floor` do):
//! - `shield`: `Shield::api()` with the access line off (request id, client IP, security
//!   headers, log span, panic catching, timeout, body limit);
//! - `rate-limit`: `RateLimitLayer::per_ip` alone, with its response fields;
//! - `jwt`: `JwtAuthLayer` (HS256, `iss` and `aud` checked) as a route layer and `Claims<_>`;
//! - `all`: the three together, as the quickstart with `ACCESS_LOG=0`.
//!
//! `RATE_LIMIT` sets the quota (default `1000000/second`); listens on 127.0.0.1 only.

use std::net::SocketAddr;

use axum::{routing::get, Json, Router};
use axum_shield::rate_limit::RateLimitLayer;
use axum_shield::{Claims, JwtAuthLayer, Shield};
use serde::Deserialize;
use serde_json::{json, Value};

/// The quickstart contract (see benches/load.sh).
const ISSUER: &str = "http://127.0.0.1:3000";
const AUDIENCE: &str = "axum-shield-quickstart";

#[derive(Deserialize)]
struct MyClaims {
    sub: String,
    scope: String,
}

async fn me(Claims(claims): Claims<MyClaims>) -> Json<Value> {
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    Json(json!({ "sub": claims.sub, "scopes": scopes }))
}

async fn me_plain() -> Json<Value> {
    Json(json!({ "sub": "alice", "scopes": ["profile:read", "admin"] }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let secret = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is not set")?;
    let quota = std::env::var("RATE_LIMIT").unwrap_or_else(|_| "1000000/second".into());
    let part = std::env::var("PART").unwrap_or_default();
    let jwt = || {
        JwtAuthLayer::hs256(secret.as_bytes())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()
    };
    let shield = |limit: bool| {
        let builder = Shield::api().access_log(false);
        if limit {
            builder
                .rate_limit(RateLimitLayer::per_ip(quota.as_str()).build()?)
                .build()
        } else {
            builder.build()
        }
    };
    let app: Router = match part.as_str() {
        "shield" => Router::new()
            .route("/me", get(me_plain))
            .layer(shield(false)?),
        "rate-limit" => Router::new()
            .route("/me", get(me_plain))
            .layer(RateLimitLayer::per_ip(quota.as_str()).build()?),
        "jwt" => Router::new()
            .route("/me", get(me))
            .route_layer(jwt()?),
        "all" => Router::new()
            .route("/me", get(me))
            .route_layer(jwt()?)
            .layer(shield(true)?),
        other => {
            return Err(
                format!("PART must be shield, rate-limit, jwt or all, not {other:?}").into(),
            )
        }
    };
    // Loopback only.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "parts ({part}) listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
