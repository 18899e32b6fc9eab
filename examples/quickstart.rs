//! The quickstart: a small, realistic API secured with axum-shield.
//!
//! ```text
//! cargo run --example quickstart        # listens on 127.0.0.1:3000 (PORT overrides)
//! curl -i http://127.0.0.1:3000/health
//! ```
//!
//! Every response carries a request id and the API security headers; every refusal is an
//! RFC 9457 problem+json document.

use std::net::SocketAddr;

use axum::{routing::get, Json, Router};
use axum_shield::Shield;
use serde_json::{json, Value};

/// Builds the application; `main` serves it, tests and benchmarks call it directly.
fn app() -> Result<Router, axum_shield::ConfigError> {
    let shield = Shield::api().build()?;

    Ok(Router::new().route("/health", get(health)).layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = app()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
