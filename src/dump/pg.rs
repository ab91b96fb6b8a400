//! PostgreSQL table dump: `COPY (SELECT ...) TO STDOUT`, turned into JSON on the client.
//!
//! Binary COPY when every column of the table has a client-side rendering
//! (`format::copy_binary`): the server's binary send functions cost less than its text output
//! (timestamptz_out, numeric_out), and the client rebuilds the same text.
//! Columns whose JSON form differs from their text form (arrays, composites, ...) and types
//! without a client-side rendering are selected as `to_json(col)`, rendered by the server.
//! Otherwise (a column whose base type the catalog could not resolve) text COPY, with the same
//! bytes out: each value's JSON is `format::value::push_json` of its text form either way.

use std::io::Write;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

use super::{KeyOrder, PartRange};
use crate::backend::pg_copy::{copy_out, copy_out_binary, CopyError};
use crate::backend::Connection;
use crate::catalog::{quote_ident, Column, Table, TableKind, ValueKind};
use crate::error::{describe_diesel, Error, Result};
use crate::format::copy_binary::{push_binary_json, BinaryKind};
use crate::format::copy_text::{push_json_string, CopyRow};
use crate::format::value::push_json;
use crate::format::writer::{FixtureWriter, RowLayout};
use crate::mask::{MaskError, TableMask};
use crate::progress::Progress;
use crate::subset::Key;

/// Session settings that fix every text form the dump relies on, whatever the server's or the
/// role's defaults are. SET LOCAL: they end with the dump's transaction.
pub(crate) const STABLE_OUTPUT: &str =
    "SET LOCAL bytea_output = 'hex'; SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; \
     SET LOCAL TimeZone = 'UTC'";

/// How a table's rows are read: `COPY ... (FORMAT binary)` with one rendering per column when
/// every column has one (see `format::copy_binary`), else text COPY.
enum Read {
    Binary(Vec<BinaryKind>),
    Text,
}

impl Read {
    fn of(table: &Table) -> Read {
        let kinds: Option<Vec<BinaryKind>> = table
            .stored_columns()
            .map(|c| BinaryKind::for_column(c.kind, c.base_type))
            .collect();
        match kinds {
            // A table without columns selects one NULL of type unknown: text reads it.
            Some(k) if !k.is_empty() => Read::Binary(k),
            _ => Read::Text,
        }
    }
}

/// Whether the table's rows are read in binary COPY (then a range of its pages can be read in
/// stored order: its integer key is checked in each row as it comes).
pub(crate) fn reads_binary(table: &Table) -> bool {
    matches!(Read::of(table), Read::Binary(_))
}

/// The COPY source for a table: its stored columns, structured ones through to_json, in
/// primary-key order; with `condition`, only the rows matching it (a subset).
pub(crate) fn copy_source(table: &Table, condition: Option<&str>) -> String {
    select_source(table, condition, true, |c| c.kind == ValueKind::Structured)
}

/// [`copy_source`] with the columns for which `to_json(c)` is true selected as `to_json(col)`;
/// without `ordered`, in the order the rows are stored.
fn select_source(
    table: &Table,
    condition: Option<&str>,
    ordered: bool,
    to_json: impl Fn(&Column) -> bool,
) -> String {
    let cols: Vec<String> = table
        .stored_columns()
        .map(|c| {
            let q = quote_ident(&c.name);
            if to_json(c) {
                format!("to_json({q})")
            } else {
                q
            }
        })
        .collect();
    let order = if !ordered {
        String::new()
    } else if table.primary_key.is_empty() {
        // No key: order by the whole row's text, byte-wise, which works for every type.
        let all: Vec<String> = table
            .stored_columns()
            .map(|c| quote_ident(&c.name))
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!(
                " ORDER BY (ROW({}, NULL))::text COLLATE \"C\"",
                all.join(", ")
            )
        }
    } else {
        let pk: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
        format!(" ORDER BY {}", pk.join(", "))
    };
    let list = if cols.is_empty() {
        "NULL".to_string()
    } else {
        cols.join(", ")
    };
    let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
    format!(
        "(SELECT {list} FROM {}{filter}{order})",
        table.own_rows_sql()
    )
}

/// Tables whose heap holds fewer bytes are read in key order by a serial dump: reading their
/// pages saves little, and a probe costs a query.
pub(super) const STORED_ORDER_MIN_BYTES: i64 = 8 << 20;

