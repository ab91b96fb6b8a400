//! SQLite SQL of the Django format.

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use crate::backend::Connection;
use crate::catalog::{quote_ident, Column, Table};
use crate::error::{describe_diesel, Error, Result};

/// Deletes the through-table rows of the owners in `links` (a JSON array of
/// `[owner, [target, ...]]`, bound) whose target is not listed.
pub(super) fn delete_links(
    conn: &mut Connection,
    table: &Table,
    owner: &Column,
    target: &Column,
    links: &str,
) -> Result<()> {
    let sql = format!(
        "DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM json_each(?) AS e \
         WHERE json_extract(e.value, '$[0]') = {t}.{o} AND {t}.{g} NOT IN \
         (SELECT value FROM json_each(json_extract(e.value, '$[1]'))))",
        t = table.name.sql(),
        o = quote_ident(&owner.name),
        g = quote_ident(&target.name),
    );
    let Connection::Sqlite(c) = conn else {
        unreachable!("a SQLite connection")
    };
    diesel::sql_query(&sql)
        .bind::<Text, _>(links)
        .execute(c)
        .map_err(|e| {
            Error::db(
                format!("replacing the links in {}", table.key),
                describe_diesel(&e),
            )
        })?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct JsonText {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    j: Option<String>,
}

/// The JSON value of column `select` in the row of `table` whose `columns` have the text forms
/// in `keys` (a JSON array of strings, bound).
pub(super) fn lookup(
    conn: &mut Connection,
    table: &Table,
    select: &str,
    columns: &[&str],
    keys: &str,
) -> Result<Option<String>> {
    let cond: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "CAST(t.{} AS TEXT) = json_extract(?1, '$[{i}]')",
                quote_ident(c)
            )
        })
        .collect();
    let sql = format!(
        "SELECT json_quote(t.{}) AS j FROM {} AS t WHERE {} LIMIT 1",
        quote_ident(select),
        table.name.sql(),
        cond.join(" AND ")
    );
    let Connection::Sqlite(c) = conn else {
        unreachable!("a SQLite connection")
    };
    let rows: Vec<JsonText> = diesel::sql_query(&sql)
        .bind::<Text, _>(keys)
        .load(c)
        .map_err(|e| {
            Error::db(
                format!("looking up a natural key in {}", table.key),
                describe_diesel(&e),
            )
        })?;
    Ok(rows.into_iter().next().and_then(|r| r.j))
}
