//! Unit tests of the JWT layer: every named attack must be refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use sha2::Sha256;
use tower::ServiceExt;

use jsonwebtoken::Algorithm;

use super::keys::{provider, Key};
use super::validation::{self, Rules, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, MAX_LEEWAY};
use super::*;
use crate::audit::{EventSinks, SecurityEvent, SecurityEventSink};
use crate::auth::revocation::now_unix;
use crate::auth::{MemoryRevocationStore, RevocationStore, TokenIssuer};
use crate::ConfigError;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ISS: &str = "https://id.example";
const AUD: &str = "orders-api";
const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/auth/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/auth/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../../tests/fixtures/auth/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../../../tests/fixtures/auth/ec_public.pem");
const ED_PRIVATE: &str = include_str!("../../../tests/fixtures/auth/ed_private.pem");
const ED_PUBLIC: &str = include_str!("../../../tests/fixtures/auth/ed_public.pem");

fn now() -> u64 {
    now_unix()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256_raw(header: &str, payload: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", b64(&mac.finalize().into_bytes()))
}

fn hs256(payload: &Value) -> String {
    hs256_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &payload.to_string(),
        SECRET,
    )
}

fn sign_asym(alg: Algorithm, pem: &str, header: &str, payload: &str) -> String {
    let key = match alg.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
        jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .unwrap();
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signer = (provider().unwrap().signer_factory)(&alg, &key).unwrap();
    let sig = jsonwebtoken::signature::Signer::try_sign(&*signer, message.as_bytes()).unwrap();
    format!("{message}.{}", b64(&sig))
}

