//! `dump --format django`: what `manage.py dumpdata` writes for the same rows.
//!
//! The rows are dumped by [`crate::dump`] exactly as for the native format (so table selection,
//! and whatever else shapes the native dump, applies unchanged) into a temporary native fixture;
//! this module is only a different encoder of those rows:
//! - each table becomes its Django model (`django_content_type` rows with Django's default table
//!   names, Django's own tables, `--django-model` / `[django] models`); a table that is no model
//!   is an error naming it (except `django_migrations`, which dumpdata never writes);
//! - the primary key becomes `pk`, a foreign-key column `x_id` the field `x`, values take Django's
//!   forms (datetimes to milliseconds with `Z`, decimals and durations as strings, base64 bytes,
//!   ArrayField lists as JSON in a string);
//! - auto-created many-to-many through tables are folded into their owner's objects as pk lists
//!   (their links are held in memory while the owners are written), never written on their own;
//! - output is a JSON array (`--pretty`: `--indent 2`'s layout) or, for a `.jsonl` path, one
//!   object per line; `.gz` compresses.

use std::collections::HashMap;
use std::io::{BufReader, Seek, Write};
use std::path::Path;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::backend::Connection;
use crate::catalog::{Catalog, Column, Table, ValueKind};
use crate::dump::{DumpOptions, DumpSummary};
use crate::error::{Error, Result};
use crate::format::reader::{FixtureReader, RawRow, ReadError};
use crate::format::value::json_wrapper;
use crate::progress::Progress;

/// How the Django output is laid out and named.
#[derive(Debug, Clone, Default)]
pub struct DjangoDumpOptions {
    /// `(table, "app_label.model")` for tables whose name is not Django's default.
    pub models: Vec<(String, String)>,
    /// One object per line instead of an array.
    pub jsonl: bool,
}

/// An auto-created through table folded into its owner.
#[derive(Debug, Clone)]
struct Through {
    owner_table: usize,
    field: String,
    owner_col: String,
    target_col: String,
}

/// Dumps the selected tables as a Django fixture to `path` (`.jsonl` → JSON Lines, `.gz` →
/// gzip), atomically; `None` writes to `out`.
pub fn dump(
    conn: &mut Connection,
    opts: &DumpOptions,
    dj: &DjangoDumpOptions,
    path: Option<&Path>,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    let mut native = tempfile::tempfile().map_err(|e| Error::io("temporary file", e))?;
    let native_opts = DumpOptions {
        pretty: false,
        ..opts.clone()
    };
    let mut summary = crate::dump::dump(conn, &native_opts, &mut native, progress)?;
    let catalog = Catalog::read(conn)?;
    let labels = model_labels(conn, &catalog, &dj.models)?;
    let throughs = find_throughs(&catalog, &labels);
    let name = path.map_or("<stdout>".to_string(), |p| p.display().to_string());
    let lower = name.to_lowercase();
    let jsonl = dj.jsonl || lower.trim_end_matches(".gz").ends_with(".jsonl");
    let gzip = lower.ends_with(".gz");
    let links = collect_links(&mut native, &catalog, &labels, &throughs)?;
    let write_all = |w: &mut dyn Write, native: &mut std::fs::File| -> Result<(u64, u64)> {
        let mut counter = Counting { inner: w, bytes: 0 };
        let objects = write_objects(
            native,
            &catalog,
            &labels,
            &throughs,
            &links,
            jsonl,
            opts.pretty,
            &mut counter,
        )
        .map_err(|e| match e {
            WriteError::Io(e) => Error::io(&name, e),
            WriteError::Other(e) => e,
        })?;
        Ok((objects, counter.bytes))
    };
    let (objects, bytes) = match path {
        None => {
            let mut buf = std::io::BufWriter::with_capacity(256 * 1024, out);
            let r = write_all(&mut buf, &mut native)?;
            buf.flush().map_err(|e| Error::io(&name, e))?;
            r
        }
        Some(p) => {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".dbfixtures-")
                .tempfile_in(&dir)
                .map_err(|e| Error::io(&name, e))?;
            let r = {
                let buf = std::io::BufWriter::with_capacity(256 * 1024, tmp.as_file());
                if gzip {
                    let mut gz = flate2::write::GzEncoder::new(buf, flate2::Compression::fast());
                    let r = write_all(&mut gz, &mut native)?;
                    gz.finish()
                        .and_then(|mut b| b.flush())
                        .map_err(|e| Error::io(&name, e))?;
                    r
                } else {
                    let mut buf = buf;
                    let r = write_all(&mut buf, &mut native)?;
                    buf.flush().map_err(|e| Error::io(&name, e))?;
                    r
                }
            };
            tmp.persist(p).map_err(|e| Error::io(&name, e.error))?;
            r
        }
    };
    summary.rows = objects;
    summary.bytes = bytes;
    Ok(summary)
}

