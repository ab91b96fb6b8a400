//! PostgreSQL `COPY` text format: decoding rows read from `COPY ... TO STDOUT`
//! and encoding fields written to `COPY ... FROM STDIN`, plus the JSON string
//! encoder used to write decoded text into fixture files.
//!
//! # Format (PostgreSQL docs, "COPY" → "Text Format")
//!
//! * A row is one line ending in `\n`; fields are separated by a tab.
//! * A field that is exactly the two bytes `\N` (before any de-escaping) is SQL
//!   NULL. Anything else is text, so `\\N` is the two-character text `\N`, and an
//!   empty field is the empty string.
//! * Backslash escapes: `\b \f \n \r \t \v` (control characters), `\\`,
//!   `\` + 1–3 octal digits (value taken modulo 256, as the server does),
//!   `\x` + 1–2 hex digits, and a backslash before any other byte stands for
//!   that byte (`\q` → `q`, `\x` without a hex digit → `x`, `\<tab>` → a tab
//!   inside the field, not a separator, and `\.` → `.`; only the caller can
//!   tell an end-of-data line `\.` from a row, and the server sends none
//!   on `COPY ... TO STDOUT`).
//!
//! # Invariants
//!
//! * Decoding ([`CopyRow::parse`]) accepts every escape above, although the
//!   server only ever emits `\\ \b \f \n \r \t \v` and `\N`. Only the trailing
//!   `\n` is stripped; a `\r` is data (the server never emits a raw one). A
//!   backslash at the very end of a line escapes nothing and is an error.
//! * Decoded fields are raw bytes: the server sends UTF-8, but octal and hex
//!   escapes can produce any byte, so no UTF-8 validation is done here.
//! * Encoding ([`push_field`]) escapes only `\`, tab, newline and carriage
//!   return, so its output never contains a separator, a row terminator, the
//!   NULL marker `\N` or the end-of-data marker `\.`. For every byte string `v`,
//!   parsing the output of `push_field(v)` yields `v` again. (PostgreSQL itself
//!   rejects NUL bytes in text; that is the server's check, not ours.)
//! * [`push_json_string`] produces exactly the bytes `serde_json` would for the
//!   same string, provided the input is valid UTF-8 (it is not re-validated).
//! * No per-field allocation: [`CopyRow`] keeps one decoded byte buffer and one
//!   span list that are cleared and reused for each row; plain runs of bytes
//!   are found with a single scan and copied in bulk.

use std::fmt;

/// One decoded COPY text row. Reuse a single value for a whole `COPY` stream:
/// [`CopyRow::parse`] overwrites the previous row without freeing its buffers.
#[derive(Debug, Clone, Default)]
pub struct CopyRow {
    /// Decoded bytes of all non-NULL fields, back to back.
    buf: Vec<u8>,
    /// One entry per field: `None` for SQL NULL, else `start..end` in `buf`.
    fields: Vec<Option<(usize, usize)>>,
}

impl CopyRow {
    /// An empty row with no buffers allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode `line` into self, replacing previous content, and return the
    /// number of fields. `line` is one row without its terminator; a single
    /// trailing `\n` is also accepted and stripped (a `\r` is never stripped).
    /// An empty line is one empty-string field; `a\t` is two fields.
    ///
    /// On error the row content is unspecified (but safe to reuse).
    pub fn parse(&mut self, line: &[u8]) -> Result<usize, CopyTextError> {
        let line = match line.split_last() {
            Some((b'\n', rest)) => rest,
            _ => line,
        };
        self.buf.clear();
        self.fields.clear();
        // Decoding never makes the text longer, so one reservation suffices.
        self.buf.reserve(line.len());

        let mut i = 0;
        loop {
            // `i` is the start of a field.
            if is_null_marker(line, i) {
                self.fields.push(None);
                i += 2;
            } else {
                let start = self.buf.len();
                i = decode_field(&mut self.buf, line, i)?;
                self.fields.push(Some((start, self.buf.len())));
            }
            if i >= line.len() {
                break;
            }
            // `line[i]` is the tab that ends the field just read.
            i += 1;
        }
        Ok(self.fields.len())
    }

