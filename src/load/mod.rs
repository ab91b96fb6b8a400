//! `load`: fixture files into the database in ONE transaction, in foreign-key order, always
//! ending with sequence realignment.
//!
//! Invariants:
//! - Every input is scanned (and its JSON syntax checked) before the first write; tables are
//!   then loaded in foreign-key order across all inputs, not in file order.
//! - Either every row lands or none does; on any error the transaction is rolled back and
//!   sequences are untouched (they are moved only as the last step before COMMIT, after every
//!   deferred constraint has been checked).
//! - Cycles between tables are broken without superuser rights or DEFERRABLE constraints: the
//!   chosen nullable foreign-key columns are loaded as NULL and filled in once every table is
//!   loaded; deferrable ones are simply deferred.
//! - Columns missing from a row take their default; generated columns are never written;
//!   identity `GENERATED ALWAYS` columns take the fixture's explicit values.
//! - Rows are streamed: memory is bounded by the largest row, not by file size.

mod input;
mod pg;
mod rows;
mod sqlite;

use std::path::PathBuf;

use serde::Serialize;

use crate::backend::{Backend, Connection, TxMode};
use crate::catalog::{Catalog, Table};
use crate::error::{Error, Result};
use crate::order::{self, FkEdge};
use crate::progress::Progress;
use crate::sequences::{self, ResetReport};

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
    /// The table had no rows when its loading began (rows can go straight in).
    pub empty: bool,
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
    // A dry run rolls back by failing the transaction on purpose, carrying its report out.
    let mut dry_report = None;
    let result = conn.transaction(TxMode::ReadWrite, |conn| {
        let report = load_in_transaction(conn, &inputs, &occurrences, opts, progress)?;
        if opts.dry_run {
            dry_report = Some(report);
            return Err(Error::Invalid("dry run".into()));
        }
        Ok(report)
    });
    match (result, dry_report) {
        (_, Some(mut report)) => {
            report.dry_run = true;
            Ok(report)
        }
        (r, None) => r,
    }
}

fn load_in_transaction(
    conn: &mut Connection,
    inputs: &[input::Input],
    occurrences: &[input::Occurrence],
    opts: &LoadOptions,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let migrations = if opts.migrate {
        crate::migrate::run_pending(conn)?
    } else {
        Vec::new()
    };
    let catalog = Catalog::read(conn)?;
    // Resolve every key; collect the tables in first-seen order.
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
    let (order, broken) = load_order(&catalog, &tables)?;

    match conn.backend() {
        Backend::Postgres => pg::prepare(conn)?,
        Backend::Sqlite => sqlite::prepare(conn)?,
    }
    if opts.mode == Mode::Replace {
        check_replace_allowed(conn, opts)?;
        match conn.backend() {
            Backend::Postgres => pg::empty_tables(conn, &catalog, &tables)?,
            Backend::Sqlite => sqlite::empty_tables(conn, &catalog, &tables)?,
        }
    }

    let mut report = LoadReport {
        migrations,
        files: inputs.len(),
        ..Default::default()
    };
    let mut fixups: Vec<Fixup> = Vec::new();
    for &t in &order {
        let table = &catalog.tables[t];
        let null_columns: Vec<String> = broken
            .iter()
            .filter(|(child, _)| *child == t)
            .flat_map(|(_, cols)| cols.iter().cloned())
            .collect();
        let total: u64 = occurrences
            .iter()
            .zip(&occ_table)
            .filter(|(_, &ot)| ot == t)
            .map(|(o, _)| o.rows)
            .sum();
        progress.table_started(&table.key, Some(total));
        let mut counts = TableCounts {
            table: table.key.clone(),
            ..Default::default()
        };
        for (occ, _) in occurrences
            .iter()
            .zip(&occ_table)
            .filter(|(_, &ot)| ot == t)
        {
            let empty = match conn.backend() {
                Backend::Postgres => pg::is_empty(conn, table)?,
                Backend::Sqlite => sqlite::is_empty(conn, table)?,
            };
            let plan = TablePlan {
                table,
                mode: opts.mode,
                null_columns: null_columns.clone(),
                empty,
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
            Backend::Postgres => pg::apply_fixup(conn, &catalog, f)?,
            Backend::Sqlite => sqlite::apply_fixup(conn, &catalog, f)?,
        }
    }
    // Every constraint is checked now, so nothing can fail after the sequences move.
    match conn.backend() {
        Backend::Postgres => pg::check_deferred(conn)?,
        Backend::Sqlite => sqlite::check_deferred(conn)?,
    }
    progress.message("realigning sequences");
    let seqs = sequences::sequences_feeding(&catalog, &tables);
    report.sequences = sequences::realign(conn, &catalog, &seqs, false, opts.dry_run)?;
    Ok(report)
}

/// Load order over the tables being loaded, and the foreign keys broken to load cycles:
/// (child table, its columns loaded as NULL then filled in).
/// A foreign key broken to load a cycle: the child table and its columns loaded as NULL.
type BrokenFk = (usize, Vec<String>);

fn load_order(catalog: &Catalog, tables: &[usize]) -> Result<(Vec<usize>, Vec<BrokenFk>)> {
    let mut edges = Vec::new();
    let mut edge_fk = Vec::new();
    for (fi, fk) in catalog.foreign_keys.iter().enumerate() {
        let (Some(c), Some(p)) = (
            catalog.table_index(&fk.table),
            catalog.table_index(&fk.ref_table),
        ) else {
            continue;
        };
        let (Some(ci), Some(pi)) = (
            tables.iter().position(|&t| t == c),
            tables.iter().position(|&t| t == p),
        ) else {
            continue;
        };
        let child = &catalog.tables[c];
        edges.push(FkEdge {
            child: ci,
            parent: pi,
            name: fk.name.clone(),
            columns_nullable: fk
                .columns
                .iter()
                .all(|col| child.column(col).is_some_and(|c| c.nullable)),
            deferrable: fk.deferrable,
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
        .map(|&e| {
            let fk = &catalog.foreign_keys[edge_fk[e]];
            (tables[edges[e].child], fk.columns.clone())
        })
        .collect();
    Ok((lo.tables.into_iter().map(|i| tables[i]).collect(), broken))
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
