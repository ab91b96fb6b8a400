//! SQLite table dump: one `SELECT` of the stored columns per table, read row by row through
//! diesel's `load_iter` (SQLite steps the statement as rows are pulled, so memory does not grow
//! with the table), each value read in its own storage class and rendered here.
//!
//! Rendering (by storage class first, then by the column's kind):
//! - NULL → `null`.
//! - INTEGER → the number, digit for digit (beyond 2^53 too); in a boolean column 0 / 1 →
//!   `false` / `true`.
//! - REAL → the shortest text that reads back as the same double (Rust's float formatting);
//!   ±infinity → `"Infinity"` / `"-Infinity"` like PostgreSQL (SQLite stores no NaN).
//! - TEXT → a JSON string, except in a column declared JSON/JSONB, where a valid JSON document
//!   is written as is (with PostgreSQL's `{"$json": ...}` wrapping rules), so it loads into a
//!   PostgreSQL json/jsonb column as the same document. Text that is not valid UTF-8 cannot be
//!   represented in JSON: an error naming the row and column.
//! - BLOB → `"\\x<hex>"`, PostgreSQL's bytea rendering (read from the value's bytes).
//!
//! Order: the primary key; without one, every column (COLLATE BINARY), so the same rows always
//! dump in the same order whatever order they were inserted in.

use std::io::Write;

use diesel::connection::DefaultLoadingMode;
use diesel::deserialize::{self, QueryableByName};
use diesel::row::{Field, NamedRow, Row};
use diesel::sqlite::{Sqlite, SqliteType};
use diesel::RunQueryDsl;

use crate::backend::Connection;
use crate::catalog::{quote_ident, Table, ValueKind};
use crate::error::{describe_diesel, Error, Location, Result};
use crate::format::copy_text::push_json_string;
use crate::format::value::push_json;
use crate::format::writer::FixtureWriter;
use crate::mask::TableMask;
use crate::progress::Progress;
use crate::subset::{self, Key};

/// One value as SQLite stored it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// A row of any shape: its values in select-list order.
struct DynRow(Vec<Val>);

impl QueryableByName<Sqlite> for DynRow {
    fn build<'a>(row: &impl NamedRow<'a, Sqlite>) -> deserialize::Result<Self> {
        let n = Row::field_count(row);
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            let field = Row::get(row, i).ok_or("row has fewer fields than reported")?;
            let val = match field.value() {
                None => Val::Null,
                Some(mut v) => match v.value_type() {
                    None => Val::Null,
                    Some(SqliteType::Long) => Val::Int(v.read_long()),
                    Some(SqliteType::Double) => Val::Real(v.read_double()),
                    // The bytes as stored: UTF-8 is checked when rendering, with the row known.
                    Some(SqliteType::Text) => Val::Text(v.read_blob().to_vec()),
                    Some(SqliteType::Binary) => Val::Blob(v.read_blob().to_vec()),
                    Some(other) => return Err(format!("unexpected value type {other:?}").into()),
                },
            };
            vals.push(val);
        }
        Ok(DynRow(vals))
    }
}

/// The SELECT for a table: stored columns in table order, ordered by key (see the module doc);
/// with `condition`, only the rows matching it (a subset), in the same order.
pub(crate) fn select_sql(table: &Table, condition: Option<&str>) -> String {
    let cols: Vec<String> = table
        .stored_columns()
        .map(|c| quote_ident(&c.name))
        .collect();
    let order: Vec<String> = if table.primary_key.is_empty() {
        cols.iter().map(|c| format!("{c} COLLATE BINARY")).collect()
    } else {
        table.primary_key.iter().map(|c| quote_ident(c)).collect()
    };
    format!(
        "SELECT {} FROM {}{} ORDER BY {}",
        if cols.is_empty() {
            "NULL".to_string()
        } else {
            cols.join(", ")
        },
        table.name.sql(),
        condition.map(|c| format!(" WHERE {c}")).unwrap_or_default(),
        if order.is_empty() {
            "1".to_string()
        } else {
            order.join(", ")
        }
    )
}

