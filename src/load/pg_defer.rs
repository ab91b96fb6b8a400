//! PostgreSQL: foreign keys and secondary indexes built after the data, the way pg_restore
//! gets its speed.
//!
//! When a load fills a table that is empty (it was, or `--mode replace` emptied it) with at
//! least [`DEFAULT_MIN_ROWS`] rows, the table's own foreign keys and its plain (non-unique)
//! indexes are dropped inside the load's transaction, the rows are copied in, and each one is
//! recreated from the definition PostgreSQL itself printed (`pg_get_constraintdef`,
//! `pg_get_indexdef`): same name, DEFERRABLE / ON DELETE / MATCH, WHERE clause, expressions,
//! operator classes, storage parameters, tablespace, comment and CLUSTER mark. Re-adding a key
//! validates all its rows with one join and building an index sorts once, instead of a trigger
//! and an index insertion per row.
//!
//! Invariants:
//! - Everything happens inside the load's transaction (PostgreSQL's DDL is transactional): a
//!   failed or dry-run load leaves schema and data exactly as they were, and other sessions
//!   never see the table without its constraints. The price is the lock: ALTER TABLE and DROP
//!   INDEX take ACCESS EXCLUSIVE on the loaded table (nobody else reads or writes it until
//!   COMMIT), and dropping a foreign key takes ACCESS EXCLUSIVE on the referenced table too
//!   (PostgreSQL removes its check triggers there), even when that table is not loaded.
//! - Primary keys, unique and exclusion constraints stay (upserts and ON CONFLICT need them, and
//!   they report a duplicate on the row that carries it). NOT VALID keys stay too: re-adding
//!   one would not check the new rows, which the row-by-row path does.
//! - Left alone (loaded row by row as before, said with `--verbose`): tables the role does not
//!   own, keys whose referenced table the role may not reference, tables that already hold rows
//!   (the load writes only part of them, and locking a live table for its whole rebuild is worse
//!   than the triggers), and the indexes of partitioned tables (their partitions' indexes are
//!   attached objects with generated names). Indexes something else depends on, or with a
//!   per-column statistics target, are kept as well.
//! - A key the rows violate is reported like the row-by-row path reports it: the first
//!   violating row is looked up in the table, then found in the fixture files by its key
//!   values, and the error names file, line, table, row, key and column.

use serde::Deserialize;

use super::rows::RowStream;
use super::LoadContext;
use crate::backend::{Connection, TxMode};
use crate::catalog::{quote_ident, quote_literal, TableKind};
use crate::error::{Error, Location, Result};

/// Below this many rows for a table, dropping and recreating its constraints costs more than it
/// saves.
pub const DEFAULT_MIN_ROWS: u64 = 1000;

/// What was deferred, for the report (`--verbose`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeferReport {
    /// Tables whose foreign keys and indexes were built after their rows.
    pub tables: Vec<String>,
    pub foreign_keys: usize,
    pub indexes: usize,
    /// Tables loaded with their constraints in place, and why.
    pub kept: Vec<(String, String)>,
}

/// Foreign keys and indexes dropped for the load, to recreate once the rows are in.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    fks: Vec<DroppedFk>,
    indexes: Vec<DroppedIndex>,
}

#[derive(Debug, Deserialize)]
struct DroppedFk {
    /// `ALTER TABLE` target: `ONLY "s"."t"` or, partitioned, `"s"."t"`.
    #[serde(skip)]
    target: String,
    /// Catalog index of the table.
    #[serde(skip)]
    table: usize,
    rel_schema: String,
    rel_name: String,
    name: String,
    def: String,
    comment: Option<String>,
    columns: Vec<String>,
    ref_table: String,
    ref_columns: Vec<String>,
    may_reference: bool,
}

#[derive(Debug, Deserialize)]
struct DroppedIndex {
    #[serde(skip)]
    table: usize,
    rel_name: String,
    schema: String,
    name: String,
    def: String,
    tablespace: Option<String>,
    comment: Option<String>,
    clustered: bool,
}