/// Whether the server has TID range scans (PostgreSQL 14+), without which a range of pages is
/// read by scanning the whole table.
pub(super) fn has_tid_range_scans(conn: &mut Connection) -> Result<bool> {
    if conn.as_pg().is_none() {
        return Ok(false);
    }
    let version: i64 =
        conn.query_json("SELECT to_json(current_setting('server_version_num')::int)::text AS j")?;
    Ok(version >= 140000)
}

/// Bytes in each of these tables' heaps (a partitioned table's partitions summed), in one query.
pub(super) fn heap_bytes(conn: &mut Connection, tables: &[&Table]) -> Result<Vec<i64>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let sizes: Vec<String> = tables
        .iter()
        .map(|t| {
            let name = crate::catalog::quote_literal(&t.name.sql());
            match t.kind {
                // pg_partition_tree lists nothing for an ordinary table.
                TableKind::Ordinary => format!("pg_relation_size({name}::regclass)"),
                TableKind::Partitioned => format!(
                    "(SELECT coalesce(sum(pg_relation_size(relid)), 0) \
                     FROM pg_partition_tree({name}::regclass))::int8"
                ),
            }
        })
        .collect();
    conn.query_json(&format!(
        "SELECT json_build_array({})::text AS j",
        sizes.join(", ")
    ))
}

/// Pages whose keys are read to see whether a table is stored in key order (see
/// [`stored_in_key_order`]).
const ORDER_PROBES: i64 = 32;
/// The first primary-key column when it is a (small/big) integer: ranges of it follow the
/// dump's row order.
pub(super) fn split_column(table: &Table) -> Option<&str> {
    let first = table.primary_key.first()?;
    let column = table.columns.iter().find(|c| &c.name == first)?;
    matches!(
        BinaryKind::for_column(column.kind, column.base_type),
        Some(BinaryKind::Int2 | BinaryKind::Int4 | BinaryKind::Int8)
    )
    .then_some(first.as_str())
}

/// The field of the key in a table's COPY rows when a range of its pages can be read in stored
/// order and checked: an ordinary table (a partitioned one's rows are in its partitions' pages),
/// read in binary, whose primary key is one integer column (so key order is that column's
/// order).
pub(super) fn key_field(table: &Table) -> Option<usize> {
    let [key] = table.primary_key.as_slice() else {
        return None;
    };
    (table.kind == TableKind::Ordinary && split_column(table).is_some() && reads_binary(table))
        .then(|| table.stored_columns().position(|c| &c.name == key))
        .flatten()
}

/// Whether `table`'s rows seem to be stored in the order of its key `column` (`size`: its heap
/// bytes). Only then are its pages read in stored order: the check while reading is what makes
/// the output right, but a table found out of order late is read twice.
///
/// - The last ANALYZE saw disorder (`pg_stats.correlation` below 1): no.
/// - It saw order and nothing was written since (`n_mod_since_analyze`): yes.
/// - No statistics, or stale ones, and the table was only ever inserted into (no update or
///   delete in its cumulative counters: an update moves a row's new version, within its page or
///   to another, and a delete's room is filled by later rows) — the usual state of a freshly
///   seeded database: rows are stored in the order they were inserted, and a probe checks that
///   it is key order: the lowest and highest keys on [`ORDER_PROBES`] pages spread over the heap
///   must rise from page to page (one query of single-page TID range scans).
/// - Else (updated since its statistics, or no counters): no.
///
/// Counters reset (`pg_stat_reset`) or not yet reported can only make a table look in order
/// when it is not: that costs the second read, never the output.
pub(super) fn stored_in_key_order(
    conn: &mut Connection,
    table: &Table,
    column: &str,
    size: i64,
) -> Result<bool> {
    let lit = crate::catalog::quote_literal;
    let relation = lit(&table.name.sql());
    type Facts = (Option<f64>, Option<i64>, Option<i64>, i64);
    let (correlation, modified, rewritten, block): Facts = conn.query_json(&format!(
        "SELECT json_build_array((SELECT correlation FROM pg_stats \
               WHERE schemaname = {} AND tablename = {} AND attname = {} AND NOT inherited), \
             s.n_mod_since_analyze, s.n_tup_upd + s.n_tup_del, \
             current_setting('block_size')::int8)::text AS j \
             FROM (SELECT) one LEFT JOIN pg_stat_all_tables s ON s.relid = {relation}::regclass",
        lit(&table.name.schema),
        lit(&table.name.name),
        lit(column),
    ))?;
    match (correlation, modified, rewritten) {
        (Some(c), _, _) if c < 0.99999 => return Ok(false),
        (Some(_), Some(0), _) => return Ok(true),
        (_, _, Some(0)) => {}
        _ => return Ok(false),
    }
    let pages = (size / block.max(1)).max(1);
    let mut sample: Vec<i64> = (0..ORDER_PROBES)
        .map(|i| (pages - 1) * i / (ORDER_PROBES - 1))
        .collect();
    sample.dedup();
    let key = quote_ident(column);
    let from = table.own_rows_sql();
    let probes: Vec<String> = sample
        .iter()
        .enumerate()
        .map(|(n, &p)| {
            let page = PartRange::Pages {
                from: p as u32,
                to: Some(p as u32 + 1),
            };
            format!(
                "SELECT {n} AS n, min({key})::int8 AS lo, max({key})::int8 AS hi FROM {from} \
                 WHERE {}",
                page.condition()
            )
        })
        .collect();
    let keys: Vec<(Option<i64>, Option<i64>)> = conn.query_json(&format!(
        "SELECT coalesce(json_agg(json_build_array(lo, hi) ORDER BY n), '[]')::text AS j \
         FROM ({}) probes",
        probes.join(" UNION ALL ")
    ))?;
    Ok(keys_rise(
        keys.into_iter().filter_map(|(lo, hi)| Some((lo?, hi?))),
    ))
}

