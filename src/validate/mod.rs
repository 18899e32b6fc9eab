//! Input validation, sanitization and data-exposure guards.
//!
//! | piece | what it does | feature |
//! |---|---|---|
//! | [`Valid`], [`ValidWith`] | `Valid<Json<T>>`, `Valid<Query<T>>`, `Valid<Form<T>>`, `Valid<Path<T>>`, `Valid<Sanitized<…>>`, any [`HasValidate`] extractor: validates with `validator` (with arguments for [`ValidWith`]), 422 with JSON field paths | `validate` |
//! | [`GuardedJson`], [`JsonGuardLayer`] | content type (415), body limit (413), malformed JSON (400), depth / string / key / array caps ([`JsonLimits`]), duplicate keys, control characters (400), shape errors (422) — one pass | — |
//! | [`sanitize`] | HTML encoding for output, invisible-character stripping, NFC, [`Sanitized`](sanitize::Sanitized) extractor, allow-list HTML cleaning | `sanitize-html` for ammonia |
//! | [`redact::RedactFieldsLayer`] | removes `password`, `token`, … at any depth from JSON responses, `data_exposure_blocked` event | — |
//! | [`scrub::ScrubServerErrorsLayer`] | replaces 5xx bodies with a generic problem carrying the request id | — |
//!
//! # What a refusal looks like
//!
//! ```json
//! {"type":"about:blank","title":"Unprocessable Entity","status":422,
//!  "detail":"The request body failed validation.","code":"validation_failed",
//!  "request_id":"…",
//!  "errors":[{"field":"address.zip","rule":"length","message":"Must have between 5 and 10 characters or items."},
//!            {"field":"items[2].qty","rule":"range","message":"Must be between 1 and 99."}]}
//! ```
//!
//! The submitted value is never included: `validator` stores it in each error's
//! `params["value"]`, and messages are built from the rule's own parameters only. Every
//! refusal emits one `input_validation_fail` security event with the rule and field names.
//!
//! # Field names: JSON paths, not Rust names
//!
//! `validator` 0.21 reports Rust identifiers and ignores serde attributes. This crate learns
//! each struct's wire names from its own `Deserialize` implementation and
//! maps validator's names through serde's `rename_all` rules, so `#[serde(rename_all =
//! "camelCase")]` gives `homeAddress.zipCode`. A free-form field rename
//! (`#[serde(rename = "postcode")] zip`) cannot be recovered from serde at run time; name the
//! Rust field like its JSON key (or use `rename_all`) when error paths matter. Errors found
//! while deserializing (missing, unknown or mistyped fields) are located by the guard itself
//! and always use JSON names.
//!
//! # Unknown fields
//!
//! Put `#[serde(deny_unknown_fields)]` on the DTO: an unknown key is then a 422 with rule
//! `unknown_field`. The guard still walks unknown fields' values, so they obey every limit.
//!
//! # DTOs and secrets
//!
//! Accept a request DTO that holds only what the client may set, and return a response DTO
//! that holds only what it may see — never your database row. Keep secrets in
//! [`secrecy::SecretString`](https://docs.rs/secrecy) so they cannot be logged or serialized
//! by accident; [`RedactFieldsLayer`](redact::RedactFieldsLayer) is the safety net, not the design:
//!
//! ```
//! use secrecy::{ExposeSecret, SecretString};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct SignupRequest { email: String, password: SecretString } // Debug prints [REDACTED]
//!
//! #[derive(Serialize)]
//! struct UserResponse { id: u64, email: String }                  // no hash, no role flags
//!
//! let req: SignupRequest = serde_json::from_str(r#"{"email":"a@b.c","password":"pw"}"#).unwrap();
//! assert!(!format!("{:?}", req.password).contains("pw"));
//! let _hash_input = req.password.expose_secret();
//! let out = UserResponse { id: 1, email: req.email };
//! assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"id":1,"email":"a@b.c"}"#);
//! ```

mod guard;
mod json;
#[cfg(feature = "validate")]
mod names;
pub mod redact;
pub mod sanitize;
pub mod scrub;
#[cfg(feature = "validate")]
mod valid;

pub use guard::JsonLimits;
pub use json::{GuardedJson, JsonGuard, JsonGuardBuilder, JsonGuardConfig, JsonGuardLayer};
#[cfg(feature = "validate")]
pub use valid::{HasValidate, Valid, ValidWith, ValidationArgs};