    /// Number of fields in the last parsed row.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True before the first successful [`CopyRow::parse`]; a parsed row always
    /// has at least one field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `None` for SQL NULL, else the decoded bytes (the server sends UTF-8 text).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`: check the field count against the column count
    /// first, so that a short row cannot pass for NULLs.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.fields[i].map(|(start, end)| &self.buf[start..end])
    }

    /// The fields of the last parsed row, in order, as [`CopyRow::get`] gives them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&[u8]>> + '_ {
        self.fields
            .iter()
            .map(|span| span.map(|(start, end)| &self.buf[start..end]))
    }
}

/// A malformed COPY text row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTextError {
    /// Human-readable description, including the byte offset in the line.
    pub message: String,
}

impl fmt::Display for CopyTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CopyTextError {}

/// True if the field starting at `i` is exactly the raw NULL marker `\N`.
#[inline]
fn is_null_marker(line: &[u8], i: usize) -> bool {
    line.get(i..i + 2) == Some(b"\\N") && matches!(line.get(i + 2), None | Some(b'\t'))
}

/// Decode the field starting at `i` onto `out` and return the index of the tab
/// ending it, or `line.len()` for the last field.
#[inline]
fn decode_field(out: &mut Vec<u8>, line: &[u8], mut i: usize) -> Result<usize, CopyTextError> {
    loop {
        let rest = &line[i..];
        let Some(p) = rest.iter().position(|&b| b == b'\t' || b == b'\\') else {
            out.extend_from_slice(rest);
            return Ok(line.len());
        };
        out.extend_from_slice(&rest[..p]);
        i += p;
        if line[i] == b'\t' {
            return Ok(i);
        }
        let Some(&c) = line.get(i + 1) else {
            return Err(CopyTextError {
                message: format!(
                    "COPY text row ends with a lone backslash (byte {i} of {})",
                    line.len()
                ),
            });
        };
        i += 2;
        let byte = match c {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u16::from(c - b'0');
                for _ in 0..2 {
                    match line.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u16::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // Up to 0o777: the server keeps the low 8 bits.
                (value & 0xff) as u8
            }
            b'x' => match line.get(i).copied().and_then(hex_value) {
                Some(high) => {
                    i += 1;
                    match line.get(i).copied().and_then(hex_value) {
                        Some(low) => {
                            i += 1;
                            high * 16 + low
                        }
                        None => high,
                    }
                }
                None => b'x',
            },
            other => other,
        };
        out.push(byte);
    }
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Append `value` escaped as one COPY text field (no separator) to `out`:
/// escape backslash, tab, newline, carriage return (as `\\`, `\t`, `\n`, `\r`);
/// everything else verbatim.
pub fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    out.reserve(value.len());
    let mut rest = value;
    while let Some(p) = rest
        .iter()
        .position(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(&rest[..p]);
        let escaped = match rest[p] {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            _ => b'r',
        };
        out.extend_from_slice(&[b'\\', escaped]);
        rest = &rest[p + 1..];
    }
    out.extend_from_slice(rest);
}

/// Append the NULL marker `\N`.
pub fn push_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\\N");
}

/// Whether any of the eight bytes of `w` is one that a JSON string escapes: below 0x20, `"`
/// or `\\`. Exact for the word as a whole (the classic "has a byte less than / equal to" bit
/// tricks: a borrow can mark bytes after a matching one, never a word without one).
#[inline(always)]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    (below_space | zero(quote) | zero(backslash)) & HIGH != 0
}

