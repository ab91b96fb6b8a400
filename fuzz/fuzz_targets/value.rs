//! Value encodings: for every kind, the JSON written for a text value is valid JSON, and for the
//! kinds whose text is the JSON (text, bytes, json, jsonb, integers) reading that JSON back for
//! COPY gives the original text again. Arbitrary JSON values going into a column either encode or
//! give an error, never panic.
#![no_main]

use arbitrary::Arbitrary;
use dbfixtures::catalog::ValueKind;
use dbfixtures::format::copy_text::CopyRow;
use dbfixtures::format::value::{push_copy_field, push_json, timestamp_json};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    kind: u8,
    null: bool,
    text: &'a [u8],
}

const KINDS: [ValueKind; 9] = [
    ValueKind::Integer,
    ValueKind::Number,
    ValueKind::Boolean,
    ValueKind::Json,
    ValueKind::Jsonb,
    ValueKind::Bytes,
    ValueKind::Structured,
    ValueKind::DateTime,
    ValueKind::Text,
];

fn decode_copy(field: &[u8]) -> Option<Vec<u8>> {
    let mut row = CopyRow::new();
    assert_eq!(row.parse(field).expect("encoded field decodes"), 1);
    row.get(0).map(<[u8]>::to_vec)
}

fuzz_target!(|input: Input| {
    let kind = KINDS[usize::from(input.kind) % KINDS.len()];
    let _ = timestamp_json(input.text);

    // Fixture JSON → COPY field, for any JSON value.
    if let Ok(raw) = serde_json::from_slice::<&RawValue>(input.text) {
        let mut out = Vec::new();
        if push_copy_field(&mut out, kind, raw).is_ok() {
            let _ = decode_copy(&out);
        }
    }

    // Text form → fixture JSON → COPY field.
    let Ok(text) = std::str::from_utf8(input.text) else {
        return;
    };
    let text = (!input.null).then_some(text.as_bytes());
    let round_trips = match kind {
        ValueKind::Text | ValueKind::Bytes => true,
        // The server only ever sends valid JSON documents and integers.
        ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured => {
            text.is_none_or(|t| serde_json::from_slice::<&RawValue>(t).is_ok())
        }
        // As the server prints integers: no leading zero, no "-0".
        ValueKind::Integer => text.is_none_or(|t| {
            let digits = t.strip_prefix(b"-").unwrap_or(t);
            !digits.is_empty()
                && digits.iter().all(u8::is_ascii_digit)
                && (digits == b"0" || digits[0] != b'0')
                && t != b"-0"
        }),
        _ => false,
    };
    if !round_trips && text.is_some() {
        // Other kinds only promise valid JSON for server-shaped text; still must not panic.
        let mut json = Vec::new();
        push_json(&mut json, kind, text);
        return;
    }
    let mut json = Vec::new();
    push_json(&mut json, kind, text);
    let raw: &RawValue = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("invalid JSON {:?}: {e}", String::from_utf8_lossy(&json)));
    let mut field = Vec::new();
    push_copy_field(&mut field, kind, raw)
        .unwrap_or_else(|e| panic!("{kind:?} {:?} rejected: {}", raw.get(), e.0));
    let back = decode_copy(&field);
    match kind {
        // json keeps the document verbatim; a wrapped document is unwrapped to the same text.
        ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured => {
            let back = back.map(|b| String::from_utf8(b).unwrap());
            let want = text.map(|t| std::str::from_utf8(t).unwrap().trim().to_string());
            match (back, want) {
                (Some(b), Some(w)) => assert_eq!(b.trim(), w),
                (b, w) => assert_eq!(b, w),
            }
        }
        _ => assert_eq!(back.as_deref(), text),
    }
});
