//! `Valid<…>` extractors built on the `validator` crate.

use std::borrow::Cow;
use std::ops::DerefMut;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use validator::{Validate, ValidateArgs, ValidationError, ValidationErrors, ValidationErrorsKind};

use super::json::{event_parts, extract_json, refuse};
use super::names::Shape;
use super::sanitize::{Sanitize, Sanitized};
use crate::rejection::{Rejection, RejectionKind};

/// An extractor whose output is validated with [`validator::Validate`] before the handler
/// runs.
///
/// Works with `Json<T>` (deserialized through the [JSON guard](super::JsonGuardLayer) in one pass),
/// `Query<T>`, `Form<T>`, `Path<T>`, any extractor that implements [`HasValidate`], and
/// `Sanitized<E>` of those (cleaned with [`Sanitize`] first, then validated:
/// `Valid<Sanitized<Json<T>>>`).
/// A failure is a 422 problem+json listing each failing field by its JSON path (serde
/// `rename_all` honoured, `address.zip`, `items[2].qty`), the rule and a message, never the
/// submitted value; it emits one `input_validation_fail` security event naming the fields.
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use axum_shield::validate::Valid;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// #[serde(rename_all = "camelCase")]
/// struct NewUser {
///     #[validate(email)]
///     email: String,
///     #[validate(length(min = 1, max = 64))]
///     display_name: String,
/// }
///
/// async fn create(Valid(Json(user)): Valid<Json<NewUser>>) -> String {
///     user.email
/// }
/// let app: Router = Router::new().route("/users", post(create));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Valid<E>(pub E);

/// Like [`Valid`], validating with arguments (validator's `ValidateArgs`, for structs with
/// `#[validate(context = …)]`) that the router state provides through [`ValidationArgs`].
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use axum_shield::validate::{ValidWith, ValidationArgs};
/// use serde::Deserialize;
/// use validator::{Validate, ValidationError};
///
/// #[derive(Clone)]
/// struct AppState { max_items: usize }
///
/// struct Limits { max_items: usize }
///
/// fn not_too_many(items: &Vec<String>, limits: &Limits) -> Result<(), ValidationError> {
///     if items.len() > limits.max_items { Err(ValidationError::new("too_many")) } else { Ok(()) }
/// }
///
/// #[derive(Deserialize, Validate)]
/// #[validate(context = Limits)]
/// struct Order {
///     #[validate(custom(function = "not_too_many", use_context))]
///     items: Vec<String>,
/// }
///
/// impl<'a> ValidationArgs<'a, Order> for AppState {
///     fn args(&'a self) -> &'a Limits {
///         // A real app would keep `Limits` in the state; leaking here keeps the example short.
///         Box::leak(Box::new(Limits { max_items: self.max_items }))
///     }
/// }
///
/// async fn order(ValidWith(Json(order)): ValidWith<Json<Order>>) -> String {
///     order.items.len().to_string()
/// }
/// let app: Router = Router::new()
///     .route("/orders", post(order))
///     .with_state(AppState { max_items: 10 });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidWith<E>(pub E);

/// Provides the arguments for validating `T` with [`ValidWith`]; implement it for your router
/// state.
pub trait ValidationArgs<'a, T: ValidateArgs<'a>> {
    /// The arguments passed to `T::validate_with_args`.
    fn args(&'a self) -> T::Args;
}

/// Gives [`Valid`] access to the value an extractor produced. Implement it for your own
/// extractors (whose `FromRequest` rejection converts into a [`Rejection`] response).
///
/// ```
/// use axum::extract::{FromRequest, Request};
/// use axum_shield::{validate::HasValidate, Rejection, RejectionKind};
/// use validator::Validate;
///
/// #[derive(Validate)]
/// struct Note { #[validate(length(max = 280))] text: String }
///
/// /// Reads the body as plain text.
/// struct TextNote(Note);
///
/// impl<S: Send + Sync> FromRequest<S> for TextNote {
///     type Rejection = Rejection;
///     async fn from_request(req: Request, state: &S) -> Result<Self, Rejection> {
///         let text = String::from_request(req, state)
///             .await
///             .map_err(|_| Rejection::new(RejectionKind::MalformedBody))?;
///         Ok(TextNote(Note { text }))
///     }
/// }
///
/// impl HasValidate for TextNote {
///     type Validate = Note;
///     fn get_validate(&self) -> &Note { &self.0 }
/// }
/// // Now `Valid<TextNote>` is an extractor.
/// ```
pub trait HasValidate {
    /// The validated type.
    type Validate;
    /// The value to validate.
    fn get_validate(&self) -> &Self::Validate;
}

/// How [`Valid`] and [`ValidWith`] dispatch to the extractor they wrap: the trait and its
/// marker types are sealed (public, so that the public `FromRequest` implementations can name
/// them, but in this private module, so that users can neither name nor implement them).
/// Users extend `Valid` through [`HasValidate`].
mod dispatch {
    use std::future::Future;

