//! PostgreSQL SQL of the Django format (run by [`super::bound`] with one bound text).

use crate::catalog::{quote_ident, Column, Table};

/// Deletes the through-table rows of the owners in `$1` (a JSON array of
/// `[owner, [target, ...]]`) whose target is not listed. Values are compared in the columns' own
/// types, so the indexes serve the delete.
pub(super) fn delete_links(table: &Table, owner: &Column, target: &Column) -> String {
    format!(
        "DELETE FROM {t} AS l USING (SELECT (e #>> '{{0}}')::{ot} AS o, e -> 1 AS ts \
         FROM json_array_elements($1::json) AS e) AS s \
         WHERE l.{o} = s.o AND l.{g} NOT IN \
         (SELECT (x #>> '{{}}')::{gt} FROM json_array_elements(s.ts) AS x)",
        t = table.name.sql(),
        o = quote_ident(&owner.name),
        g = quote_ident(&target.name),
        ot = owner.type_name,
        gt = target.type_name,
    )
}

/// The JSON value (`j`) of column `select` in the row whose `columns` have the text forms in `$1`
/// (a JSON array of strings).
pub(super) fn lookup(table: &Table, select: &str, columns: &[&str]) -> String {
    let cond: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{}::text = ($1::json ->> {i})", quote_ident(c)))
        .collect();
    format!(
        "SELECT to_json(t.{})::text AS j FROM {} AS t WHERE {} LIMIT 1",
        quote_ident(select),
        table.name.sql(),
        cond.join(" AND ")
    )
}
