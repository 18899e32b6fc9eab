//! The quickstart: a small, realistic API secured with axum-shield.
//!
//! ```text
//! cargo run --example quickstart                  # human-readable logs, 127.0.0.1:3000
//! LOG_FORMAT=json cargo run --example quickstart  # JSON lines, for a log pipeline
//! curl -i http://127.0.0.1:3000/health
//! curl -i -X POST http://127.0.0.1:3000/login -H 'content-type: application/json' \
//!      -d '{"username":"demo","password":"wrong"}'
//! curl -i -X POST http://127.0.0.1:3000/sensitive-action
//! ```
//!
//! Every response carries a request id and the API security headers; every refusal is an
//! RFC 9457 problem+json document. Every route is limited to 100 requests per hour per client
//! IP; `POST /login` to 5 per minute, and failed logins back off per account and per IP. Every
//! request is one log span with its access line, and every refusal or high-risk action is one
//! `axum_shield::security` event.

use std::net::SocketAddr;

use axum::{
    http::StatusCode,
    routing::{get, post},
    Extension, Json, Router,
};
use axum_shield::audit::Audit;
use axum_shield::auth::Principal;
use axum_shield::rate_limit::{LoginAttempt, LoginGuard, RateLimit};
use axum_shield::{Rejection, Shield};
use serde::Deserialize;
use serde_json::{json, Value};

/// Builds the application; `main` serves it, tests and benchmarks call it directly.
fn app() -> Result<Router, axum_shield::ConfigError> {
    let shield = Shield::api()
        .rate_limit(RateLimit::per_ip("100/hour")?.exempt_paths(["/health"]))
        .build()?;
    let login_guard = LoginGuard::builder().build()?;

    Ok(Router::new()
        .route("/health", get(health))
        .route(
            "/login",
            post(login)
                .route_layer(RateLimit::per_ip("5/minute")?.name("login")?.layer())
                .route_layer(login_guard.layer()),
        )
        // High-risk: put the authentication `route_layer` in front of it.
        .route("/sensitive-action", post(sensitive_action))
        .layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /login`: the credential check runs under the login guard (429 during backoff, one
/// generic 401 for unknown users and wrong passwords alike).
async fn login(
    attempt: LoginAttempt,
    Json(c): Json<Credentials>,
) -> Result<Json<Value>, Rejection> {
    let user = attempt
        .verify(&c.username, || check_credentials(&c.username, &c.password))
        .await?;
    Ok(Json(json!({ "user": user })))
}

/// MERGE: placeholder credential check — replace with the auth branch's user lookup and
/// password verification (and token issuing in `login`). Keep it behind `attempt.verify` so
/// the login guard stays in charge; return `None` for unknown users as for wrong passwords.
async fn check_credentials(username: &str, password: &str) -> Option<String> {
    use subtle::ConstantTimeEq;
    let demo_password = std::env::var("DEMO_PASSWORD").unwrap_or_else(|_| "demo-password".into());
    let ok = username == "demo" && bool::from(password.as_bytes().ct_eq(demo_password.as_bytes()));
    ok.then(|| username.to_owned())
}

/// The guide's `sensitive_action`, done right: no user data formatted into a line; one
/// `sensitive_action` event when attempted and one when completed or failed, each with the
/// principal (once authentication is in front of the route), request id and client IP.
async fn sensitive_action(
    audit: Audit,
    principal: Option<Extension<Principal>>,
) -> (StatusCode, Json<Value>) {
    let action = audit.attempt("sensitive_action");
    match perform_sensitive_action().await {
        Ok(()) => {
            action.completed();
            let by = principal.map(|Extension(p)| p.id().to_owned());
            (StatusCode::OK, Json(json!({ "status": "done", "by": by })))
        }
        Err(reason) => {
            action.failed(reason);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "failed" })),
            )
        }
    }
}

async fn perform_sensitive_action() -> Result<(), &'static str> {
    Ok(())
}

/// Human-readable logs by default; JSON lines (one object per event, with the request span's
/// fields) with `LOG_FORMAT=json`. `RUST_LOG` filters as usual, e.g.
/// `RUST_LOG=axum_shield::security=info` for security events only.
fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_logging();

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
