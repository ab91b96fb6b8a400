//! PostgreSQL loading: rows go to the server through COPY.
//!
//! A batch is a run of consecutive rows with the same set of columns (COPY cannot mix
//! defaults and values in one column). Each batch runs in a savepoint and takes one of two
//! paths:
//! - direct: `COPY table (columns) FROM STDIN` — for insert/replace, and for upsert into a
//!   table that was empty, when no column needs server-side JSON conversion;
//! - staged: COPY into a temporary table, then one `INSERT ... SELECT` that converts JSON
//!   columns (arrays, composites) with json_populate_record, upserts with ON CONFLICT (skipping
//!   identical rows so a re-run writes nothing) and loads cycle-broken foreign keys as NULL.
//!
//! When a batch fails on the server, its rows are replayed one per savepoint to name the exact
//! row (file, line, index, key) in the error.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

use super::rows::{resolve, RowStream};
use super::{Fixup, Mode, TableCounts, TablePlan};
use crate::backend::pg_copy::{copy_in, CopyError};
use crate::backend::{Connection, TxMode};
use crate::catalog::{quote_ident, quote_literal, Catalog, Table, ValueKind};
use crate::error::{describe_diesel, Error, Location, Result};
use crate::format::value::push_copy_field;
use crate::progress::Progress;

static STAGE_COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(super) fn prepare(conn: &mut Connection) -> Result<()> {
    // Deferrable constraints wait for the end (they are checked before sequences move, in
    // check_deferred); DateStyle makes ambiguous dates read as ISO year-month-day.
    conn.execute("SET CONSTRAINTS ALL DEFERRED; SET LOCAL DateStyle = 'ISO, YMD'")
}

pub(super) fn check_deferred(conn: &mut Connection) -> Result<()> {
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        .map_err(|e| match e {
            Error::Database { message, .. } => Error::Database {
                context: "checking deferred constraints".into(),
                message,
            },
            other => other,
        })
}

pub(super) fn database_name(conn: &mut Connection) -> Result<String> {
    conn.query_json("SELECT to_json(current_database())::text AS j")
}

pub(super) fn is_empty(conn: &mut Connection, table: &Table) -> Result<bool> {
    conn.query_json(&format!(
        "SELECT to_json(NOT EXISTS (SELECT 1 FROM {}))::text AS j",
        table.name.sql()
    ))
}

/// `replace`: empties the tables, refusing when rows of other tables still reference them.
pub(super) fn empty_tables(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<()> {
    let in_set = |name| {
        catalog
            .table_index(name)
            .is_some_and(|i| tables.contains(&i))
    };
    let mut also_empty = Vec::new();
    let mut blocking = Vec::new();
    for fk in &catalog.foreign_keys {
        if in_set(&fk.ref_table) && !in_set(&fk.table) {
            let Some(child) = catalog.table(&fk.table) else {
                continue;
            };
            let cond: Vec<String> = fk
                .columns
                .iter()
                .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
                .collect();
            let referenced: bool = conn.query_json(&format!(
                "SELECT to_json(EXISTS (SELECT 1 FROM {} WHERE {}))::text AS j",
                child.name.sql(),
                cond.join(" AND ")
            ))?;
            let parent = catalog
                .table(&fk.ref_table)
                .map(|t| t.key.clone())
                .unwrap_or_default();
            if referenced {
                blocking.push(format!("{} (via {} → {parent})", child.key, fk.name));
            } else if !also_empty.contains(&child.name.sql()) {
                also_empty.push(child.name.sql());
            }
        }
    }
    if !blocking.is_empty() {
        return Err(Error::Invalid(format!(
            "--mode replace would empty tables that rows of other tables still reference: {}; \
             include those tables in the fixtures or delete their rows first",
            blocking.join(", ")
        )));
    }
    let mut names: Vec<String> = tables
        .iter()
        .map(|&t| catalog.tables[t].name.sql())
        .collect();
    // Empty referencing tables must be named too, or TRUNCATE refuses.
    names.extend(also_empty);
    conn.execute(&format!("TRUNCATE {}", names.join(", ")))
}

pub(super) fn apply_fixup(conn: &mut Connection, catalog: &Catalog, f: &Fixup) -> Result<()> {
    let table = &catalog.tables[f.table];
    let set: Vec<String> = f
        .columns
        .iter()
        .map(|c| format!("{0} = s.{0}", quote_ident(c)))
        .collect();
    let on: Vec<String> = table
        .primary_key
        .iter()
        .map(|c| format!("t.{0} = s.{0}", quote_ident(c)))
        .collect();
    conn.execute(&format!(
        "UPDATE {} AS t SET {} FROM {} AS s WHERE {}",
        table.name.sql(),
        set.join(", "),
        quote_ident(&f.stage),
        on.join(" AND ")
    ))
    .map_err(|e| db_error(table, "filling in foreign keys broken to load a cycle", e))
}

fn db_error(table: &Table, what: &str, e: Error) -> Error {
    match e {
        Error::Database { message, .. } => Error::Database {
            context: format!("table {}: {what}", table.key),
            message,
        },
        other => other,
    }
}

/// How a batch is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Staged,
}

