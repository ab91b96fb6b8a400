//! SQLite catalog introspection (not implemented yet: arrives with the SQLite backend).

use super::Catalog;
use crate::backend::Connection;
use crate::error::{Error, Result};

pub(super) fn read(_conn: &mut Connection) -> Result<Catalog> {
    Err(Error::Invalid("SQLite is not supported yet".into()))
}
