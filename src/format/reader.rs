//! Streaming fixture reader: pulls one table header or one row at a time from any `BufRead`, so
//! a file of any size is read with memory bounded by its largest row.
//!
//! The top two levels of the format (`{ "table": [ {row}, ... ], ... }`) are scanned here byte by
//! byte; each row object is cut out as raw bytes and parsed by serde_json into borrowed
//! `(column, raw value)` pairs, so numbers and strings keep their exact spelling. Positions
//! (line and column, 1-based) are tracked for every error.

use std::io::BufRead;

use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A syntax problem with its position in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

#[derive(Debug)]
pub enum ReadError {
    Syntax(SyntaxError),
    Io(std::io::Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Expecting a table key or the closing `}`.
    TableKey {
        first: bool,
    },
    /// Inside a table's array, expecting a row or `]`.
    Rows {
        first: bool,
    },
    End,
}

/// One row as raw JSON text, with where it started.
#[derive(Debug, Default)]
pub struct RawRow {
    pub bytes: Vec<u8>,
    pub line: usize,
    pub column: usize,
    /// Zero-based index of the row in its table's array.
    pub index: usize,
}

impl RawRow {
    /// Parses the row into `(column, raw value)` pairs in file order. Duplicate keys are an
    /// error (which value would win is not obvious to a reader of the file).
    pub fn fields(&self) -> Result<Vec<(std::borrow::Cow<'_, str>, &RawValue)>, SyntaxError> {
        let mut de = serde_json::Deserializer::from_slice(&self.bytes);
        let pairs = de
            .deserialize_map(RowVisitor)
            .and_then(|p| de.end().map(|_| p))
            .map_err(|e| match std::str::from_utf8(&self.bytes) {
                // serde says "invalid unicode code point" or "expected value": say what it is.
                Err(bad) => {
                    let at = &self.bytes[..bad.valid_up_to()];
                    let (mut line, mut column, mut offset) = (1, 1, 0);
                    advance_over(&mut line, &mut column, &mut offset, at);
                    self.error_at(line, column, not_utf8_message(&self.bytes[at.len()..]))
                }
                Ok(_) => self.error_at(e.line(), e.column(), strip_position(&e.to_string())),
            })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(self.error_at(
                    1,
                    1,
                    format!("column \"{k}\" appears twice in the row"),
                ));
            }
        }
        Ok(pairs)
    }

    fn error_at(&self, line: usize, column: usize, message: String) -> SyntaxError {
        // serde counts within the row's own bytes; translate to file positions.
        SyntaxError {
            line: self.line + line.saturating_sub(1),
            column: if line <= 1 {
                self.column + column.saturating_sub(1)
            } else {
                column
            },
            message,
        }
    }
}

/// The message for bytes that are not UTF-8, `bad` starting at the first offending byte.
fn not_utf8_message(bad: &[u8]) -> String {
    let shown: Vec<String> = bad.iter().take(4).map(|b| format!("{b:02X}")).collect();
    format!(
        "not valid UTF-8 (bytes {}); fixtures must be UTF-8: convert the file \
         (e.g. `iconv -f LATIN1 -t UTF-8`)",
        shown.join(" ")
    )
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Vec<(std::borrow::Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let v: &'de RawValue = map.next_value()?;
            out.push((k, v));
        }
        Ok(out)
    }
}

fn advance_position(line: &mut usize, column: &mut usize, offset: &mut u64, c: u8) {
    *offset += 1;
    if c == b'\n' {
        *line += 1;
        *column = 1;
    } else if c & 0xC0 != 0x80 {
        // count characters, not UTF-8 continuation bytes
        *column += 1;
    }
}

/// [`advance_position`] over a whole chunk.
fn advance_over(line: &mut usize, column: &mut usize, offset: &mut u64, chunk: &[u8]) {
    *offset += chunk.len() as u64;
    super::structural::advance_over(line, column, chunk);
}

pub struct FixtureReader<R> {
    input: R,
    state: State,
    line: usize,
    column: usize,
    /// Bytes consumed so far (plus the start offset of a resumed reader).
    offset: u64,
    row_index: usize,
    /// Where the last table key returned by `next_table` started.
    table_start: TablePosition,
}

/// Where a table's key starts in a file, so a reader can resume there without rescanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TablePosition {
    pub offset: u64,
    pub line: usize,
    pub column: usize,
}

