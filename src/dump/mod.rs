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
//! - Masks (`mask`) are resolved and checked with the tables, before the first byte is written,
//!   and applied to each row as it is converted, whatever the output.

mod direct;
mod parallel;
pub(crate) mod pg;
mod sqlite;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::backend::{Connection, TxMode};
use crate::catalog::{Catalog, Table};
use crate::error::{Error, Result};
use crate::format::writer::{FixtureWriter, Mark};
use crate::mask::{MaskOptions, MaskPlan, TableMask};
use crate::order::{self, FkEdge};
use crate::progress::{NoProgress, Progress};
use crate::subset::{self, RowFilter, SubsetOptions};

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
    /// `--where ...`: only these rows and the rows they need (see `subset`).
    pub subset: Option<SubsetOptions>,
    /// Columns masked on the way out (none by default).
    pub mask: MaskOptions,
    /// PostgreSQL: read tables on several connections sharing one snapshot (`dump -j N`); the
    /// output is the same bytes. SQLite (and a directory output) reads serially in its one
    /// snapshot.
    pub parallel: Option<Parallel>,
}

/// `dump -j N`: `jobs` connections to `url` (the database being dumped).
#[derive(Debug, Clone)]
pub struct Parallel {
    pub jobs: usize,
    pub url: crate::DatabaseUrl,
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

/// Where a dump writes its document: a writer, which some outputs (a file of the dump's own)
/// can also cut back to an earlier length. A parallel dump that reads a table in physical order
/// and finds it out of key order cuts the table off and reads it again (see `parallel`).
pub(crate) trait Output: Write {
    /// Cuts the output back to its first `len` bytes (no more than were written), if it can:
    /// None when it cannot (a stream, a compressor).
    fn truncate(&mut self, _len: u64) -> Option<std::io::Result<()>> {
        None
    }

    /// Whether [`Output::truncate`] can work.
    fn can_truncate(&self) -> bool {
        false
    }
}

/// The caller's writer (stdout, a library caller's buffer) cannot go back.
impl<W: Write> Output for std::io::BufWriter<W> {}

/// [`dump`] to a writer that is already buffered; `shown` names it in write errors.
fn dump_buffered(
    conn: &mut Connection,
    opts: &DumpOptions,
    out: &mut dyn Output,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    if let Some(p) = opts.parallel.as_ref().filter(|p| p.jobs > 1) {
        if conn.backend() == crate::backend::Backend::Postgres {
            return parallel::dump_buffered(conn, &p.url, p.jobs, opts, out, progress, shown);
        }
    }
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables, filters, masks) = plan(conn, opts, progress)?;
        // The heap sizes of the tables that could be read in stored order, in one query.
        let mut sizes: HashMap<usize, i64> = HashMap::new();
        if out.can_truncate() && pg::has_tid_range_scans(conn)? {
            let candidates: Vec<usize> = tables
                .iter()
                .copied()
                .filter(|&t| filters.of(t).is_none() && pg::key_field(&catalog.tables[t]).is_some())
                .collect();
            let of: Vec<&Table> = candidates.iter().map(|&t| &catalog.tables[t]).collect();
            sizes.extend(candidates.into_iter().zip(pg::heap_bytes(conn, &of)?));
        }
        let mut w = FixtureWriter::new(out, opts.pretty);
        let mut rows = 0;
        for &t in &tables {
            let table = &catalog.tables[t];
            let (only, mask) = (filters.of(t), masks.table(t));
            rows += match sizes.get(&t) {
                Some(&size) if size >= pg::STORED_ORDER_MIN_BYTES => {
                    dump_table_by_pages(conn, table, size, mask, &mut w, progress, shown)?
                }
                _ => dump_table(conn, table, only, mask, &mut w, progress, shown)?,
            };
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
    if let Some(p) = opts.parallel.as_ref().filter(|p| p.jobs > 1) {
        if conn.backend() == crate::backend::Backend::Postgres {
            return parallel::dump_to_dir(conn, &p.url, p.jobs, opts, dir, gzip, progress);
        }
    }
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables, filters, masks) = plan(conn, opts, progress)?;
        let paths = file_paths(&catalog, &tables, dir, gzip)?;
        let mut summary = DumpSummary {
            tables: tables.len(),
            ..Default::default()
        };
        for (&t, path) in tables.iter().zip(&paths) {
            let table = &catalog.tables[t];
            let (only, mask) = (filters.of(t), masks.table(t));
            let (rows, bytes) =
                table_to_file(conn, table, only, mask, opts.pretty, path, gzip, progress)?;
            summary.rows += rows;
            summary.bytes += bytes;
        }
        Ok(summary)
    })
}

