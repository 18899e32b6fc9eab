//! A fast JSON-lines formatter for `tracing-subscriber`'s `fmt` layer (feature `json-log`).
//!
//! `tracing-subscriber`'s own `.json()` formatter keeps each span's fields as a JSON object
//! string and, for every event written inside the span, parses that string back into a
//! `serde_json::Value` map to copy it into the line (and does the same parse and re-serialize
//! on every `Span::record`). That parse, its allocations and the timestamp string were most of
//! the cost of the security log (see `benches/README.md`). Here a span's fields
//! are written once, as a JSON object *fragment* (`"request_id":"…","client_ip":"…"`), and
//! every line copies the fragment as it is.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::escape::needs_escape;

/// Event formatter writing one JSON object per line, for `tracing-subscriber`'s `fmt` layer;
/// use it with [`JsonLinesFields`].
///
/// Each line has the shape of `tracing-subscriber`'s
/// `.json().with_current_span(true).with_span_list(false)`:
///
/// ```text
/// {"timestamp":"2026-11-28T04:12:38.179231Z","level":"INFO","fields":{"message":"request completed","status":200,"latency_ms":0.385},"target":"axum_shield::request","span":{"request_id":"749c…","client_ip":"127.0.0.1","method":"GET","route":"/orders/{id}","name":"request"}}
/// ```
///
/// - `timestamp`: RFC 3339, UTC, microseconds; `level`: `TRACE` … `ERROR`;
/// - `fields`: the event's fields in the order they were written, the message as `message`;
/// - `target`: the event's target;
/// - `span`: the fields of the event's parent span (its explicit parent, else the current
///   span) in the order they were recorded, then the span's `name`; absent outside any span.
///   Only that span's fields, not its parents' (as with `with_span_list(false)`).
///
/// Values: integers and booleans unquoted, floats unquoted (`null` when not finite), byte
/// slices as arrays of numbers, everything else (strings, `%` Display and `?` Debug values,
/// errors) as a JSON string. Strings are escaped so that one event is always exactly one line,
/// whatever the input (CWE-117): `"` and `\` are escaped, every control character (C0, DEL, C1)
/// becomes `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, and U+2028, U+2029 and the bidirectional
/// formatting characters become `\uXXXX`; any JSON parser gives back the original text.
/// A field recorded again on a span replaces its previous value.
///
/// Differences from `tracing-subscriber`'s `.json()`: span fields keep their recorded order
/// rather than being sorted by name, and records coming from the `log` crate keep the target
/// `log` and their `log.*` fields (`tracing-subscriber` rewrites them when its `tracing-log`
/// feature is on).
///
/// # Example
///
/// Call `fmt_fields` before `event_format`: the formatter only accepts the span fields written
/// by [`JsonLinesFields`].
///
/// ```
/// use axum_shield::audit::{JsonLines, JsonLinesFields, LogWriter};
///
/// let (writer, _guard) = LogWriter::new(std::io::stdout());
/// let subscriber = tracing_subscriber::fmt()
///     .with_max_level(tracing::Level::INFO)
///     .fmt_fields(JsonLinesFields::new())
///     .event_format(JsonLines::new())
///     .with_writer(writer)
///     .finish();
/// # drop(subscriber);
/// ```
///
/// With a registry and other layers, [`json_lines_layer`] builds the `fmt` layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines {
    _private: (),
}

impl JsonLines {
    /// The formatter; it has no options.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Field formatter of [`JsonLines`]: keeps each span's fields as a JSON object fragment
/// (`"request_id":"…","client_ip":"…"`) in the span's extensions, written when the span opens
/// and extended when fields are recorded later, so events copy it without parsing anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLinesFields {
    _private: (),
}

impl JsonLinesFields {
    /// The field formatter; it has no options.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A `tracing-subscriber` `fmt` layer writing [`JsonLines`] to stdout; change the writer
/// with `.with_writer(…)`.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let (writer, _guard) = axum_shield::audit::LogWriter::new(std::io::stdout());
/// let subscriber = tracing_subscriber::registry()
///     .with(axum_shield::audit::json_lines_layer().with_writer(writer));
/// # drop(subscriber);
/// ```
pub fn json_lines_layer<S>() -> tracing_subscriber::fmt::Layer<S, JsonLinesFields, JsonLines>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonLinesFields::new())
        .event_format(JsonLines::new())
}

