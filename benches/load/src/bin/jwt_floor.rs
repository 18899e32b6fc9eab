//! The cost floor of a JWT-protected route: the bare router of `bare.rs` whose handler does
//! nothing but verify the bearer token (HS256 with jsonwebtoken, the crate the peer stack
//! uses: signature, `exp`, `nbf`, `iss`, `aud`) and answer what the peer answers. No request
//! id, no headers, no rate limit, no log.
//!
//! ```text
//! JWT_SECRET=… PORT=8080 target/release/jwt-floor
//! ```
//! Any stack that verifies the token on each request pays at least this much; the load script
//! reports its ratio to the bare router next to the targets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use axum::{routing::get, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

async fn me(
    State(verifier): State<Arc<Verifier>>,
    headers: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let data = jsonwebtoken::decode::<MyClaims>(token, &verifier.key, &verifier.validation)
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let scopes: Vec<&str> = data.claims.scope.split(' ').collect();
    Ok(Json(json!({ "sub": data.claims.sub, "scopes": scopes })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let secret = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is not set")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    let verifier = Arc::new(Verifier {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    let app = Router::new().route("/me", get(me)).with_state(verifier);
    // Loopback only.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("jwt-floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
