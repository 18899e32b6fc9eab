//! Process-wide `'static` copies of the few header values the layers copy into every
//! response (the security headers' policies, the rate limits' `RateLimit-Policy`).
//!
//! Copying a `HeaderValue` that owns a shared buffer costs an atomic reference-count
//! increment, and dropping the copy a decrement, on a cache line that every worker thread
//! touches; a `'static` value copies for free. Each distinct text is kept once (rebuilding a
//! layer reuses it) and at most [`MAX_INTERNED`] texts are kept for the life of the process:
//! past that, values are left as they are, so memory stays bounded whatever an application
//! builds.

use std::sync::{Mutex, PoisonError};

use http::HeaderValue;

/// Most distinct texts kept (each the length of one header value).
pub(crate) const MAX_INTERNED: usize = 1024;

/// `value` as a `'static` value when its text can be kept, otherwise `value` unchanged.
pub(crate) fn header_value(value: HeaderValue) -> HeaderValue {
    let Ok(text) = value.to_str() else {
        return value; // obs-text bytes: `from_static` accepts only visible ASCII
    };
    match intern(text) {
        Some(text) => {
            // `to_str` accepted exactly what `from_static` accepts: this cannot panic.
            let mut kept = HeaderValue::from_static(text);
            kept.set_sensitive(value.is_sensitive());
            kept
        }
        None => value,
    }
}

/// The kept copy of `text`, if it is or can be kept.
fn intern(text: &str) -> Option<&'static str> {
    static TEXTS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = texts.iter().find(|kept| **kept == text) {
        return Some(kept);
    }
    if texts.len() >= MAX_INTERNED {
        return None;
    }
    let kept: &'static str = Box::leak(Box::from(text));
    texts.push(kept);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_kept_once_and_bounded() {
        let a = intern("\"interned-test\";q=1;w=1").unwrap();
        let b = intern("\"interned-test\";q=1;w=1").unwrap();
        assert!(std::ptr::eq(a, b), "the same text is kept once");
        let mut sensitive = HeaderValue::from_static("secret-ish");
        sensitive.set_sensitive(true);
        assert!(header_value(sensitive).is_sensitive());
        // Past the bound, values are handed back unchanged.
        let mut refused = 0;
        for i in 0..=MAX_INTERNED {
            if intern(&format!("bound-test-{i}")).is_none() {
                refused += 1;
            }
        }
        assert!(refused >= 1);
        let value = HeaderValue::from_str("after-the-bound").unwrap();
        assert_eq!(header_value(value), "after-the-bound");
        // Not visible ASCII: left as it is.
        let odd = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(header_value(odd.clone()), odd);
    }
}
