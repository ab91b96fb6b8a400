//! dbfixtures: dump database rows to JSON fixtures, load them back in one transaction, and keep
//! sequences aligned with the data.
//!
//! The library is what the `dbfixtures` binary runs; Rust test suites call it directly on an
//! open [`Connection`]:
//!
//! ```no_run
//! use dbfixtures::{Connection, DatabaseUrl};
//! let mut conn = Connection::open(&DatabaseUrl::parse("postgres://localhost/app_test")?, false)?;
//! let report = dbfixtures::sequences::reset(&mut conn, &Default::default())?;
//! println!("{} sequences moved", report.changes.len());
//! # Ok::<(), dbfixtures::Error>(())
//! ```

pub mod backend;
pub mod catalog;
pub mod config;
pub mod dump;
pub mod error;
pub mod format;
pub mod load;
pub mod mask;
pub mod migrate;
pub mod order;
pub mod progress;
pub mod sequences;
pub mod subset;
pub mod testdb;

pub use backend::{Connection, DatabaseUrl};
pub use error::{Error, Result};
pub use progress::{NoProgress, Progress};