    use axum::extract::Request;
    use axum::response::Response;
    use http::request::Parts;

    use super::Shape;

    /// How [`Valid`](super::Valid) and [`ValidWith`](super::ValidWith) extract a value:
    /// implemented for `Json`, `Query`, `Form`, `Path`, `Sanitized<…>` of those, and every
    /// extractor implementing [`HasValidate`](super::HasValidate).
    pub trait ValidSource<S, M>: Sized {
        /// The type validated.
        type Target;

        /// Extracts the value, keeping the request parts needed to report a failure.
        fn extract(
            req: Request,
            state: &S,
        ) -> impl Future<Output = Result<(Self, Parts), Response>> + Send;

        /// The value to validate.
        fn target(&self) -> &Self::Target;

        /// The wire names of the target's fields, for error paths.
        fn shape() -> Shape {
            Shape::default()
        }
    }

    /// Marker for [`Valid`](super::Valid)'s and [`ValidWith`](super::ValidWith)'s
    /// `FromRequest` implementations.
    #[derive(Debug, Clone, Copy)]
    pub enum ViaValid {}

    /// Marker for extractors that implement [`HasValidate`](super::HasValidate).
    #[derive(Debug, Clone, Copy)]
    pub enum ViaHasValidate {}

    /// Marker for the extractors this crate knows (`Json`, `Query`, `Form`, `Path`).
    #[derive(Debug, Clone, Copy)]
    pub enum ViaBuiltin {}

    /// Marker for `Valid<Sanitized<E>>`: extract with `E`, clean, then validate.
    #[derive(Debug, Clone, Copy)]
    pub enum ViaSanitized {}
}

use dispatch::{ValidSource, ViaBuiltin, ViaHasValidate, ViaSanitized, ViaValid};

impl<S, T> ValidSource<S, ViaBuiltin> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Target = T;

    async fn extract(req: Request, _state: &S) -> Result<(Self, Parts), Response> {
        extract_json(req)
            .await
            .map(|(value, parts)| (Json(value), parts))
            .map_err(IntoResponse::into_response)
    }

    fn target(&self) -> &T {
        &self.0
    }

    fn shape() -> Shape {
        Shape::of::<T>()
    }
}

impl<S, T> ValidSource<S, ViaBuiltin> for Form<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Target = T;

    async fn extract(req: Request, state: &S) -> Result<(Self, Parts), Response> {
        let parts = event_parts(req.method(), req.uri(), req.extensions());
        match Form::<T>::from_request(req, state).await {
            Ok(form) => Ok((form, parts)),
            Err(rejection) => {
                let (kind, reason, detail) = match rejection.status().as_u16() {
                    413 => (RejectionKind::PayloadTooLarge, "payload_too_large", None),
                    415 => (
                        RejectionKind::UnsupportedMediaType,
                        "unsupported_media_type",
                        Some(
                            "The request body must be a form (application/x-www-form-urlencoded).",
                        ),
                    ),
                    422 => (
                        RejectionKind::ValidationFailed,
                        "form_shape",
                        Some("The form does not match the expected fields."),
                    ),
                    _ => (RejectionKind::MalformedBody, "malformed_form", None),
                };
                let mut rejection = Rejection::new(kind);
                if let Some(detail) = detail {
                    rejection = rejection.with_detail(detail);
                }
                Err(refuse(&parts, rejection, reason, "").into_response())
            }
        }
    }

    fn target(&self) -> &T {
        &self.0
    }

    fn shape() -> Shape {
        Shape::of::<T>()
    }
}

