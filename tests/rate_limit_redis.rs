//! Redis-backed rate limits, login guard and revocation list against a real `redis-server`
//! started by the test on a free loopback port.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::get, Router};
use axum_shield::auth::{RedisRevocationList, RevocationStore};
use axum_shield::rate_limit::{FailureMode, LimitKey, LoginGuardLayer, RateLimitLayer};
use axum_shield::redis::RedisStore;
use axum_shield::Shield;

use support::app_server::serve;
use support::redis_server::RedisServer;

/// One application instance on its own port, limited through Redis.
async fn instance(url: &str, quota: &str, mode: FailureMode) -> SocketAddr {
    let store = RedisStore::connect(url).await.unwrap();
    let limit = RateLimitLayer::per_ip(quota)
        .redis(store, mode)
        .build()
        .unwrap();
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
    let global = RateLimitLayer::per_ip("100/minute")
        .redis(store.clone(), FailureMode::Closed)
        .build()
        .unwrap();
    let strict = RateLimitLayer::per_ip("2/minute")
        .redis(store, FailureMode::Closed)
        .build()
        .unwrap();
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
        let limit = RateLimitLayer::per_ip("10/minute")
            .redis(store, FailureMode::Closed)
            .build()
            .unwrap();
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
        LoginGuardLayer::builder()
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
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    list.revoke("https://id.example", "abc", exp).await.unwrap();
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
    use axum_shield::auth::jwt::JwtAuthLayer;
    use axum_shield::auth::TokenIssuer;
    use std::sync::Arc;

    let mut redis = RedisServer::start();
    let secret = b"redis-revocation-secret-0123456789-abcdef";
    let tokens = TokenIssuer::hs256(secret)
        .issuer("https://id.example")
        .audience("api")
        .build()
        .unwrap();
    let issued = tokens.issue("alice", &serde_json::json!({})).unwrap();
    let verifier = |list: RedisRevocationList| {
        JwtAuthLayer::hs256(secret)
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
    let fresh = tokens.issue("bob", &serde_json::json!({})).unwrap();
    assert!(
        instance_b.verify(&fresh.token).await.is_err(),
        "a token must not be admitted while revocation cannot be checked"
    );
}

/// Item 2 of issue 16, in Redis: the lock was only read before the (slow) credential check
/// and the failure recorded after it, so every concurrent guess reached the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_through_redis_cannot_all_reach_the_password_check() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::{mpsc, Semaphore};

    let redis = RedisServer::start();
    let guard = |store: RedisStore| {
        LoginGuardLayer::builder()
            .account_free_failures(5)
            .redis(store.timeout(Duration::from_secs(5)))
            .build()
            .unwrap()
    };
    let guards = [
        guard(RedisStore::connect(&redis.url()).await.unwrap()),
        guard(RedisStore::connect(&redis.url()).await.unwrap()),
    ];
    let reached = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (arrived, mut arrivals) = mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for i in 0..200u16 {
        let g = guards[usize::from(i % 2)].clone();
        let (reached, release, arrived) = (reached.clone(), release.clone(), arrived.clone());
        tasks.push(tokio::spawn(async move {
            // One /64 each, as in the report.
            let from = LimitKey::Ip(format!("2001:db8:0:{i:x}::").parse().unwrap());
            let attempt = g.attempt(from).await.unwrap();
            let check_arrived = arrived.clone();
            let outcome = attempt
                .verify("victim", || async move {
                    reached.fetch_add(1, Ordering::SeqCst);
                    let _ = check_arrived.send(());
                    // Stands in for a slow hash: held until every attempt has arrived.
                    let _permit = release.acquire().await.unwrap();
                    None::<()>
                })
                .await;
            if let Err(r) = &outcome {
                if r.status() == 429 {
                    let _ = arrived.send(());
                }
            }
            outcome.unwrap_err().status().as_u16()
        }));
    }
    drop(arrived);
    for _ in 0..200 {
        arrivals.recv().await.expect("every attempt arrives");
    }
    release.add_permits(200);
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // As many as one after another: the free failures and the one that starts the backoff.
    assert_eq!(reached.load(Ordering::SeqCst), 6);
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 6);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 194);
}

