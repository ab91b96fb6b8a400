//! Value encodings between a column's text form (what COPY and SQLite give) and its fixture JSON.
//!
//! Rules (the README's format section documents the same):
//! - integer: JSON number, digit for digit (never through a float).
//! - numeric/float: JSON number; NaN, Infinity and -Infinity as strings.
//! - boolean: true/false.
//! - json: the stored document verbatim (less any whitespace around it); jsonb: its canonical
//!   text. A SQL NULL is `null`; a
//!   stored JSON `null` document (and a document that is itself an object whose only key is
//!   `"$json"`) is wrapped as `{"$json": <document>}` so the two never meet.
//! - bytea: PostgreSQL's JSON rendering, the string `"\\x0a1b"`.
//! - timestamp / timestamptz: PostgreSQL's JSON rendering (`2024-01-02T03:04:05+00:00`).
//! - arrays, composites and other types whose JSON differs from their text: rendered by the
//!   server with to_json (already JSON here); an object whose only key is `$json` (an hstore or
//!   composite can render so) is wrapped as for json.
//! - everything else: the text form as a JSON string.

use serde_json::value::RawValue;

use super::copy_text::{push_field, push_json_string, push_null};
use crate::catalog::ValueKind;

/// Appends the JSON for one value of `kind` given its text form (`None` = SQL NULL).
pub fn push_json(out: &mut Vec<u8>, kind: ValueKind, text: Option<&[u8]>) {
    let Some(v) = text else {
        out.extend_from_slice(b"null");
        return;
    };
    match kind {
        ValueKind::Integer => out.extend_from_slice(v),
        ValueKind::Number => match v {
            b"NaN" | b"Infinity" | b"-Infinity" => {
                out.push(b'"');
                out.extend_from_slice(v);
                out.push(b'"');
            }
            _ => out.extend_from_slice(v),
        },
        ValueKind::Boolean => out.extend_from_slice(match v {
            b"t" | b"1" | b"true" => b"true",
            _ => b"false",
        }),
        // Structured values too: an hstore or composite rendered as `{"$json": ...}` would
        // otherwise read back as the wrapper.
        ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured => {
            // json keeps the whitespace around a document too (`' [1] '::json`), but a fixture
            // value cannot carry it: drop it here, so that a dump of the loaded document is the
            // same bytes as this one.
            let v = v.trim_ascii();
            if needs_json_wrap(v) {
                out.extend_from_slice(b"{\"$json\":");
                out.extend_from_slice(v);
                out.push(b'}');
            } else {
                out.extend_from_slice(v);
            }
        }
        ValueKind::DateTime => push_json_string(out, &timestamp_json(v)),
        ValueKind::Bytes | ValueKind::Text => push_json_string(out, v),
    }
}

/// A stored JSON document that would read back as something else: `null`, or an object whose
/// only key is `$json` (our wrapper), however spelled (`"\u0024json"` is the same key).
fn needs_json_wrap(v: &[u8]) -> bool {
    let t = v.trim_ascii();
    if t == b"null" {
        return true;
    }
    if t.first() == Some(&b'{')
        && t.windows(7)
            .any(|w| w == b"\"$json\"" || w.starts_with(b"\\u"))
    {
        return json_wrapper(t).is_some();
    }
    false
}

/// If `raw` is an object with exactly one key, `$json`, returns the wrapped document.
pub fn json_wrapper(raw: &[u8]) -> Option<&RawValue> {
    let map: std::collections::BTreeMap<String, &RawValue> = serde_json::from_slice(raw).ok()?;
    if map.len() == 1 {
        map.get("$json").copied()
    } else {
        None
    }
}