pub(super) fn dump_table<W: Write>(
    conn: &mut Connection,
    table: &Table,
    only: Option<&[Key]>,
    mask: &TableMask,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    let Connection::Sqlite(c) = conn else {
        return Err(Error::Invalid(
            "internal error: SQLite dump code called on a PostgreSQL connection".into(),
        ));
    };
    let cols: Vec<(Vec<u8>, ValueKind, &str)> = table
        .stored_columns()
        .map(|c| {
            let mut k = Vec::new();
            push_json_string(&mut k, c.name.as_bytes());
            (k, c.kind, c.name.as_str())
        })
        .collect();
    let pk = table.stored_key_positions();
    let db_err = |e: diesel::result::Error| {
        Error::db(format!("dumping table {}", table.key), describe_diesel(&e))
    };
    let condition = only.map(|_| subset::sqlite::filter_sql(table));
    let sql = select_sql(table, condition.as_deref());
    let mut query = diesel::sql_query(&sql).into_boxed::<Sqlite>();
    if let Some(keys) = only {
        query = query.bind::<diesel::sql_types::Text, _>(subset::sqlite::keys_param(keys));
    }
    let rows = query
        .load_iter::<DynRow, DefaultLoadingMode>(c)
        .map_err(db_err)?;
    let mut values: Vec<Vec<u8>> = vec![Vec::new(); cols.len()];
    let mut mask_scratch = Vec::new();
    let mut count = 0u64;
    for row in rows {
        let row = row.map_err(db_err)?;
        if row.0.len() != cols.len().max(1) {
            return Err(Error::db(
                format!("dumping table {}", table.key),
                format!("row has {} values, expected {}", row.0.len(), cols.len()),
            ));
        }
        for (i, (_, kind, name)) in cols.iter().enumerate() {
            values[i].clear();
            render(&mut values[i], *kind, &row.0[i]).map_err(|message| Error::Fixture {
                location: Box::new(Location {
                    table: Some(table.key.clone()),
                    key: row_key(table, &pk, &row.0),
                    column: Some(name.to_string()),
                    ..Default::default()
                }),
                message,
            })?;
        }
        mask.apply(&mut values, &mut mask_scratch)
            .map_err(|e| Error::Fixture {
                location: Box::new(Location {
                    table: Some(table.key.clone()),
                    row: Some(count as usize),
                    key: row_key(table, &pk, &row.0),
                    column: Some(e.column),
                    ..Default::default()
                }),
                message: e.message,
            })?;
        let fields: Vec<(&[u8], &[u8])> = cols
            .iter()
            .zip(&values)
            .map(|((k, _, _), v)| (k.as_slice(), v.as_slice()))
            .collect();
        w.row(&fields).map_err(|e| Error::io(path, e))?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress.rows(4096);
        }
    }
    progress.rows(count % 4096);
    Ok(count)
}

/// `id=7` / `(a, b)=(1, "x")` for error messages.
fn row_key(table: &Table, pk: &[usize], row: &[Val]) -> Option<String> {
    if pk.is_empty() {
        return None;
    }
    let vals: Vec<String> = pk
        .iter()
        .map(|&i| {
            let mut out = Vec::new();
            match render(&mut out, ValueKind::Text, &row[i]) {
                Ok(()) => String::from_utf8_lossy(&out).into_owned(),
                Err(_) => "?".into(),
            }
        })
        .collect();
    Some(Location::key_text(&table.primary_key, &vals))
}

