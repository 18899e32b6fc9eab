//! Integration tests of the `Shield` stack (issue: foundation), in process and over real TCP.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::rejection::RenderRejection;
use axum_shield::{ClientIp, Rejection, RejectionKind, Shield, ShieldConfig};
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

const PEER: ([u8; 4], u16) = ([203, 0, 113, 9], 4711);

fn routes() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/ip",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("secret internal state: db password hunter2");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route("/json", post(|Json(v): Json<Value>| async move { Json(v) }))
        .route(
            "/reject",
            get(|| async { Rejection::new(RejectionKind::Forbidden) }),
        )
        .route(
            "/server-header",
            get(|| async { ([("server", "nginx/1.2.3"), ("x-powered-by", "PHP/5")], "hi") }),
        )
}

fn app(shield: Shield) -> Router {
    routes()
        .layer(shield)
        .layer(MockConnectInfo(SocketAddr::from(PEER)))
}

async fn send(app: &Router, req: Request<Body>) -> (http::response::Parts, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts, bytes.to_vec())
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("problem+json body")
}

fn assert_api_headers(parts: &http::response::Parts) {
    let h = &parts.headers;
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.contains_key("x-request-id"));
}

#[tokio::test]
async fn every_response_gets_request_id_and_security_headers() {
    let app = app(Shield::api().build().unwrap());
    for (uri, status) in [
        ("/ok", 200),
        ("/missing", 404),
        ("/reject", 403),
        ("/panic", 500),
    ] {
        let (parts, _) = send(&app, get_req(uri)).await;
        assert_eq!(parts.status, status, "{uri}");
        assert_api_headers(&parts);
    }
}

#[tokio::test]
async fn leaking_headers_are_removed() {
    let app = app(Shield::api().build().unwrap());
    let (parts, _) = send(&app, get_req("/server-header")).await;
    assert!(!parts.headers.contains_key("server"));
    assert!(!parts.headers.contains_key("x-powered-by"));
}

#[tokio::test]
async fn not_found_is_problem_json_with_request_id() {
    let app = app(Shield::api().build().unwrap());
    let (parts, body) = send(&app, get_req("/nope")).await;
    assert_eq!(parts.status, 404);
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    let body = json(&body);
    assert_eq!(body["status"], 404);
    assert_eq!(
        body["request_id"],
        parts.headers["x-request-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn safe_client_request_id_is_kept() {
    let app = app(Shield::api().build().unwrap());
    let req = Request::get("/reject")
        .header("x-request-id", "client-id-123")
        .body(Body::empty())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.headers["x-request-id"], "client-id-123");
    assert_eq!(json(&body)["request_id"], "client-id-123");
}

#[tokio::test]
async fn unsafe_client_request_ids_are_replaced() {
    let app = app(Shield::api().build().unwrap());
    let long = "x".repeat(200);
    let values: Vec<&[u8]> = vec![
        long.as_bytes(),
        b"abc\tdef",
        b"evil;id",
        b"%0d%0aSet-Cookie:x",
        b"a b",
        b"<script>",
        "é".as_bytes(),
    ];
    for value in values {
        let req = Request::get("/ok")
            .header(
                "x-request-id",
                http::HeaderValue::from_bytes(value).unwrap(),
            )
            .body(Body::empty())
            .unwrap();
        let (parts, _) = send(&app, req).await;
        let id = parts.headers["x-request-id"].as_bytes();
        assert_ne!(id, value);
        assert_eq!(id.len(), 32);
        assert!(id.iter().all(u8::is_ascii_hexdigit));
    }
}

#[tokio::test]
async fn panicking_handler_gives_500_problem_without_internals_and_keeps_serving() {
    let app = app(Shield::api().build().unwrap());
    let (parts, body) = send(&app, get_req("/panic")).await;
    assert_eq!(parts.status, 500);
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(json(&body)["code"], "internal_error");
    let (parts, _) = send(&app, get_req("/ok")).await;
    assert_eq!(parts.status, 200);
}

#[tokio::test(start_paused = true)]
async fn slow_handler_times_out_with_problem_json() {
    let app = app(Shield::api()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap());
    let (parts, body) = send(&app, get_req("/slow")).await;
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    assert_eq!(json(&body)["code"], "service_unavailable");
    assert_api_headers(&parts);

    let app = self::app(
        Shield::api()
            .timeout(Duration::from_millis(100))
            .timeout_status(StatusCode::REQUEST_TIMEOUT)
            .build()
            .unwrap(),
    );
    let (parts, body) = send(&app, get_req("/slow")).await;
    assert_eq!(parts.status, 408);
    assert_eq!(json(&body)["code"], "request_timeout");
}

#[tokio::test]
async fn oversized_body_with_content_length_is_413() {
    let app = app(Shield::api().body_limit(16).build().unwrap());
    let req = Request::post("/echo")
        .header("content-length", "17")
        .body(Body::from(vec![b'a'; 17]))
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, 413);
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    assert_eq!(json(&body)["code"], "payload_too_large");
    assert_api_headers(&parts);
}

