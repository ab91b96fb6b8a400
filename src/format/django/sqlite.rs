//! SQLite SQL of the Django format (run by [`super::bound`] with one bound text).

use crate::catalog::{quote_ident, Column, Table};

/// Deletes the through-table rows of the owners in `?1` (a JSON array of
/// `[owner, [target, ...]]`) whose target is not listed.
pub(super) fn delete_links(table: &Table, owner: &Column, target: &Column) -> String {
    format!(
        "DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM json_each(?1) AS e \
         WHERE json_extract(e.value, '$[0]') = {t}.{o} AND {t}.{g} NOT IN \
         (SELECT value FROM json_each(json_extract(e.value, '$[1]'))))",
        t = table.name.sql(),
        o = quote_ident(&owner.name),
        g = quote_ident(&target.name),
    )
}

/// The JSON value (`j`) of column `select` in the row whose `columns` have the text forms in `?1`
/// (a JSON array of strings).
pub(super) fn lookup(table: &Table, select: &str, columns: &[&str]) -> String {
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
    format!(
        "SELECT json_quote(t.{}) AS j FROM {} AS t WHERE {} LIMIT 1",
        quote_ident(select),
        table.name.sql(),
        cond.join(" AND ")
    )
}
