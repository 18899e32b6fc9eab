use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{Entry as MapEntry, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::csp::{NonceGenerator, Template};
use super::future::ResponseFuture;
use super::https::is_https;
use super::{HeaderSet, OnExisting, Value};
use crate::ConfigError;

/// Adds security headers to every response and strips leaking ones; see the
/// [module docs](super) for the presets.
///
/// Start from [`SecurityHeadersLayer::api`], [`web`](SecurityHeadersLayer::web),
/// [`none`](SecurityHeadersLayer::none) or
/// [`from_config`](SecurityHeadersLayer::from_config) and finish with
/// [`build`](super::SecurityHeadersBuilder::build). [`Shield`](crate::Shield) includes one
/// (change it with
/// [`ShieldBuilder::security_headers`](crate::shield::ShieldBuilder::security_headers)).
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_shield::headers::SecurityHeadersLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(SecurityHeadersLayer::web().build()?);
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SecurityHeadersLayer {
    prepared: Arc<Prepared>,
}

/// Everything the service needs per request, computed once.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The static headers as a ready map: cloning it copies two small arrays, where inserting
    /// the same headers one by one would hash and probe each.
    template: HeaderMap,
    /// The handler-set policy of each header in `template`.
    policies: Vec<(HeaderName, OnExisting)>,
    nonced: Vec<(HeaderName, Template, OnExisting)>,
    nonce: Option<NonceGenerator>,
    hsts: Option<(HeaderValue, OnExisting)>,
    /// Headers to remove, bucketed by name length: a response's few names are checked with
    /// one length lookup and a handful of byte compares, instead of ~80 hash lookups.
    remove_by_len: Vec<Vec<HeaderName>>,
}

impl SecurityHeadersLayer {
    /// Prepares the checked `headers`.
    pub(super) fn new(headers: HeaderSet) -> Result<Self, ConfigError> {
        let mut statics = Vec::new();
        let mut nonced = Vec::new();
        for entry in headers.entries {
            match entry.value {
                Value::Static(value) => statics.push((entry.name, value, entry.on_existing)),
                Value::Csp(policy) => {
                    let template = policy.template()?;
                    if template.has_nonce() {
                        nonced.push((entry.name, template, entry.on_existing));
                    } else {
                        // Copied into every response: kept as a `'static` text.
                        let value = crate::interned::header_value(template.to_static()?);
                        statics.push((entry.name, value, entry.on_existing));
                    }
                }
            }
        }
        let nonce = if nonced.is_empty() {
            None
        } else {
            Some(NonceGenerator::new()?)
        };
        let mut remove_by_len: Vec<Vec<HeaderName>> = Vec::new();
        for name in headers.remove {
            let len = name.as_str().len();
            if remove_by_len.len() <= len {
                remove_by_len.resize(len + 1, Vec::new());
            }
            if !remove_by_len[len].contains(&name) {
                remove_by_len[len].push(name);
            }
        }
        let mut template = HeaderMap::with_capacity(statics.len() + nonced.len() + 4);
        let mut policies = Vec::with_capacity(statics.len());
        for (name, value, on_existing) in statics {
            template.insert(name.clone(), value);
            policies.push((name, on_existing));
        }
        Ok(Self {
            prepared: Arc::new(Prepared {
                template,
                policies,
                nonced,
                nonce,
                hsts: headers.hsts,
                remove_by_len,
            }),
        })
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            prepared: self.prepared.clone(),
        }
    }
}

/// The service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    prepared: Arc<Prepared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let https = self.prepared.hsts.is_some() && is_https(req.extensions());
        let nonce = self.prepared.nonce.as_ref().map(|generator| {
            let nonce = generator.generate();
            req.extensions_mut().insert(nonce.clone());
            nonce
        });
        ResponseFuture::new(self.inner.call(req), self.prepared.clone(), https, nonce)
    }
}

#[inline]
fn apply(map: &mut HeaderMap, name: &HeaderName, value: HeaderValue, on_existing: OnExisting) {
    match on_existing {
        OnExisting::Override => {
            map.insert(name.clone(), value);
        }
        OnExisting::Keep => {
            if let Ok(MapEntry::Vacant(slot)) = map.try_entry(name.clone()) {
                slot.insert(value);
            }
        }
    }
}

/// What happens to the values of one handler-set header.
#[derive(Clone, Copy)]
enum Fate {
    /// Leaking, or a preset header that overrides the handler: dropped.
    Drop,
    /// A preset header the handler's value wins over: the first value replaces the preset's.
    Replace,
    /// Not a preset header: copied as is.
    Append,
}

impl Prepared {
    fn is_leaking(&self, name: &HeaderName) -> bool {
        self.remove_by_len
            .get(name.as_str().len())
            .is_some_and(|bucket| bucket.iter().any(|n| n == name))
    }

