//! JWKS and OIDC discovery against a real HTTP server on 127.0.0.1.
#![cfg(feature = "jwks")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use axum_shield::auth::jwt::{Claims, JwksKeys, JwksOptions, JwtAuthLayer, TokenError};
use axum_shield::auth::TokenIssuer;
use http::{Request, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use tower::ServiceExt;

const EC_PRIVATE: &str = include_str!("fixtures/auth/ec_private.pem");
const RSA_PRIVATE: &str = include_str!("fixtures/auth/rsa_private.pem");
const AUD: &str = "orders-api";

#[derive(Clone)]
struct Provider {
    base: String,
    advertised_issuer: Arc<Mutex<String>>,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn discovery(State(p): State<Provider>) -> Json<Value> {
    Json(json!({
        "issuer": *p.advertised_issuer.lock().unwrap(),
        "jwks_uri": format!("{}/jwks.json", p.base),
    }))
}

async fn jwks(State(p): State<Provider>) -> Json<Value> {
    p.hits.fetch_add(1, Ordering::SeqCst);
    Json(p.jwks.lock().unwrap().clone())
}

async fn start() -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let provider = Provider {
        advertised_issuer: Arc::new(Mutex::new(base.clone())),
        base,
        jwks: Arc::new(Mutex::new(json!({ "keys": [] }))),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .route(
            "/slow.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "{}"
            }),
        )
        .route("/big.json", get(|| async { "x".repeat(300 * 1024) }))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    provider
}

fn issuer_for(alg: &str, pem: &str, kid: &str, iss: &str) -> TokenIssuer {
    TokenIssuer::from_pem(alg, pem)
        .kid(kid)
        .issuer(iss)
        .audience(AUD)
        .build()
        .unwrap()
}

fn jwk(alg: &str, pem: &str, kid: &str) -> Value {
    // Building a TokenIssuer installs the crypto provider that Jwk::from_encoding_key uses.
    let _ = TokenIssuer::from_pem(alg, pem).build().unwrap();
    let key = match alg {
        "ES256" => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    let alg: jsonwebtoken::Algorithm = alg.parse().unwrap();
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk
}

fn options() -> JwksOptions {
    JwksOptions::default()
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
}

#[tokio::test]
async fn oidc_discovery_checks_the_issuer_and_verifies_tokens_through_the_layer() {
    let p = start().await;
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("ES256", EC_PRIVATE, "a")] });
    let keys = JwksKeys::discover(&p.base, options()).await.unwrap();
    assert_eq!(keys.issuer(), Some(p.base.as_str()));
    let verifier = JwtAuthLayer::jwks(keys).audience(AUD).build().unwrap();
    let good = issuer_for("ES256", EC_PRIVATE, "a", &p.base)
        .issue("alice", &json!({}))
        .unwrap();
    let other_iss = issuer_for("ES256", EC_PRIVATE, "a", "https://evil.example")
        .issue("alice", &json!({}))
        .unwrap();
    assert_eq!(
        verifier.verify(&good.token).await.unwrap().principal().id(),
        "alice"
    );
    assert_eq!(
        verifier.verify(&other_iss.token).await.unwrap_err(),
        TokenError::WrongIssuer
    );

    let app = Router::new()
        .route(
            "/me",
            get(|Claims(c): Claims<Value>| async move { c["sub"].as_str().unwrap().to_owned() }),
        )
        .route_layer(verifier);
    let req = |t: &str| {
        Request::get("/me")
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone()
            .oneshot(req(&good.token))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.oneshot(req(&other_iss.token)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let p = start().await;
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("ES256", EC_PRIVATE, "a")] });
    *p.advertised_issuer.lock().unwrap() = "https://login.evil.example".into();
    let err = JwksKeys::discover(&p.base, options()).await.unwrap_err();
    assert_eq!(err.setting(), "issuer");
    assert_eq!(
        p.hits.load(Ordering::SeqCst),
        0,
        "keys are not fetched from an impostor"
    );
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_an_unknown_kid() {
    let p = start().await;
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("ES256", EC_PRIVATE, "a")] });
    let keys = JwksKeys::from_url(
        &format!("{}/jwks.json", p.base),
        options().unknown_kid_cooldown(Duration::from_millis(200)),
    )
    .unwrap();
    let verifier = JwtAuthLayer::jwks(keys.clone())
        .issuer(p.base.clone())
        .audience(AUD)
        .build()
        .unwrap();
    let a = issuer_for("ES256", EC_PRIVATE, "a", &p.base)
        .issue("alice", &json!({}))
        .unwrap();
    let b = issuer_for("RS256", RSA_PRIVATE, "b", &p.base)
        .issue("bob", &json!({}))
        .unwrap();
    assert!(verifier.verify(&a.token).await.is_ok());
    assert_eq!(keys.fetch_count(), 1);

    // The provider rotates to key b.
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("RS256", RSA_PRIVATE, "b")] });
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        verifier.verify(&b.token).await.unwrap().principal().id(),
        "bob"
    );
    assert_eq!(keys.fetch_count(), 2);
    // Key a is gone; asking again within the cooldown does not fetch.
    assert_eq!(
        verifier.verify(&a.token).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(keys.fetch_count(), 2);
}

