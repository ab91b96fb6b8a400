//! PostgreSQL SQL for subsets.
//!
//! A row's identity is its primary key, else `(tableoid, ctid)`: inside one REPEATABLE READ
//! snapshot the visible version of a row keeps its ctid (VACUUM cannot remove what the snapshot
//! sees), and `tableoid` tells the partitions of a partitioned table apart. A key is the text
//! form of each identity column, joined with NUL (which no PostgreSQL text value contains).
//!
//! Keys go to the server as bound `text[]` arrays, one per identity column, cast to the
//! column's type there (so primary-key indexes are used) and zipped by `unnest`. COPY takes no
//! parameters, so for the dump itself the arrays are bound into transaction-local settings
//! (`set_config(..., true)`, allowed for any role and in a read-only transaction) that the
//! COPY query reads back once (`unnest(current_setting(...))` in FROM).

use diesel::pg::{Pg, PgConnection};
use diesel::sql_types::{Array, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::Key;
use crate::catalog::{quote_ident, Table};
use crate::error::{describe_diesel, Error, Result};

const SEP: char = '\0';

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Array<Text>)]
    k: Vec<String>,
}

/// A one-column key comes back as plain text (no array to decode per row).
#[derive(QueryableByName)]
struct TextKeyRow {
    #[diesel(sql_type = Text)]
    k: String,
}

/// The identity columns: (SQL expression, type name).
fn identity(table: &Table) -> Vec<(String, String)> {
    if table.primary_key.is_empty() {
        return vec![
            ("tableoid".into(), "oid".into()),
            ("ctid".into(), "tid".into()),
        ];
    }
    table
        .primary_key
        .iter()
        .map(|c| {
            let ty = table
                .column(c)
                .map_or_else(|| "text".to_string(), |col| col.type_name.clone());
            (quote_ident(c), ty)
        })
        .collect()
}

/// The identity as the key query returns it: `a.x::text`, or `ARRAY[a.x::text, ...]` for
/// several columns (read by [`load_keys`]).
fn key_array(table: &Table, alias: &str) -> String {
    let parts: Vec<String> = identity(table)
        .iter()
        .map(|(e, _)| format!("{alias}{e}::text"))
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("ARRAY[{}]", parts.join(", ")),
    }
}

/// `(a.x, a.y) IN (SELECT * FROM unnest(s1::text[]::t1[], ...))` where `sources` are the SQL
/// expressions of the text arrays, one per identity column.
fn identity_in(table: &Table, alias: &str, sources: &[String]) -> String {
    let id = identity(table);
    let cols: Vec<String> = id.iter().map(|(e, _)| format!("{alias}{e}")).collect();
    let types: Vec<&str> = id.iter().map(|(_, ty)| ty.as_str()).collect();
    match_arrays(&cols, &types, sources)
}

/// `(c1, c2) IN (SELECT * FROM unnest(a1::text[]::t1[], ...))`; a single column (the common
/// case: a one-column primary key) compares with `= ANY(a1::text[]::t1[])`, which the planner
/// sizes from the array itself: a bound array can be hashed, and on the dump's COPY the
/// primary-key index walks the sorted keys in key order, so no sort is needed. (It also
/// costs a linear search per row honestly, so it never picks that over the index.)
fn match_arrays(cols: &[String], types: &[&str], arrays: &[String]) -> String {
    let typed: Vec<String> = types
        .iter()
        .zip(arrays)
        .map(|(ty, a)| format!("{a}::text[]::{ty}[]"))
        .collect();
    match (cols, typed.as_slice()) {
        ([c], [a]) => format!("{c} = ANY({a})"),
        _ => format!(
            "({}) IN (SELECT * FROM unnest({}))",
            cols.join(", "),
            typed.join(", ")
        ),
    }
}

/// When `cols` are exactly the table's primary-key columns (in any order): for each, its
/// position in the key and its type.
fn key_positions(table: &Table, cols: &[String]) -> Option<Vec<(usize, String)>> {
    if table.primary_key.is_empty() || cols.len() != table.primary_key.len() {
        return None;
    }
    let id = identity(table);
    cols.iter()
        .map(|c| {
            let pos = table.primary_key.iter().position(|k| k == c)?;
            Some((pos, id[pos].1.clone()))
        })
        .collect()
}

/// Splits keys into one text array per identity column.
fn columns_of(keys: &[Key], width: usize) -> Vec<Vec<String>> {
    let mut out = vec![Vec::with_capacity(keys.len()); width];
    for k in keys {
        for (i, part) in k.split(SEP).enumerate().take(width) {
            out[i].push(part.to_string());
        }
    }
    out
}