#[derive(Debug, Deserialize)]
struct Found {
    fks: Vec<DroppedFk>,
    indexes: Vec<DroppedIndex>,
}

/// Drops the foreign keys and plain indexes of the tables this load fills from empty (see the
/// module doc for which). Runs after `replace` has emptied its tables, before any row is loaded.
pub(super) fn drop_for_load(
    conn: &mut Connection,
    ctx: &LoadContext<'_>,
    min_rows: u64,
    report: &mut DeferReport,
) -> Result<Dropped> {
    let catalog = ctx.catalog;
    let mut candidates: Vec<usize> = Vec::new();
    for &t in ctx.tables {
        let table = &catalog.tables[t];
        let rows: u64 = ctx
            .occurrences
            .iter()
            .zip(ctx.occ_table)
            .filter(|(_, &ot)| ot == t)
            .map(|(o, _)| o.rows)
            .sum();
        if rows < min_rows.max(1) {
            continue;
        }
        if !super::pg::is_empty(conn, table)? {
            report.kept.push((
                table.key.clone(),
                "the table already has rows (only an empty table is rebuilt)".into(),
            ));
            continue;
        }
        let owned: bool = conn.query_json(&format!(
            "SELECT to_json(pg_has_role(relowner, 'USAGE'))::text AS j FROM pg_class \
             WHERE oid = {}::regclass",
            quote_literal(&table.name.sql())
        ))?;
        if !owned {
            report.kept.push((
                table.key.clone(),
                "the role does not own the table (only its owner may drop its constraints)".into(),
            ));
            continue;
        }
        candidates.push(t);
    }
    if candidates.is_empty() {
        return Ok(Dropped::default());
    }
    let oids: Vec<String> = candidates
        .iter()
        .map(|&t| format!("{}::regclass", quote_literal(&catalog.tables[t].name.sql())))
        .collect();
    let found: Found = conn.query_json(&found_sql(&oids.join(", ")))?;
    let by_rel = |schema: &str, name: &str| {
        candidates.iter().copied().find(|&t| {
            let n = &catalog.tables[t].name;
            n.schema == schema && n.name == name
        })
    };
    let mut dropped = Dropped::default();
    for mut fk in found.fks {
        let Some(t) = by_rel(&fk.rel_schema, &fk.rel_name) else {
            continue;
        };
        if !fk.may_reference {
            report.kept.push((
                catalog.tables[t].key.clone(),
                format!(
                    "foreign key {} kept: the role lacks REFERENCES on {}",
                    fk.name, fk.ref_table
                ),
            ));
            continue;
        }
        fk.table = t;
        fk.target = catalog.tables[t].own_rows_sql();
        dropped.fks.push(fk);
    }
    for mut ix in found.indexes {
        // An index lives in its table's schema.
        let Some(t) = by_rel(&ix.schema, &ix.rel_name) else {
            continue;
        };
        ix.table = t;
        dropped.indexes.push(ix);
    }
    for &t in &candidates {
        let table = &catalog.tables[t];
        let fks = dropped.fks.iter().filter(|f| f.table == t).count();
        let ixs = dropped.indexes.iter().filter(|i| i.table == t).count();
        if fks + ixs == 0 {
            continue;
        }
        report.tables.push(table.key.clone());
        report.foreign_keys += fks;
        report.indexes += ixs;
        if table.kind == TableKind::Partitioned {
            report.kept.push((
                table.key.clone(),
                "indexes kept: the table is partitioned".into(),
            ));
        }
    }
    let mut sql = Vec::new();
    for fk in &dropped.fks {
        sql.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            fk.target,
            quote_ident(&fk.name)
        ));
    }
    for ix in &dropped.indexes {
        sql.push(format!(
            "DROP INDEX {}.{}",
            quote_ident(&ix.schema),
            quote_ident(&ix.name)
        ));
    }
    if !sql.is_empty() {
        conn.execute(&sql.join("; "))
            .map_err(|e| context(e, "dropping constraints to build them after the data"))?;
    }
    Ok(dropped)
}