    fn fate(&self, name: &HeaderName) -> Fate {
        if self.is_leaking(name) {
            return Fate::Drop;
        }
        match self.policies.iter().find(|(n, _)| n == name) {
            Some((_, OnExisting::Override)) => Fate::Drop,
            Some((_, OnExisting::Keep)) => Fate::Replace,
            None => Fate::Append,
        }
    }

    /// Replaces `map` by the preset headers merged with the handler's (usually two or three)
    /// headers, following each header's policy and dropping leaking ones.
    fn merge(&self, map: &mut HeaderMap) {
        let handler = std::mem::replace(map, self.template.clone());
        let mut current: Option<(HeaderName, Fate)> = None;
        for (name, value) in handler {
            if let Some(name) = name {
                let fate = self.fate(&name);
                current = Some((name, fate));
                if let Some((name, fate)) = &mut current {
                    match fate {
                        Fate::Drop => {}
                        Fate::Replace => {
                            map.insert(name.clone(), value);
                            *fate = Fate::Append;
                        }
                        Fate::Append => {
                            map.append(name.clone(), value);
                        }
                    }
                }
            } else if let Some((name, Fate::Append)) = &current {
                // Further values of the same header (e.g. several `Set-Cookie`).
                map.append(name.clone(), value);
            }
        }
    }
}

