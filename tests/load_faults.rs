//! Load and fault tests through the full quickstart stack over real sockets on loopback
//! (issue: proof). Bounded in requests and time; every response must be one of the expected
//! statuses with the expected headers, and no request may get a 5xx it should not.
#![cfg(all(feature = "jwt", feature = "validate"))]

mod support;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code, unreachable_pub)]
mod quickstart;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_shield::auth::TokenIssuer;
use futures_util::stream::{self, StreamExt};
use serde_json::json;

const SECRET: &[u8] = b"load-test-secret-load-test-secret-0123";
const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 64;
/// The attacker address sends this many requests; the per-IP quota lets `QUOTA` through.
const ATTACKER_REQUESTS: usize = 2_000;
const QUOTA: u32 = 200;

fn settings() -> quickstart::Settings {
    quickstart::Settings {
        jwt_secret: SECRET.to_vec(),
        rate_limit: format!("{QUOTA}/hour"),
        rate_limit_max_keys: 100_000,
        // The test client plays a trusted proxy so that it can speak for many clients.
        trusted_proxies: vec!["127.0.0.1/32".into()],
        access_log: false,
        #[cfg(feature = "redis")]
        redis: None,
    }
}

async fn serve(settings: &quickstart::Settings) -> SocketAddr {
    support::app_server::serve(quickstart::app(settings).expect("quickstart builds")).await
}

fn token(sub: &str, roles: &[&str]) -> String {
    TokenIssuer::hs256(SECRET)
        .issuer(quickstart::ISSUER)
        .audience(quickstart::AUDIENCE)
        .build()
        .unwrap()
        .issue(sub, &json!({ "roles": roles }))
        .unwrap()
        .token
}

/// One kind of request in the mix, and the statuses it may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    MissingToken,
    ForgedToken,
    NotAdmin,
    NewUser,
    InvalidUser,
    Attacker,
}

impl Kind {
    fn of(i: usize) -> Self {
        if i < ATTACKER_REQUESTS {
            return Kind::Attacker;
        }
        match i % 6 {
            0 => Kind::Valid,
            1 => Kind::MissingToken,
            2 => Kind::ForgedToken,
            3 => Kind::NotAdmin,
            4 => Kind::NewUser,
            _ => Kind::InvalidUser,
        }
    }

    fn allowed(self, status: u16) -> bool {
        match self {
            Kind::Valid => status == 200,
            Kind::MissingToken | Kind::ForgedToken => status == 401,
            Kind::NotAdmin => status == 403,
            Kind::NewUser => status == 201,
            Kind::InvalidUser => status == 422,
            Kind::Attacker => status == 200 || status == 429,
        }
    }
}

struct Tokens {
    alice: String,
    forged: String,
}

async fn one(client: &reqwest::Client, base: &str, tokens: &Tokens, i: usize) -> (Kind, u16) {
    let kind = Kind::of(i);
    // Ordinary clients are spread over 1000 addresses (far below the quota each); the
    // attacker is one address.
    let client_ip = match kind {
        Kind::Attacker => "203.0.113.66".to_owned(),
        _ => format!("198.51.{}.{}", (i / 250) % 4, i % 250),
    };
    let request = match kind {
        Kind::Valid | Kind::Attacker => client.get(format!("{base}/me")).bearer_auth(&tokens.alice),
        Kind::MissingToken => client.get(format!("{base}/me")),
        Kind::ForgedToken => client.get(format!("{base}/me")).bearer_auth(&tokens.forged),
        Kind::NotAdmin => client
            .get(format!("{base}/admin/stats"))
            .bearer_auth(&tokens.alice),
        Kind::NewUser => client.post(format!("{base}/users")).json(&json!({
            "email": "ann@example.com", "name": "Ann", "age": 30,
            "address": { "city": "Oslo", "zip": "0150" }
        })),
        Kind::InvalidUser => client.post(format!("{base}/users")).json(&json!({
            "email": "not-an-email", "name": "", "age": 7,
            "address": { "city": "Oslo", "zip": "1" }
        })),
    };
    let response = request
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .expect("the server answers every request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    assert!(
        headers.contains_key("x-request-id"),
        "{kind:?}: no request id"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{kind:?}");
    assert_eq!(headers["x-frame-options"], "DENY", "{kind:?}");
    if status >= 400 {
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{kind:?} {status}"
        );
    }
    match status {
        401 => assert!(
            headers.contains_key("www-authenticate"),
            "401 without challenge"
        ),
        429 => {
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1, "Retry-After must never be 0");
        }
        _ => {}
    }
    let _ = response.bytes().await;
    (kind, status)
}