impl<S, T> ValidSource<S, ViaBuiltin> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Target = T;

    async fn extract(req: Request, state: &S) -> Result<(Self, Parts), Response> {
        let (mut parts, _body) = req.into_parts();
        match Query::<T>::from_request_parts(&mut parts, state).await {
            Ok(query) => Ok((query, parts)),
            Err(_) => Err(refuse(
                &parts,
                Rejection::new(RejectionKind::MalformedBody)
                    .with_detail("The query string does not match the expected parameters."),
                "query_shape",
                "",
            )
            .into_response()),
        }
    }

    fn target(&self) -> &T {
        &self.0
    }

    fn shape() -> Shape {
        Shape::of::<T>()
    }
}

impl<S, T> ValidSource<S, ViaBuiltin> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Target = T;

    async fn extract(req: Request, state: &S) -> Result<(Self, Parts), Response> {
        let (mut parts, _body) = req.into_parts();
        match Path::<T>::from_request_parts(&mut parts, state).await {
            Ok(path) => Ok((path, parts)),
            Err(rejection) => {
                let kind = if rejection.status().is_server_error() {
                    RejectionKind::Misconfigured
                } else {
                    RejectionKind::MalformedBody
                };
                Err(refuse(
                    &parts,
                    Rejection::new(kind)
                        .with_detail("The path parameters do not match the expected shape."),
                    "path_shape",
                    "",
                )
                .into_response())
            }
        }
    }

    fn target(&self) -> &T {
        &self.0
    }

    fn shape() -> Shape {
        Shape::of::<T>()
    }
}

impl<S, M, E, T> ValidSource<S, (ViaSanitized, M)> for Sanitized<E>
where
    S: Send + Sync,
    E: ValidSource<S, M, Target = T> + DerefMut<Target = T> + Send,
    T: Sanitize,
{
    type Target = T;

    async fn extract(req: Request, state: &S) -> Result<(Self, Parts), Response> {
        let (mut value, parts) = E::extract(req, state).await?;
        value.sanitize();
        Ok((Sanitized(value), parts))
    }

    fn target(&self) -> &T {
        &self.0
    }

    fn shape() -> Shape {
        E::shape()
    }
}

impl<S, E> ValidSource<S, ViaHasValidate> for E
where
    S: Send + Sync,
    E: HasValidate + FromRequest<S> + Send,
    E::Rejection: IntoResponse,
{
    type Target = E::Validate;

    async fn extract(req: Request, state: &S) -> Result<(Self, Parts), Response> {
        let parts = event_parts(req.method(), req.uri(), req.extensions());
        E::from_request(req, state)
            .await
            .map(|value| (value, parts))
            .map_err(IntoResponse::into_response)
    }

    fn target(&self) -> &E::Validate {
        self.get_validate()
    }
}

impl<S, E, M> FromRequest<S, (ViaValid, M)> for Valid<E>
where
    S: Send + Sync,
    E: ValidSource<S, M> + Send,
    E::Target: Validate,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (value, parts) = E::extract(req, state).await?;
        match value.target().validate() {
            Ok(()) => Ok(Self(value)),
            Err(errors) => Err(validation_rejection(&parts, &errors, &E::shape()).into_response()),
        }
    }
}

impl<S, E, M> FromRequest<S, (ViaValid, M)> for ValidWith<E>
where
    S: Send + Sync + for<'a> ValidationArgs<'a, E::Target>,
    E: ValidSource<S, M> + Send,
    E::Target: for<'a> ValidateArgs<'a>,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (value, parts) = E::extract(req, state).await?;
        let result = value.target().validate_with_args(state.args());
        match result {
            Ok(()) => Ok(Self(value)),
            Err(errors) => Err(validation_rejection(&parts, &errors, &E::shape()).into_response()),
        }
    }
}

