//! Redirecting plain HTTP to the canonical HTTPS origin.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use tower_layer::Layer;
use tower_service::Service;

use super::https::is_https;
use crate::future::ResponseFuture;
use crate::ConfigError;

/// The canonical HTTPS origin that plain-HTTP requests are redirected to (see
/// [`ShieldBuilder::https_redirect`](crate::shield::ShieldBuilder::https_redirect)).
///
/// The target host is the one configured, **never** the request's `Host`, `:authority` or
/// `X-Forwarded-Host`: those are client-controlled, and redirecting to them is an open
/// redirect and a cache-poisoning vector (OWASP Unvalidated Redirects Cheat Sheet). 308
/// (RFC 9110 §15.4.9) keeps the method and body, unlike 301/302.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectOrigin {
    origin: Bytes,
}

fn origin_error(origin: &str) -> ConfigError {
    ConfigError::new(
        "https_redirect",
        format!("{origin:?} is not an https origin"),
        "write the canonical origin such as \"https://api.example.com\" or \"https://api.example.com:8443\" (no path, query or user info)",
    )
}

impl RedirectOrigin {
    /// `origin` (`https://host[:port]`, an optional trailing `/`), or a [`ConfigError`] if it
    /// is not an `https://` origin with a host, or has user info, a path, a query or a
    /// fragment.
    pub(crate) fn parse(origin: &str) -> Result<Self, ConfigError> {
        let trimmed = origin.strip_suffix('/').unwrap_or(origin);
        let uri: Uri = trimmed.parse().map_err(|_| origin_error(origin))?;
        let authority = uri.authority().ok_or_else(|| origin_error(origin))?;
        let valid = uri.scheme_str() == Some("https")
            && !authority.host().is_empty()
            && !authority.as_str().contains('@')
            && uri
                .path_and_query()
                .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/")
            && !trimmed.contains('#');
        if !valid {
            return Err(origin_error(origin));
        }
        Ok(Self {
            origin: Bytes::from(format!("https://{authority}")),
        })
    }

    /// The canonical origin, without trailing slash.
    #[cfg(test)]
    fn origin(&self) -> &str {
        std::str::from_utf8(&self.origin).unwrap_or_default()
    }

    /// The layer redirecting to this origin.
    pub(crate) fn layer(self) -> HttpsRedirectLayer {
        HttpsRedirectLayer {
            origin: Some(Arc::new(self)),
        }
    }

    fn location(&self, uri: &Uri) -> HeaderValue {
        let path = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .filter(|pq| pq.starts_with('/'))
            .unwrap_or("/");
        let mut buf = BytesMut::with_capacity(self.origin.len() + path.len());
        buf.put_slice(&self.origin);
        buf.put_slice(path.as_bytes());
        HeaderValue::from_maybe_shared(buf.freeze()).unwrap_or_else(|_| {
            let mut root = BytesMut::from(&self.origin[..]);
            root.put_u8(b'/');
            HeaderValue::from_maybe_shared(root.freeze())
                .unwrap_or_else(|_| HeaderValue::from_static("/"))
        })
    }
}

/// Redirects requests that did not arrive over HTTPS ([`is_https`]) to a [`RedirectOrigin`]
/// with `308 Permanent Redirect`, keeping path and query. Without an origin it passes every
/// request on (redirects switched off), so the stack's types do not change with the setting.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpsRedirectLayer {
    origin: Option<Arc<RedirectOrigin>>,
}

impl<S> Layer<S> for HttpsRedirectLayer {
    type Service = HttpsRedirect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpsRedirect {
            inner,
            origin: self.origin.clone(),
        }
    }
}

/// The service of [`HttpsRedirectLayer`]: refuses with the redirect or runs the inner
/// service, through the crate's shared [`ResponseFuture`]. Public only because it is part
/// of the [`Shield`](crate::Shield)'s service type; it cannot be named outside the crate.
#[derive(Debug, Clone)]
pub struct HttpsRedirect<S> {
    inner: S,
    origin: Option<Arc<RedirectOrigin>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpsRedirect<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match &self.origin {
            Some(origin) if !is_https(req.extensions()) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response
                    .headers_mut()
                    .insert(LOCATION, origin.location(req.uri()));
                ResponseFuture::refused(response)
            }
            _ => ResponseFuture::run(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::{service_fn, ServiceExt};

    use super::super::TlsConnection;
    use super::*;
    use crate::client_ip::ForwardedProto;

    async fn send(req: Request<Body>) -> Response<Body> {
        let layer = RedirectOrigin::parse("https://api.example.com")
            .unwrap()
            .layer();
        layer
            .layer(service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::from("inner")))
            }))
            .oneshot(req)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn plain_http_is_redirected_with_path_and_query() {
        let req = Request::post("/orders/7?expand=items&x=%2F")
            .body(Body::empty())
            .unwrap();
        let res = send(req).await;
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            res.headers()["location"],
            "https://api.example.com/orders/7?expand=items&x=%2F"
        );
    }

    #[tokio::test]
    async fn redirect_refuses_spoofed_host() {
        let req = Request::get("/login?next=1")
            .header("host", "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "host=evil.example")
            .body(Body::empty())
            .unwrap();
        let res = send(req).await;
        assert_eq!(
            res.headers()["location"],
            "https://api.example.com/login?next=1"
        );
        // An absolute-form request line names a host too; it is ignored as well.
        let req = Request::get("http://evil.example//evil.example/x")
            .body(Body::empty())
            .unwrap();
        let res = send(req).await;
        assert_eq!(
            res.headers()["location"],
            "https://api.example.com//evil.example/x"
        );
    }

    #[tokio::test]
    async fn requests_already_on_https_pass() {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut().insert(TlsConnection);
        assert_eq!(send(req).await.status(), StatusCode::OK);
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ForwardedProto { https: true });
        assert_eq!(send(req).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn untrusted_x_forwarded_proto_is_still_redirected() {
        // Without a trusted proxy, Shield puts no ForwardedProto in the extensions.
        let req = Request::get("/")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(req).await.status(), StatusCode::PERMANENT_REDIRECT);
    }

    #[test]
    fn origins_are_validated() {
        assert_eq!(
            RedirectOrigin::parse("https://api.example.com:8443/")
                .unwrap()
                .origin(),
            "https://api.example.com:8443"
        );
        for bad in [
            "http://api.example.com",
            "https://",
            "api.example.com",
            "https://user@api.example.com",
            "https://api.example.com/v1",
            "https://api.example.com/?q",
            "https://api.example.com#x",
            "https://api.example.com\r\nx: y",
        ] {
            assert!(RedirectOrigin::parse(bad).is_err(), "{bad:?}");
        }
    }
}
