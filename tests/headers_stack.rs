//! Security headers, HSTS, nonces, HTTPS redirect and CORS through the whole `Shield` stack.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use axum_shield::headers::{
    ContentSecurityPolicy, CorsPolicy, CspNonce, Directive, SecurityHeadersLayer, Source,
    TlsConnection,
};
use axum_shield::{Rejection, RejectionKind, Shield};
use http::{Request, Response, StatusCode};
use tower::ServiceExt;

/// The headers the `api` preset puts on every response.
const API_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

fn assert_api_headers(res: &Response<Body>, what: &str) {
    for (name, value) in API_HEADERS {
        assert_eq!(
            res.headers().get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{what}: {name}"
        );
    }
    assert!(
        res.headers()["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("geolocation=()"),
        "{what}: permissions-policy"
    );
    assert!(
        !res.headers().contains_key("strict-transport-security"),
        "{what}: HSTS over plain HTTP"
    );
    assert!(res.headers().contains_key("x-request-id"), "{what}");
}

fn reject(kind: RejectionKind) -> impl Fn() -> std::future::Ready<Rejection> + Clone {
    move || std::future::ready(Rejection::new(kind))
}

/// What `into_make_service_with_connect_info::<SocketAddr>()` would insert for this peer.
fn peer(ip: &str) -> axum::Extension<ConnectInfo<SocketAddr>> {
    axum::Extension(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40000)))
}