/// Checks that every table in `tables` (keys, as a subset plan lists them) can be written as a
/// Django model, as [`dump`] does before writing: `dump --plan --format django`.
pub fn check_models(
    conn: &mut Connection,
    dj: &DjangoDumpOptions,
    tables: &[String],
) -> Result<()> {
    let catalog = Catalog::read(conn)?;
    let labels = model_labels(conn, &catalog, &dj.models)?;
    let throughs = find_throughs(&catalog, &labels);
    for key in tables {
        let t = catalog.find(key)?;
        let table = &catalog.tables[t];
        if !throughs.contains_key(&t) && table.name.name != "django_migrations" {
            model_of(table, labels.get(&t))?;
        }
    }
    Ok(())
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Table → model label: the overrides, Django's own tables, then every content type whose
/// default table exists.
fn model_labels(
    conn: &mut Connection,
    catalog: &Catalog,
    overrides: &[(String, String)],
) -> Result<HashMap<usize, String>> {
    let mut labels = HashMap::new();
    if let Ok(ct) = catalog.find("django_content_type") {
        let table = &catalog.tables[ct];
        let pairs: Option<Vec<(String, String)>> = conn.query_json(&format!(
            "SELECT CAST({} AS TEXT) AS j",
            content_types_sql(conn, table)
        ))?;
        for (app, model) in pairs.unwrap_or_default() {
            let label = format!("{app}.{model}");
            let default = super::BUILTIN_TABLES
                .iter()
                .find(|(m, _)| *m == label)
                .map(|(_, t)| t.to_string())
                .unwrap_or_else(|| format!("{app}_{model}"));
            if let Ok(t) = catalog.find(&default) {
                labels.insert(t, label);
            }
        }
    }
    for (m, t) in super::BUILTIN_TABLES {
        if let Ok(i) = catalog.find(t) {
            labels.entry(i).or_insert_with(|| m.to_string());
        }
    }
    for (table, model) in overrides {
        let t = catalog.find(table)?;
        labels.insert(t, model.to_lowercase());
    }
    Ok(labels)
}

/// `(app_label, model)` pairs of the content types, as a JSON array, in the backend's SQL.
fn content_types_sql(conn: &Connection, table: &Table) -> String {
    match conn.backend() {
        crate::backend::Backend::Postgres => format!(
            "(SELECT json_agg(json_build_array(app_label, model)) FROM {})",
            table.name.sql()
        ),
        crate::backend::Backend::Sqlite => format!(
            "(SELECT json_group_array(json_array(app_label, model)) FROM {})",
            table.name.sql()
        ),
    }
}

/// Tables with no model that have the shape of an auto-created through table: `<owner>_<field>`,
/// a pk, and exactly two single-column foreign keys, one of them to the owner.
fn find_throughs(catalog: &Catalog, labels: &HashMap<usize, String>) -> HashMap<usize, Through> {
    let mut out = HashMap::new();
    for (ti, table) in catalog.tables.iter().enumerate() {
        if labels.contains_key(&ti) || table.columns.len() != 3 || table.primary_key.len() != 1 {
            continue;
        }
        let fks: Vec<_> = catalog
            .foreign_keys
            .iter()
            .filter(|fk| fk.table == table.name && fk.columns.len() == 1)
            .collect();
        if fks.len() != 2 {
            continue;
        }
        for (oi, owner) in catalog.tables.iter().enumerate() {
            if owner.name.schema != table.name.schema || !labels.contains_key(&oi) {
                continue;
            }
            let Some(field) = table
                .name
                .name
                .strip_prefix(&format!("{}_", owner.name.name))
            else {
                continue;
            };
            let to_owner: Vec<&String> = fks
                .iter()
                .filter(|fk| fk.ref_table == owner.name)
                .map(|fk| &fk.columns[0])
                .collect();
            let owner_col = match to_owner.as_slice() {
                [one] => (*one).clone(),
                [..] => match to_owner.iter().find(|c| c.starts_with("from_")) {
                    Some(c) => (*c).clone(),
                    None => continue,
                },
            };
            let target_col = fks
                .iter()
                .map(|fk| fk.columns[0].clone())
                .find(|c| *c != owner_col)
                .expect("two foreign keys");
            out.insert(
                ti,
                Through {
                    owner_table: oi,
                    field: field.to_string(),
                    owner_col,
                    target_col,
                },
            );
        }
    }
    out
}

/// Owner table → field → owner pk (JSON text) → targets (JSON texts), in dump order.
type Links = HashMap<usize, Vec<(String, HashMap<String, Vec<String>>)>>;

fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::Io(e) => Error::io("temporary dump", e),
        ReadError::Syntax(s) => Error::Invalid(format!("temporary dump: {s}")),
    }
}

