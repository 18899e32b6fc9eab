//! Response redaction and the 5xx scrubber, end to end.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use axum_shield::audit::{SecurityEvent, SecurityEventKind};
use axum_shield::validate::redact::RedactFieldsLayer;
use axum_shield::validate::scrub::ScrubServerErrorsLayer;
use axum_shield::Shield;
use serde_json::{json, Value};
use tower::ServiceExt;

type Events = Arc<Mutex<Vec<(SecurityEventKind, Vec<(&'static str, String)>)>>>;

/// A Shield whose event sink records into `events` (its layers put the sink in the request
/// extensions, where the redaction layer's events find it).
fn sinks(events: &Events) -> Shield {
    let events = events.clone();
    Shield::api()
        .event_sink(move |e: &SecurityEvent| {
            events.lock().unwrap().push((e.kind(), e.fields().to_vec()));
        })
        .build()
        .unwrap()
}

/// The client address the Shield reads (it refuses requests without one).
fn peer() -> Extension<axum::extract::ConnectInfo<std::net::SocketAddr>> {
    Extension(axum::extract::ConnectInfo(
        "203.0.113.9:40000".parse().unwrap(),
    ))
}

async fn body_of(app: Router, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn redaction_removes_nested_fields_and_reports_names_only() {
    let events = Events::default();
    let app = Router::new()
        .route(
            "/users",
            get(|| async {
                Json(json!({
                    "users": [
                        {"id": 1, "name": "ann", "password_hash": "$argon2id$SECRETHASH",
                         "profile": {"ssn": "078-05-1120", "apiKey": "SECRETKEY"}},
                        {"id": 2, "name": "bob", "Token": "SECRETTOKEN"}
                    ],
                    "total": 2
                }))
            }),
        )
        .layer(RedactFieldsLayer::default())
        .layer(sinks(&events))
        .layer(peer());
    let (status, headers, body) = body_of(app, "/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers
        .get("content-length")
        .is_none_or(|l| l.to_str().unwrap() == body.len().to_string()));
    assert!(
        !body.contains("SECRET") && !body.contains("078-05"),
        "{body}"
    );
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc,
        json!({"users": [{"id": 1, "name": "ann", "profile": {}}, {"id": 2, "name": "bob"}], "total": 2})
    );
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, SecurityEventKind::DataExposureBlocked);
    let fields = format!("{:?}", events[0].1);
    assert!(fields.contains("password_hash") && fields.contains("apiKey"));
    assert!(!fields.contains("SECRET"));
}

#[tokio::test]
async fn redaction_leaves_clean_and_non_json_responses_alone() {
    let events = Events::default();
    let app = Router::new()
        .route("/clean", get(|| async { Json(json!({"id": 1})) }))
        .route("/text", get(|| async { "password: not json, left alone" }))
        .layer(
            RedactFieldsLayer::builder()
                .fields(["password"])
                .build()
                .unwrap(),
        )
        .layer(sinks(&events))
        .layer(peer());
    let (_, _, body) = body_of(app.clone(), "/clean").await;
    assert_eq!(body, r#"{"id":1}"#);
    let (_, _, body) = body_of(app, "/text").await;
    assert_eq!(body, "password: not json, left alone");
    assert!(events.lock().unwrap().is_empty());
}

/// A JSON body the layer cannot parse, served as `application/json`.
fn raw_json(body: String) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone {
    move || {
        std::future::ready(
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                body.clone(),
            )
                .into_response(),
        )
    }
}

/// Issue 16, item 6: user data nested 127 levels deep, returned three levels down, is beyond
/// serde_json's 128-level recursion limit. The layer could not parse it and passed it on with
/// `password_hash` inside; it now fails closed, like for an oversized body: a 500 problem, the
/// body never sent, and a `data_exposure_blocked` event. Invalid JSON declared as JSON gets
/// the same answer.
#[tokio::test]
async fn unparseable_json_response_fails_closed_instead_of_leaking_fields() {
    let nested = format!("{}1{}", "[".repeat(127), "]".repeat(127));
    let user =
        format!(r#"{{"name":"ann","password_hash":"$argon2id$SECRETHASH","history":{nested}}}"#);
    let deep = format!(r#"{{"data":{{"page":{{"user":{user}}}}}}}"#);
    assert!(
        serde_json::from_str::<Value>(&deep).is_err(),
        "beyond the limit"
    );
    let invalid = r#"{"user":{"name":"ann","password_hash":"$argon2id$SECRETHASH""#.to_owned();

    for body in [deep, invalid] {
        let events = Events::default();
        let app = Router::new()
            .route("/user", get(raw_json(body)))
            .layer(RedactFieldsLayer::default())
            .layer(sinks(&events))
            .layer(peer());
        let (status, headers, body) = body_of(app, "/user").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(
            !body.contains("password_hash") && !body.contains("SECRET"),
            "{body}"
        );
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, SecurityEventKind::DataExposureBlocked);
    }
}

/// What fail-closed leaves alone: an empty body declared as JSON (a 204, a HEAD answer) has
/// nothing to leak and passes, and so does a body that is not declared JSON.
#[tokio::test]
async fn redaction_passes_empty_json_bodies_and_non_json_bodies() {
    let events = Events::default();
    let app = Router::new()
        .route(
            "/empty",
            get(|| async {
                (
                    StatusCode::NO_CONTENT,
                    [(http::header::CONTENT_TYPE, "application/json")],
                )
            }),
        )
        .route(
            "/html",
            get(|| async { axum::response::Html("<p>{\"password\": not json</p>") }),
        )
        .layer(RedactFieldsLayer::default())
        .layer(sinks(&events))
        .layer(peer());
    let (status, _, body) = body_of(app.clone(), "/empty").await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, _, body) = body_of(app, "/html").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("<p>"), "{body}");
    assert!(events.lock().unwrap().is_empty());
}

