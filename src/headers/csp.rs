//! A typed Content-Security-Policy builder (CSP Level 3) and the per-request nonce.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::HeaderValue;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::rejection::Rejection;
use crate::ConfigError;

/// A CSP fetch, document or navigation directive
/// ([CSP Level 3 §6](https://www.w3.org/TR/CSP3/#csp-directives)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Directive {
    /// `default-src`: the fallback for every fetch directive not given.
    DefaultSrc,
    /// `script-src`.
    ScriptSrc,
    /// `script-src-elem`.
    ScriptSrcElem,
    /// `script-src-attr`: inline event handlers (`onclick=`).
    ScriptSrcAttr,
    /// `style-src`.
    StyleSrc,
    /// `style-src-elem`.
    StyleSrcElem,
    /// `style-src-attr`: `style=` attributes.
    StyleSrcAttr,
    /// `img-src`.
    ImgSrc,
    /// `font-src`.
    FontSrc,
    /// `connect-src`: fetch, XHR, WebSocket, EventSource.
    ConnectSrc,
    /// `media-src`.
    MediaSrc,
    /// `object-src`: plugins; always `'none'` in a strict policy.
    ObjectSrc,
    /// `frame-src`.
    FrameSrc,
    /// `child-src`.
    ChildSrc,
    /// `worker-src`.
    WorkerSrc,
    /// `manifest-src`.
    ManifestSrc,
    /// `base-uri`: what `<base href>` may point to (not covered by `default-src`).
    BaseUri,
    /// `form-action`: where forms may submit (not covered by `default-src`).
    FormAction,
    /// `frame-ancestors`: who may frame this response; replaces `X-Frame-Options`.
    FrameAncestors,
}

impl Directive {
    /// The directive name as written in the header.
    pub const fn name(self) -> &'static str {
        match self {
            Self::DefaultSrc => "default-src",
            Self::ScriptSrc => "script-src",
            Self::ScriptSrcElem => "script-src-elem",
            Self::ScriptSrcAttr => "script-src-attr",
            Self::StyleSrc => "style-src",
            Self::StyleSrcElem => "style-src-elem",
            Self::StyleSrcAttr => "style-src-attr",
            Self::ImgSrc => "img-src",
            Self::FontSrc => "font-src",
            Self::ConnectSrc => "connect-src",
            Self::MediaSrc => "media-src",
            Self::ObjectSrc => "object-src",
            Self::FrameSrc => "frame-src",
            Self::ChildSrc => "child-src",
            Self::WorkerSrc => "worker-src",
            Self::ManifestSrc => "manifest-src",
            Self::BaseUri => "base-uri",
            Self::FormAction => "form-action",
            Self::FrameAncestors => "frame-ancestors",
        }
    }
}

/// One source expression of a directive
/// ([CSP Level 3 §2.3.1](https://www.w3.org/TR/CSP3/#framework-directive-source-list)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `'none'`: nothing (must be the only source of its directive).
    None,
    /// `'self'`: the document's own origin.
    SelfOrigin,
    /// `'unsafe-inline'`: inline scripts/styles; defeats most of CSP's XSS protection.
    UnsafeInline,
    /// `'unsafe-eval'`: `eval()` and friends.
    UnsafeEval,
    /// `'wasm-unsafe-eval'`: WebAssembly compilation.
    WasmUnsafeEval,
    /// `'unsafe-hashes'`: hashes also match event handlers.
    UnsafeHashes,
    /// `'strict-dynamic'`: scripts loaded by a nonced script are trusted.
    StrictDynamic,
    /// `'nonce-…'` with the fresh per-request nonce (see [`CspNonce`]).
    Nonce,
    /// `'sha256-…'` / `'sha384-…'` / `'sha512-…'` of an inline script or style; the text is
    /// the algorithm and base64 digest, for example `sha256-abc…=`.
    Hash(String),
    /// A scheme source such as `https:` or `data:`.
    Scheme(String),
    /// A host source such as `https://cdn.example.com` or `*.example.com`.
    Host(String),
}

