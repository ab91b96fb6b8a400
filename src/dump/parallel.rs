//! `dump -j N` (PostgreSQL): tables read on N connections that share one snapshot, written in
//! the same order and to the same bytes as a serial dump.
//!
//! Invariants:
//! - One snapshot: the leading connection's repeatable-read transaction exports it
//!   (`pg_export_snapshot`) and stays open until every worker is done; each worker's
//!   transaction starts from it (`SET TRANSACTION SNAPSHOT`), so all tables are read as of the
//!   same instant whatever is written meanwhile.
//! - Same bytes as `-j 1`: the dump is cut into parts, each a table or, for a large table whose
//!   primary key starts with an integer column, a range of that column (`KeyRange`: the ranges
//!   of a table cover every value once and follow each other in key order). Each part's rows are
//!   rendered by the serial path's own per-table code; the leading thread writes the parts in
//!   order and frames them (table keys, separators) exactly as one writer would.
//! - Pages in stored order, checked: to an output that can be cut back (a file of the dump's
//!   own, not gzip, not stdout) on PostgreSQL 14+, a large ordinary table whose primary key is
//!   one integer column is read by ranges of heap pages without `ORDER BY` (a TID range scan:
//!   the server skips the key's index, about a quarter of its work on such tables). Each part
//!   reports its keys as they came; when its turn comes the writing thread checks that they
//!   rose and start above the previous part's last one. That holds exactly when the table's
//!   stored order is its key order. The first part that breaks it (rows moved by updates,
//!   inserted out of key order) has the table cut off the output and read again in key order
//!   on the leading connection, in the same snapshot; its other parts are dropped.
//! - One write per byte (but for such a table read again): the part whose turn it is streams
//!   to the output as it is read; a part read ahead of its turn is held in memory (at most
//!   [`HELD_IN_MEMORY`] bytes for all workers together) and beyond that in an anonymous
//!   temporary file, until its turn. Memory stays flat whatever the table sizes.
//! - Workers only help: the leading connection holds every table's lock and the snapshot, and
//!   reads itself, in its turn, any part a worker could not (a database error before any of the
//!   part's output left the worker: above all a lock request that would wait behind DDL queued
//!   on the dump's own lock), with the rest of that table; and every part when no worker could
//!   connect. Each such fallback is reported as a [`Progress::note`].
//! - Any other failure in a worker stops the others (at their next piece of output) and fails the
//!   dump; nothing is left at the output path (the caller writes to a temporary file). With one
//!   file per table (`-o DIR/`), each file still appears only when complete.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use super::{
    pg, plan, table_rows, DumpOptions, DumpSummary, Filters, KeyOrder, KeyRange, Output, PartRange,
};
use crate::backend::connection::PG_SNAPSHOT_BEGIN;
use crate::backend::{Connection, DatabaseUrl, TxMode};
use crate::catalog::{quote_ident, Catalog, Table};
use crate::error::{Error, Result};
use crate::format::writer::{FixtureWriter, Mark};
use crate::mask::MaskPlan;
use crate::progress::{NoProgress, Progress};

/// Tables whose heap holds at least this many bytes are split into key ranges. By size, not by
/// the planner's row estimate: a table loaded and not yet analyzed has none.
const SPLIT_MIN_BYTES: i64 = 8 << 20;
/// Heap bytes per key range, about (the ranges split the key's span evenly).
const RANGE_BYTES: i64 = 2 << 20;
/// Ranges per table, at most.
const MAX_RANGES: i128 = 1024;
/// Bytes a worker renders before handing them on.
const PIECE: usize = 128 * 1024;
/// Rendered bytes all workers together may hold in memory while their parts wait for their
/// turn; beyond that they go to a temporary file.
const HELD_IN_MEMORY: usize = 16 << 20;
/// How long a worker waits for a table lock before leaving the table to the leading connection
/// (see [`Job::begin`]): any wait is one that would last until the dump ends.
const WORKER_LOCK_TIMEOUT: &str = "200ms";
/// Pieces in flight between the workers and the writing thread.
const CHANNEL: usize = 16;
/// Piece buffers kept for reuse: enough for everything held and in flight, so that memory is
/// touched once (fresh pages are slow to fault in on a lazily backed virtual machine).
const POOL: usize = HELD_IN_MEMORY / PIECE + CHANNEL + 8;

/// A part of the dump that one worker reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// The table's place in the dump order.
    position: usize,
    /// `None`: the whole table.
    range: Option<PartRange>,
    /// The table's first and last parts: the writer opens and closes the table there.
    first: bool,
    last: bool,
}

/// From the workers to the writing thread.
enum Msg {
    /// Output of the part whose turn it is, in order.
    Piece(Vec<u8>),
    /// A part is read: what it held back, how many rows it had, and for a part read in stored
    /// order, its keys' order.
    Done {
        part: usize,
        held: Held,
        rows: u64,
        order: Option<KeyOrder>,
    },
    /// A part a worker could not read (a database error before any of its output left the
    /// worker, above all its table locked against it): the leading connection reads it in its
    /// turn. `why` comes with the part the worker tried; the table's later parts come without.
    Refused {
        part: usize,
        why: Option<Error>,
    },
    /// A worker could not open its connection (a connection limit): the others, and in the end
    /// the leading connection, read its share.
    NoConnection(Error),
    Failed(Error),
}

