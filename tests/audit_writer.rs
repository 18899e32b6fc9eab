//! `audit::LogWriter` under a real `Shield`: the access lines of requests served on several
//! threads, formatted by `audit::JsonLines`, all reach the output whole, parseable and in
//! order per thread, once the guard is dropped.
#![cfg(feature = "json-log")]

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use axum_shield::audit::{JsonLines, JsonLinesFields, LogWriter};
use axum_shield::Shield;
use http::Request;
use tower::ServiceExt;

const THREADS: usize = 4;
const REQUESTS: usize = 500;

#[test]
fn access_lines_from_concurrent_requests_arrive_whole_and_in_order() {
    let output = support::audit::Capture::default();
    let (writer, guard) = LogWriter::new(output.output());
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .fmt_fields(JsonLinesFields::new())
            .event_format(JsonLines::new())
            .with_writer(writer.clone())
            .finish(),
    );
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(Shield::api().build().unwrap());

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let dispatch = dispatch.clone();
            let app = app.clone();
            std::thread::spawn(move || {
                let _default = tracing::dispatcher::set_default(&dispatch);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let addr: SocketAddr = "203.0.113.9:40000".parse().unwrap();
                    for n in 0..REQUESTS {
                        let mut req = Request::get(format!("/orders/{n}"))
                            .header("x-request-id", format!("t{t}-{n}"))
                            .body(Body::empty())
                            .unwrap();
                        req.extensions_mut().insert(ConnectInfo(addr));
                        let res = app.clone().oneshot(req).await.unwrap();
                        assert_eq!(res.status(), 200);
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(dispatch);
    drop(guard); // writes and flushes what is still buffered

    assert_eq!(writer.dropped_lines(), 0);
    assert_eq!(writer.write_errors(), 0);
    let text = output.text();
    let mut next = [0usize; THREADS];
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(line["fields"]["message"], "request completed");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["span"]["client_ip"], "203.0.113.9");
        let id = line["span"]["request_id"].as_str().unwrap();
        let (t, n) = id[1..].split_once('-').unwrap();
        let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[t], "thread {t}'s lines out of order");
        next[t] += 1;
    }
    assert_eq!(next, [REQUESTS; THREADS], "every access line, once");
}