impl Source {
    fn write(&self, out: &mut Template) -> Result<(), ConfigError> {
        match self {
            Self::None => out.text("'none'"),
            Self::SelfOrigin => out.text("'self'"),
            Self::UnsafeInline => out.text("'unsafe-inline'"),
            Self::UnsafeEval => out.text("'unsafe-eval'"),
            Self::WasmUnsafeEval => out.text("'wasm-unsafe-eval'"),
            Self::UnsafeHashes => out.text("'unsafe-hashes'"),
            Self::StrictDynamic => out.text("'strict-dynamic'"),
            Self::Nonce => {
                out.text("'nonce-");
                out.nonce();
                out.text("'");
            }
            Self::Hash(hash) => {
                let valid = ["sha256-", "sha384-", "sha512-"]
                    .iter()
                    .any(|p| hash.starts_with(p))
                    && hash.len() > 7
                    && hash[7..].bytes().all(is_base64_char);
                if !valid {
                    return Err(csp_error(
                        format!("{hash:?} is not a hash source"),
                        "write \"sha256-<base64 digest>\" (sha256, sha384 or sha512)",
                    ));
                }
                out.text("'");
                out.text(hash);
                out.text("'");
            }
            Self::Scheme(scheme) => {
                let name = scheme.strip_suffix(':').unwrap_or(scheme);
                let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
                if !valid {
                    return Err(csp_error(
                        format!("{scheme:?} is not a scheme source"),
                        "write a scheme such as \"https:\" or \"data:\"",
                    ));
                }
                out.text(name);
                out.text(":");
            }
            Self::Host(host) => {
                // RFC 3986 characters only; no whitespace, quotes, `;` or `,`, which would end
                // the source, the directive or the policy (CSP3 §2.2.1).
                let valid = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+=%".contains(&b))
                    && !host.starts_with('\'');
                if !valid {
                    return Err(csp_error(
                        format!("{host:?} is not a host source"),
                        "write a host such as \"https://cdn.example.com\" or \"*.example.com\"",
                    ));
                }
                out.text(host);
            }
        }
        Ok(())
    }
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/-_=".contains(&b)
}

fn csp_error(problem: String, fix: &'static str) -> ConfigError {
    ConfigError::new("content_security_policy", problem, fix)
}

/// A typed Content-Security-Policy.
///
/// Start from [`ContentSecurityPolicy::api`] (nothing may load, nobody may frame),
/// [`ContentSecurityPolicy::web`] (a helmet-like policy for HTML apps) or
/// [`ContentSecurityPolicy::new`] (empty), then set directives. Every value is checked when
/// the security headers are built, so a bad source is a [`ConfigError`] at startup.
///
/// ```
/// use axum_shield::headers::{ContentSecurityPolicy, Directive, SecurityHeadersLayer, Source};
///
/// let csp = ContentSecurityPolicy::web()
///     .directive(Directive::ScriptSrc, [Source::Nonce, Source::StrictDynamic])
///     .report_to("csp");
/// let layer = SecurityHeadersLayer::web()
///     .reporting_endpoint("csp", "https://reports.example.com/csp")
///     .csp(csp)
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentSecurityPolicy {
    directives: Vec<(Directive, Vec<Source>)>,
    upgrade_insecure_requests: bool,
    report_to: Option<String>,
    report_uri: Option<String>,
}

impl ContentSecurityPolicy {
    /// An empty policy (allows everything until directives are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// `default-src 'none'; frame-ancestors 'none'`: a JSON response needs to load nothing and
    /// must not be framed (OWASP REST Security Cheat Sheet, "Security headers").
    pub fn api() -> Self {
        Self {
            directives: vec![
                (Directive::DefaultSrc, vec![Source::None]),
                (Directive::FrameAncestors, vec![Source::None]),
            ],
            ..Self::default()
        }
    }

