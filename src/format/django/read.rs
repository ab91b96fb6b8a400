//! Streaming reader of Django objects: a JSON array read element by element (serde's sequence
//! access on a reader, so the whole array is never in memory), or JSON Lines read line by line.

use std::borrow::Cow;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{DjangoLocation, Error, Result};
use crate::format::structural::{advance_over, ObjectEnd};

/// One object of a Django fixture, borrowed from its bytes, values kept as raw JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct Object<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub pk: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "pairs")]
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// A JSON object as (key, raw value) pairs in file order; a key given twice is an error.
fn pairs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<(Cow<'de, str>, &'de RawValue)>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of fields")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out: Self::Value = Vec::new();
            while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                if out.iter().any(|(k2, _)| *k2 == k) {
                    return Err(serde::de::Error::custom(format!(
                        "field \"{k}\" appears twice"
                    )));
                }
                let v: &'de RawValue = map.next_value()?;
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// Calls `f(index, object)` for every object of `input`, in file order.
pub(crate) fn for_each_object(
    input: Box<dyn BufRead>,
    name: &str,
    jsonl: bool,
    f: &mut dyn FnMut(usize, Object<'_>) -> Result<()>,
) -> Result<()> {
    if jsonl {
        return for_each_line(input, name, f);
    }
    // Each element is cut out of the array as bytes and parsed on its own (as a line of JSON
    // Lines is): serde's reader-based sequence access is slower and keeps what it read.
    let mut cut = ElementCutter::new(input);
    let mut index = 0;
    let mut buf = Vec::new();
    loop {
        let (line, column) = match cut.next(&mut buf) {
            Ok(Some(at)) => at,
            Ok(None) => return Ok(()),
            Err(CutError::Io(e)) => return Err(Error::io(name, e)),
            Err(CutError::Syntax {
                line,
                column,
                message,
            }) => {
                return Err(Error::DjangoObject {
                    location: Box::new(DjangoLocation {
                        file: name.to_string(),
                        line: Some(line),
                        column: Some(column),
                        object: Some(index),
                        ..Default::default()
                    }),
                    message: format!("not a Django fixture: {message}"),
                })
            }
        };
        let obj: Object = serde_json::from_slice(&buf).map_err(|e| {
            let mut err = syntax_error(name, &e, index);
            if let Error::DjangoObject { location, .. } = &mut err {
                location.line = Some(line + e.line().saturating_sub(1));
                // serde counts within the element; on its first line, add where it starts.
                location.column = Some(if e.line() <= 1 {
                    column + e.column().saturating_sub(1)
                } else {
                    e.column()
                });
            }
            err
        })?;
        f(index, obj)?;
        index += 1;
    }
}

enum CutError {
    Io(std::io::Error),
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Cuts the elements of a top-level JSON array out of a stream, one at a time.
struct ElementCutter {
    input: Box<dyn BufRead>,
    line: usize,
    column: usize,
    started: bool,
    done: bool,
}

impl ElementCutter {
    fn new(input: Box<dyn BufRead>) -> Self {
        ElementCutter {
            input,
            line: 1,
            column: 1,
            started: false,
            done: false,
        }
    }

    fn syntax(&self, message: impl Into<String>) -> CutError {
        CutError::Syntax {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }

    /// The next byte that is not whitespace (or a BOM at the start), not consumed.
    fn peek_token(&mut self) -> Result<Option<u8>, CutError> {
        loop {
            let buf = self.input.fill_buf().map_err(CutError::Io)?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut used = 0;
            for &c in buf {
                match c {
                    b'\n' => {
                        self.line += 1;
                        self.column = 1;
                    }
                    b' ' | b'\t' | b'\r' => self.column += 1,
                    0xEF | 0xBB | 0xBF if !self.started && self.line == 1 => {}
                    _ => {
                        self.input.consume(used);
                        return Ok(Some(c));
                    }
                }
                used += 1;
            }
            self.input.consume(used);
        }
    }

    fn take(&mut self) {
        self.input.consume(1);
        self.column += 1;
    }

    /// Copies the next element into `out`; its starting line and column, or None after the
    /// closing `]`.
    fn next(&mut self, out: &mut Vec<u8>) -> Result<Option<(usize, usize)>, CutError> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            match self.peek_token()? {
                Some(b'[') => self.take(),
                Some(_) => return Err(self.syntax("expected a JSON array of objects")),
                None => return Err(self.syntax("empty file: expected a JSON array")),
            }
            self.started = true;
            if self.peek_token()? == Some(b']') {
                self.take();
                return self.finish();
            }
        } else {
            match self.peek_token()? {
                Some(b',') => self.take(),
                Some(b']') => {
                    self.take();
                    return self.finish();
                }
                Some(_) => return Err(self.syntax("expected `,` or `]` after an object")),
                None => return Err(self.syntax("unexpected end of file: missing `]`")),
            }
        }
        match self.peek_token()? {
            Some(b'{') => {}
            Some(_) => return Err(self.syntax("expected an object")),
            None => return Err(self.syntax("unexpected end of file: missing `]`")),
        }
        let start = (self.line, self.column);
        out.clear();
        let mut end = ObjectEnd::default();
        loop {
            let buf = self.input.fill_buf().map_err(CutError::Io)?;
            if buf.is_empty() {
                return Err(self.syntax("unexpected end of file inside an object"));
            }
            let found = end.feed(buf);
            let n = found.unwrap_or(buf.len());
            advance_over(&mut self.line, &mut self.column, &buf[..n]);
            out.extend_from_slice(&buf[..n]);
            self.input.consume(n);
            if found.is_some() {
                return Ok(Some(start));
            }
        }
    }

    fn finish(&mut self) -> Result<Option<(usize, usize)>, CutError> {
        self.done = true;
        match self.peek_token()? {
            None => Ok(None),
            Some(_) => Err(self.syntax("trailing characters after the array")),
        }
    }
}

fn syntax_error(name: &str, e: &serde_json::Error, index: usize) -> Error {
    if e.is_io() {
        return Error::io(name, std::io::Error::other(e.to_string()));
    }
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    Error::DjangoObject {
        location: Box::new(DjangoLocation {
            file: name.to_string(),
            line: Some(e.line()),
            column: Some(e.column()),
            object: Some(index),
            ..Default::default()
        }),
        message: format!("not a Django fixture object: {msg}"),
    }
}

fn for_each_line(
    mut input: Box<dyn BufRead>,
    name: &str,
    f: &mut dyn FnMut(usize, Object<'_>) -> Result<()>,
) -> Result<()> {
    let mut line = Vec::new();
    let mut index = 0;
    let mut line_no = 0;
    loop {
        line.clear();
        line_no += 1;
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(name, e))?
            == 0
        {
            return Ok(());
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        // serde would also read a struct from a JSON array (`["app.model"]`): only objects are
        // Django objects, as in the array form.
        if line.trim_ascii_start().first() != Some(&b'{') {
            let column = line.len() - line.trim_ascii_start().len() + 1;
            return Err(Error::DjangoObject {
                location: Box::new(DjangoLocation {
                    file: name.to_string(),
                    line: Some(line_no),
                    column: Some(column),
                    object: Some(index),
                    ..Default::default()
                }),
                message: "not a Django fixture object: expected an object".into(),
            });
        }
        let obj: Object = serde_json::from_slice(&line).map_err(|e| {
            let mut err = syntax_error(name, &e, index);
            if let Error::DjangoObject { location, .. } = &mut err {
                location.line = Some(line_no);
            }
            err
        })?;
        f(index, obj)?;
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (index, model, pk, field names) of each object.
    type Seen = (usize, String, Option<String>, Vec<String>);

    fn read(text: &str, jsonl: bool) -> Result<Vec<Seen>> {
        let mut out = Vec::new();
        for_each_object(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            "f.json",
            jsonl,
            &mut |i, o| {
                out.push((
                    i,
                    o.model.into_owned(),
                    o.pk.map(|p| p.get().to_string()),
                    o.fields.iter().map(|(k, _)| k.to_string()).collect(),
                ));
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn arrays_and_lines_read_the_same_objects() {
        let a = read(
            r#"[{"model": "a.b", "pk": 1, "fields": {"x": 1, "y": [1]}}, {"model": "a.c", "fields": {}}]"#,
            false,
        )
        .unwrap();
        let b = read(
            "{\"model\": \"a.b\", \"pk\": 1, \"fields\": {\"x\": 1, \"y\": [1]}}\n\n{\"model\": \"a.c\", \"fields\": {}}\n",
            true,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].2.as_deref(), Some("1"));
        assert_eq!(a[1].2, None);
    }

    #[test]
    fn fuzz_regression_a_json_lines_array_is_not_an_object() {
        // `cargo fuzz run django_reader`: serde read `[""]` as an object with model "".
        for text in ["[\"\"]\n", "{\"model\": \"a.b\"}\n  [\"a.b\", 1]\n"] {
            let e = read(text, true).unwrap_err().to_string();
            assert!(e.contains("expected an object"), "{text:?}: {e}");
        }
        let e = read("{\"model\": \"a.b\"}\n  [\"a.b\"]\n", true)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.json:2:3, object 1"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_object_and_position() {
        let e = read(
            "[{\"model\": \"a.b\", \"fields\": {}},\n {\"model\": }]",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.json:2:12,"), "{e}");
        for (text, want) in [
            (r#"[{"model": "a.b"} {"#, "expected `,` or `]`"),
            (r#"{"a": 1}"#, "expected a JSON array"),
            (
                r#"[{"model": "a.b", "x": "}""#,
                "end of file inside an object",
            ),
            ("[] x", "trailing characters"),
            ("[1]", "expected an object"),
        ] {
            let e = read(text, false).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        // Braces inside strings and escaped quotes do not end an object.
        let ok = read(
            r#"[{"model": "a.b", "fields": {"s": "}\"{]"}}, {"model": "a.c"}]"#,
            false,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(e.contains("object 1"), "{e}");
        let e = read("{\"fields\": {}}\n", true).unwrap_err().to_string();
        assert!(e.contains("model"), "{e}");
    }
}