/// Runs a key query (its column `k` from [`key_array`] of `table`) with `binds`.
fn load_keys(
    conn: &mut PgConnection,
    table: &Table,
    sql: &str,
    binds: Vec<Vec<String>>,
    what: impl FnOnce(String) -> Error,
) -> Result<Vec<Key>> {
    let mut q = diesel::sql_query(sql).into_boxed::<Pg>();
    for b in binds {
        q = q.bind::<Array<Text>, _>(b);
    }
    let keys = if identity(table).len() == 1 {
        q.load::<TextKeyRow>(conn)
            .map(|rows| rows.into_iter().map(|r| r.k.into_boxed_str()).collect())
    } else {
        q.load::<KeyRow>(conn).map(|rows| {
            rows.into_iter()
                .map(|r| r.k.join(&SEP.to_string()).into_boxed_str())
                .collect()
        })
    };
    keys.map_err(|e| what(describe_diesel(&e)))
}

pub(super) fn count_sql(table: &Table) -> String {
    format!("SELECT count(*)::text AS j FROM {}", table.own_rows_sql())
}

pub(super) fn seed_keys(
    conn: &mut PgConnection,
    table: &Table,
    condition: &str,
) -> Result<Vec<Key>> {
    let sql = format!(
        "SELECT {} AS k FROM {} WHERE ({condition}\n)",
        key_array(table, ""),
        table.own_rows_sql()
    );
    load_keys(conn, table, &sql, Vec::new(), Error::Invalid)
}

pub(super) fn related(
    conn: &mut PgConnection,
    src: &Table,
    src_cols: &[String],
    src_keys: Option<&[Key]>,
    dst: &Table,
    dst_cols: &[String],
) -> Result<Vec<Key>> {
    let width = identity(src).len();
    if let (Some(keys), Some(order)) = (src_keys, key_positions(src, src_cols)) {
        // The source columns are the source's key (children through a foreign key to a
        // primary key, the common case): match the keys directly, without reading `src`.
        let mut columns = columns_of(keys, width);
        let binds: Vec<Vec<String>> = order
            .iter()
            .map(|(pos, _)| std::mem::take(&mut columns[*pos]))
            .collect();
        let params: Vec<String> = (1..=order.len()).map(|n| format!("${n}")).collect();
        let types: Vec<&str> = order.iter().map(|(_, ty)| ty.as_str()).collect();
        let d: Vec<String> = dst_cols
            .iter()
            .map(|c| format!("d.{}", quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT {} AS k FROM {} AS d WHERE {}",
            key_array(dst, "d."),
            dst.own_rows_sql(),
            match_arrays(&d, &types, &params)
        );
        return load_keys(conn, dst, &sql, binds, |m| following(src, dst, m));
    }
    let (filter, binds) = match src_keys {
        None => (String::new(), Vec::new()),
        Some(keys) => {
            let params: Vec<String> = (1..=width).map(|i| format!("${i}")).collect();
            (
                format!(" WHERE {}", identity_in(src, "s.", &params)),
                columns_of(keys, width),
            )
        }
    };
    let sql = super::related_sql(
        &key_array(dst, "d."),
        (&dst.own_rows_sql(), dst_cols),
        (&src.own_rows_sql(), src_cols),
        &filter,
    );
    load_keys(conn, dst, &sql, binds, |m| following(src, dst, m))
}

fn following(src: &Table, dst: &Table, message: String) -> Error {
    Error::db(
        format!("following foreign keys from {} to {}", src.key, dst.key),
        message,
    )
}

/// Binds `keys` into this transaction's settings and returns the WHERE condition that selects
/// exactly those rows of `table` (for the dump's COPY query, which cannot take parameters).
pub(crate) fn install_filter(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[Key],
) -> Result<String> {
    let width = identity(table).len();
    let mut sources = Vec::with_capacity(width);
    for (i, column) in columns_of(keys, width).into_iter().enumerate() {
        let name = format!("dbfixtures.subset_key{i}");
        let sql = format!("SELECT ARRAY[set_config('{name}', $1::text, true)] AS k");
        diesel::sql_query(&sql)
            .bind::<Array<Text>, _>(column)
            .load::<KeyRow>(conn)
            .map_err(|e| {
                Error::db(
                    format!("preparing the rows of {}", table.key),
                    describe_diesel(&e),
                )
            })?;
        sources.push(format!("current_setting('{name}')"));
    }
    Ok(identity_in(table, "", &sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_one_array_per_identity_column() {
        let keys: Vec<Key> = vec!["1\0a".into(), "2\0b c".into()];
        assert_eq!(columns_of(&keys, 2), vec![vec!["1", "2"], vec!["a", "b c"]]);
    }
}