    /// A helmet-like policy for HTML apps: same-origin scripts, styles, fonts, images and forms,
    /// no plugins, no inline event handlers, framing by the same origin only, and
    /// `upgrade-insecure-requests`.
    pub fn web() -> Self {
        use Directive::*;
        use Source::*;
        let https = || Scheme("https:".into());
        let data = || Scheme("data:".into());
        Self {
            directives: vec![
                (DefaultSrc, vec![SelfOrigin]),
                (BaseUri, vec![SelfOrigin]),
                (FontSrc, vec![SelfOrigin, https(), data()]),
                (FormAction, vec![SelfOrigin]),
                (FrameAncestors, vec![SelfOrigin]),
                (ImgSrc, vec![SelfOrigin, data()]),
                (ObjectSrc, vec![None]),
                (ScriptSrc, vec![SelfOrigin]),
                (ScriptSrcAttr, vec![None]),
                (StyleSrc, vec![SelfOrigin, https(), UnsafeInline]),
            ],
            upgrade_insecure_requests: true,
            ..Self::default()
        }
    }

    /// Sets (or replaces) one directive. The sources are checked when the policy is
    /// installed ([`SecurityHeadersBuilder::build`](super::SecurityHeadersBuilder::build)):
    /// an empty source list, `'none'` combined with other sources, or a source with
    /// characters that would end the directive or header (space, `;`, `,`, quotes, CR/LF) is a
    /// [`ConfigError`] there.
    pub fn directive(
        mut self,
        directive: Directive,
        sources: impl IntoIterator<Item = Source>,
    ) -> Self {
        let sources: Vec<Source> = sources.into_iter().collect();
        match self.directives.iter_mut().find(|(d, _)| *d == directive) {
            Some(entry) => entry.1 = sources,
            None => self.directives.push((directive, sources)),
        }
        self
    }

    /// Removes a directive.
    pub fn remove(mut self, directive: Directive) -> Self {
        self.directives.retain(|(d, _)| *d != directive);
        self
    }

    /// Adds or removes `upgrade-insecure-requests`.
    pub fn upgrade_insecure_requests(mut self, enabled: bool) -> Self {
        self.upgrade_insecure_requests = enabled;
        self
    }

    /// Sends violation reports to the `Reporting-Endpoints` group `group` (`report-to`,
    /// CSP Level 3 §6.5.1); declare the group with
    /// [`SecurityHeadersBuilder::reporting_endpoint`](super::SecurityHeadersBuilder::reporting_endpoint).
    /// The group name is checked when the policy is installed.
    pub fn report_to(mut self, group: impl Into<String>) -> Self {
        self.report_to = Some(group.into());
        self
    }

    /// Also sends reports to `uri` with the deprecated `report-uri`, for browsers without
    /// `report-to` support (Firefox). Checked when the policy is installed.
    pub fn report_uri(mut self, uri: impl Into<String>) -> Self {
        self.report_uri = Some(uri.into());
        self
    }

    /// Whether any directive uses [`Source::Nonce`].
    pub fn uses_nonce(&self) -> bool {
        self.directives
            .iter()
            .any(|(_, sources)| sources.contains(&Source::Nonce))
    }

    /// Renders the policy, with `nonce` in place of [`Source::Nonce`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if a source, the report group or report URI is invalid.
    pub fn render(&self, nonce: &str) -> Result<String, ConfigError> {
        let template = self.template()?;
        let mut out = String::new();
        for (i, part) in template.parts.iter().enumerate() {
            if i > 0 {
                out.push_str(nonce);
            }
            out.push_str(&String::from_utf8_lossy(part));
        }
        Ok(out)
    }

