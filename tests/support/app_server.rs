//! Serves a router on a free loopback port for the duration of the test, with the peer
//! address available as `ConnectInfo` (as `axum::serve` gives it in production).
//! Shared by the tests that talk to the crate over real sockets.

use std::net::SocketAddr;

use axum::Router;

/// Binds 127.0.0.1 on a free port, serves `app` there in a background task and returns the
/// address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}
