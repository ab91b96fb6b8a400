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
//! NULL), and the literal carries COPY text's escaping on top (as
//! [`super::copy_text::push_field`] writes it). Both are applied in one pass, each byte once
//! with every layer it sits under. The input is JSON serde has already parsed, so the walk
//! trusts its syntax. Domain checks and element types are still the server's (it parses what
//! we send); arrays are checked to be rectangular here so the error names the column.

use serde_json::value::RawValue;

use super::copy_text::push_null;
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

/// PostgreSQL's limit on array dimensions (MAXDIM).
const MAX_DIMS: usize = 6;

/// Appends the COPY field for `raw` going into a column of `shape`.
///
/// One pass over the JSON text, writing the final bytes: `raw` was already parsed by serde
/// (it is valid JSON), so the walk below only finds token boundaries, and each byte is
/// written with every escaping layer it sits under applied at once (see [`Out::text`])
/// instead of building each nested literal as a string and escaping it again.
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
    let mut w = Walk {
        src: text.as_bytes(),
        at: 0,
    };
    let mut o = Out { buf: out };
    w.value(&mut o, 0, shape)?;
    Ok(())
}

/// The output: a COPY text field being written. `level` is how many double-quoted
/// element/field layers the bytes sit in; each layer escapes `"` and `\` with a backslash
/// (read back verbatim by array_in, record_in and hstore_in alike), and COPY then escapes every
/// backslash, tab, newline and carriage return.
struct Out<'o> {
    buf: &'o mut Vec<u8>,
}

impl Out<'_> {
    /// Writes `s` as content at `level`.
    fn text(&mut self, level: u32, s: &[u8]) {
        self.buf.reserve(s.len());
        let mut rest = s;
        while let Some(p) = rest
            .iter()
            .position(|&b| matches!(b, b'"' | b'\\' | b'\t' | b'\n' | b'\r'))
        {
            self.buf.extend_from_slice(&rest[..p]);
            self.byte(level, rest[p]);
            rest = &rest[p + 1..];
        }
        self.buf.extend_from_slice(rest);
    }

    /// One byte at `level`, content or structure (brace, parenthesis, delimiter, quote),
    /// escaped for every layer that escapes it.
    fn byte(&mut self, level: u32, b: u8) {
        match b {
            // `k` quoting layers make a backslash 2^k of them and put 2^k - 1 before a quote;
            // COPY doubles every backslash.
            b'\\' => self.backslashes(2 << level),
            b'"' => {
                self.backslashes(((1usize << level) - 1) * 2);
                self.buf.push(b'"');
            }
            b'\t' => self.buf.extend_from_slice(b"\\t"),
            b'\n' => self.buf.extend_from_slice(b"\\n"),
            b'\r' => self.buf.extend_from_slice(b"\\r"),
            _ => self.buf.push(b),
        }
    }

    fn backslashes(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, b'\\');
    }

    /// A double quote opening or closing a nested value (at its container's `level`).
    fn quote_mark(&mut self, level: u32) {
        self.byte(level, b'"');
    }
}

/// A cursor over valid JSON text.
struct Walk<'a> {
    src: &'a [u8],
    at: usize,
}

/// What a JSON value starts with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Array,
    Object,
    Null,
    Bool(bool),
    Other,
}

impl<'a> Walk<'a> {
    fn ws(&mut self) {
        while self
            .src
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        self.src.get(self.at).copied().unwrap_or(0)
    }

    fn kind(&mut self) -> Kind {
        match self.peek() {
            b'"' => Kind::String,
            b'[' => Kind::Array,
            b'{' => Kind::Object,
            b'n' => Kind::Null,
            b't' => Kind::Bool(true),
            b'f' => Kind::Bool(false),
            _ => Kind::Other,
        }
    }

