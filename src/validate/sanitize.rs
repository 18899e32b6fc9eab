//! Sanitizing helpers, and the [`Sanitized`] extractor that applies them.
//!
//! **The defence against cross-site scripting is encoding on output**, for the context the
//! text lands in ([OWASP XSS Prevention Cheat Sheet, rule #1](https://cheatsheetseries.owasp.org/cheatsheets/Cross_Site_Scripting_Prevention_Cheat_Sheet.html)):
//! store what the user sent (after validation), and call [`encode_html`] when you put it in
//! HTML. Removing "dangerous" characters from input is not a defence. The naive filter
//!
//! ```js
//! input.replace(/[<>]/g, '')   // what NOT to do
//! ```
//!
//! breaks legitimate text (`a < b`), does nothing for attribute or URL contexts
//! (`" onmouseover="alert(1)`, `javascript:alert(1)`), and its tag-stripping cousin that
//! removes `<script>` once turns `<scr<script>ipt>` back into `<script>`. See the
//! `naive_strip_is_bypassed` test in this module.
//!
//! What is right to clean on input: invisible characters that only confuse people and logs
//! (control characters, bidi overrides — the "Trojan Source" trick, CVE-2021-42574), Unicode
//! normalisation to NFC so that equal-looking strings compare equal (Unicode UAX #15), and —
//! when you accept rich text — HTML through an allow-list sanitizer ([`html`], feature
//! `sanitize-html`, ammonia).
//!
//! Implement [`Sanitize`] for a request DTO with the field helpers [`text`], [`invisible`]
//! and [`html`], and extract [`Sanitized<Json<T>>`](Sanitized) (or `Valid<Sanitized<…>>`).

use std::borrow::Cow;
use std::ops::DerefMut;

use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// Encodes `text` for an HTML element body or a quoted attribute value: `& < > " '` become
/// character references (OWASP rule #1 and #2).
///
/// ```
/// use axum_shield::validate::sanitize::encode_html;
///
/// assert_eq!(encode_html("<b>\"Tom\" & 'Jerry'</b>"),
///            "&lt;b&gt;&quot;Tom&quot; &amp; &#x27;Jerry&#x27;&lt;/b&gt;");
/// assert_eq!(encode_html("plain"), "plain"); // borrowed, no allocation
/// ```
pub fn encode_html(text: &str) -> Cow<'_, str> {
    let needs = |b: u8| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'');
    let Some(first) = text.bytes().position(needs) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is a bidirectional formatting character (LRE, RLE, PDF, LRO, RLO, LRI, RLI,
/// FSI, PDI, LRM, RLM, ALM), as used by "Trojan Source" (CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Whether `c` is a control character other than tab, LF and CR (C0, DEL, C1).
fn is_control(c: char) -> bool {
    super::guard::is_refused_control(c)
}

/// Removes control characters (except tab, LF, CR) and bidi formatting characters.
fn strip_invisible(text: &str) -> Cow<'_, str> {
    let drop = |c: char| is_control(c) || is_bidi_control(c);
    if !text.chars().any(drop) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().filter(|c| !drop(*c)).collect())
}

/// Normalises `text` to Unicode NFC (UAX #15), so canonically equivalent strings are equal.
fn nfc(text: &str) -> Cow<'_, str> {
    if is_nfc(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.nfc().collect())
}

/// [`nfc`], then [`strip_invisible`], then trims surrounding whitespace.
fn clean_text(text: &str) -> String {
    let normalized = nfc(text);
    strip_invisible(&normalized).trim().to_owned()
}

/// Cleans user-supplied HTML with ammonia's allow-list.
#[cfg(feature = "sanitize-html")]
fn clean_html(html: &str) -> String {
    ammonia::clean(html)
}

/// A value that knows how to clean itself: implement it for a request DTO, listing the
/// fields the handler cleans, and extract `Sanitized<Json<T>>` (or wrap it in `Valid<…>`).
///
/// ```
/// use axum_shield::validate::sanitize::{self, Sanitize};
///
/// struct NewComment { author: String, body: String }
///
/// impl Sanitize for NewComment {
///     fn sanitize(&mut self) {
///         sanitize::text(&mut self.author);         // NFC, no invisible characters, trimmed
///         sanitize::invisible(&mut self.body);      // keep formatting, drop bidi tricks
///     }
/// }
/// ```
pub trait Sanitize {
    /// Cleans `self` in place.
    fn sanitize(&mut self);
}

impl Sanitize for String {
    fn sanitize(&mut self) {
        text(self);
    }
}

impl<T: Sanitize> Sanitize for Option<T> {
    fn sanitize(&mut self) {
        if let Some(value) = self {
            value.sanitize();
        }
    }
}

impl<T: Sanitize> Sanitize for Vec<T> {
    fn sanitize(&mut self) {
        for value in self {
            value.sanitize();
        }
    }
}

/// Cleans a name, title or other single-line text in place: Unicode NFC (UAX #15, so
/// canonically equivalent strings are equal), then control characters (except tab, LF, CR)
/// and bidi formatting characters removed, then surrounding whitespace trimmed.
///
/// ```
/// use axum_shield::validate::sanitize;
///
/// let mut name = String::from("  Zoe\u{308}\u{200F} ");
/// sanitize::text(&mut name);
/// assert_eq!(name, "Zo\u{eb}"); // e + combining diaeresis → ë, RLM and spaces gone
/// ```
pub fn text(field: &mut String) {
    let cleaned = clean_text(field);
    if cleaned != *field {
        *field = cleaned;
    }
}

