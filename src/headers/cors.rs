//! A typed CORS configuration, checked when the Shield is built into tower-http's `CorsLayer`.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    List(Vec<String>),
}

/// Which cross-origin browsers may call the API: the CORS settings of
/// [`ShieldBuilder::cors`](crate::shield::ShieldBuilder::cors).
///
/// tower-http's `CorsLayer` cannot be inspected, panics on `*` with credentials only when
/// first used, and happily reflects **any** origin with credentials (`mirror_request`).
/// This type offers only safe shapes: an exact list of origins, or any origin *without*
/// credentials; [`ShieldBuilder::build`](crate::shield::ShieldBuilder::build) refuses the
/// rest with a [`ConfigError`] (Fetch standard §3.2.5: `*` cannot be used with credentials;
/// OWASP HTML5 Security Cheat Sheet, CORS: never allow the `null` origin, never reflect
/// origins).
///
/// The Shield places CORS outside your authentication layers so preflight `OPTIONS` requests
/// are answered without credentials (Fetch §3.2.2: preflights never carry them).
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use axum_shield::{headers::CorsPolicy, Shield};
///
/// let cors = CorsPolicy::allow_origins(["https://app.example.com"])
///     .allow_methods([Method::GET, Method::POST])
///     .allow_headers(["authorization", "content-type"])
///     .allow_credentials(true)
///     .max_age(Duration::from_secs(600));
/// let shield = Shield::api().cors(cors).build()?;
///
/// // Credentials with any origin are refused when the stack is built:
/// let any = CorsPolicy::any_origin().allow_credentials(true);
/// assert!(Shield::api().cors(any).build().is_err());
/// # let _ = shield;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Origins,
    methods: Vec<Method>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Duration,
}

fn cors_error(problem: String, fix: &'static str) -> ConfigError {
    ConfigError::new("cors", problem, fix)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_origin(origin: &str) -> Result<HeaderValue, ConfigError> {
    let bad = || {
        cors_error(
            format!("{origin:?} is not an exact origin"),
            "write scheme://host[:port] as the browser sends it, e.g. \"https://app.example.com\" (no path, no trailing slash, no wildcard, never \"null\")",
        )
    };
    if origin == "*" || origin.eq_ignore_ascii_case("null") || origin.contains('*') {
        return Err(bad());
    }
    let uri: Uri = origin.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    let scheme = uri.scheme_str().ok_or_else(bad)?;
    let exact = uri
        .path_and_query()
        .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/")
        && !origin.ends_with('/')
        && !authority.as_str().contains('@')
        && !authority.host().is_empty();
    if !exact {
        return Err(bad());
    }
    if scheme == "http" && !is_loopback(authority.host()) {
        return Err(cors_error(
            format!("{origin:?} is a plain-HTTP origin"),
            "allow only https:// origins (http:// is accepted for localhost during development): a network attacker controls a plain-HTTP origin",
        ));
    }
    if scheme != "https" && scheme != "http" {
        return Err(bad());
    }
    HeaderValue::from_str(&origin.to_ascii_lowercase()).map_err(|_| bad())
}

fn parse_names<I, T>(names: I, setting: &'static str) -> Result<Vec<HeaderName>, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    names
        .into_iter()
        .map(|name| {
            let name = name.as_ref();
            if name == "*" {
                return Err(cors_error(
                    format!("{setting}: the wildcard \"*\" is not accepted"),
                    "list the header names the API really uses (a wildcard never covers Authorization anyway)",
                ));
            }
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                cors_error(
                    format!("{setting}: {name:?} is not a header name"),
                    "use header names such as \"content-type\"",
                )
            })
        })
        .collect()
}

fn strings<I, T>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

impl CorsPolicy {
    /// Allows exactly these origins (`https://app.example.com`, compared as the browser sends
    /// the `Origin` header). The Shield's `build` refuses an empty list, `*`, `null`, a
    /// wildcard subdomain, a path or trailing slash, or a plain-HTTP origin other than
    /// localhost.
    pub fn allow_origins<I, T>(origins: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self::with_origins(Origins::List(strings(origins)))
    }

    /// Allows any origin (`Access-Control-Allow-Origin: *`): for public, unauthenticated
    /// data only. The Shield's `build` refuses it with credentials.
    pub fn any_origin() -> Self {
        Self::with_origins(Origins::Any)
    }