impl<'writer> FormatFields<'writer> for JsonLinesFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // Written into a reused buffer and copied once, so the span's string is allocated
        // once at its final size instead of growing field by field.
        with_scratch(|fragment| {
            let mut visitor = JsonVisitor::new(fragment, true);
            fields.record(&mut visitor);
            visitor.result?;
            writer.write_str(fragment)
        })
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let fragment = &mut current.fields;
        if !fragment.is_empty() {
            fields.record(&mut RemoveKeys(fragment));
        }
        let first = fragment.is_empty();
        let mut visitor = JsonVisitor::new(fragment, first);
        fields.record(&mut visitor);
        visitor.result
    }
}

impl<S> FormatEvent<S, JsonLinesFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonLinesFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is built in a reused `String` with direct calls, then handed to the
        // `fmt` layer's writer in one call rather than through its `dyn Write` piece by piece.
        with_scratch(|line| {
            let meta = event.metadata();
            line.push_str("{\"timestamp\":\"");
            write_timestamp(line, SystemTime::now())?;
            line.push_str("\",\"level\":\"");
            line.push_str(meta.level().as_str());
            line.push_str("\",\"fields\":{");
            let mut visitor = JsonVisitor::new(line, true);
            event.record(&mut visitor);
            visitor.result?;
            line.push_str("},\"target\":\"");
            write_escaped(line, meta.target())?;
            line.push('"');
            if let Some(span) = ctx.parent_span() {
                line.push_str(",\"span\":{");
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonLinesFields>>() {
                    if !fields.fields.is_empty() {
                        line.push_str(&fields.fields);
                        line.push(',');
                    }
                }
                line.push_str("\"name\":\"");
                write_escaped(line, span.name())?;
                line.push_str("\"}");
            }
            line.push_str("}\n");
            writer.write_str(line)
        })
    }
}

/// Runs `f` with an empty `String` reused across calls on this thread (a fresh one when it
/// is already in use, e.g. when a `Debug` impl logs while being formatted).
fn with_scratch<R>(f: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static SCRATCH: Cell<String> = const { Cell::new(String::new()) };
    }
    /// Larger buffers are dropped after use rather than kept for the thread's lifetime.
    const KEEP: usize = 16 * 1024;
    let mut buf = SCRATCH.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= KEEP {
        let _ = SCRATCH.try_with(|cell| cell.set(buf));
    }
    result
}

/// Writes fields as `"name":value` pairs separated by commas.
struct JsonVisitor<'a, W: fmt::Write + ?Sized> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write + ?Sized> JsonVisitor<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    /// Writes one pair; `value` writes the value.
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.out.write_char(',')?;
            }
            self.first = false;
            self.out.write_char('"')?;
            write_escaped(self.out, field_name(field))?;
            self.out.write_str("\":")?;
            value(self.out)
        })();
    }
}

/// The name of `field` as written: raw identifiers lose their `r#`.
fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

