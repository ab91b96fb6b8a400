//! `dump`: tables to a fixture, from one consistent snapshot, streaming.
//!
//! Invariants:
//! - Every table is read in one repeatable-read, read-only transaction (PostgreSQL) or one read
//!   transaction (SQLite), so a dump taken while the application writes still loads without
//!   foreign-key errors.
//! - Rows go from the server to the writer one at a time; memory does not grow with table size.
//! - Rows are ordered by primary key (by the whole row's text where there is none) and tables by
//!   foreign keys then name, so the same data always dumps to the same bytes.
//! - Generated columns are not written.

mod pg;
mod sqlite;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::backend::{Connection, TxMode};
use crate::catalog::{Catalog, Table};
use crate::error::{Error, Result};
use crate::format::writer::FixtureWriter;
use crate::order::{self, FkEdge};
use crate::progress::Progress;

/// Which tables to dump and how to lay them out.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// `--table` patterns (empty = every table).
    pub tables: Vec<String>,
    /// `--exclude-table` patterns.
    pub exclude: Vec<String>,
    /// `--schema` names (empty = every schema).
    pub schemas: Vec<String>,
    /// One column per line instead of one row per line.
    pub pretty: bool,
}

/// What a dump wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// Dumps the selected tables as one fixture document to `out` (buffered here: `out` sees large
/// writes, never one per row).
pub fn dump(
    conn: &mut Connection,
    opts: &DumpOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    let mut buffered = std::io::BufWriter::with_capacity(256 * 1024, out);
    dump_buffered(conn, opts, &mut buffered, progress, "<output>")
}

/// [`dump`] to a writer that is already buffered; `shown` names it in write errors.
fn dump_buffered(
    conn: &mut Connection,
    opts: &DumpOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables) = plan(conn, opts)?;
        let mut w = FixtureWriter::new(out, opts.pretty);
        let mut rows = 0;
        for &t in &tables {
            rows += dump_table(conn, &catalog.tables[t], &mut w, progress, shown)?;
        }
        let bytes = w.bytes() + 3;
        w.finish().map_err(|e| Error::io(shown, e))?;
        Ok(DumpSummary {
            tables: tables.len(),
            rows,
            bytes,
        })
    })
}

/// Dumps each selected table to its own fixture file `DIR/<table>.json` (`.json.gz` when
/// `gzip`). Files appear only when complete: each is written to a temporary file first.
pub fn dump_to_dir(
    conn: &mut Connection,
    opts: &DumpOptions,
    dir: &Path,
    gzip: bool,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables) = plan(conn, opts)?;
        let mut summary = DumpSummary {
            tables: tables.len(),
            ..Default::default()
        };
        let ext = if gzip { "json.gz" } else { "json" };
        let file_name = |t: usize| format!("{}.{ext}", file_stem(&catalog.tables[t].key));
        // Two keys can make one file name (`a/b` and `a_b`): refuse rather than overwrite.
        let mut names: HashMap<String, usize> = HashMap::new();
        for &t in &tables {
            if let Some(&other) = names.get(&file_name(t)) {
                return Err(Error::Invalid(format!(
                    "tables {} and {} would both be written to {}; dump them separately \
                     (--table / --exclude-table)",
                    catalog.tables[other].key,
                    catalog.tables[t].key,
                    dir.join(file_name(t)).display()
                )));
            }
            names.insert(file_name(t), t);
        }
        for &t in &tables {
            let table = &catalog.tables[t];
            let path = dir.join(file_name(t));
            let shown = path.display().to_string();
            let file = AtomicFile::create(&path)?;
            let (rows, bytes, file) = {
                let mut sink = Sink::new(file.writer(), gzip);
                let mut w = FixtureWriter::new(&mut sink, opts.pretty);
                let rows = dump_table(conn, table, &mut w, progress, &shown)?;
                let bytes = w.bytes() + 3;
                w.finish().map_err(|e| Error::io(&shown, e))?;
                sink.finish().map_err(|e| Error::io(&shown, e))?;
                (rows, bytes, file)
            };
            file.commit()?;
            summary.rows += rows;
            summary.bytes += bytes;
        }
        Ok(summary)
    })
}