/// PostgreSQL's timestamp text (`2024-01-02 03:04:05+00`, `... BC`) to its JSON rendering
/// (`2024-01-02T03:04:05+00:00`): `T` between date and time, and a zone offset always with
/// minutes (as to_json writes it).
pub fn timestamp_json(v: &[u8]) -> Vec<u8> {
    let mut s = v.to_vec();
    // The date part is digits and '-'; the first space after it separates date and time.
    let Some(sp) = s.iter().position(|&c| c == b' ') else {
        return s; // infinity / -infinity
    };
    if !s.get(sp + 1).is_some_and(u8::is_ascii_digit) {
        return s;
    }
    s[sp] = b'T';
    // The offset starts at the first '+' or '-' after the time's start.
    let time_end = s[sp + 1..]
        .iter()
        .position(|&c| c == b' ')
        .map(|p| sp + 1 + p)
        .unwrap_or(s.len());
    if let Some(off) = s[sp + 1..time_end]
        .iter()
        .position(|&c| c == b'+' || c == b'-')
        .map(|p| sp + 1 + p)
    {
        if !s[off..time_end].contains(&b':') {
            s.splice(time_end..time_end, *b":00");
        }
    }
    s
}

/// Why a JSON value cannot go into a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

/// Appends the COPY text field for one fixture value going into a column of `kind`.
/// Structured kinds are passed as their JSON text (the loader converts them on the server).
pub fn push_copy_field(
    out: &mut Vec<u8>,
    kind: ValueKind,
    raw: &RawValue,
) -> Result<(), ValueError> {
    let text = raw.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    match kind {
        ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured => {
            if text == "null" {
                push_null(out);
            } else if let Some(inner) = (first == b'{')
                .then(|| json_wrapper(text.as_bytes()))
                .flatten()
            {
                push_field(out, inner.get().as_bytes());
            } else {
                push_field(out, text.as_bytes());
            }
            Ok(())
        }
        _ => match first {
            b'n' => {
                push_null(out);
                Ok(())
            }
            b'"' => {
                let s: std::borrow::Cow<'_, str> = serde_json::from_str(text)
                    .map_err(|e| ValueError(format!("bad string: {e}")))?;
                if kind == ValueKind::Integer && s.parse::<i128>().is_err() {
                    return Err(ValueError(format!(
                        "expected an integer, found the string {text}"
                    )));
                }
                push_field(out, s.as_bytes());
                Ok(())
            }
            b't' | b'f' => match kind {
                ValueKind::Boolean | ValueKind::Text => {
                    push_field(out, if first == b't' { b"t" } else { b"f" });
                    Ok(())
                }
                _ => Err(ValueError(format!(
                    "expected {}, found {text}",
                    kind_word(kind)
                ))),
            },
            b'{' | b'[' => Err(ValueError(format!(
                "expected {}, found a JSON {}",
                kind_word(kind),
                if first == b'{' { "object" } else { "array" }
            ))),
            _ => {
                // a number
                match kind {
                    ValueKind::Integer if text.contains(['.', 'e', 'E']) => {
                        Err(ValueError(format!("expected an integer, found {text}")))
                    }
                    ValueKind::Boolean | ValueKind::Bytes => Err(ValueError(format!(
                        "expected {}, found {text}",
                        kind_word(kind)
                    ))),
                    _ => {
                        push_field(out, text.as_bytes());
                        Ok(())
                    }
                }
            }
        },
    }
}

