//! Recipe: validated JSON input, and redaction of what must never go out.
//!
//! ```text
//! cargo run --example validation
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"ann@example.com","name":"Ann","password":"correct horse battery"}'  # 201
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"nope","name":"","password":"x"}'   # 422: errors by JSON path, never the values
//! curl -i http://127.0.0.1:3000/users -H 'content-type: application/json' \
//!   -d '{"email":"a@b.c","email":"admin@b.c"}'     # 400 duplicate_key
//! curl -i http://127.0.0.1:3000/users -d 'email=a'  # 415: not JSON
//! curl -i http://127.0.0.1:3000/users/1            # 200, password_hash and api_key removed
//! ```
//!
//! Input: the JSON guard bounds the document (depth, sizes, duplicate keys) in the same pass
//! that deserializes it, then `Valid<Json<T>>` runs the `validator` rules. Output: request and
//! response DTOs keep secrets out by construction, and `RedactFieldsLayer` is the safety net
//! for the day a handler returns a whole database row (OWASP API3:2023).

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::validate::redact::RedactFieldsLayer;
use axum_shield::validate::{JsonGuardLayer, Valid};
use axum_shield::Shield;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use validator::Validate;

/// What a client may send: every field validated, unknown fields refused.
#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[validate(email)]
    email: String,
    #[validate(length(min = 1, max = 64))]
    name: String,
    /// Characters, not bytes: validator's `length` counts characters.
    #[validate(length(min = 12, max = 128))]
    password: String,
}

/// What a client may see: no password, no hash.
#[derive(Serialize)]
struct UserCreated {
    email: String,
    name: String,
}

async fn create(Valid(Json(user)): Valid<Json<NewUser>>) -> (StatusCode, Json<UserCreated>) {
    // Hash `user.password` with Argon2id here (see the jwt recipe) and store it.
    let _ = user.password;
    let created = UserCreated {
        email: user.email,
        name: user.name,
    };
    (StatusCode::CREATED, Json(created))
}

/// A careless handler that returns the whole row: the redaction layer removes the secret
/// fields at any depth and logs a `data_exposure_blocked` event with their names only.
async fn show(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({
        "id": id,
        "email": "ann@example.com",
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$…",
        "profile": { "name": "Ann", "api_key": "ak_live_123" }
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();

    let guard = JsonGuardLayer::builder()
        .max_depth(8) // this API's documents are shallow
        .reject_control_chars(true)
        .build()?;

    let app = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
        .layer(guard)
        .layer(RedactFieldsLayer::default())
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
