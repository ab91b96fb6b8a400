//! COPY text format: decoding arbitrary lines never panics; encoding any byte string and decoding
//! it gives the bytes back; a row of encoded fields splits back into the same fields; the JSON
//! string encoder agrees with serde_json on every valid UTF-8 string.
#![no_main]

use dbfixtures::format::copy_text::{push_field, push_json_string, push_null, CopyRow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut row = CopyRow::new();
    if let Ok(n) = row.parse(data) {
        assert_eq!(n, row.len());
        assert_eq!(row.iter().count(), n);
    }

    // Split the input into fields at 0xff bytes; 0xfe alone stands for NULL.
    let fields: Vec<Option<&[u8]>> = data
        .split(|&b| b == 0xff)
        .map(|f| if f == [0xfe] { None } else { Some(f) })
        .collect();
    let mut line = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        match f {
            Some(v) => push_field(&mut line, v),
            None => push_null(&mut line),
        }
    }
    assert!(!line.contains(&b'\n'));
    line.push(b'\n');
    let n = row.parse(&line).expect("encoded row must decode");
    assert_eq!(n, fields.len());
    for (i, f) in fields.iter().enumerate() {
        assert_eq!(row.get(i), *f, "field {i}");
    }

    if let Ok(s) = std::str::from_utf8(data) {
        let mut out = Vec::new();
        push_json_string(&mut out, s.as_bytes());
        assert_eq!(out, serde_json::to_vec(s).unwrap());
    }
});
