//! Recipe: API keys for machine clients, with scopes.
//!
//! ```text
//! cargo run --example api_keys          # prints a freshly generated key once
//! curl -i http://127.0.0.1:3000/reports -H "x-api-key: <the printed key>"   # 200
//! curl -i -X POST http://127.0.0.1:3000/reports -H "x-api-key: <the key>"    # 403 insufficient_scope
//! curl -i http://127.0.0.1:3000/reports -H "x-api-key: ak_live_nope.nope"    # 401
//! ```
//!
//! A key is `<id>.<secret>`: give the whole key to the client once, store only its id and
//! the SHA-256 digest (`API_KEY_ID`, `API_KEY_SHA256`). The layer compares digests in constant
//! time and puts a `Principal` of kind `ApiKey` into the request, which `AuthorizeLayer`,
//! per-principal rate limits and the security log read like a JWT's.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use axum_shield::auth::{ApiKey, ApiKeyAuthLayer, AuthorizeLayer};
use axum_shield::{Principal, Shield};

async fn list_reports(principal: Principal) -> String {
    format!("reports for {}", principal.id())
}

async fn create_report() -> &'static str {
    "created"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();

    // In production the id and digest come from your database or configuration; here a key
    // is generated at start and printed once, as an admin console would show it.
    let (id, digest) = match (std::env::var("API_KEY_ID"), std::env::var("API_KEY_SHA256")) {
        (Ok(id), Ok(digest)) => (id, digest),
        _ => {
            let generated = ApiKey::generate("ak_live")?;
            println!("API key (shown once): {}", generated.key);
            (generated.id, generated.sha256_hex)
        }
    };

    let keys = ApiKeyAuthLayer::builder()
        .key(ApiKey::new(id, digest).scopes(["reports:read"]))
        .build()?; // a malformed digest or a duplicate id is refused here

    // Reading needs reports:read; creating needs reports:write, which this key lacks.
    let read = AuthorizeLayer::all_scopes(["reports:read"]).build()?;
    let write = AuthorizeLayer::all_scopes(["reports:write"]).build()?;
    let app = Router::new()
        .route(
            "/reports",
            get(list_reports)
                .route_layer(read)
                .merge(post(create_report).route_layer(write)),
        )
        .route_layer(keys)
        .layer(Shield::api().build()?);

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
