//! `dump -j N` (PostgreSQL): tables read on N connections that share one snapshot, written in
//! the same order and to the same bytes as a serial dump.
//!
//! Invariants:
//! - One snapshot: the leading connection's repeatable-read transaction exports it
//!   (`pg_export_snapshot`) and stays open until every worker is done; each worker's
//!   transaction starts from it (`SET TRANSACTION SNAPSHOT`), so all tables are read as of the
//!   same instant whatever is written meanwhile.
//! - Same bytes as `-j 1`: each table is dumped by the serial path's own per-table function
//!   into a spool file (an anonymous temporary file, so memory stays flat; disk holds at most
//!   the tables finished ahead of their turn), and the spools are copied to the output in dump
//!   order, framed exactly as one writer would have framed them.
//! - A failure in any worker stops the others at their next table and fails the dump; nothing
//!   is left at the output path (the caller writes to a temporary file).

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::{dump_table, plan, DumpOptions, DumpSummary, Filters};
use crate::backend::{Connection, DatabaseUrl, TxMode};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::writer::FixtureWriter;
use crate::mask::MaskPlan;
use crate::progress::{NoProgress, Progress};

/// One finished table: its place in the dump, its spool and counts.
struct Done {
    position: usize,
    spool: std::fs::File,
    rows: u64,
    bytes: u64,
}

/// Dumps like [`super::dump`] with `jobs` connections to `url` (the database `conn` is open
/// on).
pub(super) fn dump_buffered(
    conn: &mut Connection,
    url: &DatabaseUrl,
    jobs: usize,
    opts: &DumpOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    conn.transaction(TxMode::Snapshot, |conn| {
        let (catalog, tables, filters, masks) = plan(conn, opts, progress)?;
        let snapshot: String =
            conn.query_json("SELECT to_json(pg_export_snapshot())::text AS j")?;
        let workers = jobs.clamp(1, tables.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<Result<Done>>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (catalog, tables, next, stop, snapshot) =
                    (&catalog, &tables, &next, &stop, &snapshot);
                let sel = Rows {
                    filters: &filters,
                    masks: &masks,
                };
                scope.spawn(move || {
                    let r = worker(url, snapshot, catalog, tables, sel, opts, next, stop, &tx);
                    if let Err(e) = r {
                        stop.store(true, Ordering::Relaxed);
                        let _ = tx.send(Err(e));
                    }
                });
            }
            drop(tx);
            let r = write_in_order(&rx, &catalog, &tables, opts, out, progress, shown);
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            // Drain so that workers blocked on nothing finish; their errors come after ours.
            for _ in rx.iter() {}
            r
        })
    })
}

/// Copies the spools to `out` in dump order as they arrive, then closes the document.
fn write_in_order(
    rx: &mpsc::Receiver<Result<Done>>,
    catalog: &Catalog,
    tables: &[usize],
    opts: &DumpOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
    shown: &str,
) -> Result<DumpSummary> {
    let mut waiting: BTreeMap<usize, Done> = BTreeMap::new();
    let mut written = 0;
    let mut summary = DumpSummary {
        tables: tables.len(),
        ..Default::default()
    };
    let mut body = 0u64;
    while written < tables.len() {
        let done = match rx.recv() {
            Ok(d) => d?,
            Err(_) => {
                return Err(Error::Invalid(
                    "a parallel dump worker stopped without a result".into(),
                ))
            }
        };
        waiting.insert(done.position, done);
        while let Some(mut d) = waiting.remove(&written) {
            let table = &catalog.tables[tables[written]];
            progress.table_started(&table.key, Some(d.rows));
            d.spool
                .rewind()
                .and_then(|_| std::io::copy(&mut d.spool, out))
                .map_err(|e| Error::io(shown, e))?;
            progress.rows(d.rows);
            progress.table_finished(&table.key, d.rows);
            summary.rows += d.rows;
            body += d.bytes;
            written += 1;
        }
    }
    // The closing bytes, as the one writer of a serial dump writes them.
    let closing = FixtureWriter::resume(&mut *out, opts.pretty, tables.len());
    closing.finish().map_err(|e| Error::io(shown, e))?;
    summary.bytes = body + 3;
    Ok(summary)
}

/// Which rows of each table the workers write, and how they are masked: the serial plan's.
#[derive(Clone, Copy)]
struct Rows<'a> {
    filters: &'a Filters,
    masks: &'a MaskPlan,
}

#[allow(clippy::too_many_arguments)]
fn worker(
    url: &DatabaseUrl,
    snapshot: &str,
    catalog: &Catalog,
    tables: &[usize],
    sel: Rows<'_>,
    opts: &DumpOptions,
    next: &AtomicUsize,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Result<Done>>,
) -> Result<()> {
    let mut conn = Connection::open(url, false)?;
    conn.execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        crate::catalog::quote_literal(snapshot)
    ))?;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let position = next.fetch_add(1, Ordering::Relaxed);
        let Some(&t) = tables.get(position) else {
            break;
        };
        let table = &catalog.tables[t];
        let spool = tempfile::tempfile().map_err(|e| Error::io("temporary spool file", e))?;
        let mut buffered = std::io::BufWriter::with_capacity(256 * 1024, spool);
        let (rows, bytes) = {
            let mut w = FixtureWriter::resume(&mut buffered, opts.pretty, position);
            let (only, mask) = (sel.filters.of(t), sel.masks.table(t));
            let n = dump_table(
                &mut conn,
                table,
                only,
                mask,
                &mut w,
                &NoProgress,
                "<output>",
            )?;
            (n, w.bytes())
        };
        let spool = buffered
            .into_inner()
            .map_err(|e| Error::io("temporary spool file", e.into_error()))?;
        if tx
            .send(Ok(Done {
                position,
                spool,
                rows,
                bytes,
            }))
            .is_err()
        {
            break;
        }
    }
    conn.execute("COMMIT")
}