impl<W: fmt::Write + ?Sized> Visit for JsonVisitor<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, |out| write_f64(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| {
            if value < 0 {
                out.write_char('-')?;
            }
            write_u64(out, value.unsigned_abs())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write_u64(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write_escaped(out, value)?;
            out.write_char('"')
        });
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.pair(field, |out| {
            out.write_char('[')?;
            for (i, byte) in value.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write_u64(out, u64::from(*byte))?;
            }
            out.write_char(']')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaping(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Escapes everything written through it into the inside of a JSON string.
struct Escaping<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

/// Writes `text` as the inside of a JSON string (RFC 8259 §7): `"` and `\` escaped, every
/// control character (C0, DEL, C1) and every other character [`needs_escape`] lists as an
/// escape, so the result is one line that shows no terminal control and parses back to `text`.
/// Runs of characters that need nothing are written with one call.
fn write_escaped<W: fmt::Write + ?Sized>(out: &mut W, text: &str) -> fmt::Result {
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Look at eight bytes at a time (the last ones padded with spaces): most values need
        // no escaping at all.
        let eight: [u8; 8] = match bytes.get(i..i + 8).and_then(|w| w.try_into().ok()) {
            Some(eight) => eight,
            None => {
                let mut eight = [b' '; 8];
                for (slot, byte) in eight.iter_mut().zip(&bytes[i..]) {
                    *slot = *byte;
                }
                eight
            }
        };
        if !needs_look(u64::from_le_bytes(eight)) {
            i += 8;
            continue;
        }
        // Skip to the first byte that needs a look.
        match eight.iter().position(|&b| !is_plain(b)) {
            Some(offset) => i += offset,
            None => {
                i += 8;
                continue;
            }
        }
        let Some(&byte) = bytes.get(i) else { break };
        let (c, len) = if byte < 0x80 {
            (char::from(byte), 1)
        } else {
            // `i` is always on a character boundary: it only moves by whole characters.
            match text.get(i..).and_then(|rest| rest.chars().next()) {
                Some(c) if needs_escape(c) => (c, c.len_utf8()),
                Some(c) => {
                    i += c.len_utf8();
                    continue;
                }
                None => break,
            }
        };
        out.write_str(text.get(clean_from..i).unwrap_or_default())?;
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write_unicode_escape(out, *unit)?;
                }
            }
        }
        i += len;
        clean_from = i;
    }
    out.write_str(text.get(clean_from..).unwrap_or_default())
}

/// Whether `byte` is printable ASCII other than `"` and `\`.
fn is_plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// Whether any of the eight bytes in `word` is not plain printable ASCII other than `"` and
/// `\`: a control (< 0x20), `"`, `\`, DEL, or part of a multi-byte character (≥ 0x80).
/// Each test is exact for "any byte" (the classic SWAR has-zero-byte / has-less-than tricks).
fn needs_look(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    word & HIGH != 0
        || word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
        || has_zero(word ^ (ONES * 0x7f))
}

/// Writes `\uXXXX` (lower-case hex, as serde_json does).
fn write_unicode_escape<W: fmt::Write + ?Sized>(out: &mut W, unit: u16) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.write_str("\\u")?;
    for shift in [12, 8, 4, 0] {
        out.write_char(char::from(HEX[usize::from((unit >> shift) & 0xf)]))?;
    }
    Ok(())
}

/// Removes from a span's fragment the entries the visited fields are about to replace, so a
/// field recorded twice appears once, with its last value (as in `tracing-subscriber`).
struct RemoveKeys<'a>(&'a mut String);

impl RemoveKeys<'_> {
    fn remove(&mut self, field: &Field) {
        if let Some(range) = find_entry(self.0, field_name(field)) {
            self.0.replace_range(range, "");
        }
    }
}

impl Visit for RemoveKeys<'_> {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        self.remove(field);
    }
    fn record_f64(&mut self, field: &Field, _: f64) {
        self.remove(field);
    }
    fn record_i64(&mut self, field: &Field, _: i64) {
        self.remove(field);
    }
    fn record_u64(&mut self, field: &Field, _: u64) {
        self.remove(field);
    }
    fn record_bool(&mut self, field: &Field, _: bool) {
        self.remove(field);
    }
    fn record_str(&mut self, field: &Field, _: &str) {
        self.remove(field);
    }
    fn record_bytes(&mut self, field: &Field, _: &[u8]) {
        self.remove(field);
    }
}

/// The byte range of the entry named `name` in a fragment written by [`JsonVisitor`],
/// including one separating comma, so that removing it leaves a well-formed fragment.
fn find_entry(fragment: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let bytes = fragment.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        // Key: a JSON string starting at `start`.
        let key_end = string_end(bytes, start)?;
        let key = fragment.get(start + 1..key_end - 1)?;
        // `key_end` is on the `:`; the value follows.
        let value_start = key_end + 1;
        let value_end = match bytes.get(value_start)? {
            b'"' => string_end(bytes, value_start)?,
            _ => value_start + scalar_len(bytes.get(value_start..)?),
        };
        if escaped_equals(key, name) {
            return Some(if value_end < bytes.len() {
                start..value_end + 1
            } else if start > 0 {
                start - 1..value_end
            } else {
                start..value_end
            });
        }
        if value_end >= bytes.len() {
            return None;
        }
        start = value_end + 1;
    }
    None
}