/// The foreign keys and indexes of the given tables that are rebuilt after the data.
fn found_sql(oids: &str) -> String {
    let cols = |arr: &str, rel: &str| {
        format!(
            "(SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest({arr}) WITH ORDINALITY \
             AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.attnum)"
        )
    };
    let fk_cols = cols("con.conkey", "con.conrelid");
    let ref_cols = cols("con.confkey", "con.confrelid");
    format!(
        r#"SELECT json_build_object(
  'fks', coalesce((SELECT json_agg(json_build_object(
        'rel_schema', n.nspname,
        'rel_name', c.relname,
        'name', con.conname,
        'def', pg_get_constraintdef(con.oid),
        'comment', obj_description(con.oid, 'pg_constraint'),
        'columns', {fk_cols},
        'ref_table', format('%I.%I', rn.nspname, rc.relname),
        'ref_columns', {ref_cols},
        'may_reference', has_table_privilege(con.confrelid, 'REFERENCES'))
      ORDER BY n.nspname, c.relname, con.conname)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_class rc ON rc.oid = con.confrelid
    JOIN pg_namespace rn ON rn.oid = rc.relnamespace
   WHERE con.contype = 'f' AND con.conparentid = 0 AND con.convalidated
     AND con.conrelid = ANY(ARRAY[{oids}])), '[]'),
  'indexes', coalesce((SELECT json_agg(json_build_object(
        'schema', n.nspname,
        'rel_name', tc.relname,
        'name', ic.relname,
        'def', pg_get_indexdef(i.indexrelid),
        'tablespace', ts.spcname,
        'comment', obj_description(i.indexrelid, 'pg_class'),
        'clustered', i.indisclustered)
      ORDER BY n.nspname, ic.relname)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class tc ON tc.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
   WHERE i.indrelid = ANY(ARRAY[{oids}]) AND tc.relkind = 'r' AND ic.relkind = 'i'
     AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
     AND i.indisvalid AND i.indisready AND i.indislive AND NOT i.indisreplident
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                      AND k.conrelid = i.indrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                      AND d.refobjid = i.indexrelid)
     AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid
                      AND a.attstattarget >= 0)), '[]')
)::text AS j"#
    )
}