/// One failing field, as listed in the `errors` member of a 422 problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct FieldError {
    /// The JSON path of the field (`address.zip`, `items[2].qty`); empty for the whole body.
    field: String,
    /// The rule that failed (validator's code: `email`, `length`, `range`, …).
    rule: String,
    /// A human-readable message, without the submitted value.
    message: String,
}

/// Flattens validator's errors into [`FieldError`]s with JSON paths, dropping every `value`
/// parameter. `shape` maps Rust field names to wire names ([`Shape::of`]).
fn field_errors(errors: &ValidationErrors, shape: &Shape) -> Vec<FieldError> {
    let mut out = Vec::new();
    collect(errors, Some(shape), "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field).then(a.rule.cmp(&b.rule)));
    out
}

fn collect(
    errors: &ValidationErrors,
    shape: Option<&Shape>,
    prefix: &str,
    out: &mut Vec<FieldError>,
) {
    for (name, kind) in errors.errors() {
        let (path, child) = if name == "__all__" {
            (prefix.to_owned(), shape)
        } else {
            let wire: Cow<'_, str> = match shape {
                Some(shape) => shape.wire_name(name),
                None => Cow::Borrowed(name.strip_prefix("r#").unwrap_or(name)),
            };
            let child = shape.and_then(|s| s.child(&wire));
            let path = if prefix.is_empty() {
                wire.into_owned()
            } else {
                format!("{prefix}.{wire}")
            };
            (path, child)
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for error in list {
                    out.push(FieldError {
                        field: path.clone(),
                        rule: error.code.to_string(),
                        message: message(error),
                    });
                }
            }
            ValidationErrorsKind::Struct(nested) => collect(nested, child, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, nested) in items {
                    collect(nested, child, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

/// A message for `error` that never includes the submitted value (validator stores it in
/// `params["value"]`; only the rule's own parameters are used).
fn message(error: &ValidationError) -> String {
    if let Some(message) = &error.message {
        return message.to_string();
    }
    let param = |name: &str| -> Option<String> {
        match error.params.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    match error.code.as_ref() {
        "email" => "Must be a valid email address.".to_owned(),
        "url" => "Must be a valid URL.".to_owned(),
        "length" => match (param("equal"), param("min"), param("max")) {
            (Some(n), _, _) => format!("Must have exactly {n} characters or items."),
            (None, Some(min), Some(max)) => {
                format!("Must have between {min} and {max} characters or items.")
            }
            (None, Some(min), None) => format!("Must have at least {min} characters or items."),
            (None, None, Some(max)) => format!("Must have at most {max} characters or items."),
            _ => "Has the wrong length.".to_owned(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("Must be between {min} and {max}."),
            (Some(min), None) => format!("Must be at least {min}."),
            (None, Some(max)) => format!("Must be at most {max}."),
            _ => "Is out of range.".to_owned(),
        },
        "exclusive_range" => "Is out of range.".to_owned(),
        "must_match" => match param("other") {
            Some(other) => format!("Must match `{other}`."),
            None => "Must match the other field.".to_owned(),
        },
        "contains" => "Does not contain the required text.".to_owned(),
        "does_not_contain" => "Contains text that is not allowed.".to_owned(),
        "regex" => "Has an invalid format.".to_owned(),
        "credit_card" => "Must be a valid card number.".to_owned(),
        "non_control_character" => "Must not contain control characters.".to_owned(),
        "required" => "This field is required.".to_owned(),
        "ip" | "ipv4" | "ipv6" => "Must be a valid IP address.".to_owned(),
        _ => "Is invalid.".to_owned(),
    }
}

/// The 422 rejection for `errors`, after emitting the security event (field names only).
pub(crate) fn validation_rejection(
    parts: &Parts,
    errors: &ValidationErrors,
    shape: &Shape,
) -> Rejection {
    let list = field_errors(errors, shape);
    let mut fields: Vec<&str> = list.iter().map(|e| e.field.as_str()).collect();
    fields.dedup();
    let fields = fields.join(",");
    let body = serde_json::to_value(&list).unwrap_or_else(|_| json!([]));
    refuse(
        parts,
        Rejection::new(RejectionKind::ValidationFailed).with_extension("errors", body),
        "validation_failed",
        &fields,
    )
}
