//! Rows of one table occurrence as the backends consume them: pulled one at a time, with the
//! ability to hand the current row back (when it starts a new batch), to start over (to find
//! the row a database error came from), and to say exactly where a row is.

use serde_json::value::RawValue;

use super::input::{Input, Occurrence, Reader};
use crate::catalog::Table;
use crate::error::{Error, Location, Result};
use crate::format::reader::RawRow;

pub(crate) struct RowStream<'a> {
    input: &'a Input,
    occ: &'a Occurrence,
    reader: Reader,
    row: RawRow,
    held: bool,
    done: bool,
}

impl<'a> RowStream<'a> {
    pub(crate) fn open(input: &'a Input, occ: &'a Occurrence) -> Result<Self> {
        let mut reader = input.open_at(occ)?;
        let key = reader
            .next_table()
            .map_err(|e| input.read_error(e, Some(&occ.key)))?;
        debug_assert_eq!(key.as_deref(), Some(occ.key.as_str()));
        Ok(RowStream {
            input,
            occ,
            reader,
            row: RawRow::default(),
            held: false,
            done: false,
        })
    }

    /// Moves to the next row (then see [`RowStream::current`]); false at the end of the table.
    pub(crate) fn advance(&mut self) -> Result<bool> {
        if self.held {
            self.held = false;
            return Ok(true);
        }
        if self.done {
            return Ok(false);
        }
        let more = self
            .reader
            .next_row_into(&mut self.row)
            .map_err(|e| self.input.read_error(e, Some(&self.occ.key)))?;
        self.done = !more;
        Ok(more)
    }

    /// Makes the next `next_row` return the current row again.
    pub(crate) fn hold(&mut self) {
        self.held = true;
    }

    /// The current row (the one `next_row` returned last).
    pub(crate) fn current(&self) -> &RawRow {
        &self.row
    }

    /// Starts over at the table's first row.
    pub(crate) fn restart(&mut self) -> Result<()> {
        *self = RowStream::open(self.input, self.occ)?;
        Ok(())
    }

    pub(crate) fn file(&self) -> &str {
        &self.input.name
    }

    /// An error located at `row` (and `column` when known).
    pub(crate) fn error(
        &self,
        table: &Table,
        row: &RawRow,
        column: Option<&str>,
        message: String,
    ) -> Error {
        Error::Fixture {
            location: Box::new(Location {
                file: Some(self.input.name.clone()),
                line: Some(row.line),
                column_no: None,
                table: Some(table.key.clone()),
                row: Some(row.index),
                key: row_key(table, row),
                column: column.map(str::to_owned),
            }),
            message,
        }
    }
}

/// The row's key for messages: `id=7`, `(a, b)=(1, "x")`; None when the row does not carry it.
pub(crate) fn row_key(table: &Table, row: &RawRow) -> Option<String> {
    if table.primary_key.is_empty() {
        return None;
    }
    let fields = row.fields().ok()?;
    let vals: Vec<&str> = table
        .primary_key
        .iter()
        .map(|k| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.get()))
        .collect::<Option<_>>()?;
    Some(crate::error::Location::key_text(&table.primary_key, &vals))
}

/// A row resolved against its table: (index into `table.columns`, raw value) in the table's
/// column order. Unknown columns are errors; generated columns are dropped (the database
/// computes them).
pub(crate) fn resolve<'r>(
    stream: &'r RowStream<'_>,
    table: &Table,
) -> Result<Vec<(usize, &'r RawValue)>> {
    let row = stream.current();
    let fields = row.fields().map_err(|e| Error::Fixture {
        // The syntax error's own position (rows can span lines), not the row's start.
        location: Box::new(Location {
            file: Some(stream.file().to_string()),
            line: Some(e.line),
            column_no: Some(e.column),
            table: Some(table.key.clone()),
            row: Some(row.index),
            ..Default::default()
        }),
        message: e.message,
    })?;
    let mut out = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        match table.columns.iter().position(|c| c.name == name) {
            Some(i) if table.columns[i].generated => {}
            Some(i) => out.push((i, value)),
            None => {
                return Err(stream.error(
                    table,
                    row,
                    Some(&name),
                    format!("table {} has no column \"{name}\"", table.key),
                ))
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}