#[test]
fn redaction_config_is_validated() {
    assert!(RedactFieldsLayer::builder()
        .fields(Vec::<String>::new())
        .build()
        .is_err());
    assert!(RedactFieldsLayer::builder().fields(["_"]).build().is_err());
    assert!(RedactFieldsLayer::builder()
        .max_response_bytes(0)
        .build()
        .is_err());
}

#[tokio::test]
async fn scrubber_hides_a_handlers_internal_error_text() {
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ERROR: password authentication failed for user \"app\" at /srv/db.rs:42",
                )
            }),
        )
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "5")],
                    "redis at 10.0.0.7:6379 refused",
                )
            }),
        )
        .route("/ok", get(|| async { "fine" }))
        .layer(ScrubServerErrorsLayer::new())
        .layer(Shield::api().build().unwrap())
        .layer(Extension(axum::extract::ConnectInfo(
            std::net::SocketAddr::from(([127, 0, 0, 1], 4000)),
        )));

    let (status, headers, body) = body_of(app.clone(), "/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        !body.contains("password") && !body.contains("db.rs"),
        "{body}"
    );
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["code"], "internal_error");
    assert_eq!(
        doc["request_id"],
        headers["x-request-id"].to_str().unwrap(),
        "{body}"
    );

    let (status, headers, body) = body_of(app.clone(), "/busy").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert!(!body.contains("10.0.0.7"), "{body}");

    let (status, _, body) = body_of(app, "/ok").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
}

/// The redaction layer (and `Valid<Form<…>>`, `Valid<E: HasValidate>`) keep a copy of the
/// request's event context for the event they may emit once the body is read. That copy
/// left out the Shield's pseudonymization key and the matched route, so with
/// `Shield::pseudonymize` their `data_exposure_blocked` event carried the client IP in clear,
/// and its route was the raw path (`unmatched` as a metrics label).
#[tokio::test]
async fn redaction_event_is_pseudonymized_and_names_the_route_template() {
    let events: Arc<Mutex<Vec<SecurityEvent>>> = Arc::default();
    let sink = events.clone();
    let shield = Shield::api()
        .pseudonymize([7u8; 32])
        .event_sink(move |e: &SecurityEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async { Json(json!({"id": 1, "password_hash": "SECRETHASH"})) }),
        )
        .layer(RedactFieldsLayer::default())
        .layer(shield)
        .layer(peer());
    let (status, _, body) = body_of(app, "/users/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("SECRETHASH"), "{body}");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.kind(), SecurityEventKind::DataExposureBlocked);
    assert_eq!(
        event.client_ip(),
        None,
        "the client IP must not be in clear"
    );
    let client = event.client_ip_text().unwrap_or_default();
    assert_eq!(client.len(), 32, "a keyed pseudonym, got {client:?}");
    assert!(!client.contains("203.0.113.9"));
    assert_eq!(event.route(), Some("/users/{id}"));
    assert_eq!(event.route_label(), "/users/{id}");
}