/// The file of each table of a dump to a directory, in dump order. Two keys can make one file
/// name (`a/b` and `a_b`): refused rather than overwritten.
fn file_paths(catalog: &Catalog, tables: &[usize], dir: &Path, gzip: bool) -> Result<Vec<PathBuf>> {
    let ext = if gzip { "json.gz" } else { "json" };
    let file_name = |t: usize| format!("{}.{ext}", file_stem(&catalog.tables[t].key));
    let mut names: HashMap<String, usize> = HashMap::new();
    for &t in tables {
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
    Ok(tables.iter().map(|&t| dir.join(file_name(t))).collect())
}

/// Dumps one table as a whole fixture document to `path` (atomically); returns its rows and
/// bytes (before compression).
#[allow(clippy::too_many_arguments)]
fn table_to_file(
    conn: &mut Connection,
    table: &Table,
    only: Option<&[subset::Key]>,
    mask: &TableMask,
    pretty: bool,
    path: &Path,
    gzip: bool,
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    let shown = path.display().to_string();
    let file = AtomicFile::create(path)?;
    let (rows, bytes) = {
        let mut sink = file.sink(gzip)?;
        let mut w = FixtureWriter::new(&mut sink, pretty);
        let rows = dump_table(conn, table, only, mask, &mut w, progress, &shown)?;
        let bytes = w.bytes() + 3;
        w.finish().map_err(|e| Error::io(&shown, e))?;
        sink.finish().map_err(|e| Error::io(&shown, e))?;
        (rows, bytes)
    };
    file.commit()?;
    Ok((rows, bytes))
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
        let mut sink = file.sink(gzip)?;
        let s = dump_buffered(conn, opts, &mut sink, progress, &shown)?;
        sink.finish().map_err(|e| Error::io(&shown, e))?;
        s
    };
    file.commit()?;
    Ok(summary)
}

/// Reads the catalog, picks the tables (parents before children, then by name) and checks the
/// masks against them, before any row is read. For a subset dump, runs the closure and keeps only
/// the tables with rows in it.
fn plan(
    conn: &mut Connection,
    opts: &DumpOptions,
    progress: &dyn Progress,
) -> Result<(Catalog, Vec<usize>, Filters, MaskPlan)> {
    let catalog = Catalog::read(conn)?;
    let selected = catalog.select(&opts.tables, &opts.exclude, &opts.schemas)?;
    let postgres = matches!(conn, Connection::Pg(_));
    let masks = MaskPlan::new(&catalog, &selected, &opts.mask, postgres)?;
    let mut ordered = dump_order(&catalog, &selected);
    let filters = match &opts.subset {
        None => Filters(None),
        Some(s) => {
            let subset = subset::closure(conn, &catalog, &ordered, s, progress)?;
            ordered.retain(|t| subset.rows.contains_key(t));
            Filters(Some(subset.rows))
        }
    };
    Ok((catalog, ordered, filters, masks))
}

/// The rows of each table a dump writes: every row, or a subset's.
struct Filters(Option<HashMap<usize, RowFilter>>);

impl Filters {
    /// None: every row of table `t`; Some: only the rows with these keys.
    fn of(&self, t: usize) -> Option<&[subset::Key]> {
        match self.0.as_ref()?.get(&t)? {
            RowFilter::All => None,
            RowFilter::Keys(k) => Some(k),
        }
    }
}