fn good_claims() -> Value {
    json!({ "sub": "alice", "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 600, "scope": "orders:read" })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn verifier() -> JwtAuthLayer {
    JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
}

fn check(token: &str) -> Result<VerifiedToken, TokenError> {
    verifier().verify_at(token, now())
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

impl SecurityEventSink for Recorder {
    fn record(&self, event: &SecurityEvent) {
        self.0.lock().unwrap().push((
            event.kind().name().to_owned(),
            event.reason_text().to_owned(),
        ));
    }
}

fn app(layer: JwtAuthLayer) -> Router {
    async fn me(claims: Option<Claims<Value>>) -> String {
        match claims {
            Some(Claims(c)) => c["sub"].as_str().unwrap_or("").to_owned(),
            None => "anonymous".to_owned(),
        }
    }
    Router::new().route("/me", get(me)).route_layer(layer)
}

struct Answer {
    status: StatusCode,
    www: Option<String>,
    body: String,
    events: Vec<(String, String)>,
}

async fn send(router: Router, mut req: Request<Body>) -> Answer {
    let recorder = Recorder::default();
    req.extensions_mut()
        .insert(EventSinks::new(vec![Arc::new(recorder.clone())]));
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(
        axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let events = recorder.0.lock().unwrap().clone();
    Answer {
        status,
        www,
        body,
        events,
    }
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

// ---- accepted tokens ------------------------------------------------------------------

#[tokio::test]
async fn valid_hs256_token_reaches_the_handler_with_claims_and_principal() {
    let answer = send(app(verifier()), bearer(&hs256(&good_claims()))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "alice");
    assert!(answer.events.is_empty());
    let v = check(&hs256(&good_claims())).unwrap();
    assert_eq!(v.principal().id(), "alice");
    assert!(v.principal().has_scope("orders:read"));
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let token = hs256(&good_claims());
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let req = Request::get("/me")
            .header("authorization", format!("{scheme} {token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(app(verifier()), req).await.status, StatusCode::OK);
    }
}

#[test]
fn es256_rs256_ps256_and_eddsa_tokens_verify_with_their_keys() {
    for (alg, private, public) in [
        ("ES256", EC_PRIVATE, EC_PUBLIC),
        ("RS256", RSA_PRIVATE, RSA_PUBLIC),
        ("PS256", RSA_PRIVATE, RSA_PUBLIC),
        ("EdDSA", ED_PRIVATE, ED_PUBLIC),
    ] {
        let issuer = TokenIssuer::from_pem(alg, private)
            .issuer(ISS)
            .audience(AUD)
            .build()
            .unwrap();
        let issued = issuer.issue("bob", &json!({})).unwrap();
        let v = JwtAuthLayer::keys([VerifyingKey::from_pem(alg, public)])
            .issuer(ISS)
            .audience(AUD)
            .build()
            .unwrap();
        assert_eq!(
            v.verify_at(&issued.token, now()).unwrap().principal().id(),
            "bob",
            "{alg}"
        );
    }
}

#[test]
fn issuer_round_trips_with_the_verifier_and_sets_every_registered_claim() {
    let issuer = TokenIssuer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .kid("k1")
        .ttl(Duration::from_secs(300))
        .build()
        .unwrap();
    let issued = issuer
        .issue("alice", &json!({ "roles": ["admin"], "exp": 1 }))
        .unwrap();
    let v = JwtAuthLayer::keys([VerifyingKey::hs256(SECRET).with_kid("k1")])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
        .verify_at(&issued.token, now())
        .unwrap();
    let c = v.claims();
    for claim in ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"] {
        assert!(c.get(claim).is_some(), "{claim}");
    }
    assert_eq!(c["exp"].as_u64().unwrap(), issued.expires_at);
    assert_eq!(issued.expires_at - c["iat"].as_u64().unwrap(), 300);
    assert_eq!(v.jti(), Some(issued.jti.as_str()));
    assert!(v.principal().has_role("admin"));
    // Two tokens never share a jti.
    assert_ne!(issuer.issue("alice", &json!({})).unwrap().jti, issued.jti);
    assert!(!format!("{issued:?}").contains(&issued.token));
}

#[test]
fn rfc7515_appendix_a1_hs256_vector_verifies() {
    // RFC 7515 A.1: the key is a 64-byte HMAC key, the token expired in 2011, has no `sub`.
    let key = URL_SAFE_NO_PAD
        .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
        .unwrap();
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let v = JwtAuthLayer::hs256(&key)
        .issuer("joe")
        .require_subject(false)
        .build()
        .unwrap();
    let verified = v.verify_at(token, 1_300_819_000).unwrap();
    assert_eq!(verified.claims()["http://example.com/is_root"], true);
    // The same token today is expired, and with one flipped signature bit it is forged.
    assert_eq!(v.verify_at(token, now()).unwrap_err(), TokenError::Expired);
    let forged = token.replace("dBjftJeZ4", "dBjftJeZ5");
    assert_eq!(
        v.verify_at(&forged, 1_300_819_000).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn rfc8037_appendix_a4_ed25519_vector_verifies() {
    // RFC 8037 A.4 signs the text "Example of Ed25519 signing": a JWS but not a JWT.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }))
    .unwrap();
    let key = Key::from_jwk(&jwk).unwrap();
    assert_eq!(key.alg, Algorithm::EdDSA);
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let signed = validation::verify_signature(
        provider().unwrap(),
        &Rules::default(),
        std::slice::from_ref(&key),
        &validation::HeaderMemo::new(),
        token,
    )
    .unwrap();
    assert_eq!(signed.payload, b"Example of Ed25519 signing");
    // As a JWT it is refused: its payload is not a claims set. The same key as a PEM
    // (SubjectPublicKeyInfo: the Ed25519 prefix of RFC 8410, then the 32 key bytes).
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend(
        URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap(),
    );
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let v = JwtAuthLayer::keys([VerifyingKey::from_pem("EdDSA", pem)])
        .build()
        .unwrap();
    assert_eq!(
        v.verify_at(token, now()).unwrap_err(),
        TokenError::NotAClaimsSet
    );
    let forged = token.replace("hgyY0il", "hgyY0iL");
    assert_eq!(
        v.verify_at(&forged, now()).unwrap_err(),
        TokenError::BadSignature
    );
}

// ---- named attacks -------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_rejected_in_every_casing() {
    let payload = good_claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE", "", "hs256", "HS256 "] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signed = hs256_raw(&header, &payload, SECRET);
        for token in [unsigned, signed] {
            let err = check(&token).unwrap_err();
            assert!(
                matches!(err, TokenError::AlgorithmNotAllowed | TokenError::Malformed),
                "{alg}: {err:?}"
            );
            let answer = send(app(verifier()), bearer(&token)).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{alg}");
        }
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let v = JwtAuthLayer::keys([VerifyingKey::from_pem("RS256", RSA_PUBLIC)])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let token = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &good_claims().to_string(),
        RSA_PUBLIC.as_bytes(),
    );
    assert_eq!(
        v.verify_at(&token, now()).unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let token = hs256(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = b64(with(good_claims(), "sub", json!("admin"))
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(check(&tampered).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn tampered_header_is_rejected() {
    let token = hs256(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = b64(br#"{"alg":"HS256","typ":"JWT","kid":"x"}"#);
    let tampered = format!("{}.{}.{}", evil, parts[1], parts[2]);
    assert_eq!(check(&tampered).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn token_signed_with_a_wrong_key_is_rejected() {
    let token = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &good_claims().to_string(),
        b"another-32-byte-secret-abcdefghij",
    );
    assert_eq!(check(&token).unwrap_err(), TokenError::BadSignature);
    let es = sign_asym(
        Algorithm::ES256,
        EC_PRIVATE,
        r#"{"alg":"ES256"}"#,
        &good_claims().to_string(),
    );
    let other_ec = JwtAuthLayer::keys([VerifyingKey::from_pem("ES384", EC_PUBLIC)])
        .build()
        .unwrap_or_else(|_| JwtAuthLayer::hs256(SECRET).build().unwrap());
    assert!(other_ec.verify_at(&es, now()).is_err());
}

#[test]
fn missing_exp_is_rejected() {
    assert_eq!(
        check(&hs256(&without(good_claims(), "exp"))).unwrap_err(),
        TokenError::MissingExpiry
    );
}

#[test]
fn expired_exp_is_rejected_after_the_leeway() {
    assert_eq!(
        check(&hs256(&with(good_claims(), "exp", json!(now() - 61)))).unwrap_err(),
        TokenError::Expired
    );
    // Within the 60 s leeway it still passes.
    assert!(check(&hs256(&with(good_claims(), "exp", json!(now() - 30)))).is_ok());
    let strict = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        strict
            .verify_at(&hs256(&with(good_claims(), "exp", json!(now() - 1))), now())
            .unwrap_err(),
        TokenError::Expired
    );
}

/// RFC 7519 §4: duplicate claim names are refused, so the layer, the principal and a
/// handler's `Claims<T>` can never read different values of one claim.
#[test]
fn duplicate_claims_are_rejected() {
    let exp = now() + 600;
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    for payload in [
        format!(r#"{{"sub":"alice","sub":"admin","iss":"{ISS}","aud":"{AUD}","exp":{exp}}}"#),
        format!(
            r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{exp},"exp":{}}}"#,
            exp + 1
        ),
        format!(
            r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{exp},"scope":"a","scope":"admin"}}"#
        ),
        format!(r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","aud":"other","exp":{exp}}}"#),
    ] {
        assert_eq!(
            check(&hs256_raw(header, &payload, SECRET)).unwrap_err(),
            TokenError::InvalidClaim,
            "{payload}"
        );
    }
}

/// One verifier remembers the header of a verified token; every other header, and every
/// bad signature under the remembered one, is still checked and refused.
#[test]
fn remembered_header_changes_no_outcome() {
    let v = verifier();
    let good = hs256(&good_claims());
    assert!(v.verify_at(&good, now()).is_ok());
    let none = hs256_raw(
        r#"{"alg":"none","typ":"JWT"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(
        v.verify_at(&none, now()).unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    let crit = hs256_raw(
        r#"{"alg":"HS256","typ":"JWT","crit":["x"]}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(
        v.verify_at(&crit, now()).unwrap_err(),
        TokenError::CriticalHeader
    );
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    // The last of the 43 characters of a 32-byte signature carries 4 bits and 2 zero bits:
    // 'A' and 'E' both keep the encoding canonical, so the change reaches the signature check
    // (any other letter could leave a non-zero trailing bit, refused earlier as malformed).
    forged.push(if last == 'A' { 'E' } else { 'A' });
    assert_eq!(
        v.verify_at(&forged, now()).unwrap_err(),
        TokenError::BadSignature
    );
    let wrong_key = hs256_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &good_claims().to_string(),
        b"another-secret-another-secret-an",
    );
    assert_eq!(
        v.verify_at(&wrong_key, now()).unwrap_err(),
        TokenError::BadSignature
    );
    let expired = hs256(&with(good_claims(), "exp", json!(now() - 3600)));
    assert_eq!(
        v.verify_at(&expired, now()).unwrap_err(),
        TokenError::Expired
    );
    assert!(v.verify_at(&good, now()).is_ok());
}

/// A typed `Claims<T>` and the principal read the same signed text.
#[test]
fn claims_json_is_the_signed_payload() {
    let claims = good_claims();
    let verified = check(&hs256(&claims)).unwrap();
    let reparsed: Value = serde_json::from_str(verified.claims_json()).unwrap();
    assert_eq!(reparsed, claims);
    assert_eq!(verified.claims(), &claims);
    assert_eq!(verified.issuer(), Some(ISS));
    assert_eq!(verified.principal().scopes(), ["orders:read"]);
    // `iss` and `jti` read back whether kept as a range of the text or decoded (escapes).
    let exp = now() + 600;
    for (raw, want) in [("plain-id", "plain-id"), (r"esc\u0061ped\n", "escaped\n")] {
        let payload =
            format!(r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{exp},"jti":"{raw}"}}"#);
        let token = hs256_raw(r#"{"alg":"HS256"}"#, &payload, SECRET);
        let verified = check(&token).unwrap();
        assert_eq!(verified.jti(), Some(want));
        assert_eq!(verified.issuer(), Some(ISS));
    }
}

#[test]
fn string_exp_is_rejected() {
    let exp = (now() + 600).to_string();
    assert_eq!(
        check(&hs256(&with(good_claims(), "exp", json!(exp)))).unwrap_err(),
        TokenError::InvalidClaim
    );
}

#[test]
fn float_exp_is_rejected() {
    assert_eq!(
        check(&hs256(&with(
            good_claims(),
            "exp",
            json!(now() as f64 + 600.5)
        )))
        .unwrap_err(),
        TokenError::InvalidClaim
    );
    assert_eq!(
        check(&hs256(&with(good_claims(), "exp", json!(-5)))).unwrap_err(),
        TokenError::InvalidClaim
    );
    assert_eq!(
        check(&hs256(&with(good_claims(), "exp", json!(1e300)))).unwrap_err(),
        TokenError::InvalidClaim
    );
}

#[test]
fn future_nbf_is_rejected() {
    assert_eq!(
        check(&hs256(&with(good_claims(), "nbf", json!(now() + 120)))).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(check(&hs256(&with(good_claims(), "nbf", json!(now() + 30)))).is_ok());
}

#[test]
fn future_iat_is_rejected() {
    assert_eq!(
        check(&hs256(&with(good_claims(), "iat", json!(now() + 120)))).unwrap_err(),
        TokenError::IssuedInFuture
    );
}

#[test]
fn tokens_older_than_max_age_are_rejected() {
    let v = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .max_age(Duration::from_secs(300))
        .build()
        .unwrap();
    assert_eq!(
        v.verify_at(
            &hs256(&with(good_claims(), "iat", json!(now() - 1000))),
            now()
        )
        .unwrap_err(),
        TokenError::TooOld
    );
    assert_eq!(
        v.verify_at(&hs256(&without(good_claims(), "iat")), now())
            .unwrap_err(),
        TokenError::TooOld
    );
    assert!(v.verify_at(&hs256(&good_claims()), now()).is_ok());
}

#[test]
fn wrong_iss_is_rejected() {
    assert_eq!(
        check(&hs256(&with(
            good_claims(),
            "iss",
            json!("https://evil.example")
        )))
        .unwrap_err(),
        TokenError::WrongIssuer
    );
    // Exact match: no prefix, case or trailing-slash games.
    assert_eq!(
        check(&hs256(&with(
            good_claims(),
            "iss",
            json!("https://id.example/")
        )))
        .unwrap_err(),
        TokenError::WrongIssuer
    );
    assert_eq!(
        check(&hs256(&with(
            good_claims(),
            "iss",
            json!("HTTPS://ID.EXAMPLE")
        )))
        .unwrap_err(),
        TokenError::WrongIssuer
    );
}

#[test]
fn missing_iss_is_rejected() {
    assert_eq!(
        check(&hs256(&without(good_claims(), "iss"))).unwrap_err(),
        TokenError::MissingIssuer
    );
}

#[test]
fn wrong_aud_is_rejected() {
    assert_eq!(
        check(&hs256(&with(good_claims(), "aud", json!("billing-api")))).unwrap_err(),
        TokenError::WrongAudience
    );
    assert_eq!(
        check(&hs256(&with(
            good_claims(),
            "aud",
            json!(["billing-api", "x"])
        )))
        .unwrap_err(),
        TokenError::WrongAudience
    );
    assert!(check(&hs256(&with(
        good_claims(),
        "aud",
        json!(["billing-api", AUD])
    )))
    .is_ok());
    assert_eq!(
        check(&hs256(&with(good_claims(), "aud", json!(5)))).unwrap_err(),
        TokenError::InvalidClaim
    );
}

#[test]
fn missing_aud_is_rejected() {
    assert_eq!(
        check(&hs256(&without(good_claims(), "aud"))).unwrap_err(),
        TokenError::MissingAudience
    );
}

#[test]
fn token_with_aud_is_rejected_when_no_audience_is_configured() {
    // RFC 7519 §4.1.3: a recipient that does not identify with a present `aud` rejects it.
    let v = JwtAuthLayer::hs256(SECRET).build().unwrap();
    assert_eq!(
        v.verify_at(&hs256(&good_claims()), now()).unwrap_err(),
        TokenError::WrongAudience
    );
}

#[test]
fn missing_sub_is_rejected() {
    assert_eq!(
        check(&hs256(&without(good_claims(), "sub"))).unwrap_err(),
        TokenError::MissingSubject
    );
}

#[test]
fn unknown_crit_is_rejected() {
    let t = hs256_raw(
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(check(&t).unwrap_err(), TokenError::CriticalHeader);
    let b64 = hs256_raw(
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(check(&b64).unwrap_err(), TokenError::CriticalHeader);
}

#[test]
fn kid_path_traversal_is_rejected() {
    let v = JwtAuthLayer::keys([VerifyingKey::hs256(SECRET).with_kid("k1")])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    for kid in [
        "../../../../dev/null",
        "/etc/passwd",
        "k1/../k1",
        "k1\u{0}",
        "' OR '1'='1",
    ] {
        // Signed with the empty key a file like /dev/null would yield, and with the real key.
        for secret in [&b""[..], SECRET] {
            let header = json!({ "alg": "HS256", "kid": kid }).to_string();
            let t = hs256_raw(&header, &good_claims().to_string(), secret);
            assert_eq!(
                v.verify_at(&t, now()).unwrap_err(),
                TokenError::UnknownKey,
                "{kid:?}"
            );
        }
    }
    let long = json!({ "alg": "HS256", "kid": "a".repeat(300) }).to_string();
    assert_eq!(
        v.verify_at(&hs256_raw(&long, &good_claims().to_string(), SECRET), now())
            .unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn jku_header_is_rejected() {
    let t = sign_asym(
        Algorithm::ES256,
        EC_PRIVATE,
        r#"{"alg":"ES256","jku":"https://evil.example/jwks.json"}"#,
        &good_claims().to_string(),
    );
    let v = JwtAuthLayer::keys([VerifyingKey::from_pem("ES256", EC_PUBLIC)])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    assert_eq!(
        v.verify_at(&t, now()).unwrap_err(),
        TokenError::KeyReferenceHeader
    );
}

#[test]
fn x5u_header_is_rejected() {
    let t = hs256_raw(
        r#"{"alg":"HS256","x5u":"https://evil.example/cert.pem"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(check(&t).unwrap_err(), TokenError::KeyReferenceHeader);
}

#[test]
fn embedded_jwk_header_is_rejected() {
    // The attacker signs with their own key and embeds its public half.
    let header =
        json!({ "alg": "ES256", "jwk": { "kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA" } })
            .to_string();
    let t = sign_asym(
        Algorithm::ES256,
        EC_PRIVATE,
        &header,
        &good_claims().to_string(),
    );
    let v = JwtAuthLayer::keys([VerifyingKey::from_pem("ES256", EC_PUBLIC)])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    assert_eq!(
        v.verify_at(&t, now()).unwrap_err(),
        TokenError::KeyReferenceHeader
    );
}

#[tokio::test]
async fn oversized_token_is_rejected_within_a_bound() {
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(512 * 1024),
        "b".repeat(512 * 1024),
        "c".repeat(100)
    );
    let start = Instant::now();
    assert_eq!(check(&huge).unwrap_err(), TokenError::TooLarge);
    let answer = send(app(verifier()), bearer(&huge)).await;
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.www.unwrap().contains("invalid_token"));
    assert!(answer.body.len() < 1024, "the token is not echoed");
    assert_eq!(
        answer.events,
        vec![("malicious_header".to_owned(), "token_too_large".to_owned())]
    );
    // Just over the cap, as a whole valid-looking token.
    let padded = hs256(&with(
        good_claims(),
        "pad",
        json!("x".repeat(DEFAULT_MAX_TOKEN_BYTES)),
    ));
    assert_eq!(check(&padded).unwrap_err(), TokenError::TooLarge);
}

#[test]
fn malformed_segments_are_rejected() {
    let good = hs256(&good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "abc".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{good}.a.b"),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", "!!!!", parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[\"alg\"]"), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","alg":"none"}"#),
            parts[1],
            parts[2]
        ),
    ];
    for token in &cases {
        let err = check(token).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed | TokenError::BadSignature),
            "{token:?}: {err:?}"
        );
    }
    let not_json_payload = hs256_raw(r#"{"alg":"HS256"}"#, "not json", SECRET);
    assert_eq!(
        check(&not_json_payload).unwrap_err(),
        TokenError::NotAClaimsSet
    );
}

#[tokio::test]
async fn duplicate_authorization_headers_are_rejected() {
    let token = hs256(&good_claims());
    let req = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(app(verifier()), req).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.www.as_deref(),
        Some("Bearer error=\"invalid_request\"")
    );
    assert_eq!(answer.events[0].0, "malicious_header");
}

#[tokio::test]
async fn token_in_query_string_is_ignored_by_default() {
    let token = hs256(&good_claims());
    let req = Request::get(format!("/me?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(app(verifier()), req).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.www.as_deref(), Some("Bearer"));
    // Opted in, it works, and a second method in the same request is ambiguous.
    let opted = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .token_from_query("access_token")
        .build()
        .unwrap();
    let req = Request::get(format!("/me?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app(opted.clone()), req).await.status, StatusCode::OK);
    let mut both = bearer(&token);
    *both.uri_mut() = format!("/me?access_token={token}").parse().unwrap();
    assert_eq!(send(app(opted), both).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revoked_jti_is_rejected() {
    let store = Arc::new(MemoryRevocationStore::new(100).unwrap());
    let v = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .revocation(store.clone())
        .build()
        .unwrap();
    let issued = TokenIssuer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
        .issue("alice", &json!({}))
        .unwrap();
    assert_eq!(
        send(app(v.clone()), bearer(&issued.token)).await.status,
        StatusCode::OK
    );
    store
        .revoke(ISS, &issued.jti, issued.expires_at)
        .await
        .unwrap();
    let answer = send(app(v.clone()), bearer(&issued.token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.events,
        vec![("authn_token_revoked".to_owned(), "revoked".to_owned())]
    );
    assert_eq!(
        v.verify(&issued.token).await.unwrap_err(),
        TokenError::Revoked
    );
}

/// Issue 16, item 4: a revocation must outlive the token's `exp` for as long as a verifier
/// may still accept the token (`exp` + leeway, RFC 7519 §4.1.4). A 1 s token revoked while
/// valid and presented 2 s after its `exp` (inside the default 60 s leeway) stays refused; so
/// does one presented 500 s after `exp` to a verifier built with the largest leeway, 600 s.
/// The token is signed with `exp` already in the past, which is exactly the state "revoked,
/// then the clock moved past `exp`" without waiting for a real clock.
#[tokio::test]
async fn revoked_token_stays_refused_after_exp_within_the_leeway() {
    for (leeway, past_exp) in [(DEFAULT_LEEWAY, 2), (MAX_LEEWAY, 500)] {
        let store = Arc::new(MemoryRevocationStore::new(100).unwrap());
        let v = JwtAuthLayer::hs256(SECRET)
            .issuer(ISS)
            .audience(AUD)
            .leeway(leeway)
            .revocation(store.clone())
            .build()
            .unwrap();
        let exp = now() - past_exp;
        let claims = json!({ "sub": "alice", "iss": ISS, "aud": AUD, "iat": exp - 1, "exp": exp, "jti": "one-second" });
        let token = hs256(&claims);
        // Still inside the leeway: the verifier accepts it until it is revoked.
        assert!(v.verify(&token).await.is_ok());
        store.revoke(ISS, "one-second", exp).await.unwrap();
        assert!(store.is_revoked(ISS, "one-second").await.unwrap());
        assert_eq!(v.verify(&token).await.unwrap_err(), TokenError::Revoked);
        let answer = send(app(v), bearer(&token)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn failing_revocation_store_fails_closed() {
    struct Down;
    impl RevocationStore for Down {
        fn is_revoked<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> crate::auth::RevocationFuture<'a, bool> {
            Box::pin(async { Err(crate::auth::RevocationError::new("down")) })
        }
        fn revoke<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: u64,
        ) -> crate::auth::RevocationFuture<'a, ()> {
            Box::pin(async { Err(crate::auth::RevocationError::new("down")) })
        }
    }
    let v = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .revocation(Arc::new(Down))
        .build()
        .unwrap();
    let issued = TokenIssuer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
        .issue("alice", &json!({}))
        .unwrap();
    let answer = send(app(v), bearer(&issued.token)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.events[0].0, "sys_dependency_fail");
}

#[test]
fn disallowed_typ_is_rejected() {
    let t = hs256_raw(
        r#"{"alg":"HS256","typ":"dpop+jwt"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(check(&t).unwrap_err(), TokenError::TypeNotAllowed);
    for typ in ["at+jwt", "application/at+jwt", "jwt"] {
        let t = hs256_raw(
            &format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#),
            &good_claims().to_string(),
            SECRET,
        );
        assert!(check(&t).is_ok(), "{typ}");
    }
    let required = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .allowed_types(["at+jwt"], true)
        .build()
        .unwrap();
    let untyped = hs256_raw(r#"{"alg":"HS256"}"#, &good_claims().to_string(), SECRET);
    assert_eq!(
        required.verify_at(&untyped, now()).unwrap_err(),
        TokenError::TypeNotAllowed
    );
}

// ---- RFC 6750 answers, modes, sources ------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_bearer_without_error() {
    let answer = send(
        app(verifier()),
        Request::get("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.www.as_deref(), Some("Bearer"));
    assert_eq!(
        answer.events,
        vec![("authn_token_missing".to_owned(), "no_token".to_owned())]
    );
    // Another scheme is not a bearer token.
    let basic = Request::get("/me")
        .header("authorization", "Basic YTpi")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(app(verifier()), basic).await.www.as_deref(),
        Some("Bearer")
    );
}

#[tokio::test]
async fn invalid_token_is_401_invalid_token_without_description_or_echo() {
    let token = hs256(&with(good_claims(), "exp", json!(now() - 3600)));
    let answer = send(app(verifier()), bearer(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.www.as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(!answer.body.contains(&token[..20]));
    assert!(
        answer.body.contains("application/problem+json") || answer.body.contains("invalid_token")
    );
    assert_eq!(
        answer.events,
        vec![("authn_token_invalid".to_owned(), "expired".to_owned())]
    );
    let described = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .realm("orders")
        .error_description(true)
        .build()
        .unwrap();
    let answer = send(app(described), bearer(&token)).await;
    assert_eq!(
        answer.www.as_deref(),
        Some("Bearer realm=\"orders\", error=\"invalid_token\", error_description=\"The access token expired\"")
    );
}

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_rejects_bad_tokens() {
    let v = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .optional(true)
        .build()
        .unwrap();
    let answer = send(
        app(v.clone()),
        Request::get("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    let bad = hs256(&with(good_claims(), "iss", json!("https://evil.example")));
    assert_eq!(
        send(app(v.clone()), bearer(&bad)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(app(v.clone()), bearer(&hs256(&good_claims())))
            .await
            .body,
        "alice"
    );
}

#[tokio::test]
async fn claims_extractor_without_layer_is_401() {
    let router = Router::new().route(
        "/me",
        get(|Claims(c): Claims<Value>| async move { c.to_string() }),
    );
    let answer = send(router, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_source_is_opt_in() {
    let token = hs256(&good_claims());
    let cookie = || {
        Request::get("/me")
            .header("cookie", format!("theme=dark; at={token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(app(verifier()), cookie()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let v = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .token_from_cookie("at")
        .build()
        .unwrap();
    assert_eq!(send(app(v), cookie()).await.status, StatusCode::OK);
}

#[test]
fn short_hmac_secrets_are_refused_at_build() {
    let setting =
        |built: Result<JwtAuthLayer, ConfigError>| built.unwrap_err().setting().to_owned();
    assert_eq!(setting(JwtAuthLayer::hs256(b"").build()), "secret");
    assert_eq!(setting(JwtAuthLayer::hs256([7u8; 31]).build()), "secret");
    let err = JwtAuthLayer::keys([VerifyingKey::hs384([7u8; 47])])
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("HS384 secret is 47 bytes"),
        "{err}"
    );
    let err = JwtAuthLayer::keys([VerifyingKey::hs512([7u8; 63])])
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("HS512 secret is 63 bytes"),
        "{err}"
    );
    assert_eq!(
        TokenIssuer::hs256(b"short").build().unwrap_err().setting(),
        "secret"
    );
    assert!(JwtAuthLayer::hs256([7u8; 32]).build().is_ok());
    assert!(JwtAuthLayer::keys([VerifyingKey::hs512([7u8; 64])])
        .build()
        .is_ok());
}

/// Every setter is infallible; `build` reports the first problem, naming the setting.
#[test]
fn bad_configuration_is_refused_at_build() {
    let setting =
        |built: Result<JwtAuthLayer, ConfigError>| built.unwrap_err().setting().to_owned();
    assert_eq!(setting(JwtAuthLayer::keys([]).build()), "keys");
    let k = || VerifyingKey::hs256(SECRET).with_kid("a");
    assert_eq!(setting(JwtAuthLayer::keys([k(), k()]).build()), "keys");
    assert_eq!(
        setting(JwtAuthLayer::hs256(SECRET).issuer("").build()),
        "issuer"
    );
    assert_eq!(
        setting(JwtAuthLayer::hs256(SECRET).max_token_bytes(10).build()),
        "max_token_bytes"
    );
    assert_eq!(
        setting(
            JwtAuthLayer::hs256(SECRET)
                .leeway(Duration::from_secs(3600))
                .build()
        ),
        "leeway"
    );
    assert_eq!(
        setting(JwtAuthLayer::hs256(SECRET).realm("a\"b").build()),
        "realm"
    );
    assert_eq!(
        setting(JwtAuthLayer::hs256(SECRET).token_from_cookie("a b").build()),
        "token_from_cookie"
    );
    let pem = |alg: &str, pem: &str| {
        setting(JwtAuthLayer::keys([VerifyingKey::from_pem(alg, pem)]).build())
    };
    assert_eq!(pem("HS256", RSA_PUBLIC), "key");
    assert_eq!(pem("ES256", RSA_PUBLIC), "key");
    // Algorithm names are case-sensitive (RFC 7515 §4.1.1), and `none` is never one.
    assert_eq!(pem("es256", EC_PUBLIC), "algorithm");
    assert_eq!(pem("none", EC_PUBLIC), "algorithm");
    // The first problem is the one reported: the key comes before the rules.
    assert_eq!(
        setting(JwtAuthLayer::hs256(b"short").issuer("").build()),
        "secret"
    );
    let oct: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(json!({ "kty": "oct", "k": b64(SECRET) })).unwrap();
    assert!(
        Key::from_jwk(&oct).is_err(),
        "shared secrets never come from a key set"
    );
}

#[tokio::test]
async fn asymmetric_cache_hits_still_respect_expiry_and_revocation() {
    let store = Arc::new(MemoryRevocationStore::new(10).unwrap());
    let v = JwtAuthLayer::keys([VerifyingKey::from_pem("ES256", EC_PUBLIC)])
        .issuer(ISS)
        .audience(AUD)
        .cache_verified(2)
        .revocation(store.clone())
        .build()
        .unwrap();
    let issuer = TokenIssuer::from_pem("ES256", EC_PRIVATE)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let issued = issuer.issue("bob", &json!({})).unwrap();
    assert!(v.verify(&issued.token).await.is_ok());
    assert_eq!(v.cached_tokens(), 1);
    assert!(v.verify(&issued.token).await.is_ok());
    // Past its exp (+ leeway) the cached token is refused and dropped.
    assert_eq!(
        v.verify_at(&issued.token, issued.expires_at + 61)
            .unwrap_err(),
        TokenError::Expired
    );
    store
        .revoke(ISS, &issued.jti, issued.expires_at)
        .await
        .unwrap();
    assert_eq!(
        v.verify(&issued.token).await.unwrap_err(),
        TokenError::Revoked
    );
    // Bounded.
    for _ in 0..5 {
        let t = issuer.issue("bob", &json!({})).unwrap();
        v.verify(&t.token).await.unwrap();
    }
    assert!(v.cached_tokens() <= 2);
    // HMAC tokens are never cached.
    let h = JwtAuthLayer::hs256(SECRET)
        .issuer(ISS)
        .audience(AUD)
        .cache_verified(10)
        .build()
        .unwrap();
    h.verify_at(&hs256(&good_claims()), now()).unwrap();
    assert_eq!(h.cached_tokens(), 0);
}

#[test]
fn key_rotation_with_kids_selects_the_right_key() {
    let old = VerifyingKey::hs256(b"old-secret-old-secret-old-secret!").with_kid("old");
    let new = VerifyingKey::hs256(SECRET).with_kid("new");
    let v = JwtAuthLayer::keys([old, new])
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let t = hs256_raw(
        r#"{"alg":"HS256","kid":"new"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert!(v.verify_at(&t, now()).is_ok());
    let wrong = hs256_raw(
        r#"{"alg":"HS256","kid":"old"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(
        v.verify_at(&wrong, now()).unwrap_err(),
        TokenError::BadSignature
    );
}

mod bearer_properties {
    use super::*;
    use http::header::{AUTHORIZATION, COOKIE};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any `Authorization` / `Cookie` bytes, once or twice: extraction never panics, a
        /// found token is a substring of the header, and nothing forged ever verifies.
        #[test]
        fn any_credential_header_never_panics_and_never_verifies(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            twice in any::<bool>(),
            prefix in prop_oneof![Just(""), Just("Bearer "), Just("bearer  "), Just("BEARER\t")],
        ) {
            let verifier = verifier();
            let mut headers = http::HeaderMap::new();
            let mut value = prefix.as_bytes().to_vec();
            value.extend_from_slice(&bytes);
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                headers.append(AUTHORIZATION, v.clone());
                headers.append(COOKIE, v.clone());
                if twice {
                    headers.append(AUTHORIZATION, v);
                }
            }
            let uri: http::Uri = "/orders?access_token=abc.def.ghi".parse().unwrap();
            if let Ok(Some(token)) = verifier.verifier().extract(&headers, &uri) {
                prop_assert!(!twice);
                let header = headers[AUTHORIZATION].to_str().unwrap();
                prop_assert!(header.contains(token.as_ref()));
                prop_assert!(verifier.verify_at(&token, now()).is_err());
            }
        }

        /// Any three dot-separated segments: verification refuses without panicking.
        #[test]
        fn any_token_shape_is_refused_without_panicking(
            a in "[A-Za-z0-9_=-]{0,80}", b in "[A-Za-z0-9_=-]{0,200}", c in "[A-Za-z0-9_=-]{0,80}",
        ) {
            let token = format!("{a}.{b}.{c}");
            prop_assert!(verifier().verify_at(&token, now()).is_err());
        }
    }
}