pub(super) fn load_rows(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    progress: &dyn Progress,
    fixups: &mut Vec<Fixup>,
    table_index: usize,
) -> Result<TableCounts> {
    let table = plan.table;
    let mut counts = TableCounts::default();
    let mut empty = plan.empty;
    loop {
        if !stream.advance()? {
            break;
        }
        let cols: Vec<usize> = resolve(stream, table)?.iter().map(|(i, _)| *i).collect();
        let first_index = stream.current().index;
        stream.hold();
        let needs_server_json = cols
            .iter()
            .any(|&c| table.columns[c].kind == ValueKind::Structured);
        let path = if !needs_server_json
            && plan.null_columns.is_empty()
            && (plan.mode != Mode::Upsert || empty)
        {
            Path::Direct
        } else {
            Path::Staged
        };
        let keep_stage = !plan.null_columns.is_empty();
        if keep_stage {
            check_fixup_possible(table, &cols, stream)?;
        }
        let outcome = conn.transaction(TxMode::ReadWrite, |conn| {
            run_batch(conn, plan, stream, &cols, path, None, progress)
        });
        match outcome {
            Ok(b) => {
                counts.rows += b.rows;
                counts.inserted += b.inserted;
                counts.updated += b.updated;
                counts.unchanged += b.unchanged;
                if let Some(stage) = b.stage {
                    fixups.push(Fixup {
                        table: table_index,
                        stage,
                        columns: plan.null_columns.clone(),
                    });
                }
                empty = false;
            }
            Err(Error::Database { message, .. }) => {
                return Err(locate(
                    conn,
                    plan,
                    stream,
                    &cols,
                    path,
                    first_index,
                    message,
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(counts)
}

fn check_fixup_possible(table: &Table, cols: &[usize], stream: &RowStream<'_>) -> Result<()> {
    let has_pk = !table.primary_key.is_empty()
        && table
            .primary_key
            .iter()
            .all(|k| cols.iter().any(|&c| &table.columns[c].name == k));
    if has_pk {
        Ok(())
    } else {
        Err(Error::Fixture {
            location: Box::new(Location {
                file: Some(stream.file().to_string()),
                table: Some(table.key.clone()),
                ..Default::default()
            }),
            message: "this table is part of a foreign-key cycle that is loaded by filling in \
                      foreign keys afterwards, which needs the primary key in every row"
                .into(),
        })
    }
}

struct BatchResult {
    rows: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    /// The staging table kept for a fixup.
    stage: Option<String>,
}

/// Runs one batch: rows from the stream while their column set equals `cols` (at most `limit`).
fn run_batch(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    cols: &[usize],
    path: Path,
    limit: Option<u64>,
    progress: &dyn Progress,
) -> Result<BatchResult> {
    let table = plan.table;
    let col_list: Vec<String> = cols
        .iter()
        .map(|&c| quote_ident(&table.columns[c].name))
        .collect();
    let col_list = col_list.join(", ");
    let stage = match path {
        Path::Direct => None,
        Path::Staged => {
            let name = format!(
                "dbfixtures_stage_{}",
                STAGE_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let defs: Vec<String> = cols
                .iter()
                .map(|&c| {
                    let col = &table.columns[c];
                    let ty = if col.kind == ValueKind::Structured {
                        "json"
                    } else {
                        col.type_name.as_str()
                    };
                    format!("{} {ty}", quote_ident(&col.name))
                })
                .collect();
            conn.execute(&format!(
                "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
                quote_ident(&name),
                defs.join(", ")
            ))?;
            Some(name)
        }
    };
    let target = match &stage {
        None => format!("{} ({col_list})", table.name.sql()),
        Some(s) => format!("{} ({col_list})", quote_ident(s)),
    };
    let mut rows = 0u64;
    let copied = {
        let pg = conn.as_pg().expect("PostgreSQL connection");
        copy_in(pg, &target, false, |w| -> Result<()> {
            let mut line = Vec::with_capacity(1024);
            while limit.map_or(true, |l| rows < l) {
                if !stream.advance()? {
                    break;
                }
                let fields = resolve(stream, table)?;
                if fields.len() != cols.len() || fields.iter().zip(cols).any(|((a, _), b)| a != b) {
                    drop(fields);
                    stream.hold();
                    break;
                }
                line.clear();
                for (n, (c, raw)) in fields.iter().enumerate() {
                    if n > 0 {
                        line.push(b'\t');
                    }
                    let col = &table.columns[*c];
                    push_copy_field(&mut line, col.kind, raw)
                        .map_err(|e| stream.error(table, stream.current(), Some(&col.name), e.0))?;
                }
                line.push(b'\n');
                w.write_all(&line)
                    .map_err(|e| Error::io(format!("COPY into {}", table.key), e))?;
                rows += 1;
                if rows % 4096 == 0 {
                    progress.rows(4096);
                }
            }
            Ok(())
        })
    };
    progress.rows(rows % 4096);
    match copied {
        Ok(_) => {}
        Err(CopyError::Source(e)) => return Err(e),
        Err(CopyError::Io(e)) => return Err(Error::io(format!("COPY into {}", table.key), e)),
        Err(CopyError::Db(e)) => {
            return Err(Error::Database {
                context: format!("loading table {}", table.key),
                message: describe_diesel(&e),
            })
        }
    }
    let Some(stage) = stage else {
        return Ok(BatchResult {
            rows,
            inserted: rows,
            updated: 0,
            unchanged: 0,
            stage: None,
        });
    };
    let counts = insert_from_stage(conn, plan, cols, &stage, rows)?;
    let keep = !plan.null_columns.is_empty();
    if !keep {
        conn.execute(&format!("DROP TABLE {}", quote_ident(&stage)))?;
    }
    Ok(BatchResult {
        stage: keep.then_some(stage),
        ..counts
    })
}

#[derive(Deserialize)]
struct Affected {
    n: u64,
}

/// `INSERT INTO table SELECT ... FROM stage` with the mode's conflict handling. Counts come
/// from the number of staged rows whose key already existed and the number of rows written.
fn insert_from_stage(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    cols: &[usize],
    stage: &str,
    rows: u64,
) -> Result<BatchResult> {
    let table = plan.table;
    let names: Vec<&str> = cols
        .iter()
        .map(|&c| table.columns[c].name.as_str())
        .collect();
    let quoted: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let exprs: Vec<String> = cols
        .iter()
        .map(|&c| {
            let col = &table.columns[c];
            let q = quote_ident(&col.name);
            if plan.null_columns.contains(&col.name) {
                "NULL".to_string()
            } else if col.kind == ValueKind::Structured {
                // The table's own row type gives json_populate_record the column's exact type,
                // so arrays, composites and domains parse from JSON the way PostgreSQL does.
                format!(
                    "(json_populate_record(NULL::{}, json_build_object({}, s.{q}))).{q}",
                    table.name.sql(),
                    quote_literal(&col.name)
                )
            } else {
                format!("s.{q}")
            }
        })
        .collect();
    let overriding = if cols
        .iter()
        .any(|&c| table.columns[c].identity == Some(crate::catalog::Identity::Always))
    {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    // The key rows are matched on: the primary key, else the first unique constraint whose
    // columns are all present.
    let key: Option<&Vec<String>> = std::iter::once(&table.primary_key)
        .chain(table.unique.iter())
        .find(|k| !k.is_empty() && k.iter().all(|c| names.contains(&c.as_str())));
    let insert = format!(
        "INSERT INTO {} AS t ({}){overriding} SELECT {} FROM {} AS s",
        table.name.sql(),
        quoted.join(", "),
        exprs.join(", "),
        quote_ident(stage)
    );
    let write = |conn: &mut Connection, sql: String| -> Result<u64> {
        let a: Affected = conn.query_json(&format!(
            "WITH w AS ({sql} RETURNING 1) SELECT json_build_object('n', count(*))::text AS j FROM w"
        ))?;
        Ok(a.n)
    };
    match (plan.mode, key) {
        (Mode::Upsert, Some(key)) => {
            let on: Vec<String> = key
                .iter()
                .map(|k| format!("t.{0} = s.{0}", quote_ident(k)))
                .collect();
            let existing: Affected = conn.query_json(&format!(
                "SELECT json_build_object('n', count(*))::text AS j FROM {} AS s \
                 WHERE EXISTS (SELECT 1 FROM {} AS t WHERE {})",
                quote_ident(stage),
                table.name.sql(),
                on.join(" AND ")
            ))?;
            let updatable: Vec<&str> = cols
                .iter()
                .map(|&c| &table.columns[c])
                .filter(|c| {
                    !key.contains(&c.name) && c.identity != Some(crate::catalog::Identity::Always)
                })
                .map(|c| c.name.as_str())
                .collect();
            let conflict: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
            let action = if updatable.is_empty() {
                "DO NOTHING".to_string()
            } else {
                let set: Vec<String> = updatable
                    .iter()
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                    .collect();
                let old: Vec<String> = updatable
                    .iter()
                    .map(|c| format!("t.{}", quote_ident(c)))
                    .collect();
                let new: Vec<String> = updatable
                    .iter()
                    .map(|c| format!("EXCLUDED.{}", quote_ident(c)))
                    .collect();
                // Compare text forms: every type has one, not every type has `=` (json, point).
                format!(
                    "DO UPDATE SET {} WHERE (ROW({}, NULL))::text IS DISTINCT FROM (ROW({}, NULL))::text",
                    set.join(", "),
                    old.join(", "),
                    new.join(", ")
                )
            };
            let written = write(
                conn,
                format!("{insert} ON CONFLICT ({}) {action}", conflict.join(", ")),
            )?;
            let inserted = rows - existing.n;
            let updated = written.saturating_sub(inserted);
            Ok(BatchResult {
                rows,
                inserted,
                updated,
                unchanged: existing.n.saturating_sub(updated),
                stage: None,
            })
        }
        (Mode::Upsert, None) => {
            // No key to match on: a row is new unless an identical row exists.
            let cmp_t: Vec<String> = quoted.iter().map(|q| format!("x.{q}")).collect();
            let written = write(
                conn,
                format!(
                    "{insert} WHERE NOT EXISTS (SELECT 1 FROM {} AS x WHERE (ROW({}, NULL))::text = (ROW({}, NULL))::text)",
                    table.name.sql(),
                    cmp_t.join(", "),
                    exprs.join(", ")
                ),
            )?;
            Ok(BatchResult {
                rows,
                inserted: written,
                updated: 0,
                unchanged: rows - written,
                stage: None,
            })
        }
        (Mode::Insert | Mode::Replace, _) => {
            let written = write(conn, insert)?;
            Ok(BatchResult {
                rows,
                inserted: written,
                updated: 0,
                unchanged: 0,
                stage: None,
            })
        }
    }
}

/// Replays a failed batch one row per savepoint to find the row the server rejected.
fn locate(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    cols: &[usize],
    path: Path,
    first_index: usize,
    batch_message: String,
) -> Error {
    let table = plan.table;
    let fallback = |stream: &RowStream<'_>| Error::Fixture {
        location: Box::new(Location {
            file: Some(stream.file().to_string()),
            table: Some(table.key.clone()),
            ..Default::default()
        }),
        message: format!("rows from index {first_index} on were rejected: {batch_message}"),
    };
    if stream.restart().is_err() {
        return fallback(stream);
    }
    // Skip to the batch's first row.
    loop {
        match stream.advance() {
            Ok(true) if stream.current().index < first_index => continue,
            Ok(true) => {
                stream.hold();
                break;
            }
            _ => return fallback(stream),
        }
    }
    loop {
        let (index, line) = match stream.advance() {
            Ok(true) => (stream.current().index, stream.current().line),
            _ => return fallback(stream),
        };
        stream.hold();
        let r = conn.transaction(TxMode::ReadWrite, |conn| {
            run_batch(
                conn,
                plan,
                stream,
                cols,
                path,
                Some(1),
                &crate::progress::NoProgress,
            )
        });
        match r {
            Ok(b) if b.rows == 0 => return fallback(stream),
            Ok(_) => continue,
            Err(Error::Database { message, .. }) => {
                let row = stream.current();
                debug_assert_eq!((row.index, row.line), (index, line));
                let column = guess_column(table, row, &message);
                return stream.error(table, row, column.as_deref(), message);
            }
            Err(other) => return other,
        }
    }
}

/// Which column a server message is about: named in the message, or the one holding the value
/// quoted in an "invalid input syntax" message.
fn guess_column(
    table: &Table,
    row: &crate::format::reader::RawRow,
    message: &str,
) -> Option<String> {
    let fields = row.fields().ok()?;
    if let Some(start) = message.find("column \"") {
        let rest = &message[start + 8..];
        if let Some(end) = rest.find('"') {
            let name = &rest[..end];
            if table.column(name).is_some() {
                return Some(name.to_string());
            }
        }
    }
    let quoted = message
        .rsplit_once(": \"")
        .map(|(_, v)| v.trim_end_matches('"'))?;
    fields
        .iter()
        .find(|(_, v)| {
            serde_json::from_str::<String>(v.get()).is_ok_and(|s| s == quoted) || v.get() == quoted
        })
        .map(|(k, _)| k.to_string())
}