/// Output of a part read ahead of its turn: pieces in memory, then (past the memory budget) a
/// temporary file.
#[derive(Default)]
struct Held {
    pieces: Vec<Vec<u8>>,
    spool: Option<std::fs::File>,
}

/// What the workers and the writing thread share.
struct Shared {
    /// The part being written to the output.
    turn: AtomicUsize,
    /// Set when the dump fails: workers stop at their next piece.
    stop: AtomicBool,
    /// Bytes held in memory by parts waiting for their turn.
    held: AtomicUsize,
    /// Written pieces, for reuse (at most [`POOL`]).
    pool: Mutex<Vec<Vec<u8>>>,
    /// By table position: the table's stored order was found not to be key order and the
    /// writing thread reads it again itself; workers skip its parts.
    abandoned: Vec<AtomicBool>,
    /// By table position: a worker could not read one of the table's parts (above all: a lock
    /// request queued behind the dump's own lock); workers leave its parts to the leading
    /// connection.
    refused: Vec<AtomicBool>,
}

impl Shared {
    fn buffer(&self) -> Vec<u8> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.pop()
            .unwrap_or_else(|| Vec::with_capacity(PIECE + PIECE / 4))
    }

    fn recycle(&self, mut piece: Vec<u8>) {
        piece.clear();
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(piece);
        }
    }
}

/// Dumps like [`super::dump`] with `jobs` connections to `url` (the database `conn` is open
/// on).
pub(super) fn dump_buffered(
    conn: &mut Connection,
    url: &DatabaseUrl,
    jobs: usize,
    opts: &DumpOptions,
    out: &mut dyn Output,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    leading(conn, url, opts, progress, |conn, job| {
        // Pages are read in stored order only where a table found out of key order can be cut
        // off the output and read again, and where the server has TID range scans (14+).
        let by_pages = out.can_truncate() && pg::has_tid_range_scans(conn)?;
        let parts = split(conn, job.catalog, job.tables, job.filters, by_pages)?;
        let workers = jobs.clamp(1, parts.len().max(1));
        let shared = Shared {
            turn: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
            abandoned: job.tables.iter().map(|_| AtomicBool::new(false)).collect(),
            refused: job.tables.iter().map(|_| AtomicBool::new(false)).collect(),
        };
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::sync_channel::<Msg>(CHANNEL);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (shared, next, parts) = (&shared, &next, &parts);
                scope.spawn(move || {
                    if let Err(e) = worker(job, parts, next, shared, &tx) {
                        // Sent before `stop` is set: the others' "stopped" errors come later.
                        let _ = tx.send(Msg::Failed(e));
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                });
            }
            drop(tx);
            let r = write_in_order(conn, &rx, &shared, &parts, job, out, progress, shown);
            if r.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            // Let the workers finish (their messages are dropped); their errors come after ours.
            for _ in rx.iter() {}
            r
        })
    })
}

/// What every worker needs to read its parts.
struct Job<'a> {
    url: &'a DatabaseUrl,
    snapshot: &'a str,
    catalog: &'a Catalog,
    tables: &'a [usize],
    filters: &'a Filters,
    masks: &'a MaskPlan,
    opts: &'a DumpOptions,
}

impl Job<'_> {
    fn table(&self, position: usize) -> &Table {
        &self.catalog.tables[self.tables[position]]
    }

    /// A connection in a read-only transaction on the leading connection's snapshot.
    fn connect(&self) -> Result<Connection> {
        let mut conn = Connection::open(self.url, false)?;
        self.begin(&mut conn)?;
        Ok(conn)
    }

    /// Starts the worker's transaction on the leading connection's snapshot.
    ///
    /// The leading connection holds a lock on every table, so a worker waits for a lock only
    /// behind a request queued after it (a migration's ALTER TABLE, a TRUNCATE), which itself
    /// waits for the dump to end: a cycle through this process that the server cannot see. A
    /// worker gives up after [`WORKER_LOCK_TIMEOUT`] and leaves that table to the leading
    /// connection, whose lock is already granted (pg_dump's workers fail the dump instead).
    fn begin(&self, conn: &mut Connection) -> Result<()> {
        conn.execute(&format!(
            "{PG_SNAPSHOT_BEGIN}; SET TRANSACTION SNAPSHOT {}; \
             SET LOCAL lock_timeout = '{WORKER_LOCK_TIMEOUT}'",
            crate::catalog::quote_literal(self.snapshot)
        ))
    }

    /// Ends a worker's transaction that an error aborted and starts another on the same
    /// snapshot (it stays importable while the leading transaction is open).
    fn begin_again(&self, conn: &mut Connection) -> Result<()> {
        conn.execute("ROLLBACK")?;
        self.begin(conn)
    }
}

