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
