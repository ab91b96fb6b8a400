//! Integration tests: one binary, one file per feature, all against a real PostgreSQL (see
//! `support` for where it comes from). Run with `cargo test --test it`.

mod support;

mod cli;
mod concurrency;
mod dump;
mod faults;
mod load;
mod props;
mod sequences;
mod sqlite;