    fn with_origins(origins: Origins) -> Self {
        Self {
            origins,
            methods: vec![
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ],
            headers: strings(["authorization", "content-type"]),
            expose: Vec::new(),
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }

    /// Sets the allowed methods (default GET, HEAD, POST, PUT, PATCH, DELETE).
    pub fn allow_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Sets the request headers a cross-origin caller may send (default `authorization`,
    /// `content-type`). The Shield's `build` refuses `*` or an invalid name.
    pub fn allow_headers<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.headers = strings(names);
        self
    }

    /// Sets the response headers a cross-origin caller may read (default none beyond the
    /// CORS-safelisted ones; add e.g. `x-request-id`, `retry-after`, `ratelimit`). The
    /// Shield's `build` refuses `*` or an invalid name.
    pub fn expose_headers<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.expose = strings(names);
        self
    }

    /// Lets browsers send cookies / HTTP auth cross-origin (`Access-Control-Allow-Credentials`;
    /// default off).
    pub fn allow_credentials(mut self, enabled: bool) -> Self {
        self.credentials = enabled;
        self
    }

    /// How long browsers may cache a preflight answer (default 10 minutes; browsers cap it,
    /// Chromium at 2 hours).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Checks the settings and builds tower-http's layer: a [`ConfigError`] for a bad
    /// origin, header name, credentials with any origin, or no allowed method.
    pub(crate) fn build(&self) -> Result<CorsLayer, ConfigError> {
        let origin = match &self.origins {
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => {
                let list = list
                    .iter()
                    .map(|o| parse_origin(o))
                    .collect::<Result<Vec<_>, _>>()?;
                if list.is_empty() {
                    return Err(cors_error(
                        "no origins given".into(),
                        "list at least one origin, or leave CORS off (same-origin only)",
                    ));
                }
                AllowOrigin::list(list)
            }
        };
        let headers = parse_names(&self.headers, "allow_headers")?;
        let expose = parse_names(&self.expose, "expose_headers")?;
        if self.credentials && self.origins == Origins::Any {
            return Err(cors_error(
                "credentials are allowed for any origin".into(),
                "list the exact origins with CorsPolicy::allow_origins([...]) or turn credentials off: any site could otherwise act as the signed-in user",
            ));
        }
        if self.methods.is_empty() {
            return Err(cors_error(
                "no methods are allowed".into(),
                "allow at least one method, e.g. GET",
            ));
        }
        let mut layer = CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(self.methods.clone())
            .allow_headers(headers)
            .allow_credentials(self.credentials)
            .max_age(self.max_age);
        if !expose.is_empty() {
            layer = layer.expose_headers(expose);
        }
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use http::{Request, Response, StatusCode};
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;

    #[test]
    fn credentials_with_wildcard_origin_is_rejected() {
        let err = CorsPolicy::any_origin()
            .allow_credentials(true)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "cors");
        assert!(CorsPolicy::any_origin().build().is_ok());
    }

    #[test]
    fn null_wildcard_and_inexact_origins_are_rejected() {
        for origin in [
            "*",
            "null",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "http://app.example.com",
            "ftp://app.example.com",
            "app.example.com",
            "https://u@app.example.com",
            "https://app.example.com\r\nx: y",
        ] {
            assert!(
                CorsPolicy::allow_origins([origin]).build().is_err(),
                "{origin:?}"
            );
        }
        assert!(CorsPolicy::allow_origins(Vec::<String>::new())
            .build()
            .is_err());
        assert!(
            CorsPolicy::allow_origins(["http://localhost:5173", "http://127.0.0.1:8080"])
                .build()
                .is_ok()
        );
        assert!(CorsPolicy::any_origin()
            .allow_headers(["*"])
            .build()
            .is_err());
    }

    #[tokio::test]
    async fn preflight_from_listed_origin_is_answered_and_others_get_no_grant() {
        let layer = CorsPolicy::allow_origins(["https://app.example.com"])
            .allow_credentials(true)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
        let preflight = |origin: &'static str| {
            Request::options("/orders")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .body(Body::empty())
                .unwrap()
        };
        let res = svc
            .clone()
            .oneshot(preflight("https://app.example.com"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(res.headers()["access-control-allow-credentials"], "true");
        let res = svc
            .oneshot(preflight("https://evil.example"))
            .await
            .unwrap();
        assert!(!res.headers().contains_key("access-control-allow-origin"));
    }
}
