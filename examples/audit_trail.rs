//! Recipe: the audit trail of a sensitive action, forwarded to a SIEM.
//!
//! ```text
//! cargo run --example audit_trail
//! curl -i -X DELETE http://127.0.0.1:3000/accounts/42  # 204, two events
//! curl -i -X DELETE http://127.0.0.1:3000/accounts/7   # 503, attempted + failed
//! ```
//!
//! `Audit` records a high-risk action as OWASP `sensitive_action` events: `attempted` when it
//! starts, then `completed` or `failed` (an action dropped without an outcome, for example on
//! an early `?`, is logged as `failed` / `abandoned`). Each event carries the request id,
//! client IP, route template and principal. A `ChannelSink` hands every security event to a
//! forwarder task as a stable JSON object without ever blocking a request; here the
//! forwarder prints them, a real one ships them to your SIEM.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::Router;
use axum_shield::audit::{Audit, ChannelSink};
use axum_shield::Shield;

async fn delete_account(audit: Audit, Path(id): Path<u64>) -> StatusCode {
    let action = audit.attempt("delete_account");
    match remove_from_storage(id).await {
        Ok(()) => {
            action.completed();
            StatusCode::NO_CONTENT
        }
        Err(reason) => {
            action.failed(reason); // a short, fixed reason: never user input or an error text
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

async fn remove_from_storage(id: u64) -> Result<(), &'static str> {
    if id == 7 {
        Err("storage_unavailable")
    } else {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();

    let (sink, mut events) = ChannelSink::bounded(1024)?; // full: drops and counts, never blocks
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match serde_json::to_string(&event) {
                Ok(line) => println!("SIEM <- {line}"),
                Err(error) => tracing::warn!(%error, "security event not serialized"),
            }
        }
    });

    let mut shield = Shield::api().event_sink(sink);
    if let Ok(key) = std::env::var("LOG_PSEUDONYM_KEY") {
        // Keyed pseudonyms of client IPs and user names in every line and event (a key of
        // 32 bytes or more; rotate it to unlink old logs).
        shield = shield.pseudonymize(key);
    }
    let shield = shield.build()?;

    let app = Router::new()
        .route("/accounts/{id}", delete(delete_account))
        .layer(shield);

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