/// Length of an unquoted value (number, boolean, `null`, or array of numbers) at the start
/// of `bytes`: up to the first comma outside brackets, or the end.
fn scalar_len(bytes: &[u8]) -> usize {
    let mut depth = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => return i,
            _ => {}
        }
    }
    bytes.len()
}

/// Index just past the JSON string starting at `bytes[start]` (a `"`), or `None` if it is not
/// one or does not end.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Whether `escaped` is `name` escaped by [`write_escaped`], without allocating.
fn escaped_equals(escaped: &str, name: &str) -> bool {
    struct Match<'a>(Option<&'a str>);
    impl fmt::Write for Match<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 = self.0.and_then(|rest| rest.strip_prefix(s));
            Ok(())
        }
    }
    let mut matcher = Match(Some(escaped));
    let _ = write_escaped(&mut matcher, name);
    matcher.0 == Some("")
}

/// Writes `time` as RFC 3339 UTC with microseconds, `2026-11-28T04:12:38.179231Z` (the form
/// `tracing-subscriber` writes), clamped to years 0000–9999.
fn write_timestamp<W: fmt::Write + ?Sized>(out: &mut W, time: SystemTime) -> fmt::Result {
    let micros: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_micros()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_micros()).unwrap_or(i128::MAX),
    };
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, in microseconds since 1970.
    const MIN: i128 = -62_167_219_200_000_000;
    const MAX: i128 = 253_402_300_799_999_999;
    let micros = micros.clamp(MIN, MAX);
    let secs = micros.div_euclid(1_000_000);
    let sub = micros.rem_euclid(1_000_000) as u32;
    // In range after the clamp: at most ±3 million days.
    let days = secs.div_euclid(86_400) as i64;
    let day_secs = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    put_digits(&mut buf[0..4], year.clamp(0, 9999) as u32);
    put_digits(&mut buf[5..7], month);
    put_digits(&mut buf[8..10], day);
    put_digits(&mut buf[11..13], day_secs / 3600);
    put_digits(&mut buf[14..16], day_secs / 60 % 60);
    put_digits(&mut buf[17..19], day_secs % 60);
    put_digits(&mut buf[20..26], sub);
    out.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// Writes `value` as a JSON number: the shortest text that reads back as the same `f64`, as
/// Rust's `Debug` writes it (with a `.0` or an exponent, so it reads back as a float), or
/// `null` when it is not finite. Values with at most three decimals (such as `latency_ms`,
/// whole microseconds in milliseconds) are written without `core::fmt`'s float machinery.
fn write_f64<W: fmt::Write + ?Sized>(out: &mut W, value: f64) -> fmt::Result {
    if !value.is_finite() {
        return out.write_str("null");
    }
    if value.abs() < 1e9 {
        let thousandths = (value * 1000.0).round();
        // Then `value` is the double nearest to `thousandths / 1000`, and, its ulp being far
        // below 0.001, that decimal is also the shortest one that reads back as `value`.
        if thousandths / 1000.0 == value {
            if value.is_sign_negative() {
                out.write_char('-')?;
            }
            let thousandths = thousandths.abs() as u64;
            write_u64(out, thousandths / 1000)?;
            let mut fraction = thousandths % 1000;
            if fraction == 0 {
                return out.write_str(".0");
            }
            let mut digits = *b".000";
            for digit in digits[1..].iter_mut().rev() {
                *digit = b'0' + (fraction % 10) as u8;
                fraction /= 10;
            }
            let len = digits
                .iter()
                .rposition(|&d| d != b'0')
                .map_or(1, |last| last + 1);
            return out.write_str(std::str::from_utf8(&digits[..len]).map_err(|_| fmt::Error)?);
        }
    }
    write!(out, "{value:?}")
}

/// Writes `value` in decimal, without going through `core::fmt`'s padding machinery.
fn write_u64<W: fmt::Write + ?Sized>(out: &mut W, mut value: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.write_str(std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?)
}