#[tokio::test]
async fn oversized_streamed_body_without_content_length_is_413() {
    let app = app(Shield::api().body_limit(16).build().unwrap());
    for uri in ["/echo", "/json"] {
        let chunks: Vec<Result<&'static [u8], std::io::Error>> =
            vec![Ok(b"0123456789"), Ok(b"0123456789")];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let (parts, body) = send(&app, req).await;
        assert_eq!(parts.status, 413, "{uri}");
        assert_eq!(parts.headers["content-type"], "application/problem+json");
        assert_eq!(json(&body)["code"], "payload_too_large");
    }
    let req = Request::post("/echo")
        .body(Body::from(vec![b'a'; 16]))
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, b"16");
}

#[tokio::test]
async fn body_limit_above_axums_default_is_honoured() {
    let app = app(Shield::api().body_limit(3 * 1024 * 1024).build().unwrap());
    let req = Request::post("/echo")
        .body(Body::from(vec![b'a'; 2_500_000]))
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, b"2500000");
}

#[tokio::test]
async fn missing_connect_info_is_a_clear_configuration_error() {
    let app = routes().layer(Shield::api().build().unwrap());
    let (parts, body) = send(&app, get_req("/ok")).await;
    assert_eq!(parts.status, 500);
    let body = json(&body);
    assert_eq!(body["code"], "misconfigured");
    assert!(parts.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn custom_renderer_replaces_the_body_format_and_keeps_protocol_headers() {
    let render = RenderRejection::new(|rejection, id| {
        let body = serde_json::json!({ "error": rejection.kind().code(), "trace": id });
        (rejection.status(), Json(body)).into_response()
    });
    let shield = Shield::api()
        .render_rejections_with(render)
        .build()
        .unwrap();
    let app = app(shield);
    let (parts, body) = send(&app, get_req("/reject")).await;
    assert_eq!(parts.status, 403);
    assert_eq!(parts.headers["content-type"], "application/json");
    let body = json(&body);
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        body["trace"],
        parts.headers["x-request-id"].to_str().unwrap()
    );
    assert_api_headers(&parts);
}

/// With a custom renderer every rejection was rendered twice: once by the layer that refused
/// (`Rejection::into_response_for`) and again by the Shield from the marker it left.
#[tokio::test]
async fn custom_renderer_runs_once_per_rejection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let render = RenderRejection::new(move |rejection, _id| {
        counted.fetch_add(1, Ordering::SeqCst);
        (
            rejection.status(),
            Json(serde_json::json!({ "error": rejection.kind().code() })),
        )
            .into_response()
    });
    let challenge = || {
        Rejection::new(RejectionKind::InsufficientScope).with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
        )
    };
    let refuse = axum::middleware::from_fn(
        move |req: Request<Body>, _next: axum::middleware::Next| async move {
            challenge().into_response_for(req.extensions())
        },
    );
    let app = routes()
        .route("/refused", get(|| async { "never" }).route_layer(refuse))
        .route("/challenge", get(move || async move { challenge() }))
        .layer(
            Shield::api()
                .render_rejections_with(render)
                .build()
                .unwrap(),
        )
        .layer(MockConnectInfo(SocketAddr::from(PEER)));
    let cases = [
        ("/refused", 403, "insufficient_scope"),
        ("/challenge", 403, "insufficient_scope"),
        ("/reject", 403, "forbidden"),
        ("/missing", 404, "not_found"),
    ];
    for (uri, status, code) in cases {
        calls.store(0, Ordering::SeqCst);
        let (parts, body) = send(&app, get_req(uri)).await;
        assert_eq!(parts.status, status, "{uri}");
        assert_eq!(json(&body)["error"], code, "{uri}");
        assert_eq!(parts.headers["content-type"], "application/json", "{uri}");
        let challenges = parts.headers.get_all("www-authenticate").iter().count();
        assert_eq!(
            challenges,
            usize::from(code == "insufficient_scope"),
            "{uri}"
        );
        assert_api_headers(&parts);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{uri}: rendered more than once"
        );
    }
}