impl<R: BufRead> FixtureReader<R> {
    pub fn new(input: R) -> Self {
        FixtureReader {
            input,
            state: State::Start,
            line: 1,
            column: 1,
            offset: 0,
            row_index: 0,
            table_start: TablePosition::default(),
        }
    }

    /// A reader over `input` already positioned at a table key found earlier (see
    /// [`FixtureReader::table_position`]): the next `next_table` returns that table.
    pub fn resume(input: R, at: TablePosition) -> Self {
        FixtureReader {
            input,
            state: State::TableKey { first: true },
            line: at.line,
            column: at.column,
            offset: at.offset,
            row_index: 0,
            table_start: at,
        }
    }

    /// Where the table last returned by `next_table` starts.
    pub fn table_position(&self) -> TablePosition {
        self.table_start
    }

    /// The current position (1-based line and column).
    pub fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ReadError> {
        Err(ReadError::Syntax(SyntaxError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }))
    }

    fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        let buf = self.input.fill_buf()?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) -> Result<Option<u8>, ReadError> {
        let b = self.peek()?;
        if let Some(c) = b {
            self.input.consume(1);
            self.advance(c);
        }
        Ok(b)
    }

    fn advance(&mut self, c: u8) {
        advance_position(&mut self.line, &mut self.column, &mut self.offset, c);
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump()?;
                }
                other => return Ok(other),
            }
        }
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), ReadError> {
        match self.skip_ws()? {
            Some(c) if c == want => {
                self.bump()?;
                Ok(())
            }
            Some(c) => self.err(format!("expected {what}, found '{}'", c as char)),
            None => self.err(format!("expected {what}, found end of file (truncated?)")),
        }
    }

    /// Moves to the next table and returns its key, or None at the end of the document. Rows of
    /// the current table that were not read are skipped (and still checked for syntax).
    pub fn next_table(&mut self) -> Result<Option<String>, ReadError> {
        loop {
            match self.state {
                State::Start => {
                    self.skip_byte_order_mark()?;
                    match self.skip_ws()? {
                        None => return self.err("empty input: expected a JSON object"),
                        Some(b'{') => {}
                        Some(_) => return self.err(
                            "a fixture must be a JSON object mapping table names to arrays of rows",
                        ),
                    }
                    self.bump()?;
                    self.state = State::TableKey { first: true };
                }
                State::TableKey { first } => {
                    match self.skip_ws()? {
                        Some(b'}') if first => {
                            self.bump()?;
                            self.finish()?;
                            return Ok(None);
                        }
                        Some(b'}') => {
                            self.bump()?;
                            self.finish()?;
                            return Ok(None);
                        }
                        Some(b',') if !first => {
                            self.bump()?;
                            self.skip_ws()?;
                        }
                        Some(_) if !first => return self.err("expected ',' or '}' after a table"),
                        Some(_) => {}
                        None => return self.err("unexpected end of file (truncated?)"),
                    }
                    if self.peek()? != Some(b'"') {
                        return self.err("expected a table name string");
                    }
                    self.table_start = TablePosition {
                        offset: self.offset,
                        line: self.line,
                        column: self.column,
                    };
                    let key = self.read_string()?;
                    self.expect(b':', "':' after the table name")?;
                    self.expect(b'[', "'[' starting the table's rows")?;
                    self.state = State::Rows { first: true };
                    self.row_index = 0;
                    return Ok(Some(key));
                }
                State::Rows { .. } => while self.skip_row()? {},
                State::End => return Ok(None),
            }
        }
    }

    /// A UTF-8 byte-order mark (as Windows editors write) is skipped; a UTF-16 or UTF-32 one, or
    /// a NUL byte (UTF-16 without a mark), is an error that says which encoding the file is in.
    fn skip_byte_order_mark(&mut self) -> Result<(), ReadError> {
        let buf = self.input.fill_buf()?;
        let (utf16, start) = match buf {
            [0xEF, ..] => (None, 0xEF),
            [0xFF, 0xFE, ..] => (Some("UTF-16 little-endian (byte-order mark FF FE)"), 0),
            [0xFE, 0xFF, ..] => (Some("UTF-16 big-endian (byte-order mark FE FF)"), 0),
            [0, ..] | [_, 0, ..] => (Some("UTF-16 or UTF-32 (it has NUL bytes)"), 0),
            _ => return Ok(()),
        };
        if let Some(encoding) = utf16 {
            return self.err(format!(
                "the file is encoded as {encoding}; fixtures must be UTF-8 \
                 (convert it with e.g. `iconv -f UTF-16 -t UTF-8`)"
            ));
        }
        // EF BB BF, possibly split across refills.
        for want in [start, 0xBB, 0xBF] {
            if self.peek()? != Some(want) {
                return self.err(not_utf8_message(&[0xEF]));
            }
            self.input.consume(1);
            self.offset += 1;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReadError> {
        self.state = State::End;
        match self.skip_ws()? {
            None => Ok(()),
            Some(_) => self.err("unexpected data after the closing '}'"),
        }
    }

    /// Reads the next row of the current table into `row`; false at the end of the table.
    pub fn next_row_into(&mut self, row: &mut RawRow) -> Result<bool, ReadError> {
        self.next_row(Some(row))
    }

    /// Moves over the next row of the current table (its syntax checked as by
    /// [`FixtureReader::next_row_into`], its bytes not kept); false at the end of the table.
    pub fn skip_row(&mut self) -> Result<bool, ReadError> {
        self.next_row(None)
    }

    fn next_row(&mut self, row: Option<&mut RawRow>) -> Result<bool, ReadError> {
        let State::Rows { first } = self.state else {
            return Ok(false);
        };
        match self.skip_ws()? {
            Some(b']') => {
                self.bump()?;
                self.state = State::TableKey { first: false };
                return Ok(false);
            }
            Some(b',') if !first => {
                self.bump()?;
                self.skip_ws()?;
            }
            Some(_) if !first => return self.err("expected ',' or ']' after a row"),
            Some(_) => {}
            None => return self.err("unexpected end of file inside a table (truncated?)"),
        }
        if self.peek()? != Some(b'{') {
            return self.err("expected a row object '{'");
        }
        let out = row.map(|row| {
            row.bytes.clear();
            row.line = self.line;
            row.column = self.column;
            row.index = self.row_index;
            &mut row.bytes
        });
        self.scan_object(out)?;
        self.row_index += 1;
        self.state = State::Rows { first: false };
        Ok(true)
    }

    /// Copies one JSON object verbatim into `out` (or only moves over it), tracking nesting and
    /// strings. Full validation of the inside is left to serde when the row is parsed.
    fn scan_object(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), ReadError> {
        let mut end = super::structural::ObjectEnd::default();
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return self.err("unexpected end of file inside a row (truncated?)");
            }
            let found = end.feed(buf);
            let done = found.is_some();
            let i = found.unwrap_or(buf.len());
            let chunk = &buf[..i];
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(chunk);
            }
            let closing = chunk.last().copied();
            advance_over(&mut self.line, &mut self.column, &mut self.offset, chunk);
            self.input.consume(i);
            if done {
                // Brackets inside are left to serde, but the row itself must close as it opened:
                // `{"a": 1]` would otherwise pass the pre-scan as a row.
                if closing != Some(b'}') {
                    return self.err("expected '}' closing the row object, found ']'");
                }
                return Ok(());
            }
        }
    }

    fn read_string(&mut self) -> Result<String, ReadError> {
        let (line, column) = self.position();
        let mut raw = Vec::new();
        self.bump()?; // opening quote
        raw.push(b'"');
        let mut escaped = false;
        loop {
            match self.bump()? {
                None => return self.err("unexpected end of file inside a string"),
                Some(c) => {
                    raw.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == b'"' {
                        break;
                    }
                }
            }
        }
        if let Err(e) = std::str::from_utf8(&raw) {
            let bad = &raw[e.valid_up_to()..];
            return Err(ReadError::Syntax(SyntaxError {
                line,
                column,
                message: format!("table name: {}", not_utf8_message(bad)),
            }));
        }
        serde_json::from_slice::<String>(&raw).map_err(|e| {
            ReadError::Syntax(SyntaxError {
                line,
                column,
                message: format!("bad table name string: {}", strip_position(&e.to_string())),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Result<Vec<(String, Vec<String>)>, ReadError> {
        let mut r = FixtureReader::new(input.as_bytes());
        let mut out = Vec::new();
        let mut row = RawRow::default();
        while let Some(t) = r.next_table()? {
            let mut rows = Vec::new();
            while r.next_row_into(&mut row)? {
                rows.push(String::from_utf8(row.bytes.clone()).unwrap());
            }
            out.push((t, rows));
        }
        Ok(out)
    }

    fn syntax(input: &str) -> SyntaxError {
        match read_all(input) {
            Err(ReadError::Syntax(e)) => e,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    /// Found by the `fixture_reader` fuzz target: a row closed by `]` was cut out as a row.
    #[test]
    fn fuzz_regression_row_closed_by_a_bracket() {
        let e = syntax("{\"t\": [{\"a\": 1]}]}");
        assert_eq!((e.line, e.column), (1, 16), "{e}");
        assert!(e.message.contains("expected '}' closing the row"), "{e}");
        // Where the mismatch is inside, the count still ends the row on the wrong bracket.
        let e = syntax("{\"t\": [{\"a\": [1}]}]}");
        assert!(e.message.contains("expected '}' closing the row"), "{e}");
    }

    #[test]
    fn utf8_byte_order_mark_is_skipped() {
        let doc = b"\xEF\xBB\xBF{\"a\":[{\"id\":1}]}";
        for cap in [1, 2, 3, 64] {
            let mut r = FixtureReader::new(std::io::BufReader::with_capacity(cap, &doc[..]));
            assert_eq!(r.next_table().unwrap().as_deref(), Some("a"));
            let pos = r.table_position();
            assert_eq!((pos.offset, pos.line, pos.column), (4, 1, 2));
            let mut row = RawRow::default();
            assert!(r.next_row_into(&mut row).unwrap());
            assert_eq!(row.bytes, b"{\"id\":1}");
        }
    }

    #[test]
    fn other_encodings_are_named() {
        let bytes_err = |doc: &[u8]| {
            let mut r = FixtureReader::new(doc);
            let mut row = RawRow::default();
            let e = match r.next_table() {
                Err(ReadError::Syntax(e)) => return e,
                Ok(Some(_)) => match r.next_row_into(&mut row) {
                    Ok(true) => row.fields().unwrap_err(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            };
            e
        };
        let e = bytes_err(b"\xFF\xFE{\x00");
        assert!(e.message.contains("UTF-16 little-endian"), "{e}");
        let e = bytes_err(b"\xFE\xFF\x00{");
        assert!(e.message.contains("UTF-16 big-endian"), "{e}");
        let e = bytes_err(b"{\x00\"\x00");
        assert!(e.message.contains("NUL bytes"), "{e}");
        let e = bytes_err(b"\xEF\xBB{}");
        assert!(e.message.contains("not valid UTF-8"), "{e}");
        // Latin-1 inside a row: the position of the bad byte and the bytes themselves.
        let e = bytes_err(b"{\"t\":[\n{\"name\": \"Ren\xE9e\"}]}");
        assert_eq!((e.line, e.column), (2, 14), "{e}");
        assert!(
            e.message.contains("not valid UTF-8 (bytes E9 65 22 7D)"),
            "{e}"
        );
        assert!(e.message.contains("iconv"), "{e}");
        let e = bytes_err(b"{\"caf\xE9\":[]}");
        assert!(e.message.starts_with("table name: not valid UTF-8"), "{e}");
    }

    #[test]
    fn reads_tables_and_rows_verbatim() {
        let doc = "{\n  \"a\": [\n    {\"id\":1,\"s\":\"x}]\\\"\"},\n    {\"id\":2}\n  ],\n  \"b.c\": []\n}\n";
        let got = read_all(doc).unwrap();
        assert_eq!(
            got,
            vec![
                (
                    "a".to_string(),
                    vec![
                        r#"{"id":1,"s":"x}]\""}"#.to_string(),
                        r#"{"id":2}"#.to_string()
                    ]
                ),
                ("b.c".to_string(), vec![]),
            ]
        );
        assert_eq!(read_all("{}").unwrap(), vec![]);
    }

    #[test]
    fn skipping_a_table_still_reaches_the_next() {
        let mut r = FixtureReader::new(&b"{\"a\":[{\"x\":[1,{\"y\":2}]}],\"b\":[{\"z\":3}]}"[..]);
        assert_eq!(r.next_table().unwrap().as_deref(), Some("a"));
        assert_eq!(r.next_table().unwrap().as_deref(), Some("b"));
        let mut row = RawRow::default();
        assert!(r.next_row_into(&mut row).unwrap());
        assert_eq!(row.bytes, b"{\"z\":3}");
        assert!(r.next_table().unwrap().is_none());
    }

    #[test]
    fn resumes_at_a_recorded_table_position() {
        let doc = "{\n  \"a\": [{\"x\":1}],\n  \"b\": [{\"y\":2},\n {\"y\":3}]\n}\n";
        let mut r = FixtureReader::new(doc.as_bytes());
        r.next_table().unwrap();
        r.next_table().unwrap();
        let at = r.table_position();
        assert_eq!((at.line, at.column), (3, 3));
        let mut again = FixtureReader::resume(&doc.as_bytes()[at.offset as usize..], at);
        assert_eq!(again.next_table().unwrap().as_deref(), Some("b"));
        let mut row = RawRow::default();
        assert!(again.next_row_into(&mut row).unwrap());
        assert!(again.next_row_into(&mut row).unwrap());
        assert_eq!((row.line, row.index), (4, 1));
        assert!(!again.next_row_into(&mut row).unwrap());
        assert!(again.next_table().unwrap().is_none());
    }

    #[test]
    fn fields_keep_exact_number_spelling_and_positions() {
        let doc =
            "{\"t\": [\n  {\"a\": 12345678901234567890.50, \"b\": null, \"c\": {\"k\": [1]}}\n]}";
        let mut r = FixtureReader::new(doc.as_bytes());
        r.next_table().unwrap();
        let mut row = RawRow::default();
        r.next_row_into(&mut row).unwrap();
        assert_eq!((row.line, row.column, row.index), (2, 3, 0));
        let f = row.fields().unwrap();
        assert_eq!(f[0].0, "a");
        assert_eq!(f[0].1.get(), "12345678901234567890.50");
        assert_eq!(f[1].1.get(), "null");
        assert_eq!(f[2].1.get(), "{\"k\": [1]}");
    }

    #[test]
    fn positions_do_not_depend_on_buffer_boundaries() {
        let doc = "{\"t\": [\n  {\"a\": \"é\\\"}\\\\\", \"b\": [1, {\"c\": \"x\\ny\"}]},\n\t{\"a\": \"ñandú\"},  {\"z\":\n1}\n],\n \"u\": [{\"q\": \"{[\"}]}\n";
        let read = |cap: usize| {
            let mut r = FixtureReader::new(std::io::BufReader::with_capacity(cap, doc.as_bytes()));
            let mut out = Vec::new();
            let mut row = RawRow::default();
            while let Some(t) = r.next_table().unwrap() {
                while r.next_row_into(&mut row).unwrap() {
                    out.push((
                        t.clone(),
                        row.bytes.clone(),
                        row.line,
                        row.column,
                        row.index,
                    ));
                }
            }
            (out, r.position())
        };
        let whole = read(1 << 16);
        assert_eq!(whole.0.len(), 4);
        assert_eq!((whole.0[1].2, whole.0[1].3), (3, 2));
        assert_eq!((whole.0[2].2, whole.0[2].3), (3, 19));
        assert_eq!(whole.0[3].1, b"{\"q\": \"{[\"}");
        for cap in 1..12 {
            assert_eq!(read(cap), whole, "buffer of {cap} bytes");
        }
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = syntax("{\"t\": [\n {\"a\": 1},\n {\"a\": 2}\n");
        assert!(e.message.contains("truncated"), "{e}");
        assert_eq!(e.line, 4);
        let e = syntax("{\"t\": [{\"a\": 1} {\"a\": 2}]}");
        assert_eq!((e.line, e.column), (1, 17));
        let e = syntax("[1, 2]");
        assert!(e.message.contains("JSON object"), "{e}");
        let e = syntax("{\"t\": [{\"a\": 1}]} trailing");
        assert!(e.message.contains("after the closing"), "{e}");
        let e = syntax("");
        assert!(e.message.contains("empty"), "{e}");

        let doc = "{\"t\": [\n  {\"a\": 1,\n   \"b\": tru}\n]}";
        let mut r = FixtureReader::new(doc.as_bytes());
        r.next_table().unwrap();
        let mut row = RawRow::default();
        r.next_row_into(&mut row).unwrap();
        let e = row.fields().unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let dup = RawRow {
            bytes: br#"{"a":1,"a":2}"#.to_vec(),
            ..Default::default()
        };
        assert!(dup.fields().unwrap_err().message.contains("twice"));
    }
}
