//! Integration tests: one binary, one file per feature, all against a real PostgreSQL (see
//! `support` for where it comes from). Run with `cargo test --test it`.

mod support;

mod cli;
mod compose;
mod concurrency;
mod copy_types;
mod defer;
mod django;
mod dump;
mod faults;
mod load;
mod mask;
mod parallel_dump;
mod props;
mod sequences;
mod sqlite;
mod subset;
mod testdb;
