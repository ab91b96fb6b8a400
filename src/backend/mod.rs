//! Database connections: URL parsing and redaction, connecting, transactions, and the few
//! primitive queries every other module builds on.
//!
//! Invariants:
//! - A URL is only ever shown through [`redact_url`]: no password reaches a message or log.
//! - Transactions go through diesel's transaction manager, so a caller that already holds an open
//!   transaction (a test suite, say) gets a savepoint instead of a second `BEGIN`.
//! - Catalog-style queries return one JSON text value that serde turns into structs, so the
//!   number of round trips does not grow with the number of tables (per-table questions such as
//!   column maxima are batched into UNION ALL queries of bounded size).

pub mod connection;
pub mod pg_copy;

pub use connection::{redact_url, Backend, Connection, DatabaseUrl, TxMode};