    pub(crate) fn template(&self) -> Result<Template, ConfigError> {
        let mut out = Template::default();
        let mut first = true;
        let mut sep = |out: &mut Template| {
            if !first {
                out.text("; ");
            }
            first = false;
        };
        for (directive, sources) in &self.directives {
            if sources.is_empty() {
                return Err(csp_error(
                    format!("{} has no sources", directive.name()),
                    "give at least one source, or Source::None to allow nothing",
                ));
            }
            if sources.len() > 1 && sources.contains(&Source::None) {
                return Err(csp_error(
                    format!("{} combines 'none' with other sources", directive.name()),
                    "use either Source::None alone or a list of allowed sources",
                ));
            }
            sep(&mut out);
            out.text(directive.name());
            for source in sources {
                out.text(" ");
                source.write(&mut out)?;
            }
        }
        if self.upgrade_insecure_requests {
            sep(&mut out);
            out.text("upgrade-insecure-requests");
        }
        if let Some(group) = &self.report_to {
            if !is_token(group) {
                return Err(csp_error(
                    format!("report-to group {group:?} is not a token"),
                    "use a short name of letters, digits, '-' or '_' such as \"csp\"",
                ));
            }
            sep(&mut out);
            out.text("report-to ");
            out.text(group);
        }
        if let Some(uri) = &self.report_uri {
            let valid = (uri.starts_with("https://") || uri.starts_with('/'))
                && uri
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b";,'\"".contains(&b));
            if !valid {
                return Err(csp_error(
                    format!("report-uri {uri:?} is not a usable URI"),
                    "use an https:// URL or an absolute path without spaces, ';' or ','",
                ));
            }
            sep(&mut out);
            out.text("report-uri ");
            out.text(uri);
        }
        if out.parts.iter().all(Vec::is_empty) {
            return Err(csp_error(
                "the policy has no directives".into(),
                "add directives, or unset the header instead of sending an empty policy",
            ));
        }
        Ok(out)
    }
}

pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A rendered policy split at each nonce: `parts.len() - 1` nonces go between the parts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Template {
    pub(crate) parts: Vec<Vec<u8>>,
}

impl Template {
    fn text(&mut self, text: &str) {
        if self.parts.is_empty() {
            self.parts.push(Vec::new());
        }
        if let Some(last) = self.parts.last_mut() {
            last.extend_from_slice(text.as_bytes());
        }
    }

    fn nonce(&mut self) {
        if self.parts.is_empty() {
            self.parts.push(Vec::new());
        }
        self.parts.push(Vec::new());
    }

    pub(crate) fn has_nonce(&self) -> bool {
        self.parts.len() > 1
    }

    /// The header value with `nonce` between the parts.
    pub(crate) fn fill(&self, nonce: &str) -> Option<HeaderValue> {
        let len = self.parts.iter().map(Vec::len).sum::<usize>()
            + nonce.len() * self.parts.len().saturating_sub(1);
        let mut buf = BytesMut::with_capacity(len);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                buf.put_slice(nonce.as_bytes());
            }
            buf.put_slice(part);
        }
        HeaderValue::from_maybe_shared(buf.freeze()).ok()
    }

    pub(crate) fn to_static(&self) -> Result<HeaderValue, ConfigError> {
        let text = self.parts.concat();
        HeaderValue::from_maybe_shared(Bytes::from(text)).map_err(|_| {
            csp_error(
                "the policy contains characters not allowed in a header".into(),
                "remove CR, LF and other control characters",
            )
        })
    }
}

/// The CSP nonce of the current request, for `<script nonce="…">` in the HTML you render.
///
/// The security headers layer puts a fresh one in the request extensions of every request
/// when the configured policy uses [`Source::Nonce`], and writes the same value into the
/// `Content-Security-Policy` header of the response. Use it as an extractor (a 500 tells you
/// the layer is missing or its policy has no nonce) or read it with
/// `request.extensions().get::<CspNonce>()`.
///
/// If the handler sets its own `Content-Security-Policy`, that header is kept by default
/// (see [`OnExisting`](super::OnExisting)) and this nonce is not in it.
///
/// ```
/// use axum::response::Html;
/// use axum_shield::headers::CspNonce;
///
/// async fn page(nonce: CspNonce) -> Html<String> {
///     Html(format!(r#"<script nonce="{}">init()</script>"#, nonce.as_str()))
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(page));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CspNonce(Arc<str>);

impl CspNonce {
    /// The nonce: 128 random bits in base64 (24 characters), safe to put in an HTML attribute.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CspNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CspNonce {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<CspNonce>().cloned().ok_or_else(|| {
            crate::rejection::misconfigured(
                "CspNonce requested but no nonce-based CSP is configured: add \
                 Source::Nonce to the policy of the security headers layer",
            )
        })
    }
}

