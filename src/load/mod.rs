//! `load`: fixture files into the database in ONE transaction, in foreign-key order, always
//! ending with sequence realignment.
//!
//! Invariants:
//! - Every input is scanned (its structure — the document, table arrays and row objects —
//!   checked) before the first write; a row's own syntax is checked when it is loaded, and any
//!   error there rolls everything back like any other. Tables are loaded in foreign-key order
//!   across all inputs, not in file order.
//! - Either every row lands or none does; on any error (and on a dry run) the transaction is
//!   rolled back and the sequences are exactly as before: the tables they feed are locked
//!   against other writers for the whole load, and the values drawn by rows that leave their
//!   id to its default are given back (nextval is not transactional). Realignment moves them
//!   as the last step before COMMIT, after every deferred constraint has been checked.
//! - Cycles between tables are broken without superuser rights or DEFERRABLE constraints: the
//!   chosen nullable foreign-key columns are loaded as NULL (unless the referenced row is
//!   already there) and filled in once every table is loaded; deferrable ones are simply
//!   deferred. The same goes for a self-reference when a table's rows cannot go in one
//!   statement (rows with different columns, or the table in several files).
//! - Columns missing from a row take their default (an upsert of an existing row leaves them
//!   alone); generated columns are never written; identity `GENERATED ALWAYS` columns take the
//!   fixture's explicit values.
//! - `replace` empties only the tables named in the fixtures.
//! - Rows are streamed: memory is bounded by the largest row, not by file size.

mod input;
mod pg;
mod pg_defer;
mod rows;
mod sqlite;

use std::path::PathBuf;

use serde::Serialize;

use crate::backend::{Backend, Connection, TxMode};
use crate::catalog::{quote_ident, Catalog, ForeignKey, Table};
use crate::error::{Error, Result};
use crate::order::{self, FkEdge};
use crate::progress::Progress;
use crate::sequences::{self, ResetReport};

pub use pg_defer::DeferReport;
pub(crate) use rows::RowStream;

/// What happens to rows whose key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Update rows whose key exists, insert the others, touch nothing else (re-running the same
    /// load changes nothing).
    #[default]
    Upsert,
    /// Insert only: an existing key is an error.
    Insert,
    /// Empty every table named in the fixtures first, then insert.
    Replace,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub mode: Mode,
    /// Do everything, report, then roll back.
    pub dry_run: bool,
    /// Allow `replace` on a database whose name does not look like a dev/test one.
    pub force: bool,
    /// Apply pending diesel migrations first, in the same transaction.
    pub migrate: bool,
    /// PostgreSQL: keep foreign keys and indexes in place while loading (checked row by row)
    /// instead of building them after the data (see `pg_defer`).
    pub no_defer_constraints: bool,
    /// The fewest rows a table must receive for its constraints to be built after the data
    /// (None: [`pg_defer::DEFAULT_MIN_ROWS`]).
    pub defer_min_rows: Option<u64>,
}

/// Per-table outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub table: String,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Migrations applied by `migrate`.
    pub migrations: Vec<String>,
    pub files: usize,
    pub tables: Vec<TableCounts>,
    pub sequences: ResetReport,
    pub dry_run: bool,
    /// PostgreSQL: the constraints built after the data, and the tables left alone.
    pub deferred: DeferReport,
}

impl LoadReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
    pub fn inserted(&self) -> u64 {
        self.tables.iter().map(|t| t.inserted).sum()
    }
    pub fn updated(&self) -> u64 {
        self.tables.iter().map(|t| t.updated).sum()
    }
    pub fn unchanged(&self) -> u64 {
        self.tables.iter().map(|t| t.unchanged).sum()
    }
}

/// The rule `replace` applies without `--force`: the database's name (SQLite: the file name)
/// contains one of these words, case-insensitively.
pub const DEV_NAME_WORDS: &[&str] = &[
    "dev", "test", "local", "tmp", "temp", "demo", "sandbox", "seed", "fixture", "ci",
];

pub fn looks_like_dev_database(name: &str) -> bool {
    let lower = name.to_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| {
            DEV_NAME_WORDS
                .iter()
                .any(|w| word.contains(w) && (*w != "ci" || word == "ci"))
        })
}