impl Prepared {
    /// Adds the headers to `response`, in place of its leaking and overridden ones.
    pub(super) fn apply_to<B>(
        &self,
        response: &mut Response<B>,
        https: bool,
        nonce: Option<&super::CspNonce>,
    ) {
        let map = response.headers_mut();
        self.merge(map);
        if let Some(nonce) = nonce {
            for (name, template, on_existing) in &self.nonced {
                if let Some(value) = template.fill(nonce.as_str()) {
                    apply(map, name, value, *on_existing);
                }
            }
        }
        if https {
            if let Some((value, on_existing)) = &self.hsts {
                apply(
                    map,
                    &http::header::STRICT_TRANSPORT_SECURITY,
                    value.clone(),
                    *on_existing,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::{service_fn, ServiceExt};

    use super::super::{
        ContentSecurityPolicy, CspNonce, Directive, SecurityHeadersBuilder, Source, TlsConnection,
    };
    use super::*;
    use crate::client_ip::ForwardedProto;

    async fn run(
        headers: SecurityHeadersBuilder,
        req: Request<Body>,
        handler_headers: &'static [(&'static str, &'static str)],
    ) -> Response<Body> {
        let layer = headers.build().unwrap();
        let svc = layer.layer(service_fn(move |req: Request<Body>| async move {
            let mut res = Response::new(Body::from(
                req.extensions()
                    .get::<CspNonce>()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
            ));
            for (name, value) in handler_headers {
                res.headers_mut()
                    .append(*name, HeaderValue::from_static(value));
            }
            Ok::<_, Infallible>(res)
        }));
        svc.oneshot(req).await.unwrap()
    }

    fn get() -> Request<Body> {
        Request::new(Body::empty())
    }

    #[tokio::test]
    async fn api_preset_headers_are_added() {
        let res = run(SecurityHeadersLayer::api(), get(), &[]).await;
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert!(h["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("camera=()"));
        assert_eq!(h["x-permitted-cross-domain-policies"], "none");
        assert_eq!(h["x-xss-protection"], "0");
    }

    #[tokio::test]
    async fn web_preset_headers_are_added() {
        let res = run(SecurityHeadersLayer::web(), get(), &[]).await;
        let h = res.headers();
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'"));
        assert_eq!(h["origin-agent-cluster"], "?1");
        assert_eq!(h["x-dns-prefetch-control"], "off");
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert!(!h.contains_key("cache-control"));
    }

    #[tokio::test]
    async fn handler_cache_control_and_csp_are_kept_nosniff_is_enforced() {
        let res = run(
            SecurityHeadersLayer::api(),
            get(),
            &[
                ("cache-control", "public, max-age=60"),
                ("content-security-policy", "default-src 'self'"),
                ("x-content-type-options", "sniff-please"),
                ("x-frame-options", "ALLOWALL"),
            ],
        )
        .await;
        let h = res.headers();
        assert_eq!(h["cache-control"], "public, max-age=60");
        assert_eq!(h["content-security-policy"], "default-src 'self'");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h.get_all("x-content-type-options").iter().count(), 1);
    }

    #[tokio::test]
    async fn on_existing_policy_can_be_changed() {
        let headers = SecurityHeadersLayer::api()
            .on_existing("cache-control", OnExisting::Override)
            .on_existing("x-frame-options", OnExisting::Keep);
        let res = run(
            headers,
            get(),
            &[
                ("cache-control", "public"),
                ("x-frame-options", "SAMEORIGIN"),
            ],
        )
        .await;
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["x-frame-options"], "SAMEORIGIN");
    }

    #[tokio::test]
    async fn leaking_headers_are_removed() {
        let res = run(
            SecurityHeadersLayer::api(),
            get(),
            &[
                ("server", "nginx/1.2.3"),
                ("x-powered-by", "PHP/5.4"),
                ("x-aspnet-version", "4.0"),
                ("x-runtime", "0.1"),
                ("x-powered-by", "Express"),
                ("content-type", "application/json"),
            ],
        )
        .await;
        let h = res.headers();
        for name in ["server", "x-powered-by", "x-aspnet-version", "x-runtime"] {
            assert!(!h.contains_key(name), "{name} leaked");
        }
        assert_eq!(h["content-type"], "application/json");
    }

    #[tokio::test]
    async fn hsts_is_absent_over_plain_http() {
        let res = run(SecurityHeadersLayer::api(), get(), &[]).await;
        assert!(!res.headers().contains_key("strict-transport-security"));
    }

    #[tokio::test]
    async fn spoofed_absolute_uri_scheme_does_not_trigger_hsts() {
        // `GET https://host/ HTTP/1.1` over plain TCP puts a scheme in the URI.
        let req = Request::get("https://api.example.com/")
            .body(Body::empty())
            .unwrap();
        let res = run(SecurityHeadersLayer::api(), req, &[]).await;
        assert!(!res.headers().contains_key("strict-transport-security"));
    }

    #[tokio::test]
    async fn hsts_is_present_over_tls_and_trusted_proxy_https() {
        let mut req = get();
        req.extensions_mut().insert(TlsConnection);
        let res = run(SecurityHeadersLayer::api(), req, &[]).await;
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        let mut req = get();
        req.extensions_mut().insert(ForwardedProto { https: true });
        let res = run(SecurityHeadersLayer::api(), req, &[]).await;
        assert!(res.headers().contains_key("strict-transport-security"));
        let mut req = get();
        req.extensions_mut().insert(ForwardedProto { https: false });
        let res = run(SecurityHeadersLayer::api(), req, &[]).await;
        assert!(!res.headers().contains_key("strict-transport-security"));
    }

    async fn nonce_response(headers: SecurityHeadersBuilder) -> (String, String) {
        let layer = headers.build().unwrap();
        let svc = layer.layer(service_fn(|req: Request<Body>| async move {
            let nonce = req.extensions().get::<CspNonce>().cloned();
            Ok::<_, Infallible>(Response::new(Body::from(
                nonce.map(|n| n.to_string()).unwrap_or_default(),
            )))
        }));
        let res = svc.oneshot(get()).await.unwrap();
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (csp, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn nonces_differ_per_request_and_match_the_csp_header() {
        let csp = ContentSecurityPolicy::web()
            .directive(Directive::ScriptSrc, [Source::Nonce, Source::StrictDynamic]);
        let headers = SecurityHeadersLayer::web().csp(csp);
        let (csp1, nonce1) = nonce_response(headers.clone()).await;
        let (csp2, nonce2) = nonce_response(headers).await;
        assert_eq!(nonce1.len(), 24);
        assert_ne!(nonce1, nonce2);
        assert!(csp1.contains(&format!("script-src 'nonce-{nonce1}' 'strict-dynamic'")));
        assert!(csp2.contains(&format!("'nonce-{nonce2}'")));
        assert!(!csp2.contains(&nonce1));
    }

    #[tokio::test]
    async fn no_nonce_is_generated_without_a_nonce_policy() {
        let (_, nonce) = nonce_response(SecurityHeadersLayer::api()).await;
        assert!(nonce.is_empty());
    }

    #[tokio::test]
    async fn report_only_policy_is_sent_with_the_same_nonce() {
        let strict = ContentSecurityPolicy::new()
            .directive(Directive::DefaultSrc, [Source::None])
            .directive(Directive::ScriptSrc, [Source::Nonce])
            .report_to("csp");
        let headers = SecurityHeadersLayer::api()
            .reporting_endpoint("csp", "https://r.example/csp")
            .csp_report_only(strict);
        let layer = headers.build().unwrap();
        let svc = layer.layer(service_fn(|_req: Request<Body>| async move {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
        let res = svc.oneshot(get()).await.unwrap();
        let h = res.headers();
        let ro = h["content-security-policy-report-only"].to_str().unwrap();
        assert!(ro.starts_with("default-src 'none'; script-src 'nonce-"));
        assert!(ro.ends_with("; report-to csp"));
        assert_eq!(h["reporting-endpoints"], "csp=\"https://r.example/csp\"");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
}
