//! JWT verification cost per request, against a bare router in the same run.
//!
//! `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_shield::auth::jwt::{JwtAuthBuilder, JwtAuthLayer, VerifyingKey};
use axum_shield::auth::{TokenIssuer, TokenIssuerBuilder};
use axum_shield::Claims;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";
const ISS: &str = "https://id.example";
const AUD: &str = "bench-api";
const EC_PRIVATE: &str = include_str!("../tests/fixtures/auth/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../tests/fixtures/auth/ec_public.pem");
const RSA_PRIVATE: &str = include_str!("../tests/fixtures/auth/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/fixtures/auth/rsa_public.pem");

async fn me(Claims(c): Claims<Value>) -> String {
    c["sub"].as_str().unwrap_or("").to_owned()
}

fn protected(jwt: JwtAuthBuilder) -> Router {
    Router::new()
        .route("/me", get(me))
        .route_layer(jwt.issuer(ISS).audience(AUD).build().unwrap())
}

fn token(issuer: TokenIssuerBuilder) -> String {
    issuer
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
        .issue(
            "alice",
            &json!({ "scope": "orders:read orders:write", "roles": ["user"] }),
        )
        .unwrap()
        .token
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/me");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = Router::new().route("/me", get(|| async { "alice" }));

    let hs = protected(JwtAuthLayer::hs256(SECRET));
    let hs_token = token(TokenIssuer::hs256(SECRET));
    // Same length, last signature character changed: fails at the signature check.
    let mut forged = hs_token.clone();
    let last = forged.pop().unwrap();
    // The last of the 43 characters of a 32-byte signature carries 4 bits and 2 zero bits:
    // 'A' and 'E' both keep the encoding canonical, so the change reaches the signature check
    // (any other letter could leave a non-zero trailing bit, refused earlier as malformed).
    forged.push(if last == 'A' { 'E' } else { 'A' });
    let expired = TokenIssuer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
        .issue_at("alice", &json!({}), 1_000_000)
        .unwrap()
        .token;

    let es_key = || VerifyingKey::from_pem("ES256", EC_PUBLIC);
    let rs_key = || VerifyingKey::from_pem("RS256", RSA_PUBLIC);
    let es = protected(JwtAuthLayer::keys([es_key()]));
    let es_cached = protected(JwtAuthLayer::keys([es_key()]).cache_verified(10_000));
    let rs = protected(JwtAuthLayer::keys([rs_key()]));
    let rs_cached = protected(JwtAuthLayer::keys([rs_key()]).cache_verified(10_000));
    let es_token = token(TokenIssuer::from_pem("ES256", EC_PRIVATE));
    let rs_token = token(TokenIssuer::from_pem("RS256", RSA_PRIVATE));

    let mut group = c.benchmark_group("jwt");
    let cases: Vec<(&str, &Router, Option<&str>, u16)> = vec![
        ("bare_router", &bare, None, 200),
        ("hs256_accepted", &hs, Some(&hs_token), 200),
        ("hs256_rejected_bad_signature", &hs, Some(&forged), 401),
        ("hs256_rejected_expired", &hs, Some(&expired), 401),
        ("hs256_rejected_missing", &hs, None, 401),
        ("es256_accepted", &es, Some(&es_token), 200),
        ("es256_accepted_cached", &es_cached, Some(&es_token), 200),
        ("rs256_accepted", &rs, Some(&rs_token), 200),
        ("rs256_accepted_cached", &rs_cached, Some(&rs_token), 200),
    ];
    for (name, router, token, status) in cases {
        // Sanity: each case answers what its name says.
        let res = rt.block_on(router.clone().oneshot(request(token))).unwrap();
        assert_eq!(res.status().as_u16(), status, "{name}");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let router = router.clone();
                let req = request(token);
                async move { black_box(router.oneshot(req).await.unwrap()) }
            })
        });
    }
    group.finish();

    // Verification + claims decode alone (no router, no response), the per-request crypto cost.
    let mut group = c.benchmark_group("verify");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hs_verifier = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let es_verifier = JwtAuthLayer::keys([es_key()])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let es_cached_verifier = JwtAuthLayer::keys([es_key()])
        .issuer(ISS)
        .audience(AUD)
        .cache_verified(10_000)
        .build()
        .unwrap();
    let rs_verifier = JwtAuthLayer::keys([rs_key()])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let rs_cached_verifier = JwtAuthLayer::keys([rs_key()])
        .issuer(ISS)
        .audience(AUD)
        .cache_verified(10_000)
        .build()
        .unwrap();
    let direct = [
        ("hs256_accepted", &hs_verifier, &hs_token, true),
        ("hs256_rejected_bad_signature", &hs_verifier, &forged, false),
        ("hs256_rejected_expired", &hs_verifier, &expired, false),
        ("es256_accepted", &es_verifier, &es_token, true),
        (
            "es256_accepted_cached",
            &es_cached_verifier,
            &es_token,
            true,
        ),
        ("rs256_accepted", &rs_verifier, &rs_token, true),
        (
            "rs256_accepted_cached",
            &rs_cached_verifier,
            &rs_token,
            true,
        ),
    ];
    for (name, verifier, token, ok) in direct {
        assert_eq!(verifier.verify_at(token, now).is_ok(), ok, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(verifier.verify_at(black_box(token), now).is_ok()))
        });
    }
    // What a handler's `Claims<T>` adds: the typed decode of the whole claims set.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct AppClaims {
        sub: String,
        exp: u64,
        scope: String,
        roles: Vec<String>,
    }
    let decode = |token: &str| -> Option<AppClaims> {
        let verified = hs_verifier.verify_at(token, now).ok()?;
        serde_json::from_str(verified.claims_json()).ok()
    };
    assert!(decode(&hs_token).is_some());
    group.bench_function("hs256_accepted_typed_claims", |b| {
        b.iter(|| black_box(decode(black_box(&hs_token)).is_some()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