/// How one table is loaded, decided once per table before its rows are read.
#[derive(Debug)]
pub(crate) struct TablePlan<'a> {
    pub table: &'a Table,
    pub mode: Mode,
    /// Foreign-key columns loaded as NULL and filled in at the end (cycle breaking).
    pub null_columns: Vec<String>,
    /// The foreign keys those columns belong to (a row whose referenced row already exists
    /// can keep its value).
    pub null_fks: Vec<&'a ForeignKey>,
    /// The table had no rows when this occurrence's loading began (rows can go straight in).
    pub empty: bool,
    /// The table had no rows before this load (rows without a key are all new: an upsert does
    /// not match them against rows this load inserted).
    pub was_empty: bool,
    /// PostgreSQL: per column, how a structured value is encoded as COPY text on the client
    /// (None: not structured, or only the server can convert it from JSON).
    pub shapes: Vec<Option<crate::format::copy_structured::Shape>>,
}

/// Fill-ins for cycle-broken foreign keys, run after every table is loaded.
#[derive(Debug)]
pub(crate) struct Fixup {
    pub table: usize,
    /// The staging table holding the rows' real values.
    pub stage: String,
    pub columns: Vec<String>,
}

/// Loads fixture files (paths, directories, `-` for stdin) in one transaction.
///
/// Inside a caller's open transaction the load is a savepoint: the caller still decides whether
/// it commits. Sequences are the exception PostgreSQL imposes: the realignment's `setval` is not
/// undone by the caller's ROLLBACK (it leaves them ahead of the data, which is safe).
pub fn load_paths(
    conn: &mut Connection,
    paths: &[PathBuf],
    opts: &LoadOptions,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let inputs = input::expand(paths)?;
    let mut occurrences = Vec::new();
    for (i, inp) in inputs.iter().enumerate() {
        occurrences.extend(inp.scan(i)?);
    }
    in_transaction(conn, opts, |conn| {
        let catalog = Catalog::read(conn)?;
        let (tables, occ_table) = resolve_tables(&catalog, &inputs, &occurrences)?;
        // nextval (rows that leave their id to its default) and setval are not undone by
        // ROLLBACK: remember where the sequences stand, with the tables they feed locked against
        // other writers, and put them back if the load fails or is a dry run.
        let seqs = sequences::sequences_feeding(&catalog, &tables);
        let saved = match conn.backend() {
            Backend::Postgres => Some(pg::save_sequences(conn, &catalog, &seqs, &tables)?),
            Backend::Sqlite => None, // sqlite_sequence is transactional
        };
        let mut loaded = conn.transaction(TxMode::ReadWrite, |conn| {
            let ctx = LoadContext {
                catalog: &catalog,
                inputs: &inputs,
                occurrences: &occurrences,
                occ_table: &occ_table,
                tables: &tables,
                sequences: &seqs,
            };
            load_in_transaction(conn, &ctx, opts, progress)
        });
        if let (Ok(report), Some(saved)) = (&mut loaded, &saved) {
            net_changes(&mut report.sequences, &catalog, &seqs, saved);
        }
        if loaded.is_err() || opts.dry_run {
            if let Some(saved) = &saved {
                let restored = pg::restore_sequences(conn, &catalog, &seqs, saved);
                // The load's own error matters more than a failed restore.
                if let (Ok(_), Err(e)) = (&loaded, restored) {
                    return Err(e);
                }
            }
        }
        loaded
    })
}

/// Runs `body` as the load's one transaction: pending migrations first (`--migrate`, so the
/// body sees the tables they create), then the body; a dry run rolls back by failing the
/// transaction on purpose and carries its report out. Both fixture formats load through here.
pub(crate) fn in_transaction(
    conn: &mut Connection,
    opts: &LoadOptions,
    body: impl FnOnce(&mut Connection) -> Result<LoadReport>,
) -> Result<LoadReport> {
    let mut dry_report = None;
    let result = conn.transaction(TxMode::ReadWrite, |conn| {
        let migrations = if opts.migrate {
            crate::migrate::run_pending(conn)?
        } else {
            Vec::new()
        };
        let mut report = body(conn)?;
        report.migrations = migrations;
        if opts.dry_run {
            report.dry_run = true;
            dry_report = Some(report);
            return Err(Error::Invalid("dry run".into()));
        }
        Ok(report)
    });
    match (result, dry_report) {
        (_, Some(report)) => Ok(report),
        (r, None) => r,
    }
}

