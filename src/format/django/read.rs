//! Streaming reader of Django objects: a JSON array read element by element (serde's sequence
//! access on a reader, so the whole array is never in memory), or JSON Lines read line by line.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{DjangoLocation, Error, Result};

/// One object of a Django fixture, values kept as raw JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct Object {
    pub model: String,
    #[serde(default)]
    pub pk: Option<Box<RawValue>>,
    #[serde(default)]
    pub fields: BTreeMap<String, Box<RawValue>>,
}

/// Calls `f(index, object)` for every object of `input`, in file order.
pub(crate) fn for_each_object(
    input: Box<dyn BufRead>,
    name: &str,
    jsonl: bool,
    f: &mut dyn FnMut(usize, Object) -> Result<()>,
) -> Result<()> {
    if jsonl {
        return for_each_line(input, name, f);
    }
    let mut de = serde_json::Deserializer::from_reader(input);
    let mut failure = None;
    let mut count = 0;
    let visitor = ArrayVisitor {
        f,
        failure: &mut failure,
        count: &mut count,
    };
    let result = de.deserialize_seq(visitor).and_then(|()| de.end());
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(|e| syntax_error(name, &e, count))
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
    f: &mut dyn FnMut(usize, Object) -> Result<()>,
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

struct ArrayVisitor<'a> {
    f: &'a mut dyn FnMut(usize, Object) -> Result<()>,
    failure: &'a mut Option<Error>,
    count: &'a mut usize,
}

impl<'de> Visitor<'de> for ArrayVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of Django objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(obj) = seq.next_element::<Object>()? {
            if let Err(e) = (self.f)(*self.count, obj) {
                *self.failure = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
            *self.count += 1;
        }
        Ok(())
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
                    o.model,
                    o.pk.map(|p| p.get().to_string()),
                    o.fields.keys().cloned().collect(),
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
    fn syntax_errors_name_the_object_and_position() {
        let e = read(
            "[{\"model\": \"a.b\", \"fields\": {}},\n {\"model\": }]",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.json:2:"), "{e}");
        assert!(e.contains("object 1"), "{e}");
        let e = read("{\"fields\": {}}\n", true).unwrap_err().to_string();
        assert!(e.contains("model"), "{e}");
    }
}
