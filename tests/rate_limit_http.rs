//! Rate limiting and the login guard over real sockets on 127.0.0.1.

mod support;

use axum::{
    routing::{get, post},
    Json, Router,
};
use axum_shield::client_ip::ForwardedHeader;
use axum_shield::rate_limit::{LoginAttempt, LoginGuardLayer, RateLimitLayer};
use axum_shield::{Rejection, Shield};
use serde::Deserialize;

use support::app_server::serve;

#[tokio::test]
async fn spoofed_x_forwarded_for_over_a_real_socket_keeps_the_key() {
    let shield = Shield::api()
        .trusted_proxies(["10.0.0.0/8"])
        .rate_limit(RateLimitLayer::per_ip("3/minute").build().unwrap())
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(shield),
    )
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let res = client
            .get(format!("http://{addr}/"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .header("forwarded", format!("for=198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

/// Statuses of `n` requests carrying the raw bytes `value` in header `name`.
async fn statuses_with(addr: std::net::SocketAddr, name: &str, value: &[u8], n: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..n {
        let res = client
            .get(format!("http://{addr}/"))
            .header(
                name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    statuses
}

/// The reproduction of issue 16, item 1: behind a trusted proxy whose range is exempt (as for
/// load-balancer health checks), a client that prefixes `X-Forwarded-For` with a byte that is
/// not UTF-8 (or leaves a quote open in `Forwarded`) must still be limited as itself.
#[tokio::test]
async fn malformed_forwarding_header_behind_an_exempt_trusted_proxy_is_still_limited() {
    for (header, name, values) in [
        (
            ForwardedHeader::XForwardedFor,
            "x-forwarded-for",
            // What nginx's `$proxy_add_x_forwarded_for` makes of the client's `\xff`; then the
            // bare malformed entry (the unknown client's one shared bucket).
            [&b"\xff, 203.0.113.7"[..], b"\xff"],
        ),
        (
            ForwardedHeader::Forwarded,
            "forwarded",
            [&b"for=\", for=203.0.113.7"[..], b"for=\""],
        ),
    ] {
        let limit = RateLimitLayer::per_ip("2/minute")
            .exempt_ips(["127.0.0.0/8"])
            .build()
            .unwrap();
        let shield = Shield::api()
            .trusted_proxies(["127.0.0.1"])
            .forwarded_header(header)
            .rate_limit(limit)
            .build()
            .unwrap();
        let addr = serve(
            Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(shield),
        )
        .await;
        for value in values {
            assert_eq!(
                statuses_with(addr, name, value, 3).await,
                [200, 200, 429],
                "{name}: {value:?}"
            );
        }
        // The proxy's own requests (health checks) stay exempt.
        let client = reqwest::Client::new();
        for _ in 0..5 {
            let res = client.get(format!("http://{addr}/")).send().await.unwrap();
            assert_eq!(res.status(), 200);
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    attempt: LoginAttempt,
    Json(c): Json<Credentials>,
) -> Result<&'static str, Rejection> {
    attempt
        .verify(&c.username, || async {
            (c.username == "alice" && c.password == "correct horse").then_some("welcome")
        })
        .await
}

#[tokio::test]
async fn login_brute_force_is_refused_identically_for_known_and_unknown_accounts() {
    let guard = LoginGuardLayer::builder()
        .account_free_failures(3)
        .build()
        .unwrap();
    let shield = Shield::api().build().unwrap();
    let app = Router::new()
        .route("/login", post(login).route_layer(guard))
        .layer(shield);
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let post = |user: &'static str, password: &'static str| {
        client
            .post(format!("http://{addr}/login"))
            .json(&serde_json::json!({ "username": user, "password": password }))
            .send()
    };
    for user in ["alice", "mallory-does-not-exist"] {
        for _ in 0..4 {
            let res = post(user, "guess").await.unwrap();
            assert_eq!(res.status(), 401);
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["code"], "invalid_credentials");
        }
    }
    let a = post("alice", "correct horse").await.unwrap();
    let b = post("mallory-does-not-exist", "guess").await.unwrap();
    assert_eq!(
        a.status(),
        429,
        "even the right password waits out the backoff"
    );
    assert_eq!(b.status(), 429);
    assert_eq!(a.headers()["retry-after"], b.headers()["retry-after"]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(a["code"], b["code"]);
}