/// The files a load of `paths` reads, in the order it reads them (directories expanded as
/// [`load_paths`] expands them). `-` (stdin) is refused: its bytes cannot be read twice.
pub(crate) fn fixture_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.iter().any(|p| p.as_os_str() == "-") {
        return Err(Error::Invalid(
            "fixtures from stdin (-) cannot be used here; name the files".into(),
        ));
    }
    Ok(input::expand(paths)?
        .iter()
        .map(|i| i.path().to_path_buf())
        .collect())
}

/// Realignment moves as seen from before the load: rows that leave their id to its default (or
/// an upsert's proposed rows that then conflict) draw values during the load, and a sequence
/// realigned back to where it started has not moved.
fn net_changes(
    report: &mut ResetReport,
    catalog: &Catalog,
    seqs: &[usize],
    saved: &pg::SavedSequences,
) {
    let start: Vec<(&str, Option<i128>)> = report
        .before
        .iter()
        .zip(seqs.iter().zip(saved))
        .map(|(state, (&s, (last, called)))| {
            let next = last.parse::<i128>().ok().map(|v| {
                if *called {
                    v + catalog.sequences[s].increment
                } else {
                    v
                }
            });
            (state.sequence.as_str(), next)
        })
        .collect();
    report.changes.retain_mut(|c| {
        if let Some((_, Some(from))) = start.iter().find(|(name, _)| *name == c.sequence) {
            c.from = *from;
        }
        c.from != c.to
    });
}

/// Resolves every occurrence's table key: (tables in first-seen order, each occurrence's table).
fn resolve_tables(
    catalog: &Catalog,
    inputs: &[input::Input],
    occurrences: &[input::Occurrence],
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut tables: Vec<usize> = Vec::new();
    let mut occ_table = Vec::with_capacity(occurrences.len());
    for occ in occurrences {
        let t = catalog.find(&occ.key).map_err(|e| match e {
            Error::UnknownTable { name, hint } => Error::Fixture {
                location: Box::new(crate::error::Location {
                    file: Some(inputs[occ.input].name.clone()),
                    line: Some(occ.position.line),
                    column_no: Some(occ.position.column),
                    ..Default::default()
                }),
                message: format!("unknown table {name}{hint}"),
            },
            other => other,
        })?;
        occ_table.push(t);
        if !tables.contains(&t) {
            tables.push(t);
        }
    }
    Ok((tables, occ_table))
}

/// What `load_in_transaction` works from.
struct LoadContext<'a> {
    catalog: &'a Catalog,
    inputs: &'a [input::Input],
    occurrences: &'a [input::Occurrence],
    /// The table (catalog index) of each occurrence.
    occ_table: &'a [usize],
    /// Tables named in the fixtures, first-seen order.
    tables: &'a [usize],
    /// Sequences feeding them (realigned at the end).
    sequences: &'a [usize],
}

