//! What reaches the log output: no credential ever, no forged or hidden line, and panics
//! reported without leaking — over a real socket, with everything logged at TRACE.

mod support;

use std::net::SocketAddr;

use axum::extract::Request;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_shield::audit::{Audit, SecurityEventKind};
use axum_shield::Shield;
use http::StatusCode;
use support::audit::{json_capture, text_capture, Capture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Level;

use support::app_server::serve;

const SECRETS: [&str; 8] = [
    "eyJhbGciOiJIUzI1NiJ9.token-secret-AAA",
    "sess-secret-BBB",
    "key-secret-CCC",
    "cHJveHktc2VjcmV0LUREREQ",
    "pw-secret-EEE",
    "qs-secret-FFF",
    "set-cookie-secret-GGG",
    "internal-key-secret-HHH",
];

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    #[allow(dead_code)]
    password: String,
}

async fn login(audit: Audit, Json(login): Json<Login>) -> Response {
    audit
        .event(SecurityEventKind::AuthnLoginFail)
        .reason("bad_password")
        .username(&login.username)
        .emit();
    (
        StatusCode::UNAUTHORIZED,
        [("set-cookie", format!("session={}; HttpOnly", SECRETS[6]))],
    )
        .into_response()
}

/// What a careless application layer does: log every request's headers at DEBUG.
async fn log_request_headers(req: Request, next: Next) -> Response {
    tracing::debug!(headers = ?req.headers(), "request headers");
    next.run(req).await
}

/// And every response's headers, outside the Shield.
async fn log_response_headers(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    tracing::debug!(headers = ?response.headers(), "response headers");
    response
}

/// One HTTP/1.1 exchange with a raw client (so no client library logs into the capture).
async fn exchange(addr: SocketAddr, head: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    response
}

fn app() -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("boom: connection string postgres://app:db-pass@db");
                }
                "unreachable"
            }),
        )
        .route_layer(from_fn(log_request_headers))
        .layer(
            Shield::api()
                .sensitive_header("x-internal-key")
                .build()
                .unwrap(),
        )
        .layer(from_fn(log_response_headers))
}

