//! Arrays, composites and hstore (and domains over them) from their fixture JSON to the COPY
//! text form PostgreSQL's input functions read, on the client, so they go straight into COPY
//! instead of through a staging table and `json_populate_record`.
//!
//! The JSON forms are the ones `to_json` writes (what `dump` produces) and
//! `json_populate_record` reads (what the staged path accepted):
//! - an array is a JSON array, nested arrays being further dimensions; `null` elements are NULL;
//! - a composite is a JSON object keyed by field name; missing keys and `null` are NULL, keys
//!   that are not fields are ignored (as `json_populate_record` does);
//! - hstore is an object of strings (or null); other values are taken as their JSON text;
//! - a JSON string stands for the type's own text form (`"{1,2}"`, `"(1,x)"`, `"a=>b"`);
//! - a scalar inside is its string contents, its number as written, `t`/`f` for a boolean
//!   (`true`/`false` for other types), and json/jsonb their JSON text verbatim.
//!
//! Invariants: every element and field is double-quoted with `\` and `"` escaped, so no value
//! can end an element, a field or the literal early (the empty string stays distinct from
//! NULL); the whole literal then goes through [`push_field`]'s COPY escaping. Domain checks,
//! element types and array shapes are still the server's: it parses what we send.

use serde_json::value::RawValue;

use super::copy_text::{push_field, push_null};
use super::value::{json_wrapper, ValueError};

/// How a type's values are written in COPY text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Scalar(Scalar),
    /// An array of `elem` (never itself an array: PostgreSQL arrays are multi-dimensional
    /// instead), elements separated by `delim` (`,` for all but a few geometric types).
    Array {
        elem: Box<Shape>,
        delim: u8,
    },
    /// A composite: its fields (dropped ones left out) in order.
    Composite(Vec<(String, Shape)>),
    Hstore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Boolean,
    /// json / jsonb: the JSON text itself.
    Json,
    Other,
}

/// Appends the COPY field for `raw` going into a column of `shape`.
pub fn push_structured(out: &mut Vec<u8>, shape: &Shape, raw: &RawValue) -> Result<(), ValueError> {
    let mut text = raw.get();
    if text == "null" {
        push_null(out);
        return Ok(());
    }
    // (The wrapper check parses the object: only when the key can be there at all.)
    if text.starts_with('{') && text.contains("\"$json\"") {
        if let Some(inner) = json_wrapper(text.as_bytes()) {
            text = inner.get();
        }
    }
    let mut literal = String::with_capacity(text.len());
    write_value(&mut literal, shape, text)?;
    push_field(out, literal.as_bytes());
    Ok(())
}

/// Writes the text form of the JSON `text` (not `null`) as a value of `shape` (unquoted: a
/// container quotes its nested values).
fn write_value(out: &mut String, shape: &Shape, text: &str) -> Result<(), ValueError> {
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    if first == b'"' && !matches!(shape, Shape::Scalar(Scalar::Json)) {
        // A string is the type's own text form (for scalars, just the value).
        let s: std::borrow::Cow<'_, str> =
            serde_json::from_str(text).map_err(|e| ValueError(format!("bad string: {e}")))?;
        out.push_str(&s);
        return Ok(());
    }
    match shape {
        Shape::Array { elem, delim } => {
            if first != b'[' {
                return Err(ValueError(format!("expected a JSON array, found {text}")));
            }
            write_array(out, elem, *delim as char, text).map(drop)
        }
        Shape::Composite(fields) => {
            if first != b'{' {
                return Err(ValueError(format!("expected a JSON object, found {text}")));
            }
            // Few keys: a list searched from the end (the last of duplicate keys wins, as in
            // json_populate_record) beats building a map per value.
            let pairs = ordered_pairs(text)?;
            out.push('(');
            for (i, (name, shape)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let value = pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v);
                if let Some(v) = value.filter(|v| v.get() != "null") {
                    write_quoted(out, shape, v.get())?;
                }
            }
            out.push(')');
            Ok(())
        }
        Shape::Hstore => {
            if first != b'{' {
                return Err(ValueError(format!("expected a JSON object, found {text}")));
            }
            let pairs = ordered_pairs(text)?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quote(out, k);
                out.push_str("=>");
                if v.get() == "null" {
                    out.push_str("NULL");
                } else {
                    let mut s = String::new();
                    write_value(&mut s, &Shape::Scalar(Scalar::Other), v.get())?;
                    quote(out, &s);
                }
            }
            Ok(())
        }
        Shape::Scalar(Scalar::Json) => {
            out.push_str(text);
            Ok(())
        }
        Shape::Scalar(Scalar::Boolean) => {
            out.push_str(match text {
                "true" => "t",
                "false" => "f",
                other => other,
            });
            Ok(())
        }
        Shape::Scalar(Scalar::Other) => {
            out.push_str(text);
            Ok(())
        }
    }
}

/// An object's members in document order (hstore keeps the last of duplicate keys, as
/// json_each_text followed by the hstore cast does).
fn ordered_pairs(text: &str) -> Result<Vec<(std::borrow::Cow<'_, str>, &RawValue)>, ValueError> {
    struct Pairs<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Pairs<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut v = Vec::new();
                    while let Some(e) = m.next_entry()? {
                        v.push(e);
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }
    let p: Pairs<'_> =
        serde_json::from_str(text).map_err(|e| ValueError(format!("bad object: {e}")))?;
    Ok(p.0)
}