fn load_in_transaction(
    conn: &mut Connection,
    ctx: &LoadContext<'_>,
    opts: &LoadOptions,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let LoadContext {
        catalog,
        inputs,
        occurrences,
        occ_table,
        tables,
        sequences: seqs,
    } = *ctx;
    // SQLite defers every foreign key when a cycle needs it (load/sqlite.rs): nothing to break.
    let defer_all = conn.backend() == Backend::Sqlite;
    let (order, mut broken) = load_order(catalog, tables, defer_all)?;
    // A table referencing itself loads in any row order when all its rows go in one statement.
    // When they cannot (rows with different column lists, or the table in several files), its
    // nullable self-references are loaded like a broken cycle: filled in at the end.
    for &t in tables {
        for (fi, fk) in catalog.foreign_keys.iter().enumerate() {
            if !defer_all
                && self_reference_to_split(catalog, t, fk)
                && rows_need_several_statements(ctx, t)?
                && !broken.contains(&(t, fi))
            {
                broken.push((t, fi));
            }
        }
    }

    match conn.backend() {
        Backend::Postgres => pg::prepare(conn)?,
        Backend::Sqlite => sqlite::prepare(conn, catalog, tables)?,
    }
    if opts.mode == Mode::Replace {
        check_replace_allowed(conn, opts)?;
        refuse_if_referenced_from_outside(conn, catalog, tables)?;
        match conn.backend() {
            Backend::Postgres => pg::empty_tables(conn, catalog, tables)?,
            Backend::Sqlite => sqlite::empty_tables(conn, catalog, tables)?,
        }
    }

    let mut report = LoadReport {
        files: inputs.len(),
        ..Default::default()
    };
    let dropped = if conn.backend() == Backend::Postgres && !opts.no_defer_constraints {
        let min_rows = opts.defer_min_rows.unwrap_or(pg_defer::DEFAULT_MIN_ROWS);
        pg_defer::drop_for_load(conn, ctx, min_rows, &mut report.deferred)?
    } else {
        pg_defer::Dropped::default()
    };
    let mut fixups: Vec<Fixup> = Vec::new();
    for &t in &order {
        let table = &catalog.tables[t];
        let null_fks: Vec<&ForeignKey> = broken
            .iter()
            .filter(|(child, _)| *child == t)
            .map(|&(_, fi)| &catalog.foreign_keys[fi])
            .collect();
        let mut null_columns: Vec<String> = Vec::new();
        for fk in &null_fks {
            for c in &fk.columns {
                if !null_columns.contains(c) {
                    null_columns.push(c.clone());
                }
            }
        }
        let total: u64 = occurrences
            .iter()
            .zip(occ_table)
            .filter(|(_, &ot)| ot == t)
            .map(|(o, _)| o.rows)
            .sum();
        progress.table_started(&table.key, Some(total));
        let mut counts = TableCounts {
            table: table.key.clone(),
            ..Default::default()
        };
        let mut was_empty = None;
        let shapes = match conn.backend() {
            Backend::Postgres => pg::column_shapes(conn, table)?,
            Backend::Sqlite => Vec::new(),
        };
        for (occ, _) in occurrences.iter().zip(occ_table).filter(|(_, &ot)| ot == t) {
            let empty = match conn.backend() {
                Backend::Postgres => pg::is_empty(conn, table)?,
                Backend::Sqlite => sqlite::is_empty(conn, table)?,
            };
            let plan = TablePlan {
                table,
                mode: opts.mode,
                null_columns: null_columns.clone(),
                null_fks: null_fks.clone(),
                empty,
                was_empty: *was_empty.get_or_insert(empty),
                shapes: shapes.clone(),
            };
            let inp = &inputs[occ.input];
            let mut stream = RowStream::open(inp, occ)?;
            let c = match conn.backend() {
                Backend::Postgres => {
                    pg::load_rows(conn, &plan, &mut stream, progress, &mut fixups, t)?
                }
                Backend::Sqlite => {
                    sqlite::load_rows(conn, &plan, &mut stream, progress, &mut fixups, t)?
                }
            };
            counts.rows += c.rows;
            counts.inserted += c.inserted;
            counts.updated += c.updated;
            counts.unchanged += c.unchanged;
        }
        progress.table_finished(&table.key, counts.rows);
        report.tables.push(counts);
    }
    for f in &fixups {
        match conn.backend() {
            Backend::Postgres => pg::apply_fixup(conn, catalog, f)?,
            Backend::Sqlite => sqlite::apply_fixup(conn, catalog, f)?,
        }
    }
    pg_defer::recreate(conn, ctx, &dropped)?;
    // Every constraint is checked now, so nothing can fail after the sequences move.
    match conn.backend() {
        Backend::Postgres => pg::check_deferred(conn)?,
        Backend::Sqlite => sqlite::check_deferred(conn, catalog, tables)?,
    }
    progress.message("realigning sequences");
    report.sequences = sequences::realign(conn, catalog, seqs, false, opts.dry_run)?;
    Ok(report)
}

/// A foreign key of table `t` onto itself that ordering cannot help with but filling in can:
/// not deferrable (deferred ones wait for the end anyway) and on nullable columns.
fn self_reference_to_split(catalog: &Catalog, t: usize, fk: &ForeignKey) -> bool {
    let table = &catalog.tables[t];
    fk.table == table.name
        && fk.ref_table == table.name
        && !fk.deferrable
        && fk
            .columns
            .iter()
            .all(|c| table.column(c).is_some_and(|c| c.nullable))
}

/// Whether the rows of table `t` go to the server in more than one statement (several files,
/// or rows with different column lists) while every row carries the primary key (needed to fill
/// references in afterwards).
fn rows_need_several_statements(ctx: &LoadContext<'_>, t: usize) -> Result<bool> {
    let table = &ctx.catalog.tables[t];
    if table.primary_key.is_empty() {
        return Ok(false);
    }
    let pk: Vec<usize> = table
        .primary_key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| &c.name == k))
        .collect();
    let mut occurrences = 0;
    let mut several = false;
    let mut first: Option<Vec<usize>> = None;
    for (occ, _) in ctx
        .occurrences
        .iter()
        .zip(ctx.occ_table)
        .filter(|(_, &ot)| ot == t)
    {
        occurrences += 1;
        several |= occurrences > 1;
        let mut stream = RowStream::open(&ctx.inputs[occ.input], occ)?;
        while stream.advance()? {
            let cols: Vec<usize> = rows::resolve(&stream, table)?
                .iter()
                .map(|(i, _)| *i)
                .collect();
            if !pk.iter().all(|k| cols.contains(k)) {
                return Ok(false);
            }
            match &first {
                None => first = Some(cols),
                Some(f) => several |= *f != cols,
            }
        }
    }
    Ok(several)
}

