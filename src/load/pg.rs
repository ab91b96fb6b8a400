//! PostgreSQL loading: rows go to the server through COPY.
//!
//! A batch is a run of consecutive rows with the same set of columns (COPY cannot mix
//! defaults and values in one column). Each batch runs in a savepoint and takes one of two
//! paths:
//! - direct: `COPY table (columns) FROM STDIN` — for insert/replace, and for upsert into a
//!   table that was empty, when no column needs server-side JSON conversion (arrays,
//!   composites, hstore and domains over them are encoded as COPY text on the client, see
//!   [`crate::format::copy_structured`]; only other extension types with a JSON form need the
//!   server);
//! - staged: COPY into a temporary table, then one `INSERT ... SELECT` that converts those
//!   JSON columns with json_populate_record, upserts with ON CONFLICT (skipping
//!   identical rows so a re-run writes nothing) and loads cycle-broken foreign keys as NULL when
//!   the referenced row is not there yet.
//!
//! When a batch fails on the server, its rows are replayed by bisection (halves in savepoints,
//! see [`locate`]) to name the exact row (file, line, index, key) in the error.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

use super::rows::{resolve, RowStream};
use super::{Fixup, Mode, TableCounts, TablePlan};
use crate::backend::pg_copy::{copy_in, CopyError};
use crate::backend::{Connection, TxMode};
use crate::catalog::{quote_ident, quote_literal, Catalog, Table, ValueKind};
use crate::error::{describe_diesel, Error, Location, Result};
use crate::format::copy_structured::{push_structured, Shape};
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

/// Where each sequence stood before the load: `last_value` as text and `is_called`.
pub(super) type SavedSequences = Vec<(String, bool)>;

/// Sequences per query when reading them (planning time grows fast with UNION ALL branches).
const SEQUENCE_CHUNK: usize = 50;

/// Locks the loaded tables and the tables the given sequences feed against other writers (the
/// lock realignment takes anyway, taken for the whole load so that nobody else draws from those
/// sequences meanwhile) and reads where the sequences stand.
///
/// All in one statement, in one global order (by schema and name), before any row is written:
/// two loads of overlapping fixtures then queue on their first common table instead of each
/// holding what the other needs, so they cannot deadlock on each other's rows or locks.
pub(super) fn save_sequences(
    conn: &mut Connection,
    catalog: &Catalog,
    seqs: &[usize],
    loaded: &[usize],
) -> Result<SavedSequences> {
    let mut fed: Vec<&crate::catalog::QualifiedName> = seqs
        .iter()
        .flat_map(|&s| catalog.sequences[s].feeds.iter().map(|f| &f.table))
        .filter(|t| catalog.table(t).is_some())
        .chain(loaded.iter().map(|&t| &catalog.tables[t].name))
        .collect();
    fed.sort();
    fed.dedup();
    if !fed.is_empty() {
        let list: Vec<String> = fed.iter().map(|t| t.sql()).collect();
        conn.execute(&format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            list.join(", ")
        ))?;
    }
    read_sequences(conn, catalog, seqs)
}

fn read_sequences(
    conn: &mut Connection,
    catalog: &Catalog,
    seqs: &[usize],
) -> Result<SavedSequences> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(SEQUENCE_CHUNK) {
        let parts: Vec<String> = chunk
            .iter()
            .map(|&s| {
                format!(
                    "(SELECT json_build_array(last_value::text, is_called) FROM {})",
                    catalog.sequences[s].name.sql()
                )
            })
            .collect();
        let values: Vec<(String, bool)> = conn.query_json(&format!(
            "SELECT json_build_array({})::text AS j",
            parts.join(", ")
        ))?;
        out.extend(values);
    }
    Ok(out)
}

/// Puts back every sequence that moved since [`save_sequences`].
pub(super) fn restore_sequences(
    conn: &mut Connection,
    catalog: &Catalog,
    seqs: &[usize],
    saved: &SavedSequences,
) -> Result<()> {
    let now = read_sequences(conn, catalog, seqs)?;
    let moves: Vec<String> = seqs
        .iter()
        .zip(saved.iter().zip(&now))
        .filter(|(_, (before, after))| before != after)
        .map(|(&s, ((value, called), _))| {
            format!(
                "SELECT setval({}::regclass, {value}, {called})",
                quote_literal(&catalog.sequences[s].name.sql())
            )
        })
        .collect();
    if moves.is_empty() {
        return Ok(());
    }
    conn.execute(&moves.join("; "))
}

