//! SQLite SQL for subsets.
//!
//! A row's identity is its primary key, else its `rowid` (stable within the dump's read
//! transaction; a WITHOUT ROWID table always has a primary key). A key is the identity as a
//! JSON array that keeps each value's storage class: `[7]`, `["a",1.5]`; a BLOB, which JSON
//! cannot hold, as `{"x":"<hex>"}` (`[{"x":"00ff"}]`).
//!
//! Keys go to SQLite as one bound JSON text, an array of those arrays, read back with
//! `json_each` and `json_extract` (and `unhex` for BLOBs) in a row-value `IN`, so values are
//! never in SQL text.

use diesel::sql_types::Text;
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryableByName, RunQueryDsl};

use super::Key;
use crate::catalog::{quote_ident, Table};
use crate::error::{describe_diesel, Error, Result};

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    k: String,
}

fn identity(table: &Table) -> Vec<String> {
    if table.primary_key.is_empty() {
        vec!["rowid".into()]
    } else {
        table.primary_key.iter().map(|c| quote_ident(c)).collect()
    }
}

/// The key of a row as JSON text, built as text (no JSON subtypes to lose on the way).
fn key_json(table: &Table, alias: &str) -> String {
    let parts: Vec<String> = identity(table)
        .iter()
        .map(|e| {
            let e = format!("{alias}{e}");
            format!(
                "CASE WHEN typeof({e}) = 'blob' THEN '{{\"x\":\"' || hex({e}) || '\"}}' \
                 ELSE json_quote({e}) END"
            )
        })
        .collect();
    format!("'[' || {} || ']'", parts.join(" || ',' || "))
}

/// `(a.x, a.y) IN (SELECT json_extract(j.value, '$[0]'), ... FROM json_each(?) AS j)`.
fn identity_in(table: &Table, alias: &str) -> String {
    let id = identity(table);
    let cols: Vec<String> = id.iter().map(|e| format!("{alias}{e}")).collect();
    let parts: Vec<String> = (0..id.len())
        .map(|i| {
            format!(
                "CASE json_type(j.value, '$[{i}]') WHEN 'object' \
                 THEN unhex(json_extract(j.value, '$[{i}].x')) \
                 ELSE json_extract(j.value, '$[{i}]') END"
            )
        })
        .collect();
    format!(
        "({}) IN (SELECT {} FROM json_each(?) AS j)",
        cols.join(", "),
        parts.join(", ")
    )
}

/// The bound parameter for [`identity_in`]: one JSON array of the keys.
pub(crate) fn keys_param(keys: &[Key]) -> String {
    let mut s = String::with_capacity(keys.iter().map(|k| k.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
    }
    s.push(']');
    s
}

fn load_keys(
    conn: &mut SqliteConnection,
    sql: &str,
    bind: Option<String>,
    what: impl FnOnce(String) -> Error,
) -> Result<Vec<Key>> {
    let mut q = diesel::sql_query(sql).into_boxed::<Sqlite>();
    if let Some(b) = bind {
        q = q.bind::<Text, _>(b);
    }
    let rows: Vec<KeyRow> = q.load(conn).map_err(|e| what(describe_diesel(&e)))?;
    Ok(rows.into_iter().map(|r| r.k.into_boxed_str()).collect())
}

pub(super) fn count_sql(table: &Table) -> String {
    format!(
        "SELECT CAST(count(*) AS TEXT) AS j FROM {}",
        table.name.sql()
    )
}

pub(super) fn seed_keys(
    conn: &mut SqliteConnection,
    table: &Table,
    condition: &str,
) -> Result<Vec<Key>> {
    let sql = format!(
        "SELECT {} AS k FROM {} WHERE ({condition}\n)",
        key_json(table, ""),
        table.name.sql()
    );
    load_keys(conn, &sql, None, Error::Invalid)
}

pub(super) fn related(
    conn: &mut SqliteConnection,
    src: &Table,
    src_cols: &[String],
    src_keys: Option<&[Key]>,
    dst: &Table,
    dst_cols: &[String],
) -> Result<Vec<Key>> {
    let filter = match src_keys {
        None => String::new(),
        Some(_) => format!(" WHERE {}", identity_in(src, "s.")),
    };
    let sql = super::related_sql(
        &key_json(dst, "d."),
        (&dst.name.sql(), dst_cols),
        (&src.name.sql(), src_cols),
        &filter,
    );
    load_keys(conn, &sql, src_keys.map(keys_param), |m| {
        Error::db(
            format!("following foreign keys from {} to {}", src.key, dst.key),
            m,
        )
    })
}

/// The WHERE condition selecting the rows whose keys are bound (with [`keys_param`]) as the
/// dump query's one parameter.
pub(crate) fn filter_sql(table: &Table) -> String {
    identity_in(table, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_param_is_a_json_array_of_keys() {
        let keys: Vec<Key> = vec!["[1]".into(), "[\"a\",2]".into()];
        assert_eq!(keys_param(&keys), "[[1],[\"a\",2]]");
        assert_eq!(keys_param(&[]), "[]");
    }
}
