//! PostgreSQL table dump: `COPY (SELECT ...) TO STDOUT` in text format, turned into JSON on the
//! client. Only columns whose JSON form differs from their text form (arrays, composites, ...)
//! are rendered by the server (`to_json`); everything else is converted here, which keeps the
//! server's work close to pg_dump's.

use std::io::Write;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

use crate::backend::pg_copy::{copy_out, CopyError};
use crate::catalog::{quote_ident, Table, ValueKind};
use crate::error::{describe_diesel, Error, Result};
use crate::format::copy_text::{push_json_string, CopyRow};
use crate::format::value::push_json;
use crate::format::writer::FixtureWriter;
use crate::mask::{MaskError, TableMask};
use crate::progress::Progress;
use crate::subset::Key;

/// Session settings that fix every text form the dump relies on, whatever the server's or the
/// role's defaults are. SET LOCAL: they end with the dump's transaction.
pub(crate) const STABLE_OUTPUT: &str =
    "SET LOCAL bytea_output = 'hex'; SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; \
     SET LOCAL TimeZone = 'UTC'";

/// The COPY source for a table: its stored columns, structured ones through to_json, in
/// primary-key order; with `condition`, only the rows matching it (a subset).
pub(crate) fn copy_source(table: &Table, condition: Option<&str>) -> String {
    let cols: Vec<String> = table
        .stored_columns()
        .map(|c| {
            let q = quote_ident(&c.name);
            if c.kind == ValueKind::Structured {
                format!("to_json({q})")
            } else {
                q
            }
        })
        .collect();
    let order = if table.primary_key.is_empty() {
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

pub(super) fn dump_table<W: Write>(
    conn: &mut PgConnection,
    table: &Table,
    only: Option<&[Key]>,
    mask: &TableMask,
    w: &mut FixtureWriter<W>,
    progress: &dyn Progress,
    path: &str,
) -> Result<u64> {
    conn.batch_execute(STABLE_OUTPUT)
        .map_err(|e| Error::db("setting output formats", describe_diesel(&e)))?;
    let condition = match only {
        Some(keys) => Some(crate::subset::pg::install_filter(conn, table, keys)?),
        None => None,
    };
    let cols: Vec<(Vec<u8>, ValueKind)> = table
        .stored_columns()
        .map(|c| {
            let mut k = Vec::new();
            push_json_string(&mut k, c.name.as_bytes());
            (k, c.kind)
        })
        .collect();
    let mut row = CopyRow::new();
    let mut values: Vec<Vec<u8>> = vec![Vec::new(); cols.len()];
    let mut scratch = Vec::new();
    let mut mask_scratch = Vec::new();
    let mut mask_error: Option<MaskError> = None;
    let mut count = 0u64;
    let result = copy_out(conn, &copy_source(table, condition.as_deref()), |line| {
        let n = row
            .parse(line)
            .map_err(|e| io_err(format!("unreadable COPY row: {}", e.message)))?;
        let expected = cols.len().max(1);
        if n != expected {
            return Err(io_err(format!(
                "COPY row has {n} fields, expected {expected}"
            )));
        }
        for (i, (_, kind)) in cols.iter().enumerate() {
            values[i].clear();
            push_json(&mut values[i], *kind, row.get(i));
        }
        if let Err(e) = mask.apply(&mut values, &mut mask_scratch) {
            mask_error = Some(e);
            return Err(io_err("masking failed".into()));
        }
        let fields: Vec<(&[u8], &[u8])> = cols
            .iter()
            .zip(&values)
            .map(|((k, _), v)| (k.as_slice(), v.as_slice()))
            .collect();
        w.row(&fields, &mut scratch)?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress.rows(4096);
        }
        Ok(())
    });
    progress.rows(count % 4096);
    if let Some(e) = mask_error {
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

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}
