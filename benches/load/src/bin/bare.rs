//! The reference: a bare axum 0.8 router, no middleware at all, serving the same route shape
//! as the quickstart's protected route (`GET /me` → a small JSON object).
//!
//! ```text
//! PORT=8080 target/release/bare
//! ```
//! The bearer token the load script sends is ignored here: the bare router is the ceiling.

use axum::{routing::get, Json, Router};
use serde_json::{json, Value};

async fn me() -> Json<Value> {
    Json(json!({ "sub": "alice", "scopes": ["profile:read", "admin"] }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = Router::new().route("/me", get(me));
    // Loopback only.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bare listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
