//! SQLite table dump (arrives with the SQLite backend).

use std::io::Write;

use crate::backend::Connection;
use crate::catalog::Table;
use crate::error::{Error, Result};
use crate::format::writer::FixtureWriter;
use crate::progress::Progress;

pub(super) fn dump_table<W: Write>(
    _conn: &mut Connection,
    _table: &Table,
    _w: &mut FixtureWriter<W>,
    _progress: &dyn Progress,
    _path: &str,
) -> Result<u64> {
    Err(Error::Invalid("dumping SQLite is not supported yet".into()))
}