#[test]
fn config_loads_from_toml_and_is_validated() {
    let config: ShieldConfig = toml::from_str(
        r#"
        trusted_proxies = ["10.0.0.0/8", "fd00::/8"]
        forwarded_header = "forwarded"
        ipv6_prefix = 56
        timeout_ms = 5000
        body_limit = 65536
        access_log = false
        "#,
    )
    .unwrap();
    Shield::from_config(config).build().unwrap();

    let bad: ShieldConfig = toml::from_str(r#"trusted_proxies = ["10.0.0.0/40"]"#).unwrap();
    let err = Shield::from_config(bad).build().unwrap_err();
    assert_eq!(err.setting(), "trusted_proxies");

    let bad: ShieldConfig = toml::from_str("body_limit = 0").unwrap();
    let err = Shield::from_config(bad).build().unwrap_err();
    assert_eq!(err.setting(), "body_limit");
    assert!(toml::from_str::<ShieldConfig>("unknown_key = 1").is_err());

    let err = Shield::api().timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.setting(), "timeout");
    let err = Shield::api()
        .timeout_status(StatusCode::OK)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "timeout_status");
    let err = Shield::api().ipv6_prefix(200).build().unwrap_err();
    assert!(err.to_string().contains("ipv6_prefix"));
}

// --- over real TCP: the client IP comes from the socket ---

async fn serve(shield: Shield) -> SocketAddr {
    support::app_server::serve(routes().layer(shield)).await
}

async fn fetch_ip(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{addr}/ip"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = req.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let addr = serve(
        Shield::api()
            .trusted_proxies(["10.0.0.0/8"])
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(fetch_ip(addr, &[]).await, "127.0.0.1");
    assert_eq!(
        fetch_ip(addr, &[("x-forwarded-for", "1.2.3.4")]).await,
        "127.0.0.1"
    );
    assert_eq!(
        fetch_ip(addr, &[("forwarded", "for=1.2.3.4")]).await,
        "127.0.0.1"
    );
    assert_eq!(
        fetch_ip(addr, &[("x-real-ip", "1.2.3.4")]).await,
        "127.0.0.1"
    );
}

#[tokio::test]
async fn trusted_proxy_forwarding_is_read_right_to_left() {
    let addr = serve(
        Shield::api()
            .trusted_proxies(["127.0.0.0/8"])
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(
        fetch_ip(addr, &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]).await,
        "198.51.100.7"
    );
    assert_eq!(
        fetch_ip(addr, &[("x-forwarded-for", "198.51.100.7, 127.0.0.5")]).await,
        "198.51.100.7"
    );
}

#[tokio::test]
async fn malformed_forwarding_headers_never_cause_a_500() {
    let addr = serve(
        Shield::api()
            .trusted_proxies(["127.0.0.0/8"])
            .build()
            .unwrap(),
    )
    .await;
    for bad in [
        "",
        ",,,",
        "not-an-ip",
        "1.2.3.4:99999",
        "[::1",
        "\"quoted\"",
        "unknown, _x",
    ] {
        // The malformed entry is the client, and it names no address: the unknown client,
        // never the trusted proxy (issue 16, item 1).
        let ip = fetch_ip(addr, &[("x-forwarded-for", bad), ("forwarded", bad)]).await;
        assert_eq!(ip, "0.0.0.0", "{bad:?}");
    }
}
