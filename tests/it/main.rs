//! Integration tests: one binary, one file per feature, all against a real PostgreSQL (see
//! `support` for where it comes from). Run with `cargo test --test it`.

mod support;

mod cli;
mod django;
mod dump;
mod load;
mod sequences;
mod sqlite;