/// Item 11 of issue 16, in Redis: the count expired with the maximum lock (both last one
/// window), so the first failure after the lock started over at the free allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_count_in_redis_outlives_a_maximum_lock() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let guard = LoginGuardLayer::builder()
        .account_free_failures(0)
        .window(Duration::from_secs(60))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .redis(store)
        .build()
        .unwrap();
    let attempt = guard
        .attempt(LimitKey::Ip("192.0.2.1".parse().unwrap()))
        .await
        .unwrap();
    let _ = attempt.account("alice").await.unwrap().failed().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let lock: i64 = redis::cmd("PTTL")
        .arg("axum-shield:lg:{a|k:alice}:lock")
        .query_async(&mut conn)
        .await
        .unwrap();
    let count: i64 = redis::cmd("PTTL")
        .arg("axum-shield:lg:{a|k:alice}:n")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(lock > 50_000, "a maximum lock of 60 s: {lock}");
    // One window past the end of the lock, so the next failure still counts.
    assert!(count > lock + 50_000, "count {count} ms, lock {lock} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_through_redis_refunds_its_charge_to_the_client_ip() {
    let redis = RedisServer::start();
    let guard = LoginGuardLayer::builder()
        .ip_free_failures(2)
        .redis(RedisStore::connect(&redis.url()).await.unwrap())
        .build()
        .unwrap();
    let from = || LimitKey::Ip("192.0.2.1".parse().unwrap());
    let fail = |user: &'static str| {
        let guard = guard.clone();
        async move {
            let attempt = guard.attempt(from()).await?;
            Ok::<_, axum_shield::Rejection>(attempt.account(user).await?.failed().await)
        }
    };
    fail("a").await.unwrap();
    fail("b").await.unwrap();
    // Successes charge before the check like every attempt, and are refunded after it.
    for _ in 0..3 {
        let attempt = guard.attempt(from()).await.unwrap();
        attempt.account("bob").await.unwrap().succeeded().await;
    }
    // The third failure starts the IP's backoff, not a success.
    assert_eq!(fail("c").await.unwrap().status(), 401);
    assert_eq!(fail("d").await.unwrap_err().status(), 429);
}

/// Issue 16, item 4: a verifier accepts a token until `exp` + leeway (up to 600 s), so the
/// Redis entry of a revoked token must live that long too, not just until `exp`. A 1 s token
/// is revoked; the TTL Redis holds for its entry, read over a direct connection, covers
/// `exp` + 600 s. A token revoked after its `exp` (inside the leeway) is refused.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn redis_revocation_outlives_exp_by_the_largest_leeway() {
    use axum_shield::auth::jwt::JwtAuthLayer;
    use axum_shield::auth::RevocationStore;
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    let redis = RedisServer::start();
    let list = RedisRevocationList::new(RedisStore::connect(&redis.url()).await.unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iss = "https://id.example";
    RevocationStore::revoke(&list, iss, "one-second", now + 1)
        .await
        .unwrap();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("axum-shield:revoked:{}:{iss}:one-second", iss.len());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The largest leeway a verifier may be built with (documented on `RevocationStore`).
    const MAX_LEEWAY_SECS: i64 = 600;
    let wanted = (1 + MAX_LEEWAY_SECS) * 1000;
    // A little slack for the seconds boundary and a slow machine, none for the leeway.
    assert!(
        pttl > wanted - 5_000 && pttl <= wanted,
        "TTL {pttl} ms, wanted about {wanted} ms (exp + the largest leeway)"
    );

    // End to end: a 1 s token that expired 2 s ago, still inside the verifier's 60 s
    // leeway, is revoked and refused (its entry outlives `exp`).
    let secret = b"redis-revocation-secret-0123456789-abcdef";
    let verifier = JwtAuthLayer::hs256(secret)
        .issuer(iss)
        .audience("api")
        .revocation(Arc::new(list.clone()))
        .build()
        .unwrap();
    let exp = now - 2;
    let claims = serde_json::json!({
        "sub": "alice", "iss": iss, "aud": "api", "iat": exp - 1, "exp": exp, "jti": "expired-2s-ago",
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    assert!(verifier.verify(&token).await.is_ok());
    RevocationStore::revoke(&list, iss, "expired-2s-ago", exp)
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!(
            "axum-shield:revoked:{}:{iss}:expired-2s-ago",
            iss.len()
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > (MAX_LEEWAY_SECS - 2) * 1000 - 5_000, "TTL {pttl} ms");
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        axum_shield::auth::jwt::TokenError::Revoked
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
    use axum_shield::principal::{Principal, PrincipalKind};

    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let limit = RateLimitLayer::per_principal("1/minute")
        .exempt_keys(["svc"])
        .redis(store, FailureMode::Closed)
        .build()
        .unwrap();
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