fn rejection_app() -> Router {
    let shield = Shield::api().body_limit(16).build().unwrap();
    Router::new()
        .route("/401", get(reject(RejectionKind::MissingCredentials)))
        .route("/403", get(reject(RejectionKind::InsufficientScope)))
        .route("/408", get(reject(RejectionKind::RequestTimeout)))
        .route("/413", post(|_body: Bytes| async { "unreachable" }))
        .route("/415", post(reject(RejectionKind::UnsupportedMediaType)))
        .route("/422", post(reject(RejectionKind::ValidationFailed)))
        .route("/429", get(reject(RejectionKind::RateLimited)))
        .route(
            "/500",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .layer(shield)
        .layer(peer("203.0.113.9"))
}

#[tokio::test]
async fn every_rejection_status_carries_the_preset_headers() {
    let cases = [
        ("GET", "/401", Body::empty(), 401),
        ("GET", "/403", Body::empty(), 403),
        ("GET", "/missing", Body::empty(), 404),
        ("GET", "/408", Body::empty(), 408),
        ("POST", "/413", Body::from(vec![b'x'; 64]), 413),
        ("POST", "/415", Body::empty(), 415),
        ("POST", "/422", Body::empty(), 422),
        ("GET", "/429", Body::empty(), 429),
        ("GET", "/500", Body::empty(), 500),
    ];
    for (method, path, body, status) in cases {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(body)
            .unwrap();
        let res = rejection_app().oneshot(req).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        assert_api_headers(&res, path);
    }
}

#[tokio::test]
async fn timeout_408_carries_the_preset_headers() {
    tokio::time::pause();
    let shield = Shield::api()
        .timeout(Duration::from_millis(50))
        .timeout_status(StatusCode::REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(shield)
        .layer(peer("203.0.113.9"));
    let res = app
        .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_api_headers(&res, "timeout");
}

fn proxied_app() -> Shield {
    Shield::api()
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap()
}

async fn hsts_for(peer_ip: &str, header: (&str, &str)) -> Option<String> {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(proxied_app())
        .layer(peer(peer_ip));
    let req = Request::get("/")
        .header(header.0, header.1)
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn hsts_is_sent_behind_a_trusted_proxy_that_says_https() {
    assert_eq!(
        hsts_for("10.0.0.7", ("x-forwarded-proto", "https"))
            .await
            .as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert!(hsts_for("10.0.0.7", ("x-forwarded-proto", "http"))
        .await
        .is_none());
}

#[tokio::test]
async fn untrusted_peer_x_forwarded_proto_https_does_not_trigger_hsts() {
    assert!(hsts_for("203.0.113.9", ("x-forwarded-proto", "https"))
        .await
        .is_none());
    assert!(hsts_for("203.0.113.9", ("forwarded", "proto=https"))
        .await
        .is_none());
}

#[tokio::test]
async fn hsts_is_sent_on_a_marked_tls_connection() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(Shield::api().build().unwrap())
        .layer(axum::Extension(TlsConnection))
        .layer(peer("203.0.113.9"));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(res.headers().contains_key("strict-transport-security"));
}

fn redirect_app() -> Router {
    let shield = Shield::api()
        .trusted_proxies(["10.0.0.0/8"])
        .https_redirect("https://api.example.com")
        .build()
        .unwrap();
    Router::new()
        .route("/orders", get(|| async { "orders" }))
        .layer(shield)
}

#[tokio::test]
async fn redirect_through_shield_refuses_spoofed_host() {
    let req = Request::get("/orders?page=2")
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https") // untrusted peer: ignored
        .body(Body::empty())
        .unwrap();
    let res = redirect_app()
        .layer(peer("203.0.113.9"))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        res.headers()["location"],
        "https://api.example.com/orders?page=2"
    );
    assert_api_headers(&res, "redirect");
}

#[tokio::test]
async fn redirect_lets_trusted_proxy_https_through() {
    let req = Request::get("/orders")
        .header("x-forwarded-proto", "https")
        .body(Body::empty())
        .unwrap();
    let res = redirect_app()
        .layer(peer("10.0.0.7"))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn nonces_differ_per_request_and_match_the_csp_header() {
    let csp = ContentSecurityPolicy::web().directive(Directive::ScriptSrc, [Source::Nonce]);
    let shield = Shield::api()
        .security_headers(SecurityHeadersLayer::web().csp(csp))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|nonce: CspNonce| async move { nonce.as_str().to_owned() }),
        )
        .layer(shield)
        .layer(peer("203.0.113.9"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        let nonce = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            csp.contains(&format!("script-src 'nonce-{nonce}'")),
            "{csp}"
        );
        assert!(!seen.contains(&nonce));
        seen.push(nonce);
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_before_auth_and_gets_headers() {
    let shield = Shield::api()
        .cors(CorsPolicy::allow_origins(["https://app.example.com"]).allow_credentials(true))
        .build()
        .unwrap();
    // An authentication route layer that refuses everything.
    let auth =
        axum::middleware::from_fn(|_req: Request<Body>, _next: axum::middleware::Next| async {
            Rejection::new(RejectionKind::MissingCredentials)
        });
    let app = Router::new()
        .route("/orders", post(|| async { "created" }))
        .route_layer(auth)
        .layer(shield)
        .layer(peer("203.0.113.9"));
    let preflight = Request::options("/orders")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(preflight).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    // The actual request still meets authentication, with CORS headers on the 401.
    let req = Request::post("/orders")
        .header("origin", "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[test]
fn cors_credentials_with_wildcard_origin_is_rejected_at_build_time() {
    let err = Shield::api()
        .cors(CorsPolicy::any_origin().allow_credentials(true))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "cors");
}

#[test]
fn cr_lf_header_values_are_rejected_at_build_time() {
    let err = SecurityHeadersLayer::api()
        .set("x-note", "ok\r\nSet-Cookie: session=evil")
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "security_headers");
    assert!(SecurityHeadersLayer::api()
        .set("x-note", "tab\tok")
        .build()
        .is_ok());
    assert!(SecurityHeadersLayer::api()
        .set("x-note", "bell\x07")
        .build()
        .is_err());
    let err = Shield::api()
        .https_redirect("https://api.example.com\r\n")
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "https_redirect");
}

#[tokio::test]
async fn handler_headers_policy_through_shield() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        ("cache-control", "public, max-age=60"),
                        ("x-content-type-options", "none"),
                        ("server", "secret-server/1.0"),
                        ("x-powered-by", "Express"),
                    ],
                    "ok",
                )
            }),
        )
        .layer(Shield::api().build().unwrap())
        .layer(peer("203.0.113.9"));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "public, max-age=60");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(!res.headers().contains_key("server"));
    assert!(!res.headers().contains_key("x-powered-by"));
}