/// Computes a subset dump's closure (in its own snapshot) and reports what it would write,
/// without reading any row's data: `dump --plan`.
pub fn subset_plan(
    conn: &mut Connection,
    opts: &DumpOptions,
    progress: &dyn Progress,
) -> Result<subset::Plan> {
    let Some(s) = &opts.subset else {
        return Err(Error::Invalid(
            "--plan describes a subset dump: give at least one --where 'TABLE: CONDITION'".into(),
        ));
    };
    conn.transaction(TxMode::Snapshot, |conn| {
        let catalog = Catalog::read(conn)?;
        let selected = catalog.select(&opts.tables, &opts.exclude, &opts.schemas)?;
        // The masks get the dump's checks, so a plan that succeeds is a dump that can run.
        let postgres = matches!(conn, Connection::Pg(_));
        MaskPlan::new(&catalog, &selected, &opts.mask, postgres)?;
        let ordered = dump_order(&catalog, &selected);
        // The plan is how a user finds out why a subset exploded: no row limit.
        let unlimited = SubsetOptions {
            max_rows: None,
            ..s.clone()
        };
        Ok(subset::closure(conn, &catalog, &ordered, &unlimited, progress)?.plan)
    })
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

/// Writes one table: every row, or only the rows whose keys are in `only` (a subset), in the
/// same order either way.
fn dump_table<W: Write>(
    conn: &mut Connection,
    table: &Table,
    only: Option<&[subset::Key]>,
    mask: &TableMask,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    let estimate = only.map_or(table.estimated_rows.max(0.0) as u64, |k| k.len() as u64);
    progress.table_started(&table.key, Some(estimate));
    w.begin_table(&table.key).map_err(|e| Error::io(path, e))?;
    let rows = table_rows(conn, table, only, None, None, mask, w, progress, path)?;
    w.end_table().map_err(|e| Error::io(path, e))?;
    progress.table_finished(&table.key, rows);
    Ok(rows)
}

/// [`dump_table`] for an output that can be cut back, on PostgreSQL 14+, of a table of `size`
/// heap bytes (at least [`pg::STORED_ORDER_MIN_BYTES`]) that is whole in the dump: one that
/// seems stored in key order (see [`pg::stored_in_key_order`]) is read in stored order, its
/// pages one after the other without `ORDER BY` (a TID range scan: the server skips the key's
/// index, about a quarter of its work on such tables), each key checked against the one before.
/// A table found out of key order is cut off the output and read again in key order, in the
/// same snapshot: the output is the same bytes either way.
fn dump_table_by_pages(
    conn: &mut Connection,
    table: &Table,
    size: i64,
    mask: &TableMask,
    w: &mut FixtureWriter<&mut dyn Output>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    let candidate = match pg::key_field(table).zip(pg::split_column(table)) {
        Some((field, column)) => {
            pg::stored_in_key_order(conn, table, column, size)?.then_some(field)
        }
        None => None,
    };
    let Some(field) = candidate else {
        return dump_table(conn, table, None, mask, w, progress, path);
    };
    let io = |e| Error::io(path, e);
    let mark = w.mark();
    progress.table_started(&table.key, Some(table.estimated_rows.max(0.0) as u64));
    w.begin_table(&table.key).map_err(io)?;
    let mut order = KeyOrder::new(field);
    let all = PartRange::Pages { from: 0, to: None };
    let shown = table_rows(
        conn,
        table,
        None,
        Some(&all),
        Some(&mut order),
        mask,
        w,
        progress,
        path,
    )?;
    if !order.follows(None) {
        return read_again_in_key_order(conn, table, mask, w, mark, shown, progress, path);
    }
    w.end_table().map_err(io)?;
    progress.table_finished(&table.key, shown);
    Ok(shown)
}

/// A table read in stored order whose keys broke key order: cuts it off the output (back to
/// `mark`, taken before the table) and reads it whole again, in key order, on `conn` (the same
/// snapshot). Returns its rows (`shown_rows` of them were already shown as progress).
#[allow(clippy::too_many_arguments)]
pub(super) fn read_again_in_key_order(
    conn: &mut Connection,
    table: &Table,
    mask: &TableMask,
    w: &mut FixtureWriter<&mut dyn Output>,
    mark: Mark,
    shown_rows: u64,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    let io = |e| Error::io(path, e);
    w.go_back(mark, |out, len| {
        out.truncate(len).unwrap_or_else(|| {
            Err(std::io::Error::other(
                "internal error: this output cannot go back to re-read a table",
            ))
        })
    })
    .map_err(io)?;
    progress.note(&format!(
        "{}: its rows are not stored in key order; reading it again in key order",
        table.key
    ));
    w.begin_table(&table.key).map_err(io)?;
    let rows = table_rows(conn, table, None, None, None, mask, w, &NoProgress, path)?;
    progress.rows(rows.saturating_sub(shown_rows));
    w.end_table().map_err(io)?;
    progress.table_finished(&table.key, rows);
    Ok(rows)
}

/// The rows of one table (of `range` of it, when given: PostgreSQL only), without the table's
/// framing; checks that a subset got all its rows. A range of pages is read in physical order
/// and `order` sees each row's key.
#[allow(clippy::too_many_arguments)]
fn table_rows<W: Write>(
    conn: &mut Connection,
    table: &Table,
    only: Option<&[subset::Key]>,
    range: Option<&PartRange>,
    order: Option<&mut KeyOrder>,
    mask: &TableMask,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    let rows = match conn {
        Connection::Pg(c) => pg::dump_table(c, table, only, range, order, mask, w, progress, path)?,
        Connection::Sqlite(_) => sqlite::dump_table(conn, table, only, mask, w, progress, path)?,
    };
    if let Some(keys) = only.filter(|k| k.len() as u64 != rows) {
        // Inside one snapshot every key names exactly one row: a difference is a bug in how
        // keys travel, and a silently smaller fixture would be worse than an error.
        return Err(Error::Invalid(format!(
            "internal error: the subset has {} rows of {} but {rows} were read back; \
             please report this with the table's definition",
            keys.len(),
            table.key
        )));
    }
    Ok(rows)
}

/// A range of a table's rows by the first column of its primary key (an integer column):
/// `from <= key < to`, either end open. A parallel dump splits large tables into such ranges,
/// which together hold every row once and, in order, give the rows in primary-key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub column: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl KeyRange {
    /// The SQL condition (the column quoted, the bounds integers).
    pub(crate) fn condition(&self) -> String {
        let c = crate::catalog::quote_ident(&self.column);
        match (self.from, self.to) {
            (Some(a), Some(b)) => format!("{c} >= {a} AND {c} < {b}"),
            (Some(a), None) => format!("{c} >= {a}"),
            (None, Some(b)) => format!("{c} < {b}"),
            (None, None) => "TRUE".into(),
        }
    }
}

