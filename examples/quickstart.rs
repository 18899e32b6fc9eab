//! The quickstart: a small, realistic API secured with axum-shield.
//!
//! ```text
//! cargo run --example quickstart        # listens on 127.0.0.1:3000 (PORT overrides)
//! curl -i http://127.0.0.1:3000/health
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"ann@example.com","name":"Ann","age":30,"address":{"city":"Oslo","zip":"0150"}}'
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"nope","name":"","age":7,"address":{"city":"Oslo","zip":"1"}}'   # 422
//! ```
//!
//! Every response carries a request id and the API security headers; every refusal is an
//! RFC 9457 problem+json document.

use std::net::SocketAddr;

use axum::{
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use axum_shield::validate::{JsonGuardLayer, JsonLimits, RedactFieldsLayer, Valid};
use axum_shield::Shield;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use validator::Validate;

/// Builds the application; `main` serves it, tests and benchmarks call it directly.
fn app() -> Result<Router, axum_shield::ConfigError> {
    let shield = Shield::api().build()?;

    // Input: JSON guard limits for the body, then `Valid<Json<_>>` in the handler.
    // Output: the redaction layer as a safety net in case a response leaks a secret field.
    let users = Router::new()
        .route("/users", post(create_user))
        .layer(JsonGuardLayer::new(JsonLimits::default())?)
        .layer(RedactFieldsLayer::default());

    Ok(Router::new()
        .route("/health", get(health))
        .merge(users)
        .layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The request DTO: only what a client may set, each field validated.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[validate(email)]
    email: String,
    #[validate(length(min = 1, max = 64))]
    name: String,
    #[validate(range(min = 13, max = 130))]
    age: u8,
    #[validate(nested)]
    address: Address,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Address {
    #[validate(length(min = 1, max = 85))]
    city: String,
    #[validate(length(min = 3, max = 10))]
    zip: String,
}

/// The response DTO: only what a client may see.
#[derive(Debug, Serialize)]
struct UserCreated {
    email: String,
    name: String,
}

/// 201 with the new user, or 415/413/400/422 problem+json before this runs.
async fn create_user(Valid(Json(user)): Valid<Json<NewUser>>) -> (StatusCode, Json<UserCreated>) {
    (
        StatusCode::CREATED,
        Json(UserCreated {
            email: user.email,
            name: user.name,
        }),
    )
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