/// Writes one array (or sub-array) and returns its dimensions, checking that sibling
/// sub-arrays have the same ones (the server would reject the literal, naming only itself).
fn write_array(
    out: &mut String,
    elem: &Shape,
    delim: char,
    text: &str,
) -> Result<Vec<usize>, ValueError> {
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| ValueError(format!("bad array: {e}")))?;
    let mut inner: Option<Option<Vec<usize>>> = None;
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(delim);
        }
        let t = item.get();
        let dims = if t.starts_with('[') {
            // A further dimension.
            Some(write_array(out, elem, delim, t)?)
        } else {
            if t == "null" {
                out.push_str("NULL");
            } else {
                write_quoted(out, elem, t)?;
            }
            None
        };
        match &inner {
            None => inner = Some(dims),
            Some(d) if *d == dims => {}
            Some(_) => {
                return Err(ValueError(
                    "multidimensional arrays must have sub-arrays with matching dimensions".into(),
                ))
            }
        }
    }
    out.push('}');
    let mut dims = vec![items.len()];
    if let Some(Some(d)) = inner {
        dims.extend(d);
    }
    Ok(dims)
}

/// A nested value, double-quoted for its container.
fn write_quoted(out: &mut String, shape: &Shape, text: &str) -> Result<(), ValueError> {
    if let Shape::Scalar(scalar) = shape {
        // The common case, without an intermediate string: a scalar's text is the JSON
        // string's contents or the JSON text itself (t/f for a boolean).
        return match (text.as_bytes().first(), scalar) {
            (Some(b'"'), Scalar::Boolean | Scalar::Other) => {
                let s: std::borrow::Cow<'_, str> = serde_json::from_str(text)
                    .map_err(|e| ValueError(format!("bad string: {e}")))?;
                quote(out, &s);
                Ok(())
            }
            (_, Scalar::Boolean) if text == "true" || text == "false" => {
                quote(out, &text[..1]);
                Ok(())
            }
            _ => {
                quote(out, text);
                Ok(())
            }
        };
    }
    let mut s = String::with_capacity(text.len());
    write_value(&mut s, shape, text)?;
    quote(out, &s);
    Ok(())
}

/// `"..."` with `\` and `"` backslash-escaped: read back verbatim by array_in, record_in and
/// hstore_in alike.
fn quote(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while let Some(p) = rest.find(['"', '\\']) {
        out.push_str(&rest[..p]);
        out.push('\\');
        out.push_str(&rest[p..p + 1]);
        rest = &rest[p + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(shape: &Shape, json: &str) -> Result<String, ValueError> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        push_structured(&mut out, shape, &raw)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn arr(elem: Shape) -> Shape {
        Shape::Array {
            elem: Box::new(elem),
            delim: b',',
        }
    }

    const TEXT: Shape = Shape::Scalar(Scalar::Other);

    #[test]
    fn arrays_quote_every_element_and_nest_dimensions() {
        assert_eq!(
            enc(&arr(TEXT), "[1, 2, null]").unwrap(),
            "{\"1\",\"2\",NULL}"
        );
        assert_eq!(
            enc(
                &arr(TEXT),
                r#"["a,b", "q\"uote", "back\\slash", "", "NULL"]"#
            )
            .unwrap(),
            // COPY escaping doubles the backslashes of the array literal.
            r#"{"a,b","q\\"uote","back\\\\slash","","NULL"}"#
        );
        assert_eq!(
            enc(&arr(TEXT), "[[1,2],[3,4]]").unwrap(),
            "{{\"1\",\"2\"},{\"3\",\"4\"}}"
        );
        assert_eq!(enc(&arr(TEXT), "[]").unwrap(), "{}");
        assert_eq!(enc(&arr(TEXT), "null").unwrap(), "\\N");
        assert_eq!(enc(&arr(TEXT), "\"{1,2}\"").unwrap(), "{1,2}");
        assert!(enc(&arr(TEXT), "{\"a\": 1}").is_err());
        assert!(enc(&arr(TEXT), "[[1, 2], [3]]").is_err());
        assert!(enc(&arr(TEXT), "[[1], 2]").is_err());
        let tab = enc(&arr(TEXT), r#"["a\tb\nc"]"#).unwrap();
        assert_eq!(tab, "{\"a\\tb\\nc\"}");
        assert_eq!(
            enc(&arr(Shape::Scalar(Scalar::Boolean)), "[true, false]").unwrap(),
            "{\"t\",\"f\"}"
        );
    }

    #[test]
    fn composites_follow_field_order_and_leave_missing_fields_null() {
        let shape = Shape::Composite(vec![
            ("a".into(), TEXT),
            ("b".into(), arr(TEXT)),
            ("c".into(), Shape::Scalar(Scalar::Json)),
            ("d".into(), TEXT),
        ]);
        assert_eq!(
            enc(
                &shape,
                r#"{"c": {"k": [1, 2]}, "a": "x y", "b": [1], "zz": 3}"#
            )
            .unwrap(),
            r#"("x y","{\\"1\\"}","{\\"k\\": [1, 2]}",)"#
        );
        assert_eq!(enc(&shape, r#"{"a": ""}"#).unwrap(), r#"("",,,)"#);
        assert!(enc(&shape, "[1]").is_err());
    }

    #[test]
    fn hstore_pairs() {
        assert_eq!(
            enc(&Shape::Hstore, r#"{"a": "1", "b": null, "c\"": "x\\y"}"#).unwrap(),
            r#""a"=>"1", "b"=>NULL, "c\\""=>"x\\\\y""#
        );
        assert_eq!(enc(&Shape::Hstore, "{}").unwrap(), "");
    }
}