/// Append `value` as a JSON string literal (with quotes), escaping per RFC 8259
/// exactly as serde_json does: `"` and `\` with a backslash, control characters
/// as `\b \f \n \r \t` or `\u00XX` (lowercase hex); everything else, including
/// DEL, non-ASCII UTF-8 and U+2028, verbatim. `value` must be valid UTF-8 for
/// the output to be valid JSON; it is not checked.
pub fn push_json_string(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(value.len() + 2);
    out.push(b'"');
    // Eight bytes at a time up to the first word holding a byte to escape (most strings have
    // none): a byte-by-byte search was the larger part of rendering short strings.
    let words = value
        .chunks_exact(8)
        .take_while(|w| !needs_escape(u64::from_le_bytes((*w).try_into().expect("8 bytes"))))
        .count()
        * 8;
    let special = |b: &u8| *b < 0x20 || *b == b'"' || *b == b'\\';
    let clean = value[words..]
        .iter()
        .position(special)
        .map_or(value.len(), |p| words + p);
    // Up to the first byte to escape (usually the whole string) in one copy.
    out.extend_from_slice(&value[..clean]);
    let mut rest = &value[clean..];
    while let Some(p) = rest.iter().position(special) {
        out.extend_from_slice(&rest[..p]);
        let b = rest[p];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]),
        }
        rest = &rest[p + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `line` and return its fields as owned values.
    fn fields(line: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut row = CopyRow::new();
        let n = row.parse(line).expect("row should parse");
        assert_eq!(n, row.len());
        row.iter().map(|f| f.map(<[u8]>::to_vec)).collect()
    }

    fn text(s: &[u8]) -> Option<Vec<u8>> {
        Some(s.to_vec())
    }

    fn field(value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_field(&mut out, value);
        out
    }

    fn json(value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_json_string(&mut out, value);
        out
    }

    /// Tiny deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }

        /// Bytes biased towards the ones that matter to the COPY format.
        fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            const SPECIAL: &[u8] = b"\\\t\n\rNx.07 ";
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| {
                    if self.below(2) == 0 {
                        SPECIAL[self.below(SPECIAL.len() as u64)]
                    } else {
                        self.next() as u8
                    }
                })
                .collect()
        }
    }

    #[test]
    fn plain_fields() {
        assert_eq!(
            fields(b"1\talice\t2024-01-02 03:04:05+00"),
            vec![text(b"1"), text(b"alice"), text(b"2024-01-02 03:04:05+00")]
        );
        assert_eq!(fields(b"only"), vec![text(b"only")]);
    }

    #[test]
    fn strips_only_trailing_newline() {
        assert_eq!(fields(b"a\tb\n"), vec![text(b"a"), text(b"b")]);
        assert_eq!(fields(b"a\tb\r\n"), vec![text(b"a"), text(b"b\r")]);
        assert_eq!(fields(b"a\r"), vec![text(b"a\r")]);
        assert_eq!(fields(b"\n"), vec![text(b"")]);
    }

    #[test]
    fn empty_string_vs_null() {
        assert_eq!(fields(b""), vec![text(b"")]);
        assert_eq!(fields(b"\\N"), vec![None]);
        assert_eq!(fields(b"\\N\n"), vec![None]);
        assert_eq!(fields(b"\t"), vec![text(b""), text(b"")]);
        assert_eq!(
            fields(b"\\N\t\t\\N"),
            vec![None, text(b""), None],
            "NULL, empty, NULL"
        );
        assert_eq!(fields(b"a\t\\N\tb"), vec![text(b"a"), None, text(b"b")]);
    }

    #[test]
    fn trailing_and_leading_empty_fields() {
        assert_eq!(fields(b"a\t"), vec![text(b"a"), text(b"")]);
        assert_eq!(fields(b"\ta"), vec![text(b""), text(b"a")]);
        assert_eq!(fields(b"a\t\\N\t"), vec![text(b"a"), None, text(b"")]);
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(
            fields(b"\\b\t\\f\t\\n\t\\r\t\\t\t\\v\t\\\\"),
            vec![
                text(b"\x08"),
                text(b"\x0c"),
                text(b"\n"),
                text(b"\r"),
                text(b"\t"),
                text(b"\x0b"),
                text(b"\\"),
            ]
        );
        assert_eq!(
            fields(b"line1\\nline2\\ttab\\\\back"),
            vec![text(b"line1\nline2\ttab\\back")]
        );
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(
            fields(b"\\101\t\\0\t\\7\t\\12\t\\1234\t\\377\t\\777\t\\8\t\\18"),
            vec![
                text(b"A"),
                text(b"\x00"),
                text(b"\x07"),
                text(b"\n"),
                text(b"S4"),
                text(b"\xff"),
                text(b"\xff"),
                text(b"8"),
                text(b"\x018"),
            ]
        );
    }

    #[test]
    fn hex_escapes() {
        assert_eq!(
            fields(b"\\x41\t\\x4\t\\x4g\t\\x414\t\\xfF\t\\x\t\\xg\t\\X41"),
            vec![
                text(b"A"),
                text(b"\x04"),
                text(b"\x04g"),
                text(b"A4"),
                text(b"\xff"),
                text(b"x"),
                text(b"xg"),
                text(b"X41"),
            ]
        );
    }

    #[test]
    fn unknown_escapes_stand_for_the_char() {
        assert_eq!(
            fields(b"\\q\t\\.\t\\\"\t\\a\\c"),
            vec![text(b"q"), text(b"."), text(b"\""), text(b"ac")]
        );
        // An escaped tab is data, not a separator.
        assert_eq!(fields(b"a\\\tb"), vec![text(b"a\tb")]);
    }

    #[test]
    fn backslash_n_text_is_not_null() {
        assert_eq!(fields(b"\\\\N"), vec![text(b"\\N")]);
        assert_eq!(fields(b"a\\\\Nb"), vec![text(b"a\\Nb")]);
        // Only a raw field of exactly `\N` is NULL; elsewhere `\N` is `N`.
        assert_eq!(
            fields(b"\\Nx\tx\\N\t\\N\\N"),
            vec![text(b"Nx"), text(b"xN"), text(b"NN")]
        );
        assert_eq!(field(b"\\N"), b"\\\\N".to_vec());
    }

    #[test]
    fn non_ascii_utf8() {
        let line = "é\t日本語\t🦀 \\t ok\t\u{2028}".as_bytes();
        assert_eq!(
            fields(line),
            vec![
                text("é".as_bytes()),
                text("日本語".as_bytes()),
                text("🦀 \t ok".as_bytes()),
                text("\u{2028}".as_bytes()),
            ]
        );
    }

    #[test]
    fn lone_trailing_backslash_is_an_error() {
        let mut row = CopyRow::new();
        let err = row.parse(b"a\tb\\").unwrap_err();
        assert_eq!(
            err.message,
            "COPY text row ends with a lone backslash (byte 3 of 4)"
        );
        assert_eq!(err.to_string(), err.message);
        assert!(row.parse(b"\\\n").is_err());
        // The row stays usable after an error.
        assert_eq!(row.parse(b"x\t\\N").unwrap(), 2);
        assert_eq!(row.get(0), Some(&b"x"[..]));
        assert_eq!(row.get(1), None);
    }

    #[test]
    fn parse_replaces_previous_row() {
        let mut row = CopyRow::new();
        assert!(row.is_empty());
        assert_eq!(row.len(), 0);
        assert_eq!(row.parse(b"a\tb\\tc\t\\N").unwrap(), 3);
        assert!(!row.is_empty());
        assert_eq!(row.get(1), Some(&b"b\tc"[..]));
        assert_eq!(row.parse(b"z").unwrap(), 1);
        assert_eq!(row.len(), 1);
        assert_eq!(row.get(0), Some(&b"z"[..]));
    }

    #[test]
    #[should_panic]
    fn get_out_of_range_panics() {
        let mut row = CopyRow::new();
        row.parse(b"a").unwrap();
        let _ = row.get(1);
    }

    #[test]
    fn push_field_escapes() {
        assert_eq!(field(b""), b"".to_vec());
        assert_eq!(field(b"plain text"), b"plain text".to_vec());
        assert_eq!(field(b"a\\b\tc\nd\re"), b"a\\\\b\\tc\\nd\\re".to_vec());
        assert_eq!(field(b"\\\\"), b"\\\\\\\\".to_vec());
        // Other control characters, DEL and non-ASCII bytes pass through.
        assert_eq!(
            field(b"\x00\x08\x0b\x0c\x7f\xc3\xa9."),
            b"\x00\x08\x0b\x0c\x7f\xc3\xa9.".to_vec()
        );
        let mut out = b"prefix\t".to_vec();
        push_field(&mut out, b"x\ty");
        assert_eq!(out, b"prefix\tx\\ty".to_vec());
    }

    #[test]
    fn push_null_appends_marker() {
        let mut out = b"1\t".to_vec();
        push_null(&mut out);
        assert_eq!(out, b"1\t\\N".to_vec());
        assert_eq!(fields(&out), vec![text(b"1"), None]);
    }

    #[test]
    fn round_trip_single_fields() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut row = CopyRow::new();
        let mut line = Vec::new();
        for _ in 0..5000 {
            let value = rng.bytes(24);
            line.clear();
            push_field(&mut line, &value);
            assert!(!line.contains(&b'\t') && !line.contains(&b'\n'));
            assert_eq!(row.parse(&line).unwrap(), 1, "line {line:?}");
            assert_eq!(row.get(0), Some(&value[..]), "line {line:?}");
        }
    }

    #[test]
    fn round_trip_rows_with_nulls() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut row = CopyRow::new();
        let mut line = Vec::new();
        for _ in 0..2000 {
            let count = 1 + rng.below(6);
            let values: Vec<Option<Vec<u8>>> = (0..count)
                .map(|_| {
                    if rng.below(4) == 0 {
                        None
                    } else {
                        Some(rng.bytes(12))
                    }
                })
                .collect();
            line.clear();
            for (k, value) in values.iter().enumerate() {
                if k > 0 {
                    line.push(b'\t');
                }
                match value {
                    Some(v) => push_field(&mut line, v),
                    None => push_null(&mut line),
                }
            }
            line.push(b'\n');
            assert_eq!(row.parse(&line).unwrap(), count, "line {line:?}");
            let got: Vec<Option<Vec<u8>>> = row.iter().map(|f| f.map(<[u8]>::to_vec)).collect();
            assert_eq!(got, values, "line {line:?}");
        }
    }

    #[test]
    fn json_string_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b"\"\""),
            (b"plain", b"\"plain\""),
            (b"\"", b"\"\\\"\""),
            (b"\\", b"\"\\\\\""),
            (b"/", b"\"/\""),
            (b"\x00", b"\"\\u0000\""),
            (b"\x01", b"\"\\u0001\""),
            (b"\x07", b"\"\\u0007\""),
            (b"\x08", b"\"\\b\""),
            (b"\t", b"\"\\t\""),
            (b"\n", b"\"\\n\""),
            (b"\x0b", b"\"\\u000b\""),
            (b"\x0c", b"\"\\f\""),
            (b"\r", b"\"\\r\""),
            (b"\x0e", b"\"\\u000e\""),
            (b"\x1b", b"\"\\u001b\""),
            (b"\x1f", b"\"\\u001f\""),
            (b" ", b"\" \""),
            (b"\x7f", b"\"\x7f\""),
            ("é".as_bytes(), "\"é\"".as_bytes()),
            ("🦀".as_bytes(), "\"🦀\"".as_bytes()),
            (
                "\u{2028}\u{2029}".as_bytes(),
                "\"\u{2028}\u{2029}\"".as_bytes(),
            ),
            (
                b"say \"hi\"\\\n\tend\x00",
                b"\"say \\\"hi\\\"\\\\\\n\\tend\\u0000\"",
            ),
        ];
        for (input, expected) in table {
            assert_eq!(
                json(input),
                expected.to_vec(),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn json_string_appends() {
        let mut out = b"[".to_vec();
        push_json_string(&mut out, b"a");
        out.push(b',');
        push_json_string(&mut out, b"b\"");
        out.push(b']');
        assert_eq!(out, b"[\"a\",\"b\\\"\"]".to_vec());
    }

    /// Every byte at every position of strings up to three words long, among bytes that need no
    /// escape (the word-at-a-time scan must find it wherever it is), gives serde_json's bytes.
    #[test]
    fn json_string_finds_each_special_byte_at_each_position() {
        for len in 0..24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    // Non-ASCII bytes alone are not UTF-8: compare with serde_json on ASCII only,
                    // and check that the others pass through.
                    let got = json(&value);
                    if b.is_ascii() {
                        let text = String::from_utf8(value).unwrap();
                        assert_eq!(got, serde_json::to_vec(&text).unwrap(), "{text:?}");
                    } else {
                        assert_eq!(got, [b"\"".as_slice(), &value, b"\""].concat());
                    }
                }
            }
        }
    }
}