fn kind_word(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Integer => "an integer",
        ValueKind::Number => "a number",
        ValueKind::Boolean => "true or false",
        ValueKind::Bytes => "a \"\\\\x...\" hex string",
        ValueKind::DateTime => "a date-time string",
        _ => "a string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(kind: ValueKind, text: Option<&str>) -> String {
        let mut out = Vec::new();
        push_json(&mut out, kind, text.map(str::as_bytes));
        String::from_utf8(out).unwrap()
    }

    fn copy(kind: ValueKind, raw: &str) -> Result<String, ValueError> {
        let raw: Box<RawValue> = serde_json::from_str(raw).unwrap();
        let mut out = Vec::new();
        push_copy_field(&mut out, kind, &raw).map(|_| String::from_utf8(out).unwrap())
    }

    #[test]
    fn dump_side_encodings() {
        assert_eq!(
            json(ValueKind::Integer, Some("-9223372036854775808")),
            "-9223372036854775808"
        );
        assert_eq!(json(ValueKind::Number, Some("NaN")), "\"NaN\"");
        assert_eq!(json(ValueKind::Number, Some("-0")), "-0");
        assert_eq!(json(ValueKind::Boolean, Some("t")), "true");
        assert_eq!(json(ValueKind::Text, None), "null");
        assert_eq!(json(ValueKind::Jsonb, Some("null")), "{\"$json\":null}");
        assert_eq!(
            json(ValueKind::Json, Some("{\"$json\": 1}")),
            "{\"$json\":{\"$json\": 1}}"
        );
        assert_eq!(
            json(ValueKind::Json, Some("{\"$json\": 1, \"b\": 2}")),
            "{\"$json\": 1, \"b\": 2}"
        );
        assert_eq!(json(ValueKind::Bytes, Some("\\x00ff")), "\"\\\\x00ff\"");
        assert_eq!(
            json(ValueKind::Json, Some("{\"\\u0024json\": 1}")),
            "{\"$json\":{\"\\u0024json\": 1}}"
        );
        assert_eq!(
            json(ValueKind::Structured, Some("{\"$json\": \"x\"}")),
            "{\"$json\":{\"$json\": \"x\"}}"
        );
        assert_eq!(json(ValueKind::Structured, Some("[1]")), "[1]");
        assert_eq!(json(ValueKind::Text, Some("a\"b\n")), "\"a\\\"b\\n\"");
    }

    #[test]
    fn timestamps_match_to_json() {
        let t = |s: &str| String::from_utf8(timestamp_json(s.as_bytes())).unwrap();
        assert_eq!(t("2024-01-01 10:00:00+00"), "2024-01-01T10:00:00+00:00");
        assert_eq!(
            t("2024-01-01 10:00:00.123+05:30"),
            "2024-01-01T10:00:00.123+05:30"
        );
        assert_eq!(
            t("1900-01-01 05:21:10+05:21:10"),
            "1900-01-01T05:21:10+05:21:10"
        );
        assert_eq!(
            t("0044-03-15 10:00:00+00 BC"),
            "0044-03-15T10:00:00+00:00 BC"
        );
        assert_eq!(t("0044-03-15 10:00:00.5 BC"), "0044-03-15T10:00:00.5 BC");
        assert_eq!(t("12345-01-01 00:00:00"), "12345-01-01T00:00:00");
        assert_eq!(t("2024-01-01 10:00:00-03"), "2024-01-01T10:00:00-03:00");
        assert_eq!(t("infinity"), "infinity");
        assert_eq!(t("-infinity"), "-infinity");
    }

    #[test]
    fn load_side_encodings_and_errors() {
        assert_eq!(copy(ValueKind::Integer, "12").unwrap(), "12");
        assert_eq!(copy(ValueKind::Integer, "\"12\"").unwrap(), "12");
        assert!(copy(ValueKind::Integer, "1.5")
            .unwrap_err()
            .0
            .contains("integer"));
        assert!(copy(ValueKind::Integer, "\"x\"").is_err());
        assert!(copy(ValueKind::Integer, "true").is_err());
        assert_eq!(copy(ValueKind::Text, "null").unwrap(), "\\N");
        assert_eq!(copy(ValueKind::Text, "\"a\\tb\"").unwrap(), "a\\tb");
        assert!(copy(ValueKind::Text, "{}")
            .unwrap_err()
            .0
            .contains("object"));
        assert_eq!(copy(ValueKind::Boolean, "false").unwrap(), "f");
        assert_eq!(copy(ValueKind::Jsonb, "null").unwrap(), "\\N");
        assert_eq!(copy(ValueKind::Jsonb, "{\"$json\":null}").unwrap(), "null");
        assert_eq!(
            copy(ValueKind::Json, "{\"a\":\"x\\ty\"}").unwrap(),
            "{\"a\":\"x\\\\ty\"}"
        );
        assert_eq!(copy(ValueKind::Json, "\"s\"").unwrap(), "\"s\"");
        assert_eq!(copy(ValueKind::Number, "\"NaN\"").unwrap(), "NaN");
        assert_eq!(copy(ValueKind::Number, "1e400").unwrap(), "1e400");
    }
}
