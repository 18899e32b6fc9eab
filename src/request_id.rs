//! Request ids: accept a client's only if it is short and safe, otherwise generate one.
//!
//! The id travels in `x-request-id`, is stored in request extensions as tower-http's
//! [`RequestId`] (so it works with the rest of tower-http), is echoed on the response, and is
//! carried by every log line, security event and problem body of the request. Read it in a
//! handler with `Extension<RequestId>`:
//!
//! ```
//! use axum::Extension;
//! use axum_shield::request_id::RequestId;
//!
//! async fn handler(Extension(id): Extension<RequestId>) -> String {
//!     format!("your request id is {}", id.header_value().to_str().unwrap_or("?"))
//! }
//! # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
//! ```
//!
//! A client-supplied id is kept only if it is 1 to 64 characters of `A–Z a–z 0–9 - _ . :`;
//! anything else (too long, control characters, CR/LF, spaces, non-ASCII) is replaced, so an id
//! can never forge a log line or smuggle markup into a report.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};
/// The request id in request extensions: tower-http's type, re-exported so that handlers can
/// name it (`Extension<RequestId>`) and tower-http's request-id layers read the same value.
pub use tower_http::request_id::RequestId;

/// The header that carries the request id: `x-request-id`.
pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is kept.
pub(crate) const MAX_CLIENT_ID_LEN: usize = 64;

/// Whether a client-supplied id may be kept as it is.
pub(crate) fn is_acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Generates a new id: 32 lowercase hex characters, unique within the process and
/// unpredictable across processes.
///
/// It is a random per-process prefix and a keyed bijective mix of a counter, so ids never
/// repeat in one process, do not reveal how many requests were served, and cost no system
/// call per request.
pub(crate) fn generate() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<[u64; 2]> = OnceLock::new();
    let [prefix, key] = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No OS randomness: fall back to time and address entropy; ids stay unique.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes = (nanos ^ (&COUNTER as *const _ as u128)).to_le_bytes();
        }
        let (a, b) = bytes.split_at(8);
        [
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        ]
    });
    let n = next_count(&COUNTER);
    let mixed = mix(n ^ key) ^ key.rotate_left(32);
    let mut out = [0u8; 32];
    hex(prefix, &mut out[..16]);
    hex(mixed, &mut out[16..]);
    // The id is shared three ways (request header, `RequestId` extension, response header):
    // owning the array in one reference-counted allocation makes each copy a count increment.
    // Copying it into a `Vec`-backed value instead costs a second allocation on the first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(out))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Counter values handed to a thread at a time.
const COUNT_BLOCK: u64 = 1024;

/// The next unused counter value. Each thread takes a block of [`COUNT_BLOCK`] values from the
/// shared counter and hands them out itself, so the shared counter's cache line is written
/// once per block rather than by every request on every worker thread. Values stay unique
/// within the process (ids are not ordered by time, and never were meant to be).
fn next_count(shared: &AtomicU64) -> u64 {
    thread_local! {
        static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    BLOCK.with(|block| {
        let (next, end) = block.get();
        if next < end {
            block.set((next + 1, end));
            next
        } else {
            let start = shared.fetch_add(COUNT_BLOCK, Ordering::Relaxed);
            block.set((start + 1, start + COUNT_BLOCK));
            start
        }
    })
}

/// splitmix64's finaliser: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The request id of a request, as set by [`Shield`](crate::Shield), as text.
pub(crate) fn of(extensions: &http::Extensions) -> Option<&str> {
    extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_unique_and_acceptable() {
        let ids: HashSet<_> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(is_acceptable));
        assert!(ids.iter().all(|id| id.len() == 32));
    }

    #[test]
    fn ids_from_many_threads_never_repeat() {
        // Each thread takes its own blocks of the counter; 3 000 ids per thread span several.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..3_000).map(|_| generate()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(all.insert(id), "an id repeated across threads");
            }
        }
        assert_eq!(all.len(), 12_000);
    }

    #[test]
    fn unsafe_client_ids_are_refused() {
        let long = "a".repeat(MAX_CLIENT_ID_LEN + 1);
        for bad in [
            "",
            "a b",
            "a\tb",
            "<script>",
            "ä",
            long.as_str(),
            "a;b",
            "a\"b",
        ] {
            if let Ok(value) = HeaderValue::from_str(bad) {
                assert!(!is_acceptable(&value), "{bad:?}");
            }
        }
        // CR, LF and DEL cannot even be carried by a `HeaderValue`; hyper refuses them.
        assert!(HeaderValue::from_bytes(b"abc\r\nx-evil: 1").is_err());
        let obs_text = HeaderValue::from_bytes(b"abc\xff").unwrap();
        assert!(!is_acceptable(&obs_text));
        assert!(is_acceptable(&HeaderValue::from_static(
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        )));
    }

    proptest! {
        #[test]
        fn acceptance_matches_the_documented_alphabet(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let expected = !bytes.is_empty() && bytes.len() <= MAX_CLIENT_ID_LEN
                    && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
                prop_assert_eq!(is_acceptable(&value), expected);
            }
        }
    }
}
