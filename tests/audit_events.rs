//! Every refusal and high-risk action produces one named security event with the stable
//! field schema, captured from a real `tracing` subscriber.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use axum_shield::audit::{
    self, Audit, ChannelSink, Pseudonymizer, SecurityEvent, SecurityEventKind,
};
use axum_shield::principal::{Principal, PrincipalKind};
use axum_shield::{Rejection, RejectionKind, Shield};
use http::header::AUTHORIZATION;
use http::StatusCode;
use serde_json::Value;
use support::audit::{json_capture, shielded, shielded_with, CLIENT};
use tower::ServiceExt;
use tracing::Level;

const KEY: [u8; 32] = [9; 32];

async fn send(app: &Router, req: Request) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

fn post_to(uri: &str, bearer: Option<&str>) -> Request {
    let mut builder = http::Request::post(uri);
    if let Some(token) = bearer {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

fn request_id(response: &Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A stand-in for the JWT layer (on another branch): it reports exactly as the real one does,
/// through `SecurityEvent::for_request` and `audit::record_principal`.
async fn test_auth(mut req: Request, next: Next) -> Response {
    let refuse = |req: &Request, kind, reason: &'static str, rejection: RejectionKind| {
        SecurityEvent::for_request(kind, req.method(), req.uri(), req.extensions())
            .reason(reason)
            .emit();
        Rejection::new(rejection).into_response()
    };
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let scopes = match token.as_deref() {
        None => {
            return refuse(
                &req,
                SecurityEventKind::AuthnTokenMissing,
                "missing",
                RejectionKind::MissingCredentials,
            )
        }
        Some("expired") => {
            return refuse(
                &req,
                SecurityEventKind::AuthnTokenInvalid,
                "expired",
                RejectionKind::InvalidToken,
            )
        }
        Some("reader") => ["orders:read"],
        Some("writer") => ["orders:write"],
        Some(_) => {
            return refuse(
                &req,
                SecurityEventKind::AuthnTokenInvalid,
                "malformed",
                RejectionKind::InvalidToken,
            )
        }
    };
    let principal =
        Principal::new(PrincipalKind::Jwt, token.unwrap_or_default()).with_scopes(scopes);
    audit::record_principal(&principal, req.extensions());
    req.extensions_mut().insert(principal.clone());
    if !principal.has_scope("orders:write") {
        SecurityEvent::for_request(
            SecurityEventKind::AuthzFail,
            req.method(),
            req.uri(),
            req.extensions(),
        )
        .reason("insufficient_scope")
        .field("scope", "orders:write")
        .emit();
        return Rejection::new(RejectionKind::InsufficientScope).into_response();
    }
    next.run(req).await
}

fn orders_app() -> Router {
    shielded(
        Router::new()
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(from_fn(test_auth)),
    )
}

fn assert_request_fields(event: &Value, response: &Response, route: &str) {
    assert_eq!(event["target"], "axum_shield::security");
    assert_eq!(event["fields"]["message"], "security event");
    assert_eq!(event["fields"]["request_id"], request_id(response));
    assert_eq!(
        event["fields"]["client_ip"],
        CLIENT.split(':').next().unwrap()
    );
    assert_eq!(event["fields"]["route"], route);
    assert!(event["fields"]["method"].is_string());
    // The event is inside the request span.
    assert_eq!(event["span"]["name"], "request");
    assert_eq!(event["span"]["request_id"], request_id(response));
}

#[tokio::test(flavor = "current_thread")]
async fn missing_token_is_logged_as_authn_token_missing() {
    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&orders_app(), post_to("/orders/7", None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.event("authn_token_missing");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["reason"], "missing");
    assert_eq!(event["fields"]["method"], "POST");
    assert_request_fields(&event, &response, "/orders/{id}");
    let access = capture.access_lines();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["fields"]["status"], 401);
    assert_eq!(access[0]["span"]["route"], "/orders/{id}");
}

#[tokio::test(flavor = "current_thread")]
async fn bad_token_is_logged_as_authn_token_invalid() {
    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&orders_app(), post_to("/orders/7", Some("not.a.jwt"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.event("authn_token_invalid");
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["fields"]["reason"], "malformed");
    assert_request_fields(&event, &response, "/orders/{id}");
    assert!(!capture.text().contains("not.a.jwt"));
}

#[tokio::test(flavor = "current_thread")]
async fn expired_token_is_logged_with_reason_expired() {
    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&orders_app(), post_to("/orders/7", Some("expired"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.event("authn_token_invalid");
    assert_eq!(event["fields"]["reason"], "expired");
    assert_request_fields(&event, &response, "/orders/{id}");
}

#[tokio::test(flavor = "current_thread")]
async fn insufficient_scope_is_logged_as_authz_fail_with_principal() {
    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&orders_app(), post_to("/orders/7", Some("reader"))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let event = capture.event("authz_fail");
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["fields"]["reason"], "insufficient_scope");
    assert_eq!(event["fields"]["principal"], "reader");
    assert_eq!(event["fields"]["fields"], r#"{"scope":"orders:write"}"#);
    assert_request_fields(&event, &response, "/orders/{id}");
    // The principal is on the span too, so the access line names it.
    let access = capture.access_lines();
    assert_eq!(access[0]["span"]["principal"], "reader");
    assert_eq!(access[0]["fields"]["status"], 403);
}

#[tokio::test(flavor = "current_thread")]
async fn authenticated_request_records_principal_on_the_span() {
    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&orders_app(), post_to("/orders/7", Some("writer"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = capture.access_lines();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["span"]["principal"], "writer");
    assert_eq!(access[0]["span"]["client_ip"], "203.0.113.9");
    assert_eq!(access[0]["span"]["method"], "POST");
    assert_eq!(access[0]["span"]["request_id"], request_id(&response));
    assert_eq!(access[0]["fields"]["status"], 200);
    assert!(access[0]["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(capture
        .json()
        .iter()
        .all(|l| l["fields"]["event"].is_null()));
}

#[test]
fn auth_events_built_from_parts_carry_the_request_context() {
    // How an auth layer reports from `Parts` (e.g. in a `FromRequestParts` extractor).
    let mut req = http::Request::get("/orders/7?access_token=secret")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(axum_shield::request_id::RequestId::new(
            http::HeaderValue::from_static("req-1"),
        ));
    req.extensions_mut()
        .insert(axum_shield::ClientIp("198.51.100.4".parse().unwrap()));
    let (parts, ()) = req.into_parts();
    let cases = [
        (
            SecurityEventKind::AuthnTokenMissing,
            "missing",
            "authn_token_missing",
        ),
        (
            SecurityEventKind::AuthnTokenInvalid,
            "bad_signature",
            "authn_token_invalid",
        ),
        (
            SecurityEventKind::AuthnTokenInvalid,
            "expired",
            "authn_token_invalid",
        ),
        (
            SecurityEventKind::AuthzFail,
            "insufficient_scope",
            "authz_fail",
        ),
    ];
    for (kind, reason, name) in cases {
        let (capture, _guard) = json_capture(Level::INFO);
        SecurityEvent::for_parts(kind, &parts).reason(reason).emit();
        let event = capture.event(name);
        assert_eq!(event["fields"]["reason"], reason);
        assert_eq!(event["fields"]["request_id"], "req-1");
        assert_eq!(event["fields"]["client_ip"], "198.51.100.4");
        assert_eq!(event["fields"]["route"], "/orders/7");
        assert_eq!(event["fields"]["method"], "GET");
        assert!(!capture.text().contains("secret"), "query string leaked");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn validation_failure_is_logged_as_input_validation_fail() {
    async fn create(audit: Audit, body: String) -> Response {
        if serde_json::from_str::<Value>(&body).is_err() {
            audit
                .event(SecurityEventKind::InputValidationFail)
                .reason("invalid_json")
                .field("field", "email")
                .emit();
            return Rejection::new(RejectionKind::ValidationFailed).into_response();
        }
        StatusCode::CREATED.into_response()
    }
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded(Router::new().route("/users", post(create)));
    let req = http::Request::post("/users")
        .body(Body::from(
            "{\"email\": \"x@example.com\", \"password\": \"hunter2\"",
        ))
        .unwrap();
    let response = send(&app, req).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let event = capture.event("input_validation_fail");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["reason"], "invalid_json");
    assert_eq!(event["fields"]["fields"], r#"{"field":"email"}"#);
    assert_request_fields(&event, &response, "/users");
    assert!(!capture.text().contains("hunter2"));
}

#[tokio::test(flavor = "current_thread")]
async fn rate_limit_refusal_is_logged_as_excess_rate_limit_exceeded() {
    async fn limit(State(seen): State<Arc<AtomicUsize>>, req: Request, next: Next) -> Response {
        if seen.fetch_add(1, Ordering::SeqCst) >= 1 {
            SecurityEvent::for_request(
                SecurityEventKind::ExcessRateLimitExceeded,
                req.method(),
                req.uri(),
                req.extensions(),
            )
            .reason("per_ip")
            .field("policy", "1/minute")
            .emit();
            return Rejection::new(RejectionKind::RateLimited).into_response();
        }
        next.run(req).await
    }
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded(
        Router::new()
            .route("/login", post(|| async { "ok" }))
            .route_layer(from_fn_with_state(Arc::new(AtomicUsize::new(0)), limit)),
    );
    assert_eq!(
        send(&app, post_to("/login", None)).await.status(),
        StatusCode::OK
    );
    let response = send(&app, post_to("/login", None)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let event = capture.event("excess_rate_limit_exceeded");
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["fields"]["reason"], "per_ip");
    assert_request_fields(&event, &response, "/login");
}

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(audit: Audit, Json(login): Json<Login>) -> StatusCode {
    if login.password == "correct horse battery staple" {
        audit
            .event(SecurityEventKind::AuthnLoginSuccess)
            .username(&login.username)
            .emit();
        StatusCode::OK
    } else {
        audit
            .event(SecurityEventKind::AuthnLoginFail)
            .reason("bad_password")
            .username(&login.username)
            .emit();
        StatusCode::UNAUTHORIZED
    }
}

fn login_request(username: &str, password: &str) -> Request {
    http::Request::post("/login")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({ "username": username, "password": password }).to_string(),
        ))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn login_success_and_failure_are_logged_without_the_password() {
    let (capture, _guard) = json_capture(Level::TRACE);
    let app = shielded(Router::new().route("/login", post(login)));
    let ok = send(&app, login_request("alice", "correct horse battery staple")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let fail = send(&app, login_request("alice", "Tr0ub4dor&3")).await;
    assert_eq!(fail.status(), StatusCode::UNAUTHORIZED);

    let success = capture.event("authn_login_success");
    assert_eq!(success["level"], "INFO");
    assert_eq!(success["fields"]["username"], "alice");
    assert_request_fields(&success, &ok, "/login");
    let failure = capture.event("authn_login_fail");
    assert_eq!(failure["level"], "WARN");
    assert_eq!(failure["fields"]["reason"], "bad_password");
    assert_eq!(failure["fields"]["username"], "alice");
    assert_request_fields(&failure, &fail, "/login");
    let text = capture.text();
    assert!(!text.contains("correct horse") && !text.contains("Tr0ub4dor"));
}

async fn transfer(audit: Audit, principal: Option<Extension<Principal>>) -> StatusCode {
    let action = audit.attempt("transfer_funds");
    if principal.is_none() {
        action.failed("no_principal");
        return StatusCode::UNAUTHORIZED;
    }
    action.field("amount", "100").completed();
    StatusCode::OK
}

#[tokio::test(flavor = "current_thread")]
async fn audited_action_logs_attempted_then_completed_with_principal() {
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded(
        Router::new()
            .route("/transfer", post(transfer))
            .route_layer(from_fn(test_auth)),
    );
    let response = send(&app, post_to("/transfer", Some("writer"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = capture.events("sensitive_action");
    assert_eq!(events.len(), 2, "{}", capture.text());
    assert_eq!(events[0]["fields"]["outcome"], "attempted");
    assert_eq!(events[1]["fields"]["outcome"], "completed");
    for event in &events {
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["fields"]["action"], "transfer_funds");
        assert_eq!(event["fields"]["principal"], "writer");
        assert_request_fields(event, &response, "/transfer");
    }
    assert_eq!(events[1]["fields"]["fields"], r#"{"amount":"100"}"#);
}

#[tokio::test(flavor = "current_thread")]
async fn failed_and_abandoned_actions_are_logged_as_failed() {
    async fn abandon(audit: Audit) -> StatusCode {
        let _action = audit.attempt("delete_account");
        StatusCode::INTERNAL_SERVER_ERROR // returns without an outcome
    }
    async fn run(audit: Audit) -> Result<&'static str, StatusCode> {
        audit
            .run("rotate_keys", async {
                Err::<&str, _>(StatusCode::BAD_GATEWAY)
            })
            .await
    }
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded(
        Router::new()
            .route("/transfer", post(transfer))
            .route("/abandon", post(abandon))
            .route("/run", post(run)),
    );
    send(&app, post_to("/transfer", None)).await;
    send(&app, post_to("/abandon", None)).await;
    send(&app, post_to("/run", None)).await;
    let outcomes: Vec<(String, String, String, String)> = capture
        .events("sensitive_action")
        .iter()
        .map(|e| {
            let f = &e["fields"];
            (
                f["action"].as_str().unwrap().to_owned(),
                f["outcome"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap_or("").to_owned(),
                e["level"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("transfer_funds", "attempted", "", "INFO"),
        ("transfer_funds", "failed", "no_principal", "WARN"),
        ("delete_account", "attempted", "", "INFO"),
        ("delete_account", "failed", "abandoned", "WARN"),
        ("rotate_keys", "attempted", "", "INFO"),
        ("rotate_keys", "failed", "error", "WARN"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(outcomes, expected);
}

#[tokio::test(flavor = "current_thread")]
async fn span_has_route_template_and_no_query_string_by_default() {
    let (capture, _guard) = json_capture(Level::TRACE);
    let app = shielded(Router::new().route("/orders/{id}", get(|| async { "ok" })));
    let req = http::Request::get("/orders/42?reset_token=s3cr3t-reset&email=a%40b.c")
        .body(Body::empty())
        .unwrap();
    send(&app, req).await;
    let unmatched = http::Request::get("/nope?reset_token=s3cr3t-reset")
        .body(Body::empty())
        .unwrap();
    send(&app, unmatched).await;
    let access = capture.access_lines();
    assert_eq!(access.len(), 2);
    assert_eq!(access[0]["span"]["route"], "/orders/{id}");
    assert!(access[0]["span"].get("query").is_none());
    assert_eq!(access[1]["span"]["route"], "/nope");
    assert_eq!(access[1]["fields"]["status"], 404);
    let text = capture.text();
    assert!(!text.contains("s3cr3t-reset"), "{text}");
    assert!(!text.contains("/orders/42"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn query_string_is_logged_only_when_enabled() {
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded_with(
        Router::new().route("/search", get(|| async { "ok" })),
        Shield::api().log_query(true),
    );
    let req = http::Request::get("/search?q=shoes")
        .body(Body::empty())
        .unwrap();
    send(&app, req).await;
    assert_eq!(capture.access_lines()[0]["span"]["query"], "q=shoes");
}

#[tokio::test(flavor = "current_thread")]
async fn access_line_can_be_turned_off_while_events_stay() {
    let (capture, _guard) = json_capture(Level::INFO);
    let app = shielded_with(
        Router::new()
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(from_fn(test_auth)),
        Shield::api().access_log(false),
    );
    send(&app, post_to("/orders/1", None)).await;
    assert!(capture.access_lines().is_empty());
    capture.event("authn_token_missing");
}

#[tokio::test(flavor = "current_thread")]
async fn pseudonymized_ip_principal_and_username_never_appear_in_clear() {
    let (capture, _guard) = json_capture(Level::TRACE);
    let app = shielded_with(
        Router::new()
            .route("/login", post(login))
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(from_fn(test_auth)),
        Shield::api().pseudonymize(KEY),
    );
    send(&app, post_to("/orders/1", Some("reader"))).await;
    let p = Pseudonymizer::new(KEY).unwrap();
    let ip = p.ip("203.0.113.9".parse().unwrap()).to_string();
    let reader = p.user("reader").to_string();
    let event = capture.event("authz_fail");
    assert_eq!(event["fields"]["client_ip"], ip);
    assert_eq!(event["fields"]["principal"], reader);
    let access = capture.access_lines();
    assert_eq!(access[0]["span"]["client_ip"], ip);
    assert_eq!(access[0]["span"]["principal"], reader);

    let app = shielded_with(
        Router::new().route("/login", post(login)),
        Shield::api().pseudonymize(KEY),
    );
    send(&app, login_request("alice@example.com", "nope")).await;
    let event = capture.event("authn_login_fail");
    assert_eq!(
        event["fields"]["username"],
        p.user("alice@example.com").to_string()
    );
    let text = capture.text();
    assert!(!text.contains("203.0.113.9"), "{text}");
    assert!(!text.contains("alice@example.com"));
    assert!(!text.contains("\"reader\""));
}

#[tokio::test(flavor = "current_thread")]
async fn shield_sinks_receive_events_with_request_context_without_blocking() {
    let (sink, mut rx) = ChannelSink::bounded(16).unwrap();
    let app = shielded_with(
        Router::new()
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(from_fn(test_auth)),
        Shield::api().event_sink(sink.clone()),
    );
    let response = send(&app, post_to("/orders/1", Some("expired"))).await;
    let event = rx.try_recv().expect("the sink got the event");
    assert_eq!(event.kind(), SecurityEventKind::AuthnTokenInvalid);
    assert_eq!(event.reason_text(), "expired");
    assert_eq!(event.request_id(), Some(request_id(&response).as_str()));
    assert_eq!(event.route_label(), "/orders/{id}");
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["event"], "authn_token_invalid");
    assert_eq!(json["level"], "WARN");
    assert_eq!(json["client_ip"], "203.0.113.9");
    assert_eq!(json["route"], "/orders/{id}");
    assert!(json["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(sink.dropped(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn without_access_line_status_and_latency_are_recorded_on_the_span() {
    // Without the access line the span opens at DEBUG: an INFO subscriber pays nothing for it
    // (events carry their own request context), a DEBUG one still sees status and latency.
    let (capture, _guard) = support::audit::text_capture(Level::DEBUG, false);
    let app = shielded_with(
        Router::new().route("/orders/{id}", get(|| async { "ok" })),
        Shield::api().access_log(false),
    );
    send(
        &app,
        http::Request::get("/orders/3").body(Body::empty()).unwrap(),
    )
    .await;
    let text = capture.text();
    let close = text
        .lines()
        .find(|line| line.contains("close"))
        .expect("span close line");
    assert!(close.contains("route=/orders/{id}"), "{close}");
    assert!(
        close.contains("status=200") && close.contains("latency_ms="),
        "{close}"
    );
    assert!(!text.contains("request completed"));
}

#[test]
fn logging_settings_load_from_config_and_are_validated() {
    let config: axum_shield::ShieldConfig = toml::from_str(
        r#"
        access_log = false
        log_query = true
        sensitive_headers = ["x-internal-key"]
        "#,
    )
    .unwrap();
    assert!(Shield::from_config(config).build().is_ok());

    let config: axum_shield::ShieldConfig =
        toml::from_str(r#"sensitive_headers = ["bad header"]"#).unwrap();
    let err = Shield::from_config(config).build().unwrap_err();
    assert_eq!(err.setting(), "sensitive_headers");
    assert!(Shield::api().sensitive_header("x api key").build().is_err());
    assert_eq!(
        Shield::api()
            .pseudonymize(b"too short")
            .build()
            .unwrap_err()
            .setting(),
        "pseudonymize"
    );
}

/// The real JWT layer (not a stand-in) records the verified `sub` on the request span, and its
/// refusal of a forged token is one `authn_token_invalid` event in that span.
#[cfg(feature = "jwt")]
#[tokio::test(flavor = "current_thread")]
async fn jwt_layer_records_the_principal_and_reports_forged_tokens() {
    use axum_shield::auth::jwt::JwtAuthLayer;
    use axum_shield::auth::TokenIssuer;

    let secret = [7u8; 32];
    let token = TokenIssuer::hs256(secret)
        .issuer("https://id.example")
        .audience("orders")
        .build()
        .unwrap()
        .issue("alice", &serde_json::json!({}))
        .unwrap()
        .token;
    let jwt = JwtAuthLayer::hs256(secret)
        .issuer("https://id.example")
        .audience("orders")
        .build()
        .unwrap();
    let app = shielded(
        Router::new()
            .route("/orders/{id}", post(|| async { "ok" }))
            .route_layer(jwt),
    );

    let (capture, _guard) = json_capture(Level::INFO);
    let response = send(&app, post_to("/orders/7", Some(&token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = capture.access_lines();
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["span"]["principal"], "alice");

    let forged = format!("{}x", &token[..token.len() - 1]);
    let response = send(&app, post_to("/orders/7", Some(&forged))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.event("authn_token_invalid");
    assert_eq!(event["span"]["route"], "/orders/{id}");
    assert!(
        !capture.text().contains(&forged),
        "the token must never be logged"
    );
}

/// A login handler under the login guard (the recipe of `axum_shield::rate_limit`).
async fn guarded_login(
    attempt: axum_shield::rate_limit::LoginAttempt,
    Json(login): Json<Login>,
) -> Result<&'static str, Rejection> {
    attempt
        .verify(&login.username, || async {
            (login.password == "correct horse battery staple").then_some("welcome")
        })
        .await
}

/// Item 5 of issue 16: `authn_login_fail` and `authn_login_lock` named the account in a plain
/// field, in clear even with `Shield::pseudonymize`, while `authn_login_success` showed the
/// pseudonym.
#[tokio::test(flavor = "current_thread")]
async fn login_guard_fail_and_lock_events_pseudonymize_the_account_like_success() {
    let (capture, _guard) = json_capture(Level::TRACE);
    let guard = axum_shield::rate_limit::LoginGuardLayer::builder()
        .account_free_failures(1)
        .build()
        .unwrap();
    let app = shielded_with(
        Router::new().route("/login", post(guarded_login).route_layer(guard)),
        Shield::api().pseudonymize(KEY),
    );
    let user = "jane.doe@example.com";
    let ok = send(&app, login_request(user, "correct horse battery staple")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    for _ in 0..2 {
        let fail = send(&app, login_request(user, "guess")).await;
        assert_eq!(fail.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = send(&app, login_request(user, "guess")).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);

    let pseudonym = Pseudonymizer::new(KEY).unwrap().user(user).to_string();
    let success = capture.event("authn_login_success");
    assert_eq!(success["fields"]["principal"], pseudonym);
    let fails = capture.events("authn_login_fail");
    assert_eq!(fails.len(), 2);
    let lock = capture.event("authn_login_lock");
    for event in fails.iter().chain([&lock]) {
        assert_eq!(event["fields"]["username"], pseudonym, "{event}");
    }
    let text = capture.text();
    assert!(!text.contains("jane.doe"), "{text}");
}