    /// Consumes `b` if it comes next; the JSON being valid, a miss means a separator or end.
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == b {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Skips one value and returns its text.
    fn skip(&mut self) -> &'a [u8] {
        self.ws();
        let start = self.at;
        match self.src.get(self.at) {
            Some(b'"') => {
                self.string_span();
            }
            Some(b'[' | b'{') => {
                let mut depth = 0usize;
                while let Some(&b) = self.src.get(self.at) {
                    match b {
                        b'"' => {
                            self.string_span();
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while self.src.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
            }
        }
        &self.src[start..self.at]
    }

    /// Moves over a string at the cursor; returns its contents' span and whether it has
    /// escapes.
    fn string_span(&mut self) -> (usize, usize, bool) {
        self.at += 1;
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.src[self.at..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
            {
                Some(p) if self.src[self.at + p] == b'\\' => {
                    escaped = true;
                    self.at += p + 2;
                }
                Some(p) => {
                    self.at += p + 1;
                    return (start, self.at - 1, escaped);
                }
                None => {
                    // Not reachable for valid JSON; end the walk.
                    self.at = self.src.len();
                    return (start, self.at, escaped);
                }
            }
        }
    }

    /// Writes the contents of the string at the cursor, unescaped, at `level`.
    fn string(&mut self, o: &mut Out<'_>, level: u32) -> Result<(), ValueError> {
        self.ws();
        let (start, end, escaped) = self.string_span();
        let s = &self.src[start..end];
        if !escaped {
            o.text(level, s);
            return Ok(());
        }
        let mut buf = Vec::with_capacity(s.len());
        unescape(s, &mut buf)?;
        o.text(level, &buf);
        Ok(())
    }

    /// The object key at the cursor (unescaped when it has escapes), past its colon.
    fn key(&mut self) -> Result<std::borrow::Cow<'a, [u8]>, ValueError> {
        self.ws();
        let (start, end, escaped) = self.string_span();
        let src = self.src;
        let s = &src[start..end];
        self.eat(b':');
        if !escaped {
            return Ok(std::borrow::Cow::Borrowed(s));
        }
        let mut buf = Vec::with_capacity(s.len());
        unescape(s, &mut buf)?;
        Ok(std::borrow::Cow::Owned(buf))
    }

    fn found(&mut self) -> String {
        let save = self.at;
        let t = String::from_utf8_lossy(self.skip()).into_owned();
        self.at = save;
        t
    }

    /// Writes the value at the cursor as the text form of `shape`, unquoted, at `level` (a
    /// container quotes its nested values).
    fn value(&mut self, o: &mut Out<'_>, level: u32, shape: &Shape) -> Result<(), ValueError> {
        let kind = self.kind();
        if kind == Kind::String && !matches!(shape, Shape::Scalar(Scalar::Json)) {
            // A string is the type's own text form (for scalars, just the value).
            return self.string(o, level);
        }
        match shape {
            Shape::Array { elem, delim } => {
                if kind != Kind::Array {
                    return Err(ValueError(format!(
                        "expected a JSON array, found {}",
                        self.found()
                    )));
                }
                let mut dims = Dims::default();
                self.array(o, level, elem, *delim, &mut dims, 0)
            }
            Shape::Composite(fields) => {
                if kind != Kind::Object {
                    return Err(ValueError(format!(
                        "expected a JSON object, found {}",
                        self.found()
                    )));
                }
                self.composite(o, level, fields)
            }
            Shape::Hstore => {
                if kind != Kind::Object {
                    return Err(ValueError(format!(
                        "expected a JSON object, found {}",
                        self.found()
                    )));
                }
                self.hstore(o, level)
            }
            Shape::Scalar(scalar) => {
                let t = self.skip();
                let t: &[u8] = match (scalar, kind) {
                    (Scalar::Boolean, Kind::Bool(true)) if t == b"true" => b"t",
                    (Scalar::Boolean, Kind::Bool(false)) if t == b"false" => b"f",
                    _ => t,
                };
                o.text(level, t);
                Ok(())
            }
        }
    }

    /// A nested value, double-quoted for its container (which is at `level`).
    fn quoted(&mut self, o: &mut Out<'_>, level: u32, shape: &Shape) -> Result<(), ValueError> {
        o.quote_mark(level);
        self.value(o, level + 1, shape)?;
        o.quote_mark(level);
        Ok(())
    }

    /// Writes one array (or sub-array at nesting `depth`), recording its dimensions in `dims`
    /// and checking that sibling sub-arrays have the same ones (the server would reject the
    /// literal, naming only itself).
    fn array(
        &mut self,
        o: &mut Out<'_>,
        level: u32,
        elem: &Shape,
        delim: u8,
        dims: &mut Dims,
        depth: usize,
    ) -> Result<(), ValueError> {
        if depth >= MAX_DIMS {
            return Err(ValueError(format!(
                "arrays have at most {MAX_DIMS} dimensions"
            )));
        }
        self.eat(b'[');
        o.byte(level, b'{');
        let mut n = 0usize;
        // Whether the elements are sub-arrays: decided by the first, the same for all.
        let mut nested: Option<bool> = None;
        if !self.eat(b']') {
            loop {
                if n > 0 {
                    o.byte(level, delim);
                }
                let kind = self.kind();
                let sub = kind == Kind::Array;
                if *nested.get_or_insert(sub) != sub {
                    return Err(mismatched_dims());
                }
                match kind {
                    Kind::Array => self.array(o, level, elem, delim, dims, depth + 1)?,
                    Kind::Null => {
                        self.skip();
                        o.text(level, b"NULL");
                    }
                    _ => self.quoted(o, level, elem)?,
                }
                n += 1;
                if !self.eat(b',') {
                    self.eat(b']');
                    break;
                }
            }
        }
        o.byte(level, b'}');
        // This sub-array's length, and it being the last dimension when it holds no arrays.
        dims.record(depth, n, nested != Some(true))
    }

    fn composite(
        &mut self,
        o: &mut Out<'_>,
        level: u32,
        fields: &[(String, Shape)],
    ) -> Result<(), ValueError> {
        // Members in document order: the common case (what dump writes) is the fields' own
        // order, written as they come; otherwise each field is looked up (the last of
        // duplicate keys wins, as in json_populate_record).
        let mut members: Vec<(std::borrow::Cow<'a, [u8]>, usize)> = Vec::new();
        self.eat(b'{');
        if !self.eat(b'}') {
            loop {
                let k = self.key()?;
                self.ws();
                members.push((k, self.at));
                self.skip();
                if !self.eat(b',') {
                    self.eat(b'}');
                    break;
                }
            }
        }
        let end = self.at;
        o.byte(level, b'(');
        for (i, (name, shape)) in fields.iter().enumerate() {
            if i > 0 {
                o.byte(level, b',');
            }
            let at = members
                .iter()
                .rev()
                .find(|(k, _)| k.as_ref() == name.as_bytes())
                .map(|(_, at)| *at);
            if let Some(at) = at {
                self.at = at;
                if self.kind() != Kind::Null {
                    self.quoted(o, level, shape)?;
                }
            }
        }
        o.byte(level, b')');
        self.at = end;
        Ok(())
    }

    /// hstore's `"k"=>"v", ...`: pairs in document order (hstore_in settles duplicates);
    /// a value that is not a string is its JSON text, `null` is NULL.
    fn hstore(&mut self, o: &mut Out<'_>, level: u32) -> Result<(), ValueError> {
        self.eat(b'{');
        if self.eat(b'}') {
            return Ok(());
        }
        let mut first = true;
        loop {
            if !first {
                o.text(level, b", ");
            }
            first = false;
            let k = self.key()?;
            o.quote_mark(level);
            o.text(level + 1, &k);
            o.quote_mark(level);
            o.text(level, b"=>");
            match self.kind() {
                Kind::Null => {
                    self.skip();
                    o.text(level, b"NULL");
                }
                Kind::String => {
                    o.quote_mark(level);
                    self.string(o, level + 1)?;
                    o.quote_mark(level);
                }
                _ => {
                    let t = self.skip();
                    o.quote_mark(level);
                    o.text(level + 1, t);
                    o.quote_mark(level);
                }
            }
            if !self.eat(b',') {
                self.eat(b'}');
                return Ok(());
            }
        }
    }
}

fn mismatched_dims() -> ValueError {
    ValueError("multidimensional arrays must have sub-arrays with matching dimensions".into())
}

/// The lengths of an array's dimensions as its first sub-arrays set them; every later
/// sub-array at the same depth must match.
#[derive(Default)]
struct Dims {
    len: [Option<usize>; MAX_DIMS],
    /// The depth of the innermost dimension, once known.
    last: Option<usize>,
}

impl Dims {
    fn record(&mut self, depth: usize, n: usize, innermost: bool) -> Result<(), ValueError> {
        match self.len[depth] {
            None => self.len[depth] = Some(n),
            Some(m) if m == n => {}
            Some(_) => return Err(mismatched_dims()),
        }
        // An empty sub-array holds no arrays either: `[[], [[1]]]` has no shape.
        if innermost {
            match self.last {
                None => self.last = Some(depth),
                Some(d) if d == depth => {}
                Some(_) => return Err(mismatched_dims()),
            }
        }
        Ok(())
    }
}

/// Decodes the JSON string contents `s` (between the quotes, valid JSON) into `out`.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
    let mut i = 0;
    while i < s.len() {
        let Some(p) = s[i..].iter().position(|&b| b == b'\\') else {
            out.extend_from_slice(&s[i..]);
            break;
        };
        out.extend_from_slice(&s[i..i + p]);
        i += p + 1;
        let c = s.get(i).copied().unwrap_or(b'\\');
        i += 1;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'u' => {
                let hi = hex4(s, i)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair: `\uD83D\uDE00`.
                    let lo = (s.get(i..i + 2) == Some(&b"\\u"[..]))
                        .then(|| hex4(s, i + 2))
                        .transpose()?
                        .filter(|lo| (0xDC00..0xE000).contains(lo))
                        .ok_or_else(|| ValueError("bad string: lone leading surrogate".into()))?;
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                let ch = char::from_u32(code)
                    .ok_or_else(|| ValueError("bad string: lone trailing surrogate".into()))?;
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            }
            // `\"`, `\\`, `\/`
            other => out.push(other),
        }
    }
    Ok(())
}

fn hex4(s: &[u8], i: usize) -> Result<u32, ValueError> {
    s.get(i..i + 4)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| ValueError("bad string: invalid \\u escape".into()))
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