async fn run(addr: SocketAddr, requests: usize) -> BTreeMap<(Kind, u16), usize> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://{addr}");
    let tokens = Arc::new(Tokens {
        alice: token("alice", &["user"]),
        forged: {
            // The last signature character changed, whatever it was ('A' and 'E' both keep the
            // encoding canonical, so this is a wrong signature, not a malformed one).
            let mut t = token("alice", &["admin"]);
            let last = t.pop();
            t.push(if last == Some('A') { 'E' } else { 'A' });
            t
        },
    });
    let results: Vec<(Kind, u16)> = stream::iter(0..requests)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            let tokens = tokens.clone();
            async move { one(&client, &base, &tokens, i).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for result in results {
        *counts.entry(result).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_mixed_requests_get_only_expected_answers() {
    let addr = serve(&settings()).await;
    let counts = tokio::time::timeout(Duration::from_secs(240), run(addr, REQUESTS))
        .await
        .expect("the run finishes in bounded time");
    for ((kind, status), n) in &counts {
        assert!(
            kind.allowed(*status),
            "{n} × {kind:?} got {status}: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<usize>(), REQUESTS);
    let attacker_allowed = counts.get(&(Kind::Attacker, 200)).copied().unwrap_or(0);
    // GCRA: the burst of QUOTA, plus at most one more per 18 s of test time.
    assert!(
        (QUOTA as usize..=QUOTA as usize + 10).contains(&attacker_allowed),
        "attacker got {attacker_allowed} through: {counts:?}"
    );
    assert_eq!(
        counts.get(&(Kind::Attacker, 429)).copied().unwrap_or(0),
        ATTACKER_REQUESTS - attacker_allowed
    );
    assert!(counts.keys().all(|(_, status)| *status < 500), "{counts:?}");

    // The server still serves normally after the run.
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[cfg(feature = "redis")]
mod with_redis {
    use super::support::redis_server::RedisServer;
    use super::*;

    /// Valid requests from distinct clients while Redis is killed and restarted: before,
    /// 200; during the outage, the configured fail-closed 503 problem+json (never a hang, a
    /// panic or a bypassed limit); after the restart, 200 again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_killed_and_restarted_mid_run_fails_closed_then_recovers() {
        let mut redis = RedisServer::start();
        let port = redis.port;
        let mut settings = settings();
        settings.redis = Some(
            axum_shield::redis::RedisStore::connect(&format!("redis://127.0.0.1:{port}/"))
                .await
                .unwrap(),
        );
        let addr = serve(&settings).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let alice = token("alice", &["user"]);
        let phase = |count: usize, offset: usize| {
            let client = client.clone();
            let alice = alice.clone();
            async move {
                let statuses: Vec<u16> = stream::iter(0..count)
                    .map(|i| {
                        let client = client.clone();
                        let alice = alice.clone();
                        async move {
                            let response = client
                                .get(format!("http://{addr}/me"))
                                .bearer_auth(&alice)
                                .header("x-forwarded-for", format!("10.{}.{}.1", offset, i % 250))
                                .send()
                                .await
                                .expect("answered, not hung");
                            let status = response.status().as_u16();
                            if status != 200 {
                                assert_eq!(
                                    response.headers()["content-type"],
                                    "application/problem+json"
                                );
                            }
                            status
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                statuses
            }
        };

        let before = phase(500, 1).await;
        assert!(before.iter().all(|s| *s == 200), "{before:?}");

        redis.kill();
        let during = tokio::time::timeout(Duration::from_secs(60), phase(500, 2))
            .await
            .expect("no request hangs while Redis is down");
        assert!(during.iter().all(|s| *s == 503), "fail closed: {during:?}");

        let _redis = RedisServer::start_on(port);
        let mut recovered = false;
        for _ in 0..100 {
            let statuses = phase(20, 3).await;
            if statuses.iter().all(|s| *s == 200) {
                recovered = true;
                break;
            }
            assert!(statuses.iter().all(|s| *s == 200 || *s == 503));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the limiter reconnects after Redis comes back");
    }
}
