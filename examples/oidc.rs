//! A resource server that trusts an OpenID Connect identity provider (Keycloak, Auth0,
//! Entra ID, Okta, …) given by its issuer URL.
//!
//! ```text
//! OIDC_ISSUER=https://keycloak.example/realms/main OIDC_AUDIENCE=orders-api \
//!     cargo run --example oidc --features jwks          # 127.0.0.1:3000 (PORT overrides)
//! curl -i http://127.0.0.1:3000/orders -H "authorization: Bearer $ACCESS_TOKEN"
//! ```
//!
//! At start the example reads `<issuer>/.well-known/openid-configuration`, checks that the
//! provider's `issuer` is exactly `OIDC_ISSUER`, and fetches its JWKS. Tokens must be signed
//! by one of those keys, carry `iss` = `OIDC_ISSUER` and `aud` containing `OIDC_AUDIENCE`;
//! `GET /orders` also needs the `orders:read` scope (from `scope`, `scp` or `permissions`),
//! `GET /admin` the `admin` role (from `roles` or Keycloak's `realm_access.roles`).
//!
//! Provider notes: Auth0's issuer ends with a `/` (`https://tenant.auth0.com/`) and its
//! audience is the API identifier; Entra ID v2 issuers look like
//! `https://login.microsoftonline.com/<tenant>/v2.0` and the audience is the app's client id.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use axum_shield::auth::jwt::{JwksKeys, JwksOptions, JwtAuthLayer};
use axum_shield::auth::AuthorizeLayer;
use axum_shield::{Claims, Shield};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
}

async fn orders(Claims(claims): Claims<AccessClaims>) -> Json<Value> {
    Json(json!({ "owner": claims.sub, "orders": [] }))
}

async fn admin() -> Json<Value> {
    Json(json!({ "status": "admin ok" }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let issuer = std::env::var("OIDC_ISSUER")
        .map_err(|_| "set OIDC_ISSUER to your identity provider's issuer URL")?;
    let audience = std::env::var("OIDC_AUDIENCE")
        .map_err(|_| "set OIDC_AUDIENCE to this API's audience (identifier or client id)")?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    // Discovery and the first key fetch happen here: a wrong issuer fails at start.
    let keys = JwksKeys::discover(&issuer, JwksOptions::default()).await?;
    let _refresh = keys.spawn_scheduled_refresh();
    let jwt = JwtAuthLayer::jwks(keys).audience(audience).build()?;

    let app = Router::new()
        .route(
            "/orders",
            get(orders).route_layer(AuthorizeLayer::all_scopes(["orders:read"]).build()?),
        )
        .route(
            "/admin",
            get(admin).route_layer(AuthorizeLayer::any_roles(["admin"]).build()?),
        )
        .route_layer(jwt)
        .route("/health", get(|| async { "ok" }))
        .layer(Shield::api().build()?);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(%issuer, "listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