fn collect_links(
    native: &mut std::fs::File,
    catalog: &Catalog,
    labels: &HashMap<usize, String>,
    throughs: &HashMap<usize, Through>,
) -> Result<Links> {
    let mut links: Links = HashMap::new();
    native
        .rewind()
        .map_err(|e| Error::io("temporary dump", e))?;
    let mut r = FixtureReader::new(BufReader::with_capacity(256 * 1024, &*native));
    let mut row = RawRow::default();
    while let Some(key) = r.next_table().map_err(read_error)? {
        let t = catalog.find(&key)?;
        let table = &catalog.tables[t];
        if !throughs.contains_key(&t) && table.name.name != "django_migrations" {
            // Before the first byte is written: an unmapped table fails the dump, not halfway.
            model_of(table, labels.get(&t))?;
        }
        let through = throughs.get(&t).cloned();
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        while r.next_row_into(&mut row).map_err(read_error)? {
            let Some(th) = &through else { continue };
            let fields = row
                .fields()
                .map_err(|e| Error::Invalid(format!("temporary dump: {e}")))?;
            let get = |c: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, v)| v.get().to_string())
            };
            if let (Some(o), Some(t)) = (get(&th.owner_col), get(&th.target_col)) {
                map.entry(o).or_default().push(t);
            }
        }
        if let Some(th) = through {
            links
                .entry(th.owner_table)
                .or_default()
                .push((th.field.clone(), map));
        }
    }
    Ok(links)
}

enum WriteError {
    Io(std::io::Error),
    Other(Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Other(e)
    }
}

/// The model a written table becomes, or why it cannot be one (checked for every table before
/// anything is written, and again as each is written).
fn model_of<'a>(table: &Table, label: Option<&'a String>) -> Result<&'a String> {
    let Some(label) = label else {
        return Err(Error::Invalid(format!(
            "table {} is no Django model (no content type names it): pass \
             --django-model {}=app_label.model, or leave it out with --exclude-table",
            table.key, table.key
        )));
    };
    if table.primary_key.len() != 1 {
        return Err(Error::Invalid(format!(
            "table {} has {} primary-key columns; a Django model has one",
            table.key,
            table.primary_key.len()
        )));
    }
    Ok(label)
}