/// Writes the low decimal digits of `value` into `digits`, right-aligned.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write_escaped(&mut out, text).unwrap();
        out
    }

    fn parse_back(text: &str) -> String {
        serde_json::from_str(&format!("\"{}\"", escaped(text))).unwrap()
    }

    #[test]
    fn crlf_cannot_start_a_forged_line() {
        let forged =
            "mallory\r\n{\"level\":\"INFO\",\"fields\":{\"event\":\"authn_login_success\"}}";
        let out = escaped(forged);
        assert!(!out.contains('\n') && !out.contains('\r'));
        assert_eq!(
            out,
            "mallory\\r\\n{\\\"level\\\":\\\"INFO\\\",\\\"fields\\\":{\\\"event\\\":\\\"authn_login_success\\\"}}"
        );
        assert_eq!(parse_back(forged), forged);
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped() {
        assert_eq!(escaped(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escaped("\t\u{8}\u{c}\0\u{1f}"), "\\t\\b\\f\\u0000\\u001f");
        assert_eq!(escaped("x\x1b[2K\u{7f}"), "x\\u001b[2K\\u007f");
        // C1 controls (CSI), line separators and bidi overrides.
        assert_eq!(escaped("\u{9b}2K"), "\\u009b2K");
        assert_eq!(escaped("a\u{2028}b\u{2029}"), "a\\u2028b\\u2029");
        assert_eq!(escaped("a\u{202e}b\u{2066}"), "a\\u202eb\\u2066");
    }

    #[test]
    fn unicode_text_is_kept_as_is() {
        let text = "Zoë 東京 🦀 Ω";
        assert_eq!(escaped(text), text);
        assert_eq!(parse_back("é\n🦀\u{202e}"), "é\n🦀\u{202e}");
    }

    fn timestamp(secs: i64, micros: u32) -> String {
        let time = if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, micros * 1000)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                + Duration::from_micros(micros.into())
        };
        let mut out = String::new();
        write_timestamp(&mut out, time).unwrap();
        out
    }

    #[test]
    fn timestamps_at_known_epochs() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            timestamp(951_868_799, 999_999),
            "2000-02-29T23:59:59.999999Z"
        );
        assert_eq!(timestamp(951_868_800, 0), "2000-03-01T00:00:00.000000Z");
        assert_eq!(timestamp(1_709_164_800, 0), "2024-02-29T00:00:00.000000Z");
        assert_eq!(timestamp(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z"); // 2100: no leap day
        assert_eq!(
            timestamp(1_795_839_158, 179_231),
            "2026-11-28T04:12:38.179231Z"
        );
        assert_eq!(timestamp(-2_203_891_200, 0), "1900-03-01T00:00:00.000000Z");
        assert_eq!(
            timestamp(-62_167_219_200 - 10, 0),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(timestamp(1_234_567_890, 0), "2009-02-13T23:31:30.000000Z");
        assert_eq!(timestamp(2_147_483_647, 0), "2038-01-19T03:14:07.000000Z");
        assert_eq!(timestamp(-1, 0), "1969-12-31T23:59:59.000000Z");
        assert_eq!(
            timestamp(-86_400 * 365, 500_000),
            "1969-01-01T00:00:00.500000Z"
        );
        assert_eq!(timestamp(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        assert_eq!(
            timestamp(253_402_300_800 * 2, 0),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn every_day_from_1969_to_2101_matches_a_day_count() {
        let mut days = -365i64;
        for year in 1969i64..=2101 {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (month, length) in lengths.into_iter().enumerate() {
                for day in 1..=length {
                    assert_eq!(civil_from_days(days), (year, month as u32 + 1, day));
                    days += 1;
                }
            }
        }
    }

    /// A subscriber writing [`JsonLines`] into a buffer, for this thread.
    fn capture() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Buf(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(JsonLinesFields::new())
            .event_format(JsonLines::new())
            .with_writer(move || writer.clone())
            .finish();
        (buf, tracing::subscriber::set_default(subscriber))
    }

    fn lines(buf: &Mutex<Vec<u8>>) -> Vec<serde_json::Value> {
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn line_has_the_shape_of_tracing_subscribers_json() {
        let (buf, _guard) = capture();
        let span = tracing::info_span!("request", request_id = "r1", client_ip = %"127.0.0.1");
        span.in_scope(|| {
            tracing::info!(target: "app", status = 200u16, latency_ms = 0.5, ok = true, neg = -3i64, "done {}", 1)
        });
        tracing::warn!(bytes = &b"ab"[..], nan = f64::NAN, whole = 2.0, "outside");
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let first = text.lines().next().unwrap();
        let after_timestamp = &first[first.find("\",\"level\"").unwrap()..];
        assert_eq!(
            after_timestamp,
            r#"","level":"INFO","fields":{"message":"done 1","status":200,"latency_ms":0.5,"ok":true,"neg":-3},"target":"app","span":{"request_id":"r1","client_ip":"127.0.0.1","name":"request"}}"#
        );
        assert!(first.starts_with("{\"timestamp\":\"20"));
        let lines = lines(&buf);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["fields"]["bytes"], serde_json::json!([97, 98]));
        assert!(lines[1]["fields"]["nan"].is_null());
        assert!(lines[1]["fields"]["whole"].is_f64());
        assert!(lines[1].get("span").is_none());
    }

    #[test]
    fn only_the_current_spans_fields_are_written() {
        let (buf, _guard) = capture();
        let outer = tracing::info_span!("outer", tenant = "acme");
        let inner = outer.in_scope(|| tracing::info_span!("inner", step = 2u64));
        inner.in_scope(|| tracing::info!("in inner"));
        outer.in_scope(|| tracing::info!("in outer"));
        tracing::info!(parent: &outer, "explicit parent");
        tracing::info!(parent: None, "root");
        let lines = lines(&buf);
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({"step": 2, "name": "inner"})
        );
        assert_eq!(
            lines[1]["span"],
            serde_json::json!({"tenant": "acme", "name": "outer"})
        );
        assert_eq!(lines[2]["span"]["name"], "outer");
        assert!(lines[3].get("span").is_none());
    }

    #[test]
    fn fields_recorded_later_are_added_and_replace_earlier_values() {
        let (buf, _guard) = capture();
        let span = tracing::info_span!(
            "request",
            request_id = "r1",
            principal = tracing::field::Empty,
            status = tracing::field::Empty,
            bytes = tracing::field::Empty,
        );
        span.record("principal", "alice");
        span.in_scope(|| tracing::info!("first"));
        span.record("status", 200u64);
        span.record("bytes", &b"\x01,"[..]);
        span.record("principal", "bob \"b\", \\");
        span.record("status", 404u64);
        span.record("request_id", "r2");
        span.in_scope(|| tracing::info!("second"));
        let lines = lines(&buf);
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({"request_id": "r1", "principal": "alice", "name": "request"})
        );
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let second = text.lines().nth(1).unwrap();
        assert!(
            second.ends_with(r#""span":{"bytes":[1,44],"principal":"bob \"b\", \\","status":404,"request_id":"r2","name":"request"}}"#),
            "{second}"
        );
    }

    #[test]
    fn find_entry_removes_exactly_one_entry() {
        let fragment = r#""a":"x\",\"b\":1","b":[1,2],"c":3.5,"d":true"#;
        let remove = |name: &str| {
            let mut f = fragment.to_owned();
            if let Some(r) = find_entry(&f, name) {
                f.replace_range(r, "");
            }
            f
        };
        assert_eq!(remove("a"), r#""b":[1,2],"c":3.5,"d":true"#);
        assert_eq!(remove("b"), r#""a":"x\",\"b\":1","c":3.5,"d":true"#);
        assert_eq!(remove("c"), r#""a":"x\",\"b\":1","b":[1,2],"d":true"#);
        assert_eq!(remove("d"), r#""a":"x\",\"b\":1","b":[1,2],"c":3.5"#);
        assert_eq!(remove("e"), fragment);
        assert_eq!(find_entry(r#""only":1"#, "only"), Some(0..8));
        assert_eq!(find_entry("", "x"), None);
        assert_eq!(find_entry("\"broken", "x"), None);
    }

    #[test]
    fn debug_and_display_values_are_escaped() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Evil(&'static str);
        let (buf, _guard) = capture();
        tracing::info!(user = %"eve\r\nforged", dbg = ?Evil("a\"\n"), "line\nbreak");
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line = &lines(&buf)[0];
        assert_eq!(line["fields"]["user"], "eve\r\nforged");
        assert_eq!(line["fields"]["dbg"], "Evil(\"a\\\"\\n\")");
        assert_eq!(line["fields"]["message"], "line\nbreak");
    }

    #[test]
    fn needs_look_flags_exactly_the_bytes_to_escape() {
        for byte in 0..=255u8 {
            let plain = (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\';
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = byte;
                assert_eq!(
                    needs_look(u64::from_le_bytes(word)),
                    !plain,
                    "{byte:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn integers_are_written_in_full() {
        for value in [0, 7, 10, 200, 65_535, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, value).unwrap();
            assert_eq!(out, value.to_string());
        }
        let (buf, _guard) = capture();
        tracing::info!(min = i64::MIN, max = u64::MAX, zero = 0i64);
        let line = &lines(&buf)[0];
        assert_eq!(line["fields"]["min"], i64::MIN);
        assert_eq!(line["fields"]["max"], u64::MAX);
        assert_eq!(line["fields"]["zero"], 0);
    }

    fn one_line_that_parses_back(text: &str) -> Result<(), TestCaseError> {
        let (buf, _guard) = capture();
        let span = tracing::info_span!("s", principal = tracing::field::Empty);
        span.record("principal", text);
        span.in_scope(|| tracing::info!(value = text, shown = %text, "{}", text));
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        prop_assert_eq!(out.matches('\n').count(), 1);
        prop_assert!(out.ends_with('\n'));
        prop_assert!(!out
            .chars()
            .any(|c| c != '\n' && needs_escape(c) && c != '\\'));
        let line: serde_json::Value = serde_json::from_str(&out).unwrap();
        let text = serde_json::Value::from(text);
        prop_assert_eq!(&line["fields"]["value"], &text);
        prop_assert_eq!(&line["fields"]["shown"], &text);
        prop_assert_eq!(&line["fields"]["message"], &text);
        prop_assert_eq!(&line["span"]["principal"], &text);
        Ok(())
    }

    fn f64_text(value: f64) -> String {
        let mut out = String::new();
        write_f64(&mut out, value).unwrap();
        out
    }

    #[test]
    fn floats_are_written_as_debug_writes_them() {
        for value in [
            0.0,
            -0.0,
            0.5,
            0.341,
            1.0,
            2.25,
            0.001,
            -7.125,
            999_999_999.999,
            1e9,
            1e-7,
            0.1 + 0.2,
            1e300,
        ] {
            assert_eq!(f64_text(value), format!("{value:?}"), "{value}");
        }
        assert_eq!(f64_text(f64::NAN), "null");
        assert_eq!(f64_text(f64::NEG_INFINITY), "null");
    }

    proptest! {
        #[test]
        fn any_float_is_written_as_debug_writes_it(value in any::<f64>(), micros in any::<u32>()) {
            prop_assume!(value.is_finite());
            prop_assert_eq!(f64_text(value), format!("{value:?}"));
            let latency = f64::from(micros) / 1000.0;
            prop_assert_eq!(f64_text(latency), format!("{latency:?}"));
            prop_assert_eq!(f64_text(-latency), format!("{:?}", -latency));
        }

        #[test]
        fn needs_look_is_exact_for_any_word(word in any::<[u8; 8]>()) {
            let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\';
            prop_assert_eq!(needs_look(u64::from_le_bytes(word)), !word.iter().all(plain));
        }

        #[test]
        fn any_string_is_one_line_that_parses_back(text in any::<String>()) {
            one_line_that_parses_back(&text)?;
        }

        #[test]
        fn any_ascii_heavy_string_is_one_line_that_parses_back(
            text in "[\\x00-\\x7f\\x{80}-\\x{a0}\\x{2028}\\x{202e}é🦀]{0,80}"
        ) {
            one_line_that_parses_back(&text)?;
        }
    }
}
