//! PostgreSQL SQL of the Django format.

use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use crate::backend::Connection;
use crate::catalog::{quote_ident, Column, Table};
use crate::error::{describe_diesel, Error, Result};

/// Deletes the through-table rows of the owners in `links` (a JSON array of
/// `[owner, [target, ...]]`, bound) whose target is not listed. Values are compared in the
/// columns' own types, so the indexes serve the delete.
pub(super) fn delete_links(
    conn: &mut Connection,
    table: &Table,
    owner: &Column,
    target: &Column,
    links: &str,
) -> Result<()> {
    let sql = format!(
        "DELETE FROM {t} AS l USING (SELECT (e #>> '{{0}}')::{ot} AS o, e -> 1 AS ts \
         FROM json_array_elements($1::json) AS e) AS s \
         WHERE l.{o} = s.o AND l.{g} NOT IN \
         (SELECT (x #>> '{{}}')::{gt} FROM json_array_elements(s.ts) AS x)",
        t = table.name.sql(),
        o = quote_ident(&owner.name),
        g = quote_ident(&target.name),
        ot = owner.type_name,
        gt = target.type_name,
    );
    let pg = conn.as_pg().expect("a PostgreSQL connection");
    diesel::sql_query(&sql)
        .bind::<Text, _>(links)
        .execute(pg)
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
        .map(|(i, c)| format!("t.{}::text = ($1::json ->> {i})", quote_ident(c)))
        .collect();
    let sql = format!(
        "SELECT to_json(t.{})::text AS j FROM {} AS t WHERE {} LIMIT 1",
        quote_ident(select),
        table.name.sql(),
        cond.join(" AND ")
    );
    let pg = conn.as_pg().expect("a PostgreSQL connection");
    let rows: Vec<JsonText> = diesel::sql_query(&sql)
        .bind::<Text, _>(keys)
        .load(pg)
        .map_err(|e| {
            Error::db(
                format!("looking up a natural key in {}", table.key),
                describe_diesel(&e),
            )
        })?;
    Ok(rows.into_iter().next().and_then(|r| r.j))
}