/// The leading connection's part: plans the dump in its repeatable-read transaction, exports
/// that transaction's snapshot, and runs `run` with what the workers share; the transaction
/// stays open until `run` returns.
fn leading<T>(
    conn: &mut Connection,
    url: &DatabaseUrl,
    opts: &DumpOptions,
    progress: &dyn Progress,
    run: impl FnOnce(&mut Connection, &Job<'_>) -> Result<T>,
) -> Result<T> {
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables, filters, masks) = plan(conn, opts, progress)?;
        // Every table locked against DDL until the dump ends, as pg_dump does: a TRUNCATE or a
        // rewriting ALTER is not bound by the snapshot, and the leading connection itself may
        // read any of them (a table read again in key order).
        if !tables.is_empty() {
            let list: Vec<String> = tables
                .iter()
                .map(|&t| catalog.tables[t].name.sql())
                .collect();
            conn.execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                list.join(", ")
            ))?;
        }
        let snapshot: String =
            conn.query_json("SELECT to_json(pg_export_snapshot())::text AS j")?;
        let job = Job {
            url,
            snapshot: &snapshot,
            catalog: &catalog,
            tables: &tables,
            filters: &filters,
            masks: &masks,
            opts,
        };
        run(conn, &job)
    })
}

/// The parts of the dump, in dump order: one per table, or key ranges of the large tables whose
/// primary key starts with an integer column (not for a subset's key list: those tables are
/// read whole).
fn split(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
    filters: &Filters,
    by_pages: bool,
) -> Result<Vec<Part>> {
    let candidates: Vec<(usize, &str)> = tables
        .iter()
        .enumerate()
        .filter(|&(_, &t)| filters.of(t).is_none())
        .filter_map(|(position, &t)| Some((position, pg::split_column(&catalog.tables[t])?)))
        .collect();
    // The heap sizes of the candidates (partitions summed), in one query.
    let of: Vec<&Table> = candidates
        .iter()
        .map(|&(position, _)| &catalog.tables[tables[position]])
        .collect();
    let sizes = pg::heap_bytes(conn, &of)?;
    let mut ranges: BTreeMap<usize, Vec<PartRange>> = BTreeMap::new();
    for (&(position, column), &size) in candidates.iter().zip(&sizes) {
        if size >= SPLIT_MIN_BYTES {
            let table = &catalog.tables[tables[position]];
            let count = (size + RANGE_BYTES - 1) / RANGE_BYTES;
            let r = if by_pages
                && pg::key_field(table).is_some()
                && pg::stored_in_key_order(conn, table, column, size)?
            {
                page_ranges(size)
            } else {
                key_ranges(conn, table, column, count)?
                    .into_iter()
                    .map(PartRange::Key)
                    .collect()
            };
            ranges.insert(position, r);
        }
    }
    let mut parts = Vec::new();
    for position in 0..tables.len() {
        let ranges = ranges.remove(&position).unwrap_or_default();
        if ranges.is_empty() {
            parts.push(Part {
                position,
                range: None,
                first: true,
                last: true,
            });
            continue;
        }
        let n = ranges.len();
        parts.extend(ranges.into_iter().enumerate().map(|(i, r)| Part {
            position,
            range: Some(r),
            first: i == 0,
            last: i + 1 == n,
        }));
    }
    Ok(parts)
}

/// The table's heap (`size` bytes) cut into ranges of [`RANGE_BYTES`] of pages; the last one is
/// open-ended (rows stored after the size was read are not in the snapshot, but are not
/// missed either way).
fn page_ranges(size: i64) -> Vec<PartRange> {
    // PostgreSQL's default block size; with another one only the number of parts changes (the
    // last one is open-ended).
    let page = 8192;
    let pages = (size / page).max(1);
    let per = (RANGE_BYTES / page).max(1);
    let mut out = Vec::new();
    let mut from = 0;
    while from < pages {
        let to = from + per;
        out.push(PartRange::Pages {
            from: from as u32,
            to: (to < pages).then_some(to as u32),
        });
        from = to;
    }
    out
}

/// Splits the span of `column`'s values (min to max, read through its index) into `count`
/// ranges; none when the table is empty.
fn key_ranges(
    conn: &mut Connection,
    table: &Table,
    column: &str,
    count: i64,
) -> Result<Vec<KeyRange>> {
    let c = quote_ident(column);
    let (min, max): (Option<i64>, Option<i64>) = conn.query_json(&format!(
        "SELECT json_build_array(min({c}), max({c}))::text AS j FROM {}",
        table.own_rows_sql()
    ))?;
    let (Some(min), Some(max)) = (min, max) else {
        return Ok(Vec::new());
    };
    Ok(even_ranges(column, min, max, count))
}