/// Cleans multi-line text in place: Unicode NFC, then control characters (except tab, LF,
/// CR) and bidi formatting characters ("Trojan Source", CVE-2021-42574) removed; whitespace
/// and line breaks are kept.
///
/// ```
/// use axum_shield::validate::sanitize;
///
/// let mut body = String::from("admin\u{202E}txt.exe\0\nline 2");
/// sanitize::invisible(&mut body);
/// assert_eq!(body, "admintxt.exe\nline 2");
/// ```
pub fn invisible(field: &mut String) {
    let normalized = nfc(field);
    if let Cow::Owned(cleaned) = strip_invisible(&normalized) {
        *field = cleaned;
    } else if let Cow::Owned(normalized) = normalized {
        *field = normalized;
    }
}

/// Cleans user-supplied HTML in place with [ammonia](https://docs.rs/ammonia)'s allow-list
/// (safe tags and attributes kept, scripts, event handlers and `javascript:` URLs removed;
/// links get `rel="noopener noreferrer"`). Use it only where you accept rich text.
///
/// ```
/// use axum_shield::validate::sanitize;
///
/// let mut comment = String::from("<b>hi</b><script>alert(1)</script>");
/// sanitize::html(&mut comment);
/// assert_eq!(comment, "<b>hi</b>");
/// let mut nested = String::from("<scr<script>ipt>alert(1)</script>");
/// sanitize::html(&mut nested);
/// assert_eq!(nested, "ipt&gt;alert(1)");
/// ```
#[cfg(feature = "sanitize-html")]
pub fn html(field: &mut String) {
    *field = clean_html(field);
}

/// An extractor whose output is cleaned with [`Sanitize`] before the handler sees it.
///
/// Works with any extractor that dereferences to its value (`Json`, `Form`, `Query`, `Path`,
/// [`GuardedJson`](super::GuardedJson) via its field): `Sanitized<Json<T>>`.
///
/// ```
/// use axum::{routing::post, Json, Router};
/// use axum_shield::validate::sanitize::{self, Sanitize, Sanitized};
///
/// #[derive(serde::Deserialize)]
/// struct Rename { name: String }
/// impl Sanitize for Rename {
///     fn sanitize(&mut self) { sanitize::text(&mut self.name) }
/// }
///
/// async fn rename(Sanitized(Json(r)): Sanitized<Json<Rename>>) -> String { r.name }
/// let app: Router = Router::new().route("/rename", post(rename));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Sanitized<E>(pub E);

impl<S, E> FromRequest<S> for Sanitized<E>
where
    S: Send + Sync,
    E: FromRequest<S> + DerefMut,
    E::Target: Sanitize,
{
    type Rejection = E::Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut value = E::from_request(req, state).await?;
        value.sanitize();
        Ok(Self(value))
    }
}

/// `Sanitized<Query<T>>` and `Sanitized<Path<T>>` also work as request-parts extractors.
impl<S, E> FromRequestParts<S> for Sanitized<E>
where
    S: Send + Sync,
    E: FromRequestParts<S> + DerefMut,
    E::Target: Sanitize,
{
    type Rejection = E::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut value = E::from_request_parts(parts, state).await?;
        value.sanitize();
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's filter, and the tag-stripping variant people write next.
    fn naive_replace(input: &str) -> String {
        input.replace(['<', '>'], "")
    }
    fn naive_strip_script(input: &str) -> String {
        input.replacen("<script>", "", 1)
    }

    #[test]
    fn naive_strip_is_bypassed() {
        // One pass over `<scr<script>ipt>` rebuilds the tag it meant to remove.
        assert_eq!(naive_strip_script("<scr<script>ipt>"), "<script>");
        // Removing angle brackets leaves attribute and URL payloads intact.
        let attr = "\" onmouseover=\"alert(1)";
        assert_eq!(naive_replace(attr), attr);
        // Output encoding neutralises all of them for HTML.
        for payload in ["<scr<script>ipt>", attr, "<img src=x onerror=alert(1)>"] {
            let encoded = encode_html(payload);
            assert!(
                !encoded.contains('<') && !encoded.contains('"'),
                "{encoded}"
            );
        }
    }

    #[test]
    fn trojan_source_bidi_overrides_are_stripped() {
        let tricky = "access_level = \"user\u{202E} \u{2066}// admin\u{2069} \u{2066}\"";
        let cleaned = strip_invisible(tricky);
        assert!(!cleaned.chars().any(is_bidi_control));
    }

    #[test]
    fn nul_and_c1_controls_are_stripped_but_newlines_kept() {
        assert_eq!(
            strip_invisible("a\0b\u{85}c\u{1b}[31m\td\n"),
            "abc[31m\td\n"
        );
    }

    #[test]
    fn sanitize_trait_cleans_nested_values() {
        let mut names = vec![Some(" a\u{200E}b ".to_owned()), None];
        names.sanitize();
        assert_eq!(names, vec![Some("ab".to_owned()), None]);
    }

    #[cfg(feature = "sanitize-html")]
    #[test]
    fn nested_script_tags_are_removed_by_allow_list() {
        let cleaned = clean_html("<p onclick=\"x()\">hi<scr<script>ipt>alert(1)</script></p>");
        assert!(!cleaned.contains("<script"), "{cleaned}");
        assert!(!cleaned.contains("onclick"), "{cleaned}");
        assert!(cleaned.starts_with("<p>hi"), "{cleaned}");
    }
}