/// Dumps to a file path (gzip when it ends in `.gz`), atomically.
pub fn dump_to_file(
    conn: &mut Connection,
    opts: &DumpOptions,
    path: &Path,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    let shown = path.display().to_string();
    let gzip = path.extension().is_some_and(|e| e == "gz");
    let file = AtomicFile::create(path)?;
    let summary = {
        let mut sink = Sink::new(file.writer(), gzip);
        let s = dump_buffered(conn, opts, &mut sink, progress, &shown)?;
        sink.finish().map_err(|e| Error::io(&shown, e))?;
        s
    };
    file.commit()?;
    Ok(summary)
}

/// Reads the catalog and picks the tables, parents before children, then by name.
fn plan(conn: &mut Connection, opts: &DumpOptions) -> Result<(Catalog, Vec<usize>)> {
    let catalog = Catalog::read(conn)?;
    let selected = catalog.select(&opts.tables, &opts.exclude, &opts.schemas)?;
    let ordered = dump_order(&catalog, &selected);
    Ok((catalog, ordered))
}

/// Foreign-key order when there is one, else catalog (name) order. A dump in this order loads
/// in a single pass.
fn dump_order(catalog: &Catalog, selected: &[usize]) -> Vec<usize> {
    let edges: Vec<FkEdge> = catalog
        .foreign_keys_within(selected)
        .into_iter()
        .map(|(fi, child, parent)| FkEdge {
            child,
            parent,
            name: catalog.foreign_keys[fi].name.clone(),
            // Treat every edge as breakable: for a dump any order is valid, this only needs to
            // be as close to load order as possible.
            columns_nullable: true,
            deferrable: false,
        })
        .collect();
    match order::load_order(selected.len(), &edges) {
        Ok(o) => o.tables.into_iter().map(|i| selected[i]).collect(),
        Err(_) => selected.to_vec(),
    }
}

fn dump_table<W: Write>(
    conn: &mut Connection,
    table: &Table,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    progress.table_started(&table.key, Some(table.estimated_rows.max(0.0) as u64));
    w.begin_table(&table.key).map_err(|e| Error::io(path, e))?;
    let rows = match conn {
        Connection::Pg(c) => pg::dump_table(c, table, w, progress, path)?,
        Connection::Sqlite(_) => sqlite::dump_table(conn, table, w, progress, path)?,
    };
    w.end_table().map_err(|e| Error::io(path, e))?;
    progress.table_finished(&table.key, rows);
    Ok(rows)
}

/// A file name for a table key: path separators and control characters replaced.
fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// Plain or gzip output.
enum Sink<W: Write> {
    Plain(std::io::BufWriter<W>),
    Gzip(flate2::write::GzEncoder<std::io::BufWriter<W>>),
}

impl<W: Write> Sink<W> {
    fn new(w: W, gzip: bool) -> Self {
        let buf = std::io::BufWriter::with_capacity(256 * 1024, w);
        if gzip {
            Sink::Gzip(flate2::write::GzEncoder::new(
                buf,
                flate2::Compression::fast(),
            ))
        } else {
            Sink::Plain(buf)
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut b) => b.flush(),
            Sink::Gzip(g) => g.finish()?.flush(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

/// A file that appears at its path only when complete (temporary file + rename), so a failed
/// dump never leaves a truncated fixture behind. Its temporary file is listed in [`UNFINISHED`]
/// while it exists, for [`remove_unfinished_files`].
struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    _listed: Listed,
}

/// Keeps a temporary file in [`UNFINISHED`] until dropped (after the rename, or with the file).
struct Listed(PathBuf);

impl Drop for Listed {
    fn drop(&mut self) {
        let mut list = UNFINISHED.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|p| p != &self.0);
    }
}

/// Temporary files of dumps in progress in this process.
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Deletes the temporary files of every dump still in progress in this process. For a process
/// about to exit without unwinding (the binary's SIGINT handler), where their destructors would
/// not run; the dumps themselves must not go on writing afterwards.
pub fn remove_unfinished_files() {
    let mut list = UNFINISHED.lock().unwrap_or_else(|p| p.into_inner());
    for p in list.drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

impl AtomicFile {
    fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".dbfixtures-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        UNFINISHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tmp.path().to_path_buf());
        Ok(AtomicFile {
            _listed: Listed(tmp.path().to_path_buf()),
            tmp,
            path: path.to_path_buf(),
        })
    }

    fn writer(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    fn commit(self) -> Result<()> {
        let shown = self.path.display().to_string();
        self.tmp
            .persist(&self.path)
            .map_err(|e| Error::io(shown, e.error))?;
        Ok(())
    }
}
