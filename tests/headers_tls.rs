//! HSTS and the HTTPS redirect over real sockets on 127.0.0.1: a rustls listener with a
//! generated certificate, a plain-HTTP listener, and a proxy in front.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use axum_server::tls_rustls::RustlsConfig;
use axum_shield::headers::TlsConnection;
use axum_shield::Shield;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

struct Servers {
    handles: Vec<axum_server::Handle>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.shutdown();
        }
    }
}

fn tls_config(cert: &rcgen::CertifiedKey) -> RustlsConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    RustlsConfig::from_config(Arc::new(config))
}

fn app(shield: Shield) -> Router {
    Router::new()
        .route("/orders", get(|| async { "orders" }))
        .layer(shield)
}

fn listener() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn client(cert: Option<&rcgen::CertifiedKey>, tls_addr: Option<SocketAddr>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    if let Some(cert) = cert {
        builder = builder.tls_built_in_root_certs(false).add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
        );
    }
    if let Some(addr) = tls_addr {
        builder = builder.resolve("localhost", addr);
    }
    builder.build().unwrap()
}

/// Starts the TLS listener (marked with `TlsConnection`) and the plain listener, both serving
/// the same Shield stack, like `examples/tls.rs`.
async fn start(cert: &rcgen::CertifiedKey) -> (Servers, SocketAddr, SocketAddr) {
    let (tls_listener, tls_addr) = listener();
    let (plain_listener, plain_addr) = listener();
    let origin = format!("https://localhost:{}", tls_addr.port());
    let shield = Shield::api().https_redirect(&origin).build().unwrap();
    let router = app(shield);
    let tls_handle = axum_server::Handle::new();
    let plain_handle = axum_server::Handle::new();
    let tls_app = router.clone().layer(Extension(TlsConnection));
    let server = axum_server::from_tcp_rustls(tls_listener, tls_config(cert))
        .handle(tls_handle.clone())
        .serve(tls_app.into_make_service_with_connect_info::<SocketAddr>());
    tokio::spawn(server);
    let server = axum_server::from_tcp(plain_listener)
        .handle(plain_handle.clone())
        .serve(router.into_make_service_with_connect_info::<SocketAddr>());
    tokio::spawn(server);
    tls_handle.listening().await;
    plain_handle.listening().await;
    (
        Servers {
            handles: vec![tls_handle, plain_handle],
        },
        tls_addr,
        plain_addr,
    )
}

#[tokio::test]
async fn hsts_is_present_over_a_real_tls_connection() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (_servers, tls_addr, _) = start(&cert).await;
    let res = client(Some(&cert), Some(tls_addr))
        .get(format!("https://localhost:{}/orders", tls_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.text().await.unwrap(), "orders");
}

#[tokio::test]
async fn hsts_is_absent_over_plain_http_and_the_request_is_redirected() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (_servers, tls_addr, plain_addr) = start(&cert).await;
    let res = client(None, None)
        .get(format!("http://{plain_addr}/orders?page=2"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        format!("https://localhost:{}/orders?page=2", tls_addr.port()).as_str()
    );
    assert!(!res.headers().contains_key("strict-transport-security"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn a_tls_1_2_only_client_still_connects() {
    // The listener offers TLS 1.3 and 1.2 only (rustls implements nothing older, so 1.1 and
    // 1.0 cannot be negotiated); a client capped at 1.2 must still get in.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (_servers, tls_addr, _) = start(&cert).await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", tls_addr)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://localhost:{}/orders", tls_addr.port()))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("strict-transport-security"));
}

async fn plain_server(shield: Shield) -> (Servers, SocketAddr) {
    let (listener, addr) = listener();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)
        .handle(handle.clone())
        .serve(app(shield).into_make_service_with_connect_info::<SocketAddr>());
    tokio::spawn(server);
    handle.listening().await;
    (
        Servers {
            handles: vec![handle],
        },
        addr,
    )
}

#[tokio::test]
async fn hsts_is_present_behind_a_trusted_proxy_only() {
    // The test client on 127.0.0.1 plays a TLS-terminating proxy.
    let trusting = Shield::api()
        .trusted_proxies(["127.0.0.1"])
        .build()
        .unwrap();
    let (_s1, addr) = plain_server(trusting).await;
    let res = client(None, None)
        .get(format!("http://{addr}/orders"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("strict-transport-security"));

    // The same header from a peer that is not a trusted proxy changes nothing.
    let (_s2, addr) = plain_server(Shield::api().build().unwrap()).await;
    let res = client(None, None)
        .get(format!("http://{addr}/orders"))
        .header("x-forwarded-proto", "https")
        .header("forwarded", "proto=https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("strict-transport-security"));
}