fn assert_no_secret(capture: &Capture) {
    let text = capture.text();
    assert!(!text.is_empty());
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked into: {text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_never_appear_in_any_captured_output() {
    for format in ["text", "json", "json_lines"] {
        let (capture, _guard) = match format {
            "json" => json_capture(Level::TRACE),
            #[cfg(feature = "json-log")]
            "json_lines" => support::audit::json_lines_capture(Level::TRACE),
            _ => text_capture(Level::TRACE, false),
        };
        let addr = serve(app()).await;
        let body = format!(r#"{{"username":"alice","password":"{}"}}"#, SECRETS[4]);
        let head = format!(
            "POST /login?access_token={} HTTP/1.1\r\n\
             Authorization: Bearer {}\r\n\
             Cookie: session={}\r\n\
             X-Api-Key: {}\r\n\
             Proxy-Authorization: Basic {}\r\n\
             X-Internal-Key: {}\r\n\
             Content-Type: application/json",
            SECRETS[5], SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3], SECRETS[7]
        );
        let response = exchange(addr, &head, &body).await;
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
        // The secret cookie did reach the client: only the log is protected.
        assert!(response.contains(SECRETS[6]));
        assert_no_secret(&capture);
        let text = capture.text();
        // The headers were logged, as `Sensitive`.
        assert!(text.contains("request headers") && text.contains("response headers"));
        assert!(text.contains("Sensitive"), "{text}");
        assert!(text.contains("authn_login_fail") && text.contains("request completed"));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn panic_is_logged_as_sys_crash_and_server_keeps_serving() {
    let (capture, _guard) = json_capture(Level::INFO);
    let addr = serve(app()).await;
    let response = exchange(addr, "GET /boom HTTP/1.1", "").await;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(response.contains("application/problem+json"));
    assert!(!response.contains("boom") && !response.contains("db-pass"));
    let request_id = response
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id")
        .to_owned();

    let event = capture.event("sys_crash");
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["fields"]["reason"], "panic");
    assert_eq!(event["fields"]["request_id"], request_id);
    assert_eq!(event["fields"]["route"], "/boom");
    assert_eq!(event["fields"]["method"], "GET");
    assert_eq!(event["fields"]["client_ip"], "127.0.0.1");
    assert_eq!(event["span"]["request_id"], request_id);
    let access = capture.access_lines();
    assert_eq!(access[0]["fields"]["status"], 500);

    let again = exchange(addr, "GET /health HTTP/1.1", "").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

const FORGED: &str = "mallory\r\n2026-11-28T00:00:00.000000Z  INFO axum_shield::security: \
                      security event event=\"authn_login_success\" username=admin\x1b[1A\x1b[2K\u{9b}2K";

/// `FORGED` as the crate escapes it: control characters as `\r`, `\n`, `\u{…}`, one line.
const FORGED_ESCAPED: &str = r#"mallory\r\n2026-11-28T00:00:00.000000Z  INFO axum_shield::security: security event event="authn_login_success" username=admin\u{1b}[1A\u{1b}[2K\u{9b}2K"#;

/// A failed login over a real socket whose username tries to forge a log line.
async fn login_as_forged_user() {
    let addr = serve(app()).await;
    let body = serde_json::json!({ "username": FORGED, "password": "x" }).to_string();
    let response = exchange(
        addr,
        "POST /login HTTP/1.1\r\nContent-Type: application/json",
        &body,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
}

#[tokio::test(flavor = "current_thread")]
async fn crlf_and_ansi_in_username_produce_one_escaped_line() {
    let (capture, _guard) = text_capture(Level::INFO, false);
    login_as_forged_user().await;
    let text = capture.text();
    let event_lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("security event"))
        .collect();
    assert_eq!(event_lines.len(), 1, "{text}");
    // One `event` and one `username` pair: the name is quoted whole (it holds spaces), so
    // the `event=` and `username=` it carries are not pairs of their own.
    let pairs = logfmt_pairs(event_lines[0]);
    let values = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("event"), ["authn_login_fail"], "{}", event_lines[0]);
    assert_eq!(values("username"), [FORGED_ESCAPED]);
    assert!(event_lines[0].contains("username=\"mallory\\\\r\\\\n2026-11-28T00:00:00.000000Z"));
    assert!(event_lines[0].contains("admin\\\\u{1b}[1A\\\\u{1b}[2K\\\\u{9b}2K"));
    assert!(!text
        .lines()
        .any(|l| l.starts_with("2026-11-28T00:00:00.000000Z")));
    assert!(!text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{9b}'));
}

/// The `key=value` pairs of a text log line, read as logfmt readers do: a value is quoted
/// only when it starts with `"` (then `\"` and `\\` are escapes), otherwise it ends at the
/// next space. Words without `=` (the message) are skipped.
fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    pairs
}

/// Issue 16, item 12: a login name such as `bob reason=ok` must not print a second, forged
/// `reason=ok` pair in tracing-subscriber's text format: values with spaces, `=` or `"` are
/// quoted. Checked on the login guard's own failure event and on an event naming the user.
#[tokio::test(flavor = "current_thread")]
async fn account_names_cannot_forge_key_value_pairs_in_text_logs() {
    use axum_shield::audit::SecurityEvent;
    use axum_shield::rate_limit::{LimitKey, LoginGuardLayer};

    let (capture, _guard) = text_capture(Level::INFO, false);
    let guard = LoginGuardLayer::builder().build().unwrap();
    let attempt = guard
        .attempt(LimitKey::Ip("192.0.2.7".parse().unwrap()))
        .await
        .unwrap();
    let _ = attempt
        .account("bob reason=ok")
        .await
        .unwrap()
        .failed()
        .await;
    SecurityEvent::new(SecurityEventKind::AuthnLoginFail)
        .reason("bad_password")
        .username("bob reason=ok")
        .field("account", "bob reason=ok")
        .emit();

    let text = capture.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("authn_login_fail"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, reason) in lines.iter().zip(["bad_credentials", "bad_password"]) {
        let pairs = logfmt_pairs(line);
        let reasons: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "reason")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(reasons, [reason], "forged pair in: {line}");
        assert!(
            pairs.iter().any(|(_, v)| v.contains("bob reason=ok")),
            "the name is kept whole: {line}"
        );
    }

    // The request span too: a principal id (a JWT `sub`) with a space is quoted there.
    async fn authenticate(req: Request, next: Next) -> Response {
        let principal = axum_shield::principal::Principal::new(
            axum_shield::principal::PrincipalKind::Jwt,
            "bob status=200",
        );
        axum_shield::audit::record_principal(&principal, req.extensions());
        next.run(req).await
    }
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .route_layer(from_fn(authenticate))
        .layer(Shield::api().build().unwrap());
    let addr = serve(app).await;
    let response = exchange(addr, "GET /orders/7 HTTP/1.1", "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let text = capture.text();
    let access = text
        .lines()
        .find(|line| line.contains("request completed"))
        .expect("access line");
    assert!(access.contains("principal=\"bob status=200\""), "{access}");
    assert!(!access.contains("principal=bob "), "{access}");
}

/// Why the crate escapes values itself: checked against the tracing-subscriber in use,
/// `fmt` writes `%` values verbatim (a raw CR/LF starts a new line); only `?` on `&str`
/// and the message are escaped.
#[test]
fn tracing_subscriber_fmt_writes_display_values_verbatim() {
    let (capture, _guard) = text_capture(Level::INFO, false);
    tracing::info!(user = %"eve\r\nforged", "display");
    tracing::info!(user = ?"eve\r\nforged", "debug");
    let text = capture.text();
    assert!(text.contains("user=eve\r\nforged"), "{text:?}");
    assert!(text.contains("user=\"eve\\r\\nforged\""), "{text:?}");
}

/// The crate's own JSON formatter (`audit::JsonLines`): a real request through `Shield`, with
/// a principal recorded after the span opened, is one JSON line carrying the whole context.
#[cfg(feature = "json-log")]
#[tokio::test(flavor = "current_thread")]
async fn json_lines_access_line_carries_the_request_context() {
    use axum_shield::audit;
    use axum_shield::principal::{Principal, PrincipalKind};

    async fn authenticate(req: Request, next: Next) -> Response {
        let principal = Principal::new(PrincipalKind::Jwt, "alice\r\n\"admin\"");
        audit::record_principal(&principal, req.extensions());
        next.run(req).await
    }

    let (capture, _guard) = support::audit::json_lines_capture(Level::INFO);
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .route_layer(from_fn(authenticate))
        .layer(Shield::api().build().unwrap());
    let addr = serve(app).await;
    let response = exchange(addr, "GET /orders/7?token=qs-secret HTTP/1.1", "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let request_id = response
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id")
        .to_owned();

    let text = capture.text();
    let access: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("request completed"))
        .collect();
    assert_eq!(access.len(), 1, "{text}");
    assert!(!text.contains("qs-secret"));
    let line: serde_json::Value = serde_json::from_str(access[0]).unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "axum_shield::request");
    assert_eq!(line["fields"]["message"], "request completed");
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let timestamp = line["timestamp"].as_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-11-28T04:12:38.179231Z".len(),
        "{timestamp}"
    );
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
    let span = &line["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["request_id"], request_id);
    assert_eq!(span["client_ip"], "127.0.0.1");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["route"], "/orders/{id}");
    // Escaped once by `record_principal`, then JSON-encoded: still one line.
    assert_eq!(span["principal"], "alice\\r\\n\"admin\"");
}

#[cfg(feature = "json-log")]
#[tokio::test(flavor = "current_thread")]
async fn crlf_and_ansi_in_username_produce_one_json_line() {
    let (capture, _guard) = support::audit::json_lines_capture(Level::INFO);
    login_as_forged_user().await;
    let text = capture.text();
    assert!(!text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{9b}'));
    // Every line is one JSON object; the forged line is inside one of them.
    let event = capture.event("authn_login_fail");
    let username = event["fields"]["username"].as_str().unwrap();
    assert!(username.starts_with("mallory\\r\\n2026-11-28T00:00:00.000000Z"));
    assert!(username.ends_with("admin\\u{1b}[1A\\u{1b}[2K\\u{9b}2K"));
    assert_eq!(capture.access_lines().len(), 1);
}