/// Appends the JSON for one stored value (see the module doc).
fn render(out: &mut Vec<u8>, kind: ValueKind, v: &Val) -> std::result::Result<(), String> {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Int(i) => match (kind, i) {
            (ValueKind::Boolean, 0) => out.extend_from_slice(b"false"),
            (ValueKind::Boolean, 1) => out.extend_from_slice(b"true"),
            _ => {
                let _ = write!(out, "{i}");
            }
        },
        Val::Real(f) => {
            if f.is_nan() {
                out.extend_from_slice(b"null");
            } else if f.is_infinite() {
                out.extend_from_slice(if *f > 0.0 {
                    b"\"Infinity\""
                } else {
                    b"\"-Infinity\""
                });
            } else {
                // Debug: shortest round-trip digits, exponent for very large/small values;
                // always a valid JSON number (`1.0`, `1e300`, `-0.0`, `1.5e-7`).
                let _ = write!(out, "{f:?}");
            }
        }
        Val::Text(bytes) => {
            if std::str::from_utf8(bytes).is_err() {
                return Err("the text is not valid UTF-8, which JSON cannot represent; \
                            store it as a BLOB or fix the text"
                    .into());
            }
            match kind {
                ValueKind::Json | ValueKind::Jsonb
                    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() =>
                {
                    push_json(out, kind, Some(bytes));
                }
                _ => push_json_string(out, bytes),
            }
        }
        Val::Blob(bytes) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.reserve(bytes.len() * 2 + 6);
            out.extend_from_slice(b"\"\\\\x");
            for b in bytes {
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            out.push(b'"');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: ValueKind, v: Val) -> String {
        let mut out = Vec::new();
        render(&mut out, kind, &v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_each_storage_class() {
        assert_eq!(
            r(ValueKind::Integer, Val::Int(9007199254740993)),
            "9007199254740993"
        );
        assert_eq!(
            r(ValueKind::Integer, Val::Int(i64::MIN)),
            "-9223372036854775808"
        );
        assert_eq!(r(ValueKind::Boolean, Val::Int(1)), "true");
        assert_eq!(r(ValueKind::Boolean, Val::Int(0)), "false");
        assert_eq!(r(ValueKind::Boolean, Val::Int(2)), "2");
        assert_eq!(r(ValueKind::Number, Val::Real(0.1)), "0.1");
        assert_eq!(r(ValueKind::Number, Val::Real(1.0)), "1.0");
        assert_eq!(r(ValueKind::Number, Val::Real(-0.0)), "-0.0");
        assert_eq!(r(ValueKind::Number, Val::Real(1e300)), "1e300");
        assert_eq!(
            r(ValueKind::Number, Val::Real(f64::MIN_POSITIVE)),
            "2.2250738585072014e-308"
        );
        assert_eq!(
            r(ValueKind::Number, Val::Real(f64::INFINITY)),
            "\"Infinity\""
        );
        assert_eq!(
            r(ValueKind::Number, Val::Real(f64::NEG_INFINITY)),
            "\"-Infinity\""
        );
        assert_eq!(
            r(ValueKind::Text, Val::Text(b"a\"b\\\n".to_vec())),
            r#""a\"b\\\n""#
        );
        assert_eq!(r(ValueKind::Text, Val::Null), "null");
        assert_eq!(
            r(ValueKind::Bytes, Val::Blob(vec![0, 0xab, 0xff])),
            r#""\\x00abff""#
        );
        assert_eq!(r(ValueKind::Bytes, Val::Blob(vec![])), r#""\\x""#);
        assert_eq!(r(ValueKind::Text, Val::Blob(vec![1])), r#""\\x01""#);
    }

    #[test]
    fn json_text() {
        let t = |s: &str| Val::Text(s.as_bytes().to_vec());
        // A text column holds text, whatever it looks like.
        assert_eq!(r(ValueKind::Text, t(r#"{"a": 1}"#)), r#""{\"a\": 1}""#);
        assert_eq!(r(ValueKind::Text, t("[1, 2]")), r#""[1, 2]""#);
        assert_eq!(r(ValueKind::Json, t(r#"{"a": 1}"#)), r#"{"a": 1}"#);
        assert_eq!(r(ValueKind::Json, t("[1, 2]")), "[1, 2]");
        assert_eq!(r(ValueKind::Text, t("12")), r#""12""#);
        assert_eq!(r(ValueKind::Json, t("12")), "12");
        assert_eq!(r(ValueKind::Json, t("null")), r#"{"$json":null}"#);
        assert_eq!(r(ValueKind::Json, t("not json")), r#""not json""#);
        let mut out = Vec::new();
        assert!(render(&mut out, ValueKind::Text, &Val::Text(vec![0xff])).is_err());
    }
}