/// Issue 16, item 8: a verified ES256 token is cached, then its key is rotated out of the
/// JWKS. The verifier without a cache refuses the token; the cached verifier must refuse it
/// too, since its cache entry belongs to the key set it was verified with.
#[tokio::test]
async fn cached_token_is_refused_once_its_key_leaves_the_key_set() {
    let p = start().await;
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("ES256", EC_PRIVATE, "a")] });
    let keys = JwksKeys::from_url(&format!("{}/jwks.json", p.base), options()).unwrap();
    let build = |cache: bool| {
        let auth = JwtAuthLayer::jwks(keys.clone())
            .issuer(p.base.clone())
            .audience(AUD);
        let auth = if cache {
            auth.cache_verified(100)
        } else {
            auth
        };
        auth.build().unwrap()
    };
    let (cached, uncached) = (build(true), build(false));
    let a = issuer_for("ES256", EC_PRIVATE, "a", &p.base)
        .issue("alice", &json!({}))
        .unwrap();
    assert!(cached.verify(&a.token).await.is_ok());
    assert!(uncached.verify(&a.token).await.is_ok());
    assert_eq!(cached.cached_tokens(), 1);

    // The provider rotates key a out; the key set is refreshed.
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("RS256", RSA_PRIVATE, "b")] });
    assert_eq!(keys.refresh().await.unwrap(), 1);
    assert_eq!(
        uncached.verify(&a.token).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        cached.verify(&a.token).await.unwrap_err(),
        TokenError::UnknownKey,
        "the cache admitted a token whose key left the key set"
    );
    let app = Router::new()
        .route("/me", get(|| async { "ok" }))
        .route_layer(cached);
    let request = Request::get("/me")
        .header("authorization", format!("Bearer {}", a.token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn kid_flood_causes_at_most_one_fetch_per_cooldown() {
    let p = start().await;
    *p.jwks.lock().unwrap() = json!({ "keys": [jwk("ES256", EC_PRIVATE, "a")] });
    let keys = JwksKeys::from_url(
        &format!("{}/jwks.json", p.base),
        options().unknown_kid_cooldown(Duration::from_secs(60)),
    )
    .unwrap();
    let verifier = JwtAuthLayer::jwks(keys.clone())
        .issuer(p.base.clone())
        .audience(AUD)
        .build()
        .unwrap();
    for _round in 0..2 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let token = issuer_for(
                "ES256",
                EC_PRIVATE,
                &format!("random-{i}-{}", i * 7919),
                &p.base,
            )
            .issue("mallory", &json!({}))
            .unwrap()
            .token;
            let verifier = verifier.clone();
            tasks.push(tokio::spawn(async move { verifier.verify(&token).await }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap_err(), TokenError::UnknownKey);
        }
    }
    assert_eq!(p.hits.load(Ordering::SeqCst), 1);
    assert_eq!(keys.fetch_count(), 1);
    let good = issuer_for("ES256", EC_PRIVATE, "a", &p.base)
        .issue("alice", &json!({}))
        .unwrap();
    assert!(verifier.verify(&good.token).await.is_ok());
    assert_eq!(p.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_key_set_fails_closed_with_503() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let keys = JwksKeys::from_url(&format!("http://{addr}/jwks.json"), options()).unwrap();
    let verifier = JwtAuthLayer::jwks(keys.clone())
        .audience(AUD)
        .build()
        .unwrap();
    let token = issuer_for("ES256", EC_PRIVATE, "a", "x")
        .issue("alice", &json!({}))
        .unwrap()
        .token;
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::KeysUnavailable
    );
    let app = Router::new()
        .route("/me", get(|| async { "secret" }))
        .route_layer(verifier);
    let res = app
        .oneshot(
            Request::get("/me")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        keys.fetch_count(),
        1,
        "the cooldown also bounds retries of a failing endpoint"
    );
}

#[tokio::test]
async fn slow_and_oversized_key_sets_are_cut_off() {
    let p = start().await;
    let slow = JwksKeys::from_url(&format!("{}/slow.json", p.base), options()).unwrap();
    let start = Instant::now();
    assert!(slow.refresh().await.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let big = JwksKeys::from_url(&format!("{}/big.json", p.base), options()).unwrap();
    assert!(big
        .refresh()
        .await
        .unwrap_err()
        .to_string()
        .contains("too large"));
}

#[tokio::test]
async fn encryption_keys_and_symmetric_keys_in_a_key_set_are_not_used() {
    let p = start().await;
    let mut enc = jwk("ES256", EC_PRIVATE, "a");
    enc["use"] = json!("enc");
    let oct = json!({ "kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw" });
    *p.jwks.lock().unwrap() = json!({ "keys": [enc, oct] });
    let keys = JwksKeys::from_url(&format!("{}/jwks.json", p.base), options()).unwrap();
    assert!(keys
        .refresh()
        .await
        .unwrap_err()
        .to_string()
        .contains("no usable"));
}

#[test]
fn plain_http_is_refused_except_on_loopback() {
    assert!(JwksKeys::from_url("http://id.example/jwks.json", JwksOptions::default()).is_err());
    assert!(JwksKeys::from_url("https://id.example/jwks.json", JwksOptions::default()).is_ok());
    assert!(JwksKeys::from_url("http://127.0.0.1:9/jwks.json", JwksOptions::default()).is_ok());
    assert!(JwksKeys::from_url("file:///etc/passwd", JwksOptions::default()).is_err());
}
