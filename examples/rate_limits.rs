//! Recipe: per-route quotas, and a login guard against brute force.
//!
//! ```text
//! cargo run --example rate_limits
//! for i in $(seq 1 7); do curl -s -o /dev/null -w '%{http_code} ' -X POST \
//!   http://127.0.0.1:3000/login -H 'content-type: application/json' \
//!   -d '{"username":"ada","password":"wrong"}'; done; echo
//! # 401 401 401 401 401 401 429: five free failures per account; the sixth still gets its 401
//! # and starts a backoff (1 s, 2 s, 4 s … up to 15 min) during which attempts get 429
//! # login_locked with Retry-After, the same for accounts that do not exist
//! curl -i http://127.0.0.1:3000/search?q=x   # RateLimit-Policy / RateLimit headers; 429 past 30/minute
//! ```
//!
//! Every route gets the default per-IP limit through `Shield`; `/search` adds a tighter one,
//! `/login` a tighter one still plus the login guard, which counts failures per account and
//! per client IP (OWASP Authentication Cheat Sheet). Each attempt is charged before the
//! password check and refunded on success, so concurrent guesses cannot slip past the lock.

use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::rate_limit::{LoginAttempt, LoginGuardLayer, RateLimitLayer};
use axum_shield::validate::Valid;
use axum_shield::{Rejection, Shield};
use serde::Deserialize;
use validator::Validate;

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Login {
    #[validate(length(min = 1, max = 64))]
    username: String,
    #[validate(length(min = 1, max = 1024))]
    password: String,
}

/// The demo user's name and Argon2id hash (PHC string), computed at start.
type User = Arc<(String, String)>;

async fn login(
    State(user): State<User>,
    attempt: LoginAttempt,
    Valid(Json(login)): Valid<Json<Login>>,
) -> Result<&'static str, Rejection> {
    let name = login.username.clone();
    attempt
        .verify(&name, || async move {
            // Argon2id on the blocking pool, with the same work for unknown users.
            tokio::task::spawn_blocking(move || {
                let matches = PasswordHash::new(&user.1).is_ok_and(|hash| {
                    Argon2::default()
                        .verify_password(login.password.as_bytes(), &hash)
                        .is_ok()
                });
                (matches && login.username == user.0).then_some(())
            })
            .await
            .ok()
            .flatten()
        })
        .await?; // 429 login_locked while locked, 401 invalid_credentials on failure
    Ok("welcome") // issue a token or a session here (see the jwt recipe)
}

async fn search() -> &'static str {
    "results"
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

    let hash = hash_password("ada-demo-password")?;

    let shield = Shield::api()
        .rate_limit(
            RateLimitLayer::per_ip("100/hour")
                .exempt_paths(["/health"])
                .build()?,
        )
        .build()?;

    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/search",
            get(search).route_layer(RateLimitLayer::per_ip("30/minute").name("search").build()?),
        )
        .route(
            "/login",
            post(login)
                .route_layer(RateLimitLayer::per_ip("10/minute").name("login").build()?)
                .route_layer(LoginGuardLayer::builder().build()?),
        )
        .with_state(Arc::new(("ada".to_owned(), hash)))
        .layer(shield);

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
