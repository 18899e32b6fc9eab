//! Serving HTTPS directly: rustls (TLS 1.3 and 1.2 only, ALPN h2 and http/1.1) in front of the
//! quickstart's Shield stack, plus a plain-HTTP listener that redirects to HTTPS.
//!
//! ```text
//! cargo run --example tls
//! #   https://127.0.0.1:3443 (PORT), redirect listener http://127.0.0.1:3080 (HTTP_PORT)
//! curl -i --cacert "$TMPDIR/axum-shield-localhost.pem" https://localhost:3443/health
//! curl -i http://127.0.0.1:3080/health?x=1   # 308 to https://localhost:3443/health?x=1
//! ```
//!
//! Settings (environment):
//!
//! * `TLS_CERT_PEM`, `TLS_KEY_PEM`: certificate chain and private key files (PEM). Without
//!   them a self-signed certificate for `localhost`/`127.0.0.1` is generated for local use,
//!   and written to `$TMPDIR/axum-shield-localhost.pem` so clients can trust it.
//! * `PORT` (default 3443), `HTTP_PORT` (default 3080).
//! * `CANONICAL_ORIGIN`: where plain HTTP is redirected (default `https://localhost:$PORT`);
//!   never taken from the request's `Host`.
//!
//! Requests accepted by the TLS listener are marked with [`TlsConnection`], so HSTS is sent
//! on them and never on plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{routing::get, Extension, Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use axum_shield::headers::TlsConnection;
use axum_shield::Shield;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

/// The quickstart's stack, with the HTTPS redirect switched on.
fn app(canonical_origin: &str) -> Result<Router, axum_shield::ConfigError> {
    let shield = Shield::api().https_redirect(canonical_origin).build()?;
    Ok(Router::new().route("/health", get(health)).layer(shield))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Certificate chain and key from PEM files, or a generated self-signed pair.
fn certificate() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BoxError> {
    match (std::env::var("TLS_CERT_PEM"), std::env::var("TLS_KEY_PEM")) {
        (Ok(cert), Ok(key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(&key)?;
            tracing::info!(%cert, "loaded certificate");
            Ok((chain, key))
        }
        _ => {
            let generated = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])?;
            let path = std::env::temp_dir().join("axum-shield-localhost.pem");
            std::fs::write(&path, generated.cert.pem())?;
            tracing::warn!(
                path = %path.display(),
                "no TLS_CERT_PEM/TLS_KEY_PEM: using a generated self-signed certificate (local use only)"
            );
            let key = PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der());
            Ok((vec![generated.cert.der().clone()], key.into()))
        }
    }
}

/// rustls with TLS 1.3 and 1.2 only (BSI TR-02102-2 / Mozilla "intermediate"; rustls has no
/// TLS 1.1 or 1.0 at all) and ALPN for HTTP/2 and HTTP/1.1.
fn tls_config() -> Result<RustlsConfig, BoxError> {
    let (chain, key) = certificate()?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let https_port = port("PORT", 3443);
    let http_port = port("HTTP_PORT", 3080);
    let origin = std::env::var("CANONICAL_ORIGIN")
        .unwrap_or_else(|_| format!("https://localhost:{https_port}"));
    let app = app(&origin)?;
    let tls = tls_config()?;

    let https_addr = SocketAddr::from(([127, 0, 0, 1], https_port));
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    tracing::info!(
        "listening on https://{https_addr} and http://{http_addr} (redirects to {origin})"
    );

    // Only the TLS listener marks its requests as HTTPS.
    let https = axum_server::bind_rustls(https_addr, tls).serve(
        app.clone()
            .layer(Extension(TlsConnection))
            .into_make_service_with_connect_info::<SocketAddr>(),
    );
    let http =
        axum_server::bind(http_addr).serve(app.into_make_service_with_connect_info::<SocketAddr>());
    tokio::try_join!(https, http)?;
    Ok(())
}
