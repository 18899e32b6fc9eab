//! Redis-backed rate limits, login guard and revocation list against a real `redis-server`
//! started by the test on a free loopback port.
#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::get, Router};
use axum_shield::rate_limit::{
    FailureMode, LimitKey, LoginGuard, RateLimit, RedisRevocationList, RedisStore,
};
use axum_shield::Shield;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;
#[path = "support/app_server.rs"]
mod app_server;
use app_server::serve;

/// One application instance on its own port, limited through Redis.
async fn instance(url: &str, quota: &str, mode: FailureMode) -> SocketAddr {
    let store = RedisStore::connect(url).await.unwrap();
    let limit = RateLimit::per_ip(quota).unwrap().redis(store, mode);
    let shield = Shield::api().rate_limit(limit).build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(shield);
    serve(app).await
}

async fn get_status(client: &reqwest::Client, addr: SocketAddr) -> u16 {
    client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_a_quota_allow_exactly_the_quota_in_total() {
    let redis = RedisServer::start();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&redis.url(), "10/minute", FailureMode::Closed).await);
    }
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = client.clone();
        let addr = instances[i % 3];
        tasks.push(tokio::spawn(async move { get_status(&client, addr).await }));
    }
    let mut allowed = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => allowed += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((allowed, refused), (10, 20));
    let refused = client
        .get(format!("http://{}/", instances[0]))
        .send()
        .await
        .unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry), "retry-after {retry}");
    assert!(refused.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .contains(";r=0;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unnamed_limits_of_one_window_keep_separate_counts_in_redis() {
    // A Shield-wide per-IP limit and a stricter per-IP limit on one route, both unnamed and
    // both per minute: each must count against its own quota only.
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let global = RateLimit::per_ip("100/minute")
        .unwrap()
        .redis(store.clone(), FailureMode::Closed);
    let strict = RateLimit::per_ip("2/minute")
        .unwrap()
        .redis(store, FailureMode::Closed)
        .layer();
    let shield = Shield::api().rate_limit(global).build().unwrap();
    let app = Router::new()
        .route("/login", get(|| async { "ok" }).route_layer(strict))
        .route("/", get(|| async { "ok" }))
        .layer(shield);
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{addr}/login"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "the route's own quota of 2");
    // Three requests (the refused one too) spent 3 of the global 100, not 100.
    let r = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fields = r.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(fields.contains(";r=96;"), "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_timeout_longer_than_the_default_is_honoured() {
    // Redis answers after about 600 ms (a script busy on the server blocks it): with a 2 s
    // timeout the request waits and is allowed; with the default 250 ms it fails closed.
    let redis = RedisServer::start();
    let patient = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .timeout(Duration::from_secs(2));
    let hasty = RedisStore::connect(&redis.url()).await.unwrap();
    let app = |store| {
        let limit = RateLimit::per_ip("10/minute")
            .unwrap()
            .redis(store, FailureMode::Closed)
            .layer();
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(limit)
    };
    let addrs = [serve(app(patient)).await, serve(app(hasty)).await];
    let client = reqwest::Client::new();
    // Warm both connections (and load the script) before Redis is made slow.
    assert_eq!(get_status(&client, addrs[0]).await, 200);
    assert_eq!(get_status(&client, addrs[1]).await, 200);
    for (addr, expected) in [(addrs[0], 200), (addrs[1], 503)] {
        let url = redis.url();
        let busy = tokio::spawn(async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            // The script's own reply may time out on this client's side; the server is
            // busy for 600 ms either way.
            let _: Result<(), _> = redis::cmd("EVAL")
                .arg(
                    "local s = redis.call('TIME') \
                     repeat local n = redis.call('TIME') \
                     until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 600000",
                )
                .arg(0)
                .query_async(&mut conn)
                .await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(get_status(&client, addr).await, expected);
        busy.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_applies_the_failure_mode_and_recovers_after_restart() {
    let mut redis = RedisServer::start();
    let closed = instance(&redis.url(), "3/minute", FailureMode::Closed).await;
    let open = instance(&redis.url(), "3/minute", FailureMode::Open).await;
    let local = instance(&redis.url(), "3/minute", FailureMode::Local).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, closed).await, 200);

    redis.kill();
    assert_eq!(get_status(&client, closed).await, 503, "closed refuses");
    for _ in 0..5 {
        assert_eq!(get_status(&client, open).await, 200, "open allows");
    }
    let local_statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get_status(&client, local).await);
        }
        v
    };
    assert_eq!(
        local_statuses,
        [200, 200, 200, 429],
        "local falls back to memory"
    );

    let port = redis.port;
    let _restarted = RedisServer::start_on(port);
    let mut recovered = false;
    for _ in 0..50 {
        if get_status(&client, closed).await != 503 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the connection manager reconnects after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_guard_and_revocations_are_shared_through_redis() {
    let redis = RedisServer::start();
    let guard = |store| {
        LoginGuard::builder()
            .account_free_failures(2)
            .redis(store)
            .build()
            .unwrap()
    };
    let a = guard(RedisStore::connect(&redis.url()).await.unwrap());
    let b = guard(RedisStore::connect(&redis.url()).await.unwrap());
    let ip = |s: &str| LimitKey::Ip(s.parse().unwrap());
    for g in [&a, &b, &a] {
        let attempt = g.attempt(ip("192.0.2.1")).await.unwrap();
        let _ = attempt.account("Alice").await.unwrap().failed().await;
    }
    // The third failure (on two instances) started a backoff seen by both.
    let refused = b
        .attempt(ip("192.0.2.9"))
        .await
        .unwrap()
        .account("alice")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));

    let list = RedisRevocationList::new(RedisStore::connect(&redis.url()).await.unwrap());
    assert!(!list.is_revoked("https://id.example", "abc").await.unwrap());
    list.revoke("https://id.example", "abc", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(list.is_revoked("https://id.example", "abc").await.unwrap());
    assert!(!list
        .is_revoked("https://other.example", "abc")
        .await
        .unwrap());
}

/// The Redis list is a `RevocationStore`: a JWT revoked on one instance is refused by a
/// verifier on another, and an unreachable Redis refuses (fails closed) instead of admitting.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn jwt_revoked_through_redis_is_refused_everywhere_and_redis_down_fails_closed() {
    use axum_shield::auth::{RevocationStore, TokenIssuer};
    use axum_shield::JwtAuth;
    use std::sync::Arc;

    let mut redis = RedisServer::start();
    let secret = b"redis-revocation-secret-0123456789-abcdef";
    let issued = TokenIssuer::hs256(secret)
        .unwrap()
        .issuer("https://id.example")
        .audience("api")
        .issue("alice", &serde_json::json!({}))
        .unwrap();
    let verifier = |list: RedisRevocationList| {
        JwtAuth::hs256(secret)
            .unwrap()
            .issuer("https://id.example")
            .audience("api")
            .revocation(Arc::new(list))
            .build()
            .unwrap()
    };
    let instance_a = RedisRevocationList::new(RedisStore::connect(&redis.url()).await.unwrap());
    let instance_b = verifier(RedisRevocationList::new(
        RedisStore::connect(&redis.url()).await.unwrap(),
    ));
    assert!(instance_b.verify(&issued.token).await.is_ok());

    RevocationStore::revoke(
        &instance_a,
        "https://id.example",
        &issued.jti,
        issued.expires_at,
    )
    .await
    .unwrap();
    assert!(
        instance_b.verify(&issued.token).await.is_err(),
        "revoked jti accepted"
    );

    redis.kill();
    let fresh = TokenIssuer::hs256(secret)
        .unwrap()
        .issuer("https://id.example")
        .audience("api")
        .issue("bob", &serde_json::json!({}))
        .unwrap();
    assert!(
        instance_b.verify(&fresh.token).await.is_err(),
        "a token must not be admitted while revocation cannot be checked"
    );
}