/// Generates nonces: ChaCha20 seeded once from the operating system (CSP3 §7.2 asks for
/// at least 128 bits from a cryptographically secure generator, fresh for every response).
pub(crate) struct NonceGenerator {
    rng: Mutex<ChaCha20Rng>,
}

impl std::fmt::Debug for NonceGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceGenerator(ChaCha20)")
    }
}

impl NonceGenerator {
    pub(crate) fn new() -> Result<Self, ConfigError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| {
            let mut problem = String::from("the operating system random generator failed: ");
            let _ = write!(problem, "{e}");
            ConfigError::new(
                "content_security_policy",
                problem,
                "a nonce needs OS randomness; check the platform's getrandom support",
            )
        })?;
        Ok(Self {
            rng: Mutex::new(ChaCha20Rng::from_seed(seed)),
        })
    }

    pub(crate) fn generate(&self) -> CspNonce {
        let mut bytes = [0u8; 16];
        {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            rng.fill_bytes(&mut bytes);
        }
        CspNonce(
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_policy_renders() {
        assert_eq!(
            ContentSecurityPolicy::api().render("x").unwrap(),
            "default-src 'none'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn web_policy_renders_helmet_like() {
        let text = ContentSecurityPolicy::web().render("x").unwrap();
        assert!(text.starts_with("default-src 'self'; base-uri 'self';"));
        assert!(text.contains("object-src 'none'"));
        assert!(text.ends_with("upgrade-insecure-requests"));
    }

    #[test]
    fn nonce_is_placed_in_every_directive() {
        let csp = ContentSecurityPolicy::new()
            .directive(Directive::ScriptSrc, [Source::Nonce, Source::StrictDynamic])
            .directive(Directive::StyleSrc, [Source::Nonce]);
        assert!(csp.uses_nonce());
        assert_eq!(
            csp.render("abc").unwrap(),
            "script-src 'nonce-abc' 'strict-dynamic'; style-src 'nonce-abc'"
        );
        let template = csp.template().unwrap();
        assert_eq!(
            template.fill("abc").unwrap(),
            "script-src 'nonce-abc' 'strict-dynamic'; style-src 'nonce-abc'"
        );
    }

    #[test]
    fn csp_source_injection_is_rejected() {
        for host in [
            "https://a.example; script-src *",
            "a.example\r\nSet-Cookie: x=1",
            "a b",
            "'unsafe-inline'",
            "",
        ] {
            let err = ContentSecurityPolicy::new()
                .directive(Directive::ImgSrc, [Source::Host(host.into())])
                .template()
                .unwrap_err();
            assert_eq!(err.setting(), "content_security_policy", "{host:?}");
        }
        assert!(ContentSecurityPolicy::new()
            .directive(Directive::ImgSrc, [Source::Scheme("da ta:".into())])
            .template()
            .is_err());
        assert!(ContentSecurityPolicy::new()
            .directive(Directive::ScriptSrc, [Source::Hash("md5-abc".into())])
            .template()
            .is_err());
        assert!(ContentSecurityPolicy::new()
            .directive(Directive::ScriptSrc, [Source::None, Source::SelfOrigin])
            .template()
            .is_err());
        assert!(ContentSecurityPolicy::api()
            .report_to("a b")
            .template()
            .is_err());
        assert!(ContentSecurityPolicy::api()
            .report_uri("https://x.example/r;script-src *")
            .template()
            .is_err());
        assert!(ContentSecurityPolicy::new().template().is_err());
        assert!(ContentSecurityPolicy::new()
            .directive(Directive::ImgSrc, [])
            .template()
            .is_err());
    }

    #[test]
    fn report_to_and_uri_render() {
        let text = ContentSecurityPolicy::api()
            .report_to("csp")
            .report_uri("https://r.example/csp")
            .render("")
            .unwrap();
        assert_eq!(
            text,
            "default-src 'none'; frame-ancestors 'none'; report-to csp; report-uri https://r.example/csp"
        );
    }

    #[test]
    fn nonces_are_fresh_and_base64() {
        let generator = NonceGenerator::new().unwrap();
        let a = generator.generate();
        let b = generator.generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 24);
        assert!(a.as_str().bytes().all(is_base64_char));
    }
}