/// Recreates what [`drop_for_load`] dropped, indexes first, then the foreign keys (each
/// validating every row of its table). Runs after every row is in and cycle fill-ins are done.
pub(super) fn recreate(
    conn: &mut Connection,
    ctx: &LoadContext<'_>,
    dropped: &Dropped,
) -> Result<()> {
    if dropped.indexes.is_empty() && dropped.fks.is_empty() {
        return Ok(());
    }
    let catalog = ctx.catalog;
    if !dropped.indexes.is_empty() {
        // pg_get_indexdef has no TABLESPACE clause: like pg_dump, name it through
        // default_tablespace ('' is the database's default), and put the setting back after.
        let original: String =
            conn.query_json("SELECT to_json(current_setting('default_tablespace'))::text AS j")?;
        for ix in &dropped.indexes {
            let table = &catalog.tables[ix.table];
            let mut sql = vec![
                format!(
                    "SELECT set_config('default_tablespace', {}, true)",
                    quote_literal(ix.tablespace.as_deref().unwrap_or(""))
                ),
                ix.def.clone(),
            ];
            let qualified = format!("{}.{}", quote_ident(&ix.schema), quote_ident(&ix.name));
            if let Some(c) = &ix.comment {
                sql.push(format!(
                    "COMMENT ON INDEX {qualified} IS {}",
                    quote_literal(c)
                ));
            }
            if ix.clustered {
                sql.push(format!(
                    "ALTER TABLE {} CLUSTER ON {}",
                    table.own_rows_sql(),
                    quote_ident(&ix.name)
                ));
            }
            conn.execute(&sql.join("; ")).map_err(|e| {
                context(
                    e,
                    &format!(
                        "table {}: building index {} after the data",
                        table.key, ix.name
                    ),
                )
            })?;
        }
        conn.execute(&format!(
            "SELECT set_config('default_tablespace', {}, true)",
            quote_literal(&original)
        ))?;
    }
    for fk in &dropped.fks {
        let mut sql = format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            fk.target,
            quote_ident(&fk.name),
            fk.def
        );
        if let Some(c) = &fk.comment {
            sql.push_str(&format!(
                "; COMMENT ON CONSTRAINT {} ON {} IS {}",
                quote_ident(&fk.name),
                catalog.tables[fk.table].name.sql(),
                quote_literal(c)
            ));
        }
        // In a savepoint: after a violation the transaction is still usable to find the row.
        let added = conn.transaction(TxMode::ReadWrite, |conn| conn.execute(&sql));
        match added {
            Ok(()) => {}
            Err(Error::Database { message, .. }) => {
                return Err(locate_violation(conn, ctx, fk, message));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Database { message, .. } => Error::Database {
            context: what.to_string(),
            message,
        },
        other => other,
    }
}

/// The error for a foreign key the loaded rows violate: the first violating row in the table
/// (its key values as text), then the fixture row carrying those values.
fn locate_violation(
    conn: &mut Connection,
    ctx: &LoadContext<'_>,
    fk: &DroppedFk,
    message: String,
) -> Error {
    let table = &ctx.catalog.tables[fk.table];
    let fallback = |message: String| Error::Fixture {
        location: Box::new(Location {
            table: Some(table.key.clone()),
            column: fk.columns.first().cloned(),
            ..Default::default()
        }),
        message,
    };
    let not_null: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", quote_ident(c)))
        .collect();
    let matches: Vec<String> = fk
        .columns
        .iter()
        .zip(&fk.ref_columns)
        .map(|(c, r)| format!("p.{} = c.{}", quote_ident(r), quote_ident(c)))
        .collect();
    let texts: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{}::text", quote_ident(c)))
        .collect();
    let sql = format!(
        "SELECT json_build_array({})::text AS j FROM {} AS c WHERE {} AND NOT EXISTS \
         (SELECT 1 FROM {} AS p WHERE {}) LIMIT 1",
        texts.join(", "),
        table.own_rows_sql(),
        not_null.join(" AND "),
        fk.ref_table,
        matches.join(" AND ")
    );
    let values: Option<Vec<String>> = match conn.query_json(&sql) {
        Ok(v) => v,
        Err(_) => return fallback(message),
    };
    let Some(values) = values else {
        return fallback(message);
    };
    match find_row(ctx, fk, &values, &message) {
        Ok(Some(e)) => e,
        Ok(None) => fallback(message),
        Err(e) => e,
    }
}

/// Scans the table's rows in every file for the first whose foreign-key columns hold `values`
/// (compared as PostgreSQL prints them: a JSON string by its contents, anything else by its
/// JSON text).
fn find_row(
    ctx: &LoadContext<'_>,
    fk: &DroppedFk,
    values: &[String],
    message: &str,
) -> Result<Option<Error>> {
    let table = &ctx.catalog.tables[fk.table];
    for (occ, _) in ctx
        .occurrences
        .iter()
        .zip(ctx.occ_table)
        .filter(|(_, &ot)| ot == fk.table)
    {
        let mut stream = RowStream::open(&ctx.inputs[occ.input], occ)?;
        while stream.advance()? {
            let row = stream.current();
            let Ok(fields) = row.fields() else { continue };
            let same = fk.columns.iter().zip(values).all(|(c, want)| {
                fields.iter().find(|(n, _)| n == c).is_some_and(|(_, v)| {
                    let raw = v.get();
                    match serde_json::from_str::<String>(raw) {
                        Ok(s) => s == *want,
                        Err(_) => raw == want,
                    }
                })
            });
            if same {
                return Ok(Some(stream.error(
                    table,
                    row,
                    fk.columns.first().map(String::as_str),
                    message.to_string(),
                )));
            }
        }
    }
    Ok(None)
}