/// A part of a large table that a parallel dump reads on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartRange {
    /// Rows in a range of the key, read in key order.
    Key(KeyRange),
    /// Rows stored in heap pages `from..to` (to the end when `to` is None), read in the order
    /// they are stored, which is cheaper for the server than following the key's index; the
    /// reader checks that it is also key order ([`KeyOrder`]).
    Pages { from: u32, to: Option<u32> },
}

impl PartRange {
    /// The SQL condition (bounds are integers).
    pub(crate) fn condition(&self) -> String {
        match self {
            PartRange::Key(k) => k.condition(),
            PartRange::Pages { from, to: Some(to) } => {
                format!("ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid")
            }
            PartRange::Pages { from, to: None } => format!("ctid >= '({from},0)'::tid"),
        }
    }

    /// Whether the rows come in key order by themselves (else they are read in stored order).
    pub(crate) fn ordered(&self) -> bool {
        matches!(self, PartRange::Key(_))
    }
}

/// The keys of a part read in stored order, as they came: its first and last, and whether each
/// was greater than the one before (then the part's rows are in key order). Once that fails,
/// the part's remaining rows are not rendered: its output is never used (the table is read
/// again in key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyOrder {
    /// The key's field in the COPY row.
    pub field: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub sorted: bool,
}

impl KeyOrder {
    pub(crate) fn new(field: usize) -> KeyOrder {
        KeyOrder {
            field,
            first: None,
            last: None,
            sorted: true,
        }
    }

    /// Sees the next row's key, as binary COPY sends an integer (big-endian, 2, 4 or 8 bytes);
    /// anything else (NULL) breaks the order.
    pub(crate) fn see(&mut self, key: Option<&[u8]>) {
        let k = match key {
            Some(&[a, b]) => i64::from(i16::from_be_bytes([a, b])),
            Some(&[a, b, c, d]) => i64::from(i32::from_be_bytes([a, b, c, d])),
            Some(b) if b.len() == 8 => i64::from_be_bytes(b.try_into().expect("8 bytes")),
            _ => {
                self.sorted = false;
                return;
            }
        };
        match self.last {
            Some(last) if k <= last => self.sorted = false,
            Some(_) => {}
            None => self.first = Some(k),
        }
        self.last = Some(k);
    }

    /// Whether this part's rows, following a part whose last key was `before`, continue key
    /// order.
    pub(crate) fn follows(&self, before: Option<i64>) -> bool {
        self.sorted
            && match (before, self.first) {
                (Some(b), Some(f)) => f > b,
                _ => true,
            }
    }
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

/// Plain or gzip output to a file (see `direct`: around the page cache where possible).
enum Sink {
    Plain(direct::DirectWriter),
    Gzip(flate2::write::GzEncoder<direct::DirectWriter>),
}

impl Sink {
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.finish(),
            Sink::Gzip(g) => g.finish()?.finish(),
        }
    }
}

impl Output for Sink {
    fn truncate(&mut self, len: u64) -> Option<std::io::Result<()>> {
        match self {
            Sink::Plain(w) => Some(w.truncate(len)),
            Sink::Gzip(_) => None,
        }
    }

    fn can_truncate(&self) -> bool {
        matches!(self, Sink::Plain(_))
    }
}

impl Write for Sink {
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

    /// The writer of the file's content (compressed when `gzip`).
    fn sink(&self, gzip: bool) -> Result<Sink> {
        let shown = || self.path.display().to_string();
        let plain = self
            .tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io(shown(), e))?;
        let w = direct::DirectWriter::new(self.tmp.path(), plain);
        Ok(if gzip {
            Sink::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::fast(),
            ))
        } else {
            Sink::Plain(w)
        })
    }

    fn commit(self) -> Result<()> {
        let shown = self.path.display().to_string();
        self.tmp
            .persist(&self.path)
            .map_err(|e| Error::io(shown, e.error))?;
        Ok(())
    }
}