    #[test]
    fn escapes_compound_with_nesting() {
        // A backslash three layers deep: 2^3 of them, doubled by COPY.
        let shape = Shape::Composite(vec![(
            "x".into(),
            Shape::Composite(vec![("y".into(), arr(TEXT))]),
        )]);
        let bs = |n: usize| "\\".repeat(n);
        // Quotes at depth k get 2^k - 1 backslashes, a backslash becomes 2^k; COPY doubles both.
        let want = format!(
            "(\"(\\\\\"{{{q2}\"{b3}{q2}\"}}\\\\\")\")",
            q2 = bs(6),
            b3 = bs(16)
        );
        assert_eq!(enc(&shape, r#"{"x": {"y": ["\\"]}}"#).unwrap(), want);
        // Escaped JSON strings and surrogate pairs decode before quoting.
        assert_eq!(
            enc(&arr(TEXT), r#"["\u00e9\ud83d\ude00\/\b"]"#).unwrap(),
            "{\"é😀/\u{8}\"}"
        );
        assert!(enc(&arr(TEXT), r#"["\ud83d x"]"#).is_err());
    }

    /// An independent reading of the module's rules over `serde_json::Value`, as the oracle
    /// for the single-pass encoder: the literal, then COPY's escaping.
    fn reference_field(shape: &Shape, json: &str) -> Result<String, ()> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        if v.is_null() {
            return Ok("\\N".into());
        }
        let lit = reference(shape, &v)?;
        let mut out = Vec::new();
        crate::format::copy_text::push_field(&mut out, lit.as_bytes());
        Ok(String::from_utf8(out).unwrap())
    }

    fn quoted(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn reference(shape: &Shape, v: &serde_json::Value) -> Result<String, ()> {
        use serde_json::Value;
        match (shape, v) {
            (Shape::Scalar(Scalar::Json), v) => Ok(v.to_string()),
            (_, Value::String(s)) => Ok(s.clone()),
            (Shape::Scalar(Scalar::Boolean), Value::Bool(b)) => {
                Ok(if *b { "t" } else { "f" }.into())
            }
            (Shape::Scalar(_), v) => Ok(v.to_string()),
            (Shape::Array { elem, delim }, Value::Array(_)) => {
                reference_array(elem, *delim as char, v).map(|(s, _)| s)
            }
            (Shape::Composite(fields), Value::Object(m)) => {
                let parts: Result<Vec<String>, ()> = fields
                    .iter()
                    .map(|(name, shape)| match m.get(name) {
                        None | Some(Value::Null) => Ok(String::new()),
                        Some(v) => reference(shape, v).map(|s| quoted(&s)),
                    })
                    .collect();
                Ok(format!("({})", parts?.join(",")))
            }
            (Shape::Hstore, Value::Object(m)) => Ok(m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => "NULL".into(),
                        Value::String(s) => quoted(s),
                        other => quoted(&other.to_string()),
                    };
                    format!("{}=>{v}", quoted(k))
                })
                .collect::<Vec<_>>()
                .join(", ")),
            _ => Err(()),
        }
    }

    fn reference_array(
        elem: &Shape,
        delim: char,
        v: &serde_json::Value,
    ) -> Result<(String, Vec<usize>), ()> {
        let items = v.as_array().unwrap();
        let mut parts = Vec::new();
        let mut inner: Option<Option<Vec<usize>>> = None;
        for item in items {
            let (s, dims) = match item {
                serde_json::Value::Array(_) => {
                    let (s, d) = reference_array(elem, delim, item)?;
                    (s, Some(d))
                }
                serde_json::Value::Null => ("NULL".into(), None),
                other => (quoted(&reference(elem, other)?), None),
            };
            if *inner.get_or_insert_with(|| dims.clone()) != dims {
                return Err(());
            }
            parts.push(s);
        }
        let mut dims = vec![items.len()];
        if let Some(Some(d)) = inner {
            dims.extend(d);
        }
        if dims.len() > MAX_DIMS {
            return Err(());
        }
        Ok((format!("{{{}}}", parts.join(&delim.to_string())), dims))
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn shape() -> impl Strategy<Value = Shape> {
            let scalar = prop_oneof![
                Just(Shape::Scalar(Scalar::Other)),
                Just(Shape::Scalar(Scalar::Boolean)),
                Just(Shape::Scalar(Scalar::Json)),
                Just(Shape::Hstore),
            ];
            scalar.prop_recursive(3, 12, 3, |inner| {
                prop_oneof![
                    (inner.clone(), prop_oneof![Just(b','), Just(b';')]).prop_map(
                        |(elem, delim)| match elem {
                            // PostgreSQL arrays are dimensions, not arrays of arrays.
                            Shape::Array { elem, .. } => Shape::Array { elem, delim },
                            elem => Shape::Array {
                                elem: Box::new(elem),
                                delim,
                            },
                        }
                    ),
                    proptest::collection::vec(inner, 1..4).prop_map(|fields| {
                        Shape::Composite(
                            fields
                                .into_iter()
                                .enumerate()
                                .map(|(i, s)| {
                                    (["a", "b\"q", "é c"][i % 3].to_string() + &i.to_string(), s)
                                })
                                .collect(),
                        )
                    }),
                ]
            })
        }

        fn text() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("\""),
                    Just("\\"),
                    Just(","),
                    Just(";"),
                    Just("{"),
                    Just("}"),
                    Just("("),
                    Just(")"),
                    Just("\t"),
                    Just("\n"),
                    Just("\r"),
                    Just(" "),
                    Just("é"),
                    Just("☃"),
                    Just("😀"),
                    Just("NULL"),
                    Just("=>"),
                    Just("x"),
                    Just("\u{1}"),
                    Just("\\N"),
                ],
                0..6,
            )
            .prop_map(|v| v.concat())
        }

