//! The peer stack: "an equivalent stack assembled from today's crates" (issue 8), the way
//! their READMEs assemble it, serving the same `GET /me` as the quickstart.
//!
//! Outermost first:
//! tower-http `SetRequestId` (x-request-id, UUID) → `SetSensitiveRequestHeaders`
//! (authorization, cookie) → `TraceLayer` (span + one response event at INFO, JSON lines
//! through tracing-subscriber to a tracing-appender non-blocking writer on stdout) →
//! `PropagateRequestId` → `CatchPanic` → `Timeout` (408 after 10 s) → `RequestBodyLimit`
//! (64 KiB) → axum-helmet (default security headers) → tower_governor 0.8 (per-IP quota) →
//! router with `GET /me` guarded by axum-jwt-auth 0.7 `Claims<_>` (HS256, iss + aud checked).
//!
//! ```text
//! JWT_SECRET=… PORT=8080 target/release/peer          # serve
//! JWT_SECRET=… target/release/peer token              # print a bearer token for `alice`
//! ```
//!
//! Environment (same names as the quickstart where they apply):
//! - `PORT` (default 3000), listens on 127.0.0.1 only.
//! - `JWT_SECRET` (required, ≥ 32 bytes).
//! - `RATE_LIMIT` quota per client IP, `N/second|minute|hour` (default `1000000/second`):
//!   governor's burst = N, one cell replenished every unit/N.
//! - `TRUSTED_PROXIES`: when set (to anything), the key is taken from `X-Forwarded-For`
//!   with tower_governor's `SmartIpKeyExtractor`, which is how its users configure it behind a
//!   proxy (it has no notion of *which* peers are trusted: the CIDRs are not checked).
//! - `RATE_LIMIT_MAX_KEYS`: ignored — tower_governor has no key cap; the README's
//!   `retain_recent()` housekeeping thread (every 60 s) is what it offers, and is run here.
//! - `ACCESS_LOG=0` turns the TraceLayer off; `LOG_FORMAT` is accepted (always JSON here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{http::header, http::StatusCode, routing::get, Json, Router};
use axum_helmet::{Helmet, HelmetLayer};
use axum_jwt_auth::{Claims, Decoder, LocalDecoder};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_governor::{
    governor::GovernorConfigBuilder,
    key_extractor::{KeyExtractor, PeerIpKeyExtractor, SmartIpKeyExtractor},
    GovernorLayer,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer,
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer},
};
use tracing::Level;

/// The quickstart contract (see benches/load.sh).
const ISSUER: &str = "http://127.0.0.1:3000";
const AUDIENCE: &str = "axum-shield-quickstart";

#[derive(Debug, Serialize, Deserialize, Clone)]
struct MyClaims {
    sub: String,
    scope: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
}

async fn me(user: Claims<MyClaims>) -> Json<Value> {
    let scopes: Vec<&str> = user.claims.scope.split(' ').collect();
    Json(json!({ "sub": user.claims.sub, "scopes": scopes }))
}

fn secret() -> Result<String, String> {
    let s = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is not set".to_string())?;
    if s.len() < 32 {
        return Err("JWT_SECRET must be at least 32 bytes".into());
    }
    Ok(s)
}

/// Prints an HS256 token for `alice` valid one hour.
fn print_token() -> Result<(), Box<dyn std::error::Error>> {
    let secret = secret()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let claims = MyClaims {
        sub: "alice".into(),
        scope: "profile:read admin".into(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        exp: now.as_secs() + 3600,
        iat: now.as_secs(),
        nbf: now.as_secs(),
        jti: format!("{:x}-{:x}", now.as_nanos(), std::process::id()),
    };
    // `Header::new` sets `typ: JWT`.
    let header = Header::new(Algorithm::HS256);
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    println!("{token}");
    Ok(())
}

/// Parses `N/second|minute|hour` (also `s`, `m`, `h`, `sec`, `min`) into (period, burst).
fn quota(spec: &str) -> Result<(Duration, u32), String> {
    let (n, unit) = spec
        .split_once('/')
        .ok_or_else(|| format!("RATE_LIMIT {spec:?}: expected N/second|minute|hour"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("RATE_LIMIT {spec:?}: bad count"))?;
    if n == 0 {
        return Err(format!("RATE_LIMIT {spec:?}: count must be > 0"));
    }
    let unit = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => return Err(format!("RATE_LIMIT {spec:?}: unknown unit {other:?}")),
    };
    let period = (unit / n).max(Duration::from_nanos(1));
    Ok((period, n))
}

fn app<K>(
    decoder: Decoder<MyClaims>,
    key: K,
    period: Duration,
    burst: u32,
    access_log: bool,
) -> Router
where
    K: KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync,
{
    let governor = Arc::new(
        GovernorConfigBuilder::default()
            .period(period)
            .burst_size(burst)
            .key_extractor(key)
            .finish()
            .expect("period and burst are non-zero"),
    );
    // tower_governor README: periodic housekeeping of the keyed state.
    let limiter = governor.limiter().clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(60));
        limiter.retain_recent();
    });
    let helmet: HelmetLayer = Helmet::default()
        .try_into()
        .expect("default helmet is valid");

    let router = Router::new()
        .route("/me", get(me))
        .with_state(decoder)
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(10),
                ))
                .layer(RequestBodyLimitLayer::new(64 * 1024))
                .layer(helmet)
                .layer(GovernorLayer::new(governor)),
        );
    let router = if access_log {
        router.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
    } else {
        router
    };
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]))
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("token") {
        return print_token();
    }
    let secret = secret()?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let (period, burst) =
        quota(&std::env::var("RATE_LIMIT").unwrap_or_else(|_| "1000000/second".into()))?;
    let access_log = std::env::var("ACCESS_LOG")
        .map(|v| v != "0")
        .unwrap_or(true);
    let behind_proxy = std::env::var("TRUSTED_PROXIES").is_ok_and(|v| !v.is_empty());

    // JSON lines at INFO to a non-blocking writer on stdout.
    let (writer, _guard) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(writer)
        .init();

    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    let decoder: Decoder<MyClaims> = Arc::new(
        LocalDecoder::builder()
            .keys(vec![DecodingKey::from_secret(secret.as_bytes())])
            .validation(validation)
            .build()?,
    );

    let app = if behind_proxy {
        app(decoder, SmartIpKeyExtractor, period, burst, access_log)
    } else {
        app(decoder, PeerIpKeyExtractor, period, burst, access_log)
    };

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, behind_proxy, "peer listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