/// `min..=max` cut into `count` ranges of equal width (fewer when the span is narrower); the
/// first and last are open-ended, so every value belongs to exactly one range.
fn even_ranges(column: &str, min: i64, max: i64, count: i64) -> Vec<KeyRange> {
    let span = i128::from(max) - i128::from(min) + 1;
    let count = i128::from(count).clamp(1, MAX_RANGES).min(span);
    let mut bounds: Vec<i64> = (1..count)
        .map(|i| (i128::from(min) + span * i / count) as i64)
        .collect();
    bounds.dedup();
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for b in bounds {
        ranges.push(KeyRange {
            column: column.to_string(),
            from,
            to: Some(b),
        });
        from = Some(b);
    }
    ranges.push(KeyRange {
        column: column.to_string(),
        from,
        to: None,
    });
    ranges
}

/// Writes the parts to `out` in order as they come, framed as one writer frames a document.
///
/// A table read by ranges of pages is checked part by part as its turn comes: each part's keys
/// rise, and its first key is above the previous part's last. The first part that breaks this
/// shows that the table's stored order is not its key order: the table is cut off the output
/// (`out` can do that whenever pages are read) and read again here, in key order, on the
/// leading connection (same snapshot); its other parts are dropped unwritten.
#[allow(clippy::too_many_arguments)]
fn write_in_order(
    conn: &mut Connection,
    rx: &mpsc::Receiver<Msg>,
    shared: &Shared,
    parts: &[Part],
    job: &Job<'_>,
    out: &mut dyn Output,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    let io = |e| Error::io(shown, e);
    let mut w = FixtureWriter::new(out, job.opts.pretty);
    let mut waiting: BTreeMap<usize, Ready> = BTreeMap::new();
    let mut summary = DumpSummary {
        tables: job.tables.len(),
        ..Default::default()
    };
    let mut turn = 0;
    // Whether the part whose turn it is has started (its table opened when it is the first).
    let mut begun = false;
    let mut table_rows = 0u64;
    // The current table: where the output stood before it, and its last key written so far
    // (tables read by pages).
    let mut table_mark = w.mark();
    let mut last_key: Option<i64> = None;
    // Every worker has stopped: the parts none of them took are the leading connection's.
    let mut workers_gone = false;
    let begin =
        |w: &mut FixtureWriter<&mut dyn Output>, begun: &mut bool, mark: &mut Mark, part: &Part| {
            if !*begun && part.first {
                let table = job.table(part.position);
                let estimate = job
                    .filters
                    .of(job.tables[part.position])
                    .map_or(table.estimated_rows.max(0.0) as u64, |k| k.len() as u64);
                progress.table_started(&table.key, Some(estimate));
                *mark = w.mark();
                w.begin_table(&table.key)?;
            }
            *begun = true;
            Ok::<(), std::io::Error>(())
        };
    while turn < parts.len() {
        let ready = match waiting.remove(&turn) {
            Some(ready) => ready,
            None if workers_gone => Ready::Leader,
            None => {
                match rx.recv() {
                    Err(_) => workers_gone = true,
                    Ok(Msg::Failed(e)) => return Err(e),
                    Ok(Msg::NoConnection(e)) => note_no_connection(progress, &e),
                    Ok(Msg::Piece(piece)) => {
                        begin(&mut w, &mut begun, &mut table_mark, &parts[turn]).map_err(io)?;
                        w.append_rows(&piece).map_err(io)?;
                        shared.recycle(piece);
                    }
                    Ok(Msg::Done { part, held, .. }) if part < turn => {
                        // A part of a table read again here, read before its workers saw that.
                        drop_held(shared, held);
                    }
                    Ok(Msg::Done {
                        part,
                        held,
                        rows,
                        order,
                    }) => {
                        waiting.insert(part, Ready::Read { held, rows, order });
                    }
                    Ok(Msg::Refused { part, why }) => {
                        if let Some(e) = why {
                            note_refused(progress, job.table(parts[part].position), &e);
                        }
                        if part >= turn {
                            waiting.insert(part, Ready::Leader);
                        }
                    }
                }
                continue;
            }
        };
        let part = &parts[turn];
        if part.first {
            last_key = None;
        }
        begin(&mut w, &mut begun, &mut table_mark, part).map_err(io)?;
        // The part's rows, its keys' order when it was read by pages, and whether it follows
        // the table's earlier parts in key order.
        let (rows, order, in_order) = match ready {
            Ready::Read { held, rows, order } => {
                let in_order = follows(order.as_ref(), last_key);
                if in_order {
                    write_held(&mut w, shared, held).map_err(io)?;
                } else {
                    drop_held(shared, held);
                }
                (rows, order, in_order)
            }
            Ready::Leader => {
                // Read here, straight to the output: the leading connection holds every
                // table's lock and the snapshot.
                let mut order = key_order(job, part);
                let rows = read_on_leader(conn, job, part, order.as_mut(), &mut w, shown)?;
                let in_order = follows(order.as_ref(), last_key);
                (rows, order, in_order)
            }
        };
        if in_order {
            if let Some(last) = order.and_then(|o| o.last) {
                last_key = Some(last);
            }
            progress.rows(rows);
            table_rows += rows;
            summary.rows += rows;
            if part.last {
                w.end_table().map_err(io)?;
                progress.table_finished(&job.table(part.position).key, table_rows);
                table_rows = 0;
            }
        } else {
            let n = read_again(
                conn, shared, job, part, &mut w, table_mark, table_rows, progress, shown,
            )?;
            summary.rows = summary.rows - table_rows + n;
            table_rows = 0;
            // The table's other parts are not written.
            while !parts[turn].last {
                turn += 1;
                if let Some(Ready::Read { held, .. }) = waiting.remove(&turn) {
                    drop_held(shared, held);
                }
            }
        }
        turn += 1;
        begun = false;
        shared.turn.store(turn, Ordering::Release);
    }
    // The document's closing bytes, which `finish` writes.
    summary.bytes = w.bytes() + 3;
    w.finish().map_err(io)?;
    Ok(summary)
}