/// Whether each page's lowest key is above the previous page's highest (`(lowest, highest)` by
/// page, in heap order; empty pages left out).
fn keys_rise(pages: impl Iterator<Item = (i64, i64)>) -> bool {
    let mut previous: Option<i64> = None;
    for (lo, hi) in pages {
        if previous.is_some_and(|p| lo <= p) {
            return false;
        }
        previous = Some(hi);
    }
    true
}

#[allow(clippy::too_many_arguments)]
pub(super) fn dump_table<W: Write>(
    conn: &mut PgConnection,
    table: &Table,
    only: Option<&[Key]>,
    range: Option<&PartRange>,
    mut order: Option<&mut KeyOrder>,
    mask: &TableMask,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    conn.batch_execute(STABLE_OUTPUT)
        .map_err(|e| Error::db("setting output formats", describe_diesel(&e)))?;
    let subset = match only {
        Some(keys) => Some(crate::subset::pg::install_filter(conn, table, keys)?),
        None => None,
    };
    let condition = match (subset, range) {
        (Some(s), Some(r)) => Some(format!("({s}) AND {}", r.condition())),
        (s, r) => s.or_else(|| r.map(PartRange::condition)),
    };
    // Each column's name, as a JSON string.
    let cols: Vec<Vec<u8>> = table
        .stored_columns()
        .map(|c| {
            let mut k = Vec::new();
            push_json_string(&mut k, c.name.as_bytes());
            k
        })
        .collect();
    let layout = w.layout(cols.iter().map(Vec::as_slice));
    // The primary key's columns among the values, to name a row a mask fails on (none when
    // the table has no key).
    let key_columns = table.stored_key_positions();
    let mut out = RowOut {
        masked: !mask.is_noop(),
        mask,
        layout,
        w,
        values: vec![Vec::new(); cols.len()],
        mask_scratch: Vec::new(),
        mask_error: None,
        key_columns,
        primary_key: &table.primary_key,
        count: 0,
        progress,
    };
    let result = match Read::of(table) {
        Read::Binary(kinds) => {
            let ordered = range.is_none_or(PartRange::ordered);
            let source = select_source(table, condition.as_deref(), ordered, |c| {
                BinaryKind::for_column(c.kind, c.base_type).is_some_and(BinaryKind::selects_to_json)
            });
            copy_out_binary(conn, &source, |row| {
                if row.len() != kinds.len() {
                    return Err(io_err(format!(
                        "COPY row has {} fields, expected {}",
                        row.len(),
                        kinds.len()
                    )));
                }
                if let Some(order) = order.as_deref_mut() {
                    order.see(row.get(order.field));
                    if !order.sorted {
                        // The rows are not in key order: the caller cuts them off and reads
                        // the table again in key order, so the rest is not worth rendering
                        // (the server still sends it: a COPY cannot be stopped midway).
                        return Ok(());
                    }
                }
                // emit asks for the values in order: one pass over the row.
                let mut fields = row.fields();
                out.emit(
                    #[inline(always)]
                    |i, buf| {
                        let field = fields.next().ok_or_else(|| {
                            io_err("COPY row has fewer fields than it announced".into())
                        })?;
                        push_binary_json(buf, kinds[i], field).map_err(|e| io_err(e.0))
                    },
                )
            })
        }
        Read::Text => {
            // Keys are only checked in binary rows: a part read this way never counts as in
            // order (callers read pages only of tables read in binary).
            if let Some(order) = order {
                order.sorted = false;
            }
            let kinds: Vec<ValueKind> = table.stored_columns().map(|c| c.kind).collect();
            let mut row = CopyRow::new();
            copy_out(conn, &copy_source(table, condition.as_deref()), |line| {
                let n = row
                    .parse(line)
                    .map_err(|e| io_err(format!("unreadable COPY row: {}", e.message)))?;
                let expected = kinds.len().max(1);
                if n != expected {
                    return Err(io_err(format!(
                        "COPY row has {n} fields, expected {expected}"
                    )));
                }
                out.emit(|i, buf| {
                    push_json(buf, kinds[i], row.get(i));
                    Ok(())
                })
            })
        }
    };
    let count = out.count;
    progress.rows(count % 4096);
    if let Some((e, key)) = out.mask_error {
        return Err(crate::error::Error::Fixture {
            location: Box::new(crate::error::Location {
                table: Some(table.key.clone()),
                // The row's place in the table's key order is known only when the whole table
                // is read in that order; the key names it in every case.
                row: range.is_none().then_some(count as usize),
                key,
                column: Some(e.column),
                ..Default::default()
            }),
            message: e.message,
        });
    }
    match result {
        Ok(_) => Ok(count),
        Err(CopyError::Source(e)) | Err(CopyError::Io(e)) => Err(Error::io(path, e)),
        Err(CopyError::Db(e)) => Err(Error::db(
            format!("dumping table {}", table.key),
            describe_diesel(&e),
        )),
    }
}

