//! Recipe: JWT authentication with HS256 and a token endpoint.
//!
//! ```text
//! JWT_SECRET=$(openssl rand -base64 48) cargo run --example jwt
//! TOKEN=$(curl -s -X POST http://127.0.0.1:3000/token -H 'content-type: application/json' \
//!           -d '{"username":"ada","password":"ada-demo-password"}' | jq -r .access_token)
//! curl -i http://127.0.0.1:3000/me -H "authorization: Bearer $TOKEN"   # 200
//! curl -i http://127.0.0.1:3000/me                                     # 401, WWW-Authenticate: Bearer
//! curl -i http://127.0.0.1:3000/me -H "authorization: Bearer ${TOKEN}x"  # 401 invalid_token
//! ```
//!
//! One secret signs (`TokenIssuer`) and verifies (`JwtAuthLayer`); both fix the issuer and
//! the audience, so a token of another service is refused (RFC 8725 §3.8, §3.9). Passwords
//! are stored as Argon2id hashes, computed at start for the demo user.

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::auth::TokenIssuer;
use axum_shield::validate::Valid;
use axum_shield::{Claims, JwtAuthLayer, Rejection, RejectionKind, Shield};
use serde::{Deserialize, Serialize};
use validator::Validate;

const ISSUER: &str = "https://api.example";
const AUDIENCE: &str = "notes-api";

#[derive(Clone)]
struct AppState {
    tokens: Arc<TokenIssuer>,
    /// The demo user: name and Argon2id hash (PHC string).
    user: Arc<(String, String)>,
}

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Login {
    #[validate(length(min = 1, max = 64))]
    username: String,
    #[validate(length(min = 1, max = 1024))]
    password: String,
}

#[derive(Serialize)]
struct Token {
    access_token: String,
    token_type: &'static str,
}

#[derive(Deserialize)]
struct MyClaims {
    sub: String,
    exp: u64,
}

/// `POST /token`: one generic 401 for an unknown user and a wrong password alike.
async fn token(
    State(state): State<AppState>,
    Valid(Json(login)): Valid<Json<Login>>,
) -> Result<Json<Token>, Rejection> {
    let user = Arc::clone(&state.user);
    // Argon2id is slow on purpose: verify on the blocking pool, with the same work for an
    // unknown user (no user enumeration by timing).
    let ok = tokio::task::spawn_blocking(move || {
        let matches = PasswordHash::new(&user.1).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(login.password.as_bytes(), &hash)
                .is_ok()
        });
        matches && login.username == user.0
    })
    .await
    .unwrap_or(false);
    if !ok {
        return Err(Rejection::new(RejectionKind::InvalidCredentials));
    }
    let issued = state
        .tokens
        .issue(&state.user.0, &serde_json::json!({ "scope": "notes:read" }))
        .map_err(|_| Rejection::new(RejectionKind::Internal))?;
    Ok(Json(Token {
        access_token: issued.token,
        token_type: "Bearer",
    }))
}

async fn me(Claims(claims): Claims<MyClaims>) -> String {
    format!("{} (token valid until {})", claims.sub, claims.exp)
}

/// An Argon2id hash in PHC form, with argon2's defaults (19 MiB, 2 passes; RFC 9106) and a
/// random salt: the OWASP Password Storage Cheat Sheet's first choice.
fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let secret = std::env::var("JWT_SECRET").map_err(|_| "set JWT_SECRET (32 bytes or more)")?;

    let jwt = JwtAuthLayer::hs256(&secret)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()?; // a secret under 32 bytes is refused here, with the fix
    let tokens = TokenIssuer::hs256(&secret)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()?;

    let hash = hash_password("ada-demo-password")?;

    let app = Router::new()
        .route("/me", get(me))
        .route_layer(jwt) // 401 only on routes that exist
        .route("/token", post(token))
        .with_state(AppState {
            tokens: Arc::new(tokens),
            user: Arc::new(("ada".to_owned(), hash)),
        })
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