/// What watches a part's keys as they come: for a part read by pages (in stored order), none
/// for a part whose query gives the rows in key order.
fn key_order(job: &Job<'_>, part: &Part) -> Option<KeyOrder> {
    match part.range {
        Some(PartRange::Pages { .. }) => pg::key_field(job.table(part.position)).map(KeyOrder::new),
        _ => None,
    }
}

/// Whether a part whose keys came in `order` (None: not read by pages, in key order by its
/// query) follows the table's earlier parts, whose last key was `last_key`.
fn follows(order: Option<&KeyOrder>, last_key: Option<i64>) -> bool {
    order.is_none_or(|o| o.follows(last_key))
}

/// Says that the leading connection reads `table` because a worker could not (`e`).
fn note_refused(progress: &dyn Progress, table: &Table, e: &Error) {
    progress.note(&format!(
        "{}: read on the leading connection, a parallel worker could not read it ({e})",
        table.key
    ));
}

/// Says that a worker's connection could not be opened (`e`).
fn note_no_connection(progress: &dyn Progress, e: &Error) {
    progress.note(&format!(
        "a parallel dump connection could not be opened; reading on fewer ({e})"
    ));
}

/// A part of the dump ready to be written in its turn.
enum Ready {
    /// Read by a worker: what it held back, its rows and (read by pages) its keys' order.
    Read {
        held: Held,
        rows: u64,
        order: Option<KeyOrder>,
    },
    /// To be read by the leading connection.
    Leader,
}

/// Reads a part on the leading connection, straight to the output.
fn read_on_leader(
    conn: &mut Connection,
    job: &Job<'_>,
    part: &Part,
    order: Option<&mut KeyOrder>,
    w: &mut FixtureWriter<&mut dyn Output>,
    shown: &str,
) -> Result<u64> {
    let rows = part_rows(conn, job, part, order, w, shown)?;
    // The leading connection's reads in key order (a table read again) may sort.
    conn.execute("RESET enable_sort")?;
    Ok(rows)
}

/// A table read by pages whose stored order is not its key order (found at `part`): cuts it off
/// the output (back to `mark`, before the table) and reads it whole, in key order, on the
/// leading connection; its parts still to be read are skipped. Returns its rows (`shown_rows`
/// of them were already shown as progress).
#[allow(clippy::too_many_arguments)]
fn read_again(
    conn: &mut Connection,
    shared: &Shared,
    job: &Job<'_>,
    part: &Part,
    w: &mut FixtureWriter<&mut dyn Output>,
    mark: Mark,
    shown_rows: u64,
    progress: &dyn Progress,
    shown: &str,
) -> Result<u64> {
    shared.abandoned[part.position].store(true, Ordering::Release);
    let t = job.tables[part.position];
    super::read_again_in_key_order(
        conn,
        job.table(part.position),
        job.masks.table(t),
        w,
        mark,
        shown_rows,
        progress,
        shown,
    )
}

/// Gives back what a part held without writing it.
fn drop_held(shared: &Shared, held: Held) {
    for piece in held.pieces {
        shared.held.fetch_sub(piece.len(), Ordering::Relaxed);
        shared.recycle(piece);
    }
}

/// Writes what a part held back: its pieces in memory, then its temporary file.
fn write_held<W: Write>(
    w: &mut FixtureWriter<W>,
    shared: &Shared,
    held: Held,
) -> std::io::Result<()> {
    for piece in held.pieces {
        w.append_rows(&piece)?;
        shared.held.fetch_sub(piece.len(), Ordering::Relaxed);
        shared.recycle(piece);
    }
    if let Some(mut spool) = held.spool {
        spool.rewind()?;
        let mut buf = shared.buffer();
        buf.resize(PIECE, 0);
        loop {
            let n = spool.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.append_rows(&buf[..n])?;
        }
        shared.recycle(buf);
    }
    Ok(())
}