/// Where a table's rendered rows go: masked (when the table has masks), written, counted.
struct RowOut<'a, W: Write> {
    w: &'a mut FixtureWriter<W>,
    layout: RowLayout,
    mask: &'a TableMask,
    /// Whether `mask` changes anything: if not, values are rendered straight into the row.
    masked: bool,
    /// One buffer per column, for the masks.
    values: Vec<Vec<u8>>,
    mask_scratch: Vec<u8>,
    /// The first mask failure, with the failing row's key.
    mask_error: Option<(MaskError, Option<String>)>,
    /// The primary key's columns among `values` (never masked), and their names.
    key_columns: Vec<usize>,
    primary_key: &'a [String],
    count: u64,
    progress: &'a dyn Progress,
}

impl<W: Write> RowOut<'_, W> {
    /// Writes one row whose value `i` `value(i, buf)` appends to `buf`; `value` is called for
    /// each column once, in order (binary rows are read in one pass on that account).
    fn emit(
        &mut self,
        mut value: impl FnMut(usize, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.masked {
            for (i, v) in self.values.iter_mut().enumerate() {
                v.clear();
                value(i, v)?;
            }
            if let Err(e) = self.mask.apply(&mut self.values, &mut self.mask_scratch) {
                // The key's columns are never masked: their values are as read.
                let key = (!self.key_columns.is_empty()).then(|| {
                    let values: Vec<std::borrow::Cow<'_, str>> = self
                        .key_columns
                        .iter()
                        .map(|&i| String::from_utf8_lossy(&self.values[i]))
                        .collect();
                    crate::error::Location::key_text(self.primary_key, &values)
                });
                self.mask_error = Some((e, key));
                return Err(io_err("masking failed".into()));
            }
            let values = &self.values;
            self.w.row_rendered(&self.layout, |i, buf| {
                buf.extend_from_slice(&values[i]);
                Ok::<(), std::io::Error>(())
            })?;
        } else {
            self.w.row_rendered(&self.layout, value)?;
        }
        self.count += 1;
        if self.count.is_multiple_of(4096) {
            self.progress.rows(4096);
        }
        Ok(())
    }
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rise_only_from_page_to_page() {
        assert!(keys_rise([].into_iter()));
        assert!(keys_rise([(1, 5), (6, 9), (20, 20)].into_iter()));
        // A page's lowest key at or below the previous page's highest.
        assert!(!keys_rise([(1, 5), (5, 9)].into_iter()));
        assert!(!keys_rise([(1, 5), (6, 9), (2, 3)].into_iter()));
        assert!(!keys_rise([(10, 20), (1, 30)].into_iter()));
    }
}
