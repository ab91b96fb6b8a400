//! SQLite loading (arrives with the SQLite backend).

use super::rows::RowStream;
use super::{Fixup, TableCounts, TablePlan};
use crate::backend::Connection;
use crate::catalog::{Catalog, Table};
use crate::error::{Error, Result};
use crate::progress::Progress;

fn unsupported<T>() -> Result<T> {
    Err(Error::Invalid(
        "loading into SQLite is not supported yet".into(),
    ))
}

pub(super) fn prepare(_conn: &mut Connection) -> Result<()> {
    unsupported()
}
pub(super) fn check_deferred(_conn: &mut Connection) -> Result<()> {
    unsupported()
}
pub(super) fn database_name(_conn: &mut Connection) -> Result<String> {
    unsupported()
}
pub(super) fn is_empty(_conn: &mut Connection, _table: &Table) -> Result<bool> {
    unsupported()
}
pub(super) fn empty_tables(
    _conn: &mut Connection,
    _catalog: &Catalog,
    _tables: &[usize],
) -> Result<()> {
    unsupported()
}
pub(super) fn apply_fixup(_conn: &mut Connection, _catalog: &Catalog, _f: &Fixup) -> Result<()> {
    unsupported()
}
pub(super) fn load_rows(
    _conn: &mut Connection,
    _plan: &TablePlan<'_>,
    _stream: &mut RowStream<'_>,
    _progress: &dyn Progress,
    _fixups: &mut Vec<Fixup>,
    _table_index: usize,
) -> Result<TableCounts> {
    unsupported()
}
