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
use crate::catalog::{quote_ident, Column, Table, ValueKind};
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
    let mut out = RowOut {
        masked: !mask.is_noop(),
        mask,
        layout,
        w,
        values: vec![Vec::new(); cols.len()],
        mask_scratch: Vec::new(),
        mask_error: None,
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
                }
                // emit asks for the values in order: one pass over the row.
                let mut fields = row.fields();
                out.emit(|i, buf| {
                    push_binary_json(buf, kinds[i], fields.next().flatten())
                        .map_err(|e| io_err(e.0))
                })
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
    if let Some(e) = out.mask_error {
        return Err(crate::error::Error::Fixture {
            location: Box::new(crate::error::Location {
                table: Some(table.key.clone()),
                row: Some(count as usize),
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
    mask_error: Option<MaskError>,
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
                self.mask_error = Some(e);
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
