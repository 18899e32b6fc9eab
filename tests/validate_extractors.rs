//! `Valid<…>` extractors and the JSON guard, end to end through an axum router.
#![cfg(feature = "validate")]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use axum_shield::audit::{SecurityEvent, SecurityEventKind};
use axum_shield::validate::{JsonGuardLayer, Valid, ValidWith, ValidationArgs};
use axum_shield::Shield;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;
use validator::{Validate, ValidationError};

const SECRET: &str = "S3cr3t-Value-xyz";

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    #[validate(email)]
    email_address: String,
    #[validate(length(min = 2, max = 20))]
    name: String,
    #[validate(range(min = 13, max = 130))]
    age: u32,
    #[validate(nested)]
    home_address: Address,
    #[validate(nested)]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize, Validate)]
struct Address {
    #[validate(length(min = 5, max = 10))]
    zip: String,
}

#[derive(Debug, Deserialize, Validate)]
struct Item {
    #[validate(range(min = 1, max = 99))]
    qty: u32,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Strict {
    #[validate(length(max = 10))]
    name: String,
}

type Events = Arc<Mutex<Vec<(SecurityEventKind, String, Vec<(&'static str, String)>)>>>;

fn app(events: &Events) -> Router {
    let sink = events.clone();
    // The Shield puts its event sinks in the request extensions, where the extractors'
    // events find them; it needs the client address.
    let shield = Shield::api()
        .event_sink(move |e: &SecurityEvent| {
            sink.lock()
                .unwrap()
                .push((e.kind(), e.reason_text().to_owned(), e.fields().to_vec()));
        })
        .build()
        .unwrap();
    let peer: std::net::SocketAddr = "203.0.113.9:40000".parse().unwrap();
    Router::new()
        .route(
            "/users",
            post(|Valid(Json(u)): Valid<Json<NewUser>>| async move { u.name }),
        )
        .route(
            "/strict",
            post(|Valid(Json(s)): Valid<Json<Strict>>| async move { s.name }),
        )
        .route(
            "/any",
            post(|Valid(Json(v)): Valid<Json<Strict>>| async move { v.name }),
        )
        .route(
            "/search",
            get(|Valid(Query(q)): Valid<Query<Search>>| async move { q.q }),
        )
        .route(
            "/form",
            post(|Valid(Form(f)): Valid<Form<Search>>| async move { f.q }),
        )
        .route(
            "/items/{id}",
            get(|Valid(Path(p)): Valid<Path<ItemId>>| async move { p.id.to_string() }),
        )
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(shield)
        .layer(Extension(axum::extract::ConnectInfo(peer)))
}

#[derive(Debug, Deserialize, Validate)]
struct Search {
    #[validate(length(min = 3, max = 50))]
    q: String,
}

#[derive(Debug, Deserialize, Validate)]
struct ItemId {
    #[validate(range(min = 1, max = 1000))]
    id: u32,
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let response = app.oneshot(req).await.unwrap();
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), ct)
}

fn json_req(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn valid_user() -> Value {
    json!({
        "emailAddress": "ann@example.com",
        "name": "Ann",
        "age": 30,
        "homeAddress": {"zip": "12345"},
        "items": [{"qty": 1}, {"qty": 2}, {"qty": 3}]
    })
}

#[tokio::test]
async fn valid_user_is_accepted() {
    let events = Events::default();
    let (status, body, _) = send(app(&events), json_req("/users", valid_user().to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "Ann");
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_rule_failure_names_the_json_path_and_never_the_value() {
    let events = Events::default();
    let user = json!({
        "emailAddress": format!("{SECRET}-not-an-email"),
        "name": format!("{SECRET}{SECRET}{SECRET}"),
        "age": 7,
        "homeAddress": {"zip": SECRET},
        "items": [{"qty": 1}, {"qty": 2}, {"qty": 500}]
    });
    let (status, body, ct) = send(app(&events), json_req("/users", user.to_string())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert!(!body.contains(SECRET), "value echoed: {body}");
    assert!(!body.contains("500"), "value echoed: {body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    let errors = doc["errors"].as_array().unwrap();
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("age", "range"),
        ("emailAddress", "email"),
        ("homeAddress.zip", "length"),
        ("items[2].qty", "range"),
        ("name", "length"),
    ];
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(f, r)| (f.to_string(), r.to_string()))
            .collect::<Vec<_>>()
    );
    assert!(errors.iter().all(|e| e.get("value").is_none()));
    assert_eq!(errors[0]["message"], "Must be between 13 and 130.");

    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, SecurityEventKind::InputValidationFail);
    let logged = format!("{:?}", events[0].2);
    assert!(logged.contains("homeAddress.zip") && !logged.contains(SECRET));
}

#[tokio::test]
async fn malformed_json_is_400_without_serde_internals() {
    let events = Events::default();
    let (status, body, ct) = send(app(&events), json_req("/users", r#"{"name": "#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    for internal in ["line", "column", "EOF", "expected"] {
        assert!(!body.contains(internal), "{body}");
    }
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let events = Events::default();
    let req = Request::post("/users")
        .header("content-type", "text/plain")
        .body(Body::from(valid_user().to_string()))
        .unwrap();
    let (status, _, ct) = send(app(&events), req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let events = Events::default();
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(100 * 1024));
    let (status, _, ct) = send(app(&events), json_req("/strict", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn unknown_fields_are_rejected_with_deny_unknown_fields() {
    let events = Events::default();
    let (status, body, _) = send(
        app(&events),
        json_req("/strict", r#"{"name":"ok","isAdmin":true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["errors"][0]["rule"], "unknown_field");
    assert!(!body.contains("expected one of"), "{body}");
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_422_with_path() {
    let events = Events::default();
    let mut user = valid_user();
    user["items"][1]["qty"] = json!(format!("{SECRET}"));
    let (status, body, _) = send(app(&events), json_req("/users", user.to_string())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.contains(SECRET), "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["errors"][0]["field"], "items[1].qty");
    assert_eq!(doc["errors"][0]["rule"], "type");

    let (status, body, _) = send(app(&events), json_req("/strict", "{}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["errors"][0]["field"], "name");
    assert_eq!(doc["errors"][0]["rule"], "required");
}

#[tokio::test]
async fn ten_thousand_levels_of_nesting_are_refused_without_stack_overflow() {
    let events = Events::default();
    let depth = 10_000;
    // In an unknown field: the guard still walks it.
    let doc = format!(r#"{{"extra":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let (status, body, _) = send(app(&events), json_req("/users", doc)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("max_depth"), "{body}");
    let objects = format!("{}{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let (status, body, _) = send(app(&events), json_req("/users", objects)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("max_depth"), "{body}");
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let events = Events::default();
    // First-wins and last-wins parsers would disagree on the name.
    let (status, body, _) = send(
        app(&events),
        json_req("/strict", r#"{"name":"alice","name":"admin"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["errors"][0]["rule"], "duplicate_key");
    assert_eq!(doc["errors"][0]["field"], "name");
    assert!(!body.contains("admin"));
}

#[tokio::test]
async fn huge_arrays_are_refused_at_the_cap() {
    let events = Events::default();
    let guarded = |limit| {
        app(&events).layer(
            JsonGuardLayer::builder()
                .max_array_len(limit)
                .build()
                .unwrap(),
        )
    };
    let items = |n: usize| {
        let mut user = valid_user();
        user["items"] = Value::Array(vec![json!({"qty": 1}); n]);
        user.to_string()
    };
    let (status, _, _) = send(guarded(100), json_req("/users", items(100))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(guarded(100), json_req("/users", items(101))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["errors"][0]["rule"], "max_array_len");
    assert_eq!(doc["errors"][0]["field"], "items[100]");
}

#[tokio::test]
async fn guard_layer_refuses_non_json_bodies_before_the_handler() {
    let events = Events::default();
    let app = app(&events).layer(JsonGuardLayer::default());
    let req = Request::post("/strict")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", "6")
        .body(Body::from("name=x"))
        .unwrap();
    let (status, _, _) = send(app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn control_characters_are_refused_when_asked() {
    let events = Events::default();
    let app = app(&events).layer(
        JsonGuardLayer::builder()
            .reject_control_chars(true)
            .build()
            .unwrap(),
    );
    let (status, body, _) = send(app, json_req("/strict", r#"{"name":"a\u0000b"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("control_character"), "{body}");
}

#[tokio::test]
async fn naughty_strings_never_cause_a_server_error() {
    let list: Vec<String> =
        serde_json::from_str(include_str!("data/blns.json")).expect("blns.json is a JSON array");
    assert!(list.len() > 400);
    let events = Events::default();
    let app = app(&events).layer(
        JsonGuardLayer::builder()
            .reject_control_chars(true)
            .build()
            .unwrap(),
    );
    for naughty in &list {
        let mut user = valid_user();
        user["name"] = json!(naughty);
        user["emailAddress"] = json!(naughty);
        user["homeAddress"]["zip"] = json!(naughty);
        let (status, body, _) = send(app.clone(), json_req("/users", user.to_string())).await;
        assert!(status.as_u16() < 500, "{naughty:?} gave {status}");
        assert!(
            status == StatusCode::OK
                || !naughty.is_empty() && !body.contains(naughty.as_str())
                || naughty.len() < 3,
            "{naughty:?} echoed in {body}"
        );
        // The raw string as a whole body, as a key, and in the query string.
        let (status, _, _) = send(app.clone(), json_req("/strict", naughty.clone())).await;
        assert!(status.as_u16() < 500, "{naughty:?} gave {status}");
        let keyed = json!({ naughty.as_str(): 1 }).to_string();
        let (status, _, _) = send(app.clone(), json_req("/strict", keyed)).await;
        assert!(status.as_u16() < 500, "{naughty:?} gave {status}");
        let q: String = naughty
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>();
        let req = Request::get(format!("/search?q={q}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(app.clone(), req).await;
        assert!(status.as_u16() < 500, "{naughty:?} gave {status}");
    }
}

#[tokio::test]
async fn query_form_and_path_are_validated() {
    let events = Events::default();
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let (status, body, _) = send(app(&events), get("/search?q=rust")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "rust"));
    let (status, body, _) = send(app(&events), get("/search?q=ab")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#""field":"q""#), "{body}");
    let (status, _, _) = send(app(&events), get("/search")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let form = |body: &'static str| {
        Request::post("/form")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, _) = send(app(&events), form("q=rust")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(app(&events), form("q=x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#""rule":"length""#), "{body}");

    let (status, _, _) = send(app(&events), get("/items/7")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(app(&events), get("/items/5000")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.contains("5000"), "{body}");
    let (status, _, _) = send(app(&events), get("/items/abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// --- validation with context -------------------------------------------------------------

struct Banned {
    names: Vec<String>,
}

fn not_banned(name: &str, banned: &Banned) -> Result<(), ValidationError> {
    if banned.names.iter().any(|b| b == name) {
        Err(ValidationError::new("banned"))
    } else {
        Ok(())
    }
}

#[derive(Deserialize, Validate)]
#[validate(context = Banned)]
struct Handle {
    #[validate(custom(function = "not_banned", use_context))]
    handle: String,
}

#[derive(Clone)]
struct State {
    banned: Arc<Banned>,
}

impl<'a> ValidationArgs<'a, Handle> for State {
    fn args(&'a self) -> &'a Banned {
        &self.banned
    }
}

#[tokio::test]
async fn validation_with_context_uses_router_state() {
    let app = Router::new()
        .route(
            "/handles",
            post(|ValidWith(Json(h)): ValidWith<Json<Handle>>| async move { h.handle }),
        )
        .with_state(State {
            banned: Arc::new(Banned {
                names: vec!["root".into()],
            }),
        });
    let (status, _, _) = send(app.clone(), json_req("/handles", r#"{"handle":"ann"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = send(app, json_req("/handles", r#"{"handle":"root"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#""rule":"banned""#), "{body}");
    assert!(!body.contains("root"), "{body}");
}

// --- sanitize, then validate -------------------------------------------------------------

#[derive(Deserialize, Validate)]
struct Comment {
    #[validate(length(min = 1, max = 8))]
    author: String,
    body: String,
}

impl axum_shield::validate::sanitize::Sanitize for Comment {
    fn sanitize(&mut self) {
        axum_shield::validate::sanitize::text(&mut self.author);
        axum_shield::validate::sanitize::invisible(&mut self.body);
    }
}

#[tokio::test]
async fn sanitized_fields_are_cleaned_before_validation() {
    use axum_shield::validate::sanitize::Sanitized;
    let app = Router::new().route(
        "/comments",
        post(
            |Valid(Sanitized(Json(c))): Valid<Sanitized<Json<Comment>>>| async move {
                format!("{}|{}", c.author, c.body)
            },
        ),
    );
    // Padding and a bidi override would push the author past 8 characters.
    let doc = json!({"author": "  Zoe\u{308}\u{202E}  ", "body": "hi\u{202E}\n<b>x</b>"});
    let (status, body, _) = send(app.clone(), json_req("/comments", doc.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "Zo\u{eb}|hi\n<b>x</b>");
    // Only invisible characters: empty after cleaning, so the length rule refuses it.
    let doc = json!({"author": " \u{200E}\u{0} ", "body": ""});
    let (status, body, _) = send(app, json_req("/comments", doc.to_string())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#""field":"author""#), "{body}");
}