        /// A value for `shape`: mostly one that fits, sometimes any JSON.
        fn value(shape: &Shape, depth: u32) -> BoxedStrategy<Value> {
            let loose = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i32>().prop_map(Value::from),
                // Quarters: exact in binary, so the text survives a parse (no float_roundtrip).
                (-4_000_000i64..4_000_000).prop_map(|n| Value::from(n as f64 / 4.0)),
                text().prop_map(Value::String),
            ]
            .boxed();
            let fitting = match shape {
                Shape::Scalar(_) => loose.clone(),
                Shape::Hstore => proptest::collection::vec((text(), loose.clone()), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect()))
                    .boxed(),
                Shape::Composite(fields) => {
                    let parts: Vec<BoxedStrategy<(String, Value)>> = fields
                        .iter()
                        .map(|(n, s)| {
                            let n = n.clone();
                            value(s, depth + 1)
                                .prop_map(move |v| (n.clone(), v))
                                .boxed()
                        })
                        .collect();
                    (
                        parts,
                        proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
                        any::<bool>(),
                    )
                        .prop_map(|(kv, _drop, rev)| {
                            let mut kv = kv;
                            if rev {
                                kv.reverse();
                            }
                            Value::Object(kv.into_iter().collect())
                        })
                        .boxed()
                }
                Shape::Array { elem, .. } => {
                    let e = value(elem, depth + 1);
                    prop_oneof![
                        proptest::collection::vec(e.clone(), 0..4).prop_map(Value::Array),
                        // A second dimension, rectangular or (sometimes) not.
                        (
                            proptest::collection::vec(proptest::collection::vec(e, 2), 1..3),
                            any::<u8>()
                        )
                            .prop_map(|(rows, cut)| {
                                let mut rows: Vec<Value> =
                                    rows.into_iter().map(Value::Array).collect();
                                if cut % 5 == 0 {
                                    if let Some(Value::Array(r)) = rows.last_mut() {
                                        r.pop();
                                    }
                                }
                                Value::Array(rows)
                            }),
                    ]
                    .boxed()
                }
            };
            if depth > 2 {
                return fitting;
            }
            prop_oneof![8 => fitting, 1 => loose].boxed()
        }

        fn has_json(shape: &Shape) -> bool {
            match shape {
                Shape::Scalar(s) => *s == Scalar::Json,
                Shape::Hstore => false,
                Shape::Array { elem, .. } => has_json(elem),
                Shape::Composite(f) => f.iter().any(|(_, s)| has_json(s)),
            }
        }

        /// The same JSON with every non-ASCII character as `\u` escapes (pairs for astral).
        fn ascii_escaped(json: &str) -> String {
            let mut out = String::new();
            for c in json.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn single_pass_encoder_matches_the_reference(
                (shape, v) in shape().prop_flat_map(|s| { let v = value(&s, 0); (Just(s), v) })
            ) {
                let compact = serde_json::to_string(&v).unwrap();
                let want = reference_field(&shape, &compact);
                let mut texts = vec![compact.clone()];
                if !has_json(&shape) {
                    // Whitespace and escapes are the JSON's business, not the value's.
                    texts.push(serde_json::to_string_pretty(&v).unwrap());
                    texts.push(ascii_escaped(&compact));
                }
                for t in texts {
                    let got = enc(&shape, &t);
                    match &want {
                        Ok(w) => prop_assert_eq!(got.as_ref().ok(), Some(w), "{:?} {}", shape, t),
                        Err(()) => prop_assert!(got.is_err(), "{:?} {} gave {:?}", shape, t, got),
                    }
                }
            }
        }
    }
}
