//! Recipe: an HTML page under the `web` header preset, with a nonce-based script policy.
//!
//! ```text
//! cargo run --example web_csp
//! curl -i http://127.0.0.1:3000/   # Content-Security-Policy: … script-src 'nonce-…' 'strict-dynamic' …
//! ```
//!
//! The `web` preset suits pages a browser renders (the default `api` preset forbids every
//! source). With `Source::Nonce` in the policy, every response gets a fresh random nonce in
//! its `Content-Security-Policy` header, and the handler reads the same nonce with the
//! `CspNonce` extractor to mark its own inline scripts: an injected `<script>` has no nonce
//! and does not run (CSP Level 3, OWASP CSP cheat sheet).

use std::net::SocketAddr;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use axum_shield::headers::{
    ContentSecurityPolicy, CspNonce, Directive, SecurityHeadersLayer, Source,
};
use axum_shield::Shield;

async fn page(nonce: CspNonce) -> Html<String> {
    // Never format user input into HTML without encoding it
    // (`axum_shield::validate::sanitize::encode_html`).
    Html(format!(
        "<!doctype html><title>axum-shield</title>\
         <p id=out>loading…</p>\
         <script nonce=\"{nonce}\">document.getElementById('out').textContent = 'ran';</script>"
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();

    let csp = ContentSecurityPolicy::web()
        .directive(Directive::ScriptSrc, [Source::Nonce, Source::StrictDynamic]);
    let headers = SecurityHeadersLayer::web()
        .csp(csp)
        .set("referrer-policy", "strict-origin-when-cross-origin"); // change any one header

    let shield = Shield::api()
        .security_headers(headers) // bad sources or header values are refused at build()
        .build()?;

    let app = Router::new().route("/", get(page)).layer(shield);

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