pub(super) fn is_empty(conn: &mut Connection, table: &Table) -> Result<bool> {
    conn.query_json(&format!(
        "SELECT to_json(NOT EXISTS (SELECT 1 FROM {}))::text AS j",
        table.own_rows_sql()
    ))
}

/// `replace`: empties the tables (the caller has already refused when rows of other tables
/// reference them).
/// Tables outside the fixtures are never emptied: TRUNCATE is used when every table it would
/// have to take along (the tables referencing the emptied ones, transitively) is empty already,
/// else one DELETE statement over the tables (foreign keys are checked at its end, so the order
/// among them does not matter).
pub(super) fn empty_tables(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<()> {
    // TRUNCATE must name every table referencing a truncated one.
    let mut names: Vec<usize> = tables.to_vec();
    let mut truncate = true;
    let mut i = 0;
    while i < names.len() && truncate {
        let parent = &catalog.tables[names[i]].name;
        for fk in &catalog.foreign_keys {
            if &fk.ref_table != parent {
                continue;
            }
            let Some(child) = catalog.table_index(&fk.table) else {
                continue;
            };
            if names.contains(&child) {
                continue;
            }
            if !is_empty(conn, &catalog.tables[child])? {
                truncate = false;
                break;
            }
            names.push(child);
        }
        i += 1;
    }
    if truncate {
        // ONLY: inheritance children are not in the fixtures and keep their rows.
        let list: Vec<String> = names
            .iter()
            .map(|&t| catalog.tables[t].own_rows_sql())
            .collect();
        return conn.execute(&format!("TRUNCATE {}", list.join(", ")));
    }
    let deletes: Vec<String> = tables
        .iter()
        .map(|&t| format!("DELETE FROM {}", catalog.tables[t].own_rows_sql()))
        .collect();
    let (last, ctes) = deletes.split_last().expect("at least one table");
    let with: Vec<String> = ctes
        .iter()
        .enumerate()
        .map(|(n, d)| format!("d{n} AS ({d})"))
        .collect();
    let sql = if with.is_empty() {
        last.clone()
    } else {
        format!("WITH {} {last}", with.join(", "))
    };
    conn.execute(&sql)
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
    // Only rows whose value differs: a re-run writes nothing.
    let old: Vec<String> = f
        .columns
        .iter()
        .map(|c| format!("t.{}", quote_ident(c)))
        .collect();
    let new: Vec<String> = f
        .columns
        .iter()
        .map(|c| format!("s.{}", quote_ident(c)))
        .collect();
    conn.execute(&format!(
        "UPDATE {} AS t SET {} FROM {} AS s WHERE {} AND ROW({}, NULL) IS DISTINCT FROM ROW({}, NULL)",
        table.name.sql(),
        set.join(", "),
        quote_ident(&f.stage),
        on.join(" AND "),
        old.join(", "),
        new.join(", ")
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

/// Per column of the table, how its structured values are encoded on the client (see
/// [`crate::format::copy_structured`]); None for the other columns.
pub(super) fn column_shapes(conn: &mut Connection, table: &Table) -> Result<Vec<Option<Shape>>> {
    table
        .columns
        .iter()
        .map(|c| match c.kind {
            ValueKind::Structured => crate::catalog::pg::type_shape(conn, &c.type_name),
            _ => Ok(None),
        })
        .collect()
}

/// Whether column `c` of the plan's table needs the server to convert its JSON (staged path).
fn server_json(plan: &TablePlan<'_>, c: usize) -> bool {
    plan.table.columns[c].kind == ValueKind::Structured
        && !plan.shapes.get(c).is_some_and(Option::is_some)
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
        let needs_server_json = cols.iter().any(|&c| server_json(plan, c));
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
            run_batch(conn, plan, stream, &cols, path, empty, None, progress)
        });
        match outcome {
            Ok(b) => {
                counts.rows += b.rows;
                counts.inserted += b.inserted;
                counts.updated += b.updated;
                counts.unchanged += b.unchanged;
                if let Some(stage) = b.stage {
                    // Only the columns the rows carry: the others took their defaults.
                    let columns: Vec<String> = plan
                        .null_columns
                        .iter()
                        .filter(|n| cols.iter().any(|&c| &table.columns[c].name == *n))
                        .cloned()
                        .collect();
                    if !columns.is_empty() {
                        fixups.push(Fixup {
                            table: table_index,
                            stage,
                            columns,
                        });
                    }
                }
                empty = false;
            }
            // Nothing to locate on a connection that is gone: say that, not "row 0".
            Err(Error::Database { message, .. }) if !conn.is_usable() => {
                return Err(Error::ConnectionLost {
                    during: format!("loading {} into table {}", stream.file(), table.key),
                    message,
                });
            }
            // A deadlock is with another session, not a row's fault: replaying rows one by one
            // would blame whichever row the retry happens to stop at.
            Err(Error::Database { message, .. }) if message.contains("deadlock detected") => {
                return Err(Error::Database {
                    context: format!(
                        "loading {} into table {} (nothing was committed; run it again)",
                        stream.file(),
                        table.key
                    ),
                    message,
                });
            }
            Err(Error::Database { message, .. }) => {
                return Err(locate(
                    conn,
                    plan,
                    stream,
                    &cols,
                    path,
                    empty,
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

/// The `hstore` extension type (`format_type` qualifies it when its schema is not visible).
fn is_hstore(type_name: &str) -> bool {
    type_name == "hstore" || type_name.ends_with(".hstore")
}

/// A batch of rows without columns (`{}`: every column takes its default; or a table without
/// columns): COPY needs a column list, so they are inserted by one `INSERT ... SELECT` of n
/// empty rows. An upsert into a table that had rows before the load finds them already there
/// (a row without columns is identical to any row).
fn run_empty_rows(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    empty: bool,
    limit: Option<u64>,
    progress: &dyn Progress,
) -> Result<BatchResult> {
    let table = plan.table;
    let mut rows = 0u64;
    while limit.is_none_or(|l| rows < l) {
        if !stream.advance()? {
            break;
        }
        if !resolve(stream, table)?.is_empty() {
            stream.hold();
            break;
        }
        rows += 1;
    }
    progress.rows(rows);
    let inserted = if rows > 0 && (plan.mode != Mode::Upsert || empty || plan.was_empty) {
        conn.execute(&format!(
            "INSERT INTO {} SELECT FROM generate_series(1, {rows})",
            table.name.sql()
        ))
        .map_err(|e| db_error(table, "loading rows", e))?;
        rows
    } else {
        0
    };
    Ok(BatchResult {
        rows,
        inserted,
        updated: 0,
        unchanged: rows - inserted,
        stage: None,
    })
}

/// Runs one batch: rows from the stream while their column set equals `cols` (at most `limit`).
/// `empty`: the table had no rows before this batch (an upsert has nothing to conflict with).
#[allow(clippy::too_many_arguments)]
fn run_batch(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    cols: &[usize],
    path: Path,
    empty: bool,
    limit: Option<u64>,
    progress: &dyn Progress,
) -> Result<BatchResult> {
    if cols.is_empty() {
        return run_empty_rows(conn, plan, stream, empty, limit, progress);
    }
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
                    let ty = if server_json(plan, c) {
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
            while limit.is_none_or(|l| rows < l) {
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
                    match plan.shapes.get(*c) {
                        Some(Some(shape)) => push_structured(&mut line, shape, raw),
                        _ => push_copy_field(&mut line, col.kind, raw),
                    }
                    .map_err(|e| stream.error(table, stream.current(), Some(&col.name), e.0))?;
                }
                line.push(b'\n');
                w.write_all(&line)
                    .map_err(|e| Error::io(format!("COPY into {}", table.key), e))?;
                rows += 1;
                if rows.is_multiple_of(4096) {
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
    let counts = insert_from_stage(conn, plan, cols, &stage, empty, rows)?;
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
    empty: bool,
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
            if let Some(fk) = plan
                .null_fks
                .iter()
                .find(|fk| fk.columns.contains(&col.name))
            {
                // Cycle-broken: kept when the referenced row is already there (so a re-run
                // compares and writes nothing), else NULL until the fixup fills it in.
                let on: Vec<String> = fk
                    .columns
                    .iter()
                    .zip(&fk.ref_columns)
                    .map(|(c, r)| format!("p.{} = s.{}", quote_ident(r), quote_ident(c)))
                    .collect();
                format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM {} AS p WHERE {}) THEN s.{q} END",
                    fk.ref_table.sql(),
                    on.join(" AND ")
                )
            } else if plan.null_columns.contains(&col.name) {
                "NULL".to_string()
            } else if server_json(plan, c) && is_hstore(&col.type_name) {
                // hstore is a JSON object of strings and nulls in fixtures, which
                // json_populate_record would hand to hstore's own input syntax: build it from
                // its pairs instead (text[] {k1, v1, k2, v2, ...} casts to hstore).
                format!(
                    "CASE WHEN s.{q} IS NOT NULL THEN ARRAY(SELECT u.x FROM json_each_text(s.{q}) \
                     WITH ORDINALITY AS e(k, v, n), unnest(ARRAY[e.k, e.v]) WITH ORDINALITY \
                     AS u(x, m) ORDER BY e.n, u.m)::{} END",
                    col.type_name
                )
            } else if server_json(plan, c) {
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
    let source = format!("{} AS s", quote_ident(stage));
    let insert_from = |source: &str, extra_cols: &[String], extra_exprs: &[String]| {
        format!(
            "INSERT INTO {} AS t ({}){overriding} SELECT {} FROM {source}",
            table.name.sql(),
            quoted
                .iter()
                .chain(extra_cols)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            exprs
                .iter()
                .chain(extra_exprs)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let insert_with = |extra_cols: &[String], extra_exprs: &[String]| {
        insert_from(&source, extra_cols, extra_exprs)
    };
    let insert = insert_with(&[], &[]);
    let write = |conn: &mut Connection, sql: String| -> Result<u64> {
        let a: Affected = conn.query_json(&format!(
            "WITH w AS ({sql} RETURNING 1) SELECT json_build_object('n', count(*))::text AS j FROM w"
        ))?;
        Ok(a.n)
    };
    // Into an empty table an upsert only inserts: a plain INSERT is much cheaper than ON
    // CONFLICT (a key repeated inside the fixture is then a unique violation naming the row).
    let mode = if plan.mode == Mode::Upsert && (empty || (key.is_none() && plan.was_empty)) {
        // (Rows without a key into a table this load started empty are all new, too.)
        Mode::Insert
    } else {
        plan.mode
    };
    match (mode, key) {
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
            // The row INSERT proposes is checked for NOT NULL before ON CONFLICT finds the
            // existing one: for a row that leaves out a NOT NULL column without a default (a
            // partial row meant to update some columns), propose the existing value, which the
            // update then leaves alone. For a new row it is NULL, and the error is genuine.
            let carried: Vec<&crate::catalog::Column> = table
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    !cols.contains(i)
                        && !c.nullable
                        && c.default.is_none()
                        && !c.generated
                        && c.identity.is_none()
                })
                .map(|(_, c)| c)
                .collect();
            let carried_cols: Vec<String> = carried.iter().map(|c| quote_ident(&c.name)).collect();
            let carried_exprs: Vec<String> = carried
                .iter()
                .map(|c| {
                    let on: Vec<String> = key
                        .iter()
                        .map(|k| format!("x.{0} = s.{0}", quote_ident(k)))
                        .collect();
                    format!(
                        "(SELECT x.{} FROM {} AS x WHERE {})",
                        quote_ident(&c.name),
                        table.name.sql(),
                        on.join(" AND ")
                    )
                })
                .collect();
            let written = write(
                conn,
                format!(
                    "{} ON CONFLICT ({}) {action}",
                    insert_with(&carried_cols, &carried_exprs),
                    conflict.join(", ")
                ),
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
            // No key to match on: rows are counted, not matched. The n-th copy of a row in the
            // batch goes in unless the table already holds n identical rows, so a fixture's
            // duplicates are all loaded and a re-run adds nothing (SQLite counts the same way).
            let cmp_t: Vec<String> = quoted.iter().map(|q| format!("x.{q}")).collect();
            let row_text = format!("(ROW({}, NULL))::text", exprs.join(", "));
            // Counted with one pass over each side (a hash join, like NOT EXISTS), not a
            // count per staged row.
            let numbered = format!(
                "(SELECT s.*, {row_text} AS dbfixtures_row, \
                 row_number() OVER (PARTITION BY {row_text}) AS dbfixtures_copy FROM {source}) AS s \
                 LEFT JOIN (SELECT (ROW({}, NULL))::text AS k, count(*) AS n FROM {} AS x \
                 GROUP BY 1) AS e ON e.k = s.dbfixtures_row",
                cmp_t.join(", "),
                table.name.sql()
            );
            let written = write(
                conn,
                format!(
                    "{} WHERE s.dbfixtures_copy > coalesce(e.n, 0)",
                    insert_from(&numbered, &[], &[])
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

/// Finds the row the server rejected in a failed batch, by bisection: the first half of the
/// remaining rows is run in a savepoint; when it goes through it is kept (later rows see it, as
/// they did in the batch) and the search goes on in the second half, else in the first. About
/// as many rows are sent as the batch had, in O(log n) statements, so a bad row at the end of a
/// large file is found in seconds (a savepoint per row would take minutes and exhaust the
/// server's lock table).
#[allow(clippy::too_many_arguments)]
fn locate(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    cols: &[usize],
    path: Path,
    empty: bool,
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
    let len = match batch_len(stream, table, cols, first_index) {
        Ok(Some(n)) => n,
        Ok(None) => return fallback(stream),
        Err(e) => return e,
    };
    // Rows before `start` are in; the culprit is among the `window` rows from `start`.
    let mut start = first_index;
    let mut window = len;
    let mut positioned = false;
    loop {
        if !positioned {
            match seek(stream, start) {
                Ok(true) => {}
                Ok(false) => return fallback(stream),
                Err(e) => return e,
            }
        }
        let take = if window > 1 { window / 2 } else { 1 };
        let r = conn.transaction(TxMode::ReadWrite, |conn| {
            run_batch(
                conn,
                plan,
                stream,
                cols,
                path,
                // Kept halves make the table non-empty for the next attempts.
                empty && start == first_index,
                Some(take as u64),
                &crate::progress::NoProgress,
            )
        });
        match r {
            Ok(b) if b.rows as usize == take && window > 1 => {
                start += take;
                window -= take;
                positioned = true;
            }
            // The whole batch went through in pieces: the failure was not one row's.
            Ok(_) => return fallback(stream),
            Err(Error::Database { message, .. }) if window == 1 => {
                let row = stream.current();
                let column = guess_column(table, row, &message);
                return stream.error(table, row, column.as_deref(), message);
            }
            Err(Error::Database { .. }) => {
                window = take;
                positioned = false;
            }
            Err(other) => return other,
        }
    }
}

/// Positions the stream so that its next row is the one at `index`; false if there is none.
fn seek(stream: &mut RowStream<'_>, index: usize) -> Result<bool> {
    stream.restart()?;
    while stream.advance()? {
        if stream.current().index >= index {
            stream.hold();
            return Ok(stream.current().index == index);
        }
    }
    Ok(false)
}

/// The number of rows of the batch starting at `first_index` (rows with the columns `cols`).
fn batch_len(
    stream: &mut RowStream<'_>,
    table: &Table,
    cols: &[usize],
    first_index: usize,
) -> Result<Option<usize>> {
    if !seek(stream, first_index)? {
        return Ok(None);
    }
    let mut n = 0;
    while stream.advance()? {
        let same = {
            let fields = resolve(stream, table)?;
            fields.len() == cols.len() && fields.iter().zip(cols).all(|((a, _), b)| a == b)
        };
        if !same {
            break;
        }
        n += 1;
    }
    Ok(Some(n))
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
    // "value for domain D violates check constraint": the column of type D, when only one is.
    if let Some(rest) = message.strip_prefix("value for domain ") {
        let domain = rest.split(' ').next().unwrap_or_default();
        let mut of_type = fields.iter().filter(|(k, _)| {
            table.column(k).is_some_and(|c| {
                c.type_name == domain || c.type_name.ends_with(&format!(".{domain}"))
            })
        });
        if let (Some((k, _)), None) = (of_type.next(), of_type.next()) {
            return Some(k.to_string());
        }
    }
    // "unsupported XML feature" (a server without libxml), "invalid XML content": the row's
    // one xml column, when it has exactly one.
    if message.contains("XML") {
        let mut xml = fields.iter().filter(|(k, _)| {
            table
                .column(k)
                .is_some_and(|c| c.type_name == "xml" || c.type_name == "pg_catalog.xml")
        });
        if let (Some((k, _)), None) = (xml.next(), xml.next()) {
            return Some(k.to_string());
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