#[allow(clippy::too_many_arguments)]
fn write_objects(
    native: &mut std::fs::File,
    catalog: &Catalog,
    labels: &HashMap<usize, String>,
    throughs: &HashMap<usize, Through>,
    links: &Links,
    jsonl: bool,
    pretty: bool,
    out: &mut dyn Write,
) -> std::result::Result<u64, WriteError> {
    native.rewind()?;
    let mut r = FixtureReader::new(BufReader::with_capacity(256 * 1024, &*native));
    let mut row = RawRow::default();
    let mut objects = 0u64;
    if !jsonl {
        out.write_all(b"[")?;
    }
    while let Some(key) = r.next_table().map_err(read_error)? {
        let t = catalog.find(&key)?;
        let table = &catalog.tables[t];
        if throughs.contains_key(&t) || table.name.name == "django_migrations" {
            while r.skip_row().map_err(read_error)? {}
            continue;
        }
        let label = model_of(table, labels.get(&t))?;
        let pk_col = &table.primary_key[0];
        let fk_cols: Vec<&str> = catalog
            .foreign_keys
            .iter()
            .filter(|fk| fk.table == table.name && fk.columns.len() == 1)
            .map(|fk| fk.columns[0].as_str())
            .collect();
        let own_links = links.get(&t);
        while r.next_row_into(&mut row).map_err(read_error)? {
            let fields = row
                .fields()
                .map_err(|e| Error::Invalid(format!("temporary dump: {e}")))?;
            let mut obj = serde_json::Map::new();
            obj.insert("model".into(), Value::String(label.clone()));
            let mut pk_text = String::new();
            let mut out_fields = serde_json::Map::new();
            for (name, value) in &fields {
                let Some(col) = table.column(name) else {
                    continue;
                };
                let v = django_value(col, value).map_err(|m| {
                    Error::Invalid(format!("table {}, column {}: {m}", table.key, col.name))
                })?;
                if name == pk_col {
                    pk_text = value.get().to_string();
                    obj.insert("pk".into(), v);
                    continue;
                }
                let field = match name.strip_suffix("_id") {
                    Some(f) if fk_cols.contains(&name.as_ref()) => f.to_string(),
                    _ => name.to_string(),
                };
                out_fields.insert(field, v);
            }
            for (field, by_owner) in own_links.into_iter().flatten() {
                let targets = by_owner
                    .get(&pk_text)
                    .map(|ts| {
                        ts.iter()
                            .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
                            .collect()
                    })
                    .unwrap_or_default();
                out_fields.insert(field.clone(), Value::Array(targets));
            }
            obj.insert("fields".into(), Value::Object(out_fields));
            if jsonl {
                write_value(out, &Value::Object(obj), false)?;
                out.write_all(b"\n")?;
            } else {
                if objects > 0 {
                    out.write_all(if pretty { b",\n" } else { b", " })?;
                } else if pretty {
                    out.write_all(b"\n")?;
                }
                write_value(out, &Value::Object(obj), pretty)?;
            }
            objects += 1;
        }
    }
    if !jsonl {
        out.write_all(if pretty && objects > 0 {
            b"\n]\n"
        } else {
            b"]"
        })?;
    }
    Ok(objects)
}

/// Python's `json.dumps` layout: `", "` and `": "` separators, or `indent=2`.
fn write_value(out: &mut dyn Write, v: &Value, pretty: bool) -> std::io::Result<()> {
    if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            out,
            serde_json::ser::PrettyFormatter::with_indent(b"  "),
        );
        serde::Serialize::serialize(v, &mut ser).map_err(std::io::Error::other)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(out, PythonFormatter);
        serde::Serialize::serialize(v, &mut ser).map_err(std::io::Error::other)
    }
}

struct PythonFormatter;

fn python_separator<W: ?Sized + Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        python_separator(w, first)
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        python_separator(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// One native value (the native dump's JSON) in Django's form for `col`.
fn django_value(col: &Column, raw: &RawValue) -> std::result::Result<Value, String> {
    let text = raw.get();
    if text == "null" {
        return Ok(Value::Null);
    }
    let ty = col.type_name.as_str();
    let string = || serde_json::from_str::<String>(text).map_err(|e| e.to_string());
    Ok(match col.kind {
        ValueKind::DateTime if ty.starts_with("timestamp") => {
            Value::String(django_datetime(&string()?))
        }
        ValueKind::Text if ty.starts_with("time") => Value::String(django_time(&string()?)),
        ValueKind::Text if ty == "interval" => Value::String(django_duration(&string()?)?),
        ValueKind::Number if ty.starts_with("numeric") => Value::String(text.to_string()),
        ValueKind::Bytes => {
            let s = string()?;
            let hex = s.strip_prefix("\\x").ok_or("bytea without \\x")?;
            let bytes: std::result::Result<Vec<u8>, String> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
                .collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes?))
        }
        ValueKind::Structured if ty.ends_with("[]") => {
            let items: Vec<Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let strings: Vec<Value> = items
                .into_iter()
                .map(|v| match v {
                    Value::Null => Value::Null,
                    Value::String(s) => Value::String(s),
                    Value::Bool(b) => Value::String(if b { "True" } else { "False" }.into()),
                    other => Value::String(other.to_string()),
                })
                .collect();
            Value::String(python_dumps(&Value::Array(strings)))
        }
        ValueKind::Json | ValueKind::Jsonb => {
            let inner = if text.starts_with('{') {
                json_wrapper(text.as_bytes()).map_or(text, |w| w.get())
            } else {
                text
            };
            serde_json::from_str(inner).map_err(|e| e.to_string())?
        }
        _ => serde_json::from_str(text).map_err(|e| e.to_string())?,
    })
}

/// Python's default `json.dumps` (ASCII only, `", "` separators), as ArrayField writes its list.
fn python_dumps(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(v, &mut ser).expect("serializes");
    let s = String::from_utf8(out).expect("UTF-8");
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                ascii.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    ascii
}