/// Reads parts until none is left (or the dump is stopped). A part the worker cannot read (its
/// table locked against it, any database error before any of its output was handed on) is left
/// to the leading connection, with the rest of its table; a worker that cannot connect leaves
/// its share to the others.
fn worker(
    job: &Job<'_>,
    parts: &[Part],
    next: &AtomicUsize,
    shared: &Shared,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<()> {
    let mut conn = match job.connect() {
        Ok(conn) => conn,
        Err(e) => {
            let _ = tx.send(Msg::NoConnection(e));
            return Ok(());
        }
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(part) = parts.get(index) else {
            break;
        };
        let skipped = if shared.abandoned[part.position].load(Ordering::Acquire) {
            // The writing thread reads this table again itself.
            Some(Msg::Done {
                part: index,
                held: Held::default(),
                rows: 0,
                order: None,
            })
        } else if shared.refused[part.position].load(Ordering::Acquire) {
            Some(Msg::Refused {
                part: index,
                why: None,
            })
        } else {
            None
        };
        if let Some(msg) = skipped {
            if tx.send(msg).is_err() {
                break;
            }
            continue;
        }
        let mut order = key_order(job, part);
        let mut sink = PartSink {
            part: index,
            shared,
            tx,
            buf: shared.buffer(),
            held: Held::default(),
            streaming: false,
        };
        let read = read_part(&mut conn, job, part, order.as_mut(), &mut sink);
        let rows = match read {
            Ok(rows) => rows,
            Err(e @ Error::Database { .. })
                if sink.nothing_handed_on() && !shared.stop.load(Ordering::Relaxed) =>
            {
                sink.discard();
                shared.refused[part.position].store(true, Ordering::Release);
                // The error aborted the transaction: start another on the same snapshot.
                let again = job.begin_again(&mut conn);
                let refused = Msg::Refused {
                    part: index,
                    why: Some(e),
                };
                if tx.send(refused).is_err() || again.is_err() {
                    // Without a transaction this worker is done; the others and the leading
                    // connection read the rest.
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let held = sink
            .finish()
            .map_err(|e| Error::io("temporary spool file", e))?;
        if tx
            .send(Msg::Done {
                part: index,
                held,
                rows,
                order,
            })
            .is_err()
        {
            break;
        }
    }
    conn.execute("COMMIT")
}

/// Reads one part into `sink` on a worker's connection.
fn read_part(
    conn: &mut Connection,
    job: &Job<'_>,
    part: &Part,
    order: Option<&mut KeyOrder>,
    sink: &mut PartSink<'_>,
) -> Result<u64> {
    let mut w = FixtureWriter::rows_only(sink, job.opts.pretty);
    let rows = part_rows(conn, job, part, order, &mut w, "<output>")?;
    w.finish_rows()
        .map_err(|e| Error::io("<parallel dump>", e))?;
    Ok(rows)
}

/// The rows of one part (without the table's framing), on a worker's connection or the leading
/// one.
fn part_rows<W: Write>(
    conn: &mut Connection,
    job: &Job<'_>,
    part: &Part,
    order: Option<&mut KeyOrder>,
    w: &mut FixtureWriter<W>,
    shown: &str,
) -> Result<u64> {
    let t = job.tables[part.position];
    set_sort_for(conn, part)?;
    table_rows(
        conn,
        &job.catalog.tables[t],
        job.filters.of(t),
        part.range.as_ref(),
        order,
        job.masks.table(t),
        w,
        &NoProgress,
        shown,
    )
}

/// A key range is best read by an index scan on the key, which gives the rows in order. Without
/// statistics (a table loaded and not analyzed yet) the planner guesses a few rows per range
/// and picks a bitmap scan and a sort instead, which costs the server far more on large ranges:
/// sorts are ruled out for ranges (on a connection of the dump's own, in its transaction).
fn set_sort_for(conn: &mut Connection, part: &Part) -> Result<()> {
    conn.execute(if part.range.is_some() {
        "SET LOCAL enable_sort = off"
    } else {
        "RESET enable_sort"
    })
}

/// Where a worker writes a part: straight on to the writing thread when it is the part's turn,
/// else held (memory, then a temporary file) until then.
struct PartSink<'a> {
    part: usize,
    shared: &'a Shared,
    tx: &'a mpsc::SyncSender<Msg>,
    buf: Vec<u8>,
    held: Held,
    /// Its turn came: everything held has been sent, the rest goes straight on.
    streaming: bool,
}

impl PartSink<'_> {
    fn send(&self, msg: Msg) -> std::io::Result<()> {
        self.tx
            .send(msg)
            .map_err(|_| std::io::Error::other("the parallel dump's writer stopped"))
    }

    /// Hands the buffered bytes on.
    fn hand_on(&mut self) -> std::io::Result<()> {
        if self.shared.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(
                "stopped: another part of the parallel dump failed",
            ));
        }
        let piece = std::mem::replace(&mut self.buf, self.shared.buffer());
        if !self.streaming && self.shared.turn.load(Ordering::Acquire) == self.part {
            self.streaming = true;
            self.send_held()?;
        }
        if self.streaming {
            return self.send(Msg::Piece(piece));
        }
        let len = piece.len();
        if self.held.spool.is_none()
            && self.shared.held.fetch_add(len, Ordering::Relaxed) + len <= HELD_IN_MEMORY
        {
            self.held.pieces.push(piece);
            return Ok(());
        }
        if self.held.spool.is_none() {
            // Over budget: undo the reservation; from now on this part spills.
            self.shared.held.fetch_sub(len, Ordering::Relaxed);
            self.held.spool = Some(tempfile::tempfile()?);
        }
        if let Some(spool) = self.held.spool.as_mut() {
            spool.write_all(&piece)?;
        }
        self.shared.recycle(piece);
        Ok(())
    }

    /// The part's turn came while it was being read: send what it held, in order.
    fn send_held(&mut self) -> std::io::Result<()> {
        let held = std::mem::take(&mut self.held);
        for piece in held.pieces {
            self.shared.held.fetch_sub(piece.len(), Ordering::Relaxed);
            self.send(Msg::Piece(piece))?;
        }
        if let Some(mut spool) = held.spool {
            spool.rewind()?;
            loop {
                let mut buf = self.shared.buffer();
                buf.resize(PIECE, 0);
                let n = spool.read(&mut buf)?;
                if n == 0 {
                    self.shared.recycle(buf);
                    break;
                }
                buf.truncate(n);
                self.send(Msg::Piece(buf))?;
            }
        }
        Ok(())
    }

    /// Whether none of the part's output has left the sink yet (sent or held).
    fn nothing_handed_on(&self) -> bool {
        !self.streaming && self.held.pieces.is_empty() && self.held.spool.is_none()
    }

    /// Drops what the sink has (nothing was handed on: see [`PartSink::nothing_handed_on`]).
    fn discard(&mut self) {
        self.shared.recycle(std::mem::take(&mut self.buf));
    }

    /// Hands on the last bytes; returns what is still held (for the writing thread).
    fn finish(mut self) -> std::io::Result<Held> {
        if !self.buf.is_empty() {
            self.hand_on()?;
        }
        self.shared.recycle(std::mem::take(&mut self.buf));
        Ok(std::mem::take(&mut self.held))
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.hand_on()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `dump -j N -o DIR/`: each table is read by one worker and written to its own file
/// (`paths[position]`), which appears when complete, as in a serial dump to a directory.
#[allow(clippy::too_many_arguments)]
pub(super) fn dump_to_dir(
    conn: &mut Connection,
    url: &DatabaseUrl,
    jobs: usize,
    opts: &DumpOptions,
    dir: &Path,
    gzip: bool,
    progress: &dyn Progress,
) -> Result<DumpSummary> {
    leading(conn, url, opts, progress, |conn, job| {
        let paths = super::file_paths(job.catalog, job.tables, dir, gzip)?;
        let workers = jobs.clamp(1, job.tables.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<FileMsg>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, stop, paths) = (&next, &stop, &paths);
                scope.spawn(move || {
                    if let Err(e) = file_worker(job, paths, gzip, next, stop, &tx) {
                        let _ = tx.send(FileMsg::Failed(e));
                        stop.store(true, Ordering::Relaxed);
                    }
                });
            }
            drop(tx);
            let mut summary = DumpSummary {
                tables: job.tables.len(),
                ..Default::default()
            };
            let mut done = |position: usize, rows: u64, bytes: u64| {
                let key = &job.table(position).key;
                progress.table_started(key, Some(rows));
                progress.rows(rows);
                progress.table_finished(key, rows);
                summary.rows += rows;
                summary.bytes += bytes;
            };
            let mut result = Ok(());
            // Tables left to the leading connection, read once the workers are done.
            let mut left = Vec::new();
            for msg in rx.iter() {
                match msg {
                    FileMsg::Done(position, rows, bytes) => done(position, rows, bytes),
                    FileMsg::Refused(position, e) => {
                        note_refused(progress, job.table(position), &e);
                        left.push(position);
                    }
                    FileMsg::NoConnection(e) => note_no_connection(progress, &e),
                    FileMsg::Failed(e) => {
                        stop.store(true, Ordering::Relaxed);
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
            }
            result?;
            // And those no worker took (none could connect).
            left.extend(next.load(Ordering::Relaxed).min(paths.len())..paths.len());
            for position in left {
                let (rows, bytes) = table_file(conn, job, position, &paths[position], gzip)?;
                done(position, rows, bytes);
            }
            Ok(summary)
        })
    })
}

/// Writes the table at `position` in the dump order to its file `path`, on a worker's
/// connection or the leading one: its rows and bytes.
fn table_file(
    conn: &mut Connection,
    job: &Job<'_>,
    position: usize,
    path: &Path,
    gzip: bool,
) -> Result<(u64, u64)> {
    let t = job.tables[position];
    super::table_to_file(
        conn,
        job.table(position),
        job.filters.of(t),
        job.masks.table(t),
        job.opts.pretty,
        path,
        gzip,
        &NoProgress,
    )
}

/// From the workers of a dump to a directory to the leading thread.
enum FileMsg {
    /// A table's file is written: its rows and bytes.
    Done(usize, u64, u64),
    /// A table the worker could not read: the leading connection reads it.
    Refused(usize, Error),
    /// A worker could not open its connection.
    NoConnection(Error),
    Failed(Error),
}

/// Reads whole tables into their files until none is left (or the dump is stopped); a table it
/// cannot read (a database error: its lock not granted) is left to the leading connection.
fn file_worker(
    job: &Job<'_>,
    paths: &[PathBuf],
    gzip: bool,
    next: &AtomicUsize,
    stop: &AtomicBool,
    tx: &mpsc::Sender<FileMsg>,
) -> Result<()> {
    let mut conn = match job.connect() {
        Ok(conn) => conn,
        Err(e) => {
            let _ = tx.send(FileMsg::NoConnection(e));
            return Ok(());
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let position = next.fetch_add(1, Ordering::Relaxed);
        let Some(path) = paths.get(position) else {
            break;
        };
        let msg = match table_file(&mut conn, job, position, path, gzip) {
            Ok((rows, bytes)) => FileMsg::Done(position, rows, bytes),
            Err(e @ Error::Database { .. }) => {
                // The file was not written; the error aborted the transaction: start another
                // on the same snapshot, or leave the rest to the others.
                let again = job.begin_again(&mut conn);
                if tx.send(FileMsg::Refused(position, e)).is_err() || again.is_err() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if tx.send(msg).is_err() {
            break;
        }
    }
    conn.execute("COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_cover_the_heap_and_leave_the_last_open() {
        let pages = |size: i64| -> Vec<(u32, Option<u32>)> {
            page_ranges(size)
                .into_iter()
                .map(|r| match r {
                    PartRange::Pages { from, to } => (from, to),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(pages(0), vec![(0, None)]);
        assert_eq!(pages(RANGE_BYTES), vec![(0, None)]);
        assert_eq!(pages(RANGE_BYTES + 8192), vec![(0, Some(256)), (256, None)]);
        let many = pages(10 * RANGE_BYTES);
        assert_eq!(many.len(), 10);
        assert!(many.windows(2).all(|w| w[0].1 == Some(w[1].0)));
        assert_eq!(many.last(), Some(&(2304, None)));
    }

    #[test]
    fn key_order_sees_rising_keys_and_their_bounds() {
        let mut o = KeyOrder::new(0);
        for k in [3i64, 5, 9] {
            o.see(Some(&k.to_be_bytes()));
        }
        assert_eq!((o.first, o.last, o.sorted), (Some(3), Some(9), true));
        assert!(o.follows(None) && o.follows(Some(2)));
        assert!(
            !o.follows(Some(3)),
            "a first key equal to the last one before"
        );
        // int4 and int2 fields; a fall, an equal key or a NULL breaks the order.
        let mut o = KeyOrder::new(0);
        o.see(Some(&7i32.to_be_bytes()));
        o.see(Some(&(-2i16).to_be_bytes()));
        assert_eq!((o.first, o.last, o.sorted), (Some(7), Some(-2), false));
        let mut o = KeyOrder::new(0);
        o.see(Some(&1i32.to_be_bytes()));
        o.see(Some(&1i32.to_be_bytes()));
        assert!(!o.sorted);
        let mut o = KeyOrder::new(0);
        o.see(None);
        assert!(!o.follows(None));
        // A part without rows continues any order.
        assert!(KeyOrder::new(0).follows(Some(10)));
    }

    fn bounds(ranges: &[KeyRange]) -> Vec<(Option<i64>, Option<i64>)> {
        ranges.iter().map(|r| (r.from, r.to)).collect()
    }

    #[test]
    fn ranges_cover_every_key_once_in_order() {
        assert_eq!(bounds(&even_ranges("id", 1, 1_000_000, 20)).len(), 20);
        assert_eq!(
            bounds(&even_ranges("id", 1, 100, 3)),
            vec![(None, Some(34)), (Some(34), Some(67)), (Some(67), None)]
        );
        // A span narrower than the range count: one range per key value at most.
        assert_eq!(
            bounds(&even_ranges("id", 5, 6, 1000)),
            vec![(None, Some(6)), (Some(6), None)]
        );
        assert_eq!(bounds(&even_ranges("id", 7, 7, 1000)), vec![(None, None)]);
        // The extremes of bigint do not overflow.
        let wide = even_ranges("id", i64::MIN, i64::MAX, 1 << 40);
        assert_eq!(wide.len() as i128, MAX_RANGES);
        assert!(wide.windows(2).all(|w| w[0].to == w[1].from));
        let inner: Vec<i64> = wide.iter().filter_map(|r| r.to).collect();
        assert_eq!(inner.len(), wide.len() - 1);
        assert!(inner.windows(2).all(|b| b[0] < b[1]));
        assert_eq!(
            wide[0].condition(),
            format!("\"id\" < {}", wide[0].to.unwrap())
        );
    }
}