/// Issue 16, item 7, in Redis: the script checks every quota before charging any, and a
/// refusal reports the quota with the longest wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_multi_quota_refusal_charges_nothing_and_reports_the_longest_wait() {
    let redis = RedisServer::start();
    let addr = instance(&redis.url(), "10/day; 1/minute", FailureMode::Closed).await;
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, addr).await, 200);
    for _ in 0..9 {
        let r = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "the minute refuses: {retry}");
    }
    // One unit of "10/day" is 8640 s: the day's state owes one unit, not ten.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("axum-shield:rl:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=8_640_001).contains(&ttl), "{key}: {ttl} ms");
    }

    // Both quotas refuse the second request; the first to refuse would say 30 s.
    let addr = instance(
        &redis.url(),
        "1 per 30 seconds; 1/hour",
        FailureMode::Closed,
    )
    .await;
    assert_eq!(get_status(&client, addr).await, 200);
    let r = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3500, "the hour's wait, not the 30 s: {retry}");
}

/// Issue 16, item 10, in Redis: per-principal keys name the principal's kind, so a JWT whose
/// `sub` equals an API key's id shares neither its bucket nor its exemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_of_a_jwt_and_an_api_key_with_the_same_id_stay_apart() {
    use axum::extract::Request;
    use axum::middleware::{from_fn, Next};
    use axum_shield::auth::{Principal, PrincipalKind};

    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let limit = RateLimit::per_principal("1/minute")
        .unwrap()
        .exempt_keys(["svc"])
        .redis(store, FailureMode::Closed)
        .layer();
    // Stands in for the JWT and API-key layers: `x-kind` and `x-id` name the principal.
    let authenticate = from_fn(|mut req: Request, next: Next| async move {
        let (kind, id) = {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            (header("x-kind"), header("x-id"))
        };
        let kind = if kind == "jwt" {
            PrincipalKind::Jwt
        } else {
            PrincipalKind::ApiKey
        };
        req.extensions_mut().insert(Principal::new(kind, id));
        next.run(req).await
    });
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit)
        .layer(authenticate);
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for (kind, id) in [
        ("api_key", "k1"),
        ("jwt", "k1"),
        ("api_key", "k1"),
        ("api_key", "svc"),
        ("api_key", "svc"),
        ("jwt", "svc"),
        ("jwt", "svc"),
    ] {
        let r = client
            .get(format!("http://{addr}/"))
            .header("x-kind", kind)
            .header("x-id", id)
            .send()
            .await
            .unwrap();
        seen.push(r.status().as_u16());
    }
    assert_eq!(seen, [200, 200, 429, 200, 200, 200, 429]);
}