/// Load order over the tables being loaded, and the foreign keys broken to load cycles.
/// A foreign key broken to load a cycle: the child table and the foreign key (index into
/// `catalog.foreign_keys`) whose columns are loaded as NULL then filled in.
type BrokenFk = (usize, usize);

fn load_order(
    catalog: &Catalog,
    tables: &[usize],
    defer_all: bool,
) -> Result<(Vec<usize>, Vec<BrokenFk>)> {
    let mut edges = Vec::new();
    let mut edge_fk = Vec::new();
    for (fi, ci, pi) in catalog.foreign_keys_within(tables) {
        let fk = &catalog.foreign_keys[fi];
        let child = &catalog.tables[tables[ci]];
        edges.push(FkEdge {
            child: ci,
            parent: pi,
            name: fk.name.clone(),
            columns_nullable: fk
                .columns
                .iter()
                .all(|col| child.column(col).is_some_and(|c| c.nullable)),
            deferrable: fk.deferrable || defer_all,
        });
        edge_fk.push(fi);
    }
    let lo = order::load_order(tables.len(), &edges).map_err(|e| {
        Error::Invalid(format!(
            "cannot load these tables in any order: {}",
            e.describe(|i| catalog.tables[tables[i]].key.clone())
        ))
    })?;
    let broken = lo
        .broken
        .iter()
        .map(|&e| (tables[edges[e].child], edge_fk[e]))
        .collect();
    Ok((lo.tables.into_iter().map(|i| tables[i]).collect(), broken))
}

/// `replace` refuses when rows of tables outside the fixtures reference the tables it would
/// empty: those rows would dangle (or cascade away), which a load must never do silently.
fn refuse_if_referenced_from_outside(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<()> {
    let in_set = |name| {
        catalog
            .table_index(name)
            .is_some_and(|i| tables.contains(&i))
    };
    let mut blocking = Vec::new();
    for fk in &catalog.foreign_keys {
        if !in_set(&fk.ref_table) || in_set(&fk.table) {
            continue;
        }
        let Some(child) = catalog.table(&fk.table) else {
            continue;
        };
        let cond: Vec<String> = fk
            .columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
            .collect();
        // Portable SQL: both backends answer the JSON text `true` or `false`.
        let referenced: bool = conn.query_json(&format!(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM {} WHERE {}) THEN 'true' ELSE 'false' END AS j",
            child.name.sql(),
            cond.join(" AND ")
        ))?;
        if referenced {
            let parent = catalog
                .table(&fk.ref_table)
                .map(|t| t.key.clone())
                .unwrap_or_default();
            blocking.push(format!("{} (via {} → {parent})", child.key, fk.name));
        }
    }
    if blocking.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--mode replace would empty tables that rows of other tables still reference: {}; \
         include those tables in the fixtures or delete their rows first",
        blocking.join(", ")
    )))
}

fn check_replace_allowed(conn: &mut Connection, opts: &LoadOptions) -> Result<()> {
    if opts.force {
        return Ok(());
    }
    let name = match conn.backend() {
        Backend::Postgres => pg::database_name(conn)?,
        Backend::Sqlite => sqlite::database_name(conn)?,
    };
    if looks_like_dev_database(&name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "refusing --mode replace on database \"{name}\": its name does not look like a \
             development or test database (it contains none of: {}); pass --force to do it anyway",
            DEV_NAME_WORDS.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_database_names() {
        for n in [
            "app_dev",
            "myapp_test",
            "test",
            "localdb",
            "ci",
            "app-ci",
            "demo.sqlite3",
            "dbftest_x_1",
        ] {
            assert!(looks_like_dev_database(n), "{n}");
        }
        for n in ["production", "app", "shop_prod", "circle", "precise"] {
            assert!(!looks_like_dev_database(n), "{n}");
        }
    }
}
