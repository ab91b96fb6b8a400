//! SQLite side of realignment: `sqlite_sequence` rows of AUTOINCREMENT tables (arrives with the
//! SQLite backend).

use crate::backend::Connection;
use crate::catalog::{Catalog, QualifiedName, Sequence};
use crate::error::{Error, Result};

pub(super) fn current_values(
    _conn: &mut Connection,
    _seqs: &[&Sequence],
) -> Result<Vec<(Option<i128>, i128)>> {
    Err(Error::Invalid("SQLite is not supported yet".into()))
}

pub(super) fn extremes(
    _conn: &mut Connection,
    _count: usize,
    _columns: &[(usize, &QualifiedName, &str)],
) -> Result<Vec<(Option<i128>, Option<i128>)>> {
    Err(Error::Invalid("SQLite is not supported yet".into()))
}

pub(super) fn apply(_conn: &mut Connection, _catalog: &Catalog, _moves: &[(usize, i128)]) -> Result<()> {
    Err(Error::Invalid("SQLite is not supported yet".into()))
}

pub(super) fn display_move(seq: &Sequence, target: i128) -> String {
    format!(
        "UPDATE sqlite_sequence SET seq = {} WHERE name = '{}';",
        target - 1,
        seq.name.name.replace('\'', "''")
    )
}
