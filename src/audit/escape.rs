//! Escaping of user-controlled text before it reaches a log line.
//!
//! `tracing-subscriber`'s plain-text formatter (checked against 0.3.23) writes `%` (Display)
//! field values verbatim and only sanitises ANSI in the `message` field and in errors, so a
//! `%username` containing `\r\n` would start a forged line and `\x1b[2K` would erase one on a
//! terminal. `?` (Debug) values of `&str` are quoted and escaped, but other Debug impls and
//! other formatters or sinks make no promise. So every user-controlled string is escaped here,
//! once, when it enters a [`SecurityEvent`](super::SecurityEvent) or the request span: the
//! result contains no control character and no invisible reordering character, whatever
//! formatter or sink writes it (OWASP Logging Cheat Sheet, "Event data sources": sanitise
//! event data to prevent log injection; CWE-117).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest user-controlled value kept in an event, in characters; longer values are cut and
/// end with `…` so one request cannot flood the log.
pub(crate) const MAX_FIELD_CHARS: usize = 256;

/// Whether `c` must be escaped: C0 and C1 controls, DEL, line and paragraph separators, and
/// the bidirectional formatting characters that can visually reorder a line
/// (CVE-2021-42574, "Trojan Source").
pub(crate) fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}'
        )
}

/// Escapes `text` for a log line and cuts it to [`MAX_FIELD_CHARS`] characters.
///
/// `\` becomes `\\`, CR, LF and TAB become `\r`, `\n`, `\t`, and every other control or
/// bidirectional character becomes `\u{…}`; the output is therefore one line with no
/// terminal escape sequence, and the escaping is reversible. Text that needs nothing is
/// borrowed, not copied.
///
/// `escape("bob\r\nINFO forged")` is `bob\\r\\nINFO forged`; `escape("\x1b[2Khidden")` is
/// `\\u{1b}[2Khidden`.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    let clean = !text.chars().any(needs_escape);
    // `len()` is a cheap upper bound of the character count.
    if clean && (text.len() <= MAX_FIELD_CHARS || text.chars().count() <= MAX_FIELD_CHARS) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_FIELD_CHARS * 2) + 8);
    for (count, c) in text.chars().enumerate() {
        if count == MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes `text` into an owned string (see [`escape`]).
pub(crate) fn escape_owned(text: String) -> String {
    match escape(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

/// Whether `text`, written bare after `key=` in a text log line, could read as more than
/// one value: it holds whitespace (which ends a value, so `bob reason=ok` would print a
/// forged `reason=ok` pair), `=`, or `"` (which starts a quoted value in logfmt readers).
pub(crate) fn needs_quotes(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_whitespace() || c == '=' || c == '"')
}

/// An escaped, user-controlled value on its way into a `tracing` event or span.
///
/// `tracing-subscriber`'s text formats write `%` (Display) values bare and `&str` values
/// (recorded with `record_str`) quoted, with `"` and `\` escaped; JSON formatters write
/// both as the same JSON string. So a value that [`needs_quotes`] is recorded as a `&str`,
/// which quotes it in text output (`username="bob reason=ok"`) and leaves JSON output
/// unchanged, and any other value is recorded with Display, bare (`username=alice`).
pub(crate) struct LogText<'a> {
    text: &'a str,
    bare: tracing::field::DisplayValue<&'a str>,
}

impl<'a> LogText<'a> {
    /// `text` must already be [escaped](escape) (or be known safe).
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            bare: tracing::field::display(text),
        }
    }

    /// The value to record.
    pub(crate) fn value(&self) -> &dyn tracing::Value {
        if needs_quotes(self.text) {
            &self.text
        } else {
            &self.bare
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crlf_is_escaped_so_no_line_can_be_forged() {
        let escaped = escape("alice\r\n2026-01-01T00:00:00Z  INFO login ok user=admin");
        assert!(!escaped.contains('\n') && !escaped.contains('\r'));
        assert!(escaped.starts_with("alice\\r\\n"));
    }

    #[test]
    fn ansi_sequences_are_escaped_so_nothing_is_hidden() {
        let escaped = escape("x\x1b[1A\x1b[2K\u{9b}31m\u{7f}");
        assert_eq!(escaped, "x\\u{1b}[1A\\u{1b}[2K\\u{9b}31m\\u{7f}");
    }

    #[test]
    fn bidi_overrides_are_escaped() {
        assert_eq!(escape("a\u{202e}b\u{2066}"), "a\\u{202e}b\\u{2066}");
        assert_eq!(escape("a\u{2028}b"), "a\\u{2028}b");
    }

    #[test]
    fn backslashes_are_escaped_so_escaping_is_unambiguous() {
        assert_eq!(escape("a\\r"), "a\\\\r");
    }

    #[test]
    fn clean_text_is_borrowed_and_long_text_is_cut() {
        assert!(matches!(escape("alice@example.com"), Cow::Borrowed(_)));
        let long = "é".repeat(MAX_FIELD_CHARS + 10);
        let cut = escape(&long);
        assert_eq!(cut.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    proptest! {
        #[test]
        fn escaped_text_never_contains_control_characters(text in any::<String>()) {
            let escaped = escape(&text);
            prop_assert!(!escaped.chars().any(|c| c.is_control()));
            prop_assert!(escaped.chars().filter(|&c| c != '\\').all(|c| !needs_escape(c)));
        }
    }
}