/// Splits `[.fraction]` off a time text; the fraction padded to microseconds.
fn split_fraction(t: &str) -> (&str, String) {
    match t.split_once('.') {
        Some((whole, frac)) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            (whole, format!("{digits:0<6}"))
        }
        None => (t, "000000".into()),
    }
}

/// `2024-03-05T14:07:09.123456+00:00` → `2024-03-05T14:07:09.123Z` (DjangoJSONEncoder: ISO
/// format, milliseconds, `Z` for UTC).
fn django_datetime(s: &str) -> String {
    let (body, zone) = match s.rfind(['+', '-']).filter(|&i| i > 10) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let (whole, micros) = split_fraction(body);
    let mut out = whole.to_string();
    if micros != "000000" {
        out.push('.');
        out.push_str(&micros[..3]);
    }
    match zone {
        "+00:00" | "+00" => out.push('Z'),
        "" => {}
        z => out.push_str(z),
    }
    out
}

/// `08:30:15.25` → `08:30:15.250` (milliseconds when there is a fraction).
fn django_time(s: &str) -> String {
    let (whole, micros) = split_fraction(s);
    if micros == "000000" {
        whole.to_string()
    } else {
        format!("{whole}.{}", &micros[..3])
    }
}

/// PostgreSQL's interval text (`-1 days +02:00:00.000005`, IntervalStyle postgres) → Django's
/// `duration_string` (`-1 02:00:00.000005`): days (a month counted as 30 days) and a time of
/// day that is never negative, as Python's timedelta normalizes it.
fn django_duration(s: &str) -> std::result::Result<String, String> {
    let mut micros: i128 = 0;
    let parts: Vec<&str> = s.split_whitespace().collect();
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        if p.contains(':') {
            let neg = p.starts_with('-');
            let p = p.trim_start_matches(['-', '+']);
            let f: Vec<&str> = p.split(':').collect();
            let h: i128 = f[0].parse().map_err(|_| format!("bad interval {s}"))?;
            let m: i128 = f
                .get(1)
                .unwrap_or(&"0")
                .parse()
                .map_err(|_| format!("bad interval {s}"))?;
            let (sec, frac) = split_fraction(f.get(2).unwrap_or(&"0"));
            let sec: i128 = sec.parse().map_err(|_| format!("bad interval {s}"))?;
            let us: i128 = frac.parse().unwrap_or(0);
            let t = ((h * 60 + m) * 60 + sec) * 1_000_000 + us;
            micros += if neg { -t } else { t };
            i += 1;
        } else {
            let n: i128 = p.parse().map_err(|_| format!("bad interval {s}"))?;
            let unit = parts.get(i + 1).copied().unwrap_or("");
            let days = if unit.starts_with("year") {
                n * 365
            } else if unit.starts_with("mon") {
                n * 30
            } else {
                n
            };
            micros += days * 86_400_000_000;
            i += 2;
        }
    }
    let day = 86_400_000_000i128;
    let days = micros.div_euclid(day);
    let rest = micros.rem_euclid(day);
    let (secs, us) = (rest / 1_000_000, rest % 1_000_000);
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if days != 0 {
        out = format!("{days} {out}");
    }
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_djangos_forms() {
        assert_eq!(
            django_datetime("2024-03-05T14:07:09.123456+00:00"),
            "2024-03-05T14:07:09.123Z"
        );
        assert_eq!(
            django_datetime("1999-12-31T23:59:59+00:00"),
            "1999-12-31T23:59:59Z"
        );
        assert_eq!(
            django_datetime("2024-03-05T14:07:09.5"),
            "2024-03-05T14:07:09.500"
        );
        assert_eq!(django_time("08:30:15.25"), "08:30:15.250");
        assert_eq!(django_time("08:30:15"), "08:30:15");
        assert_eq!(
            django_duration("-1 days +02:00:00.000005").unwrap(),
            "-1 02:00:00.000005"
        );
        assert_eq!(django_duration("00:01:30").unwrap(), "00:01:30");
        assert_eq!(django_duration("-00:00:01").unwrap(), "-1 23:59:59");
        assert_eq!(django_duration("3 days").unwrap(), "3 00:00:00");
        assert_eq!(
            python_dumps(&serde_json::json!(["x", "ü", null])),
            r#"["x", "\u00fc", null]"#
        );
    }
}
