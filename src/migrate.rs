//! `load --migrate`: apply the project's pending diesel migrations in the load's transaction
//! (arrives with the SQLite backend issue).

use crate::backend::Connection;
use crate::error::{Error, Result};

/// Applies pending migrations found from the current directory the way the diesel CLI finds
/// them. Returns the names of the migrations applied.
pub fn run_pending(_conn: &mut Connection) -> Result<Vec<String>> {
    Err(Error::Invalid("--migrate is not implemented yet".into()))
}
